"""Property tests: any Unicode name or subject round-trips and never adds a header.

Both builders are held to it: the stdlib reference (``build_message``) and the fast
splicing builder (``MessageTemplate``). A value either comes back unchanged through the
stdlib parser with the same header set, or is refused with a one-line
``HeaderValueError`` (control characters, line breaks) — never a new header line.
Text that looks like an RFC 2047 encoded word (spaces inside too: Python 3.10-3.12
decode those) comes back literally. Every header keeps the limits: lines <= 998 octets,
folded at 78 where there is a space to fold at, lines with encoded words <= 76, each
encoded word <= 75 characters and whole characters (valid UTF-8 on its own).
"""

from __future__ import annotations

import re
from dataclasses import replace
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import parseaddr

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from delivery_draft import SAMPLE_DRAFT
from digest_mail.config import NewsletterSettings, Settings
from digest_mail.mail.message import HeaderValueError, MessageTemplate, build_message
from digest_mail.text import MAX_NAME
from header_limits import HEADERS, check_limits

SETTINGS = Settings()
ADDRESS = "hanako@example.jp"
URL = "https://chrysanthemum-digest.example.jp/unsubscribe?t=abc"
MAILTO = "mailto:unsubscribe@example.jp?subject=unsubscribe"
# What a header value may not hold; the builders refuse these.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")

# Japanese-heavy text with everything else Unicode can throw in, surrogates excluded.
unicode_text = st.text(
    alphabet=st.one_of(
        st.characters(blacklist_categories=("Cs",)),
        st.sampled_from(list("菊花ダイジェスト髙①㈱～ｶﾅ😀 \"'<>@,;:\\()[]=?\r\n\t\u2028")),
    ),
    max_size=80,
)
# Long Japanese with emoji and combining marks: several encoded words, split where a
# careless splitter would cut a UTF-8 sequence.
long_text = st.text(
    alphabet=st.sampled_from(
        list("菊花ダイジェスト編集部山田太郎髙①㈱～ｶﾅ😀👨\u200d👩\u200d👧🇯🇵が\u3099 aZ=?_")
    ),
    min_size=40,
    max_size=MAX_NAME,
).map(lambda s: s.strip())
INJECTIONS = [
    "=?utf-8?q?a=0D=0ABcc:_x@evil.example?=",
    "=?utf-8?q?x=0D=0ABcc: victim@evil.example=0D=0AReply-To: attacker@evil.example?= end",
    "Weekly =?utf-8?q?x=0D=0A=0D=0A<h1>owned</h1>?= end",
    "=?utf-8?b?QmNjOiB4QGV2aWwuZXhhbXBsZQ==?=",
    "=?UTF-8?Q?a b?=",
]
HOSTILE = [
    "Name\r\nBcc: x@evil.example",
    "山田\nBcc: x@evil.example",
    "山田\u2028Bcc: x@evil.example",
    *INJECTIONS,
    '"a" <evil@example.net>, b',
    "a\x00b",
    " leading and trailing ",
    "",
]


def _parse(data: bytes) -> EmailMessage:
    msg = message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _header_names(msg: EmailMessage) -> list[str]:
    return [k.lower() for k in msg]


def _raw_headers(data: bytes) -> dict[str, str]:
    """Header name -> value as sent, unfolded, nothing decoded."""
    msg = BytesHeaderParser(policy=policy.compat32).parsebytes(data)
    return {k.lower(): re.sub(r"\r?\n(?=[ \t])", "", str(v)) for k, v in msg.items()}


def decoded(text: str) -> str:
    """RFC 2047 decoding as the RFC says (whitespace between encoded words dropped);
    Python's phrase parser adds a space there, which is its own bug."""
    return str(make_header(decode_header(text)))


def display_name(field: str) -> tuple[str, str]:
    name, address = parseaddr(field)
    return decoded(name), address


