"""Speaker-level membership baselines that SLMIA-SR is compared with (paper 001's tables).

Each is a transformer from embeddings to a feature table with one row per speaker; the audit
thresholds a single column (fitted on shadow data) or fits a shadow classifier on the columns.

* LRL-MIA (Li et al. 2022, user-level membership inference against metric embedding learning):
  a user is a member when the embeddings of their samples lie close together; the score is their
  mean pairwise cosine similarity (:class:`PairwiseSimilarity`).
* Loss threshold: the GE2E softmax loss of the speaker's embeddings, each scored against the
  speaker's own leave-one-out centroid and the imposters' centroids, is low for training speakers
  (:class:`CentroidLoss`).
* EncoderMI (Liu et al. 2021): an encoder maps augmented views of a training input closer
  together; the cosine similarities among the embeddings of augmented views of each voice, sorted
  and averaged over the speaker's voices, feed a classifier (EncoderMI-V), their mean a threshold
  (EncoderMI-T) (:class:`AugmentedViewSimilarity`, :func:`augmented_views`).
* FaceAuditor (Chen et al. 2023): the user's probe samples are compared with the user's reference
  samples; the sorted probe-to-reference similarities feed a classifier (FaceAuditor-S)
  (:class:`ProbeReferenceSimilarity`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.special import logsumexp

from voxaudit.data.audio import resample
from voxaudit.errors import VoxauditError
from voxaudit.mia.slmia import similarity, unit_centroid
from voxaudit.mia.table import FeatureTable

FAMILY = "aggregate"  # per-speaker statistics of embeddings


def _table(speakers: Sequence[str], columns: Sequence[str], rows: list[np.ndarray]) -> FeatureTable:
    names = tuple(speakers)
    values = np.array(rows, dtype=np.float64).reshape(len(names), len(columns))
    return FeatureTable(names, names, tuple(columns), (FAMILY,) * len(columns), values)


def _at_least(speaker: str, embeddings: np.ndarray, n: int, what: str) -> np.ndarray:
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if embeddings.ndim != 2 or len(embeddings) < n:
        raise VoxauditError(f"speaker {speaker!r}: {what} needs at least {n} voices")
    return embeddings


class PairwiseSimilarity:
    """LRL-MIA's score: the mean cosine similarity over pairs of a speaker's embeddings."""

    column = "mean_pairwise_cosine"

    def fit(self, imposters: Sequence[np.ndarray] = ()) -> PairwiseSimilarity:
        return self

    def transform(self, speakers: Mapping[str, np.ndarray]) -> FeatureTable:
        rows = []
        for speaker, embeddings in speakers.items():
            e = _at_least(speaker, embeddings, 2, "LRL-MIA")
            rows.append(np.array([similarity(e, e, "cosine")[np.triu_indices(len(e), 1)].mean()]))
        return _table(list(speakers), [self.column], rows)


class CentroidLoss:
    """The GE2E softmax loss of a speaker's embeddings against imposter centroids.

    Each embedding is scored ``scale * cos + bias`` against the speaker's centroid of its other
    embeddings and against every imposter centroid; the loss is the mean over embeddings of
    ``-own + logsumexp(all)``. ``scale`` and ``bias`` are GE2E's initial values: the model's own
    are not exposed by an embedding API.
    """

    column = "ge2e_loss"

    def __init__(self, scale: float = 10.0, bias: float = -5.0) -> None:
        self.scale = scale
        self.bias = bias

    def fit(self, imposters: Sequence[np.ndarray]) -> CentroidLoss:
        if not len(imposters):
            raise VoxauditError("the centroid loss needs at least one imposter")
        self.imposter_centroids_ = np.stack([unit_centroid(e) for e in imposters])
        return self

    def transform(self, speakers: Mapping[str, np.ndarray]) -> FeatureTable:
        rows = []
        for speaker, embeddings in speakers.items():
            e = _at_least(speaker, embeddings, 2, "the centroid loss")
            n = len(e)
            # Leave-one-out centroids, as GE2E scores an utterance against its own speaker.
            own_centroids = np.stack([unit_centroid(np.delete(e, i, axis=0)) for i in range(n)])
            own = np.einsum("nd,nd->n", e, own_centroids) / np.linalg.norm(e, axis=1)
            others = similarity(e, self.imposter_centroids_, "cosine")
            logits = self.scale * np.column_stack([own, others]) + self.bias
            rows.append(np.array([np.mean(logsumexp(logits, axis=1) - logits[:, 0])]))
        return _table(list(speakers), [self.column], rows)


def augmented_views(
    waveform: np.ndarray, sample_rate: int, views: int, seed: int | Sequence[int] = 0
) -> list[np.ndarray]:
    """``views`` random augmentations of one voice: a crop, a speed change and added noise.

    Each view keeps a random 70-100% stretch, is resampled at 0.9-1.1x speed and gets white
    noise at 10-30 dB SNR; seeded, so the same voice always gets the same views.
    """
    rng = np.random.default_rng(seed)
    waveform = np.asarray(waveform, dtype=np.float32)
    power = float(np.mean(waveform.astype(np.float64) ** 2)) or 1e-12
    out = []
    for _ in range(views):
        length = max(1, int(len(waveform) * rng.uniform(0.7, 1.0)))
        start = int(rng.integers(0, len(waveform) - length + 1))
        # Played at rate r, the crop sampled at sample_rate sounds like sample_rate / r.
        speed = rng.uniform(0.9, 1.1)
        view = resample(waveform[start : start + length], int(sample_rate * speed), sample_rate)
        snr_db = rng.uniform(10.0, 30.0)
        noise = rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), len(view))
        out.append((view + noise).astype(np.float32))
    return out


class AugmentedViewSimilarity:
    """EncoderMI's features: sorted cosine similarities among each voice's augmented views.

    :meth:`transform` maps each speaker to ``[voices, views, dim]`` view embeddings; the columns
    are the similarities of the view pairs, sorted per voice and averaged over the voices
    (``view_pair_rank_k``), and their mean (``view_similarity_mean``, EncoderMI-T's score).
    """

    column = "view_similarity_mean"

    def fit(self, imposters: Sequence[np.ndarray] = ()) -> AugmentedViewSimilarity:
        return self

    def transform(self, speakers: Mapping[str, np.ndarray]) -> FeatureTable:
        rows, shape = [], None
        for speaker, views in speakers.items():
            views = np.asarray(views, dtype=np.float64)
            if views.ndim != 3 or views.shape[1] < 2:
                raise VoxauditError(
                    f"speaker {speaker!r}: EncoderMI needs [voices, views >= 2, dim] embeddings"
                )
            if shape is not None and views.shape[:2] != shape:
                raise VoxauditError(
                    f"speaker {speaker!r}: {views.shape[:2]} voices x views, others {shape}"
                )
            shape = views.shape[:2]
            pairs = np.triu_indices(views.shape[1], 1)
            sorted_pairs = np.stack(
                [np.sort(similarity(v, v, "cosine")[pairs])[::-1] for v in views]
            ).mean(axis=0)
            rows.append(np.r_[sorted_pairs, sorted_pairs.mean()])
        n_pairs = len(rows[0]) - 1 if rows else 0
        columns = [*(f"view_pair_rank_{k}" for k in range(n_pairs)), self.column]
        return _table(list(speakers), columns, rows)


class ProbeReferenceSimilarity:
    """FaceAuditor's features: each probe voice's cosine similarities to the reference voices.

    The first ``references`` of a speaker's embeddings are references, the rest probes (at
    least one each); each probe's similarities are sorted, and the probes sorted by their mean,
    so that the columns do not depend on the order of the voices.
    """

    def __init__(self, references: int | None = None) -> None:
        self.references = references

    def fit(self, imposters: Sequence[np.ndarray] = ()) -> ProbeReferenceSimilarity:
        return self

    def transform(self, speakers: Mapping[str, np.ndarray]) -> FeatureTable:
        rows, shape = [], None
        for speaker, embeddings in speakers.items():
            e = _at_least(speaker, embeddings, 2, "FaceAuditor")
            n_ref = self.references if self.references is not None else len(e) // 2
            if not 1 <= n_ref < len(e):
                raise VoxauditError(
                    f"speaker {speaker!r}: {n_ref} reference(s) of {len(e)} voices leave no probe"
                )
            matrix = np.sort(similarity(e[n_ref:], e[:n_ref], "cosine"), axis=1)[:, ::-1]
            matrix = matrix[np.argsort(-matrix.mean(axis=1), kind="stable")]
            if shape is not None and matrix.shape != shape:
                raise VoxauditError(
                    f"speaker {speaker!r}: {matrix.shape} probes x references, others {shape}"
                )
            shape = matrix.shape
            rows.append(matrix.ravel())
        probes, refs = shape or (0, 0)
        columns = [f"probe_{p}_reference_rank_{r}" for p in range(probes) for r in range(refs)]
        return _table(list(speakers), columns, rows)
