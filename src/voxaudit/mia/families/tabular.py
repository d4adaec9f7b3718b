"""What the ASR and classifier families share: one feature row per utterance, then attacks.

Each model (target, shadows, null control) is queried on its balanced evaluation set through
``Access`` at the audit's threat level, and the family's extractor turns the answers into a
feature table (cached, so a stopped run resumes). The attacks are then the same for both:

* one-feature thresholds and shadow-model attacks per feature set, fitted on the shadows'
  stacked rows (grouped by speaker for cross-validation) or, with no shadow model, cross-fitted
  on halves of the target's own known membership;
* any attack a user registered (``voxaudit.mia.attacks.register_attack``), on every column;
* with grey-box access and shadows, the calibrated LiRA (offline, and online when the shadows
  allow) and RMIA on the family's per-example loss, the shadows as reference models;
* with grey-box access and reference (base) models that trained on none of the evaluated rows,
  e.g. the public checkpoint the target was fine-tuned from: the base loss ratio (the loss
  minus the references' loss) and RMIA with the references (and any shadows) as reference
  models, neither needing shadow training;
* with grey-box access, always: quantile-regression MIA (:mod:`voxaudit.mia.quantile`), fitted
  on the target's known non-members alone. Each of these new rows records its cost in the
  setup's ``attack_costs``.

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

from voxaudit.compute import map_tasks
from voxaudit.data.corpus import Utterance
from voxaudit.mia.attack_data import AttackData
from voxaudit.mia.attacks import ShadowAttack, ThresholdAttack, registered_attacks
from voxaudit.mia.calibrated import RMIA, LiRA, logit_confidence, without_out_reference
from voxaudit.mia.configs import TabularConfig
from voxaudit.mia.core import (
    AuditedModel,
    AuditRun,
    Entry,
    Family,
    Outcome,
    costed,
    evaluation_sets,
    membership,
    membership_ids,
)
from voxaudit.mia.evaluation import EvalSet
from voxaudit.mia.feature_cache import model_digest
from voxaudit.mia.fitting import Scored, View, entries, fit_and_score, grouped_folds, permuted
from voxaudit.mia.quantile import SCORE, QuantileAttack, context_table
from voxaudit.mia.table import FeatureTable
from voxaudit.models.access import Access
from voxaudit.progress import track

#: A per-example measure of a model's answers: (access, waveforms, labels) -> one value each.
Measure = Callable[[Access, list[np.ndarray], list[str]], np.ndarray]


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

    def black_measure(self) -> tuple[str, Measure] | None:
        """The per-example error the black box shows, by name (ASR: each utterance's WER),
        for the black-box base reference; None for a family with nothing finer than right or
        wrong."""
        return None

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
        tables = self.feature_tables(run, models, sets)
        if null is None:
            tables["null"] = tables["target"]
            target = sets["target"]
            groups = np.array(target.speakers)
            sets["null"] = EvalSet(target.ids, target.speakers,
                                   permuted(target.is_member, groups, c.seed))  # fmt: skip
        fitted = Fitted.of(
            run, tables, sets, self.label_of(run.target) if self.uses_classes else None
        )
        costs: dict[str, Any] = {}
        if run.split.level == "sample":
            results, selection = self._sample_attacks(run, fitted)
            results += self.extra_attacks(run, fitted)
            black = self.black_measure()
            if run.references and black is not None:
                statistic, measure = black
                results += self._base_ratio(run, sets, null, Losses(self, run, measure), costs,
                                            BASE_BLACK, statistic)  # fmt: skip
            if c.allows("grey"):
                calibrated, left_out, grey_costs = self._calibrated(run, sets, null)
                costs |= grey_costs
                results += calibrated
                if left_out:
                    selection["calibrated attacks left out"] = left_out
        else:
            results, selection = self._speaker_attacks(run, fitted)
        setup = {
            "evaluated": {
                role: {"members": s.n_members, "nonmembers": s.n_nonmembers}
                for role, s in sets.items()
            },
            # The models really queried: a permuted-label null has no table of its own.
            **self.setup_extra(run, {r: t for r, t in tables.items() if r in models}, sets),
            **({"attack_costs": costs} if costs else {}),
        }
        return Outcome(results, selection, setup, null)

    def setup_extra(
        self, run: AuditRun, tables: dict[str, FeatureTable], sets: dict[str, EvalSet]
    ) -> dict[str, Any]:
        """More facts for the report's setup (the classifier's accuracy gap)."""
        return {}

    def feature_tables(
        self, run: AuditRun, models: Mapping[str, AuditedModel], sets: Mapping[str, EvalSet]
    ) -> dict[str, FeatureTable]:
        """Each model's feature table on its evaluation set (by role), one task per model on
        the run's compute engine."""
        return map_tasks(
            _features_task, {role: (model, sets[role]) for role, model in models.items()},
            run.compute, shared={"family": self, "run": run}, description="feature tables",
            progress=run.progress,
        )  # fmt: skip

    def features(
        self, run: AuditRun, model: AuditedModel, eval_set: EvalSet, progress: bool | None = None
    ) -> FeatureTable:
        """``model``'s feature table on ``eval_set``, through the audit's threat level
        (progress shown as the run's unless ``progress`` says)."""
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
            progress=run.progress if progress is None else progress,
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
    ) -> tuple[list[Entry], list[str], dict[str, Any]]:
        """The attacks on the per-example loss: LiRA and RMIA with the shadows as reference
        models; with reference (base) models, the base loss ratio and RMIA calibrated by them;
        and quantile regression, which needs neither. The rows, the attacks left out (and
        why) and the new attacks' costs by row label."""
        losses = Losses(self, run)
        candidates = sets["target"].ids
        results: list[Entry] = []
        left_out: list[str] = []
        costs: dict[str, Any] = {}
        if run.shadows:
            results += self._lira(run, sets, null, losses, left_out)
            extra = population(run, candidates, run.shadows)
            shadow_in = np.stack([reference_mask(run, s, candidates) for s in run.shadows])
            if without_out_reference(shadow_in):  # few shadows on halves of the target's pools
                left_out.append(
                    "RMIA: it needs, for every evaluated utterance, a shadow model that did not "
                    "train on it (use more shadow models)"
                )
            elif extra:
                results += self._rmia("RMIA", run, run.shadows, extra, sets, null, losses)
            else:
                left_out.append(f"RMIA: {NO_POPULATION}")
        else:
            left_out.append("LiRA, and RMIA on shadow models: they need shadow models")
        if run.references:
            results += self._base_ratio(run, sets, null, losses, costs, BASE_RATIO,
                                        self.statistic_name)  # fmt: skip
            references = [*run.shadows, *run.references]
            extra = population(run, candidates, references)
            if extra:
                with costed(costs, f"{RMIA_BASE} ({self.statistic_name})", 1 + len(references),
                            models_trained=len(run.shadows)):  # fmt: skip
                    results += self._rmia(RMIA_BASE, run, references, extra, sets, null, losses)
            else:
                left_out.append(f"{RMIA_BASE}: {NO_POPULATION}")
        results += self._quantile(run, sets, null, losses, costs)
        return results, left_out, costs

    def _lira(
        self,
        run: AuditRun,
        sets: dict[str, EvalSet],
        null: AuditedModel | None,
        losses: Losses,
        left_out: list[str],
    ) -> list[Entry]:
        """The LiRA variants the shadows can fit, on the logit-scaled likelihood."""
        ids = sets["target"].ids
        shadows = track(run.shadows, "reference losses", enabled=run.progress)
        reference = logit_confidence(np.stack([losses.of(s, ids) for s in shadows]))
        reference_in = np.stack([membership(run.split, s.role, ids) for s in run.shadows])
        observed = _observed(run, null, losses, ids)
        variants, reasons = lira_variants(reference_in)
        left_out += reasons
        results: list[Entry] = []
        for name, lira in variants:
            data = {
                role: AttackData(
                    _statistic_table(ids, sets["target"].speakers,
                                     logit_confidence(observed[role]), "logit_confidence"),
                    reference=reference, reference_in=reference_in,
                )
                for role in ROLES
            }  # fmt: skip
            results += _reference_attack(name, self.statistic_name, lira, data,
                                         *_evaluated(sets), run.config)  # fmt: skip
        return results

    def _rmia(
        self,
        name: str,
        run: AuditRun,
        references: Sequence[AuditedModel],
        extra: list[str],
        sets: dict[str, EvalSet],
        null: AuditedModel | None,
        losses: Losses,
    ) -> list[Entry]:
        """RMIA on the likelihood ``exp(-loss)`` with ``references`` as reference models and
        the target's known non-members ``extra`` as its population."""
        candidates = list(sets["target"].ids)
        ids = candidates + extra
        speakers = tuple(run.corpus[i].speaker for i in ids)
        likelihood = np.exp(-np.stack([losses.of(m, ids) for m in references]))
        reference_in = np.stack([reference_mask(run, m, ids) for m in references])
        observed = _observed(run, null, losses, ids)
        is_population = np.arange(len(ids)) >= len(candidates)
        data = {
            role: AttackData(
                _statistic_table(ids, speakers, np.exp(-observed[role]), "likelihood"),
                reference=likelihood, reference_in=reference_in, population=is_population,
            )
            for role in ROLES
        }  # fmt: skip
        return _reference_attack(name, self.statistic_name, RMIA(), data, *_evaluated(sets),
                                 run.config, keep=len(candidates))  # fmt: skip

    def _base_ratio(
        self,
        run: AuditRun,
        sets: dict[str, EvalSet],
        null: AuditedModel | None,
        losses: Losses,
        costs: dict[str, Any],
        name: str,
        statistic: str,
    ) -> list[Entry]:
        """The base loss ratio (EZ-MIA, reference-model attacks): each example's loss under the
        model minus the reference models' mean loss on it, the log-likelihood ratio of the
        reference to the model (per character or per example, as the family's loss); a member
        when low. With the black box's ``losses`` (ASR: each utterance's WER) it is the same
        comparison on transcripts alone. Its threshold is placed as every threshold attack's:
        on the shadows' own ratios, or, with no shadow model, cross-fitted on halves of the
        target's known membership."""
        c = run.config
        models = {"target": run.target, **{s.role: s for s in run.shadows}}
        if null is not None:
            models["null"] = null
        with costed(costs, f"{name} ({statistic})", 1 + len(run.references)):
            tables = {}
            for role, model in models.items():
                ids, speakers = sets[role].ids, sets[role].speakers
                base = np.mean([losses.of(r, ids) for r in run.references], axis=0)
                ratio = losses.of(model, ids) - base
                tables[role] = _statistic_table(ids, speakers, ratio, LOSS_MINUS_BASE)
            tables.setdefault("null", tables["target"])
            fitted = Fitted(run, tables, sets, run.shadow_roles)
            threshold = (
                "fixed on the shadow models' own ratios, before the target was seen"
                if run.shadows
                else "no shadow model: cross-fitted on halves of the target's known membership"
            )
            return fitted.evaluate(
                name, statistic,
                lambda _: ThresholdAttack(LOSS_MINUS_BASE, member_if="low", decision=c.decision),
                notes=f"{statistic} minus the mean {statistic} of {len(run.references)} "
                      f"reference model(s); threshold {threshold}",
            )  # fmt: skip

    def _quantile(
        self,
        run: AuditRun,
        sets: dict[str, EvalSet],
        null: AuditedModel | None,
        losses: Losses,
        costs: dict[str, Any],
    ) -> list[Entry]:
        """Quantile regression (:mod:`voxaudit.mia.quantile`), one row per ``quantile_alphas``.

        The regressor reads the example's acoustic context (duration, level, zero-crossing
        rate), the family's :meth:`context` (ASR: the transcript's length) and, with reference
        models, their mean loss: nothing that depends on the target's membership. It predicts
        the quantile of the target's score (its negative loss) and is fitted on the target's
        known non-members outside the evaluated rows (its unevaluated holdout and the other
        pools' utterances it never trained on); with fewer than ``QUANTILE_MIN_ROWS`` of them,
        on the non-members of the other half of the evaluated speakers (cross-fitting).
        """
        c = run.config
        target_set = sets["target"]
        known = capped(known_nonmembers(run, target_set.ids), c.population, c.seed)
        cross_fit = len(known) < QUANTILE_MIN_ROWS
        rows = {"evaluated": list(target_set.ids), "fitting": known}
        contexts: dict[str, FeatureTable] = {}

        def scored(model: AuditedModel, part: str) -> FeatureTable:
            if part not in contexts:  # on first use, so that its queries count in that cost
                contexts[part] = self._context(run, rows[part], losses)
            context = contexts[part]
            score = -losses.of(model, context.ids)
            column = FeatureTable(context.ids, context.speakers, (SCORE,), ("loss",),
                                  score[:, None])  # fmt: skip
            return FeatureTable.concat_columns([column, context])

        features = "acoustic context" + (" + base loss" if run.references else "")
        if cross_fit:
            fitted_on = (
                f"only {len(known)} known non-member(s) outside the evaluated rows: fitted on the "
                "non-members of the other half of the evaluated speakers (cross-fitted)"
            )
        else:
            fitted_on = f"fitted on {len(known)} known non-members outside the evaluated rows"
        results: list[Entry] = []
        for alpha in c.quantile_alphas:
            name = f"quantile regression (alpha={alpha:g})"
            attack = QuantileAttack(alpha=alpha, random_state=c.seed)
            with costed(costs, f"{name} ({features})", 1 + len(run.references)):
                target = scored(run.target, "evaluated")
                evaluated = {"target": target,
                             "null": scored(null, "evaluated") if null else target}  # fmt: skip
                notes = (
                    f"a member where the score (negative loss) beats the {alpha:g}-quantile that "
                    f"a regressor on {', '.join(target.columns[1:])} predicts for non-members; "
                    f"{fitted_on}"
                )
                if cross_fit:
                    # No shadow roles: fitted on the target's own rows, a half at a time.
                    fitted = Fitted(run, evaluated, sets, [])
                    results += fitted.evaluate(name, features, lambda _, a=attack: _fresh(a),
                                               notes=notes)  # fmt: skip
                    continue
                by_role = {}
                for role, model in (("target", run.target), ("null", null or run.target)):
                    fitted_attack = _fresh(attack).fit(scored(model, "fitting"))
                    table = evaluated[role]
                    by_role[role] = Scored(fitted_attack.score(table), fitted_attack.predict(table),
                                           None)  # fmt: skip
                results += entries(name, features, by_role, *_evaluated(sets), c, notes=notes)
        return results

    def _context(self, run: AuditRun, ids: Sequence[str], losses: Losses) -> FeatureTable:
        """The quantile regressor's features of ``ids`` (see :meth:`_quantile`)."""
        utterances = [run.corpus[i] for i in ids]
        rate = run.target.model.sample_rate
        label_of = self.label_of(run.target)
        extra = self.context(utterances, [label_of(u) for u in utterances])
        if run.references:
            extra["base_loss"] = np.mean([losses.of(r, ids) for r in run.references], axis=0)
        return context_table(ids, [u.speaker for u in utterances],
                             [u.load(rate) for u in utterances], rate, extra)  # fmt: skip

    def context(self, utterances: Sequence[Utterance], labels: Sequence[str]) -> dict[str, Any]:
        """Columns known of each example without any model, beside its acoustics, for the
        quantile regressor (by name, one value per utterance); none by default."""
        return {}


