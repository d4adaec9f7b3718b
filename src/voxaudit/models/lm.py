"""A character n-gram language model for CTC beam search (shallow fusion).

Written out here rather than taken from a library: KenLM's estimator (``lmplz``) is a C++
binary that is not on PyPI, and ``nltk.lm`` answers one probability per call through a Python
recursion, far too slow inside a beam search that asks about every label of every frame. An
interpolated Witten-Bell n-gram over a few dozen characters is a few dozen lines, and caching
each context's whole next-character distribution makes the search's queries cheap.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

#: Context padding before the first character: no token id is negative.
_START = -1


class CharNgramLM:
    """Interpolated Witten-Bell n-gram over token ids ``[1, vocab_size)``.

    Id 0, the CTC blank, never a character, stands for the end of the sentence, so
    ``log_probs(context)`` lines up with a CTC model's output and its entry 0 is the
    probability that the sentence ends here. Fit it on training transcripts only.
    """

    def __init__(self, vocab_size: int, order: int = 8) -> None:
        if vocab_size < 2:
            raise ValueError(
                f"vocab_size must be at least 2 (end and one character); got {vocab_size}"
            )
        if order < 1:
            raise ValueError(f"order must be at least 1; got {order}")
        self.vocab_size = vocab_size
        self.order = order

    def fit(self, sequences: Iterable[Sequence[int]]) -> CharNgramLM:
        """Count every context of up to ``order - 1`` ids and what follows it."""
        counts: dict[tuple[int, ...], Counter[int]] = defaultdict(Counter)
        n_sequences = 0
        for sequence in sequences:
            ids = [int(i) for i in sequence]
            bad = [i for i in ids if not 0 < i < self.vocab_size]
            if bad:
                raise ValueError(
                    f"sequence {n_sequences}: token id(s) {sorted(set(bad))} outside the "
                    f"characters [1, {self.vocab_size})"
                )
            padded = [_START] * (self.order - 1) + ids
            for position, symbol in enumerate([*ids, 0]):
                end = position + self.order - 1
                for length in range(self.order):
                    counts[tuple(padded[end - length : end])][symbol] += 1
            n_sequences += 1
        if not n_sequences:
            raise ValueError("no sequences to fit the language model on")
        self.counts_ = dict(counts)
        self._cache: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}
        return self

    def log_probs(self, context: Sequence[int]) -> np.ndarray:
        """``[vocab_size]`` log P(next id | context); entry 0 is the end of the sentence."""
        return self._distribution(self._context(context))[1]

    def score(self, sequence: Sequence[int]) -> float:
        """Log-probability of the whole sequence, its end included."""
        ids = [int(i) for i in sequence]
        return float(sum(self.log_probs(ids[:i])[symbol] for i, symbol in enumerate([*ids, 0])))

    def _context(self, context: Sequence[int]) -> tuple[int, ...]:
        if not hasattr(self, "counts_"):
            raise RuntimeError("the language model is not fitted: call fit first")
        length = self.order - 1
        if length == 0:
            return ()
        tail = [int(i) for i in context[-length:]]
        return tuple([_START] * (length - len(tail)) + tail)

    def _distribution(self, context: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, log-probabilities) after ``context``, interpolated with shorter ones."""
        cached = self._cache.get(context)
        if cached is not None:
            return cached
        seen = np.zeros(self.vocab_size)
        for symbol, count in self.counts_.get(context, {}).items():
            seen[symbol] = count
        total, types = seen.sum(), np.count_nonzero(seen)
        if not context:  # add-one unigram: every character keeps some probability
            probs = (seen + 1.0) / (total + self.vocab_size)
        else:
            lower = self._distribution(context[1:])[0]
            # Witten-Bell: the more kinds of continuation a context has, the more weight the
            # shorter context's distribution gets.
            probs = lower if total == 0 else (seen + types * lower) / (total + types)
        self._cache[context] = (probs, np.log(probs))
        return self._cache[context]


@dataclass(frozen=True)
class LMFusion:
    """Shallow fusion for CTC beam search: rank prefixes by
    log p_ctc + ``weight`` * log p_lm + ``length_bonus`` * characters.

    The bonus offsets the language model's cost per character, which would otherwise favour
    dropping characters.
    """

    lm: CharNgramLM
    weight: float = 0.5
    length_bonus: float = 1.0

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"the language-model weight must be >= 0; got {self.weight}")
