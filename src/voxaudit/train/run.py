"""Train a model on one role's training pool of an audit split: the API behind ``voxaudit train``.

Each model family registers a :class:`ModelKind` in ``MODEL_KINDS``; a config file (TOML or
JSON) holds ``[model]`` (constructor keywords), ``[train]`` (:class:`TrainConfig`) and, for
kinds with a batch sampler, ``[sampler]`` (its keywords, e.g. ``speakers_per_batch``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn
from torch.utils.data import Sampler

from voxaudit.data.features import LogMel
from voxaudit.data.loaders import load_corpus
from voxaudit.data.splits import AuditSplit
from voxaudit.errors import VoxauditError
from voxaudit.models.classifier import classifier_for
from voxaudit.models.recognizer import asr_model_for, transcript_targets
from voxaudit.models.speaker import speaker_encoder_for, speaker_targets
from voxaudit.train.augment import SpecAugment
from voxaudit.train.data import SpeakerBatchSampler, TargetFn, UtteranceDataset
from voxaudit.train.loop import (
    CHECKPOINT,
    Hook,
    TrainConfig,
    Trainer,
    read_config_file,
    seed_everything,
)

CONFIG_SECTIONS = ("model", "train", "sampler", "augment")


@dataclass(frozen=True)
class ModelKind:
    """How to train one model family.

    ``build`` makes the model from the role's training pool (e.g. to find the classes) and the
    ``[model]`` keywords; the model must carry its feature extractor as ``front_end`` (a LogMel).
    ``target`` gives the model's target function; ``batch_sampler``, when set, is called as
    ``batch_sampler(targets, seed=..., **sampler_settings)`` to make the training batches
    (e.g. ``SpeakerBatchSampler`` for GE2E's N speakers x M utterances).
    """

    build: Callable[..., nn.Module]
    target: Callable[[Any], TargetFn]
    batch_sampler: Callable[..., Sampler[list[int]]] | None = None


@dataclass(frozen=True)
class RunConfig:
    """The sections of a run's config file."""

    model: dict[str, Any]
    train: TrainConfig
    sampler: dict[str, Any]
    augment: dict[str, Any]  # SpecAugment keywords; empty: no augmentation


def speaker_batches(
    targets: Sequence[int],
    seed: int = 0,
    speakers_per_batch: int = 16,
    utterances_per_speaker: int = 4,
) -> SpeakerBatchSampler:
    """GE2E-style N speakers x M utterances batches, N capped at the speakers available."""
    counts = np.bincount(np.asarray(targets, dtype=np.int64))
    available = int((counts >= utterances_per_speaker).sum())
    return SpeakerBatchSampler(
        targets, min(speakers_per_batch, max(available, 1)), utterances_per_speaker, seed
    )


MODEL_KINDS: dict[str, ModelKind] = {
    "classifier": ModelKind(build=classifier_for, target=lambda model: model.target),
    "asr": ModelKind(build=asr_model_for, target=transcript_targets),
    "speaker": ModelKind(
        build=speaker_encoder_for, target=speaker_targets, batch_sampler=speaker_batches
    ),
}


def model_kind(kind: str) -> ModelKind:
    """The registered kind, or an error saying which kinds exist."""
    if kind in MODEL_KINDS:
        return MODEL_KINDS[kind]
    available = ", ".join(sorted(MODEL_KINDS))
    raise VoxauditError(f"unknown model kind {kind!r}; available: {available}")


def read_run_config(config: str | Path | Mapping[str, Any]) -> RunConfig:
    """The sections of a config file or mapping, each optional."""
    data = dict(config) if isinstance(config, Mapping) else read_config_file(config)
    where = "config" if isinstance(config, Mapping) else str(config)
    unknown = sorted(set(data) - set(CONFIG_SECTIONS))
    if unknown:
        raise VoxauditError(
            f"{where}: unknown section(s) {', '.join(unknown)}; "
            f"use {', '.join(f'[{name}]' for name in CONFIG_SECTIONS)}"
        )
    sections = {name: data.get(name, {}) for name in CONFIG_SECTIONS}
    for name, section in sections.items():
        if not isinstance(section, Mapping):
            raise VoxauditError(f"{where}: [{name}] must be a table of settings")
    return RunConfig(
        model=dict(sections["model"]),
        train=TrainConfig.from_dict(dict(sections["train"])),
        sampler=dict(sections["sampler"]),
        augment=dict(sections["augment"]),
    )


def carve_validation(ids: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Split training ids into (train, validation), the validation share drawn with ``seed``."""
    if not 0 <= fraction < 1:
        raise VoxauditError(f"val_fraction must lie in [0, 1); got {fraction}")
    if fraction == 0:
        return list(ids), []
    n_val = max(1, round(fraction * len(ids)))
    if n_val >= len(ids):
        raise VoxauditError(f"val_fraction={fraction} leaves nothing of {len(ids)} to train on")
    order = np.random.default_rng(seed).permutation(len(ids))
    val = set(order[:n_val].tolist())
    return (
        [uid for i, uid in enumerate(ids) if i not in val],
        [uid for i, uid in enumerate(ids) if i in val],
    )


def train_model(
    kind: str,
    corpus_path: str | Path,
    split_path: str | Path,
    role: str,
    config: str | Path | Mapping[str, Any],
    out_dir: str | Path,
    *,
    layout: str | None = None,
    pattern: str | None = None,
    progress: bool = True,
    val_fraction: float = 0.0,
    cache_dir: str | Path | None = None,
    hooks: Sequence[Hook] = (),
) -> Path:
    """Train the ``role`` model of a split on exactly its training ids; return the checkpoint.

    The holdout pool is never touched, so audits stay valid. ``val_fraction`` > 0 holds out
    that share of the TRAINING pool for validation (and early stopping): those utterances are
    then not trained on, and the checkpoint's ``data.train_ids`` lists what was. Re-running
    with the same arguments resumes an interrupted run.
    """
    family = model_kind(kind)
    settings = read_run_config(config)
    train_config = settings.train
    if settings.sampler and family.batch_sampler is None:
        raise VoxauditError(f"model kind {kind!r} takes no [sampler] settings")
    corpus = load_corpus(corpus_path, layout, pattern=pattern, progress=progress)
    split = AuditSplit.load(split_path)
    split.check(corpus)
    train_ids, val_ids = carve_validation(split.train_ids(role), val_fraction, train_config.seed)
    if train_config.early_stopping_patience is not None and not val_ids:
        raise VoxauditError("early stopping needs a validation share: set val_fraction > 0")
    if not train_ids:
        raise VoxauditError(f"{split_path}: role {role!r} has no training utterances")
    train_utts = [corpus[uid] for uid in train_ids]
    val_utts = [corpus[uid] for uid in val_ids]
    # The initial weights come from the global RNG: seed it, or the same config gives another
    # model depending on what the process did before.
    seed_everything(train_config.seed)
    try:
        # The whole pool, so the validation share never changes a classifier's classes.
        model = family.build(train_utts + val_utts, **settings.model)
    except TypeError as exc:
        raise VoxauditError(f"bad [model] settings for kind {kind!r}: {exc}") from exc
    front_end = getattr(model, "front_end", None)
    if not isinstance(front_end, LogMel):
        raise VoxauditError(f"{type(model).__name__} has no LogMel front_end to make features")
    target_fn = family.target(model)
    train_set = UtteranceDataset(train_utts, front_end, target_fn, cache_dir)
    val_set = UtteranceDataset(val_utts, front_end, target_fn, cache_dir) if val_utts else None
    sampler = None
    if family.batch_sampler is not None:
        try:
            sampler = family.batch_sampler(
                train_set.targets(), seed=train_config.seed, **settings.sampler
            )
        except TypeError as exc:
            raise VoxauditError(f"bad [sampler] settings for kind {kind!r}: {exc}") from exc
    metadata = {
        "kind": kind,
        "role": role,
        "corpus": corpus.name,
        "corpus_fingerprint": corpus.fingerprint(),
        "split_level": split.level,
        "split_seed": split.seed,
        "val_fraction": val_fraction,
    }
    out_dir = Path(out_dir)
    if settings.augment:
        try:
            hooks = [*hooks, SpecAugment(**settings.augment)]
        except TypeError as exc:
            raise VoxauditError(f"bad [augment] settings: {exc}") from exc
    Trainer(train_config, hooks, progress=progress).fit(
        model, train_set, val_set, out_dir, batch_sampler=sampler, metadata=metadata
    )
    return out_dir / CHECKPOINT
