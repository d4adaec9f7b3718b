"""Train a model on one role's training pool of an audit split: the API behind ``voxaudit train``.

Each model family registers a :class:`ModelKind` in ``MODEL_KINDS``; a config file (TOML,
YAML or JSON) holds ``[model]`` (constructor keywords), ``[train]`` (:class:`TrainConfig`),
``[augment]`` (:class:`SpecAugment`), ``[finetune]`` (:class:`FinetuneConfig`: start from a
trained base, freeze some of it) and, for kinds with a batch sampler, ``[sampler]`` (its
keywords, e.g. ``speakers_per_batch``). Every key is checked when the config is read, before
the corpus is loaded, so a typo fails in a second rather than after the data is read.
"""

from __future__ import annotations

import collections.abc
import inspect
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch import nn
from torch.utils.data import Sampler

from voxaudit.config import checked, field_types, from_mapping, keyword_types, read_config_file
from voxaudit.data.corpus import Corpus, Utterance
from voxaudit.data.features import LogMel
from voxaudit.data.loaders import load_corpus
from voxaudit.data.splits import AuditSplit
from voxaudit.errors import VoxauditError
from voxaudit.files import json_key
from voxaudit.models.checkpoints import base_provenance, read_checkpoint
from voxaudit.models.classifier import UtteranceClassifierNet, classifier_for
from voxaudit.models.recognizer import ASR_FAMILIES, asr_model_for, transcript_targets
from voxaudit.models.speaker import (
    GE2EEncoder,
    XVectorEncoder,
    speaker_encoder_for,
    speaker_targets,
)
from voxaudit.models.tokens import CharTokenizer
from voxaudit.models.wav2vec2 import WaveformInput
from voxaudit.train.augment import SpecAugment
from voxaudit.train.data import SpeakerBatchSampler, TargetFn, UtteranceDataset
from voxaudit.train.loop import (
    CHECKPOINT,
    Hook,
    TrainConfig,
    Trainer,
    freeze_parameters,
    seed_everything,
)

CONFIG_SECTIONS = ("model", "train", "sampler", "augment", "finetune")
#: Model config keys a fine-tuned model may set apart from its base's: they regularize or
#: weigh the loss, and no weight depends on them.
FINETUNE_FREE = ("dropout", "label_smoothing", "ctc_weight")


@dataclass(frozen=True)
class ModelKind:
    """How to train one model family.

    ``build`` makes the model from the role's training pool (e.g. to find the classes) and the
    ``[model]`` keywords; the model must carry its feature extractor as ``front_end`` (a
    LogMel, or a WaveformInput for a model that reads raw waveforms).
    ``target`` gives the model's target function; ``batch_sampler``, when set, is called as
    ``batch_sampler(targets, seed=..., **sampler_settings)`` to make the training batches
    (e.g. ``SpeakerBatchSampler`` for GE2E's N speakers x M utterances).
    ``corpus_keywords``, when set, gives ``[model]`` keywords taken from the whole corpus (the
    config's own win), so every role of a split builds the same model shape. ``classes``
    lists the model classes ``build`` makes, by the ``family`` keyword that picks each (None
    for a kind without families), and ``filled`` the keys of their config that ``build`` takes
    from the training pool (e.g. a classifier's classes). From them come the ``[model]`` keys
    the kind takes (:meth:`model_keywords`, checked when the config is read) and a base
    checkpoint's config as ``[model]`` keywords again; a kind without ``classes`` has its
    settings checked only when the model is built, and cannot be fine-tuned.
    """

    build: Callable[..., nn.Module]
    target: Callable[[Any], TargetFn]
    batch_sampler: Callable[..., Sampler[list[int]]] | None = None
    corpus_keywords: Callable[[Corpus], dict[str, Any]] | None = None
    classes: Mapping[str | None, type[nn.Module]] = field(default_factory=dict)
    filled: tuple[str, ...] = ()

    def model_keywords(self, settings: Mapping[str, Any]) -> dict[str, Any] | None:
        """The ``[model]`` keys this kind takes and their types, given the settings (whose
        ``family`` may pick the class); None for a kind that lists no ``classes``."""
        if not self.classes:
            return None
        if None in self.classes:
            return _passed_on(self.build, self.classes[None], self.filled)
        return _family_keywords(settings, self.build, self.classes, self.filled)


