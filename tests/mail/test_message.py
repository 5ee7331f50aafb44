"""Message building: the reference builder, header safety, and the fast splice matching it."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from delivery_draft import SAMPLE_DRAFT, Draft, make_draft
from digest_mail.config import Settings
from digest_mail.mail.body import fold_html_lines
from digest_mail.mail.message import HeaderValueError, MessageTemplate, build_message
from digest_mail.mail.placeholders import PLACEHOLDERS

SETTINGS = Settings()
DATE = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
UNSUB = "https://chrysanthemum-digest.example.jp/unsubscribe?t=" + "aB3_-x" * 20
MAILTO = "mailto:unsubscribe@example.jp?subject=unsubscribe%20" + "Zz9" * 10


def reference(draft: Draft, *, address: str, name: str, **kw: str) -> EmailMessage:
    return build_message(
        draft,
        settings=SETTINGS,
        to_address=address,
        to_name=name,
        list_name="weekly",
        unsubscribe_url=UNSUB + address,
        unsubscribe_mailto=MAILTO,
        message_id="<fixed.1@example.jp>",
        date=DATE,
        **kw,
    )


def parse(data: bytes) -> EmailMessage:
    msg = message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_reference_message_has_every_header_and_both_parts() -> None:
    msg = parse(reference(SAMPLE_DRAFT, address="taro@example.jp", name="山田 太郎").as_bytes())
    assert msg["From"] == "Chrysanthemum Digest <digest@example.jp>"
    assert msg["To"].addresses[0].display_name == "山田 太郎"
    assert msg["To"].addresses[0].addr_spec == "taro@example.jp"
    assert msg["Subject"] == SAMPLE_DRAFT.subject
    assert msg["Date"].datetime == DATE
    assert msg["Message-ID"] == "<fixed.1@example.jp>"
    assert msg["List-Id"] == "Chrysanthemum Digest <weekly.chrysanthemum-digest.example.jp>"
    assert msg["List-Unsubscribe"] == f"<{UNSUB}taro@example.jp>, <{MAILTO}>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["X-Digest-Edition"] == "2026-W48"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",))
    markup = msg.get_body(("html",))
    assert text is not None and markup is not None
    assert "山田 太郎 さん" in text.get_content()
    assert f"{UNSUB}taro@example.jp" in text.get_content()
    assert f'href="{UNSUB}taro@example.jp"' in markup.get_content()
    for token in PLACEHOLDERS.values():
        assert token not in text.get_content()
        assert token not in markup.get_content()


def test_reference_header_lines_are_not_encoded_words_for_urls() -> None:
    raw = reference(SAMPLE_DRAFT, address="taro@example.jp", name="").as_bytes()
    head = raw.split(b"\r\n\r\n")[0].decode()
    start = head.index("\r\nList-Unsubscribe:") + 2
    field = re.split(r"\r\n(?! )", head[start:])[0]
    assert "=?" not in field
    # Folded between the links (RFC 5322's 78 where it can), never inside one.
    assert field == f"List-Unsubscribe: <{UNSUB}taro@example.jp>,\r\n <{MAILTO}>"


def test_html_part_escapes_names_text_part_keeps_them() -> None:
    msg = parse(
        reference(SAMPLE_DRAFT, address="a@example.jp", name='<b>"鈴木" & 佐藤</b>').as_bytes()
    )
    text = msg.get_body(("plain",))
    markup = msg.get_body(("html",))
    assert text is not None and markup is not None
    assert '<b>"鈴木" & 佐藤</b> さん' in text.get_content()
    assert "&lt;b&gt;&quot;鈴木&quot; &amp; 佐藤&lt;/b&gt; さん" in markup.get_content()


def test_a_nameless_reader_is_greeted_as_all_readers() -> None:
    # Not 「読者 さん」: the honorific belongs to a name; without one, 「読者の皆さま」.
    msg = parse(reference(SAMPLE_DRAFT, address="a@example.jp", name="").as_bytes())
    assert msg["To"] == "a@example.jp"
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().startswith("読者の皆さま、こんにちは。")
    assert ">読者の皆さま、こんにちは。" in html.get_content()


def test_a_named_reader_is_greeted_by_name() -> None:
    msg = parse(reference(SAMPLE_DRAFT, address="a@example.jp", name="山田 花子").as_bytes())
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().startswith("山田 花子 さん、こんにちは。")
    assert ">山田 花子 さん、こんにちは。" in html.get_content()


@pytest.mark.parametrize(
    ("field", "name", "subject"),
    [
        ("recipient name", "Name\r\nBcc: x@evil.example", ""),
        ("recipient name", "名前\nBcc: x@evil.example", ""),
        ("recipient name", "tab\tname", ""),
        ("recipient name", "line\u2028sep", ""),
        ("subject", "", "件名\r\nBcc: x@evil.example"),
    ],
)
def test_line_breaks_in_names_and_subjects_are_refused(field: str, name: str, subject: str) -> None:
    draft = make_draft(subject=subject) if subject else SAMPLE_DRAFT
    with pytest.raises(HeaderValueError) as info:
        reference(draft, address="a@example.jp", name=name)
    assert info.value.field == field
    template = MessageTemplate(SAMPLE_DRAFT, settings=SETTINGS, list_name="weekly")
    if name:
        with pytest.raises(HeaderValueError):
            template.render(
                to_address="a@example.jp",
                to_name=name,
                unsubscribe_url=UNSUB,
                unsubscribe_mailto=MAILTO,
            )
    else:
        with pytest.raises(HeaderValueError):
            MessageTemplate(draft, settings=SETTINGS, list_name="weekly")


def test_injection_in_address_or_unsubscribe_link_is_refused() -> None:
    template = MessageTemplate(SAMPLE_DRAFT, settings=SETTINGS, list_name="weekly")
    with pytest.raises(HeaderValueError):
        template.render(
            to_address="a@example.jp\r\nBcc: x@evil.example",
            to_name="",
            unsubscribe_url=UNSUB,
            unsubscribe_mailto=MAILTO,
        )
    with pytest.raises(HeaderValueError):
        template.render(
            to_address="a@example.jp",
            to_name="",
            unsubscribe_url=UNSUB + "\r\nX: y",
            unsubscribe_mailto=MAILTO,
        )


def test_message_ids_are_unique_on_the_sender_domain() -> None:
    ids: set[str] = set()
    template = MessageTemplate(SAMPLE_DRAFT, settings=SETTINGS, list_name="weekly")
    for _ in range(200):
        data = template.render(
            to_address="a@example.jp", to_name="", unsubscribe_url=UNSUB, unsubscribe_mailto=MAILTO
        )
        ids.add(parse(data)["Message-ID"])
    assert len(ids) == 200
    assert all(i.endswith("@example.jp>") for i in ids)


NAMES = [
    ("taro@example.jp", "山田 太郎"),
    (
        "hanako@example.jp",
        "佐藤 花子 (編集部・東京本社 国際ニュース担当デスク兼 ㈱髙島屋 ～ 特派員 🌸)" * 2,
    ),
    ("ascii@example.com", "John Smith"),
    ("quote@example.com", 'O"Brien, Pat'),
    ("empty@example.net", ""),
    ("kana@example.jp", "ﾔﾏﾀﾞ ﾀﾛｳ"),
    ("amp@example.jp", "<script>alert(1)</script> & co"),
]


def assert_same_message(fast: bytes, slow: EmailMessage) -> None:
    a = parse(fast)
    b = parse(slow.as_bytes())
    names = [
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "Reply-To",
        "List-Id",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "X-Digest-Edition",
        "X-Digest-List",
        "MIME-Version",
    ]
    for header in names:
        assert str(a.get(header)) == str(b.get(header)), header
    assert a.get_content_type() == b.get_content_type() == "multipart/alternative"
    for kind in ("plain", "html"):
        pa, pb = a.get_body((kind,)), b.get_body((kind,))
        assert pa is not None and pb is not None
        assert pa.get_content_type() == pb.get_content_type()
        assert pa.get_content_charset() == pb.get_content_charset() == "utf-8"
        assert pa.get_content() == pb.get_content(), kind
    assert [p.get_content_type() for p in a.iter_parts()] == ["text/plain", "text/html"]
    assert a.defects == [] and all(p.defects == [] for p in a.iter_parts())


@pytest.mark.parametrize("encoding", ["8bit", "base64"])
@pytest.mark.parametrize(("address", "name"), NAMES)
def test_spliced_message_parses_like_the_reference(address: str, name: str, encoding: str) -> None:
    template = MessageTemplate(
        SAMPLE_DRAFT,
        settings=SETTINGS,
        list_name="weekly",
        body_encoding=encoding,  # type: ignore[arg-type]
    )
    fast = template.render(
        to_address=address,
        to_name=name,
        unsubscribe_url=UNSUB + address,
        unsubscribe_mailto=MAILTO,
        message_id="<fixed.1@example.jp>",
        date="Wed, 25 Nov 2026 09:00:00 +0000",
    )
    assert_same_message(fast, reference(SAMPLE_DRAFT, address=address, name=name))
    assert b"\n" not in fast.replace(b"\r\n", b"")
    assert max(len(line) for line in fast.split(b"\r\n")) <= 998
    if encoding == "8bit":
        assert b"Content-Transfer-Encoding: 8bit" in fast


def test_subject_prefix_and_reply_to() -> None:
    settings = Settings(
        newsletter=type(SETTINGS.newsletter)(reply_to="編集部 <editors@example.jp>")
    )
    template = MessageTemplate(
        SAMPLE_DRAFT, settings=settings, list_name="staff", subject_prefix="[TEST] "
    )
    fast = template.render(
        to_address="a@example.jp",
        to_name="テスト",
        unsubscribe_url=UNSUB,
        unsubscribe_mailto=MAILTO,
        message_id="<m@example.jp>",
        date="Wed, 25 Nov 2026 09:00:00 +0000",
    )
    slow = build_message(
        SAMPLE_DRAFT,
        settings=settings,
        to_address="a@example.jp",
        to_name="テスト",
        list_name="staff",
        unsubscribe_url=UNSUB,
        unsubscribe_mailto=MAILTO,
        message_id="<m@example.jp>",
        date=DATE,
        subject_prefix="[TEST] ",
    )
    assert_same_message(fast, slow)
    assert parse(fast)["Subject"] == "[TEST] " + SAMPLE_DRAFT.subject
    assert parse(fast)["Reply-To"].addresses[0].display_name == "編集部"


def test_long_html_lines_fall_back_to_base64_and_still_match() -> None:
    long_line = "<p>" + "菊" * 600 + PLACEHOLDERS["name"] + "</p>"
    draft = make_draft(html=SAMPLE_DRAFT.html + long_line)
    template = MessageTemplate(draft, settings=SETTINGS, list_name="weekly")
    assert template.html.encoding == "base64"
    assert template.text.encoding == "8bit"
    fast = template.render(
        to_address="a@example.jp",
        to_name="山田",
        unsubscribe_url=UNSUB + "a@example.jp",
        unsubscribe_mailto=MAILTO,
        message_id="<fixed.1@example.jp>",
        date="Wed, 25 Nov 2026 09:00:00 +0000",
    )
    assert_same_message(fast, reference(draft, address="a@example.jp", name="山田"))


def test_one_recipient_with_a_huge_value_gets_base64_only_for_that_message() -> None:
    draft = make_draft(html="<p>" + "x" * 900 + PLACEHOLDERS["name"] + "</p>\n")
    template = MessageTemplate(draft, settings=SETTINGS, list_name="weekly")
    assert template.html.encoding == "8bit"
    short = template.render(
        to_address="a@example.jp", to_name="山田", unsubscribe_url=UNSUB, unsubscribe_mailto=MAILTO
    )
    assert b'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: 8bit' in short
    name = "長" * 60
    long = template.render(
        to_address="a@example.jp",
        to_name=name,
        unsubscribe_url=UNSUB + "a@example.jp",
        unsubscribe_mailto=MAILTO,
        message_id="<fixed.1@example.jp>",
        date="Wed, 25 Nov 2026 09:00:00 +0000",
    )
    assert b"Content-Transfer-Encoding: base64" in long
    assert max(len(line) for line in long.split(b"\r\n")) <= 998
    assert_same_message(long, reference(draft, address="a@example.jp", name=name))


def test_long_mjml_lines_are_folded_between_attributes_and_stay_8bit() -> None:
    cell = (
        '<td align="left" class="btn" style="border-collapse:collapse; padding:8px 24px">'
        '<a href="https://chrysanthemum-digest.example.jp/articles/a b" style="color:#b5403a">'
        "続きを読む ⇒</a></td>"
    )
    long_line = "<tr>" + cell * 8 + "</tr>"
    assert len(long_line.encode()) > 998
    draft = make_draft(html=SAMPLE_DRAFT.html + long_line + "\n")
    folded = fold_html_lines(draft.html)
    assert max(len(line.encode()) for line in folded.split("\n")) <= 900
    # Only spaces between attributes became line breaks: same page.
    assert folded.replace("\n", " ") == draft.html.replace("\n", " ")
    assert "articles/a b" in folded and "続きを読む ⇒" in folded
    template = MessageTemplate(draft, settings=SETTINGS, list_name="weekly")
    assert template.html.encoding == "8bit"
    fast = template.render(
        to_address="a@example.jp",
        to_name="山田",
        unsubscribe_url=UNSUB + "a@example.jp",
        unsubscribe_mailto=MAILTO,
        message_id="<fixed.1@example.jp>",
        date="Wed, 25 Nov 2026 09:00:00 +0000",
    )
    assert_same_message(fast, reference(draft, address="a@example.jp", name="山田"))
