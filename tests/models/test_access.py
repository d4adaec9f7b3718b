"""Access wrappers expose what their level allows, refuse the rest, and count every query."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from voxaudit.errors import VoxauditError
from voxaudit.models.access import Access, AccessDenied, AccessLevel, QueryRecord
from voxaudit.models.base import SpeakerEncoder, SpeechRecognizer, UtteranceClassifier


class FakeASR:
    sample_rate = 16000

    def transcribe(self, waveforms):
        return [f"{len(w)} samples" for w in waveforms]

    def log_probs(self, waveforms):
        return [np.zeros((len(w) // 160, 5)) for w in waveforms]

    def utterance_loss(self, waveforms, transcripts):
        return np.array([len(t) for t in transcripts], dtype=float)

    def input_gradients(self, waveforms, transcripts):
        return [np.ones_like(w) for w in waveforms]


class ScoredASR:
    """A decoder with transcripts and scores only, like PocketSphinx."""

    sample_rate = 16000

    def transcribe(self, waveforms):
        return ["yes" for _ in waveforms]

    def scores(self, waveforms):
        return [{"text": "yes", "log_score": -1.0} for _ in waveforms]


class FakeClassifier:
    sample_rate = 8000

    def __init__(self):
        self.classes = ["cat", "dog", "eel"]

    def predict_proba(self, waveforms):
        # The class is the waveform's first sample; its probability 0.8.
        probabilities = np.full((len(waveforms), 3), 0.1)
        probabilities[np.arange(len(waveforms)), [int(w[0]) for w in waveforms]] = 0.8
        return probabilities

    def utterance_loss(self, waveforms, labels):
        return np.zeros(len(waveforms))


class FakeSpeaker:
    """Embeds a waveform as the unit vector along its first sample's index."""

    sample_rate = 16000

    def embed(self, waveforms):
        return np.eye(4)[[int(w[0]) for w in waveforms]]


def clip(value: float = 0.0, n: int = 320) -> np.ndarray:
    return np.full(n, value, dtype=np.float32)


def test_black_box_asr_gives_transcripts_only():
    box = Access(FakeASR(), "black")
    assert box.transcribe([clip(), clip(n=480)]) == ["320 samples", "480 samples"]
    for name, needed in [("log_probs", "grey"), ("utterance_loss", "grey")]:
        with pytest.raises(AccessDenied, match=rf"{name} is hidden by black-box.*needs {needed}"):
            getattr(box, name)
    with pytest.raises(AccessDenied, match=r"input_gradients.*black-box.*needs white-box access"):
        box.input_gradients([clip()], ["x"])
    assert not hasattr(box, "log_probs")
    assert not isinstance(box, SpeechRecognizer)
    assert box.sample_rate == 16000
    assert box.queries == 2


class AnalyzingASR(FakeASR):
    def analyze(self, waveforms, transcripts):
        return [(t, len(w)) for w, t in zip(waveforms, transcripts, strict=True)]


def test_analyze_is_grey_box():
    with pytest.raises(AccessDenied, match=r"analyze is hidden by black-box.*needs grey-box"):
        Access(AnalyzingASR(), "black", scores=True).analyze([clip()], ["a"])
    assert not hasattr(Access(AnalyzingASR(), "black"), "analyze")
    grey = Access(AnalyzingASR(), "grey")
    assert grey.analyze([clip(), clip(n=10)], ["a", "b"]) == [("a", 320), ("b", 10)]
    assert grey.queries == 2
    assert not hasattr(Access(FakeASR(), "white"), "analyze")  # the model has none


def test_levels_add_up():
    grey = Access(FakeASR(), AccessLevel.GREY)
    assert grey.utterance_loss([clip()], ["abc"]).tolist() == [3.0]
    assert grey.log_probs([clip()])[0].shape == (2, 5)
    with pytest.raises(AccessDenied, match="needs white-box"):
        grey.input_gradients([clip()], ["abc"])
    white = Access(FakeASR(), "white")
    assert isinstance(white, SpeechRecognizer)
    assert white.input_gradients([clip()], ["abc"])[0].shape == (320,)
    assert white.queries == 1


