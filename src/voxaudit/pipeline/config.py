"""The audit config behind ``voxaudit audit CONFIG``: what to audit, how, and at which levels.

A config is a TOML, YAML or JSON file; :data:`EXAMPLE` (written by ``voxaudit audit init``) is
the commented reference, and the built-in default that ``voxaudit demo`` runs. Relative paths
in a config are relative to the config file, so a config and its corpus can move together.
Every key and its type are checked as the file is read (:mod:`voxaudit.config`), so a bad
config fails before anything trains. TOML has no null: ``"none"`` stands for None, e.g.
``[audit] chunk_seconds = "none"`` for a speaker audit without chunk splitting.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from voxaudit.compute import ComputeConfig
from voxaudit.config import checked, from_mapping, keyword_types, read_config_file
from voxaudit.errors import VoxauditError
from voxaudit.mia import families
from voxaudit.mia.configs import DPAuditConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

THREATS = ("black", "grey", "white")

EXAMPLE = """\
# voxaudit audit config: `voxaudit audit THIS_FILE --out DIR`.
# Relative paths are relative to this file. TOML here; YAML and JSON work the same.

seed = 0
device = "auto"            # "cpu", "cuda" or "auto" (the GPU when there is one)
threat = "grey"            # the attacker sees: black (outputs), grey (+ scores), white (+ weights)
levels = ["sample"]        # sample: "was this recording used?"; speaker: "was this voice used?"

[corpus]
path = "voxaudit-out/synthetic-32x16"
# A corpus on disk in any layout `voxaudit data inspect` knows (layout/pattern as there), or,
# when `path` does not exist yet, the built-in synthetic corpus made there:
synthesize = { speakers = 32, per_speaker = 16 }
# Bad files (missing or unreadable audio) are listed and left out; strict = true fails instead.

[target]
family = "classifier"      # asr (speech recognizer), classifier, speaker (speaker encoder)
# A built-in model to train on the target's pool of each level's split, with this run config
# (the sections of `voxaudit train --config`). Deliberately over-fitted here, so that the demo
# shows what leakage looks like; audit your own recipe by copying it in.
model = { label = "speaker", hidden = 64, n_mels = 40, dropout = 0.0 }
train = { epochs = 30, lr = 2e-3, batch_size = 16, warmup_steps = 50, grad_clip = 5.0 }
# Or a model trained elsewhere with voxaudit, on the target pool of a split you made:
#   checkpoint = "runs/target"  and  split = "split.json"   (its level is the one audited)
# Or a model with no membership ground truth (scores, not verdicts; asr and speaker only):
#   adapter = "pocketsphinx"  and  recordings = "my-recordings/"
# Or any model trained elsewhere whose training data you know (verdicts): adapter is a run
# folder, a Hugging Face folder, pocketsphinx, resemblyzer or "module.path:factory" (your
# function returning the model), with files of ids or audio paths, one a line:
#   adapter = "mymodels:build"  members = "members.txt"  nonmembers = "nonmembers.txt"
# The shadows then train on the corpus' other recordings (count = 0: none, the attacks are
# fitted on half of the known membership at a time).
# With a checkpoint or an adapter, model/train are the recipe of the shadow models.
# Speaker encoders also take sampler = { speakers_per_batch = 10, utterances_per_speaker = 4 };
# any target takes augment = { ... } (SpecAugment), as in `voxaudit train --config`.

[shadows]
count = 2                  # shadow models, trained with the target's recipe on disjoint pools
mode = "halves"            # halves: each shadow sees a random half of the shadow pool

[split]                    # options of `voxaudit split` (make_split), e.g. target_fraction
target_fraction = 0.5
# stratify_labels = true   # sample level: members and non-members hold the same words

[audit]                    # options of the family's audit, e.g. max_per_side, draws, n_bootstrap
max_per_side = 128
draws = 4

# A reference (base) model that trained on none of the audited recordings, e.g. the public
# checkpoint the target was fine-tuned from: it adds attacks that need no shadow training
# (the base loss ratio; for speaker encoders, the base-calibrated similarity).
# [reference]
# model = "runs/base"      # a run folder or checkpoint the family loads
#
# Or the fine-tuning scenario, built in: a base model pretrained here, with the target's
# [model] and this [train], on a pool P set aside from the corpus; the target and its shadows
# are then fine-tuned from it on the rest's pools, and it is the reference model.
# [base]
# fraction = 0.3           # P's share of the corpus
# by = "speakers"          # P holds whole speakers (other people); or "recordings": a share
#                          # of every speaker's (a speaker classifier keeps its classes)
# train = { epochs = 30 }  # the base's [train]; the target's when unset
# freeze = ["front_end"]   # parameter-name prefixes the fine-tuning leaves as the base has them