def _check(msg: EmailMessage, *, name: str, subject: str, data: bytes) -> None:
    names = _header_names(msg)
    assert set(names) <= HEADERS, names
    assert len(names) == len(set(names)), names  # no header twice
    assert "bcc" not in names
    to = msg["To"]
    assert [a.addr_spec for a in to.addresses] == [ADDRESS]
    raw = _raw_headers(data)
    # Surrounding space is not significant in a phrase; parsers strip it.
    assert display_name(raw["to"]) == (name.strip(), ADDRESS)
    if len(name.encode()) <= 40:  # one encoded word: the stdlib's parser agrees too
        assert to.addresses[0].display_name.strip() == name.strip()
    assert str(msg["Subject"]) == subject
    assert decoded(raw["subject"]) == subject
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    check_limits(data)


def _reference(name: str, subject: str) -> bytes:
    draft = replace(SAMPLE_DRAFT, subject=subject)
    msg = build_message(
        draft,
        settings=SETTINGS,
        to_address=ADDRESS,
        to_name=name,
        list_name="weekly",
        unsubscribe_url=URL,
        unsubscribe_mailto=MAILTO,
    )
    return msg.as_bytes(policy=msg.policy)


def _spliced(name: str, subject: str) -> bytes:
    draft = replace(SAMPLE_DRAFT, subject=subject)
    template = MessageTemplate(draft, settings=SETTINGS, list_name="weekly")
    return template.render(
        to_address=ADDRESS, to_name=name, unsubscribe_url=URL, unsubscribe_mailto=MAILTO
    )


BUILDERS = {"reference": _reference, "spliced": _spliced}
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _expect(builder: str, name: str, subject: str) -> None:
    if CONTROL.search(name) or CONTROL.search(subject):
        with pytest.raises(HeaderValueError) as raised:
            BUILDERS[builder](name, subject)
        assert "\n" not in str(raised.value)  # one line, the value shown escaped
        return
    data = BUILDERS[builder](name, subject)
    _check(_parse(data), name=name, subject=subject, data=data)


@pytest.mark.parametrize("builder", sorted(BUILDERS))
@PROPERTY
@given(name=unicode_text)
@example(name="山田 太郎")
@example(name="Name\r\nBcc: x@evil.example")
def test_any_name_round_trips_or_is_refused(builder: str, name: str) -> None:
    # Names that only differ by surrounding space are read back stripped by every
    # parser; the list loader strips them before they get here.
    assume(name == name.strip())
    _expect(builder, name, "今週の Chrysanthemum Digest")


@pytest.mark.parametrize("builder", sorted(BUILDERS))
@PROPERTY
@given(subject=unicode_text.filter(lambda s: s.strip() == s and s != ""))
@example(subject="今週の注目記事\r\nBcc: x@evil.example")
@example(subject="=?utf-8?b?QmNjOiB4QGV2aWwuZXhhbXBsZQ==?=")
def test_any_subject_round_trips_or_is_refused(builder: str, subject: str) -> None:
    _expect(builder, "山田 太郎", subject)


@pytest.mark.parametrize("builder", sorted(BUILDERS))
@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names(builder: str, name: str) -> None:
    if name != name.strip():
        name_in, name_out = name, name.strip()
    else:
        name_in = name_out = name
    if CONTROL.search(name_in):
        with pytest.raises(HeaderValueError):
            BUILDERS[builder](name_in, "件名")
        return
    data = BUILDERS[builder](name_in, "件名")
    _check(_parse(data), name=name_out, subject="件名", data=data)


@pytest.mark.parametrize("builder", sorted(BUILDERS))
@pytest.mark.parametrize("subject", INJECTIONS)
def test_encoded_word_syntax_in_a_subject_arrives_literally(builder: str, subject: str) -> None:
    """Issue 14 item 1: `compose --subject 'Weekly =?utf-8?q?x=0D=0ABcc: …?= end'` was a
    real Bcc line (and with =0D=0A=0D=0A, the attacker's body) on Python 3.11."""
    data = BUILDERS[builder]("山田 太郎", subject)
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"Bcc" not in head and b"Reply-To" not in head and b"<h1>" not in head
    _check(_parse(data), name="山田 太郎", subject=subject, data=data)


