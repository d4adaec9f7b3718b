"""Transcript normalization shared by corpora, synthesis and the ASR models."""

from __future__ import annotations

import re
import unicodedata

#: The characters a normalized transcript may hold; the ASR models predict exactly these.
ALPHABET = " '" + "abcdefghijklmnopqrstuvwxyz"

_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_NOT_ALLOWED = re.compile(r"[^a-z' ]+")
_SPACES = re.compile(r" +")


def digit_word(digit: int | str) -> str:
    """The English word for a single digit, e.g. ``7 -> "seven"``."""
    return _DIGIT_WORDS[int(digit)]


def normalize_transcript(text: str) -> str:
    """Lowercase, strip accents and punctuation, spell digits; keep letters, apostrophe, space.

    Hyphens and other separators become spaces so that "twenty-one" reads as two words.
    """
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = text.replace("\u2019", "'").replace("`", "'")
    text = re.sub(r"\d", lambda m: f" {digit_word(m.group())} ", text)
    text = _NOT_ALLOWED.sub(" ", text)
    # Apostrophes only survive inside words ("don't"), not as quotes around them.
    text = re.sub(r"(^|\s)'+|'+(\s|$)", r"\1 \2", text)
    return _SPACES.sub(" ", text).strip()
