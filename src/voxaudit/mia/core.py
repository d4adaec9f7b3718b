"""One membership audit for every model family: the steps that do not depend on the family.

A :class:`Family` (ASR, utterance classifier, speaker encoder; see ``voxaudit.mia.families``)
says what differs: which labels a model is queried with, which features it extracts, which
attacks apply at each threat and level, and how utility is measured. :func:`run_audit` does the
rest for any family:

1. refuses, before any query, what cannot make a valid audit: shadow roles that are not the
   split's, a target whose recorded training ids reach into its own holdout, a reference (base)
   model that trained on the evaluated rows, family checks (split level, clip lengths);
2. lets the family fit its attacks on shadow data only (or, with no shadow model, on half of
   the target's known membership at a time: cross-fitting) and score the target beside its
   null control (a model that never saw the evaluated data, or, failing one, the same
   pipeline with permuted membership labels);
3. assembles the result: per-example scores of every row, setup, warnings for the first screen,
   and writes ``report.json`` with ``examples.csv`` beside it.
"""

from __future__ import annotations

import os
import platform
import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from voxaudit.compute import ComputeConfig
from voxaudit.data.corpus import Corpus
from voxaudit.data.splits import AuditSplit
from voxaudit.errors import VoxauditError
from voxaudit.mia.configs import AuditConfig
from voxaudit.mia.evaluation import EvalSet, evaluation_set
from voxaudit.mia.results import new_report, save_results
from voxaudit.mia.scoring import scoring_warnings

Report = dict[str, Any]
Entry = dict[str, Any]


@dataclass(frozen=True)
class AuditedModel:
    """A model an audit queries: its role, where it came from, the model and what it trained on.

    Parameters
    ----------
    role : ``"target"``, ``"shadow-K"`` (a role of the split), ``"null"`` or ``"reference-K"``
        (a reference model, e.g. the public base checkpoint the target was fine-tuned from).
    source : where the model came from (a path, an adapter name), for the report.
    model : the queried model: a ``SpeechRecognizer``, ``UtteranceClassifier`` or
        ``SpeakerEncoder`` (``voxaudit.models.base``).
    trained_ids : the utterances it really trained on, when known (a voxaudit checkpoint
        records them). A validation share carved from its pool then counts as no member, and a
        target whose trained ids reach into its holdout is refused.
    label : classifiers only: what the classes are (``"speaker"`` or ``"transcript"``).
    """

    role: str
    source: str
    model: Any
    trained_ids: frozenset[str] | None = None
    label: str | None = None

    def as_role(self, role: str, source: str | None = None) -> AuditedModel:
        """The same model in another role (e.g. a shadow serving as the null control)."""
        return replace(self, role=role, source=self.source if source is None else source)


@dataclass
class AuditRun:
    """Everything one audit works on, handed to the family's attack stage.

    ``references`` are models that trained on none of the audited rows (a public base
    checkpoint, a model of another corpus): the base-calibrated attacks compare the target's
    answer on each example with theirs, and need no shadow model.
    """

    corpus: Corpus
    split: AuditSplit
    target: AuditedModel
    shadows: Sequence[AuditedModel]
    null: AuditedModel | None
    config: Any  # the family's AuditConfig subclass
    out_dir: Path
    progress: bool
    references: Sequence[AuditedModel] = field(default_factory=tuple)
    compute: ComputeConfig | None = None  # where each model's features are extracted

    @property
    def shadow_roles(self) -> list[str]:
        return [s.role for s in self.shadows]


@dataclass
class Outcome:
    """What a family's attack stage gives back: result rows, choices made on shadow data, and
    family-specific setup (evaluated counts, queries), plus the null control it used."""

    results: list[Entry]
    selection: dict[str, Any]
    setup: dict[str, Any]
    null: AuditedModel | None


