"""Detectors: paper 003's account memory and the global landmark index, on every store."""

from __future__ import annotations

import numpy as np
import pytest

from voxaudit.errors import VoxauditError
from voxaudit.guard.detectors import (
    IndexDetector,
    MemoryDetector,
    decode_vectors,
    encode_vector,
    inverse_variance_weights,
    window_lengths,
)
from voxaudit.guard.store import InMemoryStore, RedisStore, SQLiteStore

from .helpers import with_noise


@pytest.fixture(scope="module")
def prints(speech, fingerprinter):
    return [fingerprinter(clip) for clip in speech]


@pytest.fixture(scope="module")
def benign(speech, fingerprinter, prints):
    """40 distinct utterances over 4 accounts, two of them re-sent once as noisy replays."""
    rng = np.random.default_rng(1)
    traffic = [(f"user{i % 4}", prints[i], float(i)) for i in range(40)]
    for index in (3, 17):
        replay = fingerprinter(with_noise(speech[index], 35.0, rng))
        traffic.append((f"user{index % 4}", replay, 40.0 + index))
    return traffic


def attack_queries(carrier, fingerprinter, n, seed=0, step=3e-4):
    """An iterative attack's queries: the carrier plus a slowly growing random perturbation."""
    rng = np.random.default_rng(seed)
    delta = np.zeros_like(carrier)
    for _ in range(n):
        delta += step * rng.standard_normal(carrier.size).astype(np.float32)
        yield fingerprinter(carrier + delta)


def test_window_lengths_follow_the_paper():
    # k = 75 gives l_max = 7: 2..7, then from 7 // 2 = 3 up to 7 again.
    assert window_lengths(13, 7).tolist() == [2, 3, 4, 5, 6, 7, 3, 4, 5, 6, 7, 3, 4]


def test_inverse_variance_weights():
    flat = inverse_variance_weights(np.full(10, 0.8), 7)
    np.testing.assert_allclose(flat, 0.1)
    # A fake query (a dip in similarity) makes its neighbourhood vary: less weight there.
    dipped = np.full(20, 0.8)
    dipped[10] = 0.05
    weights = inverse_variance_weights(dipped, 7)
    assert weights.sum() == pytest.approx(1.0)
    assert weights[10] < weights[0] and weights[10] < weights[19]
    assert (weights >= 0).all()


def test_inverse_variance_weights_match_the_papers_windows():
    similarities = np.random.default_rng(0).uniform(0.0, 1.0, 75)
    half = window_lengths(75, 7) // 2
    naive = np.array(
        [
            1 - w.std() / w.mean()
            for w in (similarities[max(0, i - h) : i + h + 1] for i, h in enumerate(half))
        ]
    )
    naive = np.clip(naive, 0, None)
    np.testing.assert_allclose(inverse_variance_weights(similarities, 7), naive / naive.sum())


def test_vectors_survive_the_store_encoding(prints):
    vectors = [p.vector for p in prints[:5]]
    decoded = decode_vectors([encode_vector(v) for v in vectors], vectors[0].size)
    np.testing.assert_allclose(decoded, np.stack(vectors), atol=1e-3)


def test_memory_detector_flags_an_attack_and_not_benign(benign, speech, fingerprinter):
    detector = MemoryDetector(k=5, min_history=5)  # paper 003: a full memory first
    threshold = detector.calibrate(benign, fpr=0.05)
    assert 0.0 < threshold < 0.6
    decisions = [
        detector.check("attacker", f, 100.0 + i)
        for i, f in enumerate(attack_queries(speech[45], fingerprinter, 25))
    ]
    flagged = [i for i, d in enumerate(decisions) if d.flagged]
    # The memory needs k queries first; the 6th is the first it can flag.
    assert flagged and flagged[0] == 5
    assert "memory score" in decisions[5].reason
    # After a flag the memory starts over (paper 003's DSR counts k queries per detection).
    assert flagged[1] == 11
    # Replayed as calibrated (fresh memories), at most fpr of the scored benign queries flag.
    fresh = MemoryDetector(k=5, threshold=threshold, min_history=5)
    replayed = [fresh.check(a, f, t) for a, f, t in benign]
    scored = len(detector.benign_scores(benign))
    assert scored >= 20
    assert sum(d.flagged for d in replayed) <= 0.05 * scored


