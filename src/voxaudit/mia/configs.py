"""The audit configs of every family, in one light module (no torch, no scikit-learn), so that
the command line takes its defaults from these dataclasses without importing the models.

:class:`AuditConfig` holds what every family's audit shares; each family's config adds its own
fields. Values are checked when a config is built, before any query.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from voxaudit.errors import VoxauditError

#: Threat models, least to most access (``voxaudit.models.access.AccessLevel`` in this order).
THREATS = ("black", "grey", "white")
#: The shadow attacks' candidate classifiers (``voxaudit.mia.attacks.default_classifier``).
CLASSIFIERS = ("logistic", "random_forest", "gradient_boosting", "mlp")
#: SLMIA-SR's similarity measures (``voxaudit.mia.slmia``).
MEASURES = ("cosine", "l2")
#: Speaker level: which member-speaker utterances are queried (``voxaudit.mia.evaluation``).
EVIDENCE = ("unseen", "trained")


def parse_decision(decision: str) -> tuple[str, float | None]:
    """``"accuracy"``, ``"recall=R"`` (0 < R <= 1) or ``"fpr=F"`` (0 <= F <= 1) as (kind, rate)."""
    kind, _, value = decision.strip().partition("=")
    kind = kind.strip().lower()
    if kind == "accuracy" and not value:
        return "accuracy", None
    if kind in ("recall", "fpr") and value:
        try:
            rate = float(value)
        except ValueError:
            rate = float("nan")
        lowest = 0.0 if kind == "fpr" else np.nextafter(0.0, 1.0)
        if lowest <= rate <= 1.0:
            return kind, rate
        bounds = "[0, 1]" if kind == "fpr" else "(0, 1]"
        raise VoxauditError(f"decision {decision!r}: {kind} must be a number in {bounds}")
    raise VoxauditError(
        f"unknown decision {decision!r}; use 'accuracy', 'recall=R' or 'fpr=F' (e.g. recall=0.9)"
    )


@dataclass(frozen=True)
class AuditConfig:
    """What every family's audit shares; each family's config adds its own fields.

    Parameters
    ----------
    threat : what the attacker sees: ``"black"`` (outputs), ``"grey"`` (+ scores and losses) or
        ``"white"`` (+ input gradients).
    max_per_side : members (and as many non-members) evaluated per model: utterances at sample
        level, speakers at speaker level; None for all.
    classifiers : the shadow attacks' candidate classifiers, chosen by cross-validation on
        shadow data.
    cv : cross-validation folds on shadow data (fewer when there are fewer speakers).
    decision : the attacks' operating point on shadow rows: ``accuracy``, ``recall=R`` or
        ``fpr=F``.
    batch_size : waveforms per model query.
    n_bootstrap : bootstrap resamples behind every 95% interval.
    seed : seeds every random choice of the audit.
    """

    threat: str = "grey"
    max_per_side: int | None = 500
    classifiers: tuple[str, ...] = CLASSIFIERS
    cv: int = 5
    decision: str = "accuracy"
    batch_size: int = 32
    n_bootstrap: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.threat not in THREATS:
            raise VoxauditError(f"unknown threat {self.threat!r}; use black, grey or white")
        parse_decision(self.decision)
        rules = [
            (self.max_per_side is None or self.max_per_side >= 1, "max_per_side must be >= 1"),
            (self.cv >= 2, "cv must be at least 2"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.n_bootstrap >= 1, "n_bootstrap must be at least 1"),
            (bool(self.classifiers), "classifiers needs at least one classifier"),
        ]
        for ok, message in rules:
            if not ok:
                raise VoxauditError(f"{type(self).__name__}: {message}")

    def allows(self, threat: str) -> bool:
        """Whether this audit's threat model includes what ``threat`` shows."""
        return THREATS.index(self.threat) >= THREATS.index(threat)

    def record(self) -> dict[str, Any]:
        """The config as the report stores it."""
        return asdict(self)


@dataclass(frozen=True)
class TabularConfig(AuditConfig):
    """Audit config fields of the families with per-utterance feature rows.

    Parameters
    ----------
    population : RMIA's population, and the rows the quantile regression is fitted on: at most
        this many utterances known to be non-members of the target, none of them evaluated.
    quantile_alphas : the quantile regression attack's quantiles, one result row each:
        ``1 - alpha`` is the false-positive rate its decision aims at.
    """

    population: int = 500
    quantile_alphas: tuple[float, ...] = (0.99, 0.999)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not all(0 < a < 1 for a in self.quantile_alphas):
            raise VoxauditError(
                f"{type(self).__name__}: every quantile_alphas value must lie in (0, 1)"
            )


