"""Recognizer: the built-in models behind the SpeechRecognizer protocol, and error rates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voxaudit.data.corpus import Utterance
from voxaudit.data.features import collate
from voxaudit.data.synth import synthesize_corpus_in_memory
from voxaudit.data.text import ALPHABET
from voxaudit.models.base import SpeechRecognizer
from voxaudit.models.checkpoints import CHECKPOINT, FORMAT, class_path, load_model
from voxaudit.models.ctc import CTCModel
from voxaudit.models.encoders import ConvSubsampling
from voxaudit.models.recognizer import (
    Recognizer,
    asr_model_for,
    cer,
    transcript_targets,
    unseen_characters,
    wer,
)
from voxaudit.models.seq2seq import AttentionModel
from voxaudit.models.tokens import CharTokenizer
from voxaudit.train.data import UtteranceDataset
from voxaudit.train.loop import TrainConfig, Trainer


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


def test_error_rates_of_scripts_without_case_or_spaces() -> None:
    assert cer(["你好，世界"], ["你好 世界"]) == 0.0
    assert cer(["我爱北京"], ["我爱南京"]) == pytest.approx(1 / 4)
    assert wer(["我爱北京"], ["我爱南京"]) == 1.0  # one unsegmented "word"
    assert wer(["مرحبا بالعالم!"], ["مرحبا بالعالم"]) == 0.0


ARABIC = ["مرحبا بالعالم", "شكرا جزيلا", "صباح الخير"]
TINY_ASR = {"d_model": 16, "layers": 1, "conv_channels": 4, "n_mels": 16, "dropout": 0.0}


def _utterances(transcripts: list[str]) -> list[Utterance]:
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((len(transcripts), 8000)).astype(np.float32) * 0.1
    return [
        Utterance(f"u{k}", f"s{k % 2}", text, samples=samples, sample_rate=16000)
        for k, (text, samples) in enumerate(zip(transcripts, noise, strict=True))
    ]


@pytest.mark.parametrize("family", ["ctc", "attention"])
def test_asr_model_for_takes_its_alphabet_from_the_transcripts(family: str) -> None:
    model = asr_model_for(_utterances(ARABIC), family, "tiny", **TINY_ASR)
    assert model.tokenizer.alphabet == CharTokenizer.from_texts(ARABIC).alphabet
    assert set("".join(ARABIC)) <= set(model.tokenizer.alphabet)
    assert model.config()["alphabet"] == model.tokenizer.alphabet
    # Given explicitly, the alphabet is the caller's.
    english = asr_model_for(_utterances(["hello"]), family, "tiny", alphabet=ALPHABET, **TINY_ASR)
    assert english.tokenizer.alphabet == ALPHABET


def test_a_trained_alphabet_survives_the_checkpoint(tmp_path) -> None:
    torch.manual_seed(0)
    utterances = _utterances(ARABIC)
    model = asr_model_for(utterances, "ctc", "tiny", **TINY_ASR)
    data = UtteranceDataset(utterances, model.front_end, transcript_targets(model))
    Trainer(TrainConfig(epochs=1, batch_size=3, device="cpu"), progress=False).fit(
        model, data, out_dir=tmp_path
    )
    loaded = load_model(tmp_path)
    assert isinstance(loaded, CTCModel)
    assert loaded.tokenizer.alphabet == model.tokenizer.alphabet
    assert loaded.head.out_features == len(model.tokenizer.alphabet) + 1
    waves = [u.load(16000) for u in utterances]
    assert Recognizer(loaded).transcribe(waves) == Recognizer(model).transcribe(waves)


def test_a_checkpoint_without_an_alphabet_loads_the_english_one(tmp_path) -> None:
    model = CTCModel(encoder="gru", **TINY_ASR)
    config = {k: v for k, v in model.config().items() if k != "alphabet"}
    state = {
        "format": FORMAT,
        "model_class": class_path(model),
        "model_config": config,
        "model_state": model.state_dict(),
    }
    torch.save(state, tmp_path / CHECKPOINT)
    assert load_model(tmp_path).tokenizer.alphabet == ALPHABET


def test_audits_skip_and_count_characters_the_model_never_saw() -> None:
    model = asr_model_for(_utterances(ARABIC), "ctc", "tiny", **TINY_ASR)
    rec = Recognizer(model)
    waves = [u.load(16000) for u in _utterances(["x", "y"])]
    references = ["مرحبا نعم", "Hello!"]
    assert unseen_characters(rec, references) == {"l": 2, "ن": 1, "h": 1, "e": 1, "o": 1}
    assert unseen_characters(model.tokenizer, ARABIC) == {}
    assert unseen_characters(object(), references) is None
    skipped = ["مرحبا عم", ""]
    np.testing.assert_allclose(
        rec.utterance_loss(waves, references), rec.utterance_loss(waves, skipped), rtol=1e-6
    )
    analyses = rec.analyze(waves, references)
    np.testing.assert_allclose([a.loss for a in analyses], rec.utterance_loss(waves, skipped))
    assert all(np.isfinite(g).all() for g in rec.input_gradients(waves, references))
