import numpy as np
import pytest

from tests.audio_fixtures import tone, write_wav
from voxaudit.data.corpus import Corpus, Utterance


def _corpus() -> Corpus:
    utts = [
        Utterance(
            f"{spk}-{i}",
            spk,
            f"text {i}",
            samples=tone(0.2 * (i + 1)),
            sample_rate=16000,
            duration=0.2 * (i + 1),
        )
        for spk in ("ann", "bob", "cy")
        for i in range(3)
    ]
    return Corpus(utts, name="toy")


def test_lookup_by_id_and_index():
    corpus = _corpus()
    assert corpus["bob-1"].speaker == "bob"
    assert corpus[0].id == "ann-0"
    assert "cy-2" in corpus and "zed-0" not in corpus
    with pytest.raises(KeyError, match="zed-0"):
        corpus["zed-0"]


def test_filter_group_subset_summary():
    corpus = _corpus()
    assert corpus.speakers == ["ann", "bob", "cy"]
    assert len(corpus.filter(speakers=["ann"])) == 3
    assert corpus.filter(min_duration=0.5).ids == ["ann-2", "bob-2", "cy-2"]
    assert len(corpus.filter(lambda u: u.id.endswith("0"))) == 3
    assert list(corpus.by_speaker()) == ["ann", "bob", "cy"]
    assert corpus.subset(["cy-0", "ann-1"]).ids == ["cy-0", "ann-1"]
    summary = corpus.summary()
    assert (summary.utterances, summary.speakers, summary.per_speaker_max) == (9, 3, 3)
    assert summary.hours == pytest.approx(3 * (0.2 + 0.4 + 0.6) / 3600)


def test_duplicate_ids_are_refused():
    u = Utterance("x", "s", samples=tone(), sample_rate=16000)
    with pytest.raises(ValueError, match="duplicate utterance ids"):
        Corpus([u, u])


def test_utterance_needs_exactly_one_audio_source(tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        Utterance("x", "s")
    with pytest.raises(ValueError, match="sample_rate"):
        Utterance("x", "s", samples=tone())
    path = write_wav(tmp_path / "a.wav", rate=8000)
    utt = Utterance("x", "s", path=path, sample_rate=8000)
    assert len(utt.load(16000)) == 2 * len(utt.load())


def test_fingerprint_tracks_ids_speakers_and_audio():
    corpus = _corpus()
    assert corpus.fingerprint() == Corpus(reversed(corpus.utterances)).fingerprint()
    assert corpus.fingerprint() != corpus[1:].fingerprint()
    changed = [*corpus.utterances[:-1]]
    last = corpus.utterances[-1]
    changed.append(Utterance(last.id, last.speaker, samples=last.samples * 0.5, sample_rate=16000))
    assert corpus.fingerprint() != Corpus(changed).fingerprint()


def test_validate_drops_bad_audio_and_keeps_warnings():
    good = Utterance("good", "s", samples=tone(), sample_rate=16000)
    silent = Utterance("silent", "s", samples=np.zeros(8000, np.float32), sample_rate=16000)
    clipped = Utterance("loud", "s", samples=np.clip(tone() * 20, -1, 1), sample_rate=16000)
    checked = Corpus([good, silent, clipped]).validate()
    assert checked.ids == ["good", "loud"]
    assert [(p.where, p.severity) for p in checked.problems] == [
        ("<array:silent>", "error"),
        ("<array:loud>", "warning"),
    ]
