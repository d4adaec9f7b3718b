import json
import tempfile
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxaudit.data.corpus import Corpus, Utterance
from voxaudit.data.splits import (
    SAMPLE_POOLS,
    SCHEMA,
    SPEAKER_POOLS,
    SPEAKER_SETS,
    AuditSplit,
    SplitFormatError,
    SplitMismatchError,
    base_pool,
    make_split,
)
from voxaudit.errors import VoxauditError

PROPERTY = settings(max_examples=50, deadline=None)


def _utterance(speaker: str, i: int, size: int = 4) -> Utterance:
    samples = np.full(size, (sum(map(ord, speaker)) * 31 + i) % 997 / 997, dtype=np.float32)
    return Utterance(f"{speaker}-{i:02d}", speaker, samples=samples, sample_rate=16000)


def _corpus(counts: list[int], name: str = "toy") -> Corpus:
    """One speaker per count, with that many tiny array utterances."""
    return Corpus(
        [_utterance(f"spk{s:02d}", i) for s, n in enumerate(counts) for i in range(n)], name=name
    )


corpora = st.lists(st.integers(1, 15), min_size=4, max_size=30).map(_corpus)
seeds = st.integers(0, 2**32 - 1)


def _speaker_of(corpus: Corpus) -> dict[str, str]:
    return {u.id: u.speaker for u in corpus}


def _assert_disjoint(groups: dict[str, tuple[str, ...]]) -> None:
    for (a, xs), (b, ys) in combinations(groups.items(), 2):
        assert not set(xs) & set(ys), f"{a} and {b} overlap"


def _try_speaker_split(corpus: Corpus, **options) -> AuditSplit | None:
    """A speaker-level split, or None when the corpus is too small for one (checked message)."""
    try:
        return make_split(corpus, "speaker", **options)
    except ValueError as exc:
        assert "needs at least" in str(exc) or "unseen voice" in str(exc), exc
        return None


@PROPERTY
@given(corpora, seeds)
def test_sample_level_pools_are_disjoint_balanced_and_share_speakers(corpus, seed):
    split = make_split(corpus, seed=seed)
    pools = split.pools
    assert set(pools) == set(SAMPLE_POOLS)
    _assert_disjoint(pools)
    assert sorted(i for ids in pools.values() for i in ids) == sorted(corpus.ids)
    assert abs(len(pools["target_train"]) - len(pools["target_holdout"])) <= 1
    assert abs(len(pools["shadow_train"]) - len(pools["shadow_holdout"])) <= 1
    assert abs(len(pools["target_train"]) + len(pools["target_holdout"]) - len(corpus) / 2) <= 1
    speaker_of = _speaker_of(corpus)
    seen = {name: {speaker_of[i] for i in ids} for name, ids in pools.items()}
    for speaker, utts in corpus.by_speaker().items():
        if len(utts) >= 4:
            assert all(speaker in seen[name] for name in SAMPLE_POOLS), speaker
    assert split.speakers == {"all": tuple(corpus.speakers)}
    assert split.train_ids("shadow-0") == pools["shadow_train"]
    assert split.holdout_ids("shadow-0") == pools["shadow_holdout"]
    assert split.unseen_ids() == ()


@PROPERTY
@given(corpora, seeds, st.sampled_from([0.0, 0.2, 0.5]), st.sampled_from([0.2, 0, 2]))
def test_speaker_level_sets_are_disjoint_and_balanced(corpus, seed, unseen, reference):
    split = _try_speaker_split(
        corpus, seed=seed, unseen_fraction=unseen, reference_speakers=reference
    )
    if split is None:
        return
    pools, sets = split.pools, split.speakers
    assert set(pools) == set(SPEAKER_POOLS) and set(sets) == set(SPEAKER_SETS)
    _assert_disjoint(pools)
    _assert_disjoint(sets)
    assert sorted(s for spk in sets.values() for s in spk) == corpus.speakers
    assert sorted(i for ids in pools.values() for i in ids) == sorted(corpus.ids)
    for side in ("target", "shadow"):
        assert 0 <= len(sets[f"{side}_member"]) - len(sets[f"{side}_nonmember"]) <= 1
    speaker_of = _speaker_of(corpus)
    owners = {
        "target_train": "target_member",
        "target_member_unseen": "target_member",
        "target_holdout": "target_nonmember",
        "shadow_train": "shadow_member",
        "shadow_member_unseen": "shadow_member",
        "shadow_holdout": "shadow_nonmember",
        "reference": "reference",
    }
    for pool, owner in owners.items():
        assert {speaker_of[i] for i in pools[pool]} <= set(sets[owner])
    # Every member speaker keeps a training voice; unseen voices exist only when asked for.
    assert {speaker_of[i] for i in pools["target_train"]} == set(sets["target_member"])
    assert bool(pools["target_member_unseen"]) == (unseen > 0)


