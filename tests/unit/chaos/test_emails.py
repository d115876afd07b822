"""The chaos run's e-mail guarantees with digests on (issues 20 and 21): the sink attributes a digest to every
(key, threshold, administrator) its X-Keyward-Notices header names, and the checker wants exactly one e-mail for
each, fails on a missing one, reports a repeat with the faults around it, and fails on a notice that came both on
its own and in a digest."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from uuid import UUID, uuid4

from chaos.checker import Verdict, _emails
from chaos.faults import Fault
from chaos.stack import ADMINS, Mail, SinkHandler
from chaos.workload import History, Key
from services.notifier.rendering import ExpiryMessage, Recipient, Renderer

T0 = 1_800_000_000.0
THRESHOLDS = [50, 40]
ADA, BOB = (f"{a}@chaos.test" for a in ADMINS)


def keys(n: int) -> History:
    """n keys, created a second apart, living 60 s; none deleted."""
    history = History()
    for i in range(n):
        key_id = str(uuid4())
        history.keys[key_id] = Key(key_id, "secret", f"key-{i}", T0 + i, T0 + i + 60)
    return history


def single(key_id: str, threshold: int, at: float, *to: str) -> Mail:
    return Mail(at, [(key_id, threshold)], list(to or (ADA, BOB)))


def digest(digest_id: str, notices: list[tuple[str, int]], at: float, *to: str) -> Mail:
    return Mail(at, notices, list(to), digest_id)


def every_notice_once(history: History) -> list[Mail]:
    """The first key's notices in digests (one per administrator and threshold), the others' as single e-mails."""
    ids = list(history.keys)
    mails = []
    for threshold in THRESHOLDS:
        group = [(k, threshold) for k in ids[:2]]
        mails += [digest(f"d{threshold}", group, T0 + 15, ADA), digest(f"d{threshold}", group, T0 + 15, BOB)]
        mails += [single(k, threshold, T0 + 20) for k in ids[2:]]
    return mails


def check(history: History, mails: list[Mail], faults: list[Fault] | None = None) -> Verdict:
    v = Verdict()
    _emails(v, SinkHandler(received=mails), THRESHOLDS, history, [], faults or [])
    return v


def test_a_digest_counts_for_every_notice_it_names_and_each_administrator_it_went_to():
    history = keys(4)
    v = check(history, every_notice_once(history))
    assert v.passed, v.findings
    emails = v.figures["emails"]
    assert emails["expected"] == 16 and emails["missing"] == 0 and emails["repeated"] == 0
    assert emails["digests"] == 4 and emails["distinct_digests"] == 2 and emails["notices_in_digests"] == 8
    assert emails["singles"] == 8 and emails["received"] == 12 and emails["largest_digest"] == 2


def test_a_notice_no_e_mail_carried_is_missing_even_when_its_digest_went_to_the_other_administrator():
    history = keys(4)
    mails = [m for m in every_notice_once(history) if not (m.digest == "d40" and m.recipients == [BOB])]
    v = check(history, mails)
    assert not v.checks["no_email_missing"]
    assert v.figures["emails"]["missing"] == 2
    first, second = list(history.keys)[:2]
    missing = {(m["key_id"], m["threshold"], m["admin"]) for m in v.findings["missing_emails"]}
    assert missing == {(first, 40, ADMINS[1]), (second, 40, ADMINS[1])}


def test_a_digest_sent_twice_is_reported_as_repeats_with_the_fault_between_the_copies():
    history = keys(4)
    first, second = list(history.keys)[:2]
    kill = Fault(10, "kill-replica", "notifier-1", started=T0 + 16, ended=T0 + 20)
    again = digest("d50", [(first, 50), (second, 50)], T0 + 45, ADA)
    v = check(history, [*every_notice_once(history), again], [kill])
    assert not v.checks["no_email_repeated"] and v.checks["no_email_both_single_and_in_a_digest"]
    assert v.figures["emails"]["repeated"] == 2
    repeat = next(r for r in v.findings["repeated_emails"] if r["key_id"] == first)
    assert repeat["copies"] == 2 and repeat["as"] == ["digest d50", "digest d50"]
    assert repeat["faults"] == ["kill-replica:notifier-1@t+10"]


def test_a_notice_sent_on_its_own_and_in_a_digest_fails_the_run_as_a_mix():
    history = keys(4)
    first, *_ = history.keys
    v = check(history, [*every_notice_once(history), single(first, 40, T0 + 30, BOB)])
    assert not v.checks["no_email_both_single_and_in_a_digest"]
    assert v.figures["emails"]["mixed"] == 1
    (mix,) = v.findings["mixed_emails"]
    assert (mix["key_id"], mix["threshold"], mix["admin"]) == (first, 40, ADMINS[1])
    assert sorted(mix["as"]) == ["digest d40", "single"]


# -- the sink ---------------------------------------------------------------------------------------------------


def notice(key_id: UUID, threshold: int) -> ExpiryMessage:
    now = datetime.now(UTC)
    return ExpiryMessage(key_id, "k", "kw_…", "ada", now, now + timedelta(seconds=60), uuid4(), ("Keyward",), threshold)


async def deliver(sink: SinkHandler, data: bytes, to: str) -> str:
    envelope = SimpleNamespace(original_content=data, content=data, rcpt_tos=[to])
    return str(await sink.handle_DATA(None, None, envelope))


async def test_the_sink_attributes_a_digest_to_each_notice_its_header_names():
    renderer = Renderer(console_url="http://console.test", sender="Keyward <no-reply@chaos.test>")
    notices = [notice(uuid4(), t) for t in (50, 40, 50)]
    digest_id = uuid4()
    sink = SinkHandler()
    reply = await deliver(sink, renderer.digest(digest_id, notices, Recipient("chaos-ada", ADA, "Ada")), ADA)
    assert reply.startswith("250") and not sink.unattributed
    (mail,) = sink.received
    assert mail.digest == str(digest_id) and mail.recipients == [ADA]
    assert sorted(mail.notices) == sorted((str(n.key_id), n.threshold_seconds) for n in notices)
    single_mail = renderer.composer(notices[0]).message(Recipient("chaos-bob", BOB, "Bob"))
    await deliver(sink, single_mail, BOB)
    assert sink.received[1].notices == [(str(notices[0].key_id), 50)] and sink.received[1].digest is None


async def test_the_sink_counts_a_digest_that_does_not_say_which_notices_it_carries_as_unattributed():
    renderer = Renderer(console_url="http://console.test", sender="Keyward <no-reply@chaos.test>")
    data = renderer.digest(uuid4(), [notice(uuid4(), 50)], Recipient("chaos-ada", ADA, "Ada"))
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    without = [line for line in lines if not line.startswith(b"X-Keyward-Notices")]
    short = [line.replace(b"X-Keyward-Digest-Size: 1", b"X-Keyward-Digest-Size: 2") for line in lines]
    sink = SinkHandler()
    for broken in (without, short):
        assert (await deliver(sink, b"\r\n".join(broken) + b"\r\n\r\n" + body, ADA)).startswith("250")
    assert not sink.received and len(sink.unattributed) == 2
    assert "names no notices" in sink.unattributed[0] and "of 2" in sink.unattributed[1]
