"""Transcript normalization shared by corpora, synthesis and the ASR models, in any script.

A normalized transcript holds letters and combining marks of any script (casefolded, accents
and vowel signs kept), digits (kept, or spelled out for a language with a digit table),
apostrophes inside words and single spaces between words. Scripts written without spaces, such
as Chinese, keep their characters as they are: no word segmentation is attempted, so their
error rate to report is the CER.
"""

from __future__ import annotations

import re
import unicodedata

#: The English characters the ASR models predicted before alphabets were taken from the
#: training transcripts; the default alphabet, so older checkpoints and presets rebuild as before.
ALPHABET = " '" + "abcdefghijklmnopqrstuvwxyz"

#: Per language, the words of the digits 0-9, for spelling digits out.
DIGIT_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
}

# Apostrophe look-alikes that transcripts use inside words ("don’t", "don`t").
_APOSTROPHES = str.maketrans({"\u2019": "'", "`": "'"})
_SPACES = re.compile(r" +")
# Apostrophes only survive inside words ("don't"), not as quotes around them.
_QUOTES = re.compile(r"(^|\s)'+|'+(\s|$)")


def digit_word(digit: int | str, language: str = "en") -> str:
    """The word for a single digit, e.g. ``7 -> "seven"``.

    Parameters
    ----------
    digit:
        The digit, as a number or a character of any script's decimal digits.
    language:
        A language of ``DIGIT_WORDS``.
    """
    return DIGIT_WORDS[language][int(digit)]


def normalize_transcript(text: str, language: str | None = None) -> str:
    """Casefold, keep letters and marks of any script, digits and inner apostrophes; one space
    between words.

    NFKC first, so that compatibility forms (fullwidth letters and digits, ligatures) read as
    their plain characters. Punctuation, symbols, controls and separators become spaces, so
    that "twenty-one" reads as two words; invisible format characters (bidirectional marks,
    soft hyphens, joiners) are removed. Digits of any script are kept as they are unless
    ``language`` has a digit table, which spells each one out as a word.

    Parameters
    ----------
    text:
        The transcript as written.
    language:
        The transcript's language code (e.g. ``"en"``); only a language of ``DIGIT_WORDS``
        changes the result, by spelling digits out. None keeps digits.
    """
    text = "".join(
        c for c in unicodedata.normalize("NFKC", text) if unicodedata.category(c) != "Cf"
    )
    # Casefolding can leave text that composes again ("ǰ" folds to "j" and a caron), and
    # removing format characters can bring a mark next to its letter: NFKC once more.
    text = unicodedata.normalize("NFKC", text.casefold())
    spell = language in DIGIT_WORDS
    text = "".join(
        _normalized_char(c, language if spell else None) for c in text.translate(_APOSTROPHES)
    )
    text = _QUOTES.sub(r"\1 \2", text)
    return _SPACES.sub(" ", text).strip()


def _normalized_char(char: str, spelled_in: str | None) -> str:
    """One casefolded NFKC character as itself, a space, or its digit's word in ``spelled_in``."""
    category = unicodedata.category(char)
    if category[0] in "LM" or char == "'":
        return char
    if category == "Nd":
        return char if spelled_in is None else f" {digit_word(char, spelled_in)} "
    return " "
