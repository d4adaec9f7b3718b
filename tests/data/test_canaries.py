"""Canaries for the one-run audit: what each kind makes, what the rest keeps, the inclusion."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.audio_fixtures import tone
from voxaudit.data.canaries import canary_corpus, canary_units, make_canaries
from voxaudit.data.corpus import Corpus, Utterance
from voxaudit.errors import VoxauditError

WORDS = ["one", "two", "three", "four"]


def _corpus(n: int = 40) -> Corpus:
    return Corpus(
        [
            Utterance(f"u{i:03d}", f"spk{i % 3}", transcript=f"{WORDS[i % 4]} {WORDS[(i + 1) % 4]}",
                      samples=tone(0.1, freq=200.0 + 10 * i, seed=i), sample_rate=16000,
                      columns={"digit": str(i % 5)})
            for i in range(n)
        ],
        name="toys",
    )  # fmt: skip


@pytest.mark.parametrize("label", ["speaker", "transcript", "digit"])
def test_wrong_label_canaries_carry_another_class_and_leave_their_source_out(label):
    corpus = _corpus()
    canaries, rest = make_canaries(corpus, "wrong-label", 12, seed=1, label=label)
    from voxaudit.models.classifier import label_function

    label_of = label_function(label)
    classes = {label_of(u) for u in corpus}
    assert canaries.count == 12 and len(canaries.utterances) == 12
    for utterance, source in zip(canaries.utterances, canaries.sources, strict=True):
        assert utterance.id.startswith("canary-")
        assert label_of(utterance) in classes and label_of(utterance) != label_of(corpus[source])
        np.testing.assert_array_equal(utterance.load(), corpus[source].load())
        assert source not in rest
    assert len(rest) == len(corpus) - 12


def test_random_transcripts_use_the_corpus_words_and_differ_from_the_recording():
    corpus = _corpus()
    canaries, _ = make_canaries(corpus, "random-transcript", 15, seed=2)
    vocabulary = {w for u in corpus for w in u.transcript.split()}
    for utterance, source in zip(canaries.utterances, canaries.sources, strict=True):
        words = utterance.transcript.split()
        assert set(words) <= vocabulary and len(words) == len(corpus[source].transcript.split())
        assert utterance.transcript != corpus[source].transcript


def test_synthetic_speakers_are_whole_units_of_new_voices_at_the_corpus_rate():
    corpus = Corpus(
        [Utterance(i, "s", samples=tone(0.1, rate=8000), sample_rate=8000) for i in "ab"]
    )
    canaries, rest = make_canaries(corpus, "synthetic-speaker", 3, seed=0, per_speaker=2)
    assert len(rest) == 2 and canaries.sources == ("",) * 6
    units = canary_units(canaries)
    assert [len(unit) for unit in units] == [2, 2, 2]
    for k, unit in enumerate(units):
        assert {u.speaker for u in unit} == {f"canary-{k:04d}"}
        assert all(u.sample_rate == 8000 and u.transcript for u in unit)
    # A speaker's utterances go in or out together.
    included = set(canaries.included_ids())
    for k, unit in enumerate(units):
        assert all((u.id in included) == bool(canaries.included[k]) for u in unit)


def test_inclusion_is_a_fair_coin_per_canary_fixed_by_the_seed():
    corpus = _corpus(2000)
    first, _ = make_canaries(corpus, "wrong-label", 1000, seed=3)
    again, _ = make_canaries(corpus, "wrong-label", 1000, seed=3)
    other, _ = make_canaries(corpus, "wrong-label", 1000, seed=4)
    np.testing.assert_array_equal(first.included, again.included)
    assert not np.array_equal(first.included, other.included)
    assert 430 < first.included.sum() < 570  # 1000 fair coins: 500 +- 4.4 sigma


@settings(max_examples=30, deadline=None)
@given(n=st.integers(4, 60), share=st.floats(0.0, 0.5), seed=st.integers(0, 2**16))
def test_canaries_and_the_rest_partition_the_corpus(n, share, seed):
    corpus = _corpus(n)
    count = max(2, int(share * n))
    canaries, rest = make_canaries(corpus, "wrong-label", count, seed=seed)
    assert sorted([*canaries.sources, *(u.id for u in rest)]) == sorted(u.id for u in corpus)
    assert len(set(canaries.sources)) == count
    joined = canary_corpus(rest, canaries)
    assert len(joined) == len(rest) + count
    assert set(canaries.included_ids()) <= {u.id for u in joined}


def test_the_record_keeps_every_canary_and_its_inclusion(tmp_path):
    canaries, _ = make_canaries(_corpus(), "random-transcript", 10, seed=5)
    canaries.save(tmp_path / "canaries.json")
    data = json.loads((tmp_path / "canaries.json").read_text())
    assert data["count"] == 10 and len(data["utterances"]) == 10
    assert [row["included"] for row in data["utterances"]] == canaries.included.tolist()
    assert [row["transcript"] for row in data["utterances"]] == [
        u.transcript for u in canaries.utterances
    ]


@pytest.mark.parametrize(
    ("kind", "count", "message"),
    [
        ("wrong-label", 30, "need at least 60 in the corpus"),
        ("wrong-label", 1, "integer >= 2"),
        ("mislabel", 5, "canary kind must be one of"),
    ],
)
def test_bad_requests_fail_with_what_to_change(kind, count, message):
    with pytest.raises(VoxauditError, match=message):
        make_canaries(_corpus(), kind, count)


def test_one_class_has_no_wrong_label():
    corpus = Corpus([Utterance(f"u{i}", "same", samples=tone(0.1), sample_rate=16000)
                     for i in range(6)])  # fmt: skip
    with pytest.raises(VoxauditError, match="at least 2 classes"):
        make_canaries(corpus, "wrong-label", 2)
