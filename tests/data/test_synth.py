import csv
import json
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from scipy.signal import stft, welch

from voxaudit.data import synth
from voxaudit.data.audio import read_audio

SENTENCE = "the old farmer carried a heavy basket to the market."


@pytest.fixture(scope="module")
def speakers() -> list[synth.SpeakerProfile]:
    return synth.make_speakers(300, seed=0)


def test_same_seed_same_samples(speakers):
    first = synth.synthesize(SENTENCE, speakers[0], seed=5)
    synth.synthesize("something else entirely, to disturb any state", speakers[1], seed=9)
    assert np.array_equal(first, synth.synthesize(SENTENCE, speakers[0], seed=5))


def test_takes_differ(speakers):
    one = synth.synthesize(SENTENCE, speakers[0], seed=1)
    two = synth.synthesize(SENTENCE, speakers[0], seed=2)
    assert one.shape != two.shape or not np.allclose(one, two)


def test_espeak_is_deterministic_whatever_came_before():
    before = synth.speak(SENTENCE, "en-gb-x-rp+f2", rate=170, pitch=50, pitch_range=50)
    synth.speak("a different sentence first", "en-us+klatt4", rate=300, pitch=10, pitch_range=90)
    after = synth.speak(SENTENCE, "en-gb-x-rp+f2", rate=170, pitch=50, pitch_range=50)
    assert np.array_equal(before, after)
    assert before.size / synth.ESPEAK_RATE > 1.5
    assert np.sqrt(np.mean(before**2)) > 0.01


def test_unknown_voice_is_an_error():
    with pytest.raises(ValueError, match="no voice"):
        synth.speak("hello", "xx-nowhere+m3", rate=170, pitch=50, pitch_range=50)


def test_speakers_are_distinct_and_spread(speakers):
    assert len({s.key() for s in speakers}) == len(speakers) >= 200
    assert len({s.id for s in speakers}) == len(speakers)
    accents = Counter(s.accent for s in speakers)
    assert set(accents) == set(synth.ACCENTS)
    assert min(accents.values()) >= 20
    assert len({s.variant for s in speakers}) >= 60
    # No single knob tells speakers apart: each value of each setting is shared.
    for knob in ("pitch", "pitch_range", "rate"):
        values = Counter(getattr(s, knob) for s in speakers)
        assert max(values.values()) > 1, knob


def test_speakers_are_deterministic_and_prefix_stable(speakers):
    assert synth.make_speakers(12, seed=0) == speakers[:12]
    assert synth.make_speakers(12, seed=1) != speakers[:12]


def test_variants_exclude_non_speech():
    assert not set(synth.variants()) & synth.EXCLUDED_VARIANTS
    assert "m3" in synth.variants()
    assert len(synth.variants()) >= 80


def test_output_is_usable_audio(speakers):
    for i, speaker in enumerate(speakers[:5]):
        samples = synth.synthesize(SENTENCE, speaker, seed=i, sample_rate=16000)
        assert samples.dtype == np.float32
        assert samples.ndim == 1
        assert np.isfinite(samples).all()
        assert 0.29 < np.abs(samples).max() <= 0.9
        assert np.sqrt(np.mean(samples**2)) > 0.01
        assert 1.5 < samples.size / 16000 < 7.0


def test_other_sample_rates(speakers):
    low = synth.synthesize(SENTENCE, speakers[0], seed=0, sample_rate=8000)
    high = synth.synthesize(SENTENCE, speakers[0], seed=0, sample_rate=16000)
    assert abs(low.size / 8000 - high.size / 16000) < 0.01


def _centroid(samples: np.ndarray, rate: int) -> float:
    freqs, power = welch(samples, rate, nperseg=1024)
    return float((freqs * power).sum() / power.sum())


def test_vocal_tract_warp_moves_the_spectrum(speakers):
    base = replace(speakers[0], variant="m3", pitch=50)
    short = synth.synthesize(SENTENCE, replace(base, alpha=1.15), seed=3)
    long = synth.synthesize(SENTENCE, replace(base, alpha=0.87), seed=3)
    assert _centroid(short, 16000) > 1.1 * _centroid(long, 16000)
    # Rate and pitch are compensated, so the duration barely changes.
    assert abs(short.size - long.size) / long.size < 0.12


