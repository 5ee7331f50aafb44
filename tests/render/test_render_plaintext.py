"""Plain-text wrapping by display columns: wide characters count two, URLs never break."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest_mail.render.plaintext import display_width, is_url_line, wrap_lines, wrap_text

LEAD = (
    "2025年トランプ再選で世界はどう変わる?一国主義と現実主義が交錯する外交・防衛政策、核軍縮への影響、"
    "北朝鮮との関係、同盟国への波紋…専門家の分析と核戦争の警告から、世界の不安定化と新たなリスクを探る。未来を読み解く。"
)
URL = "https://newsdig.tbs.co.jp/articles/nbc/1539340?display=1&utm_source=chrysanthemum-digest&utm_medium=email"


def test_display_width_counts_wide_and_fullwidth_as_two() -> None:
    assert display_width("abc") == 3
    assert display_width("日本語") == 6
    assert display_width("ＡＢ") == 4  # fullwidth
    assert display_width("ｶﾀｶﾅ") == 4  # halfwidth katakana are narrow
    assert display_width("✅") == 2


def test_japanese_wraps_at_72_columns_without_losing_characters() -> None:
    lines = wrap_lines(LEAD)
    assert len(lines) == 3
    assert all(display_width(line) <= 72 for line in lines)
    assert "".join(lines) == LEAD
    assert display_width(lines[0]) >= 70


@pytest.mark.parametrize("punctuation", ["。", "、", "」"])
def test_closing_punctuation_never_starts_a_line(punctuation: str) -> None:
    # 36 wide characters fill 72 columns exactly; the punctuation would start line two.
    # Nothing hangs past 72: the last あ moves down with it (追い出し).
    text = "あ" * 36 + punctuation + "い" * 10
    lines = wrap_lines(text)
    assert lines[0] == "あ" * 35
    assert lines[1] == "あ" + punctuation + "い" * 10


def test_a_run_of_closing_punctuation_moves_down_with_the_character_before_it() -> None:
    lines = wrap_lines("あ" * 35 + "い」。" + "う" * 5)
    assert lines == ["あ" * 35, "い」。" + "う" * 5]


def test_opening_bracket_never_ends_a_line() -> None:
    text = "あ" * 35 + "「引用」です。"
    lines = wrap_lines(text)
    assert lines[0] == "あ" * 35
    assert lines[1] == "「引用」です。"


def test_urls_are_never_broken_and_stand_alone_when_too_long() -> None:
    text = f"出典はこちらです。詳しくは {URL} をご覧ください。"
    lines = wrap_lines(text)
    assert URL in lines
    assert all(display_width(line) <= 72 for line in lines if line != URL)
    assert is_url_line(URL, width=78)
    assert not is_url_line("あ" * 40, width=78)


def test_english_words_break_at_spaces_and_indents_apply() -> None:
    text = "The quick brown fox jumps over the lazy dog " * 4
    lines = wrap_lines(text.strip(), width=30, indent="・", subsequent_indent="  ")
    assert lines[0].startswith("・The quick")
    assert all(line.startswith("  ") for line in lines[1:])
    assert all(display_width(line) <= 30 for line in lines)
    assert " ".join(line.strip("・ ") for line in lines) == text.strip()


def test_a_word_longer_than_the_line_is_split() -> None:
    lines = wrap_lines("x" * 100, width=40)
    assert lines == ["x" * 40, "x" * 40, "x" * 20]


def test_wrap_text_keeps_paragraph_breaks() -> None:
    assert wrap_text("一行目\n\n三行目") == "一行目\n\n三行目"
    assert wrap_text("") == ""


JAPANESE = "あいうえおかきくけこ漢字仮名交じり文。、「」ー・！？ＡＢ１２"
ALPHABET = JAPANESE + "abcxyz0123 ,.-/"


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet=ALPHABET, max_size=400),
    url=st.sampled_from(["", URL]),
    width=st.integers(min_value=20, max_value=100),
)
def test_wrapping_keeps_every_character_and_the_width(text: str, url: str, width: int) -> None:
    source = f"{text} {url} {text}" if url else text
    lines = wrap_lines(source, width=width)
    # Only spaces may be dropped (at line ends); nothing else is lost or reordered.
    assert "".join(lines).replace(" ", "") == source.replace(" ", "")
    for line in lines:
        if url and url in line:
            assert display_width(line.replace(url, "")) <= width
        else:
            # Hanging punctuation (ぶら下げ) may pass the margin by two wide characters.
            assert display_width(line) <= width + 4, line


@pytest.mark.parametrize("prefix", ["出典:", "see:", "0", "配信停止:"])
def test_a_url_glued_to_text_stays_whole(prefix: str) -> None:
    for url in (URL, "@@unsubscribe_url@@"):
        lines = wrap_lines(prefix + url, width=40)
        assert any(url in line for line in lines)
        assert "".join(lines) == prefix + url
