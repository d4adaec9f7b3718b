"""The character tokenizer shared by both ASR families."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voxaudit.data.text import ALPHABET, normalize_transcript
from voxaudit.models.tokens import CharTokenizer


def test_layout_blank_characters_then_sos_eos() -> None:
    tok = CharTokenizer()
    assert tok.blank == tok.pad == 0
    assert tok.encode(ALPHABET, normalize=False) == list(range(1, len(ALPHABET) + 1))
    assert (tok.sos, tok.eos) == (len(ALPHABET) + 1, len(ALPHABET) + 2)
    assert tok.ctc_vocab_size == len(ALPHABET) + 1
    assert tok.vocab_size == len(ALPHABET) + 3


def test_round_trip_normalizes_first() -> None:
    tok = CharTokenizer()
    ids = tok.encode("Don't  STOP, 2 cafés!")
    assert tok.decode(ids) == "don't stop two cafes"


@given(st.text(max_size=40))
def test_round_trip_is_the_normalized_text(text: str) -> None:
    tok = CharTokenizer()
    assert tok.decode(tok.encode(text)) == normalize_transcript(text)


def test_decode_skips_blank_sos_eos() -> None:
    tok = CharTokenizer()
    ids = [tok.sos, *tok.encode("hi"), tok.blank, *tok.encode(" yo", normalize=False), tok.eos]
    assert tok.decode(ids) == "hi yo"


def test_unknown_character_is_named() -> None:
    with pytest.raises(ValueError, match="'é'"):
        CharTokenizer().encode("café", normalize=False)
    with pytest.raises(ValueError, match="'x'"):
        CharTokenizer("ab ").encode("ax")


def test_bad_ids_and_alphabets() -> None:
    tok = CharTokenizer()
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])
    with pytest.raises(ValueError, match="distinct"):
        CharTokenizer("abca")