# Where the shadow (and target) models train, each model's features are extracted and a
# defense sweep's settings run: here one after another (local), or as Ray tasks, on a Ray
# started on this machine or on a cluster (pip install 'voxaudit[ray]'). The figures do not
# depend on the engine, given the same threads per model; a rerun may change it.
# [compute]
# engine = "ray"           # or "local" (the default)
# address = "auto"         # join this machine's cluster (or "HOST:6379"); unset: start one here
# cpus_per_task = 1        # also torch's threads in each task
# gpus_per_task = 0
# max_retries = 3          # reruns of a task whose worker died (it resumes from its checkpoint)

# Optional stages:
# [defenses]
# sweep = "configs/sweep-classifier.toml"   # a `voxaudit defend sweep` config, run and reported
#
# [dp_audit]               # how much privacy the recipe has, in epsilon terms (one run):
# canaries = 1000          # trains the recipe once more with canaries, each in with prob. 1/2
# kind = "auto"            # wrong-label (classifier); random-transcript or synthetic-sentence
#                          # (asr); synthetic-speaker (speaker)
# delta = 1e-5             # the bound's delta, and the DP-SGD accountant's
# score = "loss"           # or "calibrated" (minus the [reference] or [base] model's score)
# noise_multiplier = 1.0   # train under DP-SGD (classifier: model cell = "dpgru"; asr: rnn =
#                          # "dpgru"); the accountant's epsilon is shown beside the bound
#
# [guard]                  # asr targets: would `voxaudit guard` catch adversarial attacks on it?
# benign = 200             # benign utterances per stream (calibration, held out); at least 150
# carriers = 1             # clips attacked per kind (speech, music)
# attacks = ["ctc (white box)", "nes (black box)"]
#                          # also "irta-like (white box, masked)" and "genetic (black box)"
# target = "open the door" # the command the attacks make the model transcribe
# fpr = 0.001              # the detectors' target false-positive rate per benign query
# gateway = false          # also send the white-box attacks through the HTTP gateway
"""


@dataclass(frozen=True)
class CorpusSpec:
    path: Path
    layout: str | None = None
    pattern: str | None = None
    text_column: str | None = None  # a manifest's transcript column, when not text/transcript
    synthesize: dict[str, int] | None = None  # {speakers, per_speaker} when path is missing
    strict: bool = False  # fail on any bad file, as `voxaudit data inspect --strict`


@dataclass(frozen=True)
class TargetSpec:
    family: str
    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    sampler: dict[str, Any] = field(default_factory=dict)  # speaker encoders' batches
    augment: dict[str, Any] = field(default_factory=dict)  # SpecAugment
    finetune: dict[str, Any] = field(default_factory=dict)  # init_from (a base run), freeze
    checkpoint: Path | None = None
    split: Path | None = None
    adapter: str | None = None
    recordings: Path | None = None
    members: Path | None = None
    nonmembers: Path | None = None

    @property
    def source(self) -> str:
        """How the target is obtained: ``train``, ``checkpoint``, ``adapter`` (scores only) or
        ``membership`` (a model trained anywhere, with its member and non-member lists)."""
        if self.checkpoint:
            return "checkpoint"
        if self.adapter:
            return "membership" if self.members else "adapter"
        return "train"

    @property
    def label(self) -> str | None:
        """What a classifier's classes are (``[target] model.label``, ``"speaker"`` unless set):
        the shadows train on it, and a target given as ``module.path:factory`` is audited as
        classifying by it. None for the other families."""
        return self.model.get("label", "speaker") if self.family == "classifier" else None


@dataclass(frozen=True)
class BaseSpec:
    """The built-in fine-tuning scenario: a base pretrained on a pool the audit sets aside
    (``voxaudit.data.splits.base_pool``), the target and shadows fine-tuned from it."""

    fraction: float = 0.3  # the pool's share of the corpus
    by: str = "speakers"  # whole speakers, or a share of every speaker's "recordings"
    train: dict[str, Any] = field(default_factory=dict)  # the base's [train] (else the target's)
    freeze: tuple[str, ...] = ()  # what fine-tuning leaves as the base has it


@dataclass(frozen=True)
class GuardEvaluation:
    """The optional guard stage (``voxaudit.guard.evaluation.evaluate_guard``), sized for a CPU."""

    benign: int = 200  # benign utterances per stream (calibration, held out)
    carriers: int = 1  # clips attacked per kind (speech, music)
    attacks: tuple[str, ...] = ("ctc (white box)", "nes (black box)")
    target: str = "open the door"  # the command the attacks make the model transcribe
    fpr: float = 0.001  # the detectors' target false-positive rate per benign query
    gateway: bool = False  # also send the white-box attacks through the HTTP gateway


#: The top level of a config file: its settings, and its sections (each checked on its own).
TOP_LEVEL: dict[str, Any] = {
    "seed": int,
    "device": str,
    "threat": str,
    "levels": tuple[str, ...],
    **dict.fromkeys(
        (
            "corpus",
            "target",
            "shadows",
            "split",
            "audit",
            "reference",
            "base",
            "defenses",
            "guard",
            "dp_audit",
            "compute",
        ),
        dict[str, Any],
    ),
}


@dataclass(frozen=True)
class PipelineConfig:
    corpus: CorpusSpec
    target: TargetSpec
    levels: tuple[str, ...] = ("sample",)
    threat: str = "grey"
    seed: int = 0
    device: str = "auto"
    shadows: int = 2
    shadow_mode: str = "halves"
    split: dict[str, Any] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)
    reference: Path | None = None  # a reference (base) model's run folder or checkpoint
    base: BaseSpec | None = None  # the built-in scenario: a base pretrained here, fine-tuned
    defense_sweep: Path | None = None
    guard: GuardEvaluation | None = None
    dp_audit: DPAuditConfig | None = None  # a one-run epsilon lower bound of the recipe
    compute: ComputeConfig = field(default_factory=ComputeConfig)  # where tasks run, not results
    origin: str = field(default="the config", compare=False)  # the file, for error messages

    @classmethod
    def load(cls, path: str | Path) -> PipelineConfig:
        """A config file; errors name the file, the section and the key."""
        path = Path(path)
        return cls.from_dict(read_config_file(path), root=path.parent, where=str(path))

    @classmethod
    def example(cls, root: str | Path = ".") -> PipelineConfig:
        """The built-in default (:data:`EXAMPLE`), its paths relative to ``root``."""
        return cls.from_dict(tomllib.loads(EXAMPLE), root=Path(root), where="the built-in config")

    @classmethod
    def from_dict(cls, data: dict[str, Any], root: Path, where: str) -> PipelineConfig:
        """Every key and type checked here, so that a bad config fails before any work."""
        data = checked(data, TOP_LEVEL, where)
        for name in ("corpus", "target"):
            if name not in data:
                raise VoxauditError(f"{where}: missing table [{name}]")
        target = _target(data["target"], root, where)
        seed = data.get("seed", 0)
        if seed < 0:
            raise VoxauditError(f"{where}: seed must be an integer >= 0, got {seed}")
        threat = data.get("threat", "grey")
        if threat not in THREATS:
            raise VoxauditError(f"{where}: threat must be one of {', '.join(THREATS)}")
        count, mode = _shadows(data.get("shadows", {}), f"{where}: [shadows]", target)
        defenses = checked(data.get("defenses", {}), {"sweep": Path}, f"{where}: [defenses]")
        reference = _reference(data.get("reference"), target, where)
        base = _base(data.get("base"), target, reference, where)
        return cls(
            corpus=_corpus(data["corpus"], root, where),
            target=target,
            levels=_levels(data, target, where),
            threat=threat,
            seed=seed,
            device=data.get("device", "auto"),
            shadows=count,
            shadow_mode=mode,
            split=_split_options(data.get("split", {}), f"{where}: [split]"),
            audit=families.audit_options(target.family, data.get("audit", {}), f"{where}: [audit]"),
            reference=root / reference if reference is not None else None,
            base=base,
            defense_sweep=root / defenses["sweep"] if "sweep" in defenses else None,
            guard=_guard(data.get("guard"), target, where),
            dp_audit=_dp_audit(data.get("dp_audit"), target, reference, base, where),
            compute=from_mapping(ComputeConfig, data.get("compute", {}), f"{where}: [compute]"),
            origin=where,
        )


def _corpus(data: dict[str, Any], root: Path, where: str) -> CorpusSpec:
    corpus = from_mapping(CorpusSpec, data, f"{where}: [corpus]")
    if corpus.synthesize is not None:
        sizes = {"speakers": int, "per_speaker": int}
        checked(corpus.synthesize, sizes, f"{where}: [corpus.synthesize]")
    return replace(corpus, path=root / corpus.path)


def _target(data: dict[str, Any], root: Path, where: str) -> TargetSpec:
    """The [target] section, its run config (the sections of `voxaudit train --config`)
    checked against the family's model as `voxaudit train` would check it."""
    from voxaudit.train.run import CONFIG_SECTIONS, read_run_config

    family = data.get("family")
    if family not in families.names():
        raise VoxauditError(
            f"{where}: [target] family must be one of {', '.join(families.names())}, got {family!r}"
        )
    target = from_mapping(TargetSpec, data, f"{where}: [target]")
    run_config = {name: data[name] for name in CONFIG_SECTIONS if name in data}
    kind = families.get(family).train_kind
    read_run_config(run_config, kind, where=where, table="target.")
    paths = {key: root / path
             for key in ("checkpoint", "split", "recordings", "members", "nonmembers")
             if (path := getattr(target, key)) is not None}  # fmt: skip
    if target.adapter and (root / target.adapter).exists():
        paths["adapter"] = str(root / target.adapter)
    if "init_from" in target.finetune:  # the base run, relative to the config file
        paths["finetune"] = target.finetune | {
            "init_from": str(root / target.finetune["init_from"])
        }
    target = replace(target, **paths)
    _check_target(target, where)
    return target


