"""Epsilon lower bounds from one training run (Steinke, Nasr & Jagielski, NeurIPS 2023).

Reference: T. Steinke, M. Nasr, M. Jagielski, "Privacy Auditing with One (1) Training Run",
NeurIPS 2023, arXiv:2305.08846.

The experiment is the paper's auditor (its Algorithm 1). Each of ``m`` canaries is put into
the training set independently with probability 1/2, the model is trained once, and every
canary gets a score, higher meaning "more likely included". The auditor guesses "in" for the
``k+`` highest scores and "out" for the ``k-`` lowest, abstains on the rest, and counts its
correct guesses ``v`` among its ``r = k+ + k-`` guesses.

If training is (eps, delta)-DP, the paper's main theorem (its analysis of that auditor) bounds
how often so many guesses can be right: for every ``v``,

    P[correct >= v] <= f(v) + 2 m delta max_{1 <= i <= v} (f(v - i) - f(v)) / i,
    f(w) = P[Binomial(r, e^eps / (1 + e^eps)) >= w].

With ``delta = 0`` only ``f(v)`` is left: the guesses do no better than ``r`` coin flips that
are each right with probability ``e^eps / (1 + e^eps)`` -- randomized response, the most
accurate eps-DP guesser. The second term is the price of ``delta > 0``. The right-hand side
is a p-value for the hypothesis "training is (eps, delta)-DP"; it is the one the authors'
reference code in the paper's Appendix D computes. It grows with eps, and the lower bound
``epsilon_hat`` is where it reaches ``1 - confidence``: every smaller eps is rejected at that
level, so an algorithm that really is (eps, delta)-DP yields ``epsilon_hat > eps`` with
probability at most ``1 - confidence``.

Two things the guarantee rests on cannot be checked here: that the canaries really were
included independently with probability 1/2, and that the scores were computed from the
trained model alone, without looking at which canaries were included.

:func:`epsilon_lower_bound` turns counts into the bound; :func:`audit_canaries` makes the
guesses from scores, for several numbers of guesses, and reports the best bound;
:func:`canary_scores` scores speech canaries (``voxaudit.data.canaries``) with a model.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
from scipy import optimize, stats
from scipy.special import expit

from voxaudit.data.corpus import Utterance
from voxaudit.errors import VoxauditError
from voxaudit.models.base import SpeakerEncoder, SpeechRecognizer, UtteranceClassifier

# Seed of the random order that breaks ties between equal scores. Breaking them by position
# instead would let the order in which canaries are listed (say, members last) decide the
# guesses, and that order may depend on which canaries were included, which voids the bound.
_TIE_BREAK_SEED = 0


def epsilon_lower_bound(
    correct: int,
    guesses: int,
    canaries: int,
    delta: float = 1e-5,
    confidence: float = 0.95,
) -> float:
    """The epsilon that ``correct`` right guesses out of ``guesses`` prove, at ``confidence``.

    Training that is (eps, delta)-DP for some eps below the returned value would produce this
    many correct guesses with probability under ``1 - confidence``, so such a claim is
    refuted at that level.

    Parameters
    ----------
    correct:
        Correct guesses ``v`` (an "in" guess on an included canary, or an "out" guess on an
        excluded one).
    guesses:
        Guesses made ``r``, abstentions not counted.
    canaries:
        Canaries ``m``, each included independently with probability 1/2, guessed on or not.
        Only the ``delta`` term depends on it.
    delta:
        The delta of the (eps, delta)-DP hypothesis, in [0, 1).
    confidence:
        The probability, in (0, 1), with which the bound holds.

    Returns
    -------
    float
        The lower bound ``epsilon_hat``; 0.0 when the guesses support no positive epsilon.
    """
    _check_count("canaries", canaries, minimum=1)
    _check_count("guesses", guesses, minimum=0)
    _check_count("correct", correct, minimum=0)
    if guesses > canaries:
        raise VoxauditError(
            f"guesses must be at most canaries (got guesses={guesses}, canaries={canaries})"
        )
    if correct > guesses:
        raise VoxauditError(
            f"correct must be at most guesses (got correct={correct}, guesses={guesses})"
        )
    _check_delta(delta)
    _check_confidence(confidence)
    significance = 1.0 - confidence

    def excess(eps: float) -> float:
        return _p_value(eps, correct, guesses, canaries, delta) - significance

    if excess(0.0) >= 0:
        return 0.0
    # The p-value grows with eps up to 1 (e^eps / (1 + e^eps) rounds to 1.0 by eps = 64), so
    # doubling finds a bracket and the root inside it is the one crossing. The growth is plain
    # for delta = 0 (a binomial tail in its success probability) and for 2 m delta <= 1 (each
    # candidate in the max is then a non-negative mix of two such tails); beyond that, the
    # paper's own bisection assumes it as well.
    low, high = 0.0, 1.0
    while excess(high) < 0:
        low, high = high, 2.0 * high
    return float(optimize.brentq(excess, low, high, xtol=1e-10))


def audit_canaries(
    scores: Sequence[float] | np.ndarray,
    included: Sequence[bool] | np.ndarray,
    delta: float = 1e-5,
    confidence: float = 0.95,
    guess_counts: Sequence[int] | None = None,
) -> dict:
    """The one-run epsilon lower bound from canaries' scores, swept over the number of guesses.

    For each number of guesses ``r``, the auditor guesses "in" on the ``ceil(r / 2)`` highest
    scores and "out" on the ``floor(r / 2)`` lowest, abstaining on the rest, and the bound is
    computed with :func:`epsilon_lower_bound`. Fewer guesses are more accurate, more guesses
    more numerous; the sweep looks for the best trade-off.

    Taking the best of several bounds would overstate it: each holds with probability
    ``confidence``, but the chance that at least one of them fails is larger. So each ``r`` is
    evaluated at the Bonferroni-corrected confidence ``1 - (1 - confidence) / len(sweep)``,
    which makes all of them -- and therefore their maximum -- hold together with probability
    at least ``confidence``. The reported ``epsilon`` holds at the stated ``confidence``.

    Equal scores are put in a fixed random order (independent of ``included``) before the
    highest and lowest are taken, so that the listing order of canaries cannot steer guesses.

    Parameters
    ----------
    scores:
        One finite score per canary, higher meaning more likely included.
    included:
        Whether each canary was in the training set. The bound assumes each was included
        independently with probability 1/2 and that the scores did not look at this.
    delta:
        The delta of the (eps, delta)-DP hypothesis, in [0, 1).
    confidence:
        The probability, in (0, 1), with which the reported ``epsilon`` holds.
    guess_counts:
        The numbers of guesses ``r`` to try, each between 1 and the number of canaries ``m``.
        By default 10, 20, 50, 100, 200, 500, 1000, ... below ``m``, and ``m`` itself.

    Returns
    -------
    dict
        ``epsilon`` (the largest bound over the sweep), ``guesses`` and ``correct`` (of the
        ``r`` that gave it, the fewest guesses on ties), ``canaries`` (``m``), ``delta``,
        ``confidence``, and ``sweep``: one ``{"guesses", "correct", "epsilon"}`` per ``r`` in
        increasing order, each ``epsilon`` at the corrected confidence.
    """
    scores, included = _checked_canaries(scores, included)
    _check_delta(delta)
    _check_confidence(confidence)
    m = scores.size
    counts = _default_guess_counts(m) if guess_counts is None else _checked_counts(guess_counts, m)
    per_count_confidence = 1.0 - (1.0 - confidence) / len(counts)

    tie_break = np.random.default_rng(_TIE_BREAK_SEED).permutation(m)
    lowest_first = np.lexsort((tie_break, scores))
    sweep = []
    for r in counts:
        guessed_in = lowest_first[m - (r + 1) // 2 :]
        guessed_out = lowest_first[: r // 2]
        correct = int(included[guessed_in].sum() + (~included[guessed_out]).sum())
        epsilon = epsilon_lower_bound(correct, r, m, delta, per_count_confidence)
        sweep.append({"guesses": r, "correct": correct, "epsilon": epsilon})

    best = max(sweep, key=lambda row: row["epsilon"])  # max keeps the first on ties
    return {
        "epsilon": best["epsilon"],
        "guesses": best["guesses"],
        "correct": best["correct"],
        "canaries": m,
        "delta": float(delta),
        "confidence": float(confidence),
        "sweep": sweep,
    }


def epsilon_ceiling(
    canaries: int,
    delta: float = 1e-5,
    confidence: float = 0.95,
    guess_counts: Sequence[int] | None = None,
) -> float:
    """The largest bound :func:`audit_canaries` can give with ``canaries`` canaries: every
    guess right. A bound near it is limited by the canaries, not by the model's privacy.

    Parameters
    ----------
    canaries:
        Canaries ``m``.
    delta, confidence, guess_counts:
        As for :func:`audit_canaries`.
    """
    _check_count("canaries", canaries, minimum=2)
    counts = (
        _default_guess_counts(canaries)
        if guess_counts is None
        else _checked_counts(guess_counts, canaries)
    )
    per_count_confidence = 1.0 - (1.0 - confidence) / len(counts)
    return max(epsilon_lower_bound(r, r, canaries, delta, per_count_confidence) for r in counts)


def canary_scores(
    model: UtteranceClassifier | SpeechRecognizer | SpeakerEncoder,
    units: Sequence[Sequence[Utterance]],
    reference: UtteranceClassifier | SpeechRecognizer | SpeakerEncoder | None = None,
    label: str = "speaker",
    batch_size: int = 32,
) -> np.ndarray:
    """One score per canary, higher meaning more likely trained on.

    A classifier's or recognizer's score is minus its loss on the canary's own target (the
    wrong label, the random transcript; a recognizer's per character); a speaker encoder's
    is how alike it finds a canary speaker's utterances (their mean pairwise cosine
    similarity), which training on that speaker raises. With a ``reference`` model that
    trained on no canary (a base, a model of other data), the score is the target's minus the
    reference's: what is hard for every model stops looking like exclusion.

    Parameters
    ----------
    model:
        The trained model, any model of the three protocols in ``voxaudit.models.base``.
    units:
        Per canary, its utterances (one, or a synthetic speaker's several).
    reference:
        A model of the same kind that trained on no canary, or None.
    label:
        Classifiers: what their classes are (``voxaudit.models.classifier.label_function``).
    batch_size:
        Utterances per model call.
    """
    scores = _raw_canary_scores(model, units, label, batch_size)
    if reference is not None:
        scores = scores - _raw_canary_scores(reference, units, label, batch_size)
    return scores


def _raw_canary_scores(
    model: UtteranceClassifier | SpeechRecognizer | SpeakerEncoder,
    units: Sequence[Sequence[Utterance]],
    label: str,
    batch_size: int,
) -> np.ndarray:
    utterances = [u for unit in units for u in unit]
    sizes = [len(unit) for unit in units]
    if not utterances or min(sizes) == 0:
        raise VoxauditError("every canary needs at least one utterance")

    def batched(call, targets=None) -> list:
        out: list = []
        for start in range(0, len(utterances), batch_size):
            chunk = utterances[start : start + batch_size]
            waves = [u.load(model.sample_rate) for u in chunk]
            given = () if targets is None else (targets[start : start + len(chunk)],)
            out.extend(call(waves, *given))
        return out

    if isinstance(model, SpeakerEncoder):
        embeddings = np.asarray(batched(model.embed), dtype=float)
        # Cosines: the protocol promises unit vectors, but an adapter may not keep it.
        embeddings /= np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        scores, start = [], 0
        for size in sizes:
            unit = embeddings[start : start + size]
            start += size
            if size < 2:
                raise VoxauditError("a speaker canary needs at least 2 utterances to compare")
            similarity = unit @ unit.T
            scores.append((similarity.sum() - np.trace(similarity)) / (size * (size - 1)))
        return np.asarray(scores, dtype=float)
    if isinstance(model, UtteranceClassifier):
        from voxaudit.models.classifier import label_function

        label_of = label_function(label)
        losses = np.asarray(batched(model.utterance_loss, [label_of(u) for u in utterances]))
    elif isinstance(model, SpeechRecognizer):
        transcripts = [u.transcript for u in utterances]
        losses = np.asarray(batched(model.utterance_loss, transcripts), dtype=float)
        losses = losses / np.maximum(1, [len(t) for t in transcripts])
    else:
        raise VoxauditError(
            f"{type(model).__name__} is no classifier, speech recognizer or speaker encoder"
        )
    means = np.add.reduceat(losses.astype(float), np.cumsum([0, *sizes[:-1]])) / np.asarray(sizes)
    return -means


def _p_value(eps: float, correct: int, guesses: int, canaries: int, delta: float) -> float:
    """The paper's bound on P[correct guesses >= ``correct``] under (eps, delta)-DP.

    Hand-written because the bound is the paper's own, with no SciPy counterpart; SciPy
    supplies the binomial tails and probabilities it is built from.
    """
    accuracy = expit(eps)  # e^eps / (1 + e^eps): how often eps-DP randomized response is right
    tail = float(stats.binom.sf(correct - 1, guesses, accuracy))  # f(v) = P[B >= v]
    if delta == 0 or correct == 0:
        return tail
    shifts = np.arange(1, correct + 1)
    # f(v - i) - f(v) = P[v - i <= B < v], the mass of the i outcomes just below v.
    below = np.cumsum(stats.binom.pmf(correct - shifts, guesses, accuracy))
    return min(1.0, tail + 2 * canaries * delta * float(np.max(below / shifts)))


def _default_guess_counts(m: int) -> list[int]:
    """10, 20, 50, 100, 200, 500, ... below ``m``, then ``m`` (guessing on every canary)."""
    counts = []
    decade = 10
    while decade < m:
        counts += [c for c in (decade, 2 * decade, 5 * decade) if c < m]
        decade *= 10
    return [*counts, m]


def _checked_counts(guess_counts: Sequence[int], m: int) -> list[int]:
    counts = list(guess_counts)
    if not counts:
        raise VoxauditError("guess_counts must name at least one number of guesses")
    for r in counts:
        if not _is_int(r) or not 1 <= r <= m:
            raise VoxauditError(
                f"guess_counts must be integers from 1 to the number of canaries {m} (got {r!r})"
            )
    return sorted({int(r) for r in counts})


def _checked_canaries(
    scores: Sequence[float] | np.ndarray, included: Sequence[bool] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    try:
        scores = np.asarray(scores, dtype=float)
    except (TypeError, ValueError) as err:
        raise VoxauditError(f"scores must be numbers ({err})") from None
    included = np.asarray(included)
    if scores.ndim != 1:
        raise VoxauditError(f"scores must be one-dimensional (got shape {scores.shape})")
    if included.ndim != 1 or included.size != scores.size:
        raise VoxauditError(
            f"included must have one entry per score (got shape {included.shape} "
            f"for {scores.size} scores)"
        )
    if scores.size < 2:
        raise VoxauditError(f"scores must cover at least 2 canaries (got {scores.size})")
    if included.dtype != bool:
        raise VoxauditError(f"included must be boolean (got dtype {included.dtype})")
    if not np.all(np.isfinite(scores)):
        raise VoxauditError(f"scores must be finite (got {int((~np.isfinite(scores)).sum())} not)")
    return scores, included


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_count(name: str, value: object, minimum: int) -> None:
    if not _is_int(value) or value < minimum:
        raise VoxauditError(f"{name} must be an integer >= {minimum} (got {value!r})")


def _check_delta(delta: float) -> None:
    if not (isinstance(delta, numbers.Real) and 0 <= delta < 1):
        raise VoxauditError(f"delta must be in [0, 1) (got {delta!r})")


def _check_confidence(confidence: float) -> None:
    if not (isinstance(confidence, numbers.Real) and 0 < confidence < 1):
        raise VoxauditError(f"confidence must be in (0, 1) (got {confidence!r})")
