"""The error types voxaudit raises for bad input; the CLI turns them into one clear line."""

from __future__ import annotations


class VoxauditError(ValueError):
    """Bad input or state: the message names the file, line or field at fault."""


class LayoutError(VoxauditError):
    """A path holds no corpus layout voxaudit understands."""


class CorpusError(VoxauditError):
    """A corpus cannot be used as a whole (empty, or bad files under ``strict``)."""