@pytest.mark.parametrize("builder", sorted(BUILDERS))
@PROPERTY
@given(name=long_text, subject=long_text.filter(bool))
@example(name="菊" * MAX_NAME, subject="😀" * 300)
@example(name="a" * MAX_NAME, subject="x" * 1500)
@example(name="Taro " * 40, subject="word " * 200)
def test_long_names_and_subjects_fold_within_the_limits(
    builder: str, name: str, subject: str
) -> None:
    """Issues 14 item 11 and 16: a long Japanese subject was one 168-character encoded
    word on a 182-character line, a 1,500-character name a 1,527-octet To line."""
    data = BUILDERS[builder](name, subject)
    _check(_parse(data), name=name, subject=subject, data=data)


@pytest.mark.parametrize("builder", sorted(BUILDERS))
@PROPERTY
@given(newsletter=unicode_text, list_name=unicode_text)
@example(newsletter=INJECTIONS[1], list_name=INJECTIONS[2])
@example(newsletter="菊花ダイジェスト" * 20, list_name="=?utf-8?q?w=0D=0ABcc: x@evil.example?=")
def test_list_id_and_list_name_round_trip_or_are_refused(
    builder: str, newsletter: str, list_name: str
) -> None:
    """DIGEST_MAIL_NEWSLETTER_NAME becomes List-Id, a list file's name X-Digest-List."""
    assume(newsletter == newsletter.strip())
    settings = Settings(newsletter=NewsletterSettings(name=newsletter))
    if CONTROL.search(newsletter) or CONTROL.search(list_name):
        with pytest.raises(HeaderValueError):
            _build(builder, settings, list_name)
        return
    data = _build(builder, settings, list_name)
    raw = _raw_headers(data)
    assert set(_header_names(_parse(data))) <= HEADERS
    phrase, ident = display_name(raw["list-id"])
    assert (phrase, ident) == (newsletter, "weekly.chrysanthemum-digest.example.jp")
    assert decoded(raw["x-digest-list"]) == list_name
    assert str(_parse(data)["X-Digest-List"]) == list_name
    check_limits(data)


def _build(builder: str, settings: Settings, list_name: str) -> bytes:
    if builder == "reference":
        msg = build_message(
            SAMPLE_DRAFT,
            settings=settings,
            to_address=ADDRESS,
            to_name="山田",
            list_name=list_name,
            unsubscribe_url=URL,
            unsubscribe_mailto=MAILTO,
        )
        return msg.as_bytes(policy=msg.policy)
    template = MessageTemplate(SAMPLE_DRAFT, settings=settings, list_name=list_name)
    return template.render(
        to_address=ADDRESS, to_name="山田", unsubscribe_url=URL, unsubscribe_mailto=MAILTO
    )


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_list_unsubscribe_is_folded_between_its_links(builder: str) -> None:
    data = BUILDERS[builder]("山田", "件名")
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    assert f"List-Unsubscribe: <{URL}>,\r\n <{MAILTO}>\r\n" in head
    assert _parse(data)["List-Unsubscribe"] == f"<{URL}>, <{MAILTO}>"


@pytest.mark.parametrize("builder", sorted(BUILDERS))
@PROPERTY
@given(name=unicode_text.filter(lambda s: s == s.strip() and s != ""))
@example(name=INJECTIONS[1])
@example(name="菊花ダイジェスト編集部" * 8)
@example(name="0\r:;")  # the parser gave up on the quoted name: no address, no domain
def test_from_and_reply_to_names_round_trip_or_are_refused(builder: str, name: str) -> None:
    """``[newsletter] from`` and ``reply_to`` are written by the same rules as To."""
    quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    settings = Settings(
        newsletter=NewsletterSettings(
            sender=f"{quoted} <digest@example.jp>", reply_to=f"{quoted} <editors@example.jp>"
        )
    )
    if CONTROL.search(name):
        with pytest.raises(HeaderValueError):
            _build(builder, settings, "weekly")
        return
    data = _build(builder, settings, "weekly")
    raw = _raw_headers(data)
    assert display_name(raw["from"]) == (name, "digest@example.jp")
    assert display_name(raw["reply-to"]) == (name, "editors@example.jp")
    assert set(_header_names(_parse(data))) <= HEADERS | {"reply-to"}
    check_limits(data)
