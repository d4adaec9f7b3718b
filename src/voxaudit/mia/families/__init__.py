"""The audit families: one registry that the audits, the defense sweep and the CLI all use.

A family is a :class:`voxaudit.mia.core.Family`; :func:`register` adds a user's own.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voxaudit.errors import VoxauditError
from voxaudit.mia.core import AuditedModel, Family


def _asr() -> Family:
    from voxaudit.mia.families.asr import AsrFamily

    return AsrFamily()


def _classifier() -> Family:
    from voxaudit.mia.families.classifier import ClassifierFamily

    return ClassifierFamily()


def _speaker() -> Family:
    from voxaudit.mia.families.speaker import SpeakerFamily

    return SpeakerFamily()


# Built lazily: a family imports its feature extractors, which import torch models.
_FAMILIES: dict[str, Callable[[], Family]] = {
    "asr": _asr,
    "classifier": _classifier,
    "speaker": _speaker,
}


def names() -> tuple[str, ...]:
    """The registered families' names."""
    return tuple(_FAMILIES)


def get(name: str) -> Family:
    """The family registered as ``name``; an unknown name is an error listing the known ones."""
    if name not in _FAMILIES:
        raise VoxauditError(f"unknown model family {name!r}; known: {', '.join(_FAMILIES)}")
    return _FAMILIES[name]()


def audit_options(name: str, options: Any, where: str) -> dict[str, Any]:
    """``[audit]`` options of a config file checked against the fields of family ``name``'s
    audit config, naming ``where`` (file and section) on a wrong key or type.

    Checked as they are read, before anything trains. ``threat`` is no option: it is the
    config's own top-level key.
    """
    from voxaudit.config import checked, field_types

    types = field_types(get(name).config_type)
    return checked(options, {key: kind for key, kind in types.items() if key != "threat"}, where)


def register(family: Family) -> None:
    """Add a user's family (a :class:`Family` subclass instance) under ``family.name``."""
    if not isinstance(family, Family):
        raise VoxauditError(f"{family!r} is not a voxaudit.mia.core.Family")
    if family.name in _FAMILIES:
        raise VoxauditError(f"a family named {family.name!r} is registered already")
    _FAMILIES[family.name] = lambda: family


#: Pretrained models that ship inside their PyPI wheels: name -> (family, builder path, label).
NAMED_MODELS = {
    "pocketsphinx": ("asr", "voxaudit.models.adapters.pocketsphinx:PocketSphinxRecognizer",
                     "pocketsphinx (bundled en-us models)"),
    "resemblyzer": ("speaker", "voxaudit.models.adapters.resemblyzer:ResemblyzerEncoder",
                    "resemblyzer (pretrained GE2E)"),
}  # fmt: skip


def resolve_model(
    family: str,
    spec: str | Path,
    role: str = "target",
    device: str = "auto",
    label: str | None = None,
) -> AuditedModel:
    """The model ``spec`` names, as an audited model of ``family`` in ``role``.

    ``spec`` is one of: a pretrained model shipped in a wheel (``pocketsphinx``,
    ``resemblyzer``); a ``voxaudit train`` run folder (its recorded role is not enforced, and
    its recorded training ids are kept); a local Hugging Face CTC folder (asr, a folder with
    ``config.json``); or ``module.path:factory``, a function of the user's that takes no
    argument and returns the model (an object with the family's protocol methods, e.g. a
    ``voxaudit.TorchClassifier``, or an :class:`AuditedModel`).
    """
    text = str(spec)
    if text in NAMED_MODELS:
        named_family, builder, source = NAMED_MODELS[text]
        if named_family != family:
            raise VoxauditError(f"{text} is a {named_family} model, not a {family} model")
        return AuditedModel(role, source, _import(builder)(), label=label)
    path = Path(text)
    if path.exists():
        if (path / "config.json").is_file():
            if family != "asr":
                raise VoxauditError(f"{path}: a Hugging Face folder is audited as asr only")
            from voxaudit.models.adapters.huggingface import HFCTCRecognizer
            from voxaudit.models.checkpoints import resolve_device

            return AuditedModel(
                role, str(path), HFCTCRecognizer(path, device=resolve_device(device))
            )
        return get(family).load(path, "null", device).as_role(role)
    if ":" in text and not text.startswith(("/", ".")):
        made = _import(text)()
        if isinstance(made, AuditedModel):
            return made.as_role(role)
        return AuditedModel(role, text, made, label=label)
    raise VoxauditError(
        f"{text}: no such model folder, named model ({', '.join(NAMED_MODELS)}) or "
        "module.path:factory"
    )


def _import(dotted: str) -> Callable[[], Any]:
    """The callable at ``module.path:name``; a clear error when it cannot be imported."""
    module_name, _, name = dotted.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise VoxauditError(f"{dotted}: cannot import it ({exc})") from exc
    if not callable(found):
        raise VoxauditError(f"{dotted}: not a callable that makes a model")
    return found
