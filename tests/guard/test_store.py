"""The SQLite store: what InMemoryStore does, kept in a file across store objects.

The contract shared by every store (rings, bans, flags, memory, queries) is tested over all of
them in test_detectors.py; these are what only a store with a file has to get right.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from voxaudit.errors import VoxauditError
from voxaudit.guard.detectors import IndexDetector, MemoryDetector
from voxaudit.guard.store import InMemoryStore, SQLiteStore


@pytest.fixture
def path(tmp_path):
    return tmp_path / "state" / "guard.sqlite"  # a folder that does not exist yet


def test_the_index_ring_matches_the_in_memory_store(path):
    """Random batches, with repeated keys and more entries than a bucket holds: same rows."""
    rng = np.random.default_rng(0)
    memory = InMemoryStore(index_keys=64, bucket_size=4, max_queries=32)
    sqlite = SQLiteStore(path, index_keys=64, bucket_size=4, max_queries=32)
    for _ in range(30):
        keys = rng.integers(0, 64, size=int(rng.integers(1, 12)))
        # Entries use the top bit too: query ids of 2**31 and above.
        entries = rng.integers(1, 2**63, size=keys.size, dtype=np.uint64) * np.uint64(2)
        memory.index_add(keys, entries)
        sqlite.index_add(keys, entries)
    asked = np.array([0, 5, 5, 63, *range(64)])
    np.testing.assert_array_equal(sqlite.index_read(asked), memory.index_read(asked))
    assert sqlite.index_read(np.array([], dtype=np.int64)).shape == (0, 4)


def test_everything_survives_a_new_store_object(path):
    store = SQLiteStore(path, index_keys=64, bucket_size=4)
    store.index_add(np.array([3, 3]), np.array([7, 8], dtype=np.uint64))
    first = store.new_query("eve", 1.5)
    store.memory_push("eve", b"a", depth=2)
    store.ban("eve", {"reason": "test", "time": 2.0})
    store.add_flag({"account": "eve", "related": ["bob"]})
    store.close()

    reopened = SQLiteStore(path, index_keys=64, bucket_size=4)
    assert sorted(reopened.index_read(np.array([3]))[0].tolist()) == [0, 0, 7, 8]
    assert reopened.query_info(np.array([first])) == [("eve", 1.5, 0)]
    assert reopened.new_query("bob", 3.0) == first + 1  # ids go on: old entries stay valid
    assert reopened.memory("eve") == [b"a"]
    assert reopened.ban_of("eve") == {"reason": "test", "time": 2.0}
    assert reopened.flags() == [{"account": "eve", "related": ["bob"]}]
    assert reopened.ping()


def test_other_sizes_on_an_existing_file_are_refused(path):
    SQLiteStore(path, index_keys=64, bucket_size=4).close()
    with pytest.raises(VoxauditError, match="bucket_size"):
        SQLiteStore(path, index_keys=64, bucket_size=8)
    with pytest.raises(VoxauditError, match="index_keys"):
        SQLiteStore(path, index_keys=128, bucket_size=4)
    with pytest.raises(VoxauditError, match="index_keys"):
        SQLiteStore(path, index_keys=100)


def test_an_unusable_path_names_the_setting(tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    with pytest.raises(VoxauditError, match="store_path"):
        SQLiteStore(folder)


def test_queries_flags_and_the_file_are_bounded(path, speech, fingerprinter):
    store = SQLiteStore(path, index_keys=2**10, bucket_size=4, max_queries=64, max_flags=3)
    detector = IndexDetector(store, threshold=10)
    prints = [fingerprinter(clip) for clip in speech[:8]]
    for i in range(100):
        detector.check(f"u{i}", prints[i % 8], float(i))
    size = store.nbytes()
    for i in range(100, 300):
        detector.check(f"u{i}", prints[i % 8], float(i))
    assert store.nbytes() == size  # the rings are full: later queries overwrite, not add
    assert store.query_info(np.array([1, 2])) == [None, None]
    for i in range(5):
        store.add_flag({"n": i})
    assert store.flags() == [{"n": 2}, {"n": 3}, {"n": 4}]


def test_detectors_decide_as_on_the_in_memory_store(path, speech, fingerprinter):
    prints = [fingerprinter(clip) for clip in speech[:6]]
    traffic = [(f"u{i % 3}", prints[i % 6], float(i)) for i in range(24)]

    def decisions(store):
        detectors = [IndexDetector(store, threshold=2), MemoryDetector(store, k=3, threshold=0.9)]
        return [d.check(a, f, t) for a, f, t in traffic for d in detectors]

    expected = decisions(InMemoryStore(index_keys=2**12, bucket_size=8))
    assert decisions(SQLiteStore(path, index_keys=2**12, bucket_size=8)) == expected


def test_concurrent_writers_lose_nothing(path):
    """The gateway's threads share one store: no update is lost, no error is raised."""
    store = SQLiteStore(path, index_keys=64, bucket_size=4)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(40):
                store.new_query(f"t{n}", float(i))
                store.ban(f"t{n}-{i}", {"reason": "x"})
                store.memory_push(f"t{n}", bytes([i]), depth=5)
                store.index_read(np.array([n, i % 64]))
        except BaseException as exc:  # reported below: a thread's error is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert len(store.bans()) == 6 * 40
    assert store.new_query("last", 0.0) == 6 * 40 + 1
    assert store.memory("t0") == [bytes([i]) for i in range(35, 40)]
