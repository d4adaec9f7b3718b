"""Character CTC recognizers: a SpeechEncoder and a linear CTC head, greedy and beam decoding.

The CTC prefix beam search is written out here rather than taken from torchaudio: torchaudio is
not a dependency (its wheels pin exact torch versions), and the search, with shallow fusion of
the character n-gram of ``voxaudit.models.lm``, is a few dozen lines.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np
import torch
from torch import nn

from voxaudit.data.features import Batch, LogMel
from voxaudit.data.text import ALPHABET
from voxaudit.models.encoders import EncoderKind, PresetModel, RNNFactory, SpeechEncoder
from voxaudit.models.lm import LMFusion
from voxaudit.models.tokens import CharTokenizer

#: Named sizes; ``CTCModel.from_preset(name)``. Parameter counts are checked by the tests.
CTC_PRESETS: dict[str, dict[str, Any]] = {
    # ~1.1M parameters
    "tiny": {"encoder": "gru", "d_model": 256, "layers": 3, "conv_channels": 32},
    # ~5.4M parameters
    "small": {"encoder": "gru", "d_model": 512, "layers": 4, "conv_channels": 64},
    # ~19M parameters
    "base": {
        "encoder": "conformer",
        "d_model": 256,
        "layers": 12,
        "heads": 4,
        "d_ff": 1024,
        "kernel_size": 15,
        "conv_channels": 128,
    },
}


def ctc_greedy_decode(log_probs: np.ndarray | torch.Tensor, blank: int = 0) -> list[int]:
    """Best path: the argmax of each frame ``[T, V]``, repeats merged, blanks removed."""
    best = np.asarray(torch.as_tensor(log_probs).argmax(dim=-1).cpu())
    keep = np.ones(len(best), dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    return [int(t) for t in best[keep] if t != blank]


def ctc_prefix_beam_search(
    log_probs: np.ndarray | torch.Tensor,
    beam: int = 8,
    blank: int = 0,
    lm: LMFusion | None = None,
) -> list[int]:
    """The most probable labelling found by CTC prefix beam search over ``[T, V]`` log-probs.

    Each prefix carries the probability of the paths that spell it and end in a blank and of
    those that end in its last label (Hannun et al., 2014). Each frame only the ``beam``
    likeliest labels are tried, which makes ``beam=1`` without ``lm`` exactly greedy decoding.
    With ``lm`` (shallow fusion) prefixes are ranked by their CTC log-probability plus the
    weighted language-model log-probability of their characters and a bonus per character,
    and the final choice includes the language model's probability of ending there.
    """
    if beam < 1:
        raise ValueError(f"beam must be at least 1; got {beam}")
    frames = np.asarray(torch.as_tensor(log_probs).detach().cpu(), dtype=np.float64)
    # prefix -> (log p of its paths ending in blank, log p of those ending in its last label)
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}
    # prefix -> its language-model score (weighted log-probability plus length bonus)
    fused: dict[tuple[int, ...], float] = {(): 0.0}

    def extend(prefix: tuple[int, ...], label: int) -> tuple[int, ...]:
        longer = (*prefix, label)
        if lm is not None and longer not in fused:
            fused[longer] = (
                fused[prefix] + lm.weight * lm.lm.log_probs(prefix)[label] + lm.length_bonus
            )
        return longer

    def rank(item: tuple[tuple[int, ...], tuple[float, float]]) -> float:
        return np.logaddexp(*item[1]) + fused.get(item[0], 0.0)

    for frame in frames:
        labels = np.argsort(-frame, kind="stable")[:beam]
        grown: dict[tuple[int, ...], tuple[float, float]] = defaultdict(
            lambda: (-math.inf, -math.inf)
        )
        for prefix, (p_blank, p_label) in beams.items():
            total = np.logaddexp(p_blank, p_label)
            for label in labels.tolist():
                lp = frame[label]
                if label == blank:
                    b, nb = grown[prefix]
                    grown[prefix] = (np.logaddexp(b, total + lp), nb)
                    continue
                longer = extend(prefix, label)
                b, nb = grown[longer]
                if prefix and prefix[-1] == label:
                    # A repeated label starts a new one only after a blank; else it merges.
                    grown[longer] = (b, np.logaddexp(nb, p_blank + lp))
                    b, nb = grown[prefix]
                    grown[prefix] = (b, np.logaddexp(nb, p_label + lp))
                else:
                    grown[longer] = (b, np.logaddexp(nb, total + lp))
        beams = dict(sorted(grown.items(), key=rank, reverse=True)[:beam])
    if lm is None:
        return list(next(iter(beams)))
    # The blank's slot of the language model's distribution is the end of the sentence.
    ended = {p: rank((p, s)) + lm.weight * lm.lm.log_probs(p)[0] for p, s in beams.items()}
    return list(max(ended, key=ended.__getitem__))


class CTCModel(PresetModel):
    """Log-mel front-end, SpeechEncoder (GRU, Conformer or Transformer) and a CTC head.

    The model owns its ``LogMel`` (``front_end``) so waveform gradients flow through it, and its
    tokenizer, whose alphabet is part of ``config()`` and so of checkpoints; it defaults to the
    English ``ALPHABET``, which a config without one (an older checkpoint) gets back.
    ``asr_model_for`` takes it from the training transcripts instead. Training code must compute
    features with ``front_end`` (or an extractor with the same ``params()``).
    """

    PRESETS = CTC_PRESETS

    def __init__(
        self,
        encoder: EncoderKind = "gru",
        n_mels: int = 80,
        d_model: int = 512,
        layers: int = 4,
        heads: int = 4,
        d_ff: int = 1024,
        kernel_size: int = 15,
        conv_channels: int = 64,
        dropout: float = 0.1,
        sample_rate: int = 16000,
        alphabet: str = ALPHABET,
        rnn: RNNFactory | str = nn.GRU,
    ) -> None:
        super().__init__()
        self._keep_config(locals())
        self.tokenizer = CharTokenizer(alphabet)
        self.front_end = LogMel(sample_rate=sample_rate, n_mels=n_mels)
        self.encoder = SpeechEncoder(
            encoder, n_mels, d_model, layers, heads, d_ff, kernel_size, conv_channels, dropout, rnn
        )
        self.head = nn.Linear(d_model, self.tokenizer.ctc_vocab_size)

    def forward_features(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame log-probabilities ``[B, T', V]`` (V = blank + characters) and their lengths."""
        hidden, out_lengths = self.encoder(features, lengths)
        return self.head(hidden).log_softmax(dim=-1), out_lengths

    def utterance_loss(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        targets: torch.Tensor,
        target_lengths: torch.Tensor,
        normalize: bool = False,
    ) -> torch.Tensor:
        """Per-utterance CTC loss ``[B]``, -log p(transcript); per character when ``normalize``.

        Infinite losses (a transcript longer than the frames can spell) become zero, as in
        training, so that one impossible utterance cannot poison a batch.
        """
        log_probs, out_lengths = self.forward_features(features, lengths)
        losses = self._ctc_losses(log_probs, out_lengths, targets, target_lengths)
        return losses / target_lengths.clamp_min(1) if normalize else losses

    def _ctc_losses(
        self,
        log_probs: torch.Tensor,
        out_lengths: torch.Tensor,
        targets: torch.Tensor,
        target_lengths: torch.Tensor,
    ) -> torch.Tensor:
        return nn.functional.ctc_loss(
            log_probs.transpose(0, 1),
            targets,
            out_lengths,
            target_lengths,
            blank=self.tokenizer.blank,
            reduction="none",
            zero_infinity=True,
        )

    def training_loss(self, batch: Batch) -> torch.Tensor:
        """Mean over utterances of the CTC loss per target character (torch's "mean")."""
        if batch.targets is None or batch.target_lengths is None:
            raise ValueError("CTC training needs a batch with sequence targets")
        return self.utterance_loss(
            batch.features, batch.lengths, batch.targets, batch.target_lengths, normalize=True
        ).mean()

    def output_log_probs(self, features: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """Per utterance, frame log-probabilities ``[T'_i, V]`` trimmed to its length."""
        log_probs, out_lengths = self.forward_features(features, lengths)
        return [lp[:n] for lp, n in zip(log_probs, out_lengths.tolist(), strict=True)]

    def decode(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        beam: int = 1,
        lm: LMFusion | None = None,
    ) -> list[str]:
        """Transcripts: greedy for ``beam=1`` without ``lm``, else prefix beam search."""
        return self._transcripts(*self.forward_features(features, lengths), beam, lm)

    def analyze_features(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        targets: torch.Tensor,
        target_lengths: torch.Tensor,
        beam: int = 1,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
        """Losses ``[B]`` of ``targets``, frame log-probs ``[B, T', V]``, lengths, transcripts.

        All from one forward pass; the transcripts are those ``decode`` gives with ``beam``.
        """
        log_probs, out_lengths = self.forward_features(features, lengths)
        losses = self._ctc_losses(log_probs, out_lengths, targets, target_lengths)
        return losses, log_probs, out_lengths, self._transcripts(log_probs, out_lengths, beam)

    def _transcripts(
        self,
        log_probs: torch.Tensor,
        out_lengths: torch.Tensor,
        beam: int,
        lm: LMFusion | None = None,
    ) -> list[str]:
        """Decoded frames ``[B, T', V]``; the batch moves to the CPU at once, not per utterance."""
        blank = self.tokenizer.blank
        frames = log_probs.detach().cpu()
        return [
            self.tokenizer.decode(
                ctc_greedy_decode(lp[:n], blank)
                if beam == 1 and lm is None
                else ctc_prefix_beam_search(lp[:n], beam, blank, lm)
            )
            for lp, n in zip(frames, out_lengths.tolist(), strict=True)
        ]
