"""``voxaudit dp-audit`` and the audit config's ``[dp_audit]`` stage: how much privacy a
training recipe has, in epsilon terms, from one training run.

The recipe (a ``voxaudit train`` run config, optionally under DP-SGD) is trained once on a
corpus with ``m`` canaries (``voxaudit.data.canaries``), each put in with probability 1/2;
each canary is then scored by the trained model (``voxaudit.mia.one_run.canary_scores``) and
the guesses those scores allow give a lower bound on epsilon at a stated confidence and delta
(Steinke, Nasr & Jagielski 2023; ``voxaudit.mia.one_run.audit_canaries``). A DP-SGD run's
accountant epsilon is an upper bound of the same quantity, so the two belong side by side:
the bound above the claim means the claim (or its accounting) is wrong.

The bound is about the recipe, measured on a model trained with canaries: the audited
model itself, trained without them, is not that model. The folder ``OUT`` holds
``canaries.json`` (every canary, its target and whether it went in), the model under
``model/``, and ``result.json`` with every canary's score, so the bound can be recomputed.
Training resumes from its checkpoint; a finished audit is read back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from voxaudit.data.canaries import RECORD as CANARY_RECORD
from voxaudit.data.canaries import canary_corpus, canary_units, make_canaries
from voxaudit.data.corpus import Corpus
from voxaudit.files import claim_folder, json_key, write_json
from voxaudit.mia.configs import DPAuditConfig

SCHEMA = "voxaudit.dp-audit/1"
RESULT = "result.json"
RECORD = "dp-audit-config.json"


def dp_audit(
    family: str,
    corpus: Corpus,
    run_config: Mapping[str, Any],
    out_dir: str | Path,
    config: DPAuditConfig | None = None,
    *,
    reference: str | Path | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``run_config`` once with canaries and bound its epsilon from below.

    Parameters
    ----------
    family:
        ``classifier``, ``asr`` or ``speaker``.
    corpus:
        The data; relabelled canaries are made from (and taken out of) it, the rest trains.
    run_config:
        The recipe: the sections of ``voxaudit train --config`` (``[model]``, ``[train]``...).
    out_dir:
        The audit folder (resumable; a folder made with other settings is refused).
    config:
        The canaries, the bound's delta and confidence, the score, DP-SGD; the defaults of
        :class:`~voxaudit.mia.configs.DPAuditConfig` when None.
    reference:
        A model (run folder, checkpoint or adapter) that trained on no canary, for
        ``score = "calibrated"``.
    seed:
        Seeds the canaries, their inclusion, and the training unless ``[train] seed`` is set.
    device:
        Where to train and score ("cpu", "cuda" or "auto").
    progress:
        Whether to show progress.

    Returns
    -------
    dict
        ``epsilon_hat`` (the bound) with its ``guesses``/``correct``/``sweep``, the
        ``accountant_epsilon`` of a DP-SGD run (else None), ``utility`` on the left-out
        canaries' source recordings (None for synthesized canaries), ``statement`` (in words),
        and ``examples``: every canary's utterance ids, inclusion and score.
    """
    from voxaudit.defend.training import DPSGD, recorded_epsilon
    from voxaudit.mia import families
    from voxaudit.mia.one_run import audit_canaries, canary_scores, epsilon_ceiling
    from voxaudit.train.loop import CHECKPOINT
    from voxaudit.train.run import read_run_config, train_model

    found = families.get(family)
    config = (config or DPAuditConfig()).check(family, "dp_audit:", reference is not None)
    read_run_config(dict(run_config), found.train_kind, where="dp_audit run config")
    out_dir = Path(out_dir)
    done = out_dir / RESULT
    record = {
        "family": family,
        **asdict(config),
        "run_config": dict(run_config),
        "seed": seed,
        "corpus": corpus.fingerprint(),
        "reference": None if reference is None else str(reference),
    }
    claim_folder(out_dir, RECORD, json.loads(json_key(record)), "a DP audit")
    if done.exists():
        return json.loads(done.read_text("utf-8"))
    began = time.time()
    base = None  # loaded before any training, so that a bad reference fails in a second
    if config.score == "calibrated":
        assert reference is not None
        base = families.resolve_model(family, reference, "reference-0", device).model
    label = str(run_config.get("model", {}).get("label", "speaker"))
    canaries, rest = make_canaries(
        corpus,
        config.kind,
        config.canaries,
        seed,
        label=label,
        per_speaker=config.per_speaker,
        audio_dir=out_dir / "canary-audio",
        progress=progress,
    )
    canaries.save(out_dir / CANARY_RECORD)
    train_config = {name: dict(section) for name, section in run_config.items()}
    train_config.setdefault("train", {}).setdefault("seed", seed)
    train_config["train"].setdefault("device", device)
    hooks = []
    if config.noise_multiplier is not None:
        hooks.append(DPSGD(config.noise_multiplier, config.max_grad_norm, config.delta))
    model_dir = out_dir / "model"
    fresh = not (model_dir / CHECKPOINT).exists()
    train_model(
        found.train_kind,
        canary_corpus(rest, canaries),
        None,
        "canaries",
        train_config,
        model_dir,
        progress=progress,
        hooks=hooks,
        train_ids=[u.id for u in rest] + canaries.included_ids(),
    )
    accountant = recorded_epsilon(hooks, model_dir, fresh)
    audited = found.load(model_dir, "canaries", device)
    model = audited.model
    # Utility on recordings no model step saw: the sources of the canaries left out, with
    # their true labels or transcripts (none for synthesized canaries, which have no source).
    unseen = [source for source, unit in zip(canaries.sources, canaries.unit_of, strict=True)
              if source and not canaries.included[unit]]  # fmt: skip
    utility = None
    if unseen:
        metric, value = found.utility(audited, corpus, unseen)
        utility = {"metric": metric, "value": round(value, 4), "recordings": len(unseen)}
    units = canary_units(canaries)
    scores = canary_scores(model, units, base, label=label)
    bound = audit_canaries(scores, canaries.included, config.delta, config.confidence)
    result = {
        "schema": SCHEMA,
        "family": family,
        "kind": config.kind,
        "score": config.score,
        "canaries": canaries.count,
        "included": int(canaries.included.sum()),
        "trained_on": len(rest) + len(canaries.included_ids()),
        "delta": config.delta,
        "confidence": config.confidence,
        "epsilon_hat": bound["epsilon"],
        "ceiling": epsilon_ceiling(canaries.count, config.delta, config.confidence),
        "guesses": bound["guesses"],
        "correct": bound["correct"],
        "sweep": bound["sweep"],
        "noise_multiplier": config.noise_multiplier,
        "max_grad_norm": config.max_grad_norm if config.noise_multiplier is not None else None,
        "accountant_epsilon": accountant,
        "utility": utility,
        "model": str(model_dir.resolve()),
        "seconds": round(time.time() - began, 1),  # this call's, a resumed run's included
        "train_seconds": _train_seconds(model_dir),
        "examples": [
            {
                "canary": k,
                "ids": [u.id for u in unit],
                "included": bool(canaries.included[k]),
                "score": float(scores[k]),
            }
            for k, unit in enumerate(units)
        ],
    }
    result["statement"] = statement(result)
    write_json(done, result)
    return result


