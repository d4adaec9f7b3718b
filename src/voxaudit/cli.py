"""Command-line interface: a thin layer over the Python API (``voxaudit --help``)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import click
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand

from voxaudit.errors import VoxauditError
from voxaudit.guard.cli import guard_app
from voxaudit.mia.configs import AsrAuditConfig as _ASR
from voxaudit.mia.configs import ClassifierAuditConfig as _CLASSIFIER
from voxaudit.mia.configs import DPAuditConfig as _DP
from voxaudit.mia.configs import SpeakerAuditConfig as _SPEAKER

if TYPE_CHECKING:
    from voxaudit.data.corpus import Corpus

# Help is click's plain text (``rich_markup_mode=None``): rich's option table cuts option names
# to fit 80 columns ("--halves-popula…") in pipes, CI logs and narrow terminals; plain help wraps
# the descriptions and never cuts a name.
app = typer.Typer(
    help="Audit speech models for training-data leakage and guard speech APIs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
data_app = typer.Typer(
    help="Corpora: inspect one on disk, or synthesize the built-in one.", rich_markup_mode=None
)
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable)


class Level(str, Enum):
    sample = "sample"
    speaker = "speaker"


def _friendly_errors(command: F) -> F:
    """Print bad-input errors as one clear message and exit 2, instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (VoxauditError, FileNotFoundError) as exc:
            # soft_wrap: a long path stays whole on one line, for a reader and for grep;
            # escape: "[audit]" in a message is a section name, not rich markup to swallow.
            message = escape(str(exc))
            err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


LayoutOpt = Annotated[
    str | None,
    typer.Option(
        help="Corpus layout (detected when omitted): librispeech, kaldi, manifest, fsdd, folder."
    ),
]
PatternOpt = Annotated[
    str | None,
    typer.Option(
        help="Path pattern for a folder of audio, relative to it, e.g. '{speaker}_{text}.wav' or "
        "'{label}/{speaker}_{take}' ('/' reads subfolders; no suffix: any audio suffix). Fields: "
        "{speaker}, {text} (the transcript, '_' read as ' '), {digit} (spoken in English), {id}; "
        "any other {name} (e.g. {label}, {take}) is kept as a column a classifier's label can name."
    ),
]
DecisionOpt = Annotated[
    str,
    typer.Option(
        help="The attacks' operating point, fixed on shadow data: 'accuracy' (most accurate), "
        "'recall=R' (flag at least R of the members) or 'fpr=F' (at most F of the non-members)."
    ),
]

TargetOpt = Annotated[
    str,
    typer.Option(
        help="The audited model: a `voxaudit train` run folder; with --members also a Hugging "
        "Face folder, pocketsphinx, resemblyzer or module.path:factory (your function that "
        "returns the model)."
    ),
]
ShadowOpt = Annotated[
    list[str] | None,
    typer.Option(help="Shadow model (as --target); repeat for each shadow."),
]
MembersOpt = Annotated[
    Path | None,
    typer.Option(
        help="Instead of --split: a file of the target's member ids or audio paths, one a line."
    ),
]
NonmembersOpt = Annotated[
    Path | None, typer.Option(help="With --members: the target's non-members, one a line.")
]
ShadowMembersOpt = Annotated[
    list[Path] | None,
    typer.Option(help="With --members: each --shadow's members file, in the same order."),
]
ShadowNonmembersOpt = Annotated[
    list[Path] | None,
    typer.Option(help="With --members: each --shadow's non-members file, in the same order."),
]


@app.command()
@_friendly_errors
def demo(
    out: Annotated[Path, typer.Option(help="Where the corpus, models and report go.")] = Path(
        "voxaudit-out/demo"
    ),
) -> None:
    """The main job on the built-in default: the full audit of `voxaudit audit init`'s config."""
    from voxaudit.pipeline import PipelineConfig

    _audit(PipelineConfig.example(root="."), out, [])


