"""Tiny models the tests build themselves (never downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def tiny_wav2vec2(path: Path, letters: str, seed: int = 0) -> Path:
    """A tiny randomly initialized wav2vec2 CTC model with a character tokenizer, saved to
    ``path`` as a Hugging Face folder."""
    import transformers as tf

    path.mkdir(parents=True, exist_ok=True)
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{c: i + 3 for i, c in enumerate(letters)}}
    (path / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = tf.Wav2Vec2CTCTokenizer(
        str(path / "vocab.json"), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|"
    )
    extractor = tf.Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, do_normalize=True, return_attention_mask=False
    )
    tf.Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(path)
    config = tf.Wav2Vec2Config(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16),
        conv_stride=(5, 4),
        conv_kernel=(10, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    tf.Wav2Vec2ForCTC(config).save_pretrained(path)
    return path