class Family(ABC):
    """What one kind of speech model needs of an audit; subclasses fill in the hooks.

    ``name`` is the family's registry name, ``train_kind`` the ``voxaudit train`` kind that
    makes its built-in models, ``levels`` the membership questions it answers and
    ``config_type`` its :class:`AuditConfig` subclass.
    """

    name: ClassVar[str]
    train_kind: ClassVar[str]
    levels: ClassVar[tuple[str, ...]]
    config_type: ClassVar[type[AuditConfig]]
    #: Whether it can fit attacks on the target's own known membership when no shadow exists.
    cross_fits: ClassVar[bool] = False

    def config(self, **options: Any) -> AuditConfig:
        """The family's audit config from keyword options."""
        return self.config_type(**options)

    @abstractmethod
    def load(self, path: str | Path, role: str | None = None, device: str = "auto") -> AuditedModel:
        """A built-in model from its ``voxaudit train`` run folder (or checkpoint file)."""

    def check_data(
        self, corpus: Corpus, split: AuditSplit, shadow_roles: Sequence[str], config: Any
    ) -> None:
        """Refuse, before any model is trained or queried, a split or corpus the family cannot
        audit (the split's level, clip lengths); the pipeline calls it before training.
        An optional hook: by default there is nothing to refuse."""
        return None

    def check(self, run: AuditRun) -> None:
        """Refuse, before any query, models the family cannot audit (missing methods).
        An optional hook: by default there is nothing to refuse."""
        return None

    @abstractmethod
    def attack(self, run: AuditRun) -> Outcome:
        """Fit the family's attacks and score the target and the null control."""

    @abstractmethod
    def utility(self, model: AuditedModel, corpus: Corpus, ids: Sequence[str]) -> tuple[str, float]:
        """The model's utility on ``ids``: (metric name, value)."""

    def score(
        self,
        recordings: Corpus,
        target: AuditedModel,
        corpus: Corpus,
        split: AuditSplit,
        shadows: Sequence[AuditedModel],
        out_dir: Path,
        config: Any,
        progress: bool,
    ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
        """Scoring mode (:func:`run_scoring`): membership scores of ``recordings`` from a
        reference attack fitted on ``shadows``; the scores, setup facts and the selection."""
        raise VoxauditError(f"the {self.name} family has no scoring mode")

    def describe(self, model: AuditedModel) -> dict[str, Any]:
        """Family-specific facts about the target for the report."""
        return {}


def run_audit(
    family: Family,
    corpus: Corpus,
    split: AuditSplit,
    target: AuditedModel,
    shadows: Sequence[AuditedModel],
    out_dir: str | Path,
    null: AuditedModel | None = None,
    config: AuditConfig | None = None,
    progress: bool = True,
    references: Sequence[AuditedModel] = (),
    compute: ComputeConfig | None = None,
) -> Report:
    """Audit ``target`` for membership leakage; write ``report.json`` and ``examples.csv``.

    Parameters
    ----------
    family : the model family (``voxaudit.mia.families.get("asr")`` etc.).
    corpus : every utterance the split names.
    split : which utterances each model trained on and which it never saw.
    target : the audited model, in role ``"target"``.
    shadows : models of the split's shadow roles, trained like the target; the attacks are
        fitted on them. Empty: the family fits its attacks on half of the target's known
        membership at a time (cross-fitting), when it can.
    out_dir : the report and the feature caches go there (a rerun resumes from the caches).
    null : a model that never saw the evaluated data; by default a shadow that did not, or,
        without shadows, the same pipeline with permuted membership labels.
    config : the family's audit config (its defaults when None).
    progress : show progress bars.
    references : reference (base) models that trained on none of the evaluated rows, e.g. the
        public checkpoint the target was fine-tuned from; they calibrate each example without
        any shadow training. Refused when their recorded trained ids reach into the evaluated
        members or non-members; taken on trust (and flagged so) when unrecorded.
    compute : where each model's features are extracted (``voxaudit.compute``): one after
        another here by default, or one Ray task per model.

    Returns
    -------
    The report (``voxaudit.mia.results``), with per-example scores under each result row.
    """
    config = config or family.config_type()
    if not isinstance(config, family.config_type):
        raise VoxauditError(
            f"the {family.name} audit takes a {family.config_type.__name__}, "
            f"not a {type(config).__name__}"
        )
    out_dir = Path(out_dir)
    started = time.time()
    split.check(corpus)
    if target.role != "target":
        raise VoxauditError(f"{target.source}: the audited model must have role 'target'")
    check_shadow_roles(split, shadows)
    if not shadows and not family.cross_fits:
        raise VoxauditError(f"a {family.name} membership audit needs at least one shadow model")
    # Roles of their own: features and losses are cached by role.
    references = [r.as_role(f"reference-{k}") for k, r in enumerate(references)]
    run = AuditRun(corpus, split, target, list(shadows), null, config, out_dir, progress,
                   references, compute)  # fmt: skip
    family.check_data(corpus, split, run.shadow_roles, config)
    family.check(run)
    warnings = check_trained_ids(split, target) + reference_warnings(references)
    outcome = family.attack(run)
    setup = {
        "family": family.name,
        "model_class": model_class(target.model),
        **family.describe(target),
        "target": target.source,
        "target_trained_ids": "recorded" if target.trained_ids is not None else "unrecorded",
        "shadows": [s.source for s in shadows],
        **({"references": [describe_reference(r) for r in references]} if references else {}),
        "null_control": outcome.null.source if outcome.null else PERMUTATION_NULL,
        "attacks_fitted_on": "shadow models" if shadows else CROSS_FIT,
        "level": split.level,
        "threat": config.threat,
        "corpus": {"name": corpus.name, "fingerprint": split.corpus_fingerprint},
        "split": split.summary(),
        **outcome.setup,
        "config": config.record(),
        "seconds": round(time.time() - started, 1),
        "machine": machine(target.model),
    }
    report = new_report(
        setup,
        results=outcome.results,
        selection=outcome.selection,
        warnings=warnings,
    )
    save_results(out_dir, report)
    return report


def run_scoring(
    family: Family,
    recordings: Corpus,
    target: AuditedModel,
    corpus: Corpus,
    split: AuditSplit,
    shadows: Sequence[AuditedModel],
    out_dir: str | Path,
    config: AuditConfig | None = None,
    progress: bool = True,
) -> Report:
    """Membership *scores* for ``recordings`` on a model with no membership ground truth.

    For a model voxaudit did not train (pocketsphinx, resemblyzer, an API), nobody can say which
    recordings were members, so there is nothing to test a verdict against: a reference attack
    is fitted on the shadow models (trained on ``corpus`` under ``split``) and applied to the
    target's features on the user's ``recordings``. The report (kind ``scores``) ranks them by
    the attack's log-odds, with each row's percentile among the shadows' non-members; how well
    the attack separates the shadows' own members is recorded as context, not as an accuracy on
    the target. The target's and the shadows' utility on the recordings leads the setup, and
    the warnings say when the scores carry no meaning (:mod:`voxaudit.mia.scoring`). The ASR
    and speaker families have a scoring mode.

    Parameters
    ----------
    family : the model family (``voxaudit.mia.families.get("asr")`` or ``"speaker"``).
    recordings : the user's recordings to score (transcribed, for ASR).
    target : the scored model, with no membership ground truth.
    corpus : every utterance the shadows' split names.
    split : the split the shadows were trained on.
    shadows : models of the split's shadow roles; the reference attack is fitted on them.
    out_dir : the report and the feature caches go there.
    config : the family's audit config (its defaults when None).
    progress : show progress bars.

    Returns
    -------
    The report, kind ``scores``.
    """
    config = config or family.config_type()
    out_dir = Path(out_dir)
    started = time.time()
    split.check(corpus)
    if not shadows:
        raise VoxauditError("scoring mode needs at least one shadow model for its reference attack")
    if len(recordings) == 0:
        raise VoxauditError(f"corpus {recordings.name!r}: no recordings to score")
    scores, facts, selection = family.score(
        recordings, target, corpus, split, shadows, out_dir, config, progress
    )
    setup = {
        "family": family.name,
        "mode": "scoring (no membership ground truth)",
        "model_class": model_class(target.model),
        "target": target.source,
        "level": split.level,
        "threat": config.threat,
        **facts,  # a family may score at another threat (ASR: black box), and says so here
        "config": config.record(),
        "seconds": round(time.time() - started, 1),
        "machine": machine(target.model),
    }
    warnings = scoring_warnings(setup, len(scores))
    report = new_report(setup, scores=scores, selection=selection, warnings=warnings)
    save_results(out_dir, report)
    return report


PERMUTATION_NULL = (
    "label permutation (no null model): the same attacks fitted and scored with membership "
    "labels shuffled (within each speaker, or whole speakers at speaker level); it checks the "
    "attack pipeline, not the member and non-member sets"
)
CROSS_FIT = (
    "the target's own known membership, cross-fitted: each half of the evaluated speakers is "
    "scored by attacks fitted on the other half"
)


# --- checks ---------------------------------------------------------------------------------


def check_shadow_roles(split: AuditSplit, shadows: Sequence[AuditedModel]) -> None:
    """Shadow models must hold distinct shadow roles of the split."""
    roles = [s.role for s in shadows]
    if len(set(roles)) != len(roles) or not set(roles) <= set(split.roles[1:]):
        raise VoxauditError(
            f"shadow roles {roles} must be distinct shadow roles of the split: "
            + (", ".join(split.roles[1:]) or "(the split has none)")
        )


def check_trained_ids(split: AuditSplit, target: AuditedModel) -> list[str]:
    """Refuse a target that trained on its own holdout; warn when nobody recorded what it
    trained on (its holdout is then taken on trust)."""
    if target.trained_ids is None:
        return [
            f"The target ({target.source}) records no training ids, so nothing checks that "
            "its non-members were really left out of its training: the verdict assumes so."
        ]
    leaked = sorted(set(split.holdout_ids("target")) & target.trained_ids)
    if leaked:
        raise VoxauditError(
            f"{target.source}: trained on {len(leaked)} utterance(s) of the split's target "
            f"holdout (e.g. {leaked[0]!r}), so its 'non-members' are members: the split does "
            "not belong to this model"
        )
    return []


def check_references(
    run: AuditRun, ids: Collection[str] = (), speakers: Collection[str] = ()
) -> None:
    """Refuse a reference model whose recorded trained ids reach into the target's evaluated
    ``ids`` (or, at speaker level, the voices of its evaluated ``speakers``): a base model
    that shares the target's fine-tuning data is no yardstick for it."""
    for reference in run.references:
        if reference.trained_ids is None:
            continue
        seen = seen_evidence(run.corpus, run.split, reference.trained_ids, ids, speakers)
        if seen:
            units = "speakers' voices" if run.split.level == "speaker" else "utterances"
            raise VoxauditError(
                f"reference model {reference.source} trained on {len(seen)} of the target's "
                f"evaluated {units} (members or non-members, e.g. {seen[0]!r}): a reference "
                "must have trained on none of them"
            )


def reference_warnings(references: Sequence[AuditedModel]) -> list[str]:
    """First-screen warnings for reference models whose training data nobody recorded."""
    return [
        f"The reference model ({r.source}) records no training ids, so nothing checks that it "
        "never trained on the evaluated rows: the base-calibrated attacks assume so."
        for r in references
        if r.trained_ids is None
    ]


def describe_reference(reference: AuditedModel) -> dict[str, str]:
    """A reference model for the report's setup: where it came from and whether it was checked."""
    checked = (
        "recorded: none is an evaluated row"
        if reference.trained_ids is not None
        else "unrecorded: unverified (taken on trust never to include an evaluated row)"
    )
    return {"source": reference.source, "trained_ids": checked}


# --- evaluation sets and the null control ---------------------------------------------------


def membership_ids(split: AuditSplit, role: str) -> set[str]:
    """Every utterance the model in ``role`` trained on (or, at speaker level, whose voice)."""
    return set(split.train_ids(role)) | set(split.unseen_ids(role))


def membership(split: AuditSplit, role: str, ids: Sequence[str]) -> np.ndarray:
    """Whether the model in ``role`` counts each of ``ids`` as a member."""
    trained = membership_ids(split, role)
    return np.array([i in trained for i in ids])


def seen_evidence(
    corpus: Corpus,
    split: AuditSplit,
    seen: Collection[str],
    ids: Collection[str],
    speakers: Collection[str],
) -> list[str]:
    """The evaluated units that a model which trained on ``seen`` saw: utterances of ``ids``
    at sample level, evaluated speakers whose voice it trained on at speaker level."""
    overlap = set(seen) & set(ids)
    if split.level != "speaker":
        return sorted(overlap)
    # At speaker level, having trained on the voice is having seen the evidence.
    voices = {corpus[i].speaker for i in seen if i in corpus}
    return sorted((voices & set(speakers)) | {corpus[i].speaker for i in overlap})


def null_control(
    run: AuditRun, ids: Collection[str] = (), speakers: Collection[str] = ()
) -> AuditedModel | None:
    """The null control for the target's evaluated ``ids`` (and, at speaker level, voices).

    The given null model, checked never to have seen them; else a shadow that never trained on
    them; else (no shadow model) None: the caller permutes labels instead.
    """
    corpus, split = run.corpus, run.split
    if run.null is not None:
        seen = run.null.trained_ids
        if seen is not None and seen_evidence(corpus, split, seen, ids, speakers):
            raise VoxauditError(
                f"null control {run.null.source} trained on some of the target's evaluated data "
                "(utterances or, at speaker level, voices): it cannot show what chance looks like"
            )
        return run.null.as_role("null")
    if not run.shadows:
        return None
    for shadow in run.shadows:
        if not seen_evidence(corpus, split, membership_ids(split, shadow.role), ids, speakers):
            return shadow.as_role("null", f"{shadow.source} (as null control)")
    raise VoxauditError(
        "every shadow model trained on some of the target's evaluated data (random halves "
        "including the target?): pass a null-control model trained on other data"
    )


def evaluation_sets(
    run: AuditRun, evidence: str = "unseen"
) -> tuple[dict[str, EvalSet], AuditedModel | None]:
    """Each model's balanced evaluation set by role, and the null control (None: permuted).

    The null control answers for the target's evaluation set, and the reference models are
    checked never to have trained on it.
    """
    c = run.config
    sets = {
        m.role: evaluation_set(
            run.split, run.corpus, m.role, max_per_side=c.max_per_side, evidence=evidence,
            trained=m.trained_ids, seed=c.seed,
        )
        for m in (run.target, *run.shadows)
    }  # fmt: skip
    target_set = sets["target"]
    check_references(run, target_set.ids, target_set.speakers)
    null = null_control(run, target_set.ids, target_set.speakers)
    sets["null"] = target_set
    return sets, null


# --- setup ----------------------------------------------------------------------------------


@contextmanager
def costed(
    costs: dict[str, dict[str, Any]],
    label: str,
    forward_passes: int,
    per: str = "example",
    models_trained: int = 0,
) -> Iterator[None]:
    """Record in ``costs[label]`` what the attack run inside the block cost: the models the
    auditor trained for it, ``forward_passes`` model queries per evaluated ``per`` (the
    target's and each reference model's), and the process CPU seconds of the block, its own
    queries included (a query an earlier attack already made is read from memory, not counted
    again; the training of the models is not in it).

    Parameters
    ----------
    costs : the report's ``attack_costs`` (setup), by row label ``"name (features)"``.
    label : the row label.
    forward_passes : model queries per evaluated unit.
    per : the unit: ``"example"`` or, for speaker encoders, ``"voice"``.
    models_trained : the shadow models it uses (a public base is not trained by the auditor).
    """
    started = time.process_time()
    yield
    costs[label] = {
        "models_trained": models_trained,
        f"forward_passes_per_{per}": forward_passes,
        "cpu_seconds": round(time.process_time() - started, 3),
    }


def model_class(model: Any) -> str:
    """The class name of the network behind an adapter (its ``model``), or of the adapter."""
    return type(getattr(model, "model", model)).__name__


def machine(model: Any) -> dict[str, Any]:
    """Where the audit ran, for the report."""
    device = getattr(model, "device", None)
    if device is None:
        inner = getattr(model, "model", model)
        parameters = getattr(inner, "parameters", None)
        first = next(iter(parameters()), None) if callable(parameters) else None
        device = first.device if first is not None else "cpu"
    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "device": str(device),
    }
