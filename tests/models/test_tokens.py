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
    ids = tok.encode("Don't  STOP, cafes!")
    assert tok.decode(ids) == "don't stop cafes"


@given(st.text(max_size=40))
def test_round_trip_is_the_normalized_text(text: str) -> None:
    tok = CharTokenizer.from_texts([text])
    assert tok.decode(tok.encode(text)) == normalize_transcript(text)
    assert not tok.unseen([text])


def test_alphabet_from_texts_is_sorted_with_space_and_apostrophe() -> None:
    assert CharTokenizer.from_texts([]).alphabet == " '"
    assert CharTokenizer.from_texts(["Ba, ab!"]).alphabet == " 'ab"
    english = ["the quick brown fox jumps over the lazy dog"]
    assert CharTokenizer.from_texts(english).alphabet == ALPHABET
    texts = ["مرحبا بالعالم", "你好，世界", "Café"]
    forward, backward = CharTokenizer.from_texts(texts), CharTokenizer.from_texts(texts[::-1])
    assert forward.alphabet == backward.alphabet


def test_arabic_and_mandarin_alphabets_round_trip() -> None:
    arabic = ["مَرْحَبًا بِالْعَالَمِ!", "شكرا"]
    tok = CharTokenizer.from_texts(arabic)
    assert set("مرحبالع") | {"\u064e", "\u0652"} <= set(tok.alphabet)  # letters and harakat
    for text in arabic:
        assert tok.decode(tok.encode(text)) == normalize_transcript(text)
    mandarin = CharTokenizer.from_texts(["你好，世界"])
    assert mandarin.alphabet == " '世你好界"
    assert mandarin.decode(mandarin.encode("世界你好")) == "世界你好"


def test_unseen_characters_are_counted_or_skipped() -> None:
    tok = CharTokenizer.from_texts(["مرحبا"])
    assert tok.unseen(["مرحبا", "مرحبا يا"]) == {"ي": 1}
    assert tok.unseen(["مرحبا"]) == {}
    with pytest.raises(ValueError, match="'ي'"):
        tok.encode("مرحبا يا")
    assert tok.decode(tok.encode("مرحبا يا", unknown="skip")) == "مرحبا ا"
    english = CharTokenizer()
    assert english.unseen(["Café 42"]) == {"é": 1, "4": 1, "2": 1}
    assert english.decode(english.encode("Café 42", unknown="skip")) == "caf "
    with pytest.raises(ValueError, match="unknown must be"):
        english.encode("cafe", unknown="replace")  # type: ignore[arg-type]


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
