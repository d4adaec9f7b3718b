"""What the ASR and classifier families share: one feature row per utterance, then attacks.

Each model (target, shadows, null control) is queried on its balanced evaluation set through
``Access`` at the audit's threat level, and the family's extractor turns the answers into a
feature table (cached, so a stopped run resumes). The attacks are then the same for both:

* one-feature thresholds and shadow-model attacks per feature set, fitted on the shadows'
  stacked rows (grouped by speaker for cross-validation) or, with no shadow model, cross-fitted
  on halves of the target's own known membership;
* any attack a user registered (``voxaudit.mia.attacks.register_attack``), on every column;
* with grey-box access and shadows, the calibrated LiRA (offline, and online when the shadows
  allow) and RMIA on the family's per-example loss, the shadows as reference models.

A family subclass says which labels a model is queried with, which extractor and loss it uses,
and which thresholds and feature sets apply at which threat.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, clone

from voxaudit.data.corpus import Utterance
from voxaudit.mia.attack_data import AttackData
from voxaudit.mia.attacks import ShadowAttack, ThresholdAttack, registered_attacks
from voxaudit.mia.calibrated import RMIA, LiRA, logit_confidence
from voxaudit.mia.configs import TabularConfig
from voxaudit.mia.core import (
    AuditedModel,
    AuditRun,
    Entry,
    Family,
    Outcome,
    evaluation_sets,
    membership,
    membership_ids,
)
from voxaudit.mia.evaluation import EvalSet
from voxaudit.mia.feature_cache import model_digest
from voxaudit.mia.fitting import Scored, View, entries, fit_and_score, grouped_folds, permuted
from voxaudit.mia.table import FeatureTable
from voxaudit.models.access import Access
from voxaudit.progress import track


class TabularFamily(Family):
    """A family whose models give one feature row per utterance (see the module docstring)."""

    cross_fits = True
    #: Metric thresholds: column -> least threat that has it.
    thresholds: ClassVar[Mapping[str, str]]
    #: Shadow attacks: feature-set name -> (families, least threat that has them).
    feature_sets: ClassVar[Mapping[str, tuple[tuple[str, ...], str]]]
    #: What the calibrated attacks' per-example statistic is, for the report.
    statistic_name: ClassVar[str]
    #: Whether attacks see each row's true class (per-class attacks).
    uses_classes: ClassVar[bool] = False

    # --- hooks ---------------------------------------------------------------------------

    @abstractmethod
    def label_of(self, model: AuditedModel) -> Callable[[Utterance], str]:
        """What each utterance is queried with (its transcript, its class)."""

    @abstractmethod
    def extractor(self, config: TabularConfig) -> Any:
        """The feature extractor (``extract(access, waves, labels, ids, speakers, ...)``)."""

    @abstractmethod
    def loss(self, access: Access, waves: list[np.ndarray], labels: list[str]) -> np.ndarray:
        """Per-example non-negative loss (NLL) for the calibrated attacks."""

    def feature_sets_for(
        self, config: TabularConfig, table: FeatureTable
    ) -> dict[str, tuple[str, ...]]:
        """The shadow attacks' feature sets that the threat allows and the table has."""
        present = set(table.families)
        return {
            name: families
            for name, (families, threat) in self.feature_sets.items()
            if config.allows(threat) and present & set(families)
        }

    def extra_attacks(self, run: AuditRun, fitted: Fitted) -> list[Entry]:
        """Family-specific attacks on the fitted tables (the classifier's per-class attack)."""
        return []

    # --- the audit -----------------------------------------------------------------------

    def attack(self, run: AuditRun) -> Outcome:
        c = run.config
        sets, null = evaluation_sets(run, evidence=getattr(c, "evidence", "unseen"))
        models = {m.role: m for m in (run.target, *run.shadows)}
        if null is not None:
            models["null"] = null
        tables = {role: self.features(run, m, sets[role]) for role, m in models.items()}
        if null is None:
            tables["null"] = tables["target"]
            target = sets["target"]
            groups = np.array(target.speakers)
            sets["null"] = EvalSet(target.ids, target.speakers,
                                   permuted(target.is_member, groups, c.seed))  # fmt: skip
        fitted = Fitted.of(
            run, tables, sets, self.label_of(run.target) if self.uses_classes else None
        )
        if run.split.level == "sample":
            results, selection = self._sample_attacks(run, fitted)
            results += self.extra_attacks(run, fitted)
            if c.allows("grey") and run.shadows:
                calibrated, left_out = self._calibrated(run, sets, null)
                results += calibrated
                if left_out:
                    selection["calibrated attacks left out"] = left_out
            elif c.allows("grey"):
                selection["calibrated attacks left out"] = [
                    "LiRA and RMIA: they need reference (shadow) models"
                ]
        else:
            results, selection = self._speaker_attacks(run, fitted)
        setup = {
            "evaluated": {
                role: {"members": s.n_members, "nonmembers": s.n_nonmembers}
                for role, s in sets.items()
            },
            # The models really queried: a permuted-label null has no table of its own.
            **self.setup_extra(run, {r: t for r, t in tables.items() if r in models}, sets),
        }
        return Outcome(results, selection, setup, null)

    def setup_extra(
        self, run: AuditRun, tables: dict[str, FeatureTable], sets: dict[str, EvalSet]
    ) -> dict[str, Any]:
        """More facts for the report's setup (the classifier's accuracy gap)."""
        return {}

    def features(self, run: AuditRun, model: AuditedModel, eval_set: EvalSet) -> FeatureTable:
        """``model``'s feature table on ``eval_set``, through the audit's threat level."""
        access = Access(model.model, run.config.threat)
        label_of = self.label_of(model)
        utterances = [run.corpus[i] for i in eval_set.ids]
        return self.extractor(run.config).extract(
            access,
            [u.load(access.sample_rate) for u in utterances],
            [label_of(u) for u in utterances],
            list(eval_set.ids),
            list(eval_set.speakers),
            cache_dir=run.out_dir / "features" / model.role,
            progress=run.progress,
            model_id=model_digest(model.model, model.source),
        )

    def _sample_attacks(self, run: AuditRun, fitted: Fitted) -> tuple[list[Entry], dict]:
        c = run.config
        results: list[Entry] = []
        for column, threat in self.thresholds.items():
            if c.allows(threat) and column in fitted.columns:
                results += fitted.evaluate(
                    f"threshold on {column}", column,
                    lambda _, column=column: ThresholdAttack(column, decision=c.decision),
                )  # fmt: skip
        selection: dict[str, Any] = {"groups": "speaker", "ablations": {}}
        for name, families in self.feature_sets_for(c, fitted.target_table).items():
            rows, attack = fitted.evaluate_with_attack(
                "shadow attack", name, fitted.shadow_attack(families), importances=True
            )
            results += rows
            if attack is not None:
                selection["ablations"][name] = selected(attack)
        for name, attack in registered_attacks(c.threat).items():
            results += fitted.evaluate(name, "all features", lambda _, a=attack: _fresh(a))
        return results, selection

    def _speaker_attacks(self, run: AuditRun, fitted: Fitted) -> tuple[list[Entry], dict]:
        """Speaker-level attacks on per-speaker aggregates, as utterances per speaker grow."""
        from voxaudit.mia.speaker import (
            aggregate_by_speaker,
            speaker_membership,
            speaker_rows,
            subsample_per_speaker,
        )

        c = run.config
        per_speaker = min(
            len(rows) for table in fitted.tables.values() for rows in speaker_rows(table).values()
        )
        counts = sorted({k for k in c.utterances_per_speaker if k <= per_speaker} | {per_speaker})
        results: list[Entry] = []
        selection: dict[str, Any] = {"groups": "speaker", "ablations": {}, "per_speaker": counts}
        feature_sets = self.feature_sets_for(c, fitted.target_table)
        for k in counts:
            tables, sets = {}, {}
            for role, table in fitted.tables.items():
                sub = subsample_per_speaker(table, k, seed=c.seed)
                member = dict(zip(fitted.sets[role].ids, fitted.sets[role].is_member, strict=True))
                aggregated = aggregate_by_speaker(sub)
                # Every speaker has k utterances, so the count column carries no signal.
                keep = [col for col in aggregated.columns if col != "n_utterances"]
                tables[role] = aggregated.select(families=(), columns=keep)
                is_member = speaker_membership(sub, np.array([member[i] for i in sub.ids]))
                sets[role] = EvalSet(aggregated.ids, aggregated.ids, is_member)
            speakers = Fitted(run, tables, sets, fitted.shadow_roles)
            # At the largest count every feature set; below it the richest one, for the curve.
            largest = k == counts[-1]
            chosen = feature_sets if largest else dict(list(feature_sets.items())[-1:])
            for name, families in chosen.items():
                label = f"{name}, {k} utterance{'s' if k > 1 else ''}/speaker"
                rows, attack = speakers.evaluate_with_attack(
                    "speaker shadow attack", label, speakers.shadow_attack(families),
                    headline_candidate=largest,
                )  # fmt: skip
                results += rows
                if attack is not None:
                    selection["ablations"][label] = selected(attack)
        return results, selection

    def _calibrated(
        self, run: AuditRun, sets: dict[str, EvalSet], null: AuditedModel | None
    ) -> tuple[list[Entry], list[str]]:
        """LiRA and RMIA on the per-example loss, with the shadows as reference models."""
        c = run.config
        candidates = list(sets["target"].ids)
        extra = population(run, candidates)
        ids = candidates + extra
        n = len(candidates)
        label_of = self.label_of(run.target)
        utterances = [run.corpus[i] for i in ids]
        waves = [u.load(run.target.model.sample_rate) for u in utterances]
        labels = [label_of(u) for u in utterances]

        def losses(model: AuditedModel) -> np.ndarray:
            return np.asarray(self.loss(Access(model.model, c.threat), waves, labels), float)

        shadows = run.shadows
        reference = np.stack([losses(s) for s in track(shadows, "reference losses",
                                                       enabled=run.progress)])  # fmt: skip
        reference_in = np.stack([membership(run.split, s.role, ids) for s in shadows])
        observed = {"target": losses(run.target)}
        observed["null"] = losses(null) if null is not None else observed["target"]
        null_labels = sets["null"].is_member
        target_set = sets["target"]
        results: list[Entry] = []
        variants, left_out = lira_variants(reference_in[:, :n])
        name_of = {"target": target_set.ids, "null": target_set.ids}
        speakers = {"target": target_set.speakers, "null": target_set.speakers}
        labels_by_role = {"target": target_set.is_member, "null": null_labels}
        for name, lira in variants:
            data = {
                role: AttackData(
                    _statistic_table(name_of[role], speakers[role], logit_confidence(
                        observed[role][:n]), "logit_confidence"),
                    reference=logit_confidence(reference[:, :n]), reference_in=reference_in[:, :n],
                )
                for role in ("target", "null")
            }  # fmt: skip
            results += _reference_attack(name, self.statistic_name, lira, data, labels_by_role,
                                         name_of, speakers, c)  # fmt: skip
        if extra:
            everything = tuple(ids)
            speakers_all = tuple(u.speaker for u in utterances)
            mask = np.arange(len(ids)) >= n
            data = {
                role: AttackData(
                    _statistic_table(everything, speakers_all, np.exp(-observed[role]),
                                     "likelihood"),
                    reference=np.exp(-reference), reference_in=reference_in, population=mask,
                )
                for role in ("target", "null")
            }  # fmt: skip
            results += _reference_attack("RMIA", self.statistic_name, RMIA(), data,
                                         labels_by_role, name_of, speakers, c, keep=n)  # fmt: skip
        return results, left_out