def _features_task(
    model: AuditedModel, eval_set: EvalSet, *, family: TabularFamily, run: AuditRun, progress: bool
) -> FeatureTable:
    """One model's feature table: a task of :meth:`TabularFamily.feature_tables`."""
    return family.features(run, model, eval_set, progress)


class Losses:
    """Each model's per-example loss (:meth:`TabularFamily.loss`, or another ``measure`` with
    its signature, e.g. :meth:`TabularFamily.black_measure`'s), queried once per utterance, so that
    the calibrated attacks share the target's and the reference models' answers."""

    def __init__(
        self,
        family: TabularFamily,
        run: AuditRun,
        measure: Measure | None = None,
    ) -> None:
        self.family = family
        self.run = run
        self.measure = measure or family.loss
        self.label_of = family.label_of(run.target)
        self.known: dict[str, dict[str, float]] = {}

    def of(self, model: AuditedModel, ids: Sequence[str]) -> np.ndarray:
        """``model``'s loss on each of ``ids``, by role (the null control is its own role)."""
        known = self.known.setdefault(model.role, {})
        missing = [i for i in dict.fromkeys(ids) if i not in known]
        if missing:
            utterances = [self.run.corpus[i] for i in missing]
            rate = model.model.sample_rate
            values = self.measure(
                Access(model.model, self.run.config.threat),
                [u.load(rate) for u in utterances],
                [self.label_of(u) for u in utterances],
            )
            known.update(zip(missing, np.asarray(values, dtype=np.float64).tolist(), strict=True))
        return np.array([known[i] for i in ids])