@app.command("audit")
@_friendly_errors
def audit(
    config: Annotated[
        str,
        typer.Argument(
            help="Audit config (.toml, .yaml or .json), or `init` to write a commented example."
        ),
    ],
    path: Annotated[
        Path | None,
        typer.Argument(help="With `init`: where to write the example (voxaudit-audit.toml)."),
    ] = None,
    out: Annotated[
        Path, typer.Option(help="Audit folder: report.json, report.html, models, splits.")
    ] = Path("voxaudit-out/audit"),
    fail_above: Annotated[
        list[str] | None,
        typer.Option(
            help="Privacy gate: exit 1 when leakage exceeds a bound, e.g. auroc=0.6 or "
            "tpr@1%fpr=0.05; repeatable."
        ),
    ] = None,
) -> None:
    """Run every applicable membership attack on one model and write one report."""
    from voxaudit.pipeline import EXAMPLE, PipelineConfig, parse_bounds

    if config == "init":
        target = path or Path("voxaudit-audit.toml")
        if target.exists():
            raise VoxauditError(f"{target}: exists; not overwritten")
        target.write_text(EXAMPLE, encoding="utf-8")
        console.print(f"Wrote {target}; run it with `voxaudit audit {target}`")
        return
    if path is not None:
        raise VoxauditError(f"unexpected argument {path}: only `audit init` takes a path")
    bounds = parse_bounds(fail_above or [])  # bad bounds fail before hours of training
    _audit(PipelineConfig.load(config), out, bounds)


def _audit(config, out: Path, bounds: dict[str, float]) -> None:
    from voxaudit.pipeline import check, run_audit
    from voxaudit.report.console import audit_table

    report = run_audit(config, out, console=console)
    console.print(audit_table(report))
    if bounds:
        result = check(report, bounds)
        print(result.line)
        if not result.passed:
            raise typer.Exit(result.exit_code)


