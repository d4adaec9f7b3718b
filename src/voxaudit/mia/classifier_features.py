"""Per-utterance membership features of an utterance classifier, as far as the threat lets one see.

``ClassifierFeatures(...).extract(model, waveforms, labels, ids, speakers)`` queries a classifier
(a ``SpokenClassifier``, usually wrapped in ``voxaudit.models.access.Access``) and returns a
``FeatureTable``. What it extracts follows from the methods the model exposes (``hasattr``):

==========================  ===========  ==========================================================
exposed                     family       columns
==========================  ===========  ==========================================================
``predict`` (black box)     prediction   ``correct``: 1 when the predicted label is the true one
                            noise        ``noise_snr{S}_correct``: share of noisy copies predicted
                                         as the true label; ``boundary_snr_db``
``predict_proba``           probability  ``prob_top1`` ... ``prob_top{k}``: the sorted probability
(grey box)                               vector (Shokri et al.), zero-padded past the classes
``utterance_loss``          loss         ``loss``: cross-entropy of the true label
(grey box)                  confidence   ``confidence`` (true-class probability), ``entropy``,
                                         ``modified_entropy`` (Song & Mittal 2021)
==========================  ===========  ==========================================================

Modified entropy is ``-(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)``: low when the
model is confident *and* right, unlike the entropy, which is low when it is confident either way.
The loss comes from the model's ``utterance_loss`` (computed from its logits) rather than from
``-log`` of the float32 probability, which rounds to 1 for a well-fitted member and would tie
every member at a loss of 0. A true label outside the model's classes (a shadow that never
trained on that class) has probability 0, loss ``LOSS_CAP`` and is never correct.

Decision-boundary distance (label only). Gaussian noise is added at each SNR of ``snrs_db`` (the
variance ``P / 10^(S/10)``, ``P`` the utterance's own power, as ``AsrFeatures`` does), ``draws``
copies per SNR from a generator seeded by (``seed``, utterance id), the same draws scaled to every
SNR. ``boundary_snr_db`` is the SNR at which the share of copies still predicted as the true label
first falls to one half, linearly interpolated between neighbouring SNRs: a member, far from the
boundary, keeps its label down to a lower SNR (Choquette-Choo et al. 2021, "Label-Only
Membership Inference Attacks"). It is censored at the ends of the grid: an utterance already
misclassified without noise gets one grid step above the highest SNR, one never losing its label
one step below the lowest.

Utterances go in chunks of ``batch_size``: one query of the clean chunk and one of its
``batch_size * len(snrs_db) * draws`` noisy copies (all held in memory). With ``cache_dir`` each
chunk is cached and a rerun resumes (:mod:`voxaudit.mia.feature_cache`).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import entr

from voxaudit.errors import VoxauditError
from voxaudit.mia.feature_cache import data_digest, extract_chunks, utterance_rng
from voxaudit.mia.table import FeatureTable

CACHE_FORMAT = "voxaudit.classifier-features-cache/1"
#: Loss of a true label the model gives probability 0: -log of float32's smallest normal.
LOSS_CAP = float(-np.log(np.finfo(np.float32).tiny))


@dataclass(frozen=True)
class ClassifierFeatures:
    """Extracts per-utterance classifier membership features (see the module docstring)."""

    top_k: int = 3
    snrs_db: tuple[float, ...] = (30.0, 20.0, 10.0, 5.0, 0.0, -5.0)
    draws: int = 8
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "snrs_db", tuple(sorted(map(float, self.snrs_db), reverse=True)))
        for name in ("top_k", "draws", "batch_size"):
            if getattr(self, name) < 1:
                raise VoxauditError(f"classifier features: {name} must be at least 1")
        if self.seed < 0:
            raise VoxauditError(f"classifier features: seed must be non-negative; got {self.seed}")
        if len(set(self.snrs_db)) != len(self.snrs_db):
            raise VoxauditError(f"classifier features: snrs_db {self.snrs_db} repeats a value")

    def extract(
        self,
        model: Any,
        waveforms: Sequence[np.ndarray],
        labels: Sequence[str],
        ids: Sequence[str],
        speakers: Sequence[str],
        cache_dir: str | Path | None = None,
        progress: bool = True,
        model_id: str | None = None,
    ) -> FeatureTable:
        """One row per utterance, in the given order, with the columns ``model`` allows.

        ``model_id`` (e.g. :func:`~voxaudit.mia.feature_cache.model_digest`) is recorded in the
        cache, which then refuses to serve another model's features.
        """
        waves = _checked_inputs(waveforms, labels, ids, speakers)
        labels, ids, speakers = [str(x) for x in labels], list(ids), list(speakers)
        grey = hasattr(model, "predict_proba")
        if not grey and not hasattr(model, "predict"):
            raise VoxauditError(
                f"{type(model).__name__} has neither predict nor predict_proba: "
                "classifier features need an utterance classifier"
            )
        capabilities = ["predict_proba", "utterance_loss"] if grey else ["predict"]
        manifest = {
            "format": CACHE_FORMAT,
            "threat": "grey" if grey else "black",
            "capabilities": capabilities,
            "settings": {
                "top_k": self.top_k if grey else None,
                "snrs_db": list(self.snrs_db),
                "draws": self.draws,
                "seed": self.seed,
            },
            "ids": ids,
            "model": model_id,
            "data": data_digest(waves, labels, ids, speakers),
        }

        def compute(chunk: list[int]) -> FeatureTable:
            return self._chunk(
                model,
                grey,
                [waves[k] for k in chunk],
                [labels[k] for k in chunk],
                [ids[k] for k in chunk],
                [speakers[k] for k in chunk],
            )

        tables = extract_chunks(
            compute, ids, self.batch_size, cache_dir=cache_dir, manifest=manifest,
            what="classifier features", progress=progress,
        )  # fmt: skip
        return FeatureTable.concat_rows(tables).rows(ids)

    def _chunk(
        self,
        model: Any,
        grey: bool,
        waves: list[np.ndarray],
        labels: list[str],
        ids: list[str],
        speakers: list[str],
    ) -> FeatureTable:
        """The feature table of one chunk of utterances."""
        classes = list(model.classes)
        truth = np.array([classes.index(y) if y in classes else -1 for y in labels])
        columns: list[tuple[str, str, np.ndarray]] = []
        if grey:
            probabilities = np.asarray(model.predict_proba(waves), dtype=np.float64)
            predicted = probabilities.argmax(axis=1)
            loss = true_label_loss(model, waves, labels)
            columns += [
                (f"prob_top{j + 1}", "probability", v.astype(np.float64))
                for j, v in enumerate(sorted_probabilities(probabilities, self.top_k).T)
            ]
            columns += [("loss", "loss", loss)]
            columns += [
                ("confidence", "confidence", np.exp(-loss)),
                ("entropy", "confidence", entr(probabilities).sum(axis=1)),
                ("modified_entropy", "confidence", modified_entropy(probabilities, truth, loss)),
            ]
        else:
            predicted = _indices(model.predict(waves), classes)
        correct = predicted == truth
        columns.insert(0, ("correct", "prediction", correct.astype(np.float64)))
        columns += self._noise_columns(model, grey, waves, ids, truth, correct, classes)
        return FeatureTable(
            ids, speakers, [c[0] for c in columns], [c[1] for c in columns],
            np.column_stack([c[2] for c in columns]),
        )  # fmt: skip

    def _noise_columns(
        self,
        model: Any,
        grey: bool,
        waves: list[np.ndarray],
        ids: list[str],
        truth: np.ndarray,
        correct: np.ndarray,
        classes: list[str],
    ) -> list[tuple[str, str, np.ndarray]]:
        """Share of noisy copies still predicted as the true label, per SNR, and the boundary."""
        # numpy draws and adds without the GIL; each utterance has its own generator.
        with ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:
            per_utterance = list(pool.map(self._noisy_copies, waves, ids))
        copies = [c for utterance in per_utterance for c in utterance]  # [utterance][snr][draw]
        if grey:
            predicted = np.asarray(model.predict_proba(copies)).argmax(axis=1)
        else:
            predicted = _indices(model.predict(copies), classes)
        shape = (len(waves), len(self.snrs_db), self.draws)
        kept = (predicted.reshape(shape) == truth[:, None, None]).mean(axis=2)
        columns = [
            (f"noise_snr{snr:g}_correct", "noise", kept[:, s]) for s, snr in enumerate(self.snrs_db)
        ]
        distance = boundary_snr(self.snrs_db, correct, kept)
        return [*columns, ("boundary_snr_db", "noise", distance)]

    def _noisy_copies(self, wave: np.ndarray, utterance_id: str) -> list[np.ndarray]:
        """One utterance's copies with Gaussian noise, ordered ``[snr][draw]``."""
        noise = utterance_rng(self.seed, utterance_id).standard_normal(
            (self.draws, len(wave)), dtype=np.float32
        )
        power = float(np.mean(np.square(wave, dtype=np.float64)))
        return [
            wave + np.float32(np.sqrt(power / 10 ** (snr / 10))) * noise[draw]
            for snr in self.snrs_db
            for draw in range(self.draws)
        ]