def test_memory_detector_scores_from_the_first_query(benign, speech, fingerprinter):
    """A partial memory scores: the paper's weighted similarity times its fill n / k."""
    detector = MemoryDetector(k=5)
    attack = list(attack_queries(speech[45], fingerprinter, 6))
    scores = [detector.check("eve", f, float(i)).score for i, f in enumerate(attack)]
    assert scores[0] == 0.0  # nothing to compare the first query with
    full = MemoryDetector(k=5, min_history=5)
    full_scores = [full.check("eve", f, float(i)).score for i, f in enumerate(attack)]
    assert scores[5] == pytest.approx(full_scores[5])  # a full memory: paper 003's score
    similar = decode_vectors([encode_vector(attack[0].vector)], attack[1].vector.size)
    assert scores[1] == pytest.approx(float(similar[0] @ attack[1].vector) / 5, rel=1e-3)
    assert scores[1] < scores[2] < scores[3]  # the run fills the memory: the score grows
    # Calibrated on benign traffic at every depth, it flags the attack before a full memory.
    calibrated = MemoryDetector(k=75)
    calibrated.calibrate(benign, fpr=0.05)
    run = attack_queries(speech[46], fingerprinter, 40)
    flagged = [i for i, f in enumerate(run) if calibrated.check("eve", f, float(i)).flagged]
    assert flagged and flagged[0] < 40


def test_index_shared_recording_bans_nobody_and_a_re_recording_once_is_free(speech, fingerprinter):
    """One clip sent by accounts a, b, c (the operator's report) and each one's own noisy
    re-recording of it: no score reaches 1; a fourth variant from one account does."""
    rng = np.random.default_rng(3)
    detector = IndexDetector(threshold=1)
    clip = fingerprinter(speech[41])
    decisions = [detector.check(a, clip, float(i)) for i, a in enumerate("abc")]
    decisions += [
        detector.check(a, fingerprinter(with_noise(speech[41], 25.0, rng)), 10.0 + i)
        for i, a in enumerate("abc")
    ]
    assert not any(d.flagged for d in decisions)
    assert max(d.score for d in decisions) < 1.0
    again = fingerprinter(with_noise(speech[41], 25.0, rng))
    assert detector.check("c", again, 20.0).flagged  # c's second variant of its own


def test_memory_detector_is_blind_across_accounts(benign, speech, fingerprinter):
    """Paper 003's weakness: an attack spread over accounts never fills one memory."""
    detector = MemoryDetector(k=5, min_history=5)
    detector.calibrate(benign, fpr=0.05)
    queries = attack_queries(speech[45], fingerprinter, 40)
    decisions = [detector.check(f"sock{i % 8}", f, float(i)) for i, f in enumerate(queries)]
    assert not any(d.flagged for d in decisions)


@pytest.mark.parametrize("p_fake", [0.0, 0.6])
def test_index_detector_catches_a_spread_attack_with_fake_queries(
    benign, speech, prints, fingerprinter, p_fake
):
    detector = IndexDetector()
    threshold = detector.calibrate(benign, fpr=0.02)
    assert threshold >= 2  # the natural replays are not enough to flag
    rng = np.random.default_rng(2)
    fakes = iter(prints[40:45] * 10)
    real = attack_queries(speech[46], fingerprinter, 30)
    decisions, sent = [], 0
    while len(decisions) < 40:
        fake = rng.random() < p_fake
        account = f"sock{sent % 10}"
        decision = detector.check(account, next(fakes) if fake else next(real), float(sent))
        sent += 1
        if not fake:
            decisions.append(decision)
        if decision.flagged:
            break
    assert decisions[-1].flagged
    # Each of the 10 accounts' first variant is free; then a few more real queries suffice.
    assert len(decisions) <= 10 + threshold + 2
    assert set(decisions[-1].related) <= {f"sock{i}" for i in range(10)}
    assert len(decisions[-1].related) >= 1  # the accounts with two variants of their own


def test_index_detector_passes_held_out_benign_traffic(benign, prints):
    detector = IndexDetector()
    detector.calibrate(benign, fpr=0.02)
    decisions = [detector.check(a, f, t) for a, f, t in benign]
    assert not any(d.flagged for d in decisions)


def test_index_forgets_queries_older_than_its_window(speech, fingerprinter):
    detector = IndexDetector(window_s=60.0, threshold=3)
    queries = list(attack_queries(speech[47], fingerprinter, 7))
    for i, f in enumerate(queries[:5]):
        detector.check("a", f, float(i))
    assert detector.check("a", queries[5], 10.0).score == 5
    assert detector.check("a", queries[6], 65.0).score == 1  # only the one at t = 10 s