def test_scores_come_with_black_box_only_when_asked_for():
    with pytest.raises(AccessDenied, match=r"scores=True, or grey-box"):
        Access(ScoredASR(), "black").scores([clip()])
    assert Access(ScoredASR(), "black", scores=True).scores([clip()])[0]["log_score"] == -1.0
    assert Access(ScoredASR(), "grey").scores([clip()])[0]["text"] == "yes"
    # What the model lacks is absent at every level, not denied.
    white = Access(ScoredASR(), "white")
    assert not hasattr(white, "log_probs")
    with pytest.raises(AttributeError, match="has no 'log_probs'") as caught:
        white.log_probs([clip()])
    assert not isinstance(caught.value, AccessDenied)
    assert not hasattr(Access(FakeASR(), "white"), "scores")


def test_classifier_levels():
    black = Access(FakeClassifier(), "black", scores=True)
    waveforms = [clip(2.0), clip(0.0)]
    assert black.predict(waveforms) == ["eel", "cat"]
    np.testing.assert_allclose(black.scores(waveforms), [0.8, 0.8])
    assert black.classes == ["cat", "dog", "eel"]
    with pytest.raises(AccessDenied, match=r"predict_proba.*needs grey-box"):
        black.predict_proba(waveforms)
    grey = Access(FakeClassifier(), "grey")
    assert isinstance(grey, UtteranceClassifier)
    assert grey.predict_proba(waveforms).shape == (2, 3)
    assert not hasattr(grey, "input_gradients")  # the model has none to give
    assert black.queries == 4


def test_speaker_verification():
    black = Access(FakeSpeaker(), "black", threshold=0.5)
    same, other = [clip(1.0), clip(2.0)], [clip(1.0), clip(3.0)]
    assert black.verify(same, other).tolist() == [True, False]
    assert black.queries == 4
    with pytest.raises(AccessDenied, match=r"embed.*needs grey-box"):
        black.embed(same)
    with pytest.raises(AccessDenied, match="scores"):
        black.scores(same, other)
    assert not isinstance(black, SpeakerEncoder)
    scored = Access(FakeSpeaker(), "black", scores=True)
    np.testing.assert_allclose(scored.scores(same, other), [1.0, 0.0])
    grey = Access(FakeSpeaker(), "grey")
    assert isinstance(grey, SpeakerEncoder)
    assert grey.embed(same).shape == (2, 4)
    with pytest.raises(VoxauditError, match="pairs waveforms"):
        grey.verify(same, other[:1])


def test_query_log_records_each_waveform():
    log: list[QueryRecord] = []
    box = Access(FakeASR(), "grey", query_log=log)
    waveforms = [clip(0.25), clip(0.5, n=100)]
    box.transcribe(waveforms)
    box.utterance_loss(waveforms[:1], ["a"])
    assert [r.method for r in log] == ["transcribe", "transcribe", "utterance_loss"]
    assert [r.length for r in log] == [320, 100, 320]
    assert log[0].sha1 == hashlib.sha1(waveforms[0].tobytes()).hexdigest()
    assert log[0].sha1 == log[2].sha1 != log[1].sha1
    assert all(r.timestamp > 1e9 for r in log)
    assert box.queries == 3

    seen: list[str] = []
    Access(FakeSpeaker(), "black", query_log=lambda r: seen.append(r.method)).verify(
        [clip(1.0)], [clip(2.0)]
    )
    assert seen == ["verify", "verify"]


def test_refuses_what_is_no_model_and_unknown_names():
    with pytest.raises(VoxauditError, match="no waveform model"):
        Access(object(), "black")
    with pytest.raises(ValueError, match="'purple'"):
        Access(FakeASR(), "purple")
    box = Access(FakeASR(), "white")
    with pytest.raises(AttributeError, match="has no 'parameters'"):
        box.parameters  # noqa: B018
    assert "input_gradients" in dir(box) and "log_probs" not in dir(Access(FakeASR(), "black"))
    assert repr(box) == "<white-box access to a speech recognizer: 0 queries>"
