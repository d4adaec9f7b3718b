import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voxaudit.data.text import ALPHABET, DIGIT_WORDS, digit_word, normalize_transcript


def test_normalizes_librispeech_style_text():
    assert normalize_transcript("HE SAID, \u201cDON\u2019T GO!\u201d") == "he said don't go"
    assert normalize_transcript("don`t") == "don't"


def test_digits_are_kept_unless_the_language_spells_them():
    assert normalize_transcript("Call 911 - twenty-one") == "call 911 twenty one"
    assert (
        normalize_transcript("Call 911 - twenty-one", language="en")
        == "call nine one one twenty one"
    )
    # A language without a digit table keeps them too.
    assert normalize_transcript("Call 911", language="xx") == "call 911"
    assert digit_word("7") == "seven" and digit_word(0) == "zero"


def test_fullwidth_and_other_scripts_digits():
    assert normalize_transcript("\uff11\uff12\uff13") == "123"
    assert normalize_transcript("\uff11\uff12\uff13", language="en") == "one two three"
    # Arabic-Indic digits stay as written, or read as their values.
    assert normalize_transcript("\u0663 apples") == "\u0663 apples"
    assert normalize_transcript("\u0663 apples", language="en") == "three apples"


def test_keeps_accents_and_drops_quote_apostrophes():
    assert normalize_transcript("'Café' naïve  o'clock'") == "café naïve o'clock"
    assert normalize_transcript("Café déjà-vu") == "café déjà vu"
    # Decomposed input composes: the same word has the same characters.
    assert normalize_transcript("Cafe\u0301") == "café"


def test_casefolds():
    assert normalize_transcript("Straße STRASSE") == "strasse strasse"
    assert normalize_transcript("ΣΟΦΊΑ") == "σοφία"


def test_arabic_keeps_letters_and_harakat():
    assert normalize_transcript("مرحبا بالعالم!") == "مرحبا بالعالم"
    voweled = "مَرْحَبًا بِالْعَالَمِ"
    assert normalize_transcript(voweled + "؟") == voweled
    assert any(unicodedata.category(c) == "Mn" for c in normalize_transcript(voweled))
    # Bidirectional marks are invisible: removed, not made into word breaks.
    assert normalize_transcript("\u200fمرحبا\u200f") == "مرحبا"


def test_mandarin_keeps_characters_without_segmenting():
    assert normalize_transcript("你好，世界。") == "你好 世界"
    assert normalize_transcript("我爱北京天安门") == "我爱北京天安门"


def test_devanagari_keeps_vowel_signs():
    assert normalize_transcript("नमस्ते, दुनिया!") == "नमस्ते दुनिया"


@given(st.text(), st.sampled_from([None, "en"]))
def test_output_is_letters_marks_digits_apostrophes_and_is_idempotent(text, language):
    once = normalize_transcript(text, language)
    assert once == once.strip() and "  " not in once
    assert all(c in " '" or unicodedata.category(c)[0] in "LM" or c.isdecimal() for c in once)
    assert normalize_transcript(once, language) == once


@given(st.text())
def test_spelled_english_is_normalized_without_a_language(text):
    # Loaders normalize in the corpus's language; tokenizers again without one.
    spelled = normalize_transcript(text, "en")
    assert not any(c.isdigit() for c in spelled)
    assert normalize_transcript(spelled) == spelled


@pytest.mark.parametrize("language", sorted(DIGIT_WORDS))
def test_digit_tables_have_ten_normalized_words(language):
    words = DIGIT_WORDS[language]
    assert len(words) == 10 and len(set(words)) == 10
    assert all(normalize_transcript(w) == w for w in words)


def test_english_text_stays_in_the_default_alphabet():
    text = normalize_transcript("It's 4 o'clock, ISN'T it?", language="en")
    assert text == "it's four o'clock isn't it"
    assert set(text) <= set(ALPHABET)
