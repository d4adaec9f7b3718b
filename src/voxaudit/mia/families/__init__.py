"""The audit families: one registry that the audits, the defense sweep and the CLI all use.

A family is a :class:`voxaudit.mia.core.Family`; :func:`register` adds a user's own.
"""

from __future__ import annotations

from collections.abc import Callable

from voxaudit.errors import VoxauditError
from voxaudit.mia.core import Family


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


def register(family: Family) -> None:
    """Add a user's family (a :class:`Family` subclass instance) under ``family.name``."""
    if not isinstance(family, Family):
        raise VoxauditError(f"{family!r} is not a voxaudit.mia.core.Family")
    if family.name in _FAMILIES:
        raise VoxauditError(f"a family named {family.name!r} is registered already")
    _FAMILIES[family.name] = lambda: family