#: The calibrated attacks' rows are of the target and of its null control.
ROLES = ("target", "null")
BASE_RATIO = "base loss ratio"
BASE_BLACK = "base error difference"
RMIA_BASE = "RMIA, base reference"
LOSS_MINUS_BASE = "loss_minus_base"
NO_POPULATION = (
    "no known non-member of the target outside the evaluated rows that a reference model did "
    "not train on (its population)"
)
#: Known non-members outside the evaluated rows that the quantile regressor needs to be fitted
#: on them alone; with fewer it is cross-fitted on the evaluated rows' non-members.
QUANTILE_MIN_ROWS = 20


def _observed(
    run: AuditRun, null: AuditedModel | None, losses: Losses, ids: Sequence[str]
) -> dict[str, np.ndarray]:
    """The target's and the null control's losses on ``ids`` (the target's again for a
    permuted-label null)."""
    target = losses.of(run.target, ids)
    return {"target": target, "null": losses.of(null, ids) if null is not None else target}


def _evaluated(
    sets: Mapping[str, EvalSet],
) -> tuple[dict[str, np.ndarray], dict[str, Sequence[str]], dict[str, Sequence[str]]]:
    """Labels, ids and speakers by role of the rows the calibrated attacks score: the target's
    evaluated rows, for the null control too (with its labels)."""
    target = sets["target"]
    labels = {"target": target.is_member, "null": sets["null"].is_member}
    return labels, dict.fromkeys(ROLES, target.ids), dict.fromkeys(ROLES, target.speakers)


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