@dataclass
class Fitted:
    """Every model's feature table and evaluation set, ready for attacks: the shadows' rows
    stacked (ids prefixed by role) to fit on, or none when cross-fitting."""

    run: AuditRun
    tables: dict[str, FeatureTable]
    sets: dict[str, EvalSet]
    shadow_roles: list[str]
    classes: dict[str, np.ndarray] | None = None

    @classmethod
    def of(
        cls,
        run: AuditRun,
        tables: dict[str, FeatureTable],
        sets: dict[str, EvalSet],
        label_of: Callable[[Utterance], str] | None = None,
    ) -> Fitted:
        classes = None
        if label_of is not None:
            classes = {
                role: np.array([label_of(run.corpus[i]) for i in s.ids]) for role, s in sets.items()
            }
        return cls(run, tables, sets, run.shadow_roles, classes)

    @property
    def target_table(self) -> FeatureTable:
        return self.tables["target"]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.target_table.columns

    def view(self, role: str) -> View:
        table = self.tables[role]
        data = AttackData(
            table,
            classes=None if self.classes is None else self.classes[role],
            groups=np.array(table.speakers),
        )
        return View(data, self.sets[role].is_member)

    def shadow_view(self) -> View | None:
        """The shadows' rows stacked, ids prefixed by role (an utterance may be evaluated on
        several); speakers as CV groups, so a voice never straddles a fold."""
        if not self.shadow_roles:
            return None
        parts = [prefixed(self.tables[r], r) for r in self.shadow_roles]
        table = FeatureTable.concat_rows(parts)
        classes = None
        if self.classes is not None:
            classes = np.concatenate([self.classes[r] for r in self.shadow_roles])
        labels = np.concatenate([self.sets[r].is_member for r in self.shadow_roles])
        return View(AttackData(table, classes=classes, groups=np.array(table.speakers)), labels)

    def shadow_attack(self, families: tuple[str, ...]) -> Callable[[View], ShadowAttack]:
        """A factory of shadow attacks over one feature set, folds as the rows' groups allow."""
        c = self.run.config

        def make(view: View) -> ShadowAttack:
            return ShadowAttack(
                classifiers=c.classifiers,
                feature_sets={"features": families},
                cv=grouped_folds(c.cv, view.labels, view.data.groups),
                random_state=c.seed,
                decision=c.decision,
            )

        return make

    def evaluate(
        self, name: str, features: str, make: Callable[[View], BaseEstimator], **kw: Any
    ) -> list[Entry]:
        return self.evaluate_with_attack(name, features, make, **kw)[0]

    def evaluate_with_attack(
        self,
        name: str,
        features: str,
        make: Callable[[View], BaseEstimator],
        *,
        importances: bool = False,
        headline_candidate: bool = True,
        notes: str | None = None,
    ) -> tuple[list[Entry], BaseEstimator | None]:
        """Fit (on shadow rows, or cross-fitted), score target and null; their result rows and
        the shadow-fitted attack (None when cross-fitting)."""
        evaluated = {role: self.view(role) for role in ("target", "null")}
        shadow = self.shadow_view()
        groups = np.array(self.tables["target"].speakers)
        scored, attack = fit_and_score(make, shadow, evaluated, groups, self.run.config.seed)
        drops = None
        if importances and attack is not None and shadow is not None:
            drops = attack.feature_importances(shadow.data, shadow.labels)
        rows = entries(
            name, features, scored,
            {r: v.labels for r, v in evaluated.items()},
            {r: self.tables[r].ids for r in evaluated},
            {r: self.tables[r].speakers for r in evaluated},
            self.run.config, importances=drops, notes=notes,
            headline_candidate=headline_candidate,
        )  # fmt: skip
        return rows, attack


