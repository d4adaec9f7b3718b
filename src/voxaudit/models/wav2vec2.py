"""A wav2vec2-style CTC recognizer (Hugging Face ``transformers``) trained by voxaudit's loop.

``Wav2Vec2CTC`` is a :class:`~voxaudit.models.ctc.CTCModel` whose encoder is a
``Wav2Vec2ForCTC`` built from a config (random weights, never downloaded): losses, greedy and
beam decoding, checkpoints, ``Recognizer`` and the ASR audits treat it as any CTC model. It
reads raw waveforms, so its ``front_end`` is :class:`WaveformInput` (the samples as one
feature per frame) rather than a ``LogMel``. Train it as ``kind = "asr"`` with
``family = "wav2vec2"`` in ``[model]``; fine-tune it from a base with ``[finetune] init_from``.

The layout is that of wav2vec2-large-lv60 (a layer-normalized feature encoder, pre-LN
Transformer): with an attention mask it makes every utterance's outputs independent of the
padding of its batch, which an audit's answers must be. Parameter names are those of
``Wav2Vec2ForCTC`` (``wav2vec2.feature_extractor...``, ``lm_head``), so ``[finetune] freeze``
takes the usual prefixes, e.g. ``wav2vec2.feature_extractor``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from voxaudit.data.features import Count
from voxaudit.data.text import ALPHABET
from voxaudit.models.adapters import require
from voxaudit.models.ctc import CTCModel
from voxaudit.models.encoders import FeatureNorm, lengths_to_mask
from voxaudit.models.tokens import CharTokenizer

#: wav2vec2's convolutional feature encoder: 400-sample receptive field, 320-sample hop.
_CONV_KERNEL = (10, 3, 3, 3, 3, 2, 2)
_CONV_STRIDE = (5, 2, 2, 2, 2, 2, 2)

#: Named sizes; ``Wav2Vec2CTC.from_preset(name)``. "base" has wav2vec2-base's shapes.
WAV2VEC2_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "hidden_size": 32,
        "layers": 2,
        "heads": 2,
        "intermediate_size": 64,
        "conv_dim": (32,) * 7,
        "pos_conv_kernel": 16,
        "pos_conv_groups": 2,
    },
    "small": {
        "hidden_size": 256,
        "layers": 6,
        "heads": 4,
        "intermediate_size": 1024,
        "conv_dim": (256,) * 7,
        "pos_conv_kernel": 64,
        "pos_conv_groups": 16,
    },
    "base": {
        "hidden_size": 768,
        "layers": 12,
        "heads": 12,
        "intermediate_size": 3072,
        "conv_dim": (512,) * 7,
        "pos_conv_kernel": 128,
        "pos_conv_groups": 16,
    },
}


class WaveformInput(nn.Module):
    """Waveform ``[B, N]`` to "features" ``[B, N, 1]``: the samples themselves, one per frame.

    The front-end of models that read raw audio, with the interface of ``LogMel`` that training
    and ``Recognizer`` use (``sample_rate``, ``frame_lengths``, ``params``).
    """

    def __init__(self, sample_rate: int = 16000) -> None:
        super().__init__()
        self.sample_rate = sample_rate

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """The samples as float32 with a trailing feature axis; gradients pass through."""
        return waveform.float().unsqueeze(-1)

    def frame_lengths(self, num_samples: Count) -> Count:
        """One frame per sample."""
        return num_samples

    def params(self) -> dict[str, Any]:
        """Everything that determines the output, as ``LogMel.params`` gives it."""
        return {"kind": "waveform", "sample_rate": self.sample_rate}


class Wav2Vec2CTC(CTCModel):
    """wav2vec2 (convolutional feature encoder, Transformer) with a character CTC head.

    Needs the ``transformers`` package (``pip install 'voxaudit[pretrained]'``). The defaults
    are wav2vec2-base's shapes; ``from_preset("tiny")`` is small enough for tests.
    ``dropout`` sets every dropout of the model (hidden, attention, activation, feature
    projection, before the head). LayerDrop and wav2vec2's own masking of time steps are off:
    the first skips layers at random (a loss that depends on it cannot resume exactly), and
    voxaudit's augmentations are configured in the run config.

    Parameters
    ----------
    hidden_size, layers, heads, intermediate_size:
        The Transformer's width, depth, attention heads and feed-forward width.
    conv_dim, conv_kernel, conv_stride:
        Channels, kernel widths and strides of the feature encoder's convolutions.
    pos_conv_kernel, pos_conv_groups:
        Width and groups of the convolutional position embedding.
    dropout:
        The probability of every dropout.
    sample_rate:
        The rate of the waveforms it reads.
    alphabet:
        The characters it spells (``asr_model_for`` takes them from the transcripts).
    """

    PRESETS = WAV2VEC2_PRESETS

    def __init__(
        self,
        hidden_size: int = 768,
        layers: int = 12,
        heads: int = 12,
        intermediate_size: int = 3072,
        conv_dim: tuple[int, ...] = (512,) * 7,
        conv_kernel: tuple[int, ...] = _CONV_KERNEL,
        conv_stride: tuple[int, ...] = _CONV_STRIDE,
        pos_conv_kernel: int = 128,
        pos_conv_groups: int = 16,
        dropout: float = 0.1,
        sample_rate: int = 16000,
        alphabet: str = ALPHABET,
    ) -> None:
        # CTCModel's constructor builds a log-mel encoder; this model only shares its losses
        # and decoding, which need ``forward_features`` and ``tokenizer`` alone.
        super(CTCModel, self).__init__()
        conv_dim, conv_kernel, conv_stride = tuple(conv_dim), tuple(conv_kernel), tuple(conv_stride)
        self._keep_config(locals())
        transformers = require("transformers")
        self.tokenizer = CharTokenizer(alphabet)
        self.front_end = WaveformInput(sample_rate)
        self.normalize = FeatureNorm(eps=1e-7)  # as Wav2Vec2FeatureExtractor(do_normalize=True)
        config = transformers.Wav2Vec2Config(
            vocab_size=self.tokenizer.ctc_vocab_size,
            pad_token_id=self.tokenizer.blank,
            hidden_size=hidden_size,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=intermediate_size,
            conv_dim=conv_dim,
            conv_kernel=conv_kernel,
            conv_stride=conv_stride,
            num_conv_pos_embeddings=pos_conv_kernel,
            num_conv_pos_embedding_groups=pos_conv_groups,
            feat_extract_norm="layer",
            do_stable_layer_norm=True,
            hidden_dropout=dropout,
            attention_dropout=dropout,
            activation_dropout=dropout,
            feat_proj_dropout=dropout,
            final_dropout=dropout,
            layerdrop=0.0,
            mask_time_prob=0.0,  # also leaves out the mask's embedding, a parameter never used
        )
        # Built as Wav2Vec2ForCTC (its weight initialization) and kept by its parts, so the
        # parameter names are Hugging Face's.
        built = transformers.Wav2Vec2ForCTC(config)
        self.wav2vec2 = built.wav2vec2
        self.dropout = built.dropout
        self.lm_head = built.lm_head

    def forward_features(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame log-probabilities ``[B, T', V]`` (V = blank + characters) and their lengths.

        ``features`` are the padded samples ``[B, N, 1]`` (``front_end``'s output) and
        ``lengths`` the samples of each utterance.
        """
        samples = self.normalize(features, lengths)[..., 0]
        mask = lengths_to_mask(lengths, samples.shape[1]).long()
        hidden = self.wav2vec2(samples, attention_mask=mask).last_hidden_state
        logits = self.lm_head(self.dropout(hidden))
        out_lengths = self.wav2vec2._get_feat_extract_output_lengths(lengths).long()
        return logits.log_softmax(dim=-1), out_lengths
