"""Attention encoder-decoder recognizers: SpeechEncoder, Transformer decoder, optional joint CTC.

Characters are predicted one at a time after a start token, until an end token. Training is
teacher-forced cross-entropy with label smoothing, plus ``ctc_weight`` times the CTC loss of a
head on the encoder (Watanabe et al., 2017), which speeds up learning the alignment.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from voxaudit.data.features import Batch, LogMel
from voxaudit.data.text import ALPHABET
from voxaudit.models.encoders import (
    Attention,
    EncoderKind,
    FeedForward,
    PresetModel,
    RNNFactory,
    SpeechEncoder,
    lengths_to_mask,
    sinusoidal_positions,
)
from voxaudit.models.tokens import CharTokenizer

#: Named sizes; ``AttentionModel.from_preset(name)``. Parameter counts are checked by the tests.
ATTENTION_PRESETS: dict[str, dict[str, Any]] = {
    # ~1.3M parameters
    "tiny": {
        "encoder": "conformer",
        "d_model": 128,
        "layers": 4,
        "decoder_layers": 1,
        "heads": 4,
        "d_ff": 256,
        "conv_channels": 32,
    },
    # ~6M parameters
    "small": {
        "encoder": "conformer",
        "d_model": 192,
        "layers": 6,
        "decoder_layers": 1,
        "heads": 4,
        "d_ff": 768,
        "conv_channels": 64,
    },
    # ~25M parameters
    "base": {
        "encoder": "conformer",
        "d_model": 256,
        "layers": 12,
        "decoder_layers": 6,
        "heads": 4,
        "d_ff": 1024,
        "conv_channels": 128,
    },
}


class DecoderBlock(nn.Module):
    """Pre-norm Transformer decoder layer: causal self-attention, cross-attention, FFN."""

    def __init__(self, d_model: int, heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = Attention(d_model, heads, dropout)
        self.cross_attn = Attention(d_model, heads, dropout)
        self.ff = FeedForward(d_model, d_ff, dropout)

    def forward(
        self,
        x: torch.Tensor,
        padding: torch.Tensor,
        causal: torch.Tensor,
        memory: torch.Tensor,
        memory_padding: torch.Tensor,
    ) -> torch.Tensor:
        """One layer over tokens ``[B, S, d_model]`` attending to ``memory`` ``[B, T, d_model]``."""
        x = x + self.self_attn(x, padding, causal=causal)
        x = x + self.cross_attn(x, memory_padding, memory=memory)
        return x + self.ff(x)


class TransformerDecoder(nn.Module):
    """Token embeddings with sinusoidal positions, decoder blocks, LayerNorm, output logits."""

    def __init__(
        self, vocab_size: int, d_model: int, layers: int, heads: int, d_ff: int, dropout: float
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.embed = nn.Embedding(vocab_size, d_model)
        # Unit-norm rows once scaled by sqrt(d_model) in forward, as in the Transformer.
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)
        self.blocks = nn.ModuleList(
            [DecoderBlock(d_model, heads, d_ff, dropout) for _ in range(layers)]
        )
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, vocab_size)

    def forward(
        self,
        tokens: torch.Tensor,
        token_lengths: torch.Tensor,
        memory: torch.Tensor,
        memory_lengths: torch.Tensor,
    ) -> torch.Tensor:
        """Logits ``[B, S, V]`` for the token after each prefix of ``tokens`` ``[B, S]``."""
        steps = tokens.shape[1]
        positions = sinusoidal_positions(steps, self.d_model, tokens.device, memory.dtype)
        x = self.dropout(self.embed(tokens) * math.sqrt(self.d_model) + positions)
        causal = torch.ones(steps, steps, dtype=torch.bool, device=tokens.device).triu(1)
        padding = ~lengths_to_mask(token_lengths, steps)
        memory_padding = ~lengths_to_mask(memory_lengths, memory.shape[1])
        for block in self.blocks:
            x = block(x, padding, causal, memory, memory_padding)
        return self.out(self.norm(x))


class AttentionModel(PresetModel):
    """Log-mel front-end, SpeechEncoder, Transformer decoder and, if ``ctc_weight``, a CTC head.

    Like ``CTCModel`` it owns its ``LogMel`` (``front_end``) and tokenizer, whose alphabet
    (English ``ALPHABET`` by default) is part of ``config()``. ``utterance_loss`` is
    the decoder's -log p(transcript) (no smoothing, no CTC term): what an audit should score.
    """

    PRESETS = ATTENTION_PRESETS

    def __init__(
        self,
        encoder: EncoderKind = "conformer",
        n_mels: int = 80,
        d_model: int = 192,
        layers: int = 6,
        decoder_layers: int = 1,
        heads: int = 4,
        d_ff: int = 768,
        kernel_size: int = 15,
        conv_channels: int = 64,
        dropout: float = 0.1,
        label_smoothing: float = 0.1,
        ctc_weight: float = 0.3,
        sample_rate: int = 16000,
        alphabet: str = ALPHABET,
        rnn: RNNFactory | str = nn.GRU,
    ) -> None:
        super().__init__()
        if not 0.0 <= ctc_weight < 1.0:
            raise ValueError(f"ctc_weight must be in [0, 1); got {ctc_weight}")
        self._keep_config(locals())
        self.label_smoothing = label_smoothing
        self.ctc_weight = ctc_weight
        self.tokenizer = CharTokenizer(alphabet)
        self.front_end = LogMel(sample_rate=sample_rate, n_mels=n_mels)
        self.encoder = SpeechEncoder(
            encoder, n_mels, d_model, layers, heads, d_ff, kernel_size, conv_channels, dropout, rnn
        )
        self.decoder = TransformerDecoder(
            self.tokenizer.vocab_size, d_model, decoder_layers, heads, d_ff, dropout
        )
        self.ctc_head = nn.Linear(d_model, self.tokenizer.ctc_vocab_size) if ctc_weight else None

    def _teacher_forcing(
        self, targets: torch.Tensor, target_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decoder inputs (sos + transcript), outputs (transcript + eos), and their lengths."""
        batch = targets.shape[0]
        column = targets.new_full((batch, 1), self.tokenizer.sos)
        inputs = torch.cat([column, targets], dim=1)
        outputs = torch.cat([targets, torch.zeros_like(column)], dim=1)
        outputs[torch.arange(batch, device=targets.device), target_lengths] = self.tokenizer.eos
        return inputs, outputs, target_lengths + 1

    def forward_features(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        targets: torch.Tensor | None = None,
        target_lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced decoder logits ``[B, S + 1, V]`` and their lengths (S + 1, with eos).

        Without targets the model's own greedy hypotheses are scored, so the logits are those
        that greedy decoding saw at each step.
        """
        memory, memory_lengths = self.encoder(features, lengths)
        if targets is None or target_lengths is None:
            targets, target_lengths = self._greedy(memory, memory_lengths)
        inputs, _, steps = self._teacher_forcing(targets, target_lengths)
        return self.decoder(inputs, steps, memory, memory_lengths), steps

    @torch.no_grad()
    def _greedy(
        self, memory: torch.Tensor, memory_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy hypotheses (zero-padded ``[B, S]``, no sos or eos) and their lengths.

        Each utterance stops at eos or after as many characters as it has encoder frames, the
        most that CTC could align: a bound that keeps an untrained decoder from running on.
        The search records no gradients: its output is discrete.
        """
        batch = memory.shape[0]
        sos, eos = self.tokenizer.sos, self.tokenizer.eos
        tokens = memory_lengths.new_full((batch, 1), sos)
        lengths = memory_lengths.clone()
        done = torch.zeros(batch, dtype=torch.bool, device=memory.device)
        for step in range(int(memory_lengths.max()) + 1):
            steps = torch.full_like(memory_lengths, step + 1)
            best = self.decoder(tokens, steps, memory, memory_lengths)[:, -1].argmax(dim=-1)
            best = torch.where(step >= memory_lengths, torch.full_like(best, eos), best)
            ending = ~done & (best == eos)
            lengths = torch.where(ending, torch.full_like(lengths, step), lengths)
            done = done | ending
            tokens = torch.cat([tokens, best[:, None]], dim=1)
            if bool(done.all()):
                break
        hypotheses = tokens[:, 1:] * lengths_to_mask(lengths, tokens.shape[1] - 1)
        return hypotheses[:, : int(lengths.max())], lengths

    def _token_nll(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        targets: torch.Tensor,
        target_lengths: torch.Tensor,
        label_smoothing: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-token cross-entropy ``[B, S + 1]`` (zero on padding), steps, encoder output."""
        memory, memory_lengths = self.encoder(features, lengths)
        inputs, outputs, steps = self._teacher_forcing(targets, target_lengths)
        logits = self.decoder(inputs, steps, memory, memory_lengths)
        nll = nn.functional.cross_entropy(
            logits.transpose(1, 2), outputs, reduction="none", label_smoothing=label_smoothing
        )
        return nll * lengths_to_mask(steps, nll.shape[1]), steps, memory, memory_lengths

    def utterance_loss(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        targets: torch.Tensor,
        target_lengths: torch.Tensor,
        normalize: bool = False,
    ) -> torch.Tensor:
        """Per-utterance -log p(transcript + eos) ``[B]``; per token when ``normalize``."""
        nll, steps, _, _ = self._token_nll(features, lengths, targets, target_lengths, 0.0)
        losses = nll.sum(dim=1)
        return losses / steps if normalize else losses

    def training_loss(self, batch: Batch) -> torch.Tensor:
        """Label-smoothed cross-entropy per token of the batch, mixed with CTC by ctc_weight."""
        if batch.targets is None or batch.target_lengths is None:
            raise ValueError("attention training needs a batch with sequence targets")
        nll, steps, memory, memory_lengths = self._token_nll(
            batch.features, batch.lengths, batch.targets, batch.target_lengths, self.label_smoothing
        )
        loss = nll.sum() / steps.sum()
        if self.ctc_head is None:
            return loss
        ctc = nn.functional.ctc_loss(
            self.ctc_head(memory).log_softmax(dim=-1).transpose(0, 1),
            batch.targets,
            memory_lengths,
            batch.target_lengths,
            blank=self.tokenizer.blank,
            zero_infinity=True,
        )
        return (1.0 - self.ctc_weight) * loss + self.ctc_weight * ctc

    def output_log_probs(self, features: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """Per utterance, the token log-probabilities ``[S_i + 1, V]`` of its greedy hypothesis."""
        logits, steps = self.forward_features(features, lengths)
        log_probs = logits.log_softmax(dim=-1)
        return [lp[:n] for lp, n in zip(log_probs, steps.tolist(), strict=True)]

    def decode(
        self, features: torch.Tensor, lengths: torch.Tensor, beam: int = 1, lm: None = None
    ) -> list[str]:
        """Greedy autoregressive transcripts (the only search here: ``beam`` must be 1, and
        there is no language-model fusion: ``lm`` must be None)."""
        _check_greedy(beam)
        if lm is not None:
            raise ValueError("attention models take no language model (CTC models only)")
        return self._texts(*self._greedy(*self.encoder(features, lengths)))

    def analyze_features(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        targets: torch.Tensor,
        target_lengths: torch.Tensor,
        beam: int = 1,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
        """Losses ``[B]`` of ``targets``, step log-probs ``[B, S + 1, V]``, steps, transcripts.

        One encoder pass serves the teacher-forced decoder and greedy decoding. Teacher forcing
        makes the steps those of the targets, so the distributions of two inputs with the same
        transcript line up step by step (those of ``output_log_probs`` follow each input's own
        hypothesis).
        """
        _check_greedy(beam)
        memory, memory_lengths = self.encoder(features, lengths)
        inputs, outputs, steps = self._teacher_forcing(targets, target_lengths)
        log_probs = self.decoder(inputs, steps, memory, memory_lengths).log_softmax(dim=-1)
        nll = -log_probs.gather(2, outputs[:, :, None])[:, :, 0]
        losses = (nll * lengths_to_mask(steps, nll.shape[1])).sum(dim=1)
        return losses, log_probs, steps, self._texts(*self._greedy(memory, memory_lengths))

    def _texts(self, hypotheses: torch.Tensor, hyp_lengths: torch.Tensor) -> list[str]:
        return [
            self.tokenizer.decode(h[:n].tolist())
            for h, n in zip(hypotheses, hyp_lengths.tolist(), strict=True)
        ]


def _check_greedy(beam: int) -> None:
    if beam != 1:
        raise ValueError(f"attention models decode greedily only; got beam={beam}")
