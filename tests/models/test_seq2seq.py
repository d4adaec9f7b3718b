"""Attention encoder-decoder models: teacher forcing, masks, greedy decoding, presets, overfit."""

from __future__ import annotations

import pytest
import torch

from voxaudit.data.features import collate
from voxaudit.data.synth import synthesize_corpus_in_memory
from voxaudit.models.base import Trainable
from voxaudit.models.encoders import ConvSubsampling, parameter_count
from voxaudit.models.seq2seq import ATTENTION_PRESETS, AttentionModel

TINY = {
    "encoder": "transformer",
    "d_model": 128,
    "layers": 2,
    "decoder_layers": 1,
    "d_ff": 256,
    "conv_channels": 16,
    "dropout": 0.0,
}


def _batch(model: AttentionModel, frames: list[int], texts: list[str]):
    return collate([torch.randn(n, 80) for n in frames], [model.tokenizer.encode(t) for t in texts])


def test_teacher_forced_logits_cover_transcript_and_eos() -> None:
    model = AttentionModel(**TINY).eval()
    batch = _batch(model, [50, 80], ["hi", "hello there"])
    logits, steps = model.forward_features(
        batch.features, batch.lengths, batch.targets, batch.target_lengths
    )
    assert logits.shape == (2, 12, model.tokenizer.vocab_size)
    assert steps.tolist() == [3, 12]


@pytest.mark.parametrize("encoder", ["conformer", "gru"])
def test_logits_do_not_depend_on_batch_padding(encoder: str) -> None:
    model = AttentionModel(**{**TINY, "encoder": encoder}).eval()
    batch = _batch(model, [43, 90], ["abc", "a longer one"])
    together, _ = model.forward_features(
        batch.features, batch.lengths, batch.targets, batch.target_lengths
    )
    alone, _ = model.forward_features(
        batch.features[:1, :43], batch.lengths[:1], batch.targets[:1, :3], batch.target_lengths[:1]
    )
    assert torch.allclose(together[0, :4], alone[0], atol=1e-4)


def test_greedy_is_bounded_and_scored_consistently() -> None:
    model = AttentionModel(**TINY).eval()
    features, lengths = torch.randn(2, 60, 80), torch.tensor([60, 33])
    with torch.no_grad():
        texts = model.decode(features, lengths)
        log_probs = model.output_log_probs(features, lengths)
    limits = ConvSubsampling.output_lengths(lengths).tolist()
    for text, lp, limit in zip(texts, log_probs, limits, strict=True):
        assert len(text) <= limit
        # Scoring the hypothesis reproduces it: the argmax of each step before the last (eos).
        assert lp.shape == (len(text) + 1, model.tokenizer.vocab_size)
        assert model.tokenizer.decode(lp[:-1].argmax(dim=-1).tolist()) == text
    with pytest.raises(ValueError, match="greedily"):
        model.decode(features, lengths, beam=4)


def test_ctc_weight_zero_has_no_ctc_head() -> None:
    assert AttentionModel(**TINY, ctc_weight=0.0).ctc_head is None
    with pytest.raises(ValueError, match="ctc_weight"):
        AttentionModel(**TINY, ctc_weight=1.0)


def test_losses_agree_without_smoothing_or_ctc() -> None:
    model = AttentionModel(**TINY, label_smoothing=0.0, ctc_weight=0.0).eval()
    batch = _batch(model, [70], ["one two"])
    per_token = model.utterance_loss(
        batch.features, batch.lengths, batch.targets, batch.target_lengths, normalize=True
    )
    total = model.utterance_loss(batch.features, batch.lengths, batch.targets, batch.target_lengths)
    assert torch.allclose(model.training_loss(batch), per_token[0])
    assert torch.allclose(total, per_token * 8)


@pytest.mark.parametrize(
    ("preset", "low", "high"),
    [("tiny", 0.8e6, 2e6), ("small", 4e6, 8e6), ("base", 15e6, 30e6)],
)
def test_preset_sizes(preset: str, low: float, high: float) -> None:
    assert low <= parameter_count(AttentionModel.from_preset(preset)) <= high
    assert set(ATTENTION_PRESETS) == {"tiny", "small", "base"}


def test_config_rebuilds_the_model() -> None:
    model = AttentionModel(**TINY)
    twin = AttentionModel(**model.config())
    twin.load_state_dict(model.state_dict())
    assert isinstance(model, Trainable)


def test_overfits_two_utterances() -> None:
    utterances = list(synthesize_corpus_in_memory(n_speakers=2, per_speaker=1))
    model = AttentionModel(**TINY, label_smoothing=0.0, ctc_weight=0.3)
    texts = [u.transcript for u in utterances]
    features = [model.front_end(torch.from_numpy(u.load(model.sample_rate))) for u in utterances]
    batch = collate(features, [model.tokenizer.encode(t) for t in texts])
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(70):
        loss = model.training_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[30] < 0.5 * losses[0]
    model.eval()
    with torch.no_grad():
        assert model.decode(batch.features, batch.lengths) == texts