@PROPERTY
@given(corpora, seeds, st.integers(2, 3), st.sampled_from(["sample", "speaker"]))
def test_disjoint_shadow_models_partition_the_shadow_pools(corpus, seed, n, level):
    options = {"seed": seed, "n_shadow": n, "reference_speakers": 0, "unseen_fraction": 0.0}
    try:
        split = make_split(corpus, level, **options)
    except ValueError as exc:
        assert "needs at least" in str(exc)
        return
    assert split.roles == ("target", *(f"shadow-{k}" for k in range(n)))
    parts = {
        f"{kind}{k}": ids
        for k in range(n)
        for kind, ids in (("train", split.shadow_train[k]), ("holdout", split.shadow_holdout[k]))
    }
    _assert_disjoint(parts)
    assert all(parts.values())
    assert sorted(i for t in split.shadow_train for i in t) == list(split.pools["shadow_train"])
    assert sorted(i for h in split.shadow_holdout for i in h) == list(split.pools["shadow_holdout"])
    if level == "sample":
        sizes = [len(t) for t in split.shadow_train]
        assert max(sizes) - min(sizes) <= 1
    else:
        speaker_of = _speaker_of(corpus)
        model_speakers = {k: {speaker_of[i] for i in parts[k]} for k in parts}
        _assert_disjoint({k: tuple(v) for k, v in model_speakers.items()})