@data_app.command("inspect")
@_friendly_errors
def data_inspect(
    path: Path,
    layout: LayoutOpt = None,
    pattern: PatternOpt = None,
    text_column: Annotated[
        str | None,
        typer.Option(help="Manifest column holding the transcript (default: text, transcript...)."),
    ] = None,
    strict: Annotated[bool, typer.Option(help="Fail if any file is bad.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Detect a corpus layout and report speakers, utterances, hours, rates and problems."""
    from voxaudit.data.loaders import load_corpus
    from voxaudit.report.console import corpus_table

    corpus = load_corpus(
        path, layout, pattern=pattern, text_column=text_column, strict=strict,
        progress=not as_json,
    )  # fmt: skip
    summary = corpus.summary()
    if as_json:
        print(json.dumps(summary.as_dict(), indent=2))
        return
    console.print(corpus_table(summary))
    _print_problems(corpus, path)


def _print_problems(corpus: Corpus, root: Path) -> None:
    """List the files a corpus left out (missing or unreadable audio, bad rows), if any, and
    what looks misread about it as a whole (its warnings, each with the fix to try)."""
    from voxaudit.report.console import problems_table

    if corpus.problems:
        console.print(problems_table(corpus.problems, root=root))
    for warning in corpus.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)


@data_app.command("synth")
@_friendly_errors
def data_synth(
    out: Annotated[Path, typer.Option(help="Output folder (WAVs and manifest.csv).")],
    speakers: Annotated[int, typer.Option(min=1)] = 200,
    per_speaker: Annotated[int, typer.Option(min=1)] = 10,
    seed: int = 0,
    sample_rate: int = 16000,
    workers: Annotated[int | None, typer.Option(help="Processes (default: all cores).")] = None,
) -> None:
    """Synthesize the built-in multi-speaker corpus with eSpeak NG (resumes if interrupted)."""
    from voxaudit.data.synth import synthesize_corpus
    from voxaudit.report.console import corpus_table

    corpus = synthesize_corpus(
        out,
        n_speakers=speakers,
        per_speaker=per_speaker,
        seed=seed,
        sample_rate=sample_rate,
        workers=workers,
    )
    console.print(corpus_table(corpus.summary()))
    console.print(f"Wrote {len(corpus)} utterances and {out / 'manifest.csv'}")


@app.command("split")
@_friendly_errors
def split(
    corpus_path: Annotated[Path, typer.Argument(metavar="CORPUS")],
    out: Annotated[Path, typer.Option(help="Where to save the split (JSON).")],
    level: Level = Level.sample,
    seed: int = 0,
    shadows: Annotated[int, typer.Option(min=1, help="Number of shadow models.")] = 1,
    halves: Annotated[
        bool, typer.Option(help="Random halves: each shadow unit IN for half the shadow models.")
    ] = False,
    halves_population: Annotated[
        str,
        typer.Option(
            help="With --halves, whose pools the halves deal: shadow (offline LiRA, RMIA), all "
            "(shadow and target) or target (online LiRA, references drawn like the target)."
        ),
    ] = "shadow",
    paired_halves: Annotated[
        bool,
        typer.Option(
            help="With --halves and an even --shadows: deal the halves in complementary pairs of "
            "models, so an audit with the first K shadows (K even) keeps every unit's IN and "
            "OUT references."
        ),
    ] = False,
    target_fraction: float = 0.5,
    reference_speakers: Annotated[
        float, typer.Option(help="Speaker level: imposter speakers, a count or a fraction.")
    ] = 0.2,
    unseen_fraction: Annotated[
        float, typer.Option(help="Speaker level: member speakers' voices kept out of training.")
    ] = 0.2,
    stratify_labels: Annotated[
        bool,
        typer.Option(
            help="Sample level: balance the pools by transcript as well as by speaker, so that "
            "members and non-members hold the same words (digit and command corpora)."
        ),
    ] = False,
    layout: LayoutOpt = None,
    pattern: PatternOpt = None,
    strict: Annotated[
        bool, typer.Option(help="Fail if any file is bad, instead of leaving it out (listed).")
    ] = False,
) -> None:
    """Partition a corpus into disjoint target/shadow member and non-member pools."""
    from voxaudit.data.loaders import load_corpus
    from voxaudit.data.splits import make_split
    from voxaudit.report.console import split_table

    corpus = load_corpus(corpus_path, layout, pattern=pattern, strict=strict, progress=True)
    _print_problems(corpus, corpus_path)
    audit_split = make_split(
        corpus,
        level.value,
        seed=seed,
        target_fraction=target_fraction,
        n_shadow=shadows,
        shadow_mode="halves" if halves else "disjoint",
        halves_population=halves_population,
        reference_speakers=_count_or_fraction(reference_speakers),
        unseen_fraction=unseen_fraction,
        stratify_labels=stratify_labels,
        paired_halves=paired_halves,
    )
    audit_split.save(out)
    console.print(split_table(audit_split))
    console.print(f"Saved {out}")


class Kind(str, Enum):
    asr = "asr"
    speaker = "speaker"
    classifier = "classifier"


class _TrainCommand(TyperCommand):
    """``train --help`` ends with each model kind's ``[model]`` keys, read from the builders
    and model classes (imported only when that help is shown: they need torch)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from voxaudit.train.run import MODEL_KINDS, model_settings

        for kind in MODEL_KINDS:
            for family, rows in model_settings(kind).items():
                with formatter.section(f"[model] of {kind}" + (f", {family}" if family else "")):
                    formatter.write_dl(rows)
        super().format_epilog(ctx, formatter)


@app.command("train", cls=_TrainCommand)
@_friendly_errors
def train(
    kind: Kind,
    corpus: Annotated[Path, typer.Option(help="The corpus the split was made from.")],
    split_path: Annotated[Path, typer.Option("--split", help="Split file from `voxaudit split`.")],
    out: Annotated[Path, typer.Option(help="Run folder: checkpoint.pt and history.json.")],
    role: Annotated[str, typer.Option(help="target, or shadow-K for the K-th shadow model.")] = (
        "target"
    ),
    config: Annotated[
        Path | None,
        typer.Option(
            help="TOML/JSON: [model] [train] [sampler] [augment] [finetune] (keys listed below)."
        ),
    ] = None,
    val_fraction: Annotated[
        float, typer.Option(help="Share of the TRAINING pool held out for early stopping.")
    ] = 0.0,
    cache_dir: Annotated[Path | None, typer.Option(help="Feature cache folder.")] = None,
    layout: LayoutOpt = None,
    pattern: PatternOpt = None,
    init_from: Annotated[
        Path | None,
        typer.Option(
            help="Fine-tune: start from this run folder or checkpoint.pt (overrides "
            "[finetune] init_from); without [model], the base's model settings are used."
        ),
    ] = None,
    freeze: Annotated[
        list[str] | None,
        typer.Option(
            help="Parameter-name prefix not to train, e.g. encoder; repeatable (overrides "
            "[finetune] freeze)."
        ),
    ] = None,
) -> None:
    """Train a model on exactly the pool the split assigns to ROLE (resumes if interrupted)."""
    from voxaudit.train.run import train_model

    checkpoint = train_model(
        kind.value,
        corpus,
        split_path,
        role,
        config if config is not None else {},
        out,
        layout=layout,
        pattern=pattern,
        val_fraction=val_fraction,
        cache_dir=cache_dir,
        init_from=init_from,
        freeze=freeze or None,
    )
    console.print(f"Saved {checkpoint}")


@app.command("dp-audit")
@_friendly_errors
def dp_audit(
    kind: Kind,
    corpus: Annotated[Path, typer.Option(help="The corpus: relabelled canaries come from it.")],
    out: Annotated[Path, typer.Option(help="Folder: canaries.json, model/, result.json.")],
    config: Annotated[
        Path | None,
        typer.Option(help="The recipe: a `voxaudit train --config` file ([model] [train] ...)."),
    ] = None,
    canaries: Annotated[int, typer.Option(min=2, help="Canaries m.")] = _DP.canaries,
    canary_kind: Annotated[
        str,
        typer.Option(
            help="auto, wrong-label, random-transcript, synthetic-sentence, synthetic-speaker."
        ),
    ] = _DP.kind,
    delta: Annotated[float, typer.Option(help="The bound's delta (and DP-SGD's).")] = _DP.delta,
    confidence: Annotated[float, typer.Option(help="The bound's confidence.")] = _DP.confidence,
    score: Annotated[
        str, typer.Option(help="loss, or calibrated (needs --reference).")
    ] = _DP.score,
    reference: Annotated[
        Path | None, typer.Option(help="A model that trained on no canary, for calibrated.")
    ] = None,
    noise_multiplier: Annotated[
        float | None, typer.Option(help="Train under DP-SGD with this noise (Opacus).")
    ] = _DP.noise_multiplier,
    max_grad_norm: Annotated[
        float, typer.Option(help="DP-SGD's per-example clipping norm.")
    ] = _DP.max_grad_norm,
    per_speaker: Annotated[
        int, typer.Option(help="Utterances of each synthetic speaker canary.")
    ] = _DP.per_speaker,
    seed: Annotated[int, typer.Option(help="Canaries, inclusion and training seed.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    layout: LayoutOpt = None,
    pattern: PatternOpt = None,
) -> None:
    """Epsilon from one training run: train the recipe once with canaries, bound epsilon."""
    from voxaudit.config import read_config_file
    from voxaudit.data.loaders import load_corpus
    from voxaudit.pipeline.dp_audit import dp_audit as run_dp_audit
    from voxaudit.train.run import read_run_config

    settings = _DP(
        canaries=canaries, kind=canary_kind, delta=delta, confidence=confidence, score=score,
        noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm, per_speaker=per_speaker,
    ).check(kind.value, "dp-audit:", reference is not None)  # fmt: skip
    run_config = {} if config is None else read_config_file(config)
    finetune = run_config.get("finetune", {})
    if config is not None and "init_from" in finetune:  # relative to the config file
        base = str(config.parent / finetune["init_from"])
        run_config["finetune"] = finetune | {"init_from": base}
    # Before the corpus is read, so that a bad file fails in a second.
    read_run_config(run_config, kind.value, where=str(config or "--config"))
    data = load_corpus(corpus, layout, pattern=pattern)
    result = run_dp_audit(
        kind.value, data, run_config, out, settings, reference=reference, seed=seed,
        device=device,
    )  # fmt: skip
    console.print(escape(result["statement"]))
    console.print(f"Wrote {out / 'result.json'} (every canary's score and inclusion)")


mia_app = typer.Typer(
    help="Membership inference audits.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(mia_app, name="mia")


class Threat(str, Enum):
    black = "black"
    grey = "grey"
    white = "white"


class Evidence(str, Enum):
    unseen = "unseen"
    trained = "trained"


# The audits' defaults come from their config dataclasses (voxaudit.mia.configs), never a copy.
THREAT_DEFAULT = Threat(_ASR.threat)
EVIDENCE_DEFAULT = Evidence(_ASR.evidence)
BootstrapOpt = Annotated[int, typer.Option(min=100, help="Bootstrap resamples.")]


@mia_app.command("asr")
@_friendly_errors
def mia_asr(
    corpus: Annotated[Path, typer.Option(help="The corpus the split was made from.")],
    target: TargetOpt,
    out: Annotated[Path, typer.Option(help="Report folder: report.json, report.html, features.")],
    split_path: Annotated[
        Path | None, typer.Option("--split", help="Split file from `voxaudit split`.")
    ] = None,
    shadow: ShadowOpt = None,
    members: MembersOpt = None,
    nonmembers: NonmembersOpt = None,
    shadow_members: ShadowMembersOpt = None,
    shadow_nonmembers: ShadowNonmembersOpt = None,
    null: Annotated[
        str | None,
        typer.Option(
            help="Null-control model that never saw the target's data (default: a "
            "shadow that qualifies)."
        ),
    ] = None,
    level: Annotated[
        Level | None, typer.Option(help="sample or speaker; must match the split's level.")
    ] = None,
    threat: Threat = THREAT_DEFAULT,
    draws: Annotated[int, typer.Option(min=1, help="Gaussian noise draws per SNR.")] = _ASR.draws,
    snr: Annotated[list[float] | None, typer.Option(help="Noise SNR in dB; repeatable.")] = None,
    max_per_side: Annotated[
        int, typer.Option(min=1, help="Members (speaker level: speakers) evaluated per model.")
    ] = _ASR.max_per_side,
    evidence: Annotated[
        Evidence,
        typer.Option(help="Speaker level: query member speakers' unseen or trained voices."),
    ] = EVIDENCE_DEFAULT,
    bootstrap: BootstrapOpt = _ASR.n_bootstrap,
    decision: DecisionOpt = _ASR.decision,
    device: str = "auto",
    seed: int = _ASR.seed,
    layout: LayoutOpt = None,
    pattern: PatternOpt = None,
) -> None:
    """Was this recording (or speaker) in the ASR model's training set? Writes a report."""
    from voxaudit.data.splits import AuditSplit
    from voxaudit.mia.configs import AsrAuditConfig

    if split_path is not None:
        audit_split = AuditSplit.load(split_path)
        if level is not None and level.value != audit_split.level:
            raise VoxauditError(
                f"--level {level.value} but {split_path} is a {audit_split.level}-level split"
            )
    elif level is not None and level.value != "sample":
        raise VoxauditError(
            "with --members the ASR audit is sample-level; use a split for speaker level"
        )
    config = AsrAuditConfig(
        threat=threat.value,
        draws=draws,
        snrs_db=tuple(snr) if snr else AsrAuditConfig.snrs_db,
        max_per_side=max_per_side,
        evidence=evidence.value,
        decision=decision,
        n_bootstrap=bootstrap,
        seed=seed,
    )
    lists = _Lists(members, nonmembers, shadow_members, shadow_nonmembers)
    _membership_audit(
        "asr", config, corpus, layout, pattern, split_path, target,
        shadow or [], null, out, device, lists=lists,
    )  # fmt: skip


@mia_app.command("asr-score")
@_friendly_errors
def mia_asr_score(
    model: Annotated[
        str,
        typer.Option(
            help="The model to score: `pocketsphinx`, a `voxaudit train` run folder, or a "
            "local Hugging Face CTC model directory."
        ),
    ],
    recordings: Annotated[Path, typer.Option(help="The user's transcribed recordings to score.")],
    corpus: Annotated[Path, typer.Option(help="The corpus the shadows' split was made from.")],
    split_path: Annotated[
        Path, typer.Option("--split", help="Sample-level split the shadows were trained on.")
    ],
    shadow: Annotated[
        list[Path], typer.Option(help="Shadow model run folder; repeat for each shadow.")
    ],
    out: Annotated[Path, typer.Option(help="Report folder: report.json, report.html, features.")],
    draws: Annotated[int, typer.Option(min=1, help="Gaussian noise draws per SNR.")] = _ASR.draws,
    snr: Annotated[list[float] | None, typer.Option(help="Noise SNR in dB; repeatable.")] = None,
    max_per_side: Annotated[
        int, typer.Option(min=1, help="Members evaluated per shadow model.")
    ] = _ASR.max_per_side,
    device: str = "auto",
    seed: int = _ASR.seed,
    layout: LayoutOpt = None,
    pattern: PatternOpt = None,
) -> None:
    """Membership scores (not verdicts) for recordings on a model with no ground truth."""
    from voxaudit.data.loaders import load_corpus
    from voxaudit.data.splits import AuditSplit
    from voxaudit.mia.configs import AsrAuditConfig
    from voxaudit.mia.families import resolve_model
    from voxaudit.report.console import scores_table

    config = AsrAuditConfig(
        threat="black",
        draws=draws,
        snrs_db=tuple(snr) if snr else AsrAuditConfig.snrs_db,
        max_per_side=max_per_side,
        seed=seed,
    )
    target = resolve_model("asr", model, device=device)
    report = _scoring(
        "asr", load_corpus(recordings, progress=True), target,
        load_corpus(corpus, layout, pattern=pattern, progress=True), AuditSplit.load(split_path),
        shadow, out, config, device,
    )  # fmt: skip
    console.print(scores_table(report))
    console.print(f"Wrote {out / 'report.json'} and {out / 'report.html'}")


VoicesOpt = Annotated[
    int, typer.Option(min=1, help="Voices queried per speaker (fewer if the split has fewer).")
]
ChunksOpt = Annotated[
    float, typer.Option(min=0, help="Voice chunk splitting: chunk seconds; 0 turns it off.")
]
SelectChunkingOpt = Annotated[
    bool,
    typer.Option(
        "--select-chunking/--always-chunk",
        help="Keep chunk splitting only if it wins on shadow cross-validation (the default), "
        "or always use it, as paper 001.",
    ),
]
SelectFeaturesOpt = Annotated[
    bool,
    typer.Option(
        "--select-features/--all-features",
        help="Choose SLMIA-SR's feature set (intra + inter, intra, inter) on shadow "
        "cross-validation, or always use both families (the default, as paper 001).",
    ),
]


@mia_app.command("speaker")
@_friendly_errors
def mia_speaker(
    corpus: Annotated[Path, typer.Option(help="The corpus the split was made from.")],
    target: TargetOpt,
    out: Annotated[Path, typer.Option(help="Report folder: report.json, report.html, cache.")],
    split_path: Annotated[
        Path | None, typer.Option("--split", help="Speaker-level split from `voxaudit split`.")
    ] = None,
    shadow: ShadowOpt = None,
    members: MembersOpt = None,
    nonmembers: NonmembersOpt = None,
    shadow_members: ShadowMembersOpt = None,
    shadow_nonmembers: ShadowNonmembersOpt = None,
    reference: Annotated[
        Path | None, typer.Option(help="With --members: imposter recordings no model trained on.")
    ] = None,
    unseen: Annotated[
        Path | None,
        typer.Option(help="With --members: member speakers' voices the target did not train on."),
    ] = None,
    null: Annotated[
        str | None,
        typer.Option(help="Null-control encoder that never saw the target's speakers."),
    ] = None,
    voices: VoicesOpt = _SPEAKER.voices,
    mixing_ratio: Annotated[
        float, typer.Option(help="Share of non-training voices of a target member speaker.")
    ] = _SPEAKER.mixing_ratio,
    chunk_seconds: ChunksOpt = _SPEAKER.chunk_seconds or 0.0,
    select_chunking: SelectChunkingOpt = _SPEAKER.select_chunking,
    select_features: SelectFeaturesOpt = _SPEAKER.select_features,
    seeds: Annotated[
        int, typer.Option(min=1, help="Attack-classifier seeds averaged.")
    ] = _SPEAKER.attack_seeds,
    bootstrap: BootstrapOpt = _SPEAKER.n_bootstrap,
    decision: DecisionOpt = _SPEAKER.decision,
    device: str = "auto",
    seed: int = _SPEAKER.seed,
    layout: LayoutOpt = None,
    pattern: PatternOpt = None,
) -> None:
    """Was this person's voice used to train the speaker encoder? SLMIA-SR and baselines."""
    from voxaudit.mia.configs import SpeakerAuditConfig

    config = SpeakerAuditConfig(
        voices=voices,
        mixing_ratio=mixing_ratio,
        chunk_seconds=chunk_seconds or None,
        select_chunking=select_chunking,
        select_features=select_features,
        attack_seeds=seeds,
        decision=decision,
        n_bootstrap=bootstrap,
        seed=seed,
    )
    lists = _Lists(members, nonmembers, shadow_members, shadow_nonmembers, reference, unseen)
    _membership_audit(
        "speaker", config, corpus, layout, pattern, split_path, target,
        shadow or [], null, out, device, lists=lists,
    )  # fmt: skip


@mia_app.command("speaker-score")
@_friendly_errors
def mia_speaker_score(
    model: Annotated[
        str, typer.Option(help="The encoder to score: `resemblyzer` or a `voxaudit train` run.")
    ],
    recordings: Annotated[Path, typer.Option(help="The user's recordings, by speaker.")],
    corpus: Annotated[Path, typer.Option(help="The corpus the shadows' split was made from.")],
    split_path: Annotated[
        Path, typer.Option("--split", help="Speaker-level split the shadows were trained on.")
    ],
    shadow: Annotated[
        list[Path], typer.Option(help="Shadow encoder run folder; repeat for each shadow.")
    ],
    out: Annotated[Path, typer.Option(help="Report folder: report.json, report.html, cache.")],
    voices: VoicesOpt = _SPEAKER.voices,
    chunk_seconds: ChunksOpt = _SPEAKER.chunk_seconds or 0.0,
    select_chunking: SelectChunkingOpt = _SPEAKER.select_chunking,
    select_features: SelectFeaturesOpt = _SPEAKER.select_features,
    device: str = "auto",
    seed: int = _SPEAKER.seed,
    layout: LayoutOpt = None,
    pattern: PatternOpt = None,
) -> None:
    """Speaker membership scores (not verdicts) on an encoder with no ground truth."""
    from voxaudit.data.loaders import load_corpus
    from voxaudit.data.splits import AuditSplit
    from voxaudit.mia.configs import SpeakerAuditConfig
    from voxaudit.mia.families import resolve_model
    from voxaudit.report.console import scores_table

    config = SpeakerAuditConfig(
        voices=voices,
        chunk_seconds=chunk_seconds or None,
        select_chunking=select_chunking,
        select_features=select_features,
        seed=seed,
    )
    target = resolve_model("speaker", model, device=device)
    report = _scoring(
        "speaker", load_corpus(recordings, progress=True), target,
        load_corpus(corpus, layout, pattern=pattern, progress=True), AuditSplit.load(split_path),
        shadow, out, config, device,
    )  # fmt: skip
    console.print(scores_table(report))
    console.print(f"Wrote {out / 'report.json'} and {out / 'report.html'}")


@mia_app.command("classifier")
@_friendly_errors
def mia_classifier(
    corpus: Annotated[Path, typer.Option(help="The corpus the split was made from.")],
    target: TargetOpt,
    out: Annotated[Path, typer.Option(help="Report folder: report.json, report.html, features.")],
    split_path: Annotated[
        Path | None, typer.Option("--split", help="Sample-level split from `voxaudit split`.")
    ] = None,
    shadow: ShadowOpt = None,
    members: MembersOpt = None,
    nonmembers: NonmembersOpt = None,
    shadow_members: ShadowMembersOpt = None,
    shadow_nonmembers: ShadowNonmembersOpt = None,
    label: Annotated[
        str, typer.Option(help="With --members: what the classes are, speaker or transcript.")
    ] = "speaker",
    null: Annotated[
        str | None, typer.Option(help="Null-control model (default: a shadow that qualifies).")
    ] = None,
    threat: Threat = THREAT_DEFAULT,
    draws: Annotated[
        int, typer.Option(min=1, help="Noise draws per SNR (label-only).")
    ] = _CLASSIFIER.draws,
    max_per_side: Annotated[
        int, typer.Option(min=1, help="Members evaluated per model.")
    ] = _CLASSIFIER.max_per_side,
    bootstrap: BootstrapOpt = _CLASSIFIER.n_bootstrap,
    decision: DecisionOpt = _CLASSIFIER.decision,
    device: str = "auto",
    seed: int = _CLASSIFIER.seed,
    layout: LayoutOpt = None,
    pattern: PatternOpt = None,
) -> None:
    """Was this recording in the classifier's training set? Writes a report."""
    from voxaudit.mia.configs import ClassifierAuditConfig

    config = ClassifierAuditConfig(
        threat=threat.value, draws=draws, max_per_side=max_per_side, decision=decision,
        n_bootstrap=bootstrap, seed=seed,
    )  # fmt: skip
    lists = _Lists(members, nonmembers, shadow_members, shadow_nonmembers, label=label)
    _membership_audit(
        "classifier", config, corpus, layout, pattern, split_path,
        target, shadow or [], null, out, device, lists=lists,
        metrics=("precision", "recall", "accuracy", "auroc", "tpr_at_0.1%_fpr", "tpr_at_1%_fpr"),
    )  # fmt: skip


@mia_app.command("table")
@_friendly_errors
def mia_table_markdown(
    report: Annotated[
        Path,
        typer.Argument(
            help="A report folder (or its report.json), or an audit folder: a table per level."
        ),
    ],
    metric: Annotated[
        list[str] | None,
        typer.Option(
            help="A column, e.g. precision or tpr@1%fpr (or tpr_at_1%_fpr); repeat (default: "
            "accuracy, auroc, tpr@0.1%fpr, tpr@1%fpr)."
        ),
    ] = None,
) -> None:
    """Print a written report's results as a Markdown table, each metric with its interval."""
    from voxaudit.mia.results import MIA_METRICS, metric_key, read_reports
    from voxaudit.report.mia import markdown_table

    found = read_reports(report)
    metrics = [metric_key(m) for m in metric] if metric else MIA_METRICS
    known = {m for _, written in found for result in written["results"] for m in result["metrics"]}
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise VoxauditError(
            f"{report}: no metric {', '.join(unknown)} in the report; it has {sorted(known)}"
        )
    for index, (level, written) in enumerate(found):
        if level:
            typer.echo(("\n" if index else "") + f"## {level} level\n")
        typer.echo(markdown_table(written, metrics), nl=False)


@dataclass(frozen=True)
class _Lists:
    """Known membership given on the command line instead of a split."""

    members: Path | None
    nonmembers: Path | None
    shadow_members: list[Path] | None
    shadow_nonmembers: list[Path] | None
    reference: Path | None = None
    unseen: Path | None = None
    label: str = "speaker"


def _membership_audit(
    family: str, config, corpus: Path, layout, pattern, split_path: Path | None, target: str,
    shadows: list[str], null: str | None, out: Path, device: str, lists: _Lists, metrics=None,
) -> None:  # fmt: skip
    """Load the corpus and models, run one family's audit (on a split, or on known
    membership), print its table."""
    from voxaudit.data.loaders import load_corpus
    from voxaudit.data.splits import AuditSplit
    from voxaudit.mia import families
    from voxaudit.mia.core import run_audit
    from voxaudit.mia.results import MIA_METRICS
    from voxaudit.report.console import mia_table
    from voxaudit.report.mia import write_html

    chosen = families.get(family)
    if (split_path is None) == (lists.members is None):
        raise VoxauditError("give either --split, or --members with --nonmembers")
    data = load_corpus(corpus, layout, pattern=pattern, progress=True)
    if split_path is not None:
        report = run_audit(
            chosen, data, AuditSplit.load(split_path), chosen.load(target, "target", device),
            [chosen.load(path, None, device) for path in shadows], out,
            null=None if null is None else chosen.load(null, "null", device),
            config=config,
        )  # fmt: skip
        write_html(out, report)
    else:
        report = _known_membership(chosen.name, config, data, target, shadows, null, out, lists)
    console.print(mia_table(report, metrics or MIA_METRICS))
    console.print(f"Wrote {out / 'report.json'}, {out / 'examples.csv'} and {out / 'report.html'}")


def _known_membership(family: str, config, data, target: str, shadows: list[str],
                      null: str | None, out: Path, lists: _Lists) -> dict:  # fmt: skip
    """The audit of a model trained anywhere, from its member and non-member lists."""
    from voxaudit.api import audit

    if lists.nonmembers is None:
        raise VoxauditError("--members needs --nonmembers")
    inside, outside = lists.shadow_members or [], lists.shadow_nonmembers or []
    if not len(shadows) == len(inside) == len(outside):
        raise VoxauditError(
            f"{len(shadows)} --shadow, {len(inside)} --shadow-members and {len(outside)} "
            "--shadow-nonmembers: give one members and one non-members file per shadow"
        )
    level = "speaker" if family == "speaker" else "sample"
    result = audit(
        target, data, lists.members, lists.nonmembers, family=family, label=lists.label,
        level=level, shadows=list(zip(shadows, inside, outside, strict=True)), null=null,
        reference=lists.reference or (), unseen=lists.unseen or (), out_dir=out, config=config,
        progress=True,
    )  # fmt: skip
    return result.report


def _scoring(family: str, recordings, target, corpus, split, shadows: list[Path], out: Path,
             config, device: str) -> dict:  # fmt: skip
    """Scoring mode of one family: the report, written with its HTML."""
    from voxaudit.mia import families
    from voxaudit.mia.core import run_scoring
    from voxaudit.report.mia import write_html

    chosen = families.get(family)
    report = run_scoring(chosen, recordings, target, corpus, split,
                         [chosen.load(path, None, device) for path in shadows], out,
                         config=config)  # fmt: skip
    write_html(out, report)
    return report


defend_app = typer.Typer(
    help="Defenses and their privacy-utility trade-off.", no_args_is_help=True,
    rich_markup_mode=None,
)  # fmt: skip
app.add_typer(defend_app, name="defend")


@defend_app.command("sweep")
@_friendly_errors
def defend_sweep(
    config: Annotated[Path, typer.Argument(help="Sweep config (.toml or .json).")],
    out: Annotated[Path, typer.Option(help="Sweep folder: sweep.json, pareto.png, settings/.")],
) -> None:
    """Train and audit every defense setting; utility against leakage, Pareto frontier."""
    from voxaudit.defend.sweep import SweepConfig, run_sweep
    from voxaudit.report.console import sweep_table

    summary = run_sweep(SweepConfig.load(config), out)
    console.print(sweep_table(summary))
    console.print(f"Wrote {out / 'sweep.json'} and {out / 'pareto.png'}")


app.add_typer(guard_app, name="guard")


def _count_or_fraction(value: float) -> int | float:
    return int(value) if value >= 1 else value


if __name__ == "__main__":
    app()
