"""Speaker-level inference: was any of this speaker's speech in the training set?

Utterance features and attack scores are summarized per speaker, so that the attacks in
:mod:`voxaudit.mia.attacks` can run on speaker rows as they do on utterance rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from voxaudit.errors import VoxauditError
from voxaudit.mia.table import FeatureTable

# Each reduces axis 0 (the speaker's utterances); std is the population std, so one row gives 0.
STATISTICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mean": lambda x: np.mean(x, axis=0),
    "std": lambda x: np.std(x, axis=0),
    "min": lambda x: np.min(x, axis=0),
    "q25": lambda x: np.quantile(x, 0.25, axis=0),
    "median": lambda x: np.median(x, axis=0),
    "q75": lambda x: np.quantile(x, 0.75, axis=0),
    "max": lambda x: np.max(x, axis=0),
}


def speaker_rows(table: FeatureTable) -> dict[str, np.ndarray]:
    """Each speaker's row indices, speakers in order of first appearance."""
    rows: dict[str, list[int]] = {}
    for i, speaker in enumerate(table.speakers):
        rows.setdefault(speaker, []).append(i)
    return {speaker: np.array(index) for speaker, index in rows.items()}


def subsample_per_speaker(table: FeatureTable, k: int, seed: int = 0) -> FeatureTable:
    """At most ``k`` random rows per speaker, in table order; a speaker with fewer keeps all.

    For one seed the draws are nested: the rows kept for ``k`` are among those kept for any
    larger ``k``, so results over 1, 2, 5, ... utterances per speaker differ only by the added
    utterances.
    """
    if k < 1:
        raise VoxauditError(f"subsample_per_speaker: k must be at least 1, not {k}")
    rng = np.random.default_rng(seed)
    # One permutation per speaker whatever k is, so that the draws are nested across k.
    keep = np.concatenate([rng.permutation(index)[:k] for index in speaker_rows(table).values()])
    return table.rows([table.ids[i] for i in np.sort(keep)])


def aggregate_by_speaker(
    table: FeatureTable,
    scores: Mapping[str, np.ndarray] | None = None,
    statistics: Sequence[str] = ("mean", "std", "min", "q25", "median", "q75", "max"),
) -> FeatureTable:
    """One row per speaker (id = speaker, in order of first appearance) of per-utterance stats.

    Columns are ``{column}_{stat}`` in the source column's family, ``{name}_{stat}`` for each
    per-utterance attack score array in ``scores`` (aligned with the table rows) and
    ``n_utterances``, the latter two in family ``"aggregate"``.
    """
    unknown = [name for name in statistics if name not in STATISTICS]
    if unknown or not statistics:
        raise VoxauditError(
            f"unknown or no statistic(s) {', '.join(unknown)}; known: {', '.join(STATISTICS)}"
        )
    columns = list(table.columns)
    families = list(table.families)
    values = [table.values]
    for name, score in (scores or {}).items():
        score = np.asarray(score, dtype=np.float64)
        if score.shape != (len(table),):
            raise VoxauditError(
                f"scores {name!r} has shape {score.shape}; expected ({len(table)},), one per row"
            )
        columns.append(name)
        families.append("aggregate")
        values.append(score[:, None])
    values = np.concatenate(values, axis=1)

    groups = speaker_rows(table)
    # [speakers, statistics, columns], flattened to each column's statistics side by side.
    summary = np.stack(
        [
            np.stack([STATISTICS[stat](values[index]) for stat in statistics])
            for index in groups.values()
        ]
    )
    n_speakers = len(groups)
    counts = np.array([[len(index)] for index in groups.values()], dtype=np.float64)
    return FeatureTable(
        tuple(groups),
        tuple(groups),
        (*(f"{col}_{stat}" for col in columns for stat in statistics), "n_utterances"),
        (*(fam for fam in families for _ in statistics), "aggregate"),
        np.concatenate([summary.transpose(0, 2, 1).reshape(n_speakers, -1), counts], axis=1),
    )


def speaker_membership(table: FeatureTable, is_member: Sequence[bool] | np.ndarray) -> np.ndarray:
    """Each speaker's membership (rows of :func:`aggregate_by_speaker`), from utterance labels.

    A speaker with both member and non-member utterances is an error that names the speaker.
    """
    labels = np.asarray(is_member, dtype=bool)
    if labels.shape != (len(table),):
        raise VoxauditError(f"is_member has shape {labels.shape}; expected ({len(table)},)")
    membership = []
    for speaker, index in speaker_rows(table).items():
        if labels[index].any() != labels[index].all():
            raise VoxauditError(f"speaker {speaker!r} has both member and non-member utterances")
        membership.append(labels[index[0]])
    return np.array(membership, dtype=bool)
