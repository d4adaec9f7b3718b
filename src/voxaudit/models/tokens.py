"""Character tokens over the normalized transcript alphabet, shared by both ASR families."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Literal

from voxaudit.data.text import ALPHABET, normalize_transcript


class CharTokenizer:
    """Transcripts to ids: 0 is the CTC blank (and padding), then the characters, then sos, eos.

    Blank and padding share id 0 because ``collate`` pads targets with zeros and neither is ever
    a transcript symbol. CTC models predict ids ``[0, ctc_vocab_size)``; attention models predict
    characters and eos out of ``vocab_size`` classes and start decoding from sos.
    """

    blank = 0
    pad = 0

    def __init__(self, alphabet: str = ALPHABET) -> None:
        if len(set(alphabet)) != len(alphabet) or not alphabet:
            raise ValueError(f"the alphabet needs distinct characters, at least one: {alphabet!r}")
        self.alphabet = alphabet
        self._ids = {c: i + 1 for i, c in enumerate(alphabet)}
        self.sos = len(alphabet) + 1
        self.eos = len(alphabet) + 2

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharTokenizer:
        """The tokenizer whose alphabet is the characters of the normalized ``texts``.

        Space and apostrophe are always in it; the characters are sorted by code point, so the
        same texts in any order give the same ids (and an English corpus that uses every
        letter gives ``ALPHABET``).

        Parameters
        ----------
        texts:
            Transcripts, e.g. those of a model's training utterances.
        """
        chars = {" ", "'"}
        for text in texts:
            chars.update(normalize_transcript(text))
        return cls("".join(sorted(chars)))

    @property
    def ctc_vocab_size(self) -> int:
        """Blank plus the characters."""
        return len(self.alphabet) + 1

    @property
    def vocab_size(self) -> int:
        """Blank/pad, the characters, sos and eos."""
        return len(self.alphabet) + 3

    def encode(
        self, text: str, normalize: bool = True, unknown: Literal["raise", "skip"] = "raise"
    ) -> list[int]:
        """Character ids of ``text``.

        Parameters
        ----------
        text:
            A transcript.
        normalize:
            Whether to normalize ``text`` first (``normalize_transcript``).
        unknown:
            What to do with characters outside the alphabet: ``"raise"`` a ValueError naming
            them (training targets must be exact), or ``"skip"`` them (scoring references
            the model never learned to spell; count them with ``unseen``).
        """
        if normalize:
            text = normalize_transcript(text)
        if unknown == "skip":
            return [self._ids[c] for c in text if c in self._ids]
        if unknown != "raise":
            raise ValueError(f"unknown must be 'raise' or 'skip'; got {unknown!r}")
        missing = sorted({c for c in text if c not in self._ids})
        if missing:
            raise ValueError(
                f"character(s) {', '.join(map(repr, missing))} of {text!r} are not in the "
                f"alphabet {self.alphabet!r}"
            )
        return [self._ids[c] for c in text]

    def unseen(self, texts: Iterable[str]) -> Counter[str]:
        """How often each character outside the alphabet occurs in the normalized ``texts``.

        Parameters
        ----------
        texts:
            Transcripts, normalized here as ``encode`` normalizes them by default.
        """
        return Counter(
            c for text in texts for c in normalize_transcript(text) if c not in self._ids
        )

    def decode(self, ids: Iterable[int]) -> str:
        """The characters of ``ids``, skipping blank, sos and eos."""
        chars = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} is outside the vocabulary [0, {self.vocab_size})")
            if 0 < i <= len(self.alphabet):
                chars.append(self.alphabet[i - 1])
        return "".join(chars)
