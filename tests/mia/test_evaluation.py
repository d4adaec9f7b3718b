from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.data.test_splits import _corpus
from voxaudit.data.splits import make_split
from voxaudit.errors import VoxauditError
from voxaudit.mia.evaluation import evaluation_set

PROPERTY = settings(max_examples=40, deadline=None)


@PROPERTY
@given(
    counts=st.lists(st.integers(2, 12), min_size=6, max_size=24),
    seed=st.integers(0, 1000),
    cap=st.one_of(st.none(), st.integers(1, 20)),
)
def test_sample_level_sets_are_balanced_disjoint_and_follow_the_split(counts, seed, cap):
    corpus = _corpus(counts)
    split = make_split(corpus, "sample", seed=seed, n_shadow=2)
    for role in split.roles:
        evaluated = evaluation_set(split, corpus, role, max_per_side=cap, seed=seed)
        members = {i for i, m in zip(evaluated.ids, evaluated.is_member, strict=True) if m}
        others = set(evaluated.ids) - members
        assert evaluated.n_members == evaluated.n_nonmembers == len(members) == len(others)
        assert cap is None or len(members) <= cap
        assert members <= set(split.train_ids(role))
        assert others <= set(split.holdout_ids(role))
        assert len(set(evaluated.ids)) == len(evaluated)


@PROPERTY
@given(
    counts=st.lists(st.integers(3, 12), min_size=12, max_size=30),
    seed=st.integers(0, 1000),
    evidence=st.sampled_from(["unseen", "trained"]),
)
def test_speaker_level_sets_balance_speakers_and_utterances(counts, seed, evidence):
    corpus = _corpus(counts)
    split = make_split(corpus, "speaker", seed=seed)
    evaluated = evaluation_set(split, corpus, "target", evidence=evidence, seed=seed)
    member_speakers = Counter(
        s for s, m in zip(evaluated.speakers, evaluated.is_member, strict=True) if m
    )
    other_speakers = Counter(
        s for s, m in zip(evaluated.speakers, evaluated.is_member, strict=True) if not m
    )
    assert len(member_speakers) == len(other_speakers) >= 1
    assert not set(member_speakers) & set(other_speakers)
    # Equal utterances per speaker on both sides, so the count tells nothing.
    assert len(set(member_speakers.values()) | set(other_speakers.values())) == 1
    assert set(member_speakers) <= set(split.speakers["target_member"])
    pool = split.unseen_ids("target") if evidence == "unseen" else split.train_ids("target")
    members = {i for i, m in zip(evaluated.ids, evaluated.is_member, strict=True) if m}
    assert members <= set(pool)


def test_trained_ids_restrict_members_to_what_the_model_trained_on():
    corpus = _corpus([10] * 8)
    split = make_split(corpus, "sample", seed=1)
    trained = split.train_ids("target")[::2]
    evaluated = evaluation_set(split, corpus, "target", trained=trained)
    assert set(np.array(evaluated.ids)[evaluated.is_member]) <= set(trained)
    assert evaluated.n_members == evaluated.n_nonmembers == len(trained)


def test_the_same_seed_gives_the_same_set_and_bad_evidence_is_refused():
    corpus = _corpus([10] * 8)
    split = make_split(corpus, "sample", seed=1)
    first = evaluation_set(split, corpus, "target", max_per_side=5, seed=3)
    again = evaluation_set(split, corpus, "target", max_per_side=5, seed=3)
    assert first.ids == again.ids
    with pytest.raises(VoxauditError, match="evidence"):
        evaluation_set(split, corpus, "target", evidence="guess")
    speaker_split = make_split(corpus, "speaker", seed=1, unseen_fraction=0.0)
    with pytest.raises(VoxauditError, match="unseen"):
        evaluation_set(speaker_split, corpus, "target")
