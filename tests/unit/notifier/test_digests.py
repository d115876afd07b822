"""The digest rule (which notices go out as one e-mail) and the digest e-mail itself."""

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from uuid import UUID, uuid4

from prometheus_client import REGISTRY

from services.notifier.config import Settings
from services.notifier.digests.service import DigestRule, digest_groups
from services.notifier.metrics import create_label_sets
from services.notifier.rendering import ExpiryMessage, Recipient, Renderer, digest_message_id

T0 = datetime(2026, 7, 7, 9, 30, tzinfo=UTC)
RULE = DigestRule(window=timedelta(minutes=10), minimum=3)


def at(*minutes: float) -> list[datetime]:
    return [T0 + timedelta(minutes=m) for m in minutes]


def test_exactly_the_minimum_of_notices_falling_due_together_stay_single():
    assert digest_groups(at(0, 0, 0), RULE) == []


def test_one_notice_more_than_the_minimum_makes_a_digest_of_them_all():
    assert digest_groups(at(0, 0, 0, 0), RULE) == [range(0, 4)]


def test_notices_outside_the_window_stay_single():
    # Four within ten minutes of the first (the window's end included); the fifth, a second later, is not.
    due = [*at(0, 1, 5, 10), T0 + timedelta(minutes=10, seconds=1)]
    assert digest_groups(due, RULE) == [range(0, 4)]
    # Spread wider than the window: no four of them within ten minutes of each other.
    assert digest_groups(at(0, 4, 8, 12, 16, 20), RULE) == []


def test_the_window_slides_past_a_notice_that_starts_no_digest():
    # From the first, only three within the window; from the second, four.
    assert digest_groups(at(0, 9, 11, 12, 13, 30), RULE) == [range(1, 5)]


def test_a_long_run_makes_digests_of_at_most_the_maximum_and_the_remainder_its_own_rule():
    rule = replace(RULE, maximum=5)
    assert digest_groups(at(*[0] * 12), rule) == [range(0, 5), range(5, 10)]  # the last two stay single
    assert digest_groups(at(*[0] * 14), rule) == [range(0, 5), range(5, 10), range(10, 14)]


def test_the_settings_default_to_more_than_three_notices_within_ten_minutes():
    fields = Settings.model_fields
    assert fields["notice_digest_min"].default == 3
    assert fields["notice_digest_window"].default == timedelta(minutes=10)


# -- the e-mail ------------------------------------------------------------------------------------

BOB = Recipient("bob", "bob@example.com", "Bob Builder")
DIGEST_ID = UUID("0c5b2a44-8d41-4a36-9a57-2f7d4b7c1e01")


def key(name: str, days: float, path: tuple[str, ...] = ("Acme", "Sales"), **overrides: object) -> ExpiryMessage:
    notice = ExpiryMessage(
        key_id=uuid4(),
        key_name=name,
        key_display=f"kw_live_{name[:4].lower()}…9f3c",
        created_by="alice",
        created_at=T0 - timedelta(days=358),
        expires_at=T0 + timedelta(days=days),
        organization_id=uuid4(),
        organization_path=path,
        threshold_seconds=7 * 86400,
    )
    return replace(notice, **overrides)  # type: ignore[arg-type]


def renderer() -> Renderer:
    return Renderer(console_url="https://console.example.com/", sender="Keyward <no-reply@keyward.example.com>")


def received(data: bytes) -> EmailMessage:
    return message_from_bytes(data, policy=default)  # type: ignore[return-value]


def test_the_digest_lists_every_key_soonest_first_with_its_organization_expiry_display_and_roll_link():
    keys = [key("Lobby", 7.5), key("Front desk", 7), key("Back office", 7.2, ("Acme", "Support")), key("Bar", 8)]
    message = received(renderer().digest(DIGEST_ID, keys, BOB, now=T0))
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert message["Subject"] == "[Keyward] 4 API keys of Acme expire, the first in 7 days"
    assert message["To"] == "Bob Builder <bob@example.com>"
    assert message["Message-ID"] == digest_message_id(DIGEST_ID, "bob", "keyward.example.com")
    assert message["X-Keyward-Digest-Id"] == str(DIGEST_ID)
    assert message["X-Keyward-Key-Id"] is None
    soonest_first = sorted(keys, key=lambda k: k.expires_at)
    for body in (text, html):
        links = re.findall(r"https://console\.example\.com/keys/([0-9a-f-]{36})\?roll", body)
        assert links == [str(k.key_id) for k in soonest_first]
        positions = [body.index(k.key_name) for k in soonest_first]
        assert positions == sorted(positions)
        for k in keys:
            assert k.key_display in body
        assert "Acme / Support" in body and "Acme / Sales" in body
    assert "Tuesday, 14 July 2026 at 09:30 UTC" in text  # Front desk's expiry, in the single e-mail's words
    assert html.count('class="digest-key"') == 4


