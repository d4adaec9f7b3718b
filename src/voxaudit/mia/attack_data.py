"""What a membership attack is given about one model: its feature table and per-row extras.

Every attack in :mod:`voxaudit.mia.attacks` and :mod:`voxaudit.mia.calibrated` takes one
:class:`AttackData` (or a bare :class:`~voxaudit.mia.table.FeatureTable`, which is the same
with no extras) in ``fit``, ``score`` and ``predict``, so that a per-class attack, a grouped
cross-validation or a calibration against reference models all fit one call signature.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voxaudit.errors import VoxauditError
from voxaudit.mia.table import FeatureTable


@dataclass(frozen=True)
class AttackData:
    """What an attack sees of one model: its feature table and, per row, what some attacks need.

    Parameters
    ----------
    table : FeatureTable
        One row per example (or speaker): the model's own features and statistics.
    classes : array of shape (n_rows,), optional
        The true class of each row, for per-class attacks.
    groups : array of shape (n_rows,), optional
        The cross-validation group of each row (e.g. its speaker), so that a group never sits
        on both sides of a fold.
    reference : array of shape (n_reference_models, n_rows), optional
        ``reference[i, j]`` is reference (shadow) model i's statistic on row j, already in the
        form the calibrated attack reads (e.g. a logit confidence for LiRA, a likelihood for
        RMIA).
    reference_in : bool array of shape (n_reference_models, n_rows), optional
        Whether reference model i trained on row j; needs ``reference``. ``None`` with a
        ``reference`` means that no reference model trained on any row.
    population : bool array of shape (n_rows,), or row indices, optional
        The rows known to be non-members of the audited model: RMIA's yardstick. Stored as a
        bool mask, which may mark no row (e.g. in a subset of the rows): RMIA then refuses to
        score.
    """

    table: FeatureTable
    classes: np.ndarray | None = None
    groups: np.ndarray | None = None
    reference: np.ndarray | None = None
    reference_in: np.ndarray | None = None
    population: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.table, FeatureTable):
            raise VoxauditError(
                f"attack data: table must be a FeatureTable, not {type(self.table).__name__}"
            )
        n = len(self.table)
        for name in ("classes", "groups"):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value)
                if value.shape != (n,):
                    raise VoxauditError(
                        f"attack data: {name} has shape {value.shape}; expected ({n},), "
                        "one per table row"
                    )
                self._store(name, value)
        if self.reference is not None:
            reference = np.asarray(self.reference, dtype=np.float64)
            if reference.ndim != 2 or reference.shape[0] == 0 or reference.shape[1] != n:
                raise VoxauditError(
                    f"attack data: reference has shape {reference.shape}; expected "
                    f"(reference models, {n}), at least one model"
                )
            self._store("reference", reference)
        if self.reference_in is not None:
            if self.reference is None:
                raise VoxauditError("attack data: reference_in needs reference")
            reference_in = np.asarray(self.reference_in)
            if reference_in.dtype != bool or reference_in.shape != self.reference.shape:
                raise VoxauditError(
                    f"attack data: reference_in must be a bool array of shape "
                    f"{self.reference.shape}, like reference; got {reference_in.dtype} "
                    f"{reference_in.shape}"
                )
            self._store("reference_in", reference_in)
        if self.population is not None:
            self._store("population", _population_mask(self.population, n))

    def _store(self, name: str, value: np.ndarray) -> None:
        # A read-only copy: the data is frozen, and attacks keep views of it.
        value = np.array(value)
        value.setflags(write=False)
        object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.table)

    @property
    def ids(self) -> tuple[str, ...]:
        """The table's row ids."""
        return self.table.ids

    def take(self, rows: np.ndarray) -> AttackData:
        """These rows (by position), with their per-row extras (reference columns too)."""

        def part(values: np.ndarray | None, axis: int = 0) -> np.ndarray | None:
            return None if values is None else np.take(values, rows, axis=axis)

        return AttackData(
            self.table.rows([self.table.ids[i] for i in rows]),
            classes=part(self.classes),
            groups=part(self.groups),
            reference=part(self.reference, axis=1),
            reference_in=part(self.reference_in, axis=1),
            population=part(self.population),
        )


def _population_mask(population: np.ndarray, n: int) -> np.ndarray:
    """A checked bool mask over ``n`` rows, from a mask or row indices."""
    population = np.asarray(population)
    if population.dtype == bool:
        if population.shape != (n,):
            raise VoxauditError(
                f"attack data: population mask of shape {population.shape}; expected ({n},)"
            )
        mask = population
    else:
        if population.size and not np.issubdtype(population.dtype, np.integer):
            raise VoxauditError("attack data: population must be a bool mask or an index array")
        if population.ndim != 1:
            raise VoxauditError("attack data: population indices must form a 1-D array")
        if ((population < 0) | (population >= n)).any():
            raise VoxauditError(f"attack data: population indices must lie in [0, {n})")
        mask = np.zeros(n, dtype=bool)
        mask[population.astype(np.intp)] = True
    return mask


def as_attack_data(x: AttackData | FeatureTable) -> AttackData:
    """``x`` itself, or a bare feature table as attack data with no extras."""
    if isinstance(x, AttackData):
        return x
    if isinstance(x, FeatureTable):
        return AttackData(x)
    raise VoxauditError(f"an attack takes AttackData or a FeatureTable, not {type(x).__name__}")
