"""Train a model on one role's training pool of an audit split: the API behind ``voxaudit train``.

Each model family registers a :class:`ModelKind` in ``MODEL_KINDS``; a config file (TOML,
YAML or JSON) holds ``[model]`` (constructor keywords), ``[train]`` (:class:`TrainConfig`),
``[augment]`` (:class:`SpecAugment`) and, for kinds with a batch sampler, ``[sampler]`` (its
keywords, e.g. ``speakers_per_batch``). Every key is checked when the config is read, before
the corpus is loaded, so a typo fails in a second rather than after the data is read.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch import nn
from torch.utils.data import Sampler

from voxaudit.config import checked, field_types, from_mapping, keyword_types, read_config_file
from voxaudit.data.features import LogMel
from voxaudit.data.loaders import load_corpus
from voxaudit.data.splits import AuditSplit
from voxaudit.errors import VoxauditError
from voxaudit.models.classifier import UtteranceClassifierNet, classifier_for
from voxaudit.models.recognizer import ASR_FAMILIES, asr_model_for, transcript_targets
from voxaudit.models.speaker import (
    GE2EEncoder,
    XVectorEncoder,
    speaker_encoder_for,
    speaker_targets,
)
from voxaudit.train.augment import SpecAugment
from voxaudit.train.data import SpeakerBatchSampler, TargetFn, UtteranceDataset
from voxaudit.train.loop import (
    CHECKPOINT,
    Hook,
    TrainConfig,
    Trainer,
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
    (e.g. ``SpeakerBatchSampler`` for GE2E's N speakers x M utterances). ``model_keywords``,
    when set, gives the ``[model]`` keys the kind takes and their types, given the settings
    (whose ``family`` may pick the class): they are then checked when the config is read;
    otherwise only when the model is built.
    """

    build: Callable[..., nn.Module]
    target: Callable[[Any], TargetFn]
    batch_sampler: Callable[..., Sampler[list[int]]] | None = None
    model_keywords: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None


@dataclass(frozen=True)
class RunConfig:
    """The sections of a run's config file."""

    model: dict[str, Any]
    train: TrainConfig
    sampler: dict[str, Any]
    augment: dict[str, Any]  # SpecAugment keywords; empty: no augmentation
    origin: str = field(default="config", compare=False)  # the file, for error messages


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


def _passed_on(
    build: Callable[..., Any], model_class: Callable[..., Any], filled: Collection[str] = ()
) -> dict[str, Any]:
    """The keywords of ``build`` after the training pool, and those it passes on to
    ``model_class``, but for the ones ``build`` fills in from the pool (``filled``)."""
    own = dict(list(keyword_types(build).items())[1:])
    return own | {k: v for k, v in keyword_types(model_class).items() if k not in filled}


def _family_keywords(
    settings: Mapping[str, Any],
    build: Callable[..., Any],
    families: Mapping[str, Callable[..., Any]],
    filled: Collection[str] = (),
) -> dict[str, Any]:
    """The [model] keys of a ``build`` whose ``family`` keyword picks the model class."""
    family = settings.get("family", inspect.signature(build).parameters["family"].default)
    known = {"family": Literal[tuple(families)]}
    model_class = families.get(family) if isinstance(family, str) else None
    if model_class is None:  # the other keys depend on it: report the family alone
        return known
    types = _passed_on(build, model_class, filled) | known
    if "preset" in types:
        types["preset"] = Literal[tuple(model_class.PRESETS)]  # type: ignore[attr-defined]
    return types


def _classifier_keywords(settings: Mapping[str, Any]) -> dict[str, Any]:
    return _passed_on(classifier_for, UtteranceClassifierNet, filled=("n_classes", "classes"))


def _asr_keywords(settings: Mapping[str, Any]) -> dict[str, Any]:
    return _family_keywords(settings, asr_model_for, ASR_FAMILIES)


def _speaker_keywords(settings: Mapping[str, Any]) -> dict[str, Any]:
    encoders = {"ge2e": GE2EEncoder, "xvector": XVectorEncoder}
    return _family_keywords(settings, speaker_encoder_for, encoders, filled=("n_speakers",))