@dataclass(frozen=True)
class AsrAuditConfig(TabularConfig):
    """What an ASR audit extracts and how it evaluates (and :class:`AuditConfig`'s fields).

    Parameters
    ----------
    snrs_db : signal-to-noise ratios of the Gaussian-noise features.
    draws : noisy copies per SNR.
    adversarial_eps : FGSM/PGD step sizes, relative to the waveform's peak (white box).
    pgd_steps : PGD iterations.
    evidence : speaker level: which member-speaker utterances are queried, ``"unseen"`` (voices
        the model never trained on: the question is the speaker) or ``"trained"``.
    utterances_per_speaker : speaker level: the counts the curve is measured at.
    """

    snrs_db: tuple[float, ...] = (30.0, 20.0, 10.0)
    draws: int = 8
    adversarial_eps: tuple[float, ...] = (0.002, 0.01)
    pgd_steps: int = 5
    evidence: str = "unseen"
    utterances_per_speaker: tuple[int, ...] = (1, 2, 5, 10, 20)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.evidence not in EVIDENCE:
            raise VoxauditError(f"unknown evidence {self.evidence!r}; use one of: unseen, trained")
        if self.draws < 1:
            raise VoxauditError("AsrAuditConfig: draws must be at least 1")


@dataclass(frozen=True)
class ClassifierAuditConfig(TabularConfig):
    """What a classifier audit extracts and how it evaluates (and :class:`AuditConfig`'s fields).

    Parameters
    ----------
    top_k : length of the sorted probability vector.
    snrs_db : signal-to-noise ratios of the label-only noise features.
    draws : noisy copies per SNR.
    min_per_side : per-class attack: a class's fewest member / non-member shadow rows for a
        model of its own.
    """

    top_k: int = 3
    snrs_db: tuple[float, ...] = (30.0, 20.0, 10.0, 5.0, 0.0, -5.0)
    draws: int = 8
    min_per_side: int = 4
    batch_size: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.top_k < 1 or self.draws < 1 or self.min_per_side < 2:
            raise VoxauditError(
                "ClassifierAuditConfig: top_k and draws must be at least 1, min_per_side at least 2"
            )


@dataclass(frozen=True)
class SpeakerAuditConfig(AuditConfig):
    """What a speaker-level audit queries, which attacks it fits and how it evaluates (and
    :class:`AuditConfig`'s fields; ``max_per_side`` counts speakers here).

    Parameters
    ----------
    voices : voices queried per evaluated speaker (fewer when the split has fewer).
    voice_counts, imposter_counts, imposter_voices : query reduction: target voices,
        imposters, voices per imposter.
    mixing_ratio : share of non-training voices among a target member speaker's queries.
    train_ratios : mixing-ratio training on shadow member speakers.
    chunk_seconds : voice chunk splitting (chunk length); None (``"none"`` in a config): whole
        voices only.
    select_chunking : keep chunk splitting only where it wins on shadow cross-validation
        (never on the target): it adds noise for encoders trained on whole utterances.
    select_features : choose SLMIA-SR's feature set (intra + inter, intra, inter) on shadow
        cross-validation. Off, as in paper 001: on the GE2E targets of
        docs/results-speaker.md it gave no reliable gain.
    chunk_overlap : overlap of consecutive chunks.
    measures : SLMIA-SR's similarity measures.
    views : EncoderMI: augmented views per voice.
    curve_classifiers : classifiers of the ablations and query-reduction curves.
    attack_seeds : seeds of the attack classifier, averaged.
    """

    voices: int = 10
    voice_counts: tuple[int, ...] = tuple(range(1, 11))
    imposter_counts: tuple[int, ...] = (1, 5, 10, 20)
    imposter_voices: tuple[int, ...] = (1, 2, 5)
    mixing_ratio: float = 0.0
    train_ratios: tuple[float, ...] = (0.0, 0.5)
    chunk_seconds: float | None = 1.6
    select_chunking: bool = True
    select_features: bool = False
    chunk_overlap: float = 0.5
    measures: tuple[str, ...] = MEASURES
    views: int = 4
    curve_classifiers: tuple[str, ...] = ("mlp",)
    attack_seeds: int = 10
    classifiers: tuple[str, ...] = CLASSIFIERS

    def __post_init__(self) -> None:
        super().__post_init__()
        ratios = (self.mixing_ratio, *self.train_ratios)
        rules = [
            (self.threat == "grey", f"the speaker audit is grey-box only (embeddings), "
                                    f"not {self.threat!r}"),
            (self.voices >= 1, "voices must be at least 1"),
            (all(0 <= r <= 1 for r in ratios), "mixing_ratio and train_ratios must lie in [0, 1]"),
            (bool(self.train_ratios), "train_ratios needs at least one ratio"),
            (self.attack_seeds >= 1, "attack_seeds must be at least 1"),
            (self.views >= 2, "views must be at least 2 (EncoderMI compares views)"),
            (self.chunk_seconds is None or self.chunk_seconds > 0, "chunk_seconds must be > 0"),
        ]  # fmt: skip
        for ok, message in rules:
            if not ok:
                raise VoxauditError(f"speaker audit config: {message}")


