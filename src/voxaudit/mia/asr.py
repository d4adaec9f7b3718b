"""Membership audit of an ASR model: the API behind ``voxaudit mia asr``.

One run answers "was this recording (sample level) or this speaker (speaker level) in the
target's training set?" under one threat model, and writes a report:

1. each model (target, shadows, null control) is queried on its balanced evaluation set
   (``voxaudit.mia.evaluation``) through ``Access`` at the audit's threat level, and its
   per-utterance features are extracted (cached, so a stopped run resumes);
2. attacks are fitted on the shadow models' features only: a shadow-model attack per feature
   ablation (WER only; + loss; + Gaussian noise; + adversarial), single-feature thresholds,
   and, with grey-box access, the calibrated LiRA and RMIA on the per-utterance loss;
3. every attack scores the target and the null control (a model that never saw the evaluated
   utterances, which must sit at chance), with bootstrap 95% intervals.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voxaudit.data.corpus import Corpus
from voxaudit.data.splits import AuditSplit
from voxaudit.errors import VoxauditError
from voxaudit.mia.asr_features import AsrFeatures
from voxaudit.mia.attacks import ThresholdAttack, parse_decision
from voxaudit.mia.audit_common import (
    calibrated_results,
    checkpoint_role,
    evaluate,
    evaluation_sets,
    fit_shadow_attack,
    population,
    reference_membership,
    selected,
    stacked,
)
from voxaudit.mia.evaluation import EvalSet, evaluation_set
from voxaudit.mia.feature_cache import model_digest
from voxaudit.mia.speaker import (
    aggregate_by_speaker,
    speaker_membership,
    speaker_rows,
    subsample_per_speaker,
)
from voxaudit.mia.table import FeatureTable
from voxaudit.models.access import Access, AccessLevel
from voxaudit.models.recognizer import Recognizer
from voxaudit.progress import track
from voxaudit.report.mia import new_report, write_report

#: Feature ablations as in paper 000's table: name -> (families, least threat that has them).
ABLATIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "WER only": (("transcript",), "black"),
    "WER + noise": (("transcript", "noise"), "black"),
    "loss": (("transcript", "score", "loss", "confidence"), "grey"),
    "loss + noise": (("transcript", "score", "loss", "confidence", "noise"), "grey"),
    "loss + noise + adversarial": (
        ("transcript", "score", "loss", "confidence", "noise", "adversarial"),
        "white",
    ),
}
THRESHOLDS = {"wer": "black", "loss_per_char": "grey"}


@dataclass(frozen=True)
class AsrAuditConfig:
    """What an ASR audit extracts and how it evaluates."""

    threat: str = "grey"
    snrs_db: tuple[float, ...] = (30.0, 20.0, 10.0)
    draws: int = 8
    adversarial_eps: tuple[float, ...] = (0.002, 0.01)
    pgd_steps: int = 5
    max_per_side: int | None = 500  # members (speaker level: member speakers) per model
    evidence: str = "unseen"  # speaker level: which member-speaker utterances are queried
    utterances_per_speaker: tuple[int, ...] = (1, 2, 5, 10, 20)
    classifiers: tuple[str, ...] = ("logistic", "random_forest", "gradient_boosting", "mlp")
    cv: int = 5  # cross-validation folds on shadow data (fewer when there are fewer speakers)
    decision: str = "accuracy"  # attacks' operating point on shadow rows: recall=R, fpr=F
    population: int = 500  # RMIA population utterances (known non-members of the target)
    batch_size: int = 32
    n_bootstrap: int = 1000
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.threat not in [level.value for level in AccessLevel]:
            raise VoxauditError(f"unknown threat {self.threat!r}; use black, grey or white")
        parse_decision(self.decision)

    def allows(self, threat: str) -> bool:
        return AccessLevel(self.threat).rank >= AccessLevel(threat).rank


@dataclass
class AuditModel:
    """A model the audit queries: its role, where it came from, and the recognizer itself.

    ``trained_ids``, when known (a voxaudit checkpoint records them), are the utterances it
    really trained on: a validation share carved from its pool is then not counted as members.
    """

    role: str  # "target", "shadow-K" or "null"
    source: str
    recognizer: Any
    trained_ids: frozenset[str] | None = None


def audit_asr(
    corpus: Corpus,
    split: AuditSplit,
    target: AuditModel,
    shadows: Sequence[AuditModel],
    out_dir: str | Path,
    null: AuditModel | None = None,
    config: AsrAuditConfig | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the audit, write ``report.json`` and ``report.html`` to ``out_dir``; the report."""
    config = config or AsrAuditConfig()
    out_dir = Path(out_dir)
    started = time.time()
    split.check(corpus)
    if not shadows:
        raise VoxauditError("an ASR membership audit needs at least one shadow model")
    roles = [s.role for s in shadows]
    if len(set(roles)) != len(roles) or not set(roles) <= set(split.roles[1:]):
        raise VoxauditError(
            f"shadow roles {roles} must be distinct shadow roles of the split: "
            + ", ".join(split.roles[1:])
        )
    sets, null = evaluation_sets(
        corpus, split, target, shadows, null, max_per_side=config.max_per_side,
        evidence=config.evidence, seed=config.seed,
    )  # fmt: skip
    extractor = AsrFeatures(
        snrs_db=config.snrs_db,
        draws=config.draws,
        adversarial_eps=config.adversarial_eps,
        pgd_steps=config.pgd_steps,
        batch_size=config.batch_size,
        seed=config.seed,
    )
    tables = {
        m.role: _features(m, sets[m.role], corpus, extractor, config, out_dir, progress)
        for m in (target, *shadows, null)
    }
    shadow_roles = [s.role for s in shadows]
    if split.level == "sample":
        results, selection = _sample_attacks(tables, sets, shadow_roles, config)
        if config.allows("grey"):
            calibrated, left_out = _calibrated(
                corpus, split, sets, target, shadows, null, config, progress
            )
            results += calibrated
            if left_out:
                selection["calibrated attacks left out"] = left_out
    else:
        results, selection = _speaker_attacks(tables, sets, shadow_roles, config)
    report = new_report(
        _setup(corpus, split, target, shadows, null, sets, config, started),
        results=results,
        selection=selection,
    )
    write_report(out_dir, report)
    return report