MODEL_KINDS: dict[str, ModelKind] = {
    "classifier": ModelKind(
        build=classifier_for, target=lambda model: model.target, model_keywords=_classifier_keywords
    ),
    "asr": ModelKind(build=asr_model_for, target=transcript_targets, model_keywords=_asr_keywords),
    "speaker": ModelKind(
        build=speaker_encoder_for,
        target=speaker_targets,
        batch_sampler=speaker_batches,
        model_keywords=_speaker_keywords,
    ),
}


def model_kind(kind: str) -> ModelKind:
    """The registered kind, or an error saying which kinds exist."""
    if kind in MODEL_KINDS:
        return MODEL_KINDS[kind]
    available = ", ".join(sorted(MODEL_KINDS))
    raise VoxauditError(f"unknown model kind {kind!r}; available: {available}")


def read_run_config(
    config: str | Path | Mapping[str, Any],
    kind: str | None = None,
    *,
    where: str | None = None,
    table: str = "",
) -> RunConfig:
    """The sections of a config file or mapping, each optional, every key checked.

    ``[train]`` is checked against :class:`TrainConfig` and ``[augment]`` against
    :class:`SpecAugment`; given the model ``kind``, ``[model]`` and ``[sampler]`` are checked
    against what the kind builds. Errors name ``where`` (by default the file) and the section
    as ``[{table}{name}]``, ``table`` naming an enclosing table: ``"base."`` gives a sweep's
    ``[base.train]``.
    """
    data = dict(config) if isinstance(config, Mapping) else read_config_file(config)
    where = where or ("config" if isinstance(config, Mapping) else str(config))
    unknown = sorted(set(data) - set(CONFIG_SECTIONS))
    if unknown:
        raise VoxauditError(
            f"{where}: unknown section(s) {', '.join(unknown)}; "
            f"use {', '.join(f'[{table}{name}]' for name in CONFIG_SECTIONS)}"
        )
    at = {name: f"{where}: [{table}{name}]" for name in CONFIG_SECTIONS}
    sections = {name: data.get(name, {}) for name in CONFIG_SECTIONS}
    for name, section in sections.items():
        if not isinstance(section, Mapping):
            raise VoxauditError(f"{at[name]} must be a table of settings")
    model, sampler = dict(sections["model"]), dict(sections["sampler"])
    if kind is not None:
        model, sampler = _checked_kind_sections(model_kind(kind), kind, model, sampler, at)
    return RunConfig(
        model=model,
        train=from_mapping(TrainConfig, sections["train"], at["train"]),
        sampler=sampler,
        augment=checked(sections["augment"], field_types(SpecAugment), at["augment"]),
        origin=where,
    )


def _checked_kind_sections(
    family: ModelKind,
    kind: str,
    model: dict[str, Any],
    sampler: dict[str, Any],
    at: Mapping[str, str],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The [model] and [sampler] settings checked against what model ``kind`` builds."""
    if family.model_keywords is not None:
        model = checked(model, family.model_keywords(model), at["model"])
    if sampler:
        if family.batch_sampler is None:
            raise VoxauditError(f"{at['sampler']}: model kind {kind!r} takes no [sampler] settings")
        # The sampler's first argument is the targets and its seed is [train]'s.
        types = dict(list(keyword_types(family.batch_sampler).items())[1:])
        types.pop("seed", None)
        sampler = checked(sampler, types, at["sampler"])
    return model, sampler


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
    settings = read_run_config(config, kind)
    train_config = settings.train
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
        raise VoxauditError(
            f"{settings.origin}: bad [model] settings for kind {kind!r}: {exc}"
        ) from exc
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
            raise VoxauditError(
                f"{settings.origin}: bad [sampler] settings for kind {kind!r}: {exc}"
            ) from exc
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
        hooks = [*hooks, SpecAugment(**settings.augment)]
    Trainer(train_config, hooks, progress=progress).fit(
        model, train_set, val_set, out_dir, batch_sampler=sampler, metadata=metadata
    )
    return out_dir / CHECKPOINT
