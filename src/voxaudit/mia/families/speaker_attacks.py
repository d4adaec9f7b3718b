"""The speaker family's attacks: SLMIA-SR, its ablations, the baselines, the base-calibrated
similarity (with reference models) and the query-reduction curves, fitted on shadow rows only
and scored on the target and the null control (:class:`SlmiaAudit`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from voxaudit.mia.attack_data import AttackData
from voxaudit.mia.attacks import ShadowAttack, ThresholdAttack
from voxaudit.mia.composite_attacks import SeedAveraged
from voxaudit.mia.core import costed
from voxaudit.mia.families.speaker_queries import (
    Draw,
    Embeddings,
    Speaker,
    queried_voices,
)
from voxaudit.mia.families.tabular import prefixed
from voxaudit.mia.fitting import Scored, entries, grouped_folds
from voxaudit.mia.slmia import SlmiaFeatures
from voxaudit.mia.speaker_baselines import (
    FAMILY,
    AugmentedViewSimilarity,
    CentroidLoss,
    PairwiseSimilarity,
    ProbeReferenceSimilarity,
)
from voxaudit.mia.table import FeatureTable

#: The feature sets ``select_features`` chooses among, by table family.
FEATURE_SETS = {"intra + inter": ("intra", "inter"), "intra": ("intra",), "inter": ("inter",)}
BASE_CALIBRATED = "base-calibrated similarity"
SIMILARITY_MINUS_BASE = "mean_pairwise_cosine_minus_base"


class SlmiaAudit:
    """Feature tables of every model at a query budget, and the attacks fitted on them.

    ``bases`` embed every queried voice with one reference (base) model each, called on first
    use (so that their queries count in the base-calibrated row's cost, ``costs``).
    """

    def __init__(
        self,
        config: Any,
        speakers: Mapping[str, Sequence[Speaker]],
        draws: Mapping[str, Sequence[Draw]],
        imposters: Mapping[str, Sequence[str]],
        queried: Mapping[str, Embeddings],
        shadow_roles: Sequence[str],
        bases: Sequence[Callable[[], Embeddings]] = (),
    ) -> None:
        self.config = config
        self.speakers = speakers
        self.draws = draws
        self.imposters = imposters
        self.queried = queried
        self.shadow_roles = list(shadow_roles)
        self.bases = list(bases)
        self.results: list[dict[str, Any]] = []
        self.selection: dict[str, Any] = {"groups": "speaker"}
        self.costs: dict[str, dict[str, Any]] = {}

    def _ratios(self, role: str, mixing: bool) -> list[tuple[int, float]]:
        """(draw index, ratio) of each row a speaker of ``role`` gives."""
        if role in self.shadow_roles and mixing:
            return list(enumerate(self.config.train_ratios))
        return [(0, self.config.mixing_ratio)]

    def _imposter_embeddings(
        self, role: str, count: int | None, voices: int | None, chunks: bool
    ) -> list[np.ndarray]:
        names = list(self.imposters)[:count]
        return [self.queried[role].voices(self.imposters[n][:voices], chunks) for n in names]

    def tables(
        self,
        transformer: Any,
        k: int,
        chunks: bool = True,
        mixing: bool = True,
        imposters: tuple[int | None, int | None] = (None, None),
        views: bool = False,
    ) -> tuple[dict[str, FeatureTable], dict[str, np.ndarray], np.ndarray]:
        """Each model's table (the shadows' stacked as ``"shadow"``), labels, shadow CV groups.

        Rows are speakers at ``k`` voices ([+ chunks], or their augmented ``views``); a shadow
        speaker gives one row per training ratio (``mixing``), grouped by speaker for CV.
        """
        tables, labels, shadow_parts = {}, {}, []
        for role in [*self.shadow_roles, "target", "null"]:
            if role not in self.queried:
                continue
            e = self.queried[role]
            transformer.fit(self._imposter_embeddings(role, *imposters, chunks=chunks))
            parts = []
            for index, ratio in self._ratios(role, mixing):
                draw = self.draws[role][index]
                voices = {
                    s.name: queried_voices(draw, s.name, k, ratio) for s in self.speakers[role]
                }
                embeddings = {
                    name: np.stack([e.views[i] for i in ids]) if views else e.voices(ids, chunks)
                    for name, ids in voices.items()
                }
                parts.append(prefixed(transformer.transform(embeddings), f"{role}/{ratio:g}"))
            stacked = FeatureTable.concat_rows(parts)
            member = {s.name: s.member for s in self.speakers[role]}
            is_member = np.array([member[s] for s in stacked.speakers])
            if role in self.shadow_roles:
                shadow_parts.append((stacked, is_member, [f"{role}/{s}" for s in stacked.speakers]))
            else:
                tables[role], labels[role] = stacked, is_member
        tables["shadow"] = FeatureTable.concat_rows([p[0] for p in shadow_parts])
        labels["shadow"] = np.concatenate([p[1] for p in shadow_parts])
        return tables, labels, np.array([g for p in shadow_parts for g in p[2]])

    def _evaluate(
        self,
        name: str,
        features: str,
        attack: Any,
        tables: dict,
        labels: dict,
        notes: bool,
        headline_candidate: bool = True,
    ) -> None:
        roles = [role for role in ("target", "null") if role in tables]
        scored = {
            role: Scored(
                np.asarray(attack.score(tables[role]), dtype=np.float64),
                np.asarray(attack.predict(tables[role]), dtype=bool),
                attack.shadow_auroc_,
            )
            for role in roles
        }
        self.results += entries(
            name, features, scored, labels,
            {role: tables[role].speakers for role in roles},
            {role: tables[role].speakers for role in roles},
            self.config,
            notes={role: attack.notes(tables[role], labels[role]) for role in roles}
            if notes else None,
            headline_candidate=headline_candidate,
        )  # fmt: skip

    def _shadow_attack(
        self,
        name: str,
        features: str,
        tables: dict,
        labels: dict,
        groups: np.ndarray,
        classifiers: Sequence[str],
        seeds: int,
        feature_sets: Mapping[str, Sequence[str]] | None = None,
        headline_candidate: bool = True,
    ) -> SeedAveraged:
        attack = SeedAveraged(
            ShadowAttack(
                classifiers=tuple(classifiers),
                feature_sets=feature_sets,
                cv=grouped_folds(self.config.cv, labels["shadow"], groups),
                random_state=self.config.seed,
                decision=self.config.decision,
            ),
            n_seeds=seeds,
        ).fit(AttackData(tables["shadow"], groups=groups), labels["shadow"])
        self._evaluate(name, features, attack, tables, labels, True, headline_candidate)
        self.selection[f"{name} ({features})"] = attack.selection()
        return attack

    def _threshold(self, name: str, features: str, column: str, tables, labels) -> None:
        attack = ThresholdAttack(column, decision=self.config.decision)
        attack.fit(tables["shadow"], labels["shadow"])
        self._evaluate(name, features, attack, tables, labels, notes=False)
        self.selection[f"{name} ({features})"] = {
            "member_if": attack.member_if_,
            "threshold": attack.threshold_,
            "shadow_auroc": attack.shadow_auroc_,
        }

    def reference_attack(self, k: int) -> tuple[ShadowAttack, FeatureTable]:
        """Scoring mode: one SLMIA-SR attack fitted on the shadows, and the target's table."""
        by_chunking = self._slmia_tables(k, SlmiaFeatures(self.config.measures))
        tables, labels, groups = by_chunking[self._choose_chunking(by_chunking)]
        tables.pop("null", None)
        return self._cv_attack(tables, labels, groups), tables["target"]

    def _cv_attack(self, tables: dict, labels: dict, groups: np.ndarray) -> ShadowAttack:
        """One SLMIA-SR attack, chosen and fitted on the shadow rows by grouped CV."""
        return ShadowAttack(
            classifiers=self.config.classifiers,
            feature_sets=self._feature_sets(),
            cv=grouped_folds(self.config.cv, labels["shadow"], groups),
            random_state=self.config.seed,
        ).fit(tables["shadow"], labels["shadow"], groups=groups)

    def _feature_sets(self) -> Mapping[str, Sequence[str]]:
        """SLMIA-SR's candidate feature sets: both families, or (``select_features``) a choice."""
        if self.config.select_features:
            return FEATURE_SETS
        return {"intra + inter": FEATURE_SETS["intra + inter"]}

    def _slmia_tables(self, k: int, slmia: SlmiaFeatures) -> dict[bool, tuple]:
        """SLMIA-SR tables at ``k`` voices, with and (if configured) without chunk splitting."""
        options = (True, False) if self.config.chunk_seconds is not None else (False,)
        return {chunks: self.tables(slmia, k, chunks) for chunks in options}

    def _choose_chunking(self, by_chunking: Mapping[bool, tuple]) -> bool:
        """Chunk splitting on or off: as configured, or (``select_chunking``) whichever gives the
        higher cross-validated AUROC on shadow rows; the choice never looks at the target."""
        if len(by_chunking) == 1 or not self.config.select_chunking:
            return max(by_chunking)  # chunks whenever configured
        shadow_auroc = {
            chunks: max(r["auroc_mean"] for r in self._cv_attack(*tables).cv_results_)
            for chunks, tables in by_chunking.items()
        }
        chosen = shadow_auroc[True] >= shadow_auroc[False]
        self.selection["chunk splitting"] = {
            "shadow_cv_auroc": {"with": shadow_auroc[True], "without": shadow_auroc[False]},
            "chosen": chosen,
        }
        return chosen

    def run(self, k: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Every attack at ``k`` voices per speaker, then the query-reduction curves."""
        c = self.config
        slmia = SlmiaFeatures(c.measures)
        voices = f"{k} voice{'s' if k > 1 else ''}/speaker"
        by_chunking = self._slmia_tables(k, slmia)
        chunks = self._choose_chunking(by_chunking)
        configured = c.chunk_seconds is not None
        chosen = " (chosen on shadows)" if configured and c.select_chunking else ""
        enhancements = (
            ", ".join(
                [
                    *([f"chunk splitting{chosen}"] if chunks else []),
                    *([f"whole voices{chosen}"] if configured and not chunks else []),
                    *(["mixing-ratio training"] if len(c.train_ratios) > 1 else []),
                ]
            )
            or "no enhancement"
        )
        main = by_chunking[chunks]
        feature_set = "feature set chosen on shadows" if c.select_features else "intra + inter"
        self._shadow_attack(
            "SLMIA-SR",
            f"{feature_set}, {voices}, {enhancements}",
            *main,
            c.classifiers,
            c.attack_seeds,
            self._feature_sets(),
        )
        for label, families in (("intra only", ("intra",)), ("inter only", ("inter",))):
            tables, labels, groups = main
            sub = {role: t.select(families) for role, t in tables.items()}
            self._shadow_attack(
                "SLMIA-SR ablation",
                label,
                sub,
                labels,
                groups,
                c.curve_classifiers,
                1,
                headline_candidate=False,
            )
        if configured:
            self._shadow_attack(
                "SLMIA-SR ablation",
                "with chunk splitting" if not chunks else "without chunk splitting",
                *by_chunking[not chunks],
                c.curve_classifiers,
                1,
                headline_candidate=False,
            )
        if len(c.train_ratios) > 1:
            self._shadow_attack(
                "SLMIA-SR ablation",
                "without mixing-ratio training",
                *self.tables(slmia, k, chunks, mixing=False),
                c.curve_classifiers,
                1,
                headline_candidate=False,
            )
        self._baselines(k, voices)
        if self.bases:
            features = f"{SIMILARITY_MINUS_BASE}, {voices}"
            passes = 1 + len(self.bases)
            with costed(self.costs, f"{BASE_CALIBRATED} ({features})", passes, per="voice"):
                self._base_calibrated(k, features, [embedded() for embedded in self.bases])
        self._query_reduction(k, slmia, chunks)
        return self.results, self.selection

    def _base_calibrated(self, k: int, features: str, bases: Sequence[Embeddings]) -> None:
        """LRL-MIA's score calibrated per speaker by reference (base) models: a speaker's mean
        pairwise cosine under the model minus the mean over the reference models of the same
        voices' mean pairwise cosine, a threshold on it fitted on the shadows' own rows. What
        makes a voice's recordings alike for any encoder cancels; what the model learned of
        that voice remains. Whole voices, as LRL-MIA, and no imposter."""
        pairwise = PairwiseSimilarity()
        tables, labels, _ = self.tables(pairwise, k, chunks=False, imposters=(0, None))
        heard = [
            SlmiaAudit(self.config, self.speakers, self.draws, self.imposters,
                       dict.fromkeys(self.queried, base), self.shadow_roles)
            .tables(pairwise, k, chunks=False, imposters=(0, None))[0]
            for base in bases
        ]  # fmt: skip
        calibrated = {
            role: FeatureTable(table.ids, table.speakers, (SIMILARITY_MINUS_BASE,), (FAMILY,),
                               table.values - np.mean([h[role].values for h in heard], axis=0))
            for role, table in tables.items()
        }  # fmt: skip
        self._threshold(BASE_CALIBRATED, features, SIMILARITY_MINUS_BASE, calibrated, labels)

    def _baselines(self, k: int, voices: str) -> None:
        """The baselines on whole voices (they know nothing of chunks), same draws as SLMIA-SR."""
        c = self.config
        for name, transformer in (
            ("LRL-MIA", PairwiseSimilarity()),
            ("GE2E loss threshold", CentroidLoss()),
        ):
            tables, labels, _ = self.tables(transformer, k, chunks=False)
            self._threshold(
                name, f"{transformer.column}, {voices}", transformer.column, tables, labels
            )
        views = AugmentedViewSimilarity()
        tables, labels, groups = self.tables(views, k, chunks=False, views=True)
        self._threshold(
            "EncoderMI-T", f"{views.column}, {c.views} views", views.column, tables, labels
        )
        self._shadow_attack(
            "EncoderMI-V",
            f"sorted view similarities, {c.views} views",
            tables,
            labels,
            groups,
            c.classifiers,
            c.attack_seeds,
        )
        if k >= 2:
            self._shadow_attack(
                "FaceAuditor-S",
                f"probe-reference similarities, {voices}",
                *self.tables(ProbeReferenceSimilarity(), k, chunks=False),
                c.classifiers,
                c.attack_seeds,
            )

    def _query_reduction(self, k: int, slmia: SlmiaFeatures, chunks: bool) -> None:
        c = self.config
        counts = sorted({n for n in c.voice_counts if n <= k and (chunks or n >= 2)})
        for n in counts:
            self._shadow_attack(
                "SLMIA-SR query reduction",
                f"{n} target voice{'s' if n > 1 else ''}/speaker",
                *self.tables(slmia, n, chunks),
                c.curve_classifiers,
                1,
                headline_candidate=False,
            )
        for n in sorted({n for n in c.imposter_counts if n < len(self.imposters)}):
            self._shadow_attack(
                "SLMIA-SR query reduction",
                f"{n} imposter(s)",
                *self.tables(slmia, k, chunks, imposters=(n, None)),
                c.curve_classifiers,
                1,
                headline_candidate=False,
            )
        fewest = min(len(v) for v in self.imposters.values())
        for n in sorted({n for n in c.imposter_voices if n < fewest}):
            self._shadow_attack(
                "SLMIA-SR query reduction",
                f"{n} voice(s)/imposter",
                *self.tables(slmia, k, chunks, imposters=(None, n)),
                c.curve_classifiers,
                1,
                headline_candidate=False,
            )