def prefixed(table: FeatureTable, role: str) -> FeatureTable:
    """Row ids made unique across models (one utterance may be evaluated on several)."""
    return FeatureTable(
        tuple(f"{role}/{i}" for i in table.ids),
        table.speakers,
        table.columns,
        table.families,
        table.values,
    )


def selected(attack: ShadowAttack) -> dict[str, Any]:
    """What cross-validation on shadow data chose, for the report."""
    return {"selected": list(attack.selected_), "cv_results": attack.cv_results_}


def _fresh(attack: BaseEstimator) -> BaseEstimator:
    return clone(attack)


def _statistic_table(
    ids: Sequence[str], speakers: Sequence[str], values: np.ndarray, column: str
) -> FeatureTable:
    return FeatureTable(tuple(ids), tuple(speakers), (column,), ("loss",), values[:, None])


def _reference_attack(
    name: str,
    features: str,
    attack: BaseEstimator,
    data: Mapping[str, AttackData],
    labels: Mapping[str, np.ndarray],
    ids: Mapping[str, Sequence[str]],
    speakers: Mapping[str, Sequence[str]],
    config: TabularConfig,
    keep: int | None = None,
) -> list[Entry]:
    """A calibrated attack fitted once on the references, scoring target and null control;
    ``keep`` drops RMIA's population columns from the scored rows.

    Scores only: LiRA's and RMIA's ``predict`` cut at a fixed rule, not at a threshold chosen on
    shadow data as every other attack's is, so their decisions would not be comparable."""
    attack.fit(data["target"])
    scored = {
        role: Scored(np.asarray(attack.score(part), dtype=np.float64)[:keep], None,
                     attack.shadow_auroc_)
        for role, part in data.items()
    }  # fmt: skip
    return entries(name, features, scored, labels, ids, speakers, config)


