"""SLMIA-SR features (Chen et al., NDSS 2024): was this speaker in a speaker encoder's training set?

Training pulls a speaker's embeddings together (intra-similarity) and pushes them away from other
speakers' (inter-dissimilarity); both are stronger for training speakers, even on their voices
the model never heard. From the embeddings of one speaker's voices, and those of *imposters*
(speakers that no model trained on), :class:`SlmiaFeatures` computes per measure (cosine and L2):

* intra-similarity (similarity: cosine, or minus the L2 distance): each embedding to the
  speaker's centroid; every pair of embeddings; and each embedding's mean/std/max/min
  similarity to the speaker's other embeddings;
* inter-dissimilarity (dissimilarity: 1 - cosine, or the L2 distance): imposter centroids to the
  speaker's centroid; imposter embeddings to the centroid, and per imposter their
  mean/std/max/min; imposter centroids to each embedding, and imposter embeddings to each
  embedding, each with its per-row and per-column mean/std/max/min.

Every such set of values is reduced to its mean/std/max/min (std is the population std). That
is the published code's 24 intra and 96 inter columns per measure, of which 17 always repeat
another: the mean, max and min of a matrix are the mean of its row (or column) means, the max of
its row maxima and the min of its row minima (3 intra: pairwise vs per-embedding; 6 for each
imposter-to-embedding matrix; 2 for imposter embeddings to the centroid, whose per-imposter mean
differs from the overall mean when imposters have unequal voice counts). Those are left out, so
each measure gives 103 columns, 206 for cosine and L2. Centroids are the mean embedding scaled
to unit norm, as the published code does for its GE2E encoder (all voxaudit encoders emit
unit-norm embeddings, so a centroid sits on the same sphere).

:func:`voice_chunks` is the paper's voice chunk splitting: fixed-length chunks of a voice give
extra embeddings, for the speaker's voices and the imposters' alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.spatial.distance import cdist

from voxaudit.errors import VoxauditError
from voxaudit.mia.configs import MEASURES
from voxaudit.mia.table import FeatureTable

STATISTICS = ("mean", "std", "max", "min")

#: Intra-similarity sets: to the centroid, pairwise, and each embedding's statistics to the others.
INTRA = ("to_centroid", "pairwise", *(f"to_others_{s}" for s in STATISTICS))

#: Inter-dissimilarity sets. ``icent``/``iutt``: imposter centroids / embeddings; ``centroid`` /
#: ``utt``: the speaker's; ``per_utt``: a statistic over imposters for each of the speaker's
#: embeddings (a column of the matrix), ``per_imp``: over the speaker's embeddings for each
#: imposter row (``per_imp`` of ``iutt_to_centroid`` is over each imposter's embeddings).
INTER = (
    "icent_to_centroid",
    "iutt_to_centroid",
    *(f"iutt_to_centroid_per_imp_{s}" for s in STATISTICS),
    *(
        name
        for matrix in ("icent_to_utt", "iutt_to_utt")
        for name in (
            matrix,
            *(f"{matrix}_per_utt_{s}" for s in STATISTICS),
            *(f"{matrix}_per_imp_{s}" for s in STATISTICS),
        )
    ),
)


def _repeats() -> frozenset[tuple[str, str]]:
    """(set, statistic) pairs that always equal an earlier column, as the module docstring says."""
    pairs = {("to_others_mean", "mean"), ("to_others_max", "max"), ("to_others_min", "min")}
    pairs |= {("iutt_to_centroid_per_imp_max", "max"), ("iutt_to_centroid_per_imp_min", "min")}
    for matrix in ("icent_to_utt", "iutt_to_utt"):
        for axis in ("per_utt", "per_imp"):
            pairs |= {(f"{matrix}_{axis}_{s}", s) for s in ("mean", "max", "min")}
    return frozenset(pairs)


REPEATS = _repeats()


def slmia_columns(measures: Sequence[str] = MEASURES) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Column names and families of :class:`SlmiaFeatures` over these measures."""
    columns, families = [], []
    for measure in measures:
        for family, sets in (("intra", INTRA), ("inter", INTER)):
            for name in sets:
                for stat in STATISTICS:
                    if (name, stat) not in REPEATS:
                        columns.append(f"{measure}_{name}_{stat}")
                        families.append(family)
    return tuple(columns), tuple(families)


def voice_chunks(
    waveform: np.ndarray, sample_rate: int, seconds: float = 1.6, overlap: float = 0.5
) -> list[np.ndarray]:
    """Fixed-length chunks of a voice, ``overlap`` of a chunk shared by neighbours.

    A voice shorter than one chunk gives none (it is still embedded whole); the tail that does
    not fill a last chunk is left out, so every chunk has the same length.
    """
    if seconds <= 0 or not 0 <= overlap < 1:
        raise VoxauditError(
            f"voice_chunks: need seconds > 0 and overlap in [0, 1); got {seconds}, {overlap}"
        )
    size = round(seconds * sample_rate)
    hop = max(1, round(size * (1 - overlap)))
    waveform = np.asarray(waveform)
    if waveform.ndim != 1:
        raise VoxauditError(f"voice_chunks: expected a mono (1-D) waveform, got {waveform.shape}")
    if len(waveform) < size:
        return []
    # A copy: the window view is read-only and shares memory with the voice.
    return list(np.array(np.lib.stride_tricks.sliding_window_view(waveform, size)[::hop]))


