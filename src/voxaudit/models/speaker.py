"""Speaker embedding models scored by cosine similarity, and equal error rate on trials.

Two families: an LSTM trained with the generalized end-to-end (GE2E) softmax loss (Wan et al.
2018), and a TDNN x-vector (Snyder et al. 2018) trained with an additive angular margin
(AAM) softmax over the training speakers. Both own their log-mel front-end, so ``Encoder``
turns either into a waveform-level ``SpeakerEncoder``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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
from voxaudit.models.classifier import mean_std_pool
from voxaudit.models.encoders import recurrent_layer

#: LSTM cells GE2E can use: Opacus' ``dplstm`` gives per-sample gradients for DP-SGD.
GE2E_CELLS = ("lstm", "dplstm")


def _mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """Bool ``[B, steps]``: True on real frames."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


def _mean_normalize(features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Subtract each utterance's mean over its real frames and zero the padding."""
    mask = _mask(lengths, features.shape[1]).unsqueeze(-1).to(features.dtype)
    mean = (features * mask).sum(1, keepdim=True) / lengths.clamp_min(1)[:, None, None]
    return (features - mean) * mask


class GE2ELoss(nn.Module):
    """Softmax GE2E loss over ``[N speakers, M utterances, D]`` embeddings.

    Each utterance is scored against every speaker centroid as ``w * cos + b`` (``w`` kept
    positive); its own speaker's centroid leaves the utterance out, which keeps training stable.
    """

    def __init__(self, init_w: float = 10.0, init_b: float = -5.0) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(float(init_w)))
        self.b = nn.Parameter(torch.tensor(float(init_b)))

    def similarity(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Scaled cosine similarities ``[N, M, N]`` of each utterance to each centroid."""
        n, m, _ = embeddings.shape
        if n < 2 or m < 2:
            raise VoxauditError(f"GE2E needs at least 2 speakers x 2 utterances; got {n} x {m}")
        total = embeddings.sum(1)  # [N, D]
        centroids = F.normalize(total / m, dim=-1)
        exclusive = F.normalize((total[:, None] - embeddings) / (m - 1), dim=-1)  # [N, M, D]
        unit = F.normalize(embeddings, dim=-1)
        cos = torch.einsum("nmd,kd->nmk", unit, centroids)
        own = (unit * exclusive).sum(-1)  # [N, M]
        same = torch.eye(n, dtype=torch.bool, device=embeddings.device)[:, None, :]
        cos = torch.where(same, own[:, :, None], cos)
        return self.w.clamp_min(1e-6) * cos + self.b

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Mean over utterances of ``-S(own) + logsumexp_k S(k)``."""
        scores = self.similarity(embeddings)
        n, m, _ = scores.shape
        targets = torch.arange(n, device=scores.device).repeat_interleave(m)
        return F.cross_entropy(scores.reshape(n * m, n), targets)


def speaker_major_shape(targets: torch.Tensor | None) -> tuple[int, int]:
    """``(N, M)`` of a batch of N speakers x M utterances, ordered speaker by speaker."""
    if targets is None or targets.dim() != 1 or len(targets) == 0:
        raise VoxauditError("a GE2E batch needs one speaker label per utterance")
    m = int((targets == targets[0]).sum())
    n = len(targets) // m
    grid = targets.view(n, m) if n * m == len(targets) else None
    if grid is None or bool((grid != grid[:, :1]).any()) or len(torch.unique(grid[:, 0])) != n:
        raise VoxauditError(
            "a GE2E batch must hold N speakers x M utterances each, grouped speaker by speaker "
            f"(as a speaker batch sampler gives); got labels {targets.tolist()}"
        )
    return n, m


class GE2EEncoder(nn.Module):
    """LSTM speaker encoder trained with the GE2E loss: last hidden state, projected, L2-normed."""

    def __init__(
        self,
        n_mels: int = 40,
        hidden: int = 256,
        layers: int = 3,
        embedding_dim: int = 256,
        sample_rate: int = 16000,
        cell: str = "lstm",
    ) -> None:
        super().__init__()
        if cell not in GE2E_CELLS:
            raise VoxauditError(f"GE2E needs an LSTM cell, one of {', '.join(GE2E_CELLS)}")
        self.cell = cell
        self.n_mels = n_mels
        self.hidden = hidden
        self.layers = layers
        self.embedding_dim = embedding_dim
        self.front_end = LogMel(sample_rate=sample_rate, n_mels=n_mels)
        self.rnn = recurrent_layer(cell)(n_mels, hidden, num_layers=layers, batch_first=True)
        self.projection = nn.Linear(hidden, embedding_dim)
        self.loss = GE2ELoss()

    @property
    def sample_rate(self) -> int:
        return self.front_end.sample_rate

    def forward_features(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings ``[B, D]`` of padded log-mels ``[B, T, n_mels]``."""
        normalized = _mean_normalize(features, lengths)
        # A forward-only LSTM's output at an utterance's last real frame is its final state, as
        # packing would give it. On padded input the CPU LSTM trains far faster (10x for a batch
        # of 40 x 400 frames, one thread, forward and backward).
        outputs, _ = self.rnn(normalized)
        last = (lengths.clamp(1, outputs.shape[1]) - 1).to(outputs.device)
        final = outputs[torch.arange(len(outputs), device=outputs.device), last]
        return F.normalize(self.projection(final), dim=-1)

    def training_loss(self, batch: Batch) -> torch.Tensor:
        """GE2E loss of a batch of N speakers x M utterances (speaker-major order)."""
        n, m = speaker_major_shape(batch.targets)
        embeddings = self.forward_features(batch.features, batch.lengths)
        return self.loss(embeddings.view(n, m, -1))

    def config(self) -> dict[str, Any]:
        """Constructor arguments, to rebuild the model from a checkpoint."""
        return {
            "n_mels": self.n_mels,
            "hidden": self.hidden,
            "layers": self.layers,
            "embedding_dim": self.embedding_dim,
            "sample_rate": self.sample_rate,
            "cell": self.cell,
        }


class AAMSoftmax(nn.Module):
    """Additive angular margin softmax (ArcFace): the target logit is ``s * cos(theta + m)``."""

    def __init__(
        self, embedding_dim: int, n_classes: int, margin: float = 0.2, scale: float = 30.0
    ) -> None:
        super().__init__()
        self.margin = margin
        self.scale = scale
        self.weight = nn.Parameter(torch.empty(n_classes, embedding_dim))
        nn.init.xavier_uniform_(self.weight)

    def logits(self, embeddings: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Scaled cosines to each class, with the margin added to the target class's angle."""
        cos = F.linear(F.normalize(embeddings, dim=-1), F.normalize(self.weight, dim=-1))
        cos = cos.clamp(-1 + 1e-7, 1 - 1e-7)  # acos' gradient is infinite at +-1
        target = F.one_hot(targets, cos.shape[1]).bool()
        theta = torch.acos(cos)
        # Past pi - m, cos(theta + m) would rise again and reward a wrong embedding; the
        # linear extension keeps the target logit decreasing in theta (as in ArcFace).
        limit = math.pi - self.margin
        margined = torch.where(
            theta <= limit,
            torch.cos(theta + self.margin),
            cos - math.sin(self.margin) * self.margin,
        )
        return self.scale * torch.where(target, margined, cos)

    def forward(self, embeddings: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the margined logits."""
        return F.cross_entropy(self.logits(embeddings, targets), targets)


class XVectorEncoder(nn.Module):
    """TDNN x-vector: dilated frame layers, masked mean+std pooling, an embedding layer."""

    #: Frame layers as (kernel, dilation): a 15-frame context, as in Snyder et al. 2018.
    FRAME_LAYERS = ((5, 1), (3, 2), (3, 3), (1, 1), (1, 1))

    def __init__(
        self,
        n_speakers: int,
        n_mels: int = 30,
        channels: int = 512,
        embedding_dim: int = 256,
        sample_rate: int = 16000,
        margin: float = 0.2,
        scale: float = 30.0,
    ) -> None:
        super().__init__()
        self.n_speakers = n_speakers
        self.n_mels = n_mels
        self.channels = channels
        self.embedding_dim = embedding_dim
        self.front_end = LogMel(sample_rate=sample_rate, n_mels=n_mels)
        pooled_channels = 3 * channels  # the wide last frame layer (1500 for 512) of the paper
        sizes = [n_mels] + [channels] * (len(self.FRAME_LAYERS) - 1) + [pooled_channels]
        self.frames = nn.ModuleList(
            nn.Conv1d(c_in, c_out, k, dilation=d, padding=d * (k - 1) // 2)
            for (k, d), c_in, c_out in zip(self.FRAME_LAYERS, sizes[:-1], sizes[1:], strict=True)
        )
        # LayerNorm per frame, not the paper's BatchNorm: no statistics over padding or the
        # batch, so training is padding-invariant too, and Opacus supports it.
        self.norms = nn.ModuleList(nn.LayerNorm(c) for c in sizes[1:])
        self.segment = nn.Linear(2 * pooled_channels, embedding_dim)
        self.head = AAMSoftmax(embedding_dim, n_speakers, margin, scale)

    @property
    def sample_rate(self) -> int:
        return self.front_end.sample_rate

    def _embed(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Embeddings before normalization ``[B, D]``."""
        mask = _mask(lengths, features.shape[1])
        x = _mean_normalize(features, lengths)  # [B, T, F]
        for conv, norm in zip(self.frames, self.norms, strict=True):
            x = norm(torch.relu(conv(x.transpose(1, 2))).transpose(1, 2))
            # Zero the padding after every layer, so frames near an utterance's end see the
            # same zeros whether or not the batch pads it: outputs do not depend on padding.
            x = x * mask.unsqueeze(-1)
        return self.segment(mean_std_pool(x, mask))

    def forward_features(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings ``[B, D]`` of padded log-mels ``[B, T, n_mels]``."""
        return F.normalize(self._embed(features, lengths), dim=-1)

    def training_loss(self, batch: Batch) -> torch.Tensor:
        """AAM-softmax cross-entropy over the training speakers."""
        targets = batch.targets
        if targets is None or targets.dim() != 1:
            raise VoxauditError("x-vector training needs one speaker index per utterance")
        if targets.numel() and not 0 <= int(targets.min()) <= int(targets.max()) < self.n_speakers:
            raise VoxauditError(
                f"speaker indices must lie in [0, {self.n_speakers}); got {targets.tolist()}"
            )
        return self.head(self._embed(batch.features, batch.lengths), targets)

    def config(self) -> dict[str, Any]:
        """Constructor arguments, to rebuild the model from a checkpoint."""
        return {
            "n_speakers": self.n_speakers,
            "n_mels": self.n_mels,
            "channels": self.channels,
            "embedding_dim": self.embedding_dim,
            "sample_rate": self.sample_rate,
            "margin": self.head.margin,
            "scale": self.head.scale,
        }


SpeakerModel = GE2EEncoder | XVectorEncoder


class Encoder:
    """A speaker model as a waveform ``SpeakerEncoder``: batched, eval mode, numpy out."""

    def __init__(
        self, model: SpeakerModel, device: torch.device | str | None = None, batch_size: int = 32
    ) -> None:
        if batch_size < 1:
            raise VoxauditError(f"batch_size must be at least 1; got {batch_size}")
        self.model = model
        self.device = torch.device(device) if device else next(model.parameters()).device
        self.batch_size = batch_size
        self.sample_rate = model.sample_rate

    @classmethod
    def load(
        cls, path: str | Path, device: str | torch.device = "cpu", batch_size: int = 32
    ) -> Encoder:
        """Wrap the speaker model saved in a checkpoint (file or run directory)."""
        return cls(load_model(path, device, (GE2EEncoder, XVectorEncoder)), batch_size=batch_size)

    def embed(self, waveforms: Waveforms) -> np.ndarray:
        """``[batch, dim]`` L2-normalized embeddings of whole utterances."""
        for i, w in enumerate(waveforms):
            if np.ndim(w) != 1 or np.size(w) == 0:
                raise VoxauditError(f"waveform {i} is not a non-empty mono (1-D) array")
        was_training = self.model.training
        self.model.eval().to(self.device)
        try:
            with torch.no_grad():
                parts = [
                    self._embed_batch(waveforms[i : i + self.batch_size])
                    for i in range(0, len(waveforms), self.batch_size)
                ]
        finally:
            self.model.train(was_training)
        if not parts:
            return np.zeros((0, self.model.embedding_dim), np.float32)
        return np.concatenate(parts)

    def _embed_batch(self, waveforms: Waveforms) -> np.ndarray:
        tensors = [torch.as_tensor(np.asarray(w, dtype=np.float32)) for w in waveforms]
        samples = torch.tensor([len(t) for t in tensors])
        padded = nn.utils.rnn.pad_sequence(tensors, batch_first=True).to(self.device)
        features = self.model.front_end(padded)
        lengths = self.model.front_end.frame_lengths(samples).to(self.device)
        return self.model.forward_features(features, lengths).cpu().numpy()


# -- verification metrics -----------------------------------------------------------------


def equal_error_rate(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """``(EER, threshold)``: where false accepts equal false rejects (labels: 1 = same speaker).

    The EER is interpolated linearly between the two ROC points around the crossing; the
    threshold is the score at or above which trials are accepted at that crossing.
    """
    from sklearn.metrics import roc_curve

    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise VoxauditError(f"need 1-d scores and labels alike; got {scores.shape}, {labels.shape}")
    if labels.all() or not labels.any():
        raise VoxauditError("EER needs both target (same-speaker) and non-target trials")
    fpr, tpr, thresholds = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1.0 - tpr
    gap = fpr - fnr  # rises from -1 (accept nothing) to +1 (accept everything)
    i = int(np.argmax(gap >= -1e-12))  # a tolerance: 1 - 2/3 and 1/3 differ in the last bit
    t = -gap[i - 1] / (gap[i] - gap[i - 1])
    eer = fpr[i - 1] + t * (fpr[i] - fpr[i - 1])
    return float(eer), float(thresholds[i])


def cosine_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two ``[n, dim]`` arrays."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return (a * b).sum(-1) / np.maximum(norms, 1e-12)


def verification_trials(
    embeddings: np.ndarray, speakers: list[str] | np.ndarray, n_trials: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(cosine scores, labels)`` of random trials, half same-speaker (label 1), half not.

    A target trial pairs two different utterances of one speaker, a non-target trial two
    utterances of different speakers; pairs are drawn independently (repeats possible).
    """
    embeddings = np.asarray(embeddings)
    speakers = np.asarray(speakers)
    if len(embeddings) != len(speakers):
        raise VoxauditError(f"{len(embeddings)} embeddings but {len(speakers)} speaker labels")
    names, ids = np.unique(speakers, return_inverse=True)
    members = [np.flatnonzero(ids == k) for k in range(len(names))]
    repeated = np.concatenate([g for g in members if len(g) >= 2] or [np.zeros(0, int)])
    if len(names) < 2 or repeated.size == 0:
        raise VoxauditError(
            "trials need at least two speakers and one speaker with two or more utterances"
        )
    rng = np.random.default_rng(seed)
    n_target = n_trials // 2
    first = np.empty(n_trials, dtype=int)
    second = np.empty(n_trials, dtype=int)
    first[:n_target] = rng.choice(repeated, n_target)
    for t in range(n_target):
        group = members[ids[first[t]]]
        others = group[group != first[t]]
        second[t] = others[rng.integers(len(others))]
    first[n_target:] = rng.integers(len(speakers), size=n_trials - n_target)
    for t in range(n_target, n_trials):
        others = np.flatnonzero(ids != ids[first[t]])
        second[t] = others[rng.integers(len(others))]
    labels = np.r_[np.ones(n_target, dtype=int), np.zeros(n_trials - n_target, dtype=int)]
    return cosine_scores(embeddings[first], embeddings[second]), labels


SPEAKER_FAMILIES = ("ge2e", "xvector")


def speaker_encoder_for(
    utterances: Sequence[Utterance], family: str = "ge2e", **kwargs: Any
) -> GE2EEncoder | XVectorEncoder:
    """A speaker encoder to train on ``utterances``; ``speakers`` lists its training speakers."""
    speakers = sorted({u.speaker for u in utterances})
    if family == "ge2e":
        model: GE2EEncoder | XVectorEncoder = GE2EEncoder(**kwargs)
    elif family == "xvector":
        model = XVectorEncoder(len(speakers), **kwargs)
    else:
        raise VoxauditError(
            f"unknown speaker family {family!r}; use one of: {', '.join(SPEAKER_FAMILIES)}"
        )
    # Training targets only: the speaker index of each utterance (not part of config()).
    model.speakers = speakers
    return model


def speaker_targets(model: nn.Module) -> Callable[[Utterance], int]:
    """The target function of a model made by :func:`speaker_encoder_for`."""
    index = {speaker: i for i, speaker in enumerate(model.speakers)}
    return lambda utterance: index[utterance.speaker]
