from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.errors import HeaderParseError
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from uuid import UUID

import pytest

from services.notifier.rendering import ExpiryMessage, Recipient, Renderer, clear_date, in_words, message_id, one_line

KEY_ID = UUID("5d0f3a5e-0b7e-4a59-9d6c-3f1c2b8e7a10")
ORG_ID = UUID("a1b2c3d4-0000-4000-8000-000000000001")
NOW = datetime(2026, 7, 7, 9, 30, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script>\r\nBcc: victim@example.org\n\x00\x1b[31m"quoted" \'single\' & more'


def notice(name: str = "Front desk", path: tuple[str, ...] = ("Acme", "Sales")) -> ExpiryMessage:
    return ExpiryMessage(
        key_id=KEY_ID,
        key_name=name,
        key_display="kw_live_ab12…9f3c",
        created_by="alice",
        created_at=NOW - timedelta(days=358),
        expires_at=NOW + timedelta(days=7),
        organization_id=ORG_ID,
        organization_path=path,
        threshold_seconds=7 * 86400,
    )


def renderer(override: Path | None = None) -> Renderer:
    return Renderer(
        console_url="https://console.example.com/",
        sender="Keyward <no-reply@keyward.example.com>",
        override_dir=override,
    )


BOB = Recipient("bob", "bob@example.com", "Bob Builder")


def received(data: bytes) -> EmailMessage:
    """What the SMTP server receives, parsed back."""
    return message_from_bytes(data, policy=default)  # type: ignore[return-value]


def parts(name: str = "Front desk", path: tuple[str, ...] = ("Acme", "Sales")) -> tuple[EmailMessage, str, str]:
    message = received(renderer().composer(notice(name, path), now=NOW).message(BOB))
    return message, message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content()


def test_the_subject_names_the_key_its_organization_and_the_days_left():
    message, _, _ = parts()
    assert message["Subject"] == '[Keyward] API key "Front desk" of Sales expires in 7 days'


def test_the_body_gives_the_date_the_organization_path_the_creator_and_both_links():
    _, text, html = parts()
    for body in (text, html):
        assert "Tuesday, 14 July 2026 at 09:30 UTC" in body
        assert "Acme / Sales" in body
        assert "alice" in body
        assert f"https://console.example.com/keys/{KEY_ID}" in body
    # The link opens the console's Roll Key dialog for this key (after sign-in).
    assert f"https://console.example.com/keys/{KEY_ID}?roll" in text
    assert f'href="https://console.example.com/keys/{KEY_ID}?roll"' in html
    assert "rolled" not in text and 'id="successor"' not in html


def test_a_rolled_keys_reminder_says_a_successor_exists_and_links_it_instead_of_a_roll():
    successor = UUID("0e6f1c2a-1111-4222-8333-444455556666")
    rolled = replace(notice(), successor_id=successor)
    message = received(renderer().composer(rolled, now=NOW).message(BOB))
    text, html = message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content()
    for body in (text, html):
        assert "a new key already replaces it" in body
        assert f"https://console.example.com/keys/{successor}" in body
        assert f"/keys/{KEY_ID}?roll" not in body


def test_the_email_is_html_with_a_plain_text_alternative_to_one_recipient():
    message, _, _ = parts()
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert message["To"] == "Bob Builder <bob@example.com>"
    assert message["Auto-Submitted"] == "auto-generated"


def test_names_in_any_script_arrive_intact_on_a_seven_bit_wire_of_short_lines():
    name, org = "Réception – 東京 desk 🔑", "Zürich Ünïts"
    data = renderer().composer(notice(name, ("Acme", org)), now=NOW).message(Recipient("bob", "b@example.com", "Bøb"))
    assert data.isascii()
    assert max(len(line) for line in data.split(b"\r\n")) <= 78
    assert b"\n" not in data.replace(b"\r\n", b"")
    message = received(data)
    assert message["Subject"] == f'[Keyward] API key "{name}" of {org} expires in 7 days'
    assert message["To"] == "Bøb <b@example.com>"
    assert message["From"] == "Keyward <no-reply@keyward.example.com>"
    for kind in ("plain", "html"):
        assert f"Acme / {org}" in message.get_body((kind,)).get_content()
        assert name in message.get_body((kind,)).get_content()


def test_a_hostile_key_name_cannot_add_a_header_to_the_subject():
    message, _, _ = parts(HOSTILE, ("Acme\r\nX-Evil: 1", "<b>Sales</b>"))
    subject = message["Subject"]
    assert message["Bcc"] is None and message["X-Evil"] is None
    assert not any(ch in subject for ch in "\r\n\x00\x1b")
    assert subject.startswith('[Keyward] API key "<script>alert("x")</script> Bcc: victim@example.org [31m"quoted"')


def test_a_hostile_key_name_is_escaped_in_the_html():
    _, text, html = parts(HOSTILE, ("Acme", '<b onmouseover="x">Sales</b>'))
    assert "<script>" not in html and "<b onmouseover" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "&#34;quoted&#34; &#39;single&#39; &amp; more" in html
    assert "&lt;b onmouseover=&#34;x&#34;&gt;Sales&lt;/b&gt;" in html
    assert "\x00" not in text and "\x1b" not in text


def test_an_unknown_organization_still_gives_a_readable_email():
    message, text, _ = parts(path=())
    assert message["Subject"] == '[Keyward] API key "Front desk" expires in 7 days'
    assert "Organization:  (unknown)" in text


def test_the_message_id_is_the_same_for_every_attempt_and_differs_per_threshold_and_recipient():
    first = message_id(KEY_ID, 604800, "bob", "keyward.example.com")
    assert first == message_id(KEY_ID, 604800, "bob", "keyward.example.com")
    assert first != message_id(KEY_ID, 259200, "bob", "keyward.example.com")
    assert first != message_id(KEY_ID, 604800, "carol", "keyward.example.com")
    assert first.startswith("<expiry.") and first.endswith("@keyward.example.com>")
    assert received(renderer().composer(notice(), now=NOW).message(BOB))["Message-ID"] == first


def test_a_brand_folder_overrides_the_built_in_templates_file_by_file(tmp_path: Path):
    (tmp_path / "brand.json").write_text(
        '{"name": "Acme Voice", "subject_prefix": "[Acme Voice]", "accent_color": "#ff6600", "logo_url": "",'
        ' "signature": "Acme Voice ops", "support_email": "help@acme.example", "footer": "Acme footer."}'
    )
    sent = received(renderer(tmp_path).composer(notice(), now=NOW).message(BOB))
    html = sent.get_body(("html",)).get_content()
    assert sent["Subject"].startswith("[Acme Voice] API key")
    assert "#ff6600" in html and "help@acme.example" in html and "Acme footer." in html


def test_days_left_read_naturally():
    assert [in_words(d) for d in (0, 1, 14)] == ["today", "in 1 day", "in 14 days"]
    assert clear_date(datetime(2026, 1, 1, 0, 5, tzinfo=UTC)) == "Thursday, 1 January 2026 at 00:05 UTC"


def test_one_line_strips_control_characters_and_cuts_long_text():
    assert one_line("a\r\nb\tc\x00d\u2028e") == "a b c d e"
    assert one_line("x" * 300, 10) == "xxxxxxxxx…"


def test_every_recipient_gets_the_same_e_mail_under_their_own_address_and_message_id():
    composer = renderer().composer(notice(), now=NOW)
    carol = Recipient("carol", "carol@example.com", 'Carol "CJ" Jones, Ops')
    dora = Recipient("dora", "dora@example.com", "Dóra Ünal")
    bob, carol_mail, dora_mail = (received(composer.message(r)) for r in (BOB, carol, dora))
    assert [m["To"].addresses[0].addr_spec for m in (bob, carol_mail, dora_mail)] == [
        "bob@example.com",
        "carol@example.com",
        "dora@example.com",
    ]
    assert carol_mail["To"].addresses[0].display_name == 'Carol "CJ" Jones, Ops'
    assert dora_mail["To"].addresses[0].display_name == "Dóra Ünal"
    assert len({m["Message-ID"] for m in (bob, carol_mail, dora_mail)}) == 3
    assert bob.get_body(("plain",)).get_content() == dora_mail.get_body(("plain",)).get_content()
    assert "You receive this e-mail as a customer administrator of Acme." in bob.get_body(("plain",)).get_content()


def test_an_address_that_could_smuggle_a_header_or_a_recipient_is_refused():
    composer = renderer().composer(notice(), now=NOW)
    for bad in (
        "eve@example.com\r\nBcc: x@example.org",
        "a@example.com, b@example.com",
        "not an address",
        "ève@exämple.com",  # would need SMTPUTF8, which the notifier does not negotiate
    ):
        with pytest.raises((ValueError, HeaderParseError)):
            composer.message(Recipient("eve", bad, "Eve"))


def test_a_brand_that_greets_each_recipient_by_name_gets_each_e_mail_built_for_them(tmp_path: Path):
    (tmp_path / "expiring.txt").write_text("Dear {{ recipient.name }}, {{ key.name }} expires {{ expiry.in_words }}.\n")
    composer = renderer(tmp_path).composer(notice(), now=NOW)
    carol = Recipient("carol", "carol@example.com", "Carol")
    texts = [received(composer.message(r)).get_body(("plain",)).get_content().rstrip() for r in (BOB, carol, BOB)]
    assert texts == [
        "Dear Bob Builder, Front desk expires in 7 days.",
        "Dear Carol, Front desk expires in 7 days.",
        "Dear Bob Builder, Front desk expires in 7 days.",
    ]


def test_a_recipient_named_only_in_a_base_template_still_makes_each_e_mail_personal(tmp_path: Path):
    assert renderer().personal is False
    (tmp_path / "base.txt").write_text("{% block content %}{% endblock %}\nSent to {{ recipient.email }}.\n")
    composer = renderer(tmp_path).composer(notice(), now=NOW)
    carol = Recipient("carol", "carol@example.com", "Carol")
    texts = [received(composer.message(r)).get_body(("plain",)).get_content() for r in (BOB, carol)]
    assert "Sent to bob@example.com." in texts[0] and "Sent to carol@example.com." in texts[1]
