"""``voxaudit audit``: every applicable membership attack on one model, one report.

Stages, each shown as it runs and resumable after an interruption:

1. corpus: read from disk, or synthesize the built-in one;
2. optionally, a one-run DP audit: the target's recipe trained once more with canaries, and
   a lower bound on its epsilon (beside DP-SGD's accountant, when it trains under DP);
3. for each level (sample, speaker): a split; the target (trained, a checkpoint, or an adapter)
   and shadow models trained with the target's recipe; the family's audit (with its null
   control); the target's utility on its members and its holdout;
4. optionally, a defense sweep;
5. optionally (asr targets), a guard evaluation: would the guard's detectors catch adversarial
   attacks on the first level's target, and after how many queries;
6. the report (``report.json``, ``report.html``).

A finished level is recorded in ``OUT/LEVEL/done.json``, the DP audit in
``OUT/dp-audit/result.json`` and the guard evaluation in ``OUT/guard/done.json``, each read
back on a rerun; training resumes from checkpoints and
feature extraction from its cache. A rerun with a different config into the same folder is
refused, because its models would not match the config.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import random
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape

from voxaudit import __version__
from voxaudit.data.corpus import Corpus
from voxaudit.data.loaders import load_corpus
from voxaudit.data.splits import AuditSplit, base_pool, make_split, read_ids, shadow_halves
from voxaudit.errors import VoxauditError
from voxaudit.files import claim_folder, write_json
from voxaudit.mia import core
from voxaudit.mia.results import without_examples
from voxaudit.pipeline.config import PipelineConfig
from voxaudit.report.audit import build_report, write_report
from voxaudit.report.mia import write_html

CONFIG_RECORD = "audit-config.json"
DONE = "done.json"
#: Utterances on which utility is measured per side (members, holdout): enough for a stable
#: error rate, few enough that a CPU recognizer transcribes them in seconds.
UTILITY_SAMPLE = 200


def run_audit(
    config: PipelineConfig,
    out_dir: str | Path,
    progress: bool = True,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run (or resume) the audit ``config`` describes into ``out_dir``; the report."""
    console = console or Console()
    out_dir = Path(out_dir)
    # Both fail on bad config fields now, not after hours of training.
    family = _family(config.target.family)
    audit_config = _audit_config(family, config)
    _claim(out_dir, config)
    durations: dict[str, float] = {}
    started = time.time()

    with _stage("corpus", durations, console):
        corpus = _corpus(config, progress, console)

    # Before the levels: a recipe Opacus cannot train privately fails here, not after them.
    dp = None
    if config.dp_audit is not None:
        with _stage("DP audit (one run)", durations, console):
            dp = _dp_audit(config, family, corpus, out_dir, progress)

    levels = []
    for level in _levels(config):
        with _stage(f"{level}-level audit", durations, console):
            levels.append(
                _audit_level(config, family, audit_config, corpus, level, out_dir / level, progress)
            )

    sweep = None
    if config.defense_sweep is not None:
        with _stage("defense sweep", durations, console):
            from voxaudit.defend.sweep import SweepConfig, run_sweep

            sweep = run_sweep(SweepConfig.load(config.defense_sweep), out_dir / "defenses",
                              progress=progress, compute=config.compute)  # fmt: skip
            sweep["plot"] = str((out_dir / "defenses" / "pareto.png").resolve())

    guard = None
    if config.guard is not None:
        with _stage("guard evaluation", durations, console):
            guard = _guard_evaluation(config, family, levels[0], out_dir / "guard", progress)

    with _stage("report", durations, console):
        durations["total"] = round(time.time() - started, 1)
        report = build_report(
            config=_as_record(config), corpus=corpus.summary().as_dict(), levels=levels,
            sweep=sweep, guard=guard, dp_audit=dp, run=_run_metadata(config, durations),
        )  # fmt: skip
        json_path, html_path = write_report(out_dir, report)
    console.print(f"Report: [bold]{html_path}[/] (and {json_path.name} beside it)")
    return report


# --- stages ---------------------------------------------------------------------------------