def lira_variants(reference_in: np.ndarray) -> tuple[list[tuple[str, LiRA]], list[str]]:
    """The LiRA variants that references with membership ``reference_in`` (shadow x evaluated
    utterance) can fit, and why any other was left out.

    Offline LiRA pools one variance over the OUT references: every utterance needs one, and
    some utterance two. Online LiRA also needs an IN reference for every utterance (and two
    for some) and pools a variance per side; with 8 references or more and two of each side
    for every utterance it is also fitted with a variance per utterance and side (Carlini et
    al. fix the variance below 64 references: the pooled one is the robust variant).
    """
    outs, ins = (~reference_in).sum(axis=0), reference_in.sum(axis=0)
    out_side = bool((outs >= 1).all() and (outs >= 2).any())
    in_side = bool((ins >= 1).all() and (ins >= 2).any())
    variants: list[tuple[str, LiRA]] = []
    left_out = []
    statistic = "logit_confidence"
    if out_side:
        variants.append(
            ("LiRA offline, fixed variance",
             LiRA(statistic=statistic, mode="offline", fixed_variance=True))
        )  # fmt: skip
    else:
        left_out.append(
            "LiRA offline: it needs, for every evaluated utterance, a shadow model that did not "
            "train on it, and two for some utterance (use more shadow models)"
        )
    if out_side and in_side:
        variants.append(
            ("LiRA online, fixed variance",
             LiRA(statistic=statistic, mode="online", fixed_variance=True))
        )  # fmt: skip
        if len(reference_in) >= 8 and (ins >= 2).all() and (outs >= 2).all():
            variants.append(
                ("LiRA online", LiRA(statistic=statistic, mode="online", fixed_variance=False))
            )
    elif ins.any():
        left_out.append(
            "LiRA online: it needs, for every evaluated utterance, a shadow model that trained "
            "on it and one that did not, and two of each for some utterance (use at least 4 "
            "shadow models on random halves that include the target's pools)"
        )
    return variants, left_out


def population(run: AuditRun, candidates: list[str]) -> list[str]:
    """Known non-members of the target for RMIA: utterances no target pool holds.

    Each must be OUT for at least one reference (shadow) model, or p(z) has no OUT estimate.
    """
    split = run.split
    everything = {i for ids in split.pools.values() for i in ids}
    target_pools = {
        i for name, ids in split.pools.items() if name.startswith("target") for i in ids
    }
    in_every = set.intersection(*(membership_ids(split, s.role) for s in run.shadows))
    pool = sorted(everything - target_pools - set(candidates) - in_every)
    if run.target.trained_ids is not None:
        pool = [i for i in pool if i not in run.target.trained_ids]
    rng = np.random.default_rng(run.config.seed)
    if len(pool) > run.config.population:
        chosen = np.sort(rng.choice(len(pool), run.config.population, replace=False))
        pool = [pool[i] for i in chosen]
    return pool
