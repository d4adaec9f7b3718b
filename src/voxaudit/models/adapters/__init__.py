"""Adapters that put real pretrained models behind the waveform protocols, never downloading.

``pocketsphinx`` (CMU Sphinx US English, shipped in its wheel) is a black-box recognizer,
``resemblyzer`` (a pretrained GE2E LSTM, shipped in its wheel) a speaker encoder, and
``huggingface`` loads wav2vec2-style CTC models and Whisper from a local directory. Each
imports its package only when built, so ``import voxaudit`` stays light.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from voxaudit.errors import VoxauditError


def require(module: str) -> ModuleType:
    """Import an adapter's optional package, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise VoxauditError(
            f"this adapter needs the {module!r} package ({exc}); "
            "install it with: pip install 'voxaudit[pretrained]'"
        ) from exc