def _levels(data: dict[str, Any], target: TargetSpec, where: str) -> tuple[str, ...]:
    family = target.family
    if target.source == "checkpoint":
        return ()  # the checkpoint's split decides; see run.levels_of
    allowed = families.get(family).levels
    levels = data.get("levels", allowed[:1])
    for level in levels:
        if level not in allowed:
            raise VoxauditError(
                f"{where}: levels: a {family} model is audited at "
                f"{' or '.join(allowed)} level, not {level!r}"
            )
    if target.source == "train" and not levels:
        raise VoxauditError(f"{where}: levels is empty; name at least one level")
    return tuple(levels)


def _shadows(data: dict[str, Any], where: str, target: TargetSpec) -> tuple[int, str]:
    """The [shadows] count and mode; a target with known membership may have none."""
    shadows = checked(data, {"count": int, "mode": str}, where)
    count, mode = shadows.get("count", 2), shadows.get("mode", "halves")
    if count == 0 and target.source == "membership":
        return 0, mode
    if count < 1:
        raise VoxauditError(f"{where} count must be a whole number >= 1")
    if mode not in ("disjoint", "halves"):
        raise VoxauditError(f"{where} mode must be disjoint or halves")
    if mode == "halves" and count < 2:
        raise VoxauditError(
            f"{where} mode halves needs count >= 2 (each utterance is in half the shadow "
            'models); use more shadows or mode = "disjoint"'
        )
    return count, mode