@dataclass(frozen=True)
class FinetuneConfig:
    """``[finetune]``: start from a trained model's weights and keep some of them fixed.

    ``init_from`` is the base: a run folder or checkpoint file (relative to the config file's
    folder), whose model the run builds again and loads before the first step; the
    checkpoint records it (``voxaudit.models.checkpoints.checkpoint_base``). ``freeze``
    lists parameter-name prefixes (e.g. ``"encoder"``, ``"wav2vec2.feature_extractor"``)
    whose parameters are not trained.
    """

    init_from: Path | None = None
    freeze: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunConfig:
    """The sections of a run's config file."""

    model: dict[str, Any]
    train: TrainConfig
    sampler: dict[str, Any]
    augment: dict[str, Any]  # SpecAugment keywords; empty: no augmentation
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
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


CLASSIFIER_FILLED = ("n_classes", "classes")
SPEAKER_FILLED = ("n_speakers",)


def _corpus_alphabet(corpus: Corpus) -> dict[str, Any]:
    # The whole corpus' characters, not the role's pool: every model of a split then has the
    # same output layer (features such as entropy compare alike), and the alphabet does not
    # itself tell which rare characters a model was trained on.
    return {"alphabet": CharTokenizer.from_texts(u.transcript for u in corpus).alphabet}


SPEAKER_ENCODERS = {"ge2e": GE2EEncoder, "xvector": XVectorEncoder}


MODEL_KINDS: dict[str, ModelKind] = {
    "classifier": ModelKind(
        build=classifier_for,
        target=lambda model: model.target,
        classes={None: UtteranceClassifierNet},
        filled=CLASSIFIER_FILLED,
    ),
    "asr": ModelKind(
        build=asr_model_for,
        target=transcript_targets,
        corpus_keywords=_corpus_alphabet,
        classes=ASR_FAMILIES,
    ),
    "speaker": ModelKind(
        build=speaker_encoder_for,
        target=speaker_targets,
        batch_sampler=speaker_batches,
        classes=SPEAKER_ENCODERS,
        filled=SPEAKER_FILLED,
    ),
}


def model_settings(kind: str) -> dict[str, list[tuple[str, str]]]:
    """The ``[model]`` keys model ``kind`` takes, for ``train --help``.

    Parameters
    ----------
    kind:
        A key of ``MODEL_KINDS``.

    Returns
    -------
    Per model family (``"family = NAME"``; one entry, ``""``, for a kind without families),
    each key with its type, and its default where the kind's builder sets one (the model
    classes' own defaults are left out: a ``preset`` overrides them).
    """
    found = model_kind(kind)
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(found.build).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    out = {}
    for family in found.classes:  # none listed: nothing to say before the model is built
        types = found.model_keywords({} if family is None else {"family": family}) or {}
        rows = []
        for name, annotation in types.items():
            if name == "family":
                continue
            default = f" (default {defaults[name]!r})" if name in defaults else ""
            rows.append((name, _type_name(annotation) + default))
        out["" if family is None else f"family = {family!r}"] = rows
    return out