def sorted_probabilities(probabilities: np.ndarray, k: int) -> np.ndarray:
    """``[n, k]``: each row's ``k`` largest probabilities, descending, zero-padded past the classes.

    Sorting makes the vector mean the same for any class order and any number of classes, so an
    attack fitted on shadow models transfers to the target (Shokri et al.'s attack input).
    """
    ranked = -np.sort(-np.asarray(probabilities, dtype=np.float64), axis=1)[:, :k]
    return np.pad(ranked, ((0, 0), (0, k - ranked.shape[1])))


def modified_entropy(probabilities: np.ndarray, truth: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Song & Mittal's ``-(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)`` per row.

    ``truth[i]`` is row i's true class (-1: a class the model lacks, so ``p_y = 0``) and
    ``loss[i] = -log p_y``, passed in so that ``p_y`` close to 1 keeps its precision.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    rows = np.arange(len(p))
    # -p log(1 - p) for every class; log1p keeps small p exact, the clip keeps p = 1 finite.
    others = -p * np.log1p(-np.minimum(p, 1 - 1e-12))
    known = truth >= 0
    others[rows[known], truth[known]] = 0.0
    own = -np.expm1(-loss) * loss  # (1 - p_y) * -log p_y
    return own + others.sum(axis=1)


def boundary_snr(snrs_db: Sequence[float], correct: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """The SNR at which the share of copies predicted right first falls to 1/2 (module docstring).

    ``snrs_db`` descending; ``correct[i]`` whether utterance i is predicted right without noise;
    ``kept[i, s]`` the share of its noisy copies at ``snrs_db[s]`` predicted right.
    """
    snrs = np.asarray(snrs_db, dtype=np.float64)
    step = float(snrs[0] - snrs[1]) if len(snrs) > 1 else 10.0
    # The clean input as a point one step above the grid: from it, the curve starts at 1 or 0.
    grid = np.r_[snrs[0] + step, snrs]
    curve = np.column_stack([np.asarray(correct, dtype=np.float64), kept])
    below = curve <= 0.5
    out = np.full(len(curve), grid[-1] - (float(grid[-2] - grid[-1]) if len(snrs) > 1 else step))
    for i in np.flatnonzero(below.any(axis=1)):
        s = int(np.argmax(below[i]))
        if s == 0:
            out[i] = grid[0]
            continue
        # Linear in SNR between the last point above one half and the first at or below it.
        a, b = curve[i, s - 1], curve[i, s]
        out[i] = grid[s - 1] + (grid[s] - grid[s - 1]) * (a - 0.5) / (a - b)
    return out


def true_label_loss(model: Any, waves: Sequence[np.ndarray], labels: Sequence[str]) -> np.ndarray:
    """Cross-entropy of each utterance's true label; ``LOSS_CAP`` for a class the model lacks."""
    classes = set(model.classes)
    loss = np.full(len(waves), LOSS_CAP)
    known = [k for k, label in enumerate(labels) if label in classes]
    if known:
        values = model.utterance_loss([waves[k] for k in known], [labels[k] for k in known])
        loss[known] = np.minimum(np.asarray(values, dtype=np.float64), LOSS_CAP)
    return np.maximum(loss, 0.0)


def _indices(predicted: Sequence[str], classes: list[str]) -> np.ndarray:
    """Class indices of predicted labels."""
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[str(label)] for label in predicted])


def _checked_inputs(
    waveforms: Sequence[np.ndarray],
    labels: Sequence[str],
    ids: Sequence[str],
    speakers: Sequence[str],
) -> list[np.ndarray]:
    """The waveforms as float32 arrays, after checking that the inputs fit together."""
    counts = {
        "waveforms": len(waveforms),
        "labels": len(labels),
        "ids": len(ids),
        "speakers": len(speakers),
    }
    if len(set(counts.values())) > 1:
        raise VoxauditError(
            "classifier features need one label, id and speaker per waveform; got "
            + ", ".join(f"{count} {name}" for name, count in counts.items())
        )
    if not waveforms:
        raise VoxauditError("classifier features: no utterances given")
    if len(set(ids)) != len(ids):
        twice = next(i for i in ids if list(ids).count(i) > 1)
        raise VoxauditError(f"classifier features: utterance id {twice!r} appears twice")
    waves = []
    for wave, row in zip(waveforms, ids, strict=True):
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1 or wave.size == 0:
            raise VoxauditError(
                f"utterance {row!r}: expected a non-empty mono waveform, got shape {wave.shape}"
            )
        waves.append(wave)
    return waves