@contextmanager
def _stage(name: str, durations: dict[str, float], console: Console) -> Iterator[None]:
    console.rule(f"[bold]{name}")
    began = time.time()
    yield
    durations[name] = round(time.time() - began, 1)


def _corpus(config: PipelineConfig, progress: bool, console: Console) -> Corpus:
    """The corpus, its bad files listed (as `voxaudit data inspect` lists them) and left out,
    or, with ``[corpus] strict``, an error listing them."""
    spec = config.corpus
    if not spec.path.exists():
        if spec.synthesize is None:
            raise VoxauditError(f"{spec.path}: no corpus there (and [corpus] synthesize is unset)")
        from voxaudit.data.synth import synthesize_corpus

        synthesize_corpus(
            spec.path, n_speakers=spec.synthesize.get("speakers", 40),
            per_speaker=spec.synthesize.get("per_speaker", 20), seed=config.seed,
            progress=progress,
        )  # fmt: skip
    elif spec.synthesize is not None and not (spec.path / "manifest.csv").exists():
        raise VoxauditError(f"{spec.path}: exists but holds no synthesized corpus (manifest.csv)")
    corpus = load_corpus(
        spec.path, spec.layout, pattern=spec.pattern, text_column=spec.text_column,
        strict=spec.strict, progress=progress,
    )  # fmt: skip
    if corpus.problems:
        from voxaudit.report.console import problems_table

        console.print(problems_table(corpus.problems, root=spec.path))
    for warning in corpus.warnings:  # what looks misread, each with the fix to try
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    return corpus


def _levels(config: PipelineConfig) -> tuple[str, ...]:
    """The levels to audit: a checkpoint's split decides its one level."""
    if config.target.source == "checkpoint":
        assert config.target.split is not None
        return (AuditSplit.load(config.target.split).level,)
    return config.levels


def _audit_level(
    config: PipelineConfig,
    family: core.Family,
    audit_config: core.AuditConfig,
    corpus: Corpus,
    level: str,
    level_dir: Path,
    progress: bool,
) -> dict[str, Any]:
    done = level_dir / DONE
    if done.exists():
        return json.loads(done.read_text("utf-8"))
    began = time.time()
    source = config.target.source
    base_dir = None
    if config.base is not None:  # the audit splits what the base did not train on
        corpus, base_dir = _pretrained_base(config, family.train_kind, corpus, level_dir.parent,
                                            progress)  # fmt: skip
    split_path = _split(config, corpus, level, level_dir)
    split = AuditSplit.load(split_path)
    split.check(corpus)
    shadow_roles = split.roles[1 : 1 + config.shadows]
    if not shadow_roles and source != "membership":
        raise VoxauditError(f"{split_path}: the split has no shadow pools; the audit needs one")
    # Split-level checks (a clip too short for the speaker audit) fail before any training.
    family.check_data(corpus, split, shadow_roles, audit_config)
    trains_target = source in ("train", "checkpoint")
    run_dirs = _trained_models(config, family.train_kind, corpus, split_path,
                               (["target"] if trains_target else []) + list(shadow_roles),
                               level_dir, progress, base_dir)  # fmt: skip
    shadows = [family.load(run_dirs[role], role, config.device) for role in shadow_roles]
    report_dir = level_dir / "report"
    if source == "adapter":
        report = _score(config, corpus, split, shadows, report_dir, audit_config, progress)
        utility = None
    else:
        from voxaudit.mia.families import resolve_model

        label = config.target.label
        if trains_target:
            target = family.load(run_dirs["target"], "target", config.device)
        else:
            assert config.target.adapter is not None
            target = resolve_model(family.name, config.target.adapter, "target", config.device,
                                   label=label)  # fmt: skip
        given = config.reference if config.reference is not None else base_dir
        references = [
            resolve_model(family.name, path, "reference-0", config.device, label=label)
            for path in ([given] if given is not None else [])
        ]
        report = core.run_audit(family, corpus, split, target, shadows, report_dir,
                                config=audit_config, progress=progress,
                                references=references, compute=config.compute)  # fmt: skip
        write_html(report_dir, report)
        utility = _utility(family, target, corpus, split, config.seed)
    result = {
        "level": level,
        "family": config.target.family,
        "target": config.target.source,
        "split": str(split_path.resolve()),
        "models": {role: str(path.resolve()) for role, path in run_dirs.items()}
        | ({"base": str(base_dir.resolve())} if base_dir is not None else {}),
        "report_dir": str(report_dir.resolve()),
        "utility": utility,
        "mia": without_examples(report),
        "seconds": round(time.time() - began, 1),
    }
    write_json(done, result)
    return result