#: How a one-run audit scores its canaries (``voxaudit.mia.one_run.canary_scores``).
DP_SCORES = ("loss", "calibrated")


@dataclass(frozen=True)
class DPAuditConfig:
    """The settings of a one-run audit (``[dp_audit]``; ``voxaudit dp-audit`` options).

    ``kind`` "auto" takes the family's first canary kind (``voxaudit.data.canaries``);
    ``score`` "calibrated" subtracts a reference model's score (it needs one);
    ``noise_multiplier`` set trains under DP-SGD (Opacus, clipping at ``max_grad_norm``),
    whose accountant's epsilon at ``delta`` is reported beside the bound; ``per_speaker`` is
    the utterances of each synthetic speaker canary.
    """

    canaries: int = 1000
    kind: str = "auto"
    delta: float = 1e-5
    confidence: float = 0.95
    score: str = "loss"
    noise_multiplier: float | None = None
    max_grad_norm: float = 1.0
    per_speaker: int = 4

    def check(self, family: str, where: str, has_reference: bool) -> DPAuditConfig:
        """These settings for ``family``, the kind resolved; an error names ``where`` and the
        key, before any work."""
        from voxaudit.data.canaries import CANARY_KINDS

        kinds = CANARY_KINDS.get(family)
        if kinds is None:
            raise VoxauditError(f"{where}: no canaries for family {family!r}")
        kind = kinds[0] if self.kind == "auto" else self.kind
        if kind not in kinds:
            raise VoxauditError(
                f"{where} kind: a {family} model takes {' or '.join(kinds)} canaries "
                f"(or auto), not {self.kind!r}"
            )
        if isinstance(self.canaries, bool) or self.canaries < 2:
            raise VoxauditError(f"{where} canaries must be an integer >= 2 (got {self.canaries})")
        if not 0 <= self.delta < 1:
            raise VoxauditError(f"{where} delta must lie in [0, 1) (got {self.delta})")
        if not 0 < self.confidence < 1:
            raise VoxauditError(f"{where} confidence must lie in (0, 1) (got {self.confidence})")
        if self.score not in DP_SCORES:
            raise VoxauditError(f"{where} score must be loss or calibrated (got {self.score!r})")
        if self.score == "calibrated" and not has_reference:
            raise VoxauditError(
                f"{where} score: calibrated needs a reference model that trained on no canary "
                "([reference] model, [base], or --reference)"
            )
        if self.noise_multiplier is not None:
            if family == "speaker":
                raise VoxauditError(
                    f"{where} noise_multiplier: DP-SGD's accounting does not describe a speaker "
                    "encoder: its loss couples the utterances of a batch, and Opacus' Poisson "
                    "sampling replaces the speaker batches"
                )
            if self.delta == 0:
                raise VoxauditError(f"{where} delta: DP-SGD's accountant needs delta > 0")
            if not self.noise_multiplier > 0 or not self.max_grad_norm > 0:
                raise VoxauditError(
                    f"{where} noise_multiplier and max_grad_norm must be > 0 "
                    f"(got {self.noise_multiplier}, {self.max_grad_norm})"
                )
        if isinstance(self.per_speaker, bool) or self.per_speaker < 2:
            raise VoxauditError(f"{where} per_speaker must be an integer >= 2")
        return DPAuditConfig(
            **(
                asdict(self)
                | {"kind": kind, "delta": float(self.delta), "confidence": float(self.confidence)}
            )
        )
