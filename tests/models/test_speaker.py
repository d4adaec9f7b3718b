"""Speaker embedding models (GE2E LSTM, x-vector TDNN), their losses and EER."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from voxaudit.data.features import collate
from voxaudit.data.synth import synthesize_corpus_in_memory
from voxaudit.errors import VoxauditError
from voxaudit.models.base import SpeakerEncoder, Trainable
from voxaudit.models.speaker import (
    AAMSoftmax,
    Encoder,
    GE2EEncoder,
    GE2ELoss,
    XVectorEncoder,
    equal_error_rate,
    speaker_major_shape,
    verification_trials,
)
from voxaudit.train.data import SpeakerBatchSampler, UtteranceDataset
from voxaudit.train.loop import TrainConfig, Trainer


@pytest.fixture(scope="module")
def corpus():
    return list(synthesize_corpus_in_memory(n_speakers=4, per_speaker=4, seed=0))


def tiny_ge2e() -> GE2EEncoder:
    return GE2EEncoder(n_mels=24, hidden=32, layers=1, embedding_dim=16)


def tiny_xvector() -> XVectorEncoder:
    return XVectorEncoder(n_speakers=4, n_mels=24, channels=16, embedding_dim=16)


@pytest.mark.parametrize("build", [tiny_ge2e, tiny_xvector], ids=["ge2e", "xvector"])
def test_loss_falls_on_a_tiny_corpus(corpus, build):
    torch.manual_seed(0)
    model = build()
    assert isinstance(model, Trainable)
    speakers = sorted({u.speaker for u in corpus})
    with torch.no_grad():
        # One second of each utterance keeps the test quick; GE2E trains on such crops anyway.
        features = [model.front_end(torch.from_numpy(u.samples))[:100] for u in corpus]
    batch = collate(features, [speakers.index(u.speaker) for u in corpus])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = model.training_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    rebuilt = type(model)(**model.config())
    rebuilt.load_state_dict(model.state_dict())


@pytest.mark.parametrize("build", [tiny_ge2e, tiny_xvector], ids=["ge2e", "xvector"])
def test_encoder_gives_unit_embeddings_independent_of_padding(build):
    torch.manual_seed(0)
    encoder = Encoder(build(), batch_size=3)
    assert isinstance(encoder, SpeakerEncoder)
    rng = np.random.default_rng(0)
    waveforms = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (4000, 9000, 2500, 6000)]
    together = encoder.embed(waveforms)
    assert together.shape == (4, 16)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    alone = np.concatenate([encoder.embed([w]) for w in waveforms])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert encoder.model.training  # embedding switches to eval mode and back
    assert encoder.embed([]).shape == (0, 16)


def test_ge2e_trains_in_the_loop_and_reloads(corpus, tmp_path):
    model = tiny_ge2e()
    speakers = sorted({u.speaker for u in corpus})
    data = UtteranceDataset(corpus, model.front_end, lambda u: speakers.index(u.speaker))
    sampler = SpeakerBatchSampler(data.targets(), speakers_per_batch=2, utterances_per_speaker=2)
    config = TrainConfig(epochs=1, device="cpu", max_steps=2)
    Trainer(config, progress=False).fit(model, data, out_dir=tmp_path, batch_sampler=sampler)
    loaded = Encoder.load(tmp_path)
    assert loaded.model.config() == model.config()
    waveforms = [u.samples for u in corpus[:3]]
    np.testing.assert_allclose(loaded.embed(waveforms), Encoder(model).embed(waveforms), atol=1e-6)


def test_ge2e_with_opacus_lstm():
    pytest.importorskip("opacus")
    model = GE2EEncoder(n_mels=24, hidden=16, layers=2, embedding_dim=8, cell="dplstm")
    features = [torch.randn(n, 24) for n in (30, 40, 25, 35)]
    batch = collate(features, [0, 0, 1, 1])
    model.training_loss(batch).backward()
    alone = model.forward_features(features[0][None], torch.tensor([30]))
    together = model.forward_features(batch.features, batch.lengths)
    torch.testing.assert_close(together[:1], alone, atol=1e-6, rtol=0)
    with pytest.raises(VoxauditError, match="LSTM cell"):
        GE2EEncoder(cell="gru")


def test_encoder_refuses_empty_waveforms():
    encoder = Encoder(tiny_ge2e())
    with pytest.raises(VoxauditError, match="waveform 1 is not a non-empty mono"):
        encoder.embed([np.ones(800, np.float32), np.zeros(0, np.float32)])
    with pytest.raises(VoxauditError, match="waveform 0 is not a non-empty mono"):
        encoder.embed([np.ones((2, 800), np.float32)])


def test_ge2e_loss_prefers_separated_speakers():
    torch.manual_seed(0)
    centres = F.normalize(torch.randn(4, 1, 8), dim=-1)
    clustered = F.normalize(centres + 0.05 * torch.randn(4, 5, 8), dim=-1)
    shuffled = clustered.reshape(20, 8)[torch.randperm(20)].reshape(4, 5, 8)
    loss = GE2ELoss()
    assert loss(clustered) < 0.2
    assert loss(shuffled) > loss(clustered) + 1.0


def test_ge2e_leaves_each_utterance_out_of_its_own_centroid():
    embeddings = F.normalize(torch.randn(2, 3, 4), dim=-1)
    scores = GE2ELoss(init_w=1.0, init_b=0.0).similarity(embeddings)
    others = embeddings[0, 1:].mean(0)
    expected = F.cosine_similarity(embeddings[0, 0], others, dim=0)
    assert scores[0, 0, 0].item() == pytest.approx(expected.item(), abs=1e-6)


def test_speaker_major_batches():
    assert speaker_major_shape(torch.tensor([7, 7, 7, 2, 2, 2])) == (2, 3)
    for bad in ([7, 2, 7, 2], [7, 7, 2], [1, 1, 2, 2, 1, 1]):
        with pytest.raises(VoxauditError, match="N speakers x M utterances"):
            speaker_major_shape(torch.tensor(bad))
    with pytest.raises(VoxauditError, match="label per utterance"):
        speaker_major_shape(None)


def test_aam_margin_lowers_only_the_target_logit():
    torch.manual_seed(0)
    head = AAMSoftmax(8, 5, margin=0.2, scale=30.0)
    embeddings = torch.randn(6, 8)
    targets = torch.tensor([0, 1, 2, 3, 4, 0])
    with_margin = head.logits(embeddings, targets)
    head.margin = 0.0
    plain = head.logits(embeddings, targets)
    target = F.one_hot(targets, 5).bool()
    assert (with_margin[target] < plain[target]).all()
    torch.testing.assert_close(with_margin[~target], plain[~target])


def test_xvector_checks_speaker_indices():
    model = tiny_xvector()
    batch = collate([torch.zeros(20, 24), torch.zeros(30, 24)], [0, 4])
    with pytest.raises(VoxauditError, match=r"\[0, 4\)"):
        model.training_loss(batch)


def test_eer_of_separated_scores_is_zero():
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    eer, threshold = equal_error_rate(scores, np.array([1, 1, 1, 0, 0]))
    assert eer == 0.0
    assert 0.2 < threshold <= 0.7


def test_eer_of_identical_distributions_is_one_half():
    rng = np.random.default_rng(0)
    scores = rng.standard_normal(20000)
    labels = rng.integers(0, 2, 20000)
    eer, _ = equal_error_rate(scores, labels)
    assert eer == pytest.approx(0.5, abs=0.02)


def test_eer_of_a_small_case_by_hand():
    # Accepting scores >= 0.7 rejects one target of three (0.3) and accepts one non-target of
    # three (0.7): both error rates are 1/3 there.
    scores = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.1])
    labels = np.array([1, 1, 1, 0, 0, 0])
    eer, threshold = equal_error_rate(scores, labels)
    assert eer == pytest.approx(1 / 3)
    assert threshold == pytest.approx(0.7)


def test_eer_needs_both_kinds_of_trial():
    with pytest.raises(VoxauditError, match="both target"):
        equal_error_rate(np.array([0.1, 0.2]), np.array([1, 1]))


def test_verification_trials_are_balanced_and_scored_by_cosine():
    rng = np.random.default_rng(0)
    speakers = np.repeat(["a", "b", "c"], 3)
    embeddings = rng.standard_normal((9, 4))
    scores, labels = verification_trials(embeddings, speakers, 101, seed=1)
    assert labels.sum() == 50 and len(labels) == 101
    assert np.all(np.abs(scores) <= 1 + 1e-9)
    again, _ = verification_trials(embeddings, speakers, 101, seed=1)
    np.testing.assert_array_equal(scores, again)
    # Identical embeddings per speaker: targets score 1, so the EER is 0.
    clean = np.repeat(np.eye(3), 3, axis=0)
    scores, labels = verification_trials(clean, speakers, 40, seed=0)
    np.testing.assert_allclose(scores[labels == 1], 1.0)
    assert equal_error_rate(scores, labels)[0] == 0.0
    with pytest.raises(VoxauditError, match="two speakers"):
        verification_trials(embeddings[:3], ["a", "a", "a"], 10)