#: Scoring mode's features: what means the same for any recognizer (error rates and their change
#: under noise), unlike a decoder's own scores, whose scale is particular to each model.
SCORING_FAMILIES = ("transcript", "noise")


def score_asr(
    recordings: Corpus,
    target: AuditModel,
    corpus: Corpus,
    split: AuditSplit,
    shadows: Sequence[AuditModel],
    out_dir: str | Path,
    config: AsrAuditConfig | None = None,
    families: Sequence[str] = SCORING_FAMILIES,
    progress: bool = True,
) -> dict[str, Any]:
    """Membership *scores* for ``recordings`` on a model without membership ground truth.

    For a model voxaudit did not train (the pocketsphinx adapter, an API), nobody can say which
    recordings were members, so there is nothing to test a verdict against. A reference attack
    is fitted on the shadow models' black-box features over ``families`` (shadows trained on
    ``corpus`` under a sample-level ``split``) and applied to the target's features on the
    user's transcribed ``recordings``. The report (kind ``scores``) ranks the recordings; how
    well the same attack separates the shadows' own members is recorded beside it, as context
    and not as an accuracy on the target, whose training data may look nothing like the shadows'.
    """
    config = replace(config or AsrAuditConfig(), threat="black")
    out_dir = Path(out_dir)
    started = time.time()
    split.check(corpus)
    if split.level != "sample":
        raise VoxauditError("scoring mode needs a sample-level split for its shadow models")
    if not shadows:
        raise VoxauditError("scoring mode needs at least one shadow model for its reference attack")
    if len(recordings) == 0:
        raise VoxauditError(f"corpus {recordings.name!r}: no recordings to score")
    untranscribed = [u.id for u in recordings if not u.transcript.strip()]
    if untranscribed:
        raise VoxauditError(
            f"corpus {recordings.name!r}: {len(untranscribed)} recording(s) without a transcript "
            f"(first: {untranscribed[0]}); transcript features need the reference text"
        )
    extractor = AsrFeatures(
        snrs_db=config.snrs_db, draws=config.draws, batch_size=config.batch_size, seed=config.seed
    )
    sets = {
        s.role: evaluation_set(
            split, corpus, s.role, max_per_side=config.max_per_side,
            trained=s.trained_ids, seed=config.seed,
        )
        for s in shadows
    }  # fmt: skip
    tables = {
        s.role: _features(s, sets[s.role], corpus, extractor, config, out_dir, progress)
        for s in shadows
    }
    shadow_table, labels, groups = stacked(tables, sets, list(sets))
    missing = sorted(set(families) - set(shadow_table.families))
    if missing:
        raise VoxauditError(f"scoring features: no columns of families {missing} at black box")
    attack = fit_shadow_attack(config, "reference", tuple(families), shadow_table, labels, groups)
    everything = EvalSet(
        tuple(u.id for u in recordings),
        tuple(u.speaker for u in recordings),
        np.zeros(len(recordings), dtype=bool),
    )
    scored = _features(target, everything, recordings, extractor, config, out_dir, progress)
    membership = attack.score(scored)
    scores = [
        {"id": i, "speaker": speaker, "score": float(value)}
        for i, speaker, value in zip(scored.ids, scored.speakers, membership, strict=True)
    ]
    best = max(attack.cv_results_, key=lambda row: row["auroc_mean"])
    setup = {
        "family": "asr",
        "mode": "scoring (no membership ground truth)",
        "model_class": type(getattr(target.recognizer, "model", target.recognizer)).__name__,
        "target": target.source,
        "recordings": {"name": recordings.name, "count": len(recordings)},
        "reference_attack": {
            "features": list(families),
            "columns": list(attack.columns_),
            "classifier": attack.selected_[0],
            "shadows": [s.source for s in shadows],
            "shadow_cv_auroc": round(best["auroc_mean"], 4),
            "shadow_corpus": {"name": corpus.name, "fingerprint": split.corpus_fingerprint},
        },
        "threat": "black",
        "config": {k: v for k, v in asdict(config).items() if k != "extra"},
        "seconds": round(time.time() - started, 1),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
    }
    report = new_report(setup, scores=scores, selection=selected(attack))
    write_report(out_dir, report)
    return report