@PROPERTY
@given(
    corpora,
    seeds,
    st.integers(2, 5),
    st.sampled_from(["sample", "speaker"]),
    st.sampled_from(["shadow", "all", "target"]),
)
def test_halves_put_each_unit_in_half_the_models(corpus, seed, n, level, halves_population):
    options = {"seed": seed, "n_shadow": n, "shadow_mode": "halves"}
    options |= {"halves_population": halves_population, "reference_speakers": 0}
    try:
        split = make_split(corpus, level, **options)
    except ValueError as exc:
        assert "needs at least" in str(exc) or "unseen voice" in str(exc)
        return
    pools = split.pools
    population = set()
    if halves_population in ("shadow", "all"):
        population |= set(pools["shadow_train"] + pools["shadow_holdout"])
        population |= set(pools.get("shadow_member_unseen", ()))
    if halves_population in ("target", "all"):
        population |= set(pools["target_train"] + pools["target_holdout"])
        population |= set(pools.get("target_member_unseen", ()))
    for train, holdout, unseen in zip(
        split.shadow_train, split.shadow_holdout, split.shadow_unseen, strict=True
    ):
        assert train and holdout
        assert not set(train) & set(holdout) and not set(unseen) & set(train + holdout)
        assert set(train + holdout + unseen) == population
    if level == "sample":
        units = sorted(population)
        in_count = np.array([[u in set(t) for u in units] for t in split.shadow_train])
    else:
        speaker_of = _speaker_of(corpus)
        units = sorted({speaker_of[i] for i in population})
        trained = [{speaker_of[i] for i in t} for t in split.shadow_train]
        in_count = np.array([[u in t for u in units] for t in trained])
    per_unit = in_count.sum(axis=0)
    assert set(per_unit) <= {n // 2, (n + 1) // 2}
    units_, matrix = split.membership_matrix()
    assert matrix.shape == (n, len(units_))


@PROPERTY
@given(corpora, seeds, st.integers(1, 4), st.sampled_from(["sample", "speaker"]))
def test_paired_halves_keep_every_even_prefix_of_models_balanced(corpus, seed, pairs, level):
    options = {"seed": seed, "n_shadow": 2 * pairs, "shadow_mode": "halves"}
    options |= {"paired_halves": True, "reference_speakers": 0, "unseen_fraction": 0.0}
    try:
        split = make_split(corpus, level, **options)
    except ValueError as exc:
        assert "needs at least" in str(exc) or "too few" in str(exc)
        return
    assert split.params["paired_halves"] is True
    _, matrix = split.membership_matrix()
    shadow = matrix[:, matrix.any(axis=0)]
    for k in range(2, 2 * pairs + 1, 2):
        assert (shadow[:k].sum(axis=0) == k // 2).all(), f"the first {k} models are unbalanced"


def test_paired_halves_are_refused_where_they_cannot_pair():
    corpus = _corpus([4] * 8)
    with pytest.raises(ValueError, match="paired_halves applies to shadow_mode='halves'"):
        make_split(corpus, n_shadow=3, shadow_mode="halves", paired_halves=True)
    with pytest.raises(ValueError, match="paired_halves applies"):
        make_split(corpus, n_shadow=2, paired_halves=True)
    # Unpaired splits keep their files: the option is recorded only when set.
    assert "paired_halves" not in make_split(corpus, n_shadow=2, shadow_mode="halves").params


@PROPERTY
@given(corpora, seeds, st.randoms(use_true_random=False), st.sampled_from(["sample", "speaker"]))
def test_split_depends_only_on_ids_and_seed(corpus, seed, random, level):
    options = {"n_shadow": 2, "shadow_mode": "halves", "reference_speakers": 0}
    options["unseen_fraction"] = 0.0
    first = make_split(corpus, level, seed=seed, **options)
    shuffled = list(corpus)
    random.shuffle(shuffled)
    assert make_split(Corpus(shuffled, name="toy"), level, seed=seed, **options) == first
    assert make_split(corpus, level, seed=seed, **options) == first
    if level == "sample" and len(corpus) >= 12:
        assert make_split(corpus, level, seed=seed + 1, **options).pools != first.pools


@PROPERTY
@given(
    corpora, seeds, st.sampled_from(["sample", "speaker"]), st.sampled_from(["disjoint", "halves"])
)
def test_save_load_round_trip(corpus, seed, level, mode):
    try:
        split = make_split(corpus, level, seed=seed, n_shadow=2, shadow_mode=mode)
    except ValueError as exc:
        assert "needs at least" in str(exc) or "unseen voice" in str(exc)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = split.save(Path(tmp) / "splits" / "split.json")
        assert AuditSplit.load(path) == split
        assert json.loads(path.read_text())["schema"] == SCHEMA
        assert [p.name for p in path.parent.iterdir()] == ["split.json"]


@PROPERTY
@given(corpora, seeds, st.data())
def test_check_refuses_a_changed_corpus(corpus, seed, data):
    split = make_split(corpus, seed=seed)
    split.check(corpus)
    split.check(Corpus(reversed(corpus.utterances), name="toy"))
    victim = data.draw(st.integers(0, len(corpus) - 1))
    fewer = Corpus([u for k, u in enumerate(corpus) if k != victim], name="toy")
    with pytest.raises(SplitMismatchError):
        split.check(fewer)
    old = corpus[victim]
    grown = _utterance(old.speaker, 99, size=5)
    changed = [
        u
        if k != victim
        else Utterance(old.id, old.speaker, samples=grown.samples, sample_rate=16000)
        for k, u in enumerate(corpus)
    ]
    with pytest.raises(SplitMismatchError):
        split.check(Corpus(changed, name="toy"))


def test_mismatch_message_names_fingerprints_corpus_and_fix():
    corpus = _corpus([4, 4, 4, 4], name="digits")
    split = make_split(corpus)
    other = _corpus([4, 4, 4, 3], name="digits")
    with pytest.raises(SplitMismatchError) as info:
        split.check(other)
    message = str(info.value)
    assert corpus.fingerprint()[:16] in message and other.fingerprint()[:16] in message
    assert "'digits'" in message and "voxaudit split" in message
    assert isinstance(info.value, ValueError)


def test_small_corpora_get_clear_errors():
    with pytest.raises(ValueError, match="empty"):
        make_split(Corpus([], name="none"))
    with pytest.raises(ValueError, match="at least 4 utterances; it has 3"):
        make_split(_corpus([1, 1, 1]))
    with pytest.raises(ValueError, match="at least 12 utterances; it has 6"):
        make_split(_corpus([3, 3]), n_shadow=3)
    with pytest.raises(ValueError, match=r"has 4 speakers.*needs at least 5"):
        make_split(_corpus([3] * 4), "speaker")
    assert make_split(_corpus([3] * 4), "speaker", reference_speakers=0).speakers["reference"] == ()
    with pytest.raises(ValueError, match="needs at least 11"):
        make_split(_corpus([3] * 6), "speaker", n_shadow=2, reference_speakers=3)
    with pytest.raises(ValueError, match="unseen voice"):
        make_split(_corpus([1] * 10), "speaker")
    assert make_split(_corpus([1] * 10), "speaker", unseen_fraction=0).pools["reference"]


def test_bad_options_are_named():
    corpus = _corpus([4] * 6)
    cases = [
        ({"level": "utterance"}, "unknown split level 'utterance'"),
        ({"shadow_mode": "both"}, "unknown shadow_mode 'both'"),
        ({"shadow_mode": "halves"}, "needs n_shadow >= 2"),
        ({"target_fraction": 1.0}, "target_fraction"),
        ({"n_shadow": 0}, "n_shadow"),
        ({"seed": -1}, "seed"),
        ({"unseen_fraction": 1.0}, "unseen_fraction"),
        ({"reference_speakers": 1.5}, "reference_speakers"),
        ({"max_per_speaker": 0}, "max_per_speaker"),
    ]
    for options, message in cases:
        with pytest.raises(ValueError, match=message):
            make_split(corpus, **options)


def test_single_utterance_speakers_and_caps():
    split = make_split(_corpus([1, 1, 1, 1, 1, 9]), max_per_speaker=4)
    assert sum(len(ids) for ids in split.pools.values()) == 9
    assert sum(i.startswith("spk05") for ids in split.pools.values() for i in ids) == 4
    assert split.params["max_per_speaker"] == 4


def test_shadow_options_leave_the_target_pools_alone():
    corpus = _corpus([6] * 12)
    for level in ("sample", "speaker"):
        base = make_split(corpus, level, seed=3)
        for options in ({"n_shadow": 2}, {"n_shadow": 4, "shadow_mode": "halves"}):
            other = make_split(corpus, level, seed=3, **options)
            assert other.train_ids() == base.train_ids()
            assert other.holdout_ids() == base.holdout_ids()
            assert other.unseen_ids() == base.unseen_ids()


def test_roles_and_membership_matrix():
    split = make_split(_corpus([4] * 8), n_shadow=2)
    assert split.roles == ("target", "shadow-0", "shadow-1")
    with pytest.raises(ValueError, match="valid roles: target, shadow-0, shadow-1"):
        split.train_ids("shadow-2")
    units, matrix = split.membership_matrix()
    assert len(units) == 32 and matrix.shape == (2, 32)
    for m in range(2):
        assert {u for u, k in zip(units, matrix[m], strict=True) if k} == set(split.shadow_train[m])
    assert not matrix[:, [units.index(u) for u in split.train_ids()]].any()


def test_speaker_level_membership_counts_unseen_voices():
    split = make_split(_corpus([5] * 10), "speaker", reference_speakers=0)
    units, matrix = split.membership_matrix()
    members = {u for u, k in zip(units, matrix[0], strict=True) if k}
    assert members == set(split.train_ids("shadow-0") + split.unseen_ids("shadow-0"))
    assert split.unseen_ids("shadow-0") == split.pools["shadow_member_unseen"]


def test_online_halves_let_shadow_models_train_on_target_candidates():
    corpus = _corpus([4] * 8)
    offline = make_split(corpus, n_shadow=4, shadow_mode="halves")
    target = set(offline.train_ids() + offline.holdout_ids())
    assert not target & {i for t in offline.shadow_train for i in t}
    for population in ("all", "target"):
        online = make_split(corpus, n_shadow=4, shadow_mode="halves", halves_population=population)
        assert online.pools == offline.pools
        assert target <= {i for t in online.shadow_train for i in t}
    # Drawn like the target: on average a reference trains on as many utterances as it.
    assert np.mean([len(t) for t in online.shadow_train]) == len(offline.train_ids())
    with pytest.raises(VoxauditError, match="halves_population must be one of"):
        make_split(corpus, n_shadow=2, shadow_mode="halves", halves_population="target+")
    with pytest.raises(VoxauditError, match="applies to shadow_mode='halves'"):
        make_split(corpus, n_shadow=2, halves_population="target")


def test_summary_and_saved_document():
    split = make_split(_corpus([4] * 8, name="digits"), "speaker", n_shadow=1)
    summary = split.summary()
    assert summary["corpus"] == "digits" and summary["level"] == "speaker"
    assert sum(summary["utterances"].values()) == 32
    assert summary["speakers"]["reference"] == 2
    assert summary["shadow_models"][0]["train"] == len(split.train_ids("shadow-0"))
    document = split.to_dict()
    assert list(document)[:3] == ["schema", "version", "level"]
    assert document["params"]["unseen_fraction"] == 0.2


def test_load_names_the_file_and_the_bad_field(tmp_path):
    good = make_split(_corpus([4] * 6)).to_dict()
    path = tmp_path / "split.json"

    def load_error(text: str) -> str:
        path.write_text(text)
        with pytest.raises(SplitFormatError) as info:
            AuditSplit.load(path)
        assert str(path) in str(info.value)
        return str(info.value)

    assert "invalid JSON" in load_error("{not json")
    assert "expected a JSON object" in load_error("[]")
    assert "'schema'" in load_error(json.dumps({**good, "schema": "other/1"}))
    assert "missing field 'pools'" in load_error(
        json.dumps({k: v for k, v in good.items() if k != "pools"})
    )
    assert "field 'level'" in load_error(json.dumps({**good, "level": "phoneme"}))
    assert "'target_holdout'" in load_error(json.dumps({**good, "pools": {"target_train": ["a"]}}))
    assert "field 'seed'" in load_error(json.dumps({**good, "seed": "zero"}))
    assert "'shadow_*'" in load_error(json.dumps({**good, "shadow_unseen": []}))


def test_a_membership_split_without_shadow_models_reads_back(tmp_path):
    corpus = _corpus([4] * 4)
    ids = list(corpus.ids)
    split = AuditSplit.from_membership(corpus, ids[:6], ids[6:12])
    assert split.n_shadow == 0 and split.roles == ("target",)
    assert AuditSplit.load(split.save(tmp_path / "split.json")) == split


def test_halves_memberships_are_independent_across_units():
    corpus = _corpus([10] * 40)
    split = make_split(corpus, n_shadow=16, shadow_mode="halves", seed=3)
    _, matrix = split.membership_matrix()
    shadow = matrix[:, matrix.any(axis=0)].astype(float)
    sizes = shadow.sum(axis=1)
    assert np.all(np.abs(sizes - shadow.shape[1] / 2) < 0.15 * shadow.shape[1])
    # Neighbouring units must not be tied together (e.g. exact complements of each other).
    signs = 2 * shadow - 1
    pair_corr = (signs[:, :-1] * signs[:, 1:]).mean(axis=0)
    assert abs(pair_corr.mean()) < 0.1


def _labelled_corpus(counts: list[list[int]]) -> Corpus:
    """Speaker s says word w counts[s][w] times."""
    return Corpus(
        [
            Utterance(
                f"spk{s:02d}-w{w}-{i:02d}", f"spk{s:02d}", transcript=f"word {w}",
                samples=np.zeros(4, np.float32), sample_rate=16000,
            )
            for s, words in enumerate(counts)
            for w, n in enumerate(words)
            for i in range(n)
        ],
        name="words",
    )  # fmt: skip


labelled_corpora = (
    st.lists(st.lists(st.integers(0, 9), min_size=3, max_size=3), min_size=4, max_size=12)
    .filter(lambda c: sum(map(sum, c)) >= 8)
    .map(_labelled_corpus)
)


@PROPERTY
@given(labelled_corpora, seeds, st.sampled_from(["disjoint", "halves"]))
def test_label_stratified_pools_balance_every_speaker_and_word(corpus, seed, mode):
    split = make_split(corpus, seed=seed, n_shadow=2, shadow_mode=mode, stratify_labels=True)
    pools = split.pools
    _assert_disjoint(pools)
    assert sorted(i for ids in pools.values() for i in ids) == sorted(corpus.ids)
    assert abs(len(pools["target_train"]) - len(pools["target_holdout"])) <= 1
    assert split.params["stratify_labels"] is True
    for (speaker, word), ids in _groups_by_speaker_and_word(corpus).items():
        count = {name: len(set(ids) & set(pool)) for name, pool in pools.items()}
        target = count["target_train"] + count["target_holdout"]
        shadow = count["shadow_train"] + count["shadow_holdout"]
        # Each (speaker, word) is dealt half to the target (within the carried rounding) and,
        # within each side, alternately to train and holdout.
        assert abs(target - shadow) <= 2, (speaker, word, count)
        assert abs(count["target_train"] - count["target_holdout"]) <= 1, (speaker, word, count)
    # And within one for every speaker and every word as a whole, on both sides.
    for side in ("target", "shadow"):
        train, holdout = set(pools[f"{side}_train"]), set(pools[f"{side}_holdout"])
        for key in (lambda u: u.speaker, lambda u: u.transcript):
            for value in {key(u) for u in corpus}:
                ids = {u.id for u in corpus if key(u) == value}
                assert abs(len(ids & train) - len(ids & holdout)) <= 1, (side, value)


def _groups_by_speaker_and_word(corpus: Corpus) -> dict[tuple[str, str], list[str]]:
    groups: dict[tuple[str, str], list[str]] = {}
    for u in corpus:
        groups.setdefault((u.speaker, u.transcript), []).append(u.id)
    return groups


def test_label_stratification_evens_out_the_words_members_and_non_members_hold():
    # 6 speakers x 10 words x 10 takes, as FSDD capped at 100 per speaker.
    corpus = _labelled_corpus([[10] * 10] * 6)
    spread = {}
    for stratify in (False, True):
        split = make_split(corpus, seed=0, stratify_labels=stratify)
        word = {u.id: u.transcript for u in corpus}
        members = [word[i] for i in split.pools["target_train"]]
        holdout = [word[i] for i in split.pools["target_holdout"]]
        spread[stratify] = max(abs(members.count(w) - holdout.count(w)) for w in set(word.values()))
    assert spread[True] <= 6 < spread[False]  # stratified: at most one per speaker


def test_label_stratification_needs_transcripts_and_a_sample_level_split():
    with pytest.raises(ValueError, match="no transcripts"):
        make_split(_corpus([4, 4, 4, 4]), stratify_labels=True)
    with pytest.raises(ValueError, match="sample-level"):
        make_split(_labelled_corpus([[4, 4, 4]] * 8), "speaker", stratify_labels=True)
    # Off, the option leaves no trace in the split's parameters (older split files stay equal).
    assert "stratify_labels" not in make_split(_labelled_corpus([[4, 4, 4]] * 4)).params


@PROPERTY
@given(corpora, seeds, st.floats(0.1, 0.9), st.sampled_from(["speakers", "recordings"]))
def test_a_base_pool_and_the_rest_cover_the_corpus_and_share_no_recording(
    corpus, seed, fraction, by
):
    try:
        pool, rest = base_pool(corpus, fraction, by=by, seed=seed)
    except VoxauditError as exc:  # a corpus too small for it says so
        assert "leaves" in str(exc)
        return
    assert pool and rest and not set(pool) & set(rest)
    assert sorted(pool + rest) == sorted(corpus.ids)
    assert (pool, rest) == base_pool(corpus, fraction, by=by, seed=seed)
    speaker_of = _speaker_of(corpus)
    if by == "speakers":  # whole speakers: no voice on both sides
        assert not {speaker_of[i] for i in pool} & {speaker_of[i] for i in rest}
    else:
        assert abs(len(pool) - fraction * len(corpus)) <= 1


def test_a_base_pool_refuses_a_share_that_leaves_it_nothing():
    with pytest.raises(VoxauditError, match=r"has 4 speakers.*leaves no speaker"):
        base_pool(_corpus([3, 3, 3, 3]), 0.1)
    with pytest.raises(VoxauditError, match="by must be one of"):
        base_pool(_corpus([3, 3, 3, 3]), 0.5, by="voices")
