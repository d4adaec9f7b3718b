"""The audit config behind ``voxaudit audit CONFIG``: what to audit, how, and at which levels.

A config is a TOML, YAML or JSON file; :data:`EXAMPLE` (written by ``voxaudit audit init``) is
the commented reference, and the built-in default that ``voxaudit demo`` runs. Relative paths
in a config are relative to the config file, so a config and its corpus can move together.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from voxaudit.errors import VoxauditError
from voxaudit.train.loop import read_config_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FAMILIES = ("asr", "classifier", "speaker")
#: The membership questions each family can be asked: a recording (sample) or a voice (speaker).
LEVELS = {"asr": ("sample", "speaker"), "classifier": ("sample",), "speaker": ("speaker",)}
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

# Optional stages:
# [defenses]
# sweep = "configs/sweep-classifier.toml"   # a `voxaudit defend sweep` config, run and reported
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
    synthesize: dict[str, int] | None = None  # {speakers, per_speaker} when path is missing


@dataclass(frozen=True)
class TargetSpec:
    family: str
    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    sampler: dict[str, Any] = field(default_factory=dict)  # speaker encoders' batches
    augment: dict[str, Any] = field(default_factory=dict)  # SpecAugment
    checkpoint: Path | None = None
    split: Path | None = None
    adapter: str | None = None
    recordings: Path | None = None

    @property
    def source(self) -> str:
        """How the target is obtained: ``train``, ``checkpoint`` or ``adapter``."""
        return "checkpoint" if self.checkpoint else "adapter" if self.adapter else "train"


@dataclass(frozen=True)
class GuardEvaluation:
    """The optional guard stage (``voxaudit.guard.evaluation.evaluate_guard``), sized for a CPU."""

    benign: int = 200  # benign utterances per stream (calibration, held out)
    carriers: int = 1  # clips attacked per kind (speech, music)
    attacks: tuple[str, ...] = ("ctc (white box)", "nes (black box)")
    target: str = "open the door"  # the command the attacks make the model transcribe
    fpr: float = 0.001  # the detectors' target false-positive rate per benign query
    gateway: bool = False  # also send the white-box attacks through the HTTP gateway


@dataclass(frozen=True)
class AuditConfig:
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
    defense_sweep: Path | None = None
    guard: GuardEvaluation | None = None
    origin: str = field(default="the config", compare=False)  # the file, for error messages

    @classmethod
    def load(cls, path: str | Path) -> AuditConfig:
        """A config file; errors name the file and the field."""
        path = Path(path)
        return cls.from_dict(read_config_file(path), root=path.parent, where=str(path))

    @classmethod
    def example(cls, root: str | Path = ".") -> AuditConfig:
        """The built-in default (:data:`EXAMPLE`), its paths relative to ``root``."""
        return cls.from_dict(tomllib.loads(EXAMPLE), root=Path(root), where="the built-in config")

    @classmethod
    def from_dict(cls, data: dict[str, Any], root: Path, where: str) -> AuditConfig:
        top = {"seed", "device", "threat", "levels", "corpus", "target", "shadows", "split"}
        _known(data, top | {"audit", "defenses", "guard"}, where)
        for name in ("corpus", "target"):
            if not isinstance(data.get(name), dict):
                raise VoxauditError(f"{where}: missing table [{name}]")
        corpus_data, target_data = data["corpus"], data["target"]
        _known(corpus_data, {"path", "layout", "pattern", "synthesize"}, f"{where}: [corpus]")
        if "path" not in corpus_data:
            raise VoxauditError(f"{where}: [corpus] needs a path")
        synthesize = corpus_data.get("synthesize")
        if synthesize is not None:
            _known(synthesize, {"speakers", "per_speaker"}, f"{where}: [corpus] synthesize")
        corpus = CorpusSpec(
            path=root / corpus_data["path"],
            layout=corpus_data.get("layout"),
            pattern=corpus_data.get("pattern"),
            synthesize=synthesize,
        )
        run_sections = ("model", "train", "sampler", "augment")  # of `voxaudit train --config`
        target_fields = {"family", *run_sections, "checkpoint", "split", "adapter", "recordings"}
        _known(target_data, target_fields, f"{where}: [target]")
        family = target_data.get("family")
        if family not in FAMILIES:
            raise VoxauditError(
                f"{where}: [target] family must be one of {', '.join(FAMILIES)}, got {family!r}"
            )
        paths = {k: root / target_data[k] for k in ("checkpoint", "split", "recordings")
                 if k in target_data}  # fmt: skip
        target = TargetSpec(
            family=family,
            adapter=target_data.get("adapter"),
            **{name: dict(target_data.get(name, {})) for name in run_sections},
            **paths,
        )
        _check_target(target, where)
        levels = tuple(data.get("levels", LEVELS[family][:1]))
        if target.source == "checkpoint":
            levels = ()  # the checkpoint's split decides; see run.levels_of
        for level in levels:
            if level not in LEVELS[family]:
                raise VoxauditError(
                    f"{where}: levels: a {family} model is audited at "
                    f"{' or '.join(LEVELS[family])} level, not {level!r}"
                )
        if target.source == "train" and not levels:
            raise VoxauditError(f"{where}: levels is empty; name at least one level")
        threat = data.get("threat", "grey")
        if threat not in THREATS:
            raise VoxauditError(f"{where}: threat must be one of {', '.join(THREATS)}")
        shadows = data.get("shadows", {})
        _known(shadows, {"count", "mode"}, f"{where}: [shadows]")
        count = shadows.get("count", 2)
        if not isinstance(count, int) or count < 1:
            raise VoxauditError(f"{where}: [shadows] count must be a whole number >= 1")
        mode = shadows.get("mode", "halves")
        if mode not in ("disjoint", "halves"):
            raise VoxauditError(f"{where}: [shadows] mode must be disjoint or halves")
        if mode == "halves" and count < 2:
            raise VoxauditError(
                f"{where}: [shadows] mode halves needs count >= 2 (each utterance is in half the "
                'shadow models); use more shadows or mode = "disjoint"'
            )
        split = dict(data.get("split", {}))
        _check_split_options(split, f"{where}: [split]")
        defenses = data.get("defenses", {})
        _known(defenses, {"sweep"}, f"{where}: [defenses]")
        return cls(
            corpus=corpus,
            target=target,
            levels=levels,
            threat=threat,
            seed=int(data.get("seed", 0)),
            device=str(data.get("device", "auto")),
            shadows=count,
            shadow_mode=mode,
            split=split,
            audit=dict(data.get("audit", {})),
            defense_sweep=root / defenses["sweep"] if "sweep" in defenses else None,
            guard=_guard(data.get("guard"), target, where),
            origin=where,
        )


def _known(data: Any, known: set[str], where: str) -> None:
    if not isinstance(data, dict):
        raise VoxauditError(f"{where}: expected a table")
    unknown = sorted(set(data) - known)
    if unknown:
        raise VoxauditError(
            f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )


def _check_target(target: TargetSpec, where: str) -> None:
    at = f"{where}: [target]"
    if target.checkpoint and target.adapter:
        raise VoxauditError(f"{at}: give a checkpoint or an adapter, not both")
    if target.checkpoint and not target.split:
        raise VoxauditError(f"{at}: a checkpoint needs the split it was trained on (split = ...)")
    if target.adapter:
        if target.family == "classifier":
            raise VoxauditError(f"{at}: adapters are supported for asr and speaker targets")
        if not target.recordings:
            raise VoxauditError(f"{at}: an adapter target needs recordings = ... to score")


def _guard(data: Any, target: TargetSpec, where: str) -> GuardEvaluation | None:
    """The optional [guard] section, checked against the target its attacks need."""
    if data is None:
        return None
    at = f"{where}: [guard]"
    _known(data, {f.name for f in fields(GuardEvaluation)}, at)
    if target.family != "asr":
        raise VoxauditError(
            f"{at}: the guard's attacks make a speech recognizer transcribe a chosen command, "
            f"so it applies to asr targets only; [target] family is {target.family!r}"
        )
    if target.source == "adapter":
        raise VoxauditError(
            f"{at}: the attacks need the target's losses and gradients, which an adapter does "
            "not give; use a model trained here or a checkpoint"
        )
    from voxaudit.guard.evaluation import check_attacks, check_benign

    guard = replace(GuardEvaluation(), **data)
    if not isinstance(guard.carriers, int) or guard.carriers < 1:
        raise VoxauditError(f"{at} carriers must be a whole number >= 1")
    if not isinstance(guard.target, str) or not guard.target.strip():
        raise VoxauditError(f"{at} target must be a command (a non-empty string)")
    if not isinstance(guard.fpr, (int, float)) or not 0 < guard.fpr < 1:
        raise VoxauditError(f"{at} fpr must be a number between 0 and 1")
    if not isinstance(guard.gateway, bool):
        raise VoxauditError(f"{at} gateway must be true or false")
    return replace(
        guard,
        benign=check_benign(guard.benign, f"{at} benign"),
        attacks=check_attacks(guard.attacks, f"{at} attacks"),
        fpr=float(guard.fpr),
    )


def _check_split_options(options: dict[str, Any], where: str) -> None:
    from voxaudit.data.splits import make_split

    allowed = set(inspect.signature(make_split).parameters) - {
        "corpus", "level", "seed", "n_shadow", "shadow_mode",
    }  # fmt: skip
    _known(options, allowed, where)
