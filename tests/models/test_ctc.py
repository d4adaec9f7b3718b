"""CTC models: subsampling, masks, decoding, presets and overfitting a few utterances."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

import numpy as np
import pytest
import torch
from torch import nn

from voxaudit.data.features import collate
from voxaudit.data.synth import synthesize_corpus_in_memory
from voxaudit.models.base import Trainable
from voxaudit.models.ctc import (
    CTC_PRESETS,
    CTCModel,
    ctc_greedy_decode,
    ctc_prefix_beam_search,
)
from voxaudit.models.encoders import (
    ConvSubsampling,
    FeatureNorm,
    SpeechEncoder,
    parameter_count,
)
from voxaudit.models.recognizer import cer

TINY = {"encoder": "gru", "d_model": 128, "layers": 2, "conv_channels": 16, "dropout": 0.0}


def test_subsampling_output_lengths_are_exact() -> None:
    sub = ConvSubsampling(n_mels=80, d_model=32, channels=4)
    for frames in range(1, 40):
        out, lengths = sub(torch.randn(1, frames, 80), torch.tensor([frames]))
        assert out.shape == (1, ConvSubsampling.output_lengths(frames), 32)
        assert lengths.item() == out.shape[1]


def test_feature_norm_uses_real_frames_only() -> None:
    features = torch.randn(2, 50, 8) * 3 + 5
    lengths = torch.tensor([50, 20])
    normed = FeatureNorm()(features, lengths)
    short = normed[1, :20]
    assert torch.allclose(short.mean(dim=0), torch.zeros(8), atol=1e-5)
    assert torch.allclose(short.var(dim=0, unbiased=False), torch.ones(8), atol=1e-3)
    assert normed[1, 20:].abs().max() == 0


@pytest.mark.parametrize("kind", ["gru", "conformer", "transformer"])
def test_outputs_do_not_depend_on_batch_padding(kind: str) -> None:
    encoder = SpeechEncoder(kind, n_mels=40, d_model=32, layers=2, d_ff=64, conv_channels=8)
    encoder.eval()
    short, long = torch.randn(37, 40), torch.randn(61, 40)
    alone, alone_lengths = encoder(short[None], torch.tensor([37]))
    batch = collate([short, long])
    together, lengths = encoder(batch.features, batch.lengths)
    n = int(alone_lengths[0])
    assert lengths[0] == n == ConvSubsampling.output_lengths(37)
    assert torch.allclose(together[0, :n], alone[0, :n], atol=1e-5)


def test_rnn_factory_builds_the_recurrent_layers() -> None:
    built = []

    def factory(**kwargs: object) -> nn.Module:
        built.append(kwargs)
        return nn.GRU(**kwargs)  # type: ignore[arg-type]

    model = CTCModel(**TINY, rnn=factory)
    assert built == [
        {
            "input_size": 128,
            "hidden_size": 64,
            "num_layers": 2,
            "batch_first": True,
            "bidirectional": True,
            "dropout": 0.0,
        }
    ]
    assert "rnn" not in model.config()


def test_greedy_merges_repeats_and_drops_blanks() -> None:
    path = [1, 1, 0, 1, 2, 2, 0, 0, 3]
    log_probs = torch.log(nn.functional.one_hot(torch.tensor(path), 4).float() * 0.9 + 0.025)
    assert ctc_greedy_decode(log_probs) == [1, 1, 2, 3]


def test_beam_one_is_greedy() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        log_probs = np.log(rng.dirichlet(np.full(5, 0.3), size=12))
        assert ctc_prefix_beam_search(log_probs, beam=1) == ctc_greedy_decode(log_probs)


def test_beam_finds_the_labelling_greedy_misses() -> None:
    # Blank wins each frame (0.6), so greedy says "", but "a" has 0.4^2 + 2 * 0.4 * 0.6 = 0.64.
    log_probs = np.log(np.array([[0.6, 0.4], [0.6, 0.4]]))
    assert ctc_greedy_decode(log_probs) == []
    assert ctc_prefix_beam_search(log_probs, beam=2) == [1]


def labelling_probabilities(log_probs: np.ndarray) -> dict[tuple[int, ...], float]:
    """Exhaustive: every path's probability summed into the labelling it spells (blank 0)."""
    totals: dict[tuple[int, ...], float] = defaultdict(float)
    steps, vocab = log_probs.shape
    for path in itertools.product(range(vocab), repeat=steps):
        merged = [s for i, s in enumerate(path) if i == 0 or s != path[i - 1]]
        labelling = tuple(s for s in merged if s != 0)
        totals[labelling] += math.exp(sum(log_probs[t, s] for t, s in enumerate(path)))
    return totals


def _best_labelling(log_probs: np.ndarray) -> list[int]:
    totals = labelling_probabilities(log_probs)
    return list(max(totals, key=totals.__getitem__))


def test_wide_beam_is_exact() -> None:
    rng = np.random.default_rng(1)
    for _ in range(10):
        log_probs = np.log(rng.dirichlet(np.full(3, 0.5), size=5))
        assert ctc_prefix_beam_search(log_probs, beam=64) == _best_labelling(log_probs)


@pytest.mark.parametrize(
    ("preset", "low", "high"),
    [("tiny", 0.8e6, 1.5e6), ("small", 4e6, 7e6), ("base", 15e6, 30e6)],
)
def test_preset_sizes(preset: str, low: float, high: float) -> None:
    assert low <= parameter_count(CTCModel.from_preset(preset)) <= high
    assert set(CTC_PRESETS) == {"tiny", "small", "base"}


def test_config_rebuilds_the_model() -> None:
    model = CTCModel(**TINY)
    twin = CTCModel(**model.config())
    twin.load_state_dict(model.state_dict())
    assert isinstance(model, Trainable)
    with pytest.raises(ValueError, match="unknown CTCModel preset"):
        CTCModel.from_preset("huge")


@pytest.fixture(scope="module")
def utterances() -> list:
    return list(synthesize_corpus_in_memory(n_speakers=2, per_speaker=1))


def test_overfits_two_utterances(utterances: list) -> None:
    model = CTCModel(**TINY)
    texts = [u.transcript for u in utterances]
    features = [model.front_end(torch.from_numpy(u.load(model.sample_rate))) for u in utterances]
    batch = collate(features, [model.tokenizer.encode(t) for t in texts])
    per_utterance = model.utterance_loss(
        batch.features, batch.lengths, batch.targets, batch.target_lengths, normalize=True
    )
    assert torch.allclose(model.training_loss(batch), per_utterance.mean())
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(120):
        loss = model.training_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[30] < 0.8 * losses[0]
    assert losses[-1] < 0.1
    model.eval()
    with torch.no_grad():
        assert model.decode(batch.features, batch.lengths) == texts
        assert cer(texts, model.decode(batch.features, batch.lengths, beam=4)) == 0.0


def test_training_needs_sequence_targets() -> None:
    model = CTCModel(**TINY)
    with pytest.raises(ValueError, match="sequence targets"):
        model.training_loss(collate([torch.randn(20, 80)]))
