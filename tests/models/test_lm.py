"""The character n-gram language model and its shallow fusion into CTC beam search."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.models.test_ctc import labelling_probabilities
from voxaudit.models.ctc import CTCModel, ctc_prefix_beam_search
from voxaudit.models.lm import CharNgramLM, LMFusion
from voxaudit.models.recognizer import Recognizer
from voxaudit.models.seq2seq import AttentionModel


def test_witten_bell_by_hand() -> None:
    # Ids: 0 end, 1 "a", 2 "b". One sentence "ab": every symbol once in the unigram counts,
    # so add-one gives 1/3 each; after "a", "b" was seen once (one kind of continuation):
    # P(b | a) = (1 + 1 * 1/3) / (1 + 1) = 2/3, P(a | a) = P(end | a) = (0 + 1/3) / 2 = 1/6.
    lm = CharNgramLM(vocab_size=3, order=2).fit([[1, 2]])
    np.testing.assert_allclose(np.exp(lm.log_probs([1])), [1 / 6, 1 / 6, 2 / 3])
    # Before anything, "a" was seen once after the start.
    np.testing.assert_allclose(np.exp(lm.log_probs([])), [1 / 6, 2 / 3, 1 / 6])
    # A context never seen ("b" only ever preceded the end) backs off: seen once, to end.
    np.testing.assert_allclose(np.exp(lm.log_probs([2])), [2 / 3, 1 / 6, 1 / 6])
    assert lm.score([1, 2]) == pytest.approx(math.log(2 / 3 * 2 / 3 * 2 / 3))


@settings(max_examples=40, deadline=None)
@given(
    sentences=st.lists(st.lists(st.integers(1, 5), max_size=12), min_size=1, max_size=8),
    context=st.lists(st.integers(1, 5), max_size=9),
    order=st.integers(1, 6),
)
def test_every_distribution_sums_to_one(
    sentences: list[list[int]], context: list[int], order: int
) -> None:
    lm = CharNgramLM(vocab_size=6, order=order).fit(sentences)
    probs = np.exp(lm.log_probs(context))
    assert probs.min() > 0
    assert probs.sum() == pytest.approx(1.0)


def test_training_text_is_likelier_than_its_scramble() -> None:
    text = [1, 2, 3, 4, 1, 2, 3, 4, 1, 2]
    lm = CharNgramLM(vocab_size=5, order=4).fit([text] * 3)
    assert lm.score(text) > lm.score(text[::-1]) + 5


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        CharNgramLM(vocab_size=1)
    with pytest.raises(ValueError, match="order"):
        CharNgramLM(vocab_size=3, order=0)
    with pytest.raises(ValueError, match=r"sequence 1: token id\(s\) \[0, 7\]"):
        CharNgramLM(vocab_size=3).fit([[1], [0, 7]])
    with pytest.raises(ValueError, match="no sequences"):
        CharNgramLM(vocab_size=3).fit([])
    with pytest.raises(RuntimeError, match="not fitted"):
        CharNgramLM(vocab_size=3).log_probs([1])
    with pytest.raises(ValueError, match="weight"):
        LMFusion(CharNgramLM(3).fit([[1]]), weight=-1.0)


def _best_fused(log_probs: np.ndarray, fusion: LMFusion) -> list[int]:
    """Exhaustive: every labelling's CTC probability (summed over its paths), plus the fused
    language-model score of its characters and end."""
    totals = labelling_probabilities(log_probs)

    def fused(labelling: tuple[int, ...]) -> float:
        return (
            math.log(totals[labelling])
            + fusion.weight * fusion.lm.score(labelling)
            + fusion.length_bonus * len(labelling)
        )

    return list(max(totals, key=fused))


def test_wide_fused_beam_is_exact() -> None:
    rng = np.random.default_rng(2)
    lm = CharNgramLM(vocab_size=3, order=3).fit([[1, 2, 1], [2, 2], [1]])
    for weight, bonus in [(0.5, 0.0), (1.0, 1.0), (2.0, 0.5)]:
        fusion = LMFusion(lm, weight, bonus)
        for _ in range(8):
            log_probs = np.log(rng.dirichlet(np.full(3, 0.5), size=5))
            assert ctc_prefix_beam_search(log_probs, 64, 0, fusion) == _best_fused(
                log_probs, fusion
            )


def test_the_language_model_settles_what_the_acoustics_leave_open() -> None:
    # Two characters apart, each torn between "a" (1) and "b" (2), "a" slightly ahead; the
    # LM has only ever seen "bb".
    torn, gap = [0.02, 0.55, 0.43], [0.98, 0.01, 0.01]
    log_probs = np.log(np.array([torn, gap, torn]))
    assert ctc_prefix_beam_search(log_probs, beam=4) == [1, 1]
    lm = CharNgramLM(vocab_size=3, order=3).fit([[2, 2]] * 5)
    assert ctc_prefix_beam_search(log_probs, 4, 0, LMFusion(lm, 1.0, 0.0)) == [2, 2]
    # Weight and bonus zero: the plain search.
    assert ctc_prefix_beam_search(log_probs, 4, 0, LMFusion(lm, 0.0, 0.0)) == [1, 1]


def test_recognizer_fuses_for_ctc_only() -> None:
    ctc = CTCModel.from_preset("tiny")
    lm = CharNgramLM(ctc.tokenizer.ctc_vocab_size).fit([ctc.tokenizer.encode("yes no")])
    clip = np.random.default_rng(0).normal(0, 0.1, 4000).astype(np.float32)
    (text,) = Recognizer(ctc, beam=2, lm=LMFusion(lm)).transcribe([clip])
    assert isinstance(text, str)
    with pytest.raises(ValueError, match="CTC models only"):
        Recognizer(AttentionModel.from_preset("tiny"), lm=LMFusion(lm))