def statement(result: Mapping[str, Any]) -> str:
    """The result in words, for the report's first screen.

    Parameters
    ----------
    result:
        What :func:`dp_audit` returns (``epsilon_hat``, ``ceiling``, ``delta``,
        ``confidence``, ``canaries``, ``accountant_epsilon``, ``family``).
    """
    eps, delta = result["epsilon_hat"], result["delta"]
    unit = "speaker" if result["family"] == "speaker" else "recording"
    at = (
        f"(delta {delta:g}, {result['confidence']:.0%} confidence, "
        f"{result['canaries']} {unit} canaries)"
    )
    if eps > 0:
        words = (
            f"This training recipe behaves at least as leaky as epsilon >= {eps:.2f} {at}: "
            f"no ({unit}-level) DP guarantee with a smaller epsilon can hold for it."
        )
        if eps >= 0.95 * result["ceiling"]:
            words += (
                f" That is about the most {result['canaries']} canaries can show "
                f"({result['ceiling']:.2f}); more canaries could show more."
            )
    else:
        words = (
            f"The canaries show no measurable leakage (epsilon >= 0) {at}. A lower bound "
            "of 0 does not show that the recipe is private."
        )
    claimed = result.get("accountant_epsilon")
    if claimed is not None:
        verdict = (
            "consistent with it"
            if eps <= claimed
            else "above it: the accounting, or the DP-SGD implementation, is wrong"
        )
        words += f" The DP-SGD accountant claims epsilon = {claimed:.2f}; the bound is {verdict}."
    return words


def _train_seconds(run_dir: Path) -> float | None:
    """The seconds the model's epochs took, over every run that trained it (its history)."""
    history = run_dir / "history.json"
    if not history.exists():
        return None
    epochs = json.loads(history.read_text("utf-8")).get("epochs", [])
    return round(sum(epoch.get("seconds", 0.0) for epoch in epochs), 1)
