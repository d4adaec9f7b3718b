"""Utterance classifier for speaker identification or spoken-word recognition.

One network serves both tasks; ``label`` names what its classes are (an utterance's speaker, its
transcript, e.g. the digit words of FSDD, or any column the corpus keeps, e.g. a manifest's
``class`` or the ``{label}`` field of a folder pattern).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from voxaudit.data.corpus import Utterance
from voxaudit.data.features import Batch, LogMel
from voxaudit.errors import VoxauditError
from voxaudit.models.base import Waveforms
from voxaudit.models.checkpoints import load_model
from voxaudit.models.encoders import recurrent_layer

LABELS: dict[str, Callable[[Utterance], str]] = {
    "speaker": lambda u: u.speaker,
    "transcript": lambda u: u.transcript,
}


@dataclass(frozen=True)
class ColumnLabel:
    """An utterance's value in one of its ``columns`` (a manifest column, a pattern field)."""

    column: str

    def __call__(self, utterance: Utterance) -> str:
        try:
            return utterance.columns[self.column]
        except KeyError:
            available = ", ".join(sorted(utterance.columns)) or "none"
            raise VoxauditError(
                f"unknown label {self.column!r}: utterance {utterance.id!r} has no column "
                f"{self.column!r} (its columns: {available}; or use {' or '.join(LABELS)})"
            ) from None


def label_function(name: str) -> Callable[[Utterance], str]:
    """The function giving an utterance's label of kind ``name``.

    Parameters
    ----------
    name : ``"speaker"``, ``"transcript"``, or any other name: that column of each utterance
        (``Utterance.columns``); an utterance without it is a :class:`VoxauditError` when its
        label is asked for.
    """
    if name in LABELS:
        return LABELS[name]
    if not name:
        raise VoxauditError(f"empty label; use {', '.join(LABELS)} or a column name")
    return ColumnLabel(name)


