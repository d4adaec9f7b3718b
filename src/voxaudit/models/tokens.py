"""Character tokens over the normalized transcript alphabet, shared by both ASR families."""

from __future__ import annotations

from collections.abc import Iterable

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

    @property
    def ctc_vocab_size(self) -> int:
        """Blank plus the characters."""
        return len(self.alphabet) + 1

    @property
    def vocab_size(self) -> int:
        """Blank/pad, the characters, sos and eos."""
        return len(self.alphabet) + 3

    def encode(self, text: str, normalize: bool = True) -> list[int]:
        """Character ids of ``text``, normalized first unless ``normalize`` is False."""
        if normalize:
            text = normalize_transcript(text)
        unknown = sorted({c for c in text if c not in self._ids})
        if unknown:
            raise ValueError(
                f"character(s) {', '.join(map(repr, unknown))} of {text!r} are not in the "
                f"alphabet {self.alphabet!r}"
            )
        return [self._ids[c] for c in text]

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