def _type_name(annotation: Any) -> str:
    """``Literal['a', 'b']`` as ``a|b``, ``int | None`` as ``int|None``, ``tuple[int, ...]``
    as ``list of int``, a class by its name."""
    args = getattr(annotation, "__args__", None)
    origin = getattr(annotation, "__origin__", None)
    if origin is Literal:
        return "|".join(map(str, args))
    if origin in (tuple, list) and args and (origin is list or args[-1] is Ellipsis):
        return f"list of {_type_name(args[0])}"
    if origin is collections.abc.Callable:
        return "callable"
    if args:
        return "|".join(_type_name(a) for a in args)
    return "None" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


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

    ``[train]`` is checked against :class:`TrainConfig`, ``[augment]`` against
    :class:`SpecAugment` and ``[finetune]`` against :class:`FinetuneConfig`, whose relative
    ``init_from`` is taken from the config file's folder; given the model ``kind``,
    ``[model]`` and ``[sampler]`` are checked against what the kind builds. Errors name
    ``where`` (by default the file) and the section as ``[{table}{name}]``, ``table`` naming
    an enclosing table: ``"base."`` gives a sweep's ``[base.train]``.
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
    finetune = from_mapping(FinetuneConfig, sections["finetune"], at["finetune"])
    if finetune.init_from is not None and not isinstance(config, Mapping):
        finetune = replace(finetune, init_from=Path(config).parent / finetune.init_from)
    return RunConfig(
        model=model,
        train=from_mapping(TrainConfig, sections["train"], at["train"]),
        sampler=sampler,
        augment=checked(sections["augment"], field_types(SpecAugment), at["augment"]),
        finetune=finetune,
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
    keywords = family.model_keywords(model)
    if keywords is not None:
        model = checked(model, keywords, at["model"])
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
    corpus: str | Path | Corpus,
    split_path: str | Path | None,
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
    init_from: str | Path | None = None,
    freeze: Sequence[str] | None = None,
    train_ids: Sequence[str] | None = None,
) -> Path:
    """Train the ``role`` model of a split on exactly its training ids; return the checkpoint.

    The holdout pool is never touched, so audits stay valid. ``val_fraction`` > 0 holds out
    that share of the TRAINING pool for validation (and early stopping): those utterances are
    then not trained on, and the checkpoint's ``data.train_ids`` lists what was. Re-running
    with the same arguments resumes an interrupted run. ``corpus`` is a path (read and
    checked here, with ``layout`` and ``pattern``) or a corpus already loaded: an audit
    reads its corpus once and passes it to every model it trains.

    Fine-tuning (``init_from``, else the config's ``[finetune]``) builds the base's model
    again (its config, unless ``[model]`` is given, which must then build the same shapes)
    and loads its weights before the first step; a resumed run carries on from its own
    checkpoint, whose weights replace them. The base may come from any split or corpus.
    Its provenance (:func:`~voxaudit.models.checkpoints.base_provenance`) is kept in the
    checkpoint's metadata as ``base``, the prefixes ``freeze`` (else the config's) names as
    ``freeze``.

    Parameters
    ----------
    kind:
        A key of ``MODEL_KINDS``.
    corpus:
        The corpus the split was made from, or its folder.
    split_path:
        The split file (``voxaudit split``); None with ``train_ids``.
    role:
        ``target`` or ``shadow-K``: whose training pool to train on.
    config:
        The run config: a file or a mapping of its sections.
    out_dir:
        The run folder: ``checkpoint.pt`` and ``history.json``.
    layout, pattern:
        How to read ``corpus`` when it is a folder.
    progress:
        Whether to show progress bars.
    val_fraction:
        The share of the training pool held out for validation.
    cache_dir:
        A feature cache folder (log-mel models only).
    hooks:
        Training hooks (``voxaudit.train.loop``), e.g. defenses.
    init_from:
        A base run folder or checkpoint file to fine-tune; overrides ``[finetune] init_from``.
    freeze:
        Parameter-name prefixes not to train; overrides ``[finetune] freeze``.
    train_ids:
        The ids to train on instead of a split role's pool (one the caller set aside, e.g. a
        built-in base's pretraining pool); ``role`` then only names the model.
    """
    family = model_kind(kind)
    settings = read_run_config(config, kind)
    train_config = settings.train
    base = settings.finetune.init_from if init_from is None else Path(init_from)
    frozen, frozen_at = (
        (settings.finetune.freeze, f"{settings.origin}: [finetune] freeze")
        if freeze is None
        else (tuple(freeze), "freeze")
    )
    base_state: dict[str, Any] = {}
    base_keywords: dict[str, Any] = {}
    provenance: dict[str, Any] = {}
    if base is not None:  # before the corpus is read, so that a wrong base fails in a second
        base_state = read_checkpoint(base)
        base_keywords = _base_keywords(family, kind, base, base_state)
        provenance = base_provenance(base)
    if not isinstance(corpus, Corpus):
        corpus = load_corpus(corpus, layout, pattern=pattern, progress=progress)
    if (split_path is None) == (train_ids is None):
        raise VoxauditError("train_model needs a split file or train_ids, not both")
    split = None
    if split_path is not None:
        split = AuditSplit.load(split_path)
        split.check(corpus)
        train_ids = split.train_ids(role)
    assert train_ids is not None
    unknown = [uid for uid in train_ids if uid not in corpus]
    if unknown:
        raise VoxauditError(f"train_ids: {unknown[0]!r} is not in corpus {corpus.name!r}")
    train_ids, val_ids = carve_validation(train_ids, val_fraction, train_config.seed)
    if train_config.early_stopping_patience is not None and not val_ids:
        raise VoxauditError("early stopping needs a validation share: set val_fraction > 0")
    if not train_ids:
        where = split_path or "train_ids"
        raise VoxauditError(f"{where}: role {role!r} has no training utterances")
    train_utts = [corpus[uid] for uid in train_ids]
    val_utts = [corpus[uid] for uid in val_ids]
    # The initial weights come from the global RNG: seed it, or the same config gives another
    # model depending on what the process did before.
    seed_everything(train_config.seed)
    # The whole pool, so the validation share never changes a classifier's classes.
    from_corpus = family.corpus_keywords(corpus) if family.corpus_keywords else {}
    if base is None:
        keywords = from_corpus | settings.model
    elif settings.model:
        # The base, not the corpus, decides what the corpus would (an ASR model's alphabet):
        # its output layer is what it is.
        decided = {k: v for k, v in base_keywords.items() if k in from_corpus}
        keywords = from_corpus | decided | settings.model
    else:
        keywords = from_corpus | base_keywords
    try:
        model = family.build(train_utts + val_utts, **keywords)
    except TypeError as exc:
        raise VoxauditError(
            f"{settings.origin}: bad [model] settings for kind {kind!r}: {exc}"
        ) from exc
    if base is not None:
        _load_base(model, base, base_state, family.filled, given=bool(settings.model))
    front_end = getattr(model, "front_end", None)
    if not isinstance(front_end, LogMel | WaveformInput):
        raise VoxauditError(
            f"{type(model).__name__} has no LogMel or WaveformInput front_end to make features"
        )
    if isinstance(front_end, WaveformInput):
        if settings.augment:
            raise VoxauditError(
                f"{settings.origin}: [augment]: SpecAugment masks log-mel features, but "
                f"{type(model).__name__} reads raw waveforms"
            )
        cache_dir = None  # its features are the samples: there is nothing to cache
    target_fn = family.target(model)
    if base is not None:
        _check_targets(train_utts + val_utts, target_fn, base)
    if frozen:
        freeze_parameters(model, frozen, where=frozen_at)
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
        "split_level": split.level if split else None,
        "split_seed": split.seed if split else None,
        "val_fraction": val_fraction,
    }
    # Only fine-tuned runs carry these keys: the metadata of other runs, which a resume
    # compares, stays as it was.
    if base is not None:
        metadata["base"] = provenance
    if frozen:
        metadata["freeze"] = list(frozen)
    out_dir = Path(out_dir)
    if settings.augment:
        hooks = [*hooks, SpecAugment(**settings.augment)]
    Trainer(train_config, hooks, progress=progress).fit(
        model, train_set, val_set, out_dir, batch_sampler=sampler, metadata=metadata
    )
    return out_dir / CHECKPOINT


