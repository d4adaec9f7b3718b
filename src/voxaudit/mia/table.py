"""Feature tables: one row per utterance (or speaker), named float columns grouped in families.

Attacks are estimators over these tables, so feature extraction (which needs the model) and
attack fitting (which needs only numbers) are separate steps, and extracted features can be
cached on disk and reused by every attack and every ablation.

Each column belongs to one *family*, the unit of the feature ablations:

===============  ===========  =================================================================
family           threat       columns
===============  ===========  =================================================================
transcript       black box    WER, CER, hypothesis/reference length ratio
score            black box*   decoder scores, when the API exposes them
loss             grey box     per-utterance loss, raw and length-normalized
confidence       grey box     posterior confidence and entropy statistics
noise            grey box**   loss/WER/CER/KL under Gaussian noise at several SNRs
adversarial      white box    loss increase, KL and WER change under FGSM / PGD
aggregate        any          per-speaker statistics of utterance features and attack scores
intra            grey box     SLMIA-SR: a speaker's embeddings' similarity to each other
inter            grey box     SLMIA-SR: a speaker's embeddings' dissimilarity to imposters'
prediction       black box    classifier: whether the predicted label is the true one
probability      grey box     classifier: the sorted (top-k) probability vector
===============  ===========  =================================================================

\\* only with ``Access(..., scores=True)`` at black box.  \\*\\* its transcript columns
(WER/CER change) need only a black box.

The families are an open registry: :func:`register_family` adds one (a column of a family
nobody registered is an error, so a typo in a family name cannot pass silently), and
:func:`known_families` lists them, the built-ins above first, in this order. A family is
registered with the least threat model under which some of its columns can be had: black box
for ``score``, ``noise`` and ``aggregate`` too.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxaudit.errors import VoxauditError
from voxaudit.files import write_atomically

#: Threat models, from the least access to the most.
THREATS = ("black", "grey", "white")
FORMAT = "voxaudit.features/1"


@dataclass(frozen=True)
class Family:
    """A registered feature family: what its columns measure and the least threat model under
    which some of them can be extracted."""

    description: str
    threat: str


#: The built-in families, in table order (feature extractors sort their columns by it).
FAMILIES = (
    "transcript", "score", "loss", "confidence", "noise", "adversarial", "aggregate", "intra",
    "inter", "prediction", "probability",
)  # fmt: skip
_FAMILIES: dict[str, Family] = dict(
    zip(
        FAMILIES,
        (
            Family("WER, CER, hypothesis/reference length ratio", "black"),
            Family("decoder scores, when the API exposes them", "black"),
            Family("per-utterance loss, raw and length-normalized", "grey"),
            Family("posterior confidence and entropy statistics", "grey"),
            Family("loss/WER/CER/KL under Gaussian noise at several SNRs", "black"),
            Family("loss increase, KL and WER change under FGSM / PGD", "white"),
            Family("per-speaker statistics of utterance features and attack scores", "black"),
            Family("SLMIA-SR: a speaker's embeddings' similarity to each other", "grey"),
            Family("SLMIA-SR: a speaker's embeddings' dissimilarity to imposters'", "grey"),
            Family("classifier: whether the predicted label is the true one", "black"),
            Family("classifier: the sorted (top-k) probability vector", "grey"),
        ),
        strict=True,
    )
)


def register_family(name: str, description: str, threat: str = "grey") -> None:
    """Make ``name`` a feature family that table columns may belong to.

    Parameters
    ----------
    name : str
        The family's name, as columns give it in :attr:`FeatureTable.families`.
    description : str
        What its columns measure, for people reading a table or a report.
    threat : {"black", "grey", "white"}, default="grey"
        The least threat model under which some of its columns can be extracted.

    Registering the same definition again does nothing; the same name with another
    description or threat is an error.
    """
    if not isinstance(name, str) or not name:
        raise VoxauditError(f"a feature family needs a non-empty name, not {name!r}")
    if threat not in THREATS:
        raise VoxauditError(
            f"feature family {name!r}: threat must be one of {', '.join(THREATS)}, not {threat!r}"
        )
    family = Family(description, threat)
    known = _FAMILIES.setdefault(name, family)
    if known != family:
        raise VoxauditError(
            f"feature family {name!r} is already registered as {known.description!r} "
            f"({known.threat} box); choose another name"
        )


def known_families() -> tuple[str, ...]:
    """Every registered family, in registration order (the built-ins first)."""
    return tuple(_FAMILIES)


def family_info(name: str) -> Family:
    """The registered description and least threat of one family."""
    try:
        return _FAMILIES[name]
    except KeyError:
        raise VoxauditError(_unknown_families([name])) from None


def _unknown_families(names: Iterable[str]) -> str:
    return (
        f"unknown feature famil(ies) {', '.join(names)}; known: {', '.join(_FAMILIES)} "
        "(add one with voxaudit.mia.table.register_family)"
    )


@dataclass(frozen=True)
class FeatureTable:
    """``values[i, j]`` is feature ``columns[j]`` of row ``ids[i]`` (an utterance or speaker).

    ``families[j]`` is the family of column j (see the module docstring); ``speakers[i]`` the
    speaker of row i (for utterance rows) or the speaker itself (for speaker rows).
    """

    ids: tuple[str, ...]
    speakers: tuple[str, ...]
    columns: tuple[str, ...]
    families: tuple[str, ...]
    values: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", tuple(self.ids))
        object.__setattr__(self, "speakers", tuple(self.speakers))
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "families", tuple(self.families))
        values = np.array(self.values, dtype=np.float64)  # a copy: the table is read-only
        if values.ndim != 2 or values.shape != (len(self.ids), len(self.columns)):
            raise VoxauditError(
                f"feature table: values of shape {values.shape} do not match "
                f"{len(self.ids)} rows x {len(self.columns)} columns"
            )
        if len(self.speakers) != len(self.ids):
            raise VoxauditError(
                f"feature table: {len(self.speakers)} speakers for {len(self.ids)} rows"
            )
        if len(self.families) != len(self.columns):
            raise VoxauditError(
                f"feature table: {len(self.families)} families for {len(self.columns)} columns"
            )
        unknown = sorted(set(self.families) - set(_FAMILIES))
        if unknown:
            raise VoxauditError(f"feature table: {_unknown_families(unknown)}")
        for name, items in (("row id", self.ids), ("column", self.columns)):
            duplicates = [item for item, count in Counter(items).items() if count > 1]
            if duplicates:
                raise VoxauditError(f"feature table: {name} {duplicates[0]!r} appears twice")
        values.setflags(write=False)
        object.__setattr__(self, "values", values)

    def __len__(self) -> int:
        return len(self.ids)

    def column(self, name: str) -> np.ndarray:
        """One column by name."""
        try:
            return self.values[:, self.columns.index(name)]
        except ValueError:
            raise VoxauditError(
                f"feature table has no column {name!r}; it has: {', '.join(self.columns)}"
            ) from None

    def select(
        self, families: Iterable[str] | None = None, columns: Iterable[str] = ()
    ) -> FeatureTable:
        """The columns of these families, plus these named columns, in table order."""
        families = set(self.families if families is None else families)
        wanted = set(columns)
        missing = sorted(wanted - set(self.columns))
        if missing:
            raise VoxauditError(f"feature table has no column(s) {', '.join(missing)}")
        keep = [
            j
            for j, (col, fam) in enumerate(zip(self.columns, self.families, strict=True))
            if fam in families or col in wanted
        ]
        return FeatureTable(
            self.ids,
            self.speakers,
            tuple(self.columns[j] for j in keep),
            tuple(self.families[j] for j in keep),
            self.values[:, keep],
        )

    def rows(self, ids: Sequence[str]) -> FeatureTable:
        """These rows, in this order; an unknown id is an error that names it."""
        index = {row: i for i, row in enumerate(self.ids)}
        missing = [row for row in ids if row not in index]
        if missing:
            raise VoxauditError(
                f"feature table has no row {missing[0]!r}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            )
        take = [index[row] for row in ids]
        return FeatureTable(
            tuple(ids),
            tuple(self.speakers[i] for i in take),
            self.columns,
            self.families,
            self.values[take],
        )

    @classmethod
    def concat_columns(cls, tables: Sequence[FeatureTable]) -> FeatureTable:
        """Side by side: tables over the same rows, columns joined."""
        if not tables:
            raise VoxauditError("feature table: nothing to join")
        first = tables[0]
        for other in tables[1:]:
            if other.ids != first.ids:
                raise VoxauditError("feature table: joined tables must have the same rows")
        return cls(
            first.ids,
            first.speakers,
            tuple(c for t in tables for c in t.columns),
            tuple(f for t in tables for f in t.families),
            np.concatenate([t.values for t in tables], axis=1),
        )

    @classmethod
    def concat_rows(cls, tables: Sequence[FeatureTable]) -> FeatureTable:
        """One under another: tables with the same columns, rows joined."""
        if not tables:
            raise VoxauditError("feature table: nothing to join")
        first = tables[0]
        for other in tables[1:]:
            if other.columns != first.columns:
                raise VoxauditError("feature table: stacked tables must have the same columns")
        return cls(
            tuple(i for t in tables for i in t.ids),
            tuple(s for t in tables for s in t.speakers),
            first.columns,
            first.families,
            np.concatenate([t.values for t in tables], axis=0),
        )

    def save(self, path: str | Path) -> Path:
        """Write to ``.npz`` atomically (a temporary file, then a rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "ids": self.ids,
            "speakers": self.speakers,
            "columns": self.columns,
            "families": self.families,
        }
        return write_atomically(
            path, lambda f: np.savez(f, values=self.values, meta=np.array(json.dumps(meta)))
        )

    @classmethod
    def load(cls, path: str | Path) -> FeatureTable:
        """Read a table written by :meth:`save`; a bad file is an error that names it."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                values = data["values"]
        except (OSError, KeyError, ValueError) as exc:
            raise VoxauditError(f"{path}: not a readable feature table ({exc})") from exc
        if meta.get("format") != FORMAT:
            raise VoxauditError(f"{path}: not a voxaudit feature table (expected {FORMAT})")
        return cls(meta["ids"], meta["speakers"], meta["columns"], meta["families"], values)