def masked_normalize(features: torch.Tensor, mask: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-utterance, per-band mean and variance normalization over real frames; padding -> 0."""
    weights = mask.unsqueeze(-1).to(features.dtype)
    count = weights.sum(dim=1, keepdim=True)
    mean = (features * weights).sum(dim=1, keepdim=True) / count
    var = ((features - mean).square() * weights).sum(dim=1, keepdim=True) / count
    return (features - mean) / torch.sqrt(var + eps) * weights


def mean_std_pool(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``[B, T, D]`` to ``[B, 2D]``: mean and standard deviation over real frames."""
    weights = mask.unsqueeze(-1).to(x.dtype)
    count = weights.sum(dim=1)
    mean = (x * weights).sum(dim=1) / count
    var = ((x - mean.unsqueeze(1)).square() * weights).sum(dim=1) / count
    return torch.cat([mean, torch.sqrt(var + eps)], dim=-1)


class UtteranceClassifierNet(nn.Module):
    """Log-mel front-end, strided conv, bidirectional GRU (or LSTM), mean+std pooling, linear head.

    For DP-SGD, ``cell="dpgru"`` or ``"dplstm"`` builds Opacus' per-sample-gradient layers into
    the model, so its config (and checkpoints) rebuild the same layers.
    """

    def __init__(
        self,
        n_classes: int,
        n_mels: int = 80,
        hidden: int = 128,
        dropout: float = 0.1,
        sample_rate: int = 16000,
        *,
        classes: Sequence[str] | None = None,
        label: str = "speaker",
        cell: str = "gru",
    ) -> None:
        super().__init__()
        if n_classes < 2:
            raise VoxauditError(f"a classifier needs at least 2 classes; got {n_classes}")
        if classes is not None and len(classes) != n_classes:
            raise VoxauditError(f"{len(classes)} class names for {n_classes} classes")
        rnn = recurrent_layer(cell)
        label_function(label)
        self.n_classes = n_classes
        self.hidden = hidden
        self.classes = (
            [str(c) for c in classes] if classes is not None else [str(i) for i in range(n_classes)]
        )
        self.label = label
        self.cell = cell
        self.label_smoothing = 0.0  # a training setting: the trainer sets it from TrainConfig
        self.front_end = LogMel(sample_rate=sample_rate, n_mels=n_mels)
        self.conv = nn.Conv1d(n_mels, hidden, kernel_size=5, stride=2, padding=2)
        # LayerNorm, not BatchNorm: no statistics over padding, and Opacus supports it.
        self.norm = nn.LayerNorm(hidden)
        self.rnn = rnn(hidden, hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(4 * hidden, n_classes)
        self._index = {c: i for i, c in enumerate(self.classes)}

    @property
    def sample_rate(self) -> int:
        return self.front_end.sample_rate

    def forward_features(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, n_classes]`` of padded log-mel features ``[B, T, n_mels]``."""
        steps = torch.arange(features.shape[1], device=features.device)
        x = masked_normalize(features, steps[None, :] < lengths[:, None])
        x = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        x = self.norm(x)
        lengths = (lengths - 1) // 2 + 1  # frames after the stride-2 convolution
        # Packing keeps padding out of the backward direction, so batching changes nothing.
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.rnn(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        steps = torch.arange(out.shape[1], device=out.device)
        pooled = mean_std_pool(out, steps[None, :] < lengths.to(out.device)[:, None])
        return self.head(self.dropout(pooled))

    def loss_from_outputs(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Mean cross-entropy of logits against the batch's class targets."""
        if batch.targets is None:
            raise VoxauditError("a training batch needs class targets")
        return F.cross_entropy(outputs.float(), batch.targets, label_smoothing=self.label_smoothing)

    def training_loss(self, batch: Batch) -> torch.Tensor:
        """Mean cross-entropy (with label smoothing when set) of a batch."""
        return self.loss_from_outputs(self.forward_features(batch.features, batch.lengths), batch)

    def class_index(self, label: str) -> int:
        """Index of the class named ``label``."""
        try:
            return self._index[label]
        except KeyError:
            raise VoxauditError(
                f"{label!r} is not one of the classifier's {self.n_classes} classes"
            ) from None

    def target(self, utterance: Utterance) -> int:
        """The class index of an utterance, by this classifier's label."""
        return self.class_index(label_function(self.label)(utterance))

    def config(self) -> dict[str, Any]:
        """Constructor arguments, for checkpoints."""
        return {
            "n_classes": self.n_classes,
            "n_mels": self.front_end.n_mels,
            "hidden": self.hidden,
            "dropout": self.dropout.p,
            "sample_rate": self.sample_rate,
            "classes": list(self.classes),
            "label": self.label,
            "cell": self.cell,
        }


def classifier_for(
    utterances: Sequence[Utterance], label: str = "speaker", **kwargs: Any
) -> UtteranceClassifierNet:
    """A classifier whose classes are the sorted labels found in ``utterances``."""
    label_of = label_function(label)
    labels = {u.id: label_of(u) for u in utterances}
    unlabelled = [uid for uid, value in labels.items() if not value]
    if unlabelled:
        raise VoxauditError(
            f"{len(unlabelled)} utterance(s) have no {label}, e.g. {unlabelled[0]!r}"
        )
    classes = sorted(set(labels.values()))
    return UtteranceClassifierNet(len(classes), classes=classes, label=label, **kwargs)


class SpokenClassifier:
    """A trained :class:`UtteranceClassifierNet` behind the waveform ``UtteranceClassifier``."""

    def __init__(self, model: UtteranceClassifierNet, batch_size: int = 16) -> None:
        self.model = model.eval()
        self.sample_rate = model.sample_rate
        self.classes = list(model.classes)
        self.batch_size = batch_size

    @classmethod
    def load(
        cls, path: str | Path, device: str | torch.device = "cpu", batch_size: int = 16
    ) -> SpokenClassifier:
        """Wrap the classifier saved in a checkpoint (file or run directory)."""
        return cls(load_model(path, device, UtteranceClassifierNet), batch_size)

    def predict_proba(self, waveforms: Waveforms) -> np.ndarray:
        """``[batch, n_classes]`` class probabilities."""
        return torch.softmax(self._logits(waveforms), dim=-1).numpy()

    def utterance_loss(self, waveforms: Waveforms, labels: Sequence[str]) -> np.ndarray:
        """Cross-entropy of each utterance against its label (no label smoothing)."""
        if len(labels) != len(waveforms):
            raise VoxauditError(f"{len(waveforms)} waveforms but {len(labels)} labels")
        targets = torch.tensor([self.model.class_index(str(label)) for label in labels])
        logits = self._logits(waveforms)
        return F.cross_entropy(logits, targets, reduction="none").numpy()

    def _logits(self, waveforms: Waveforms) -> torch.Tensor:
        """Float32 logits on the CPU, computed in batches on the model's device."""
        device = next(self.model.parameters()).device
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(waveforms), self.batch_size):
                features, lengths = self._features(waveforms[start : start + self.batch_size])
                logits = self.model.forward_features(features.to(device), lengths.to(device))
                chunks.append(logits.float().cpu())
        if not chunks:
            return torch.empty(0, self.model.n_classes)
        return torch.cat(chunks)

    def _features(self, waveforms: Waveforms) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded log-mel features of a few waveforms, and their frame counts."""
        arrays = [np.asarray(w, dtype=np.float32) for w in waveforms]
        if any(a.ndim != 1 or a.size == 0 for a in arrays):
            raise VoxauditError("waveforms must be non-empty mono (1-D) arrays")
        sizes = torch.tensor([a.size for a in arrays])
        padded = torch.zeros(len(arrays), int(sizes.max()))
        for row, a in enumerate(arrays):
            padded[row, : a.size] = torch.from_numpy(a)
        front_end = self.model.front_end
        # Zero padding is what the unbatched STFT pads with, so real frames come out the same.
        features = front_end(padded.to(front_end.window.device))
        lengths = front_end.frame_lengths(sizes)
        return features[:, : int(lengths.max())], lengths
