"""Adapters for real pretrained models: each loads offline and runs on short clips."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.model_fixtures import tiny_wav2vec2
from voxaudit.data.audio import resample
from voxaudit.data.synth import ESPEAK_RATE, make_speakers, speak, synthesize
from voxaudit.errors import VoxauditError
from voxaudit.models.access import Access, AccessDenied
from voxaudit.models.base import SpeakerEncoder, SpeechRecognizer


def needs(package: str) -> pytest.MarkDecorator:
    # find_spec rather than importorskip: importing resemblyzer or transformers at collection
    # time would cost seconds, and importorskip would hide a real import error as a skip.
    missing = importlib.util.find_spec(package) is None
    return pytest.mark.skipif(missing, reason=f"{package} is not installed")


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def word_errors(hypothesis: str, reference: str) -> int:
    """Word-level edit distance."""
    hyp, ref = hypothesis.split(), reference.split()
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
    return row[-1]


# -- pocketsphinx -------------------------------------------------------------------------

#: Clean eSpeak speech decodes poorly with PocketSphinx in general (WER about 0.9 on varied
#: sentences, best with the en-us+f2 voice), but these short common phrases came out exactly
#: at speaking rates 150-170; the bound leaves room for small changes in either engine.
PHRASES = ("one two three", "i love you", "please call me tomorrow", "yes no")


@pytest.fixture(scope="module")
def sphinx():
    from voxaudit.models.adapters.pocketsphinx import PocketSphinxRecognizer

    # eSpeak's own rate, so the adapter's resampling is exercised too.
    return PocketSphinxRecognizer(sample_rate=ESPEAK_RATE)


@needs("pocketsphinx")
def test_pocketsphinx_transcribes_clean_phrases(sphinx):
    clips = [speak(p, "en-us+f2", rate=160, pitch=50, pitch_range=50) for p in PHRASES]
    transcripts = sphinx.transcribe(clips)
    errors = sum(word_errors(h, r) for h, r in zip(transcripts, PHRASES, strict=True))
    assert errors / sum(len(p.split()) for p in PHRASES) <= 0.25, transcripts
    # Each utterance decodes alone: the same clip gives the same result after others.
    assert sphinx.transcribe(clips[:1]) == transcripts[:1]


@needs("pocketsphinx")
def test_pocketsphinx_scores_and_odd_input(sphinx):
    clip = speak("i love you", "en-us+f2", rate=160, pitch=50, pitch_range=50)
    (scores,) = sphinx.scores([clip])
    assert scores["text"] == sphinx.transcribe([clip])[0] == scores["nbest"][0]
    assert scores["log_score"] < 0 and 0 <= scores["posterior"] <= 1
    assert 1 <= len(scores["nbest"]) <= sphinx.n_best
    assert len(set(scores["nbest"])) == len(scores["nbest"])
    empty, silent = np.zeros(0, np.float32), np.zeros(ESPEAK_RATE, np.float32)
    assert sphinx.transcribe([empty])[0] == ""
    assert isinstance(sphinx.transcribe([silent])[0], str)
    assert sphinx.scores([empty])[0]["nbest"] == []


@needs("pocketsphinx")
def test_pocketsphinx_is_black_box_only(sphinx):
    assert not isinstance(sphinx, SpeechRecognizer)  # no losses, no gradients
    white = Access(sphinx, "white")
    assert not hasattr(white, "log_probs") and not hasattr(white, "input_gradients")
    with pytest.raises(AccessDenied, match="scores=True"):
        Access(sphinx, "black").scores([np.zeros(100, np.float32)])
    assert Access(sphinx, "black", scores=True).scores([np.zeros(100, np.float32)])


@needs("pocketsphinx")
def test_pocketsphinx_loads_offline(offline):
    from voxaudit.models.adapters.pocketsphinx import PocketSphinxRecognizer

    assert PocketSphinxRecognizer().transcribe([np.zeros(1600, np.float32)])


# -- resemblyzer --------------------------------------------------------------------------


@needs("resemblyzer")
def test_resemblyzer_tells_speakers_apart(offline):
    from voxaudit.models.adapters.resemblyzer import ResemblyzerEncoder

    encoder = ResemblyzerEncoder()
    assert isinstance(encoder, SpeakerEncoder)
    texts = ("the little dog ran over the green hill", "we will meet again in the morning")
    clips = [synthesize(t, s, seed=i) for s in make_speakers(2) for i, t in enumerate(texts)]
    embeddings = encoder.embed(clips)
    assert embeddings.shape == (4, 256) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    cos = embeddings @ embeddings.T
    same = min(cos[0, 1], cos[2, 3])
    different = max(cos[0, 2], cos[0, 3], cos[1, 2], cos[1, 3])
    assert same > different
    with pytest.raises(VoxauditError, match="waveform 0 is empty or silent"):
        encoder.embed([np.zeros(1600, np.float32)])
    assert encoder.embed([]).shape == (0, 256)


# -- Hugging Face -------------------------------------------------------------------------

LETTERS = "abcdefghijklmnopqrstuvwxyz'"


@pytest.fixture(scope="module")
def ctc_dir(tmp_path_factory) -> Path:
    """A tiny randomly initialized wav2vec2 CTC model with a character tokenizer."""
    return tiny_wav2vec2(tmp_path_factory.mktemp("wav2vec2"), LETTERS)


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory) -> Path:
    """A tiny randomly initialized Whisper with a byte-level tokenizer and no merges."""
    import transformers as tf
    from tokenizers import pre_tokenizers

    path = tmp_path_factory.mktemp("whisper")
    # Every byte as a token, so any text encodes; merges would only make tokens longer.
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    specials = ["<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>"]
    specials.append("<|notimestamps|>")
    tokenizer = tf.WhisperTokenizer(
        vocab=vocab, merges=[], additional_special_tokens=specials, language="en"
    )
    extractor = tf.WhisperFeatureExtractor(feature_size=16, chunk_length=2)
    tf.WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(path)
    token = tokenizer.convert_tokens_to_ids
    end = token("<|endoftext|>")
    config = tf.WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=16,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=extractor.nb_max_frames // 2,
        max_target_positions=32,
        decoder_start_token_id=token("<|startoftranscript|>"),
        pad_token_id=end,
        bos_token_id=end,
        eos_token_id=end,
        begin_suppress_tokens=None,
    )
    torch.manual_seed(0)
    model = tf.WhisperForConditionalGeneration(config)
    # What a real multilingual checkpoint's generation_config.json carries.
    model.generation_config = tf.GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id,
        eos_token_id=end,
        pad_token_id=end,
        no_timestamps_token_id=token("<|notimestamps|>"),
        lang_to_id={"<|en|>": token("<|en|>")},
        task_to_id={"transcribe": token("<|transcribe|>"), "translate": token("<|translate|>")},
        is_multilingual=True,
    )
    model.save_pretrained(path)
    return path


def noise_clips(*sizes: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in sizes]


@needs("transformers")
def test_ctc_adapter_runs_every_method(ctc_dir, offline):
    from voxaudit.models.adapters.huggingface import HFCTCRecognizer

    asr = HFCTCRecognizer(ctc_dir)
    assert isinstance(asr, SpeechRecognizer)
    clips = noise_clips(8000, 5000)
    transcripts = asr.transcribe(clips)
    assert len(transcripts) == 2 and all(set(t) <= set(LETTERS + " ") for t in transcripts)
    log_probs = asr.log_probs(clips)
    # Convolutions of kernel 10 stride 5, then kernel 8 stride 4: 1599 then 398 frames.
    assert [lp.shape for lp in log_probs] == [(398, 30), (248, 30)]
    np.testing.assert_allclose(np.exp(log_probs[0]).sum(axis=1), 1.0, rtol=1e-5)
    losses = asr.utterance_loss(clips, ["hello world", "ab"])
    assert losses.shape == (2,) and np.all(np.isfinite(losses)) and np.all(losses > 0)
    (gradient,) = asr.input_gradients(clips[:1], ["hello world"])
    assert gradient.shape == clips[0].shape and np.abs(gradient).max() > 0
    # A small step against the gradient lowers the loss: the gradient is the loss's.
    step = clips[0] - 1e-3 * gradient / np.abs(gradient).max()
    assert asr.utterance_loss([step], ["hello world"])[0] < losses[0]


@needs("transformers")
def test_ctc_adapter_matches_the_processor(ctc_dir):
    from voxaudit.models.adapters.huggingface import HFCTCRecognizer

    asr = HFCTCRecognizer(ctc_dir, sample_rate=8000)
    (clip,) = noise_clips(4000)
    ours = asr.log_probs([clip])[0]  # resampled to 16 kHz, normalized in torch
    resampled = resample(clip, 8000, 16000)
    inputs = asr.processor(resampled, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        theirs = torch.log_softmax(asr.model(inputs.input_values).logits[0], -1).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    with pytest.raises(VoxauditError, match="model's 16000 Hz"):
        asr.input_gradients([clip], ["a"])


@needs("transformers")
def test_whisper_adapter_runs_its_methods(whisper_dir, offline):
    from voxaudit.models.adapters.huggingface import HFWhisperRecognizer

    asr = HFWhisperRecognizer(whisper_dir, max_new_tokens=6)
    clips = noise_clips(16000, 9000)
    transcripts = asr.transcribe(clips)
    assert len(transcripts) == 2 and all(isinstance(t, str) for t in transcripts)
    log_probs = asr.log_probs(clips)
    assert len(log_probs) == 2
    for lp in log_probs:
        assert lp.ndim == 2 and 1 <= lp.shape[0] <= 7 and lp.shape[1] == 262
        np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0, rtol=1e-5)
    losses = asr.utterance_loss(clips, ["hello", "a b"])
    assert losses.shape == (2,) and np.all(np.isfinite(losses)) and np.all(losses > 0)
    # " hello" is six byte tokens and end-of-text: near 7 * log(262) = 39 nats at random.
    assert 30 < losses[0] < 50
    assert not hasattr(asr, "input_gradients")
    with pytest.raises(AttributeError):
        Access(asr, "white").input_gradients  # noqa: B018


@needs("transformers")
def test_huggingface_adapters_never_download():
    from voxaudit.models.adapters.huggingface import HFCTCRecognizer, HFWhisperRecognizer

    for adapter in (HFCTCRecognizer, HFWhisperRecognizer):
        with pytest.raises(VoxauditError, match="not a local model directory"):
            adapter("openai/whisper-tiny")


@needs("transformers")
def test_huggingface_adapters_refuse_the_other_family(ctc_dir, whisper_dir):
    from voxaudit.models.adapters.huggingface import HFCTCRecognizer, HFWhisperRecognizer

    with pytest.raises(VoxauditError, match="cannot load it as AutoModelForSpeechSeq2Seq"):
        HFWhisperRecognizer(ctc_dir)
    with pytest.raises(VoxauditError, match="cannot load it as AutoModelForCTC"):
        HFCTCRecognizer(whisper_dir)
