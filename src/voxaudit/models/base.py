"""What training and audits need from a model: small protocols, all over waveforms.

Audits and adapters speak waveforms (mono float32 numpy arrays at ``sample_rate``), so a built-in
model, a pocketsphinx decoder and a Hugging Face checkpoint are interchangeable. Built-in models
carry their own front-end (``voxaudit.data.features.LogMel``), which is what makes gradients with
respect to the input waveform (white-box attacks) possible.

The training loop sees something else: :class:`Trainable`, a torch module that turns a padded
feature batch (``voxaudit.data.features.Batch``) into a scalar loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from voxaudit.data.features import Batch

Waveforms = Sequence[np.ndarray]


@runtime_checkable
class Trainable(Protocol):
    """A model the training loop can fit.

    ``training_loss`` returns the mean loss of a batch (a 0-d tensor with grad); ``config``
    returns the JSON-able constructor arguments, saved in checkpoints to rebuild the model.
    ``forward_features`` maps padded features ``[B, T, F]`` and lengths to the model's outputs
    (logits), which hooks such as distillation and adversarial regularization read.
    Built-in models also carry their feature extractor as ``front_end`` (a ``LogMel``), which
    ``voxaudit.train.run`` makes the training features with; the loop itself does not need it.
    """

    def training_loss(self, batch: Batch) -> torch.Tensor: ...

    def forward_features(self, features: torch.Tensor, lengths: torch.Tensor) -> Any: ...

    def config(self) -> dict[str, Any]: ...


@runtime_checkable
class SpeechRecognizer(Protocol):
    """ASR: transcripts (black box), scores and losses (grey box), input gradients (white box)."""

    sample_rate: int

    def transcribe(self, waveforms: Waveforms) -> list[str]: ...

    def log_probs(self, waveforms: Waveforms) -> list[np.ndarray]:
        """Per utterance, output log-probabilities ``[steps, vocabulary]`` (frames or tokens)."""
        ...

    def utterance_loss(self, waveforms: Waveforms, transcripts: Sequence[str]) -> np.ndarray:
        """Per-utterance training loss (CTC or cross-entropy) given reference transcripts."""
        ...

    def input_gradients(self, waveforms: Waveforms, transcripts: Sequence[str]) -> list[np.ndarray]:
        """d(utterance loss) / d(waveform), one array per utterance, same length as the input."""
        ...


@runtime_checkable
class SpeakerEncoder(Protocol):
    """Speaker recognition: one embedding per utterance, compared by cosine similarity."""

    sample_rate: int

    def embed(self, waveforms: Waveforms) -> np.ndarray:
        """``[batch, dim]`` embeddings, L2-normalized."""
        ...


@runtime_checkable
class UtteranceClassifier(Protocol):
    """Speaker identification or spoken-word recognition with class probabilities."""

    sample_rate: int
    classes: list[str]

    def predict_proba(self, waveforms: Waveforms) -> np.ndarray:
        """``[batch, n_classes]`` probabilities."""
        ...

    def utterance_loss(self, waveforms: Waveforms, labels: Sequence[str]) -> np.ndarray: ...