def _guard_evaluation(
    config: PipelineConfig,
    family: core.Family,
    level: dict[str, Any],
    guard_dir: Path,
    progress: bool,
) -> dict[str, Any]:
    """The guard's detectors against adversarial attacks on ``level``'s target."""
    done = guard_dir / DONE
    if done.exists():
        return json.loads(done.read_text("utf-8"))
    from voxaudit.guard.evaluation import evaluate_guard, json_safe

    assert config.guard is not None
    model = level["models"]["target"]
    recognizer = family.load(Path(model), "target", config.device).model
    options = dataclasses.asdict(config.guard)
    results = evaluate_guard(recognizer, **options, seed=config.seed, progress=progress)
    # The report is strict JSON: an undefined interval (NaN) is null there.
    result = json_safe({"model": model} | results)
    write_json(done, result)
    return result


def _dp_audit(
    config: PipelineConfig, family: core.Family, corpus: Corpus, out_dir: Path, progress: bool
) -> dict[str, Any]:
    """The target's recipe trained once more with canaries (``voxaudit.pipeline.dp_audit``),
    on the corpus the levels audit; fine-tuned from the built-in base when there is one,
    which is then the reference of a calibrated score. The per-canary scores stay in
    ``OUT/dp-audit/result.json``."""
    from voxaudit.pipeline.dp_audit import dp_audit

    assert config.dp_audit is not None
    run_config = _run_config(config)
    reference: Path | None = config.reference
    if config.base is not None:
        corpus, reference = _pretrained_base(config, family.train_kind, corpus, out_dir, progress)
        run_config["finetune"] = {"init_from": str(reference), "freeze": list(config.base.freeze)}
    result = dp_audit(
        family.name, corpus, run_config, out_dir / "dp-audit", config.dp_audit,
        reference=reference, seed=config.seed, device=config.device, progress=progress,
    )  # fmt: skip
    return {key: value for key, value in result.items() if key != "examples"}


def _family(name: str) -> core.Family:
    from voxaudit.mia import families

    return families.get(name)


def _split(config: PipelineConfig, corpus: Corpus, level: str, level_dir: Path) -> Path:
    if config.target.split is not None:
        return config.target.split
    path = level_dir / "split.json"
    if not path.exists():
        if config.target.source == "membership":
            split = _membership_split(config, corpus, level)
        else:
            split = make_split(
                corpus, level, seed=config.seed, n_shadow=config.shadows,
                shadow_mode=config.shadow_mode, **config.split,
            )  # fmt: skip
        split.save(path)
    return path


