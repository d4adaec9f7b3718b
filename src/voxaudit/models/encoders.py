"""Acoustic encoders shared by both ASR families: normalization, 4x subsampling, GRU or attention.

Every module takes lengths and keeps padded frames from reaching real ones (masks before each
convolution, key padding masks in attention, packed sequences in the GRU), so an utterance's
outputs do not depend on what it is batched with. Normalization is LayerNorm throughout, never
BatchNorm, for the same reason and because per-sample gradients (DP-SGD) forbid batch statistics.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, Literal, TypeVar

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from voxaudit.data.features import Count, LogMel
from voxaudit.errors import VoxauditError

EncoderKind = Literal["gru", "conformer", "transformer"]

#: Builds the recurrent layer stack with ``nn.GRU``'s keyword arguments (``nn.GRU`` itself, or a
#: drop-in such as Opacus' ``DPGRU`` for per-sample gradients).
RNNFactory = Callable[..., nn.Module]
#: Recurrent cells by name; the ``dp`` ones are Opacus' drop-ins with per-sample gradients.
CELLS = ("gru", "lstm", "dpgru", "dplstm")


def recurrent_layer(cell: str) -> type[nn.Module]:
    """The recurrent layer class; the Opacus ones (for DP-SGD) are imported only when asked for."""
    if cell not in CELLS:
        raise VoxauditError(f"unknown cell {cell!r}; use one of: {', '.join(CELLS)}")
    if cell == "gru":
        return nn.GRU
    if cell == "lstm":
        return nn.LSTM
    try:
        from opacus.layers import DPGRU, DPLSTM
    except ImportError as exc:
        raise VoxauditError(f"cell {cell!r} needs Opacus: pip install opacus") from exc
    return DPGRU if cell == "dpgru" else DPLSTM


def parameter_count(model: nn.Module) -> int:
    """Trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Bool ``[B, max_len]``: True on real steps, False on padding."""
    steps = torch.arange(max_len, device=lengths.device)
    return steps[None, :] < lengths[:, None]


def sinusoidal_positions(
    length: int, dim: int, device: torch.device | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """The Transformer's sine/cosine position encodings ``[length, dim]``."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freqs = torch.exp(
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * freqs)
    table[:, 1::2] = torch.cos(position * freqs[: dim // 2])
    return table.to(dtype or torch.float32)


class FeatureNorm(nn.Module):
    """Per-utterance mean and variance normalization over real frames; padding becomes zero."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Normalize ``[B, T, F]`` features per utterance and feature over its first frames."""
        mask = lengths_to_mask(lengths, features.shape[1])[..., None].to(features.dtype)
        count = lengths.clamp_min(1)[:, None, None].to(features.dtype)
        mean = (features * mask).sum(dim=1, keepdim=True) / count
        var = ((features - mean).square() * mask).sum(dim=1, keepdim=True) / count
        # Multiplying by the mask (not indexing) zeroes padding whatever LogMel left there.
        return (features - mean) * torch.rsqrt(var + self.eps) * mask


def _halved(lengths: Count) -> Count:
    """Frames out of a kernel-3, stride-2, padding-1 convolution over ``lengths`` frames."""
    return (lengths - 1) // 2 + 1


class ConvSubsampling(nn.Module):
    """Two stride-2 3x3 conv2d layers over (time, mel): 4x fewer frames, projected to d_model."""

    def __init__(self, n_mels: int, d_model: int, channels: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(1, channels, kernel_size=3, stride=2, padding=1),
                nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1),
            ]
        )
        self.out = nn.Linear(channels * self.output_lengths(n_mels), d_model)

    @staticmethod
    def output_lengths(lengths: Count) -> Count:
        """Frames out for frames in (an int or a tensor of them)."""
        return _halved(_halved(lengths))

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T, F]`` to ``[B, T', d_model]`` and the output lengths."""
        x = features.unsqueeze(1)
        for conv in self.convs:
            x = torch.relu(conv(x))
            lengths = _halved(lengths)
            # Zero the frames past each utterance's end: the next layer's kernel reaches them.
            x = x * lengths_to_mask(lengths, x.shape[2])[:, None, :, None].to(x.dtype)
        batch, channels, steps, freqs = x.shape
        return self.out(x.transpose(1, 2).reshape(batch, steps, channels * freqs)), lengths


class GRUEncoder(nn.Module):
    """A bidirectional GRU stack over packed sequences; ``d_model`` in and out."""

    def __init__(
        self, d_model: int, layers: int, dropout: float = 0.1, rnn: RNNFactory | str = nn.GRU
    ) -> None:
        super().__init__()
        if d_model % 2:
            raise ValueError(f"a bidirectional encoder needs an even d_model; got {d_model}")
        if isinstance(rnn, str):
            # By name, so that a config file can ask for DP-SGD's layer: {rnn = "dpgru"}.
            if rnn not in ("gru", "dpgru"):
                raise VoxauditError(f"rnn: the GRU encoder takes 'gru' or 'dpgru'; got {rnn!r}")
            rnn = recurrent_layer(rnn)
        self.rnn = rnn(
            input_size=d_model,
            hidden_size=d_model // 2,
            num_layers=layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, T, d_model]`` to ``[B, T, d_model]``; padded steps come out as zeros."""
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return self.dropout(out)


class FeedForward(nn.Module):
    """Pre-norm position-wise feed-forward: LayerNorm, Linear, SiLU, Linear."""

    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(d_model),
            nn.Linear(d_model, d_ff),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(d_ff, d_model),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch (the caller adds it)."""
        return self.net(x)


class Attention(nn.Module):
    """Pre-norm multi-head attention of ``x`` over ``memory`` (itself when None)."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        key_padding: torch.Tensor,
        memory: torch.Tensor | None = None,
        causal: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The residual branch; ``key_padding`` is True on keys to ignore, ``causal`` [S, S]."""
        query = self.norm(x)
        keys = query if memory is None else memory
        out, _ = self.attn(
            query, keys, keys, key_padding_mask=key_padding, attn_mask=causal, need_weights=False
        )
        return self.dropout(out)


class ConvModule(nn.Module):
    """Conformer convolution: pointwise + GLU, depthwise over time, LayerNorm, SiLU, pointwise."""

    def __init__(self, d_model: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"the depthwise kernel must be odd to keep lengths; got {kernel_size}")
        self.norm = nn.LayerNorm(d_model)
        self.pointwise_in = nn.Conv1d(d_model, 2 * d_model, kernel_size=1)
        self.depthwise = nn.Conv1d(
            d_model, d_model, kernel_size, padding=kernel_size // 2, groups=d_model
        )
        self.depthwise_norm = nn.LayerNorm(d_model)
        self.pointwise_out = nn.Conv1d(d_model, d_model, kernel_size=1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The residual branch for ``[B, T, d_model]``; ``mask`` [B, T] is True on real frames."""
        y = nn.functional.glu(self.pointwise_in(self.norm(x).transpose(1, 2)), dim=1)
        y = self.depthwise(y * mask[:, None, :].to(y.dtype))  # padding must not leak in
        y = nn.functional.silu(self.depthwise_norm(y.transpose(1, 2)))
        return self.dropout(self.pointwise_out(y.transpose(1, 2)).transpose(1, 2))


class ConformerBlock(nn.Module):
    """Half-step FFN, self-attention, convolution module, half-step FFN, LayerNorm."""

    def __init__(
        self, d_model: int, heads: int, d_ff: int, kernel_size: int, dropout: float
    ) -> None:
        super().__init__()
        self.ff1 = FeedForward(d_model, d_ff, dropout)
        self.attn = Attention(d_model, heads, dropout)
        self.conv = ConvModule(d_model, kernel_size, dropout)
        self.ff2 = FeedForward(d_model, d_ff, dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One block over ``[B, T, d_model]``."""
        x = x + 0.5 * self.ff1(x)
        x = x + self.attn(x, ~mask)
        x = x + self.conv(x, mask)
        return self.norm(x + 0.5 * self.ff2(x))


class TransformerBlock(nn.Module):
    """Pre-norm Transformer encoder layer: self-attention then FFN."""

    def __init__(self, d_model: int, heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.attn = Attention(d_model, heads, dropout)
        self.ff = FeedForward(d_model, d_ff, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One layer over ``[B, T, d_model]``."""
        x = x + self.attn(x, ~mask)
        return x + self.ff(x)


class AttentionEncoder(nn.Module):
    """Sinusoidal positions, then a stack of Conformer or Transformer blocks, then LayerNorm."""

    def __init__(self, d_model: int, blocks: list[nn.Module], dropout: float) -> None:
        super().__init__()
        self.d_model = d_model
        self.blocks = nn.ModuleList(blocks)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, T, d_model]`` to ``[B, T, d_model]``."""
        mask = lengths_to_mask(lengths, x.shape[1])
        positions = sinusoidal_positions(x.shape[1], self.d_model, x.device, x.dtype)
        # Scaled as in ESPnet so that the position signal does not swamp the input at init.
        x = self.dropout(x * math.sqrt(self.d_model) + positions)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)


class ConformerEncoder(AttentionEncoder):
    """A small Conformer encoder (Gulati et al., 2020) with absolute sinusoidal positions."""

    def __init__(
        self,
        d_model: int,
        layers: int,
        heads: int,
        d_ff: int,
        kernel_size: int = 15,
        dropout: float = 0.1,
    ) -> None:
        blocks = [ConformerBlock(d_model, heads, d_ff, kernel_size, dropout) for _ in range(layers)]
        super().__init__(d_model, blocks, dropout)


class TransformerEncoder(AttentionEncoder):
    """A pre-norm Transformer encoder with sinusoidal positions."""

    def __init__(
        self, d_model: int, layers: int, heads: int, d_ff: int, dropout: float = 0.1
    ) -> None:
        blocks = [TransformerBlock(d_model, heads, d_ff, dropout) for _ in range(layers)]
        super().__init__(d_model, blocks, dropout)


class SpeechEncoder(nn.Module):
    """Log-mel features to encoder states: FeatureNorm, ConvSubsampling, then GRU or attention."""

    def __init__(
        self,
        kind: EncoderKind = "gru",
        n_mels: int = 80,
        d_model: int = 256,
        layers: int = 4,
        heads: int = 4,
        d_ff: int = 1024,
        kernel_size: int = 15,
        conv_channels: int = 64,
        dropout: float = 0.1,
        rnn: RNNFactory | str = nn.GRU,
    ) -> None:
        super().__init__()
        self.norm = FeatureNorm()
        self.subsample = ConvSubsampling(n_mels, d_model, conv_channels)
        self.encoder: nn.Module
        if kind == "gru":
            self.encoder = GRUEncoder(d_model, layers, dropout, rnn)
        elif kind == "conformer":
            self.encoder = ConformerEncoder(d_model, layers, heads, d_ff, kernel_size, dropout)
        elif kind == "transformer":
            self.encoder = TransformerEncoder(d_model, layers, heads, d_ff, dropout)
        else:
            raise ValueError(f"encoder must be 'gru', 'conformer' or 'transformer'; got {kind!r}")

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T, n_mels]`` to states ``[B, T', d_model]`` and their lengths."""
        x, lengths = self.subsample(self.norm(features, lengths), lengths)
        return self.encoder(x, lengths), lengths


P = TypeVar("P", bound="PresetModel")


class PresetModel(nn.Module):
    """Named sizes, JSON-able config and the front-end's rate, shared by the ASR families."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    _config: dict[str, Any]
    front_end: LogMel

    @classmethod
    def from_preset(cls: type[P], name: str, **overrides: Any) -> P:
        """A model of a named size from ``PRESETS``, with any argument overridden."""
        if name not in cls.PRESETS:
            raise VoxauditError(
                f"unknown {cls.__name__} preset {name!r}; choose from {sorted(cls.PRESETS)}"
            )
        return cls(**{**cls.PRESETS[name], **overrides})

    @property
    def sample_rate(self) -> int:
        """The waveform rate the front-end expects."""
        return self.front_end.sample_rate

    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments."""
        return dict(self._config)

    def _keep_config(self, arguments: dict[str, Any]) -> None:
        """Record the constructor's arguments (its ``locals()``) as the config."""
        # A factory ``rnn`` is left out (it is no JSON); a cell name is kept, so a checkpoint
        # of a DP-SGD model (its Opacus layer names its weights its own way) reloads.
        skip = {"self", "__class__"} | (
            {"rnn"} if not isinstance(arguments.get("rnn"), str) else set()
        )
        self._config = {k: v for k, v in arguments.items() if k not in skip}