def _features(
    model: AuditModel,
    eval_set: EvalSet,
    corpus: Corpus,
    extractor: AsrFeatures,
    config: AsrAuditConfig,
    out_dir: Path,
    progress: bool,
) -> FeatureTable:
    access = Access(model.recognizer, config.threat)
    utterances = [corpus[i] for i in eval_set.ids]
    return extractor.extract(
        access,
        [u.load(access.sample_rate) for u in utterances],
        [u.transcript for u in utterances],
        list(eval_set.ids),
        list(eval_set.speakers),
        cache_dir=out_dir / "features" / model.role,
        progress=progress,
        model_id=model_digest(model.recognizer, model.source),
    )


def _ablations(config: AsrAuditConfig, table: FeatureTable) -> dict[str, tuple[str, ...]]:
    """The feature ablations the threat allows and the table has columns for."""
    present = set(table.families)
    return {
        name: families
        for name, (families, threat) in ABLATIONS.items()
        if config.allows(threat)
        and present & set(families)
        # "WER + noise" only adds over "WER only" when no loss is available.
        and not (name == "WER + noise" and config.allows("grey"))
    }


def _sample_attacks(
    tables: dict[str, FeatureTable],
    sets: dict[str, EvalSet],
    shadow_roles: Sequence[str],
    config: AsrAuditConfig,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    shadow_table, labels, groups = stacked(tables, sets, shadow_roles)
    results: list[dict[str, Any]] = []
    for column, threat in THRESHOLDS.items():
        if config.allows(threat) and column in shadow_table.columns:
            attack = ThresholdAttack(column, decision=config.decision).fit(shadow_table, labels)
            results += evaluate(f"threshold on {column}", column, attack, tables, sets, config)
    selection: dict[str, Any] = {"groups": "speaker", "ablations": {}}
    for name, families in _ablations(config, shadow_table).items():
        attack = fit_shadow_attack(config, name, families, shadow_table, labels, groups)
        selection["ablations"][name] = selected(attack)
        importances = attack.feature_importances(shadow_table, labels)
        results += evaluate("shadow attack", name, attack, tables, sets, config, importances)
    return results, selection


def _speaker_attacks(
    tables: dict[str, FeatureTable],
    sets: dict[str, EvalSet],
    shadow_roles: Sequence[str],
    config: AsrAuditConfig,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Speaker-level attacks on per-speaker aggregates, as utterances per speaker grow."""
    per_speaker = min(
        len(rows) for table in tables.values() for rows in speaker_rows(table).values()
    )
    counts = sorted({k for k in config.utterances_per_speaker if k <= per_speaker} | {per_speaker})
    results: list[dict[str, Any]] = []
    selection: dict[str, Any] = {"groups": "speaker", "ablations": {}, "per_speaker": counts}
    ablations = _ablations(config, tables["target"])
    for k in counts:
        speaker_tables, speaker_sets = {}, {}
        for role, table in tables.items():
            sub = subsample_per_speaker(table, k, seed=config.seed)
            member = dict(zip(sets[role].ids, sets[role].is_member, strict=True))
            aggregated = aggregate_by_speaker(sub)
            # Every speaker has k utterances, so the count column carries no signal; drop it.
            keep = [c for c in aggregated.columns if c != "n_utterances"]
            speaker_tables[role] = aggregated.select(families=(), columns=keep)
            is_member = speaker_membership(sub, np.array([member[i] for i in sub.ids]))
            speaker_sets[role] = EvalSet(aggregated.ids, aggregated.ids, is_member)
        # At the largest count every ablation; below it the richest one, for the curve.
        chosen = ablations if k == counts[-1] else dict(list(ablations.items())[-1:])
        shadow_table, labels, groups = stacked(speaker_tables, speaker_sets, shadow_roles)
        for name, families in chosen.items():
            attack = fit_shadow_attack(config, name, families, shadow_table, labels, groups)
            label = f"{name}, {k} utterance{'s' if k > 1 else ''}/speaker"
            results += evaluate(
                "speaker shadow attack", label, attack, speaker_tables, speaker_sets, config
            )
            selection["ablations"][label] = selected(attack)
    return results, selection


def _calibrated(
    corpus: Corpus,
    split: AuditSplit,
    sets: dict[str, EvalSet],
    target: AuditModel,
    shadows: Sequence[AuditModel],
    null: AuditModel,
    config: AsrAuditConfig,
    progress: bool,
) -> tuple[list[dict[str, Any]], list[str]]:
    """LiRA and RMIA on the length-normalized loss, with the shadows as reference models."""
    candidates = list(sets["target"].ids)
    extra = population(split, candidates, [s.role for s in shadows], config)
    ids = candidates + extra
    utterances = [corpus[i] for i in ids]
    sample_rate = target.recognizer.sample_rate
    waves = [u.load(sample_rate) for u in utterances]
    texts = [u.transcript for u in utterances]

    def losses(model: AuditModel) -> np.ndarray:
        access = Access(model.recognizer, config.threat)
        return np.asarray(access.utterance_loss(waves, texts, normalize=True), dtype=np.float64)

    reference = np.stack([losses(s) for s in track(shadows, "reference losses", enabled=progress)])
    reference_in = reference_membership(split, shadows, ids)
    observed = {"target": losses(target), "null": losses(null)}
    return calibrated_results(
        "loss_per_char", reference, reference_in, observed, sets["target"], config
    )


def _setup(
    corpus: Corpus,
    split: AuditSplit,
    target: AuditModel,
    shadows: Sequence[AuditModel],
    null: AuditModel,
    sets: dict[str, EvalSet],
    config: AsrAuditConfig,
    started: float,
) -> dict[str, Any]:
    return {
        "family": "asr",
        "model_class": type(getattr(target.recognizer, "model", target.recognizer)).__name__,
        "target": target.source,
        "shadows": [s.source for s in shadows],
        "null_control": null.source,
        "level": split.level,
        "threat": config.threat,
        "corpus": {"name": corpus.name, "fingerprint": split.corpus_fingerprint},
        "split": split.summary(),
        "evaluated": {
            role: {"members": s.n_members, "nonmembers": s.n_nonmembers} for role, s in sets.items()
        },
        "config": {k: v for k, v in asdict(config).items() if k != "extra"},
        "seconds": round(time.time() - started, 1),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "device": str(getattr(target.recognizer, "device", "cpu")),
        },
    }


def load_audit_model(path: str | Path, role: str | None = None, device: str = "auto") -> AuditModel:
    """A built-in ASR model from its ``voxaudit train`` run folder (or checkpoint file).

    The role comes from the checkpoint's metadata; ``role`` overrides it (e.g. ``"null"``)
    and must agree with it when both are known, except for the null control.
    """
    from voxaudit.models.recognizer import ASRModel
    from voxaudit.train.loop import load_model, resolve_device

    role, train_ids = checkpoint_role(path, role)
    model = load_model(path, resolve_device(device), expected=ASRModel.__args__)  # type: ignore[attr-defined]
    return AuditModel(role, str(path), Recognizer(model), train_ids)


def load_scored_model(spec: str, device: str = "auto") -> AuditModel:
    """The model a scoring run queries: ``pocketsphinx``, a run folder or a local HF CTC model."""
    if spec == "pocketsphinx":
        from voxaudit.models.adapters.pocketsphinx import PocketSphinxRecognizer

        return AuditModel("target", "pocketsphinx (bundled en-us models)", PocketSphinxRecognizer())
    path = Path(spec)
    if not path.exists():
        raise VoxauditError(f"{spec}: no such model folder (or use `pocketsphinx`)")
    if (path / "config.json").is_file():
        from voxaudit.models.adapters.huggingface import HFCTCRecognizer
        from voxaudit.train.loop import resolve_device

        recognizer = HFCTCRecognizer(path, device=resolve_device(device))
        return AuditModel("target", str(path), recognizer)
    # Any built-in model may be scored, whatever role it was trained for ("null" checks none).
    return replace(load_audit_model(path, "null", device), role="target")
