"""Property tests: any Unicode name or subject round-trips and never adds a header.

Both builders are held to it: the stdlib reference (``build_message``) and the fast
splicing builder (``MessageTemplate``). A value either comes back unchanged through the
stdlib parser with the same header set, or is refused with a one-line
``HeaderValueError`` (control characters, line breaks) — never a new header line.
"""

from __future__ import annotations

import re
from dataclasses import replace
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from delivery_draft import SAMPLE_DRAFT
from digest_mail.config import Settings
from digest_mail.message import HeaderValueError, MessageTemplate, build_message

SETTINGS = Settings()
ADDRESS = "hanako@example.jp"
URL = "https://chrysanthemum-digest.example.jp/unsubscribe?t=abc"
MAILTO = "mailto:unsubscribe@example.jp?subject=unsubscribe"
HEADERS = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "x-digest-edition",
    "x-digest-list",
    "mime-version",
    "content-type",
}
# What a header value may not hold; the builders refuse these.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]|=\\?[^?\\s]*\\?[bBqQ]\\?[^?\\s]*\\?=")

# Japanese-heavy text with everything else Unicode can throw in, surrogates excluded.
unicode_text = st.text(
    alphabet=st.one_of(
        st.characters(blacklist_categories=("Cs",)),
        st.sampled_from(list("菊花ダイジェスト髙①㈱～ｶﾅ😀 \"'<>@,;:\\()[]=?\r\n\t\u2028")),
    ),
    max_size=80,
)
HOSTILE = [
    "Name\r\nBcc: x@evil.example",
    "山田\nBcc: x@evil.example",
    "山田\u2028Bcc: x@evil.example",
    "=?utf-8?q?a=0D=0ABcc:_x@evil.example?=",
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


def _check(msg: EmailMessage, *, name: str, subject: str) -> None:
    names = _header_names(msg)
    assert set(names) <= HEADERS, names
    assert len(names) == len(set(names)), names  # no header twice
    assert "bcc" not in names
    to = msg["To"]
    assert [a.addr_spec for a in to.addresses] == [ADDRESS]
    # Surrounding space is not significant in a phrase; parsers strip it.
    assert to.addresses[0].display_name.strip() == name.strip()
    assert str(msg["Subject"]) == subject
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


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
    _check(_parse(BUILDERS[builder](name, subject)), name=name, subject=subject)


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
    msg = _parse(BUILDERS[builder](name_in, "件名"))
    _check(msg, name=name_out, subject="件名")