def _check_target(target: TargetSpec, where: str) -> None:
    at = f"{where}: [target]"
    if target.checkpoint and target.adapter:
        raise VoxauditError(f"{at}: give a checkpoint or an adapter, not both")
    if target.checkpoint and not target.split:
        raise VoxauditError(f"{at}: a checkpoint needs the split it was trained on (split = ...)")
    if (target.members is None) != (target.nonmembers is None):
        raise VoxauditError(f"{at}: members and nonmembers go together")
    if target.members and not target.adapter:
        raise VoxauditError(f"{at}: members = ... needs the model: adapter = ...")
    if target.source == "membership" and target.recordings:
        raise VoxauditError(f"{at}: give recordings (scores) or members (verdicts), not both")
    if target.source == "adapter":
        if target.family == "classifier":
            raise VoxauditError(
                f"{at}: a classifier adapter needs members and nonmembers (scoring mode is for "
                "asr and speaker targets)"
            )
        if not target.recordings:
            raise VoxauditError(
                f"{at}: an adapter target needs recordings = ... to score, or members = ... "
                "and nonmembers = ... for verdicts"
            )


def _reference(data: Any, target: TargetSpec, where: str) -> Path | None:
    """The optional [reference] section's model path (relative to the config file's folder)."""
    if data is None:
        return None
    at = f"{where}: [reference]"
    reference = checked(data, {"model": Path}, at)
    if "model" not in reference:
        raise VoxauditError(f"{at}: missing key model (the reference model's run folder)")
    if target.source == "adapter":
        raise VoxauditError(
            f"{at}: scoring mode (an adapter with recordings) has no membership ground truth "
            "for a reference model to calibrate; give the target's members and nonmembers"
        )
    return reference["model"]