def test_a_rolled_key_in_a_digest_links_its_new_key_instead_of_the_roll():
    successor = uuid4()
    keys = [key("Front desk", 7, successor_id=successor), *(key(f"Other {n}", 8) for n in range(3))]
    text = received(renderer().digest(DIGEST_ID, keys, BOB, now=T0)).get_body(("plain",)).get_content()
    assert f"https://console.example.com/keys/{successor}" in text
    assert f"/keys/{keys[0].key_id}?roll" not in text
    assert len(re.findall(r"\?roll", text)) == 3


def test_a_digest_has_one_message_id_per_digest_and_recipient_whatever_its_attempt():
    assert digest_message_id(DIGEST_ID, "bob", "d.example") == digest_message_id(DIGEST_ID, "bob", "d.example")
    assert digest_message_id(DIGEST_ID, "bob", "d.example") != digest_message_id(DIGEST_ID, "ann", "d.example")
    assert digest_message_id(DIGEST_ID, "bob", "d.example") != digest_message_id(uuid4(), "bob", "d.example")


def test_a_hostile_key_name_neither_adds_a_header_nor_a_tag_to_a_digest():
    hostile = '<script>alert("x")</script>\r\nBcc: victim@example.org'
    keys = [key(hostile, 7), *(key(f"Other {n}", 8) for n in range(3))]
    message = received(renderer().digest(DIGEST_ID, keys, BOB, now=T0))
    assert message["Bcc"] is None
    html = message.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_the_digest_e_mail_counters_exist_at_zero_before_the_first_digest():
    """So that the first refused digest raises KeywardNotifierPermanentFailures (increase() of a new series)."""
    create_label_sets(())
    for kind in ("permanent", "transient"):
        labels = {"threshold": "digest", "kind": kind}
        assert REGISTRY.get_sample_value("keyward_notifier_emails_failed_total", labels) is not None
    assert REGISTRY.get_sample_value("keyward_notifier_emails_sent_total", {"threshold": "digest"}) is not None


def named_notices(message: EmailMessage) -> list[tuple[str, int]]:
    """X-Keyward-Notices as a mail filter would read it: unfolded, comma-separated `key_id/threshold_seconds`."""
    pairs = [p.strip().split("/") for p in str(message["X-Keyward-Notices"]).split(",")]
    return [(k, int(t)) for k, t in pairs]


def test_a_digest_names_each_notice_it_carries_in_a_header_soonest_first():
    keys = [key("Lobby", 7.5), key("Front desk", 7), key("Back office", 7.2, threshold_seconds=14 * 86400)]
    message = received(renderer().digest(DIGEST_ID, [*keys, key("Bar", 8)], BOB, now=T0))
    soonest_first = sorted(keys, key=lambda k: k.expires_at)
    assert named_notices(message)[:3] == [(str(k.key_id), k.threshold_seconds) for k in soonest_first]
    assert named_notices(message)[1][1] == 14 * 86400
    assert message["X-Keyward-Digest-Size"] == "4" and len(named_notices(message)) == 4


def test_the_notices_header_of_a_full_digest_is_folded_into_valid_lines_and_reads_back_whole():
    keys = [key(f"Key {n}", 7 + n / 1000, threshold_seconds=30 * 86400) for n in range(500)]
    data = renderer().digest(DIGEST_ID, keys, BOB, now=T0)
    head = data.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78  # RFC 5322: 78 advised, 998 at most
    assert head.count(b"X-Keyward-Notices:") == 1
    message = received(data)
    assert named_notices(message) == [(str(k.key_id), 30 * 86400) for k in keys]
    assert message["X-Keyward-Digest-Size"] == "500"
