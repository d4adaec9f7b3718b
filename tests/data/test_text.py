from hypothesis import given
from hypothesis import strategies as st

from voxaudit.data.text import ALPHABET, digit_word, normalize_transcript


def test_normalizes_librispeech_style_text():
    assert normalize_transcript("HE SAID, \u201cDON'T GO!\u201d") == "he said don't go"


def test_spells_digits_and_splits_hyphens():
    assert normalize_transcript("Call 911 - twenty-one") == "call nine one one twenty one"
    assert digit_word("7") == "seven"


def test_strips_accents_and_quote_apostrophes():
    assert normalize_transcript("'Café' naïve  o'clock'") == "cafe naive o'clock"


@given(st.text())
def test_output_uses_only_the_alphabet_and_is_idempotent(text):
    once = normalize_transcript(text)
    assert set(once) <= set(ALPHABET)
    assert once == once.strip() and "  " not in once
    assert normalize_transcript(once) == once