def reference_members(run: AuditRun, model: AuditedModel) -> set[str]:
    """What a reference model trained on: a shadow's pools of the split, a base model's
    recorded ids (none when unrecorded: it is taken to have trained on no audited row)."""
    if model.role in run.split.roles[1:]:
        return membership_ids(run.split, model.role)
    return set(model.trained_ids or ())


def reference_mask(run: AuditRun, model: AuditedModel, ids: Sequence[str]) -> np.ndarray:
    """Whether the reference ``model`` trained on each of ``ids``."""
    trained = reference_members(run, model)
    return np.array([i in trained for i in ids], dtype=bool)


def known_nonmembers(run: AuditRun, exclude: Sequence[str]) -> list[str]:
    """Utterances the target is known never to have trained on, but for ``exclude``: its
    holdout and every other pool's utterances, less what its recorded trained ids hold."""
    split = run.split
    everything = {i for ids in split.pools.values() for i in ids}
    pool = sorted(everything - membership_ids(split, "target") - set(exclude))
    if run.target.trained_ids is not None:
        pool = [i for i in pool if i not in run.target.trained_ids]
    return pool


def capped(ids: list[str], most: int, seed: int) -> list[str]:
    """At most ``most`` of ``ids``, drawn at random (seeded), in their order."""
    if len(ids) <= most:
        return ids
    chosen = np.sort(np.random.default_rng(seed).choice(len(ids), most, replace=False))
    return [ids[i] for i in chosen]


def population(
    run: AuditRun, candidates: Sequence[str], references: Sequence[AuditedModel]
) -> list[str]:
    """Known non-members of the target for RMIA (:func:`known_nonmembers`, the candidates
    excluded), at most ``config.population``.

    Each must be OUT for at least one of the ``references``, or p(z) has no OUT estimate.
    """
    in_every = set.intersection(*(reference_members(run, m) for m in references))
    pool = [i for i in known_nonmembers(run, candidates) if i not in in_every]
    return capped(pool, run.config.population, run.config.seed)
