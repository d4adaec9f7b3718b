"""Serve-time defenses: the same trained model behind obfuscated outputs.

``defended(model, defense)`` answers like ``model`` (and so can be wrapped in ``Access`` and
audited) but every output passes through ``defense`` first, and a loss is computed from the
defended outputs, because that is all a client of the defended API can compute:

===================  ==========================================  ==================================
defense              classifier probabilities                    speaker embeddings
===================  ==========================================  ==================================
``TopK(k)``          keep the k largest, renormalized            not applicable
``Rounding(d)``      rounded to d decimals                       rounded to d decimals, renormalized
``LabelOnly()``      one-hot of the predicted class              not applicable
``PosteriorNoise``   Gaussian noise, clipped and renormalized    Gaussian noise, renormalized
``MemGuard``         perturbed to fool a defender's attack        not applicable
                     model, predicted label kept
===================  ==========================================  ==================================

An ASR model's defended form is its transcripts alone (the black-box access level): top-k or
rounding of CTC frame posteriors changes what a decoder sees, not only what a client sees.

Each defense except ``MemGuard`` keeps the predicted class (``Rounding`` up to ties).
``PosteriorNoise`` draws fresh noise per query from its seeded generator, so repeated queries
of one recording average it away: that is a property of the defense, and audits should try it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from voxaudit.errors import VoxauditError
from voxaudit.models.base import Waveforms

_FLOOR = 1e-12  # the probability a loss is computed from when a defense zeroed the true class


def _checked(probabilities: np.ndarray) -> np.ndarray:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] < 2:
        raise VoxauditError(
            f"expected [batch, classes >= 2] probabilities, not {probabilities.shape}"
        )
    return probabilities


def _renormalized(values: np.ndarray) -> np.ndarray:
    return values / np.maximum(values.sum(axis=1, keepdims=True), _FLOOR)


def _unit_rows(values: np.ndarray) -> np.ndarray:
    return values / np.maximum(np.linalg.norm(values, axis=1, keepdims=True), _FLOOR)


class TopK:
    """Release only the ``k`` largest probabilities, renormalized to sum to one."""

    applies_to = ("probabilities",)

    def __init__(self, k: int = 1) -> None:
        if k < 1:
            raise VoxauditError(f"TopK: k must be at least 1, not {k}")
        self.k = k

    def __call__(self, probabilities: np.ndarray) -> np.ndarray:
        probabilities = _checked(probabilities)
        kept = np.zeros_like(probabilities)
        top = np.argsort(-probabilities, axis=1, kind="stable")[:, : self.k]
        np.put_along_axis(kept, top, np.take_along_axis(probabilities, top, axis=1), axis=1)
        return _renormalized(kept)


class Rounding:
    """Round each output to ``decimals`` places (embeddings renormalized to unit length)."""

    applies_to = ("probabilities", "embeddings")

    def __init__(self, decimals: int = 2) -> None:
        if decimals < 0:
            raise VoxauditError(f"Rounding: decimals must be >= 0, not {decimals}")
        self.decimals = decimals

    def __call__(self, values: np.ndarray, kind: str = "probabilities") -> np.ndarray:
        rounded = np.round(np.asarray(values, dtype=np.float64), self.decimals)
        return _unit_rows(rounded) if kind == "embeddings" else rounded


class LabelOnly:
    """Release the predicted class alone, as a one-hot vector."""

    applies_to = ("probabilities",)

    def __call__(self, probabilities: np.ndarray) -> np.ndarray:
        probabilities = _checked(probabilities)
        one_hot = np.zeros_like(probabilities)
        np.put_along_axis(one_hot, probabilities.argmax(axis=1)[:, None], 1.0, axis=1)
        return one_hot


class PosteriorNoise:
    """Add Gaussian noise of standard deviation ``scale``; probabilities keep their label.

    Probabilities are clipped at zero and renormalized; where the noise would change the
    predicted class, the clean answer's class is restored by swapping the two entries, so the
    defense costs no accuracy. Embeddings are renormalized to unit length.
    """

    applies_to = ("probabilities", "embeddings")

    def __init__(self, scale: float = 0.05, seed: int = 0) -> None:
        if scale < 0:
            raise VoxauditError(f"PosteriorNoise: scale must be >= 0, not {scale}")
        self.scale = scale
        self.rng = np.random.default_rng(seed)

    def __call__(self, values: np.ndarray, kind: str = "probabilities") -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        noisy = values + self.rng.normal(0.0, self.scale, values.shape)
        if kind == "embeddings":
            return _unit_rows(noisy)
        noisy = _renormalized(np.clip(noisy, 0.0, None))
        rows = np.arange(len(values))
        label, now = values.argmax(axis=1), noisy.argmax(axis=1)
        swapped = noisy.copy()
        swapped[rows, label], swapped[rows, now] = noisy[rows, now], noisy[rows, label]
        return swapped


class MemGuard:
    """MemGuard (Jia et al., 2019): perturb each probability vector so a defender's own
    membership classifier cannot tell, keeping the predicted class.

    ``fit`` trains the defender's classifier (logistic regression on the sorted probability
    vector) on outputs for known members and non-members, as the defender can. A query's
    logits are then moved by gradient descent until that classifier answers 0.5, while a hinge
    keeps the predicted class ahead and an L1 penalty keeps the vector close to the original.
    Jia et al. also randomize whether the noise is added, to meet a utility budget; here every
    answer is perturbed (the strongest setting), and the mean L1 distortion is ``distortion_``.
    """

    applies_to = ("probabilities",)

    def __init__(
        self, steps: int = 100, lr: float = 0.1, l1_weight: float = 0.1, margin: float = 1e-3
    ) -> None:
        self.steps = steps
        self.lr = lr
        self.l1_weight = l1_weight
        self.margin = margin

    def fit(self, probabilities: np.ndarray, is_member: Sequence[bool]) -> MemGuard:
        """Train the defender's membership classifier on its own member/non-member outputs."""
        sorted_probs = -np.sort(-_checked(probabilities), axis=1)
        labels = np.asarray(is_member, dtype=bool)
        if labels.shape != (len(sorted_probs),) or labels.all() or not labels.any():
            raise VoxauditError("MemGuard.fit needs one label per row, members and non-members")
        self.classifier_ = LogisticRegression(max_iter=1000).fit(sorted_probs, labels)
        return self

    def __call__(self, probabilities: np.ndarray) -> np.ndarray:
        if not hasattr(self, "classifier_"):
            raise VoxauditError("MemGuard must be fitted on defender data before it serves")
        clean = torch.as_tensor(_checked(probabilities))
        weight = torch.as_tensor(self.classifier_.coef_[0], dtype=clean.dtype)
        bias = float(self.classifier_.intercept_[0])
        label = clean.argmax(dim=1)
        logits = torch.log(clean.clamp_min(_FLOOR)).requires_grad_(True)
        optimizer = torch.optim.Adam([logits], lr=self.lr)
        for _ in range(self.steps):
            probs = torch.softmax(logits, dim=1)
            decision = torch.sort(probs, dim=1, descending=True).values @ weight + bias
            kept = probs.gather(1, label[:, None]).squeeze(1)
            others = probs.scatter(1, label[:, None], -1.0).max(dim=1).values
            loss = (
                decision.abs()
                + 10.0 * torch.relu(others - kept + self.margin)
                + self.l1_weight * (probs - clean).abs().sum(dim=1)
            ).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            defended = torch.softmax(logits, dim=1)
            # A row whose label the optimizer lost keeps its clean answer: utility comes first.
            flipped = defended.argmax(dim=1) != label
            defended[flipped] = clean[flipped]
        result = defended.numpy()
        self.distortion_ = float(np.abs(result - clean.numpy()).sum(axis=1).mean())
        return result


