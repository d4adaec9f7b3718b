"""Resemblyzer's pretrained GE2E LSTM speaker encoder as a ``SpeakerEncoder``.

The weights (``pretrained.pt``) ship inside the ``resemblyzer`` wheel. Each utterance goes
through Resemblyzer's own preprocessing (volume normalization, voice-activity trimming of long
silences) and is embedded as the normalized mean of 1.6 s windows, as the model was trained.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import types
import warnings
from typing import Any

import numpy as np
import torch

from voxaudit.data.audio import resample
from voxaudit.errors import VoxauditError
from voxaudit.models.adapters import require
from voxaudit.models.base import Waveforms

RATE = 16000  # the encoder's own sample rate


def _import_resemblyzer() -> Any:
    """Import resemblyzer, whose webrtcvad may still ask pkg_resources for its version."""
    try:
        importlib.import_module("webrtcvad")
    except ModuleNotFoundError as exc:
        # A missing webrtcvad (or resemblyzer) is reported by require() below.
        if exc.name == "pkg_resources":
            _import_without_pkg_resources("webrtcvad")
    with warnings.catch_warnings():
        # Its import of the deprecated scipy.ndimage.morphology namespace is not ours to fix.
        warnings.simplefilter("ignore", DeprecationWarning)
        return require("resemblyzer")


def _import_without_pkg_resources(module: str) -> None:
    """Import a module that only asks pkg_resources for a distribution's version."""
    # webrtcvad 2.0.10 reads its own version that way, and setuptools no longer ships
    # pkg_resources from version 82 on: answer that one question for the length of the import.
    shim = types.ModuleType("pkg_resources")
    shim.get_distribution = lambda name: types.SimpleNamespace(  # type: ignore[attr-defined]
        version=importlib.metadata.version(name)
    )
    sys.modules["pkg_resources"] = shim
    try:
        importlib.import_module(module)
    finally:
        del sys.modules["pkg_resources"]


class ResemblyzerEncoder:
    """Pretrained GE2E speaker embeddings (256-d, unit norm) of waveforms at ``sample_rate``."""

    def __init__(self, sample_rate: int = 16000, device: str | torch.device = "cpu") -> None:
        resemblyzer = _import_resemblyzer()
        self.sample_rate = sample_rate
        self._preprocess = resemblyzer.preprocess_wav
        self._encoder = resemblyzer.VoiceEncoder(device, verbose=False)

    def embed(self, waveforms: Waveforms) -> np.ndarray:
        """``[batch, 256]`` L2-normalized embeddings."""
        rows = [self._embed_one(i, w) for i, w in enumerate(waveforms)]
        return np.stack(rows) if rows else np.zeros((0, 256), np.float32)

    def _embed_one(self, index: int, waveform: np.ndarray) -> np.ndarray:
        samples = resample(np.asarray(waveform, dtype=np.float32), self.sample_rate, RATE)
        if not np.any(samples):
            raise VoxauditError(f"waveform {index} is empty or silent: nothing to embed")
        trimmed = self._preprocess(samples)
        # Trimming keeps nothing of a clip too short or quiet for the voice detector; embed
        # the whole clip then rather than nothing.
        embedding = self._encoder.embed_utterance(trimmed if trimmed.size else samples)
        if not np.all(np.isfinite(embedding)):
            raise VoxauditError(f"waveform {index} gave no usable speaker embedding")
        return embedding.astype(np.float32)