def unit_centroid(embeddings: np.ndarray) -> np.ndarray:
    """The mean embedding scaled to unit norm."""
    mean = np.asarray(embeddings, dtype=np.float64).mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def dissimilarity(a: np.ndarray, b: np.ndarray, measure: str) -> np.ndarray:
    """``[len(a), len(b)]``: 1 - cosine similarity, or the L2 distance."""
    if measure not in MEASURES:
        raise VoxauditError(f"unknown measure {measure!r}; use one of: {', '.join(MEASURES)}")
    return cdist(
        np.atleast_2d(a), np.atleast_2d(b), "cosine" if measure == "cosine" else "euclidean"
    )


def similarity(a: np.ndarray, b: np.ndarray, measure: str) -> np.ndarray:
    """``[len(a), len(b)]``: cosine similarity, or minus the L2 distance (higher = closer)."""
    distance = dissimilarity(a, b, measure)
    return 1.0 - distance if measure == "cosine" else -distance


def _stats(values: np.ndarray, axis: int | None = None) -> dict[str, np.ndarray]:
    return {
        "mean": np.mean(values, axis=axis),
        "std": np.std(values, axis=axis),
        "max": np.max(values, axis=axis),
        "min": np.min(values, axis=axis),
    }


class SlmiaFeatures:
    """SLMIA-SR's intra-similarity and inter-dissimilarity features, one row per speaker.

    :meth:`fit` takes the imposters' embeddings (one ``[voices, dim]`` array per imposter);
    :meth:`transform` maps each speaker to its ``[embeddings, dim]`` array (at least two:
    voices, or voices and their chunks) and returns a table of 103 columns per measure.
    """

    def __init__(self, measures: Sequence[str] = MEASURES) -> None:
        self.measures = tuple(measures)

    def fit(self, imposters: Sequence[np.ndarray]) -> SlmiaFeatures:
        """Keep the imposters' embeddings and unit centroids."""
        unknown = [m for m in self.measures if m not in MEASURES]
        if unknown or not self.measures:
            raise VoxauditError(f"measures must be among {', '.join(MEASURES)}; got {unknown}")
        arrays = [np.atleast_2d(np.asarray(e, dtype=np.float64)) for e in imposters]
        if not arrays or any(len(a) == 0 for a in arrays):
            raise VoxauditError("SLMIA-SR needs at least one imposter, each with an embedding")
        self.imposter_embeddings_ = np.concatenate(arrays)
        self.imposter_of_ = np.repeat(np.arange(len(arrays)), [len(a) for a in arrays])
        self.imposter_centroids_ = np.stack([unit_centroid(a) for a in arrays])
        self.columns_, self.families_ = slmia_columns(self.measures)
        return self

    def transform(self, speakers: Mapping[str, np.ndarray]) -> FeatureTable:
        """One row per speaker (id = speaker), in the mapping's order."""
        rows = [self._row(speaker, np.asarray(e, np.float64)) for speaker, e in speakers.items()]
        names = tuple(speakers)
        values = np.array(rows).reshape(len(rows), len(self.columns_))
        return FeatureTable(names, names, self.columns_, self.families_, values)

    def _row(self, speaker: str, embeddings: np.ndarray) -> list[float]:
        if embeddings.ndim != 2 or len(embeddings) < 2:
            raise VoxauditError(
                f"speaker {speaker!r}: SLMIA-SR needs at least 2 embeddings (voices or voice "
                f"chunks), got {len(embeddings) if embeddings.ndim == 2 else embeddings.shape}"
            )
        row: list[float] = []
        for measure in self.measures:
            sets = {**self._intra(embeddings, measure), **self._inter(embeddings, measure)}
            for family_sets in (INTRA, INTER):
                for name in family_sets:
                    reduced = _stats(sets[name])
                    row += [float(reduced[s]) for s in STATISTICS if (name, s) not in REPEATS]
        return row

    @staticmethod
    def _intra(embeddings: np.ndarray, measure: str) -> dict[str, np.ndarray]:
        n = len(embeddings)
        pairwise = similarity(embeddings, embeddings, measure)
        others = pairwise[~np.eye(n, dtype=bool)].reshape(n, n - 1)
        sets = {
            "to_centroid": similarity(embeddings, unit_centroid(embeddings), measure)[:, 0],
            "pairwise": pairwise[np.triu_indices(n, k=1)],
        }
        sets |= {f"to_others_{s}": v for s, v in _stats(others, axis=1).items()}
        return sets

    def _inter(self, embeddings: np.ndarray, measure: str) -> dict[str, np.ndarray]:
        centroid = unit_centroid(embeddings)
        to_centroid = dissimilarity(self.imposter_embeddings_, centroid, measure)[:, 0]
        per_imposter = [
            to_centroid[self.imposter_of_ == k] for k in range(len(self.imposter_centroids_))
        ]
        sets = {
            "icent_to_centroid": dissimilarity(self.imposter_centroids_, centroid, measure)[:, 0],
            "iutt_to_centroid": to_centroid,
        }
        for s in STATISTICS:
            sets[f"iutt_to_centroid_per_imp_{s}"] = np.array([_stats(v)[s] for v in per_imposter])
        for name, imposters in (
            ("icent_to_utt", self.imposter_centroids_),
            ("iutt_to_utt", self.imposter_embeddings_),
        ):
            matrix = dissimilarity(imposters, embeddings, measure)  # [imposter rows, embeddings]
            sets[name] = matrix.ravel()
            sets |= {f"{name}_per_utt_{s}": v for s, v in _stats(matrix, axis=0).items()}
            sets |= {f"{name}_per_imp_{s}": v for s, v in _stats(matrix, axis=1).items()}
        return sets