def test_index_counts_copies_of_one_clip_once(speech, fingerprinter):
    """A clip re-sent by many accounts scores nothing; distinct variants still count."""
    detector = IndexDetector(threshold=3)
    clip = fingerprinter(speech[40])
    scores = [detector.check(f"user{i}", clip, float(i)).score for i in range(10)]
    assert scores == [0.0] * 10
    variants = list(attack_queries(speech[40], fingerprinter, 4))
    scores = [detector.check("eve", f, 20.0 + i).score for i, f in enumerate(variants)]
    # The shared clip is shared: it holds nothing against eve; her own variants beyond the
    # first count, one each.
    assert scores == [0.0, 1.0, 2.0, 3.0]
    assert fingerprinter(speech[40]).content == clip.content != variants[0].content


def test_index_memory_is_bounded(prints):
    store = InMemoryStore(index_keys=2**10, bucket_size=4, max_queries=64)
    detector = IndexDetector(store, threshold=10)
    before = store.nbytes()
    for i in range(200):
        detector.check(f"u{i}", prints[i % 48], float(i))
    assert store.nbytes() == before
    # The oldest queries have been overwritten: their ids no longer resolve.
    assert store.query_info(np.array([1, 2]))[0] is None


def test_bad_settings_name_the_field():
    with pytest.raises(VoxauditError, match="min_history"):
        MemoryDetector(k=5, min_history=6)
    with pytest.raises(VoxauditError, match="index_keys"):
        InMemoryStore(index_keys=1000)
    with pytest.raises(VoxauditError, match="fpr"):
        MemoryDetector().calibrate([], fpr=0.0)
    with pytest.raises(VoxauditError, match="benign traffic"):
        MemoryDetector(k=5).calibrate([], fpr=0.01)


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request, redis_server_or_none, tmp_path):
    if request.param == "memory":
        return InMemoryStore(index_keys=2**12, bucket_size=4)
    if request.param == "sqlite":
        return SQLiteStore(tmp_path / "guard.sqlite", index_keys=2**12, bucket_size=4)
    if redis_server_or_none is None:
        pytest.skip("redis-server cannot run here")
    store = RedisStore(
        redis_server_or_none,
        prefix=f"test{np.random.randint(1 << 30)}",
        index_keys=2**12,
        bucket_size=4,
    )
    return store


@pytest.fixture(scope="module")
def redis_server_or_none(request):
    try:
        return request.getfixturevalue("redis_server")
    except pytest.skip.Exception:
        return None


def test_store_index_is_a_ring_per_bucket(store):
    keys = np.array([5, 5, 5, 7, 5, 5], dtype=np.int64)
    store.index_add(keys, np.arange(1, 7, dtype=np.uint64))
    rows = store.index_read(np.array([5, 7, 9]))
    assert rows.shape == (3, 4)
    assert sorted(rows[0].tolist()) == [2, 3, 5, 6]  # the four newest of bucket 5
    assert sorted(rows[1].tolist()) == [0, 0, 0, 4]
    assert not rows[2].any()


def test_store_records_bans_flags_memory_and_queries(store):
    assert store.ban_of("eve") is None
    store.ban("eve", {"reason": "first"})
    store.ban("eve", {"reason": "second"})  # the first reason stands
    assert store.ban_of("eve") == {"reason": "first"}
    assert store.bans() == {"eve": {"reason": "first"}}
    assert store.unban("eve") and not store.unban("eve")
    store.add_flag({"account": "eve", "score": 3.0})
    assert store.flags() == [{"account": "eve", "score": 3.0}]
    for i in range(5):
        store.memory_push("eve", bytes([i]), depth=3)
    assert store.memory("eve") == [b"\x02", b"\x03", b"\x04"]
    store.memory_clear("eve")
    assert store.memory("eve") == []
    first = store.new_query("eve", 12.5)
    second = store.new_query("bob", 13.0)
    assert second == first + 1
    assert store.query_info(np.array([first, second])) == [("eve", 12.5, 0), ("bob", 13.0, 0)]


def test_redis_state_survives_a_new_store_object(redis_server, benign, speech, fingerprinter):
    """A restarted gateway (a new RedisStore on the same server) keeps bans and memory."""
    prefix = "restart"
    detector = IndexDetector(RedisStore(redis_server, prefix=prefix), threshold=3)
    queries = list(attack_queries(speech[44], fingerprinter, 5))
    for i, f in enumerate(queries[:4]):
        detector.check("eve", f, float(i))
    detector.store.ban("eve", {"reason": "test"})
    restarted = IndexDetector(RedisStore(redis_server, prefix=prefix), threshold=3)
    assert restarted.check("eve", queries[4], 5.0).score == 4
    assert restarted.store.ban_of("eve") == {"reason": "test"}