def _embedding(samples: np.ndarray, rate: int) -> np.ndarray:
    """Mean and spread of 40 log-mel bands over the louder half of the frames."""
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    edges = 700 * (10 ** (np.linspace(mel(50), mel(rate / 2), 42) / 2595) - 1)
    freqs = np.linspace(0, rate / 2, 201)
    low, mid, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    bank = np.clip(np.minimum((freqs - low) / (mid - low), (high - freqs) / (high - mid)), 0, None)
    logmel = np.log(bank @ np.abs(stft(samples, rate, nperseg=400, noverlap=240)[2]) ** 2 + 1e-10)
    loud = logmel[:, logmel.sum(0) > np.median(logmel.sum(0))]
    return np.concatenate([loud.mean(1), loud.std(1)])


def test_speakers_are_recognizable():
    corpus = synth.synthesize_corpus_in_memory(n_speakers=10, per_speaker=3, seed=0)
    by_speaker: dict[str, list[np.ndarray]] = {}
    for u in corpus:
        by_speaker.setdefault(u.speaker, []).append(_embedding(u.load(), 16000))
    names = sorted(by_speaker)
    enrolled = np.array([np.mean(by_speaker[n][:2], axis=0) for n in names])
    probes = np.array([by_speaker[n][2] for n in names])
    mean, scale = enrolled.mean(0), enrolled.std(0) + 1e-6
    distances = ((((probes - mean) / scale)[:, None] - (enrolled - mean) / scale) ** 2).sum(-1)
    accuracy = float(np.mean(distances.argmin(axis=1) == np.arange(len(names))))
    assert accuracy >= 0.5  # chance is 0.1


def test_in_memory_corpus():
    corpus = synth.synthesize_corpus_in_memory(n_speakers=3, per_speaker=2, seed=4)
    assert len(corpus) == 6
    assert corpus.layout == "synthetic"
    assert len(corpus.speakers) == 3
    assert len({u.transcript for u in corpus}) == 6
    for u in corpus:
        assert u.samples is not None and u.path is None
        assert u.duration == pytest.approx(u.samples.size / 16000)


def _manifest(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_corpus_on_disk(tmp_path):
    corpus = synth.synthesize_corpus(
        tmp_path, n_speakers=3, per_speaker=2, workers=1, progress=False
    )
    rows = _manifest(tmp_path / "manifest.csv")
    assert [r["id"] for r in rows] == corpus.ids
    assert list(rows[0]) == ["id", "path", "text", "speaker", "duration"]
    memory = synth.synthesize_corpus_in_memory(n_speakers=3, per_speaker=2, seed=0)
    for row, utterance, held in zip(rows, corpus, memory, strict=True):
        samples, rate = read_audio(tmp_path / row["path"])
        assert rate == 16000
        assert float(row["duration"]) == pytest.approx(samples.size / rate, abs=1e-3)
        assert row["speaker"] == utterance.speaker and row["text"] == utterance.transcript
        # Both functions share one path: the file is the in-memory take, quantized to 16 bits.
        assert np.allclose(samples, held.samples, atol=1 / 32768)
    settings = json.loads((tmp_path / "speakers.json").read_text())
    assert settings["seed"] == 0 and settings["version"] == synth.SYNTH_VERSION
    assert [s["id"] for s in settings["speakers"]] == corpus.speakers
    assert not list(tmp_path.rglob(".*.tmp"))


def test_resume_renders_only_missing_takes(tmp_path, monkeypatch):
    synth.synthesize_corpus(tmp_path, n_speakers=2, per_speaker=2, workers=1, progress=False)
    first = _manifest(tmp_path / "manifest.csv")
    (tmp_path / first[1]["path"]).unlink()
    calls = []
    real = synth.synthesize

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(synth, "synthesize", counting)
    synth.synthesize_corpus(tmp_path, n_speakers=2, per_speaker=2, workers=1, progress=False)
    assert len(calls) == 1
    assert _manifest(tmp_path / "manifest.csv") == first


def test_resume_refuses_other_settings(tmp_path):
    synth.synthesize_corpus(tmp_path, n_speakers=1, per_speaker=1, workers=1, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        synth.synthesize_corpus(tmp_path, n_speakers=1, per_speaker=1, seed=1, progress=False)


def test_worker_count_does_not_change_the_corpus():
    serial = synth.synthesize_corpus_in_memory(n_speakers=2, per_speaker=2, seed=6, workers=1)
    parallel = synth.synthesize_corpus_in_memory(n_speakers=2, per_speaker=2, seed=6, workers=2)
    assert serial.ids == parallel.ids
    for a, b in zip(serial, parallel, strict=True):
        assert np.array_equal(a.samples, b.samples)