def defended(model: Any, defense: Any) -> DefendedClassifier | DefendedEncoder:
    """``model`` served through an output ``defense``: what a client of the defended API sees.

    The result has no ``input_gradients``: gradients would bypass the defense.
    """
    if hasattr(model, "predict_proba"):
        kind, wrapper = "probabilities", DefendedClassifier
    elif hasattr(model, "embed"):
        kind, wrapper = "embeddings", DefendedEncoder
    else:
        raise VoxauditError(
            f"{type(model).__name__}: serve-time defenses wrap classifiers and speaker "
            "encoders; an ASR model's defended form is black-box access (transcripts only)"
        )
    applies = getattr(defense, "applies_to", ())
    if kind not in applies:
        raise VoxauditError(
            f"{type(defense).__name__} does not apply to {kind}; it applies to "
            + (", ".join(applies) or "nothing")
        )
    return wrapper(model, defense)


class DefendedClassifier:
    """A classifier whose probabilities pass through ``defense``; see :func:`defended`."""

    def __init__(self, model: Any, defense: Any) -> None:
        self.model = model
        self.defense = defense
        self.sample_rate = model.sample_rate
        self.classes = list(model.classes)

    def predict_proba(self, waveforms: Waveforms) -> np.ndarray:
        return self.defense(np.asarray(self.model.predict_proba(waveforms)))

    def utterance_loss(self, waveforms: Waveforms, labels: Sequence[str]) -> np.ndarray:
        """Cross-entropy computed from the defended probabilities."""
        if len(labels) != len(waveforms):
            raise VoxauditError(f"{len(waveforms)} waveforms but {len(labels)} labels")
        index = {name: i for i, name in enumerate(self.classes)}
        unknown = sorted({str(label) for label in labels} - set(index))
        if unknown:
            raise VoxauditError(f"labels not among the model's classes: {', '.join(unknown)}")
        probabilities = self.predict_proba(waveforms)
        true = probabilities[np.arange(len(labels)), [index[str(label)] for label in labels]]
        return -np.log(np.maximum(true, _FLOOR))


class DefendedEncoder:
    """A speaker encoder whose embeddings pass through ``defense``; see :func:`defended`."""

    def __init__(self, model: Any, defense: Any) -> None:
        self.model = model
        self.defense = defense
        self.sample_rate = model.sample_rate

    def embed(self, waveforms: Waveforms) -> np.ndarray:
        return self.defense(np.asarray(self.model.embed(waveforms)), kind="embeddings")
