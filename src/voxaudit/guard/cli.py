"""``voxaudit guard``: calibrate the detectors on benign traffic, and serve the gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from voxaudit.errors import VoxauditError

guard_app = typer.Typer(
    help="Guard a speech API against query-based adversarial attacks.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help never cuts option names (see voxaudit.cli)
)
console = Console()


@guard_app.command()
def calibrate(
    corpus: Annotated[
        str | None, typer.Argument(help="Benign corpus (any layout `data inspect` reads).")
    ] = None,
    out: Annotated[
        Path, typer.Option(help="TOML config file to write the thresholds into.")
    ] = Path("guard.toml"),
    synth: Annotated[
        int, typer.Option(help="Without CORPUS: synthesize this many utterances instead.")
    ] = 600,
    fpr: Annotated[
        float, typer.Option(help="Target false-positive rate per benign query.")
    ] = 0.001,
    accounts: Annotated[int, typer.Option(help="Benign accounts the traffic is spread over.")] = 4,
    repeat_rate: Annotated[float, typer.Option(help="Share of natural repeats (replays).")] = 0.02,
    share_rate: Annotated[
        float,
        typer.Option(help="Share of queries that are exact copies of a popular (shared) clip."),
    ] = 0.1,
    rerecord_rate: Annotated[
        float, typer.Option(help="Share of queries that are noisy re-recordings of one.")
    ] = 0.02,
    popular: Annotated[int, typer.Option(help="How many popular clips are shared.")] = 10,
    k: Annotated[int, typer.Option(help="Memory depth of the paper-003 detector.")] = 75,
    noise_db: Annotated[
        tuple[float, float] | None,
        typer.Option(
            help="Robust variant (paper 003): noise at an SNR drawn from LOW HIGH dB added "
            "to each query before fingerprinting; written to OUT for `serve`."
        ),
    ] = None,
    seed: int = 0,
) -> None:
    """Set detector thresholds from benign traffic for a target FPR; write them to OUT."""
    from voxaudit.guard.config import save_thresholds
    from voxaudit.guard.detectors import IndexDetector, MemoryDetector
    from voxaudit.guard.fingerprint import Fingerprinter
    from voxaudit.guard.traffic import benign_stream, fingerprint_stream

    try:
        waveforms = _benign_waveforms(corpus, synth, seed)
        # Real traffic shares recordings between accounts; calibrating without them would set
        # thresholds that flag honest users who send a clip that went around.
        stream = benign_stream(
            waveforms, n_accounts=accounts, repeat_rate=repeat_rate, seed=seed,
            share_rate=share_rate, rerecord_rate=rerecord_rate, popular=popular,
        )  # fmt: skip
        fingerprinter = Fingerprinter(noise_snr_db=noise_db, seed=seed)
        traffic = fingerprint_stream(stream, fingerprinter, progress=True)
        table = Table("detector", "threshold", "benign queries scored", "target FPR")
        thresholds = {}
        for detector in (IndexDetector(), MemoryDetector(k=k)):
            scored = detector.benign_scores(traffic).size
            thresholds[detector.name] = detector.calibrate(traffic, fpr)
            table.add_row(detector.name, f"{thresholds[detector.name]:.4g}", str(scored), str(fpr))
            if scored * fpr < 1:
                console.print(
                    f"[yellow]note:[/] {detector.name}: {scored} scored queries cannot resolve "
                    f"an FPR of {fpr}; the threshold is the highest benign score"
                )
        noise = {} if noise_db is None else {"fingerprint_noise_db": list(noise_db)}
        save_thresholds(out, thresholds, noise)
    except VoxauditError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    console.print(table)
    console.print(f"thresholds written to {out}")


@guard_app.command()
def serve(
    config: Annotated[
        Path | None, typer.Option(help="Config file (.toml/.json); env VOXAUDIT_GUARD_* override.")
    ] = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    backend: Annotated[
        str | None, typer.Option(help="Run folder, 'pocketsphinx' or an http(s) ASR URL.")
    ] = None,
) -> None:
    """Run the gateway: POST /v1/transcribe, admin endpoints, /healthz, /readyz and /metrics."""
    import dataclasses

    import uvicorn

    from voxaudit.guard.backends import backend_from_spec
    from voxaudit.guard.config import load_config
    from voxaudit.guard.service import Gateway, create_app

    try:
        settings = load_config(config)
        if backend is not None:
            settings = dataclasses.replace(settings, backend=backend)
        backend = backend_from_spec(
            settings.backend, settings.backend_timeout_s, workers=settings.backend_workers
        )
        gateway = Gateway(settings, backend)
    except VoxauditError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    uvicorn.run(create_app(gateway), host=host, port=port)


def _benign_waveforms(corpus: str | None, synth: int, seed: int) -> list:
    if corpus is None:
        from voxaudit.data.synth import synthesize_corpus_in_memory

        per_speaker = 10
        speakers = max(1, -(-synth // per_speaker))
        built = synthesize_corpus_in_memory(speakers, per_speaker, seed=seed, progress=True)
        return [u.samples for u in built.utterances][:synth]
    from voxaudit.data.loaders import load_corpus
    from voxaudit.progress import track

    loaded = load_corpus(corpus)
    return [u.load(16000) for u in track(loaded.utterances, "loading audio")]
