"""Recognizer: the built-in models behind the SpeechRecognizer protocol, and error rates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voxaudit.data.features import collate
from voxaudit.data.synth import synthesize_corpus_in_memory
from voxaudit.models.base import SpeechRecognizer
from voxaudit.models.ctc import CTCModel
from voxaudit.models.encoders import ConvSubsampling
from voxaudit.models.recognizer import Recognizer, cer, wer
from voxaudit.models.seq2seq import AttentionModel
from voxaudit.models.tokens import CharTokenizer


@pytest.fixture(scope="module")
def speech() -> tuple[list[np.ndarray], list[str]]:
    corpus = synthesize_corpus_in_memory(n_speakers=3, per_speaker=1)
    return [u.load(16000) for u in corpus], [u.transcript for u in corpus]


def _ctc() -> CTCModel:
    return CTCModel(encoder="gru", d_model=64, layers=2, conv_channels=8)


def _attention() -> AttentionModel:
    return AttentionModel(
        encoder="conformer",
        d_model=64,
        layers=2,
        decoder_layers=1,
        d_ff=128,
        conv_channels=8,
        label_smoothing=0.0,
        ctc_weight=0.0,
    )


MODELS = [pytest.param(_ctc, id="ctc"), pytest.param(_attention, id="attention")]


@pytest.mark.parametrize("make", MODELS)
def test_is_a_speech_recognizer_with_per_utterance_outputs(make, speech) -> None:
    waves, _ = speech
    model = make()
    rec = Recognizer(model, batch_size=2)
    assert isinstance(rec, SpeechRecognizer)
    assert rec.sample_rate == 16000
    texts = rec.transcribe(waves)
    log_probs = rec.log_probs(waves)
    assert len(texts) == len(log_probs) == len(waves)
    assert model.training  # each call restores the model's mode
    for wave, text, lp in zip(waves, texts, log_probs, strict=True):
        assert set(text) <= set(model.tokenizer.alphabet)
        np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0, rtol=1e-4)
        if isinstance(model, CTCModel):
            frames = model.front_end.frame_lengths(len(wave))
            assert lp.shape == (ConvSubsampling.output_lengths(frames), 29)
        else:
            assert lp.shape == (len(text) + 1, 31)


@pytest.mark.parametrize("make", MODELS)
def test_batching_does_not_change_results(make, speech) -> None:
    waves, transcripts = speech
    model = make()
    batched, single = Recognizer(model, batch_size=3), Recognizer(model, batch_size=1)
    assert batched.transcribe(waves) == single.transcribe(waves)
    np.testing.assert_allclose(
        batched.utterance_loss(waves, transcripts),
        single.utterance_loss(waves, transcripts),
        rtol=1e-4,
    )


@pytest.mark.parametrize("make", MODELS)
def test_utterance_loss_is_the_training_loss_of_one(make, speech) -> None:
    waves, transcripts = speech
    model = make().eval()
    rec = Recognizer(model, tokenizer=CharTokenizer())
    normalized = rec.utterance_loss(waves[:1], transcripts[:1], normalize=True)
    features = model.front_end(torch.from_numpy(waves[0]))
    batch = collate([features], [model.tokenizer.encode(transcripts[0])])
    with torch.no_grad():
        expected = model.training_loss(batch).item()
    assert normalized.shape == (1,)
    assert normalized[0] == pytest.approx(expected, rel=1e-4)
    summed = rec.utterance_loss(waves[:1], transcripts[:1])
    steps = len(model.tokenizer.encode(transcripts[0])) + isinstance(model, AttentionModel)
    assert summed[0] == pytest.approx(normalized[0] * steps, rel=1e-4)


@pytest.mark.parametrize("make", MODELS)
def test_input_gradients_point_uphill(make, speech) -> None:
    waves, transcripts = speech
    model = make()
    rec = Recognizer(model, batch_size=2)
    grads = rec.input_gradients(waves, transcripts)
    assert [g.shape for g in grads] == [w.shape for w in waves]
    assert all(np.isfinite(g).all() and np.abs(g).max() > 0 for g in grads)
    assert all(p.grad is None for p in model.parameters())
    before = rec.utterance_loss(waves, transcripts)
    stepped = [w + 1e-3 * g / np.linalg.norm(g) for w, g in zip(waves, grads, strict=True)]
    assert (rec.utterance_loss(stepped, transcripts) > before).all()


@pytest.mark.parametrize("make", MODELS)
def test_analyze_is_transcribe_loss_and_log_probs_in_one_pass(make, speech) -> None:
    waves, transcripts = speech
    model = make()
    rec = Recognizer(model, batch_size=2)
    analyses = rec.analyze(waves, transcripts)
    assert [a.transcript for a in analyses] == rec.transcribe(waves)
    np.testing.assert_allclose(
        [a.loss for a in analyses], rec.utterance_loss(waves, transcripts), rtol=1e-5
    )
    if isinstance(model, CTCModel):
        expected = rec.log_probs(waves)
    else:  # the decoder's steps teacher-forced on the transcript, not its own hypothesis
        expected = []
        for wave, text in zip(waves, transcripts, strict=True):
            targets = torch.tensor([model.tokenizer.encode(text)])
            features = model.front_end(torch.from_numpy(wave))[None]
            with torch.no_grad():
                logits, _ = model.eval().forward_features(
                    features, torch.tensor([len(features[0])]), targets, torch.tensor([len(text)])
                )
            expected.append(logits[0].log_softmax(dim=-1).numpy())
    for analysis, log_probs in zip(analyses, expected, strict=True):
        np.testing.assert_allclose(analysis.log_probs, log_probs, rtol=1e-4, atol=1e-5)
        assert analysis.kl is None
    compared = rec.analyze(
        waves, transcripts, compare_to=[a.log_probs for a in analyses], keep_log_probs=False
    )
    assert all(c.log_probs is None and abs(c.kl) < 1e-6 for c in compared)
    hummed = [w + 0.05 * np.sin(np.arange(len(w), dtype=np.float32)) for w in waves]
    compared = rec.analyze(hummed, transcripts, compare_to=[a.log_probs for a in analyses])
    assert all(c.kl > 1e-6 for c in compared)
    with pytest.raises(ValueError, match="compare_to 1: shape"):
        rec.analyze(waves, transcripts, compare_to=[a.log_probs[:1] for a in analyses])


@pytest.mark.parametrize("make", MODELS)
def test_scores_are_the_log_probability_of_the_transcript(make, speech) -> None:
    waves, _ = speech
    rec = Recognizer(make(), batch_size=2)
    scores = rec.scores(waves)
    texts = rec.transcribe(waves)
    assert [s["text"] for s in scores] == texts
    np.testing.assert_allclose(
        [s["log_score"] for s in scores], -rec.utterance_loss(waves, texts), rtol=1e-5
    )
    assert all(s["log_score"] < 0 for s in scores)


def test_bad_inputs_are_named() -> None:
    rec = Recognizer(_ctc())
    with pytest.raises(ValueError, match="waveform 1"):
        rec.transcribe([np.zeros(1600, np.float32), np.zeros((2, 10), np.float32)])
    with pytest.raises(ValueError, match="2 waveforms but 1 transcripts"):
        rec.utterance_loss([np.zeros(1600, np.float32)] * 2, ["a"])
    with pytest.raises(ValueError, match="alphabet"):
        Recognizer(_ctc(), tokenizer=CharTokenizer("abc"))
    with pytest.raises(ValueError, match="beam"):
        Recognizer(_attention(), beam=4)


def test_error_rates_normalize_both_sides() -> None:
    assert cer(["Hello, World!"], ["hello world"]) == 0.0
    assert cer(["abcd", "ef"], ["abxd", "ef"]) == pytest.approx(1 / 6)
    assert wer(["the cat sat"], ["the hat sat"]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="references"):
        cer(["a"], [])