def _base_keywords(
    family: ModelKind, kind: str, base: Path, state: Mapping[str, Any]
) -> dict[str, Any]:
    """The ``[model]`` keywords that build the base's model again; the keys ``build`` takes
    from the training pool are left to it."""
    names = {f"{c.__module__}.{c.__qualname__}": name for name, c in family.classes.items()}
    if state["model_class"] not in names:
        built = ", ".join(c.__name__ for c in family.classes.values()) or "no listed classes"
        raise VoxauditError(
            f"{base}: holds a {state['model_class'].rpartition('.')[2]}, but model kind "
            f"{kind!r} builds {built}"
        )
    keywords = {k: v for k, v in state["model_config"].items() if k not in family.filled}
    name = names[state["model_class"]]
    return keywords if name is None else {"family": name} | keywords


def _load_base(
    model: nn.Module, base: Path, state: Mapping[str, Any], filled: Collection[str], given: bool
) -> None:
    """Load the base's weights into ``model``, refusing a base whose model config differs
    but in :data:`FINETUNE_FREE` keys. ``filled``: the keys the training pool decides;
    ``given``: whether the run's ``[model]`` settings were."""
    ours, theirs = model.config(), state["model_config"]  # type: ignore[operator]
    differing = [
        key
        for key in sorted(set(ours) | set(theirs))
        if key not in FINETUNE_FREE and json_key(ours.get(key)) != json_key(theirs.get(key))
    ]
    if differing:
        pooled = [key for key in differing if key in filled]
        if pooled:
            fix = f"the training pool gives {', '.join(pooled)} here: use one like the base's"
        elif given:
            fix = "leave [model] out to take the base's settings"
        else:
            fix = "fine-tuning loads the base's weights as they are"
        values = "; ".join(
            f"{key} {_brief(theirs.get(key))} in the base, {_brief(ours.get(key))} here"
            for key in differing
        )
        raise VoxauditError(f"{base}: the base's model differs from this run's ({values}): {fix}")
    try:
        model.load_state_dict(state["model_state"])
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[0]
        raise VoxauditError(
            f"{base}: its weights do not fit the model built here ({reason})"
        ) from exc


def _brief(value: Any, width: int = 40) -> str:
    """``repr(value)``, cut to ``width`` characters for a one-line error."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _check_targets(utterances: Sequence[Utterance], target_fn: TargetFn, base: Path) -> None:
    """Make every utterance's training target before training; an error names the first
    the base cannot output (a character outside an ASR base's alphabet, a class it lacks)."""
    for utterance in utterances:
        try:
            target_fn(utterance)
        except (ValueError, KeyError, VoxauditError) as exc:
            raise VoxauditError(
                f"{base}: the base cannot output the target of training utterance "
                f"{utterance.id!r}: {exc}"
            ) from exc