def _base(data: Any, target: TargetSpec, reference: Path | None, where: str) -> BaseSpec | None:
    """The optional [base] section (the built-in fine-tuning scenario), checked."""
    if data is None:
        return None
    from voxaudit.data.splits import BASE_POOLS
    from voxaudit.train.run import read_run_config

    at = f"{where}: [base]"
    base = from_mapping(BaseSpec, data, at)
    if target.source != "train":
        raise VoxauditError(f"{at}: the base is pretrained and fine-tuned here: [target] trains "
                            "a built-in model (model = ..., no checkpoint or adapter)")  # fmt: skip
    conflicts = [name for name, given in (("[target] finetune", target.finetune),
                                          ("[reference]", reference)) if given]  # fmt: skip
    if conflicts:
        raise VoxauditError(f"{at}: the base is the target's start and its reference: leave "
                            f"{' and '.join(conflicts)} out")  # fmt: skip
    if not 0 < base.fraction < 1:
        raise VoxauditError(f"{at} fraction must lie strictly between 0 and 1, got {base.fraction}")
    if base.by not in BASE_POOLS:
        raise VoxauditError(f"{at} by must be one of {', '.join(BASE_POOLS)}, got {base.by!r}")
    if base.by == "speakers" and target.label == "speaker":
        raise VoxauditError(
            f"{at}: a speaker classifier's classes are its speakers, and a base of other "
            'speakers has other classes: use by = "recordings"'
        )
    kind = families.get(target.family).train_kind
    read_run_config({"model": target.model, "train": base.train}, kind, where=where, table="base.")
    return replace(base, fraction=float(base.fraction), freeze=tuple(base.freeze))


def _guard(data: Any, target: TargetSpec, where: str) -> GuardEvaluation | None:
    """The optional [guard] section, checked against the target its attacks need."""
    if data is None:
        return None
    at = f"{where}: [guard]"
    guard = from_mapping(GuardEvaluation, data, at)
    if target.family != "asr":
        raise VoxauditError(
            f"{at}: the guard's attacks make a speech recognizer transcribe a chosen command, "
            f"so it applies to asr targets only; [target] family is {target.family!r}"
        )
    if target.source in ("adapter", "membership"):
        raise VoxauditError(
            f"{at}: the guard stage attacks a built-in model through its losses and gradients; "
            "use a model trained here or a checkpoint"
        )
    from voxaudit.guard.evaluation import check_attacks, check_benign

    if guard.carriers < 1:
        raise VoxauditError(f"{at} carriers must be a whole number >= 1")
    if not guard.target.strip():
        raise VoxauditError(f"{at} target must be a command (a non-empty string)")
    if not 0 < guard.fpr < 1:
        raise VoxauditError(f"{at} fpr must be a number between 0 and 1")
    return replace(
        guard,
        benign=check_benign(guard.benign, f"{at} benign"),
        attacks=check_attacks(guard.attacks, f"{at} attacks"),
        fpr=float(guard.fpr),
    )


def _dp_audit(
    data: Any, target: TargetSpec, reference: Path | None, base: BaseSpec | None, where: str
) -> DPAuditConfig | None:
    """The optional [dp_audit] section: the target's recipe, trained once more with canaries."""
    if data is None:
        return None
    at = f"{where}: [dp_audit]"
    if target.source != "train":
        raise VoxauditError(
            f"{at}: the one-run audit trains the target's recipe with canaries: [target] must "
            "train a built-in model (model = ..., no checkpoint or adapter)"
        )
    config = from_mapping(DPAuditConfig, data, at)
    return config.check(target.family, at, reference is not None or base is not None)


def _split_options(options: dict[str, Any], where: str) -> dict[str, Any]:
    """The [split] options: keywords of `make_split` but those the config sets itself."""
    from voxaudit.data.splits import make_split

    own = {"corpus", "level", "seed", "n_shadow", "shadow_mode"}
    types = {key: kind for key, kind in keyword_types(make_split).items() if key not in own}
    return checked(options, types, where)