def _membership_split(config: PipelineConfig, corpus: Corpus, level: str) -> AuditSplit:
    """The split of a target with known membership: its lists, and shadow pools dealt from
    the corpus' other recordings (whole speakers at speaker level, where a fifth of the other
    speakers, at least two, are set aside as imposters)."""
    assert config.target.members is not None and config.target.nonmembers is not None
    members = read_ids(config.target.members, corpus, str(config.target.members))
    nonmembers = read_ids(config.target.nonmembers, corpus, str(config.target.nonmembers))
    taken = set(members) | set(nonmembers)
    if level == "speaker":
        taken |= {u.id for u in corpus if u.speaker in {corpus[i].speaker for i in taken}}
    rest = [u for u in corpus if u.id not in taken]
    rng = np.random.default_rng([config.seed, *b"membership shadows"])
    units = sorted({u.speaker for u in rest}) if level == "speaker" else [u.id for u in rest]
    units = [units[i] for i in rng.permutation(len(units))]
    reference: list[str] = []
    if level == "speaker":
        imposters = set(units[: max(2, len(units) // 5)])
        units = units[len(imposters) :]
        reference = [u.id for u in rest if u.speaker in imposters]
    if config.shadows and len(units) < 2 * config.shadows:
        raise VoxauditError(
            f"{config.origin}: [shadows] count = {config.shadows}, but the corpus holds only "
            f"{len(units)} {'speakers' if level == 'speaker' else 'recordings'} besides the "
            "target's lists to train them on (use fewer shadows, or count = 0)"
        )
    if config.shadow_mode == "halves":
        dealt = shadow_halves(units, config.shadows, rng) if config.shadows else []
    else:
        slices = [units[k :: config.shadows] for k in range(config.shadows)]
        dealt = [(part[: len(part) // 2], part[len(part) // 2 :]) for part in slices]
    key = (lambda u: u.speaker) if level == "speaker" else (lambda u: u.id)
    shadows = []
    for inside, outside in dealt:
        sides = set(inside), set(outside)
        shadows.append(tuple([u.id for u in rest if key(u) in side] for side in sides))
    return AuditSplit.from_membership(
        corpus, members, nonmembers, level=level, shadows=shadows, reference=reference
    )


def _trained_models(
    config: PipelineConfig,
    kind: str,
    corpus: Corpus,
    split_path: Path,
    roles: Sequence[str],
    level_dir: Path,
    progress: bool,
    base_dir: Path | None = None,
) -> dict[str, Path]:
    """The run folder of each of ``roles``: the given checkpoint, or a model trained (or
    resumed) here on the audit's ``corpus`` (read once, in the corpus stage), fine-tuned from
    the built-in scenario's base when there is one; the models train as the [compute] engine's
    tasks."""
    given = {"target": config.target.checkpoint} if config.target.checkpoint is not None else {}
    run_config = _run_config(config)
    if base_dir is not None:
        assert config.base is not None
        run_config["finetune"] = {"init_from": str(base_dir), "freeze": list(config.base.freeze)}
    from voxaudit.compute import map_tasks

    trained = map_tasks(
        _train_role, {role: (role,) for role in roles if role not in given}, config.compute,
        shared={"kind": kind, "corpus": corpus, "split_path": split_path,
                "run_config": run_config, "models_dir": level_dir / "models"},
        description="models trained", progress=progress,
    )  # fmt: skip
    return {role: given[role] if role in given else trained[role] for role in roles}


def _train_role(
    role: str,
    *,
    kind: str,
    corpus: Corpus,
    split_path: Path,
    run_config: dict[str, Any],
    models_dir: Path,
    progress: bool,
) -> Path:
    """One model of the split's ``role`` trained (or resumed) into ``models_dir/role``."""
    from voxaudit.train.run import train_model

    run_dir = models_dir / role
    train_model(kind, corpus, split_path, role, run_config, run_dir, progress=progress)
    return run_dir


def _run_config(config: PipelineConfig, train: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run config (`voxaudit train --config` sections) of the target's recipe, with
    ``train`` for its [train] when given (the built-in base's)."""
    target = config.target
    run_config = {"model": dict(target.model), "train": dict(train or target.train)}
    run_config |= {name: dict(getattr(target, name)) for name in ("sampler", "augment", "finetune")
                   if getattr(target, name)}  # fmt: skip
    run_config["train"].setdefault("device", config.device)
    run_config["train"].setdefault("seed", config.seed)
    return run_config


def _pretrained_base(
    config: PipelineConfig, kind: str, corpus: Corpus, out_dir: Path, progress: bool
) -> tuple[Corpus, Path]:
    """The built-in scenario's base, pretrained (or resumed) on the pool P that
    :func:`~voxaudit.data.splits.base_pool` sets aside, in ``out_dir/base`` (one for every
    level: P depends on the seed only); and the rest of ``corpus``, which the audit splits."""
    from voxaudit.train.run import train_model

    spec = config.base
    assert spec is not None
    pool, rest = base_pool(corpus, spec.fraction, by=spec.by, seed=config.seed)
    run_dir = out_dir / "base"
    train_model(kind, corpus, None, "base", _run_config(config, spec.train), run_dir,
                progress=progress, train_ids=pool)  # fmt: skip
    return corpus.subset(rest), run_dir


def _audit_config(family: core.Family, config: PipelineConfig) -> core.AuditConfig:
    """The family's audit config from the threat, the seed and the [audit] options."""
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in config.audit.items()}
    options.setdefault("seed", config.seed)
    try:
        return family.config(threat=config.threat, **options)
    except (TypeError, VoxauditError) as exc:  # an unknown option, or a value it refuses
        raise VoxauditError(f"{config.origin}: [audit]: {exc}") from None


def _score(
    config: PipelineConfig, corpus: Corpus, split: AuditSplit, shadows: Sequence[Any],
    report_dir: Path, audit_config: Any, progress: bool,
) -> dict[str, Any]:  # fmt: skip
    """Scoring mode for an adapter target: membership scores, no verdicts."""
    assert config.target.adapter is not None and config.target.recordings is not None
    recordings = load_corpus(config.target.recordings, progress=progress)
    from voxaudit.mia.families import resolve_model

    family = _family(config.target.family)
    target = resolve_model(config.target.family, config.target.adapter, device=config.device,
                           label=config.target.label)  # fmt: skip
    report = core.run_scoring(family, recordings, target, corpus, split, shadows, report_dir,
                         config=audit_config, progress=progress)  # fmt: skip
    write_html(report_dir, report)
    return report


def _utility(
    family: Any, target: Any, corpus: Corpus, split: AuditSplit, seed: int
) -> dict[str, Any]:
    """The target's utility on (a sample of) its members and of its holdout: the gap is what
    membership inference feeds on."""
    rng = random.Random(seed)

    def sample(ids: Sequence[str]) -> list[str]:
        ids = sorted(ids)
        return ids if len(ids) <= UTILITY_SAMPLE else sorted(rng.sample(ids, UTILITY_SAMPLE))

    trained = getattr(target, "trained_ids", None) or split.train_ids("target")
    metric, on_members = family.utility(target, corpus, sample(list(trained)))
    _, on_holdout = family.utility(target, corpus, sample(split.holdout_ids("target")))
    return {"metric": metric, "members": round(on_members, 4), "holdout": round(on_holdout, 4)}


# --- bookkeeping ----------------------------------------------------------------------------


def _as_record(config: PipelineConfig) -> dict[str, Any]:
    """The config as plain JSON data (paths as strings), without where it was read from."""
    record = json.loads(json.dumps(dataclasses.asdict(config), default=str))
    record.pop("origin")
    # Where the work runs changes no model: a rerun may resume a local run on Ray.
    record.pop("compute")
    if not record["corpus"]["strict"]:  # recorded only when set, so earlier folders still match
        del record["corpus"]["strict"]
    if record["reference"] is None:  # the same
        del record["reference"]
    if record["corpus"]["text_column"] is None:  # the same
        del record["corpus"]["text_column"]
    if not record["target"]["finetune"]:  # the same
        del record["target"]["finetune"]
    if record["base"] is None:  # the same
        del record["base"]
    if record["dp_audit"] is None:  # the same
        del record["dp_audit"]
    return record


def _claim(out_dir: Path, config: PipelineConfig) -> None:
    """Record the config in ``out_dir``, or refuse a folder made by a different one."""
    claim_folder(out_dir, CONFIG_RECORD, _as_record(config), "an audit")


def _run_metadata(config: PipelineConfig, durations: dict[str, float]) -> dict[str, Any]:
    import torch

    packages = {}
    for name in ("torch", "numpy", "scikit-learn", "scipy", "opacus", "soundfile"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    cuda = torch.cuda.is_available()
    return {
        "voxaudit": __version__,
        "python": sys.version.split()[0],
        "packages": packages,
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "device": config.device,
        "compute": config.compute.record(),
        "seed": config.seed,
        "command": " ".join(sys.argv),
        "seconds": dict(durations),  # a copy: the report stage is still running
    }


def cpu_name() -> str:
    """This machine's CPU model, as benchmarks and run records name the machine."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
