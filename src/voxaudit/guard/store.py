"""Where the guard keeps its state: detector memory, the landmark index, flags and bans.

``InMemoryStore`` lives in one process and is bounded by construction: the index is a fixed
table of ``index_keys`` buckets of ``bucket_size`` entries, each bucket a ring that overwrites
its oldest entry, and query records live in a ring of ``max_queries``. ``SQLiteStore`` (the
gateway's default) keeps the same rings in one SQLite file, so bans, flags, memory and the index
survive a crash and a restart of a single gateway. ``RedisStore`` keeps the same structures in
Redis (bounded lists with a time to live), so several gateway replicas share one state.

Index entries are uint64: query id (32 bits) | anchor frame (16 bits) | hash tag (16 bits);
0 marks an empty slot, so query ids start at 1.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from voxaudit.errors import VoxauditError


class GuardStore(Protocol):
    """The operations detectors and the gateway need; both stores implement all of them."""

    index_keys: int
    bucket_size: int

    def index_add(self, keys: np.ndarray, entries: np.ndarray) -> None: ...

    def index_read(self, keys: np.ndarray) -> np.ndarray: ...

    def new_query(self, account: str, timestamp: float, content: int = 0) -> int: ...

    def query_info(self, ids: np.ndarray) -> list[tuple[str, float, int] | None]: ...

    def memory_push(self, account: str, item: bytes, depth: int) -> None: ...

    def memory(self, account: str) -> list[bytes]: ...

    def memory_clear(self, account: str) -> None: ...

    def ban(self, account: str, reason: dict[str, Any]) -> None: ...

    def unban(self, account: str) -> bool: ...

    def ban_of(self, account: str) -> dict[str, Any] | None: ...

    def bans(self) -> dict[str, dict[str, Any]]: ...

    def add_flag(self, record: dict[str, Any]) -> None: ...

    def flags(self) -> list[dict[str, Any]]: ...

    def nbytes(self) -> int: ...

    def ping(self) -> bool:
        """True when the state can be reached; raises (or is False) when it cannot."""
        ...


def _check_sizes(index_keys: int, bucket_size: int) -> None:
    if index_keys < 1 or index_keys & (index_keys - 1):
        raise VoxauditError(f"index_keys: a power of two; got {index_keys}")
    if bucket_size < 1:
        raise VoxauditError(f"bucket_size: at least 1; got {bucket_size}")


class InMemoryStore:
    """Process-local state in fixed-size numpy tables (memory does not grow with traffic)."""

    def __init__(
        self,
        index_keys: int = 2**18,
        bucket_size: int = 16,
        max_queries: int = 2**20,
        max_flags: int = 10_000,
    ) -> None:
        _check_sizes(index_keys, bucket_size)
        self.index_keys = index_keys
        self.bucket_size = bucket_size
        self._table = np.zeros((index_keys, bucket_size), dtype=np.uint64)
        self._head = np.zeros(index_keys, dtype=np.uint32)
        self._query_ids = np.zeros(max_queries, dtype=np.uint32)
        self._query_accounts = np.zeros(max_queries, dtype=np.int32)
        self._query_times = np.zeros(max_queries, dtype=np.float64)
        self._query_contents = np.zeros(max_queries, dtype=np.uint64)
        self._last_id = 0
        self._account_ids: dict[str, int] = {}
        self._account_names: list[str] = []
        self._memories: dict[str, deque[bytes]] = {}
        self._bans: dict[str, dict[str, Any]] = {}
        self._flags: deque[dict[str, Any]] = deque(maxlen=max_flags)

    def index_add(self, keys: np.ndarray, entries: np.ndarray) -> None:
        keys = np.asarray(keys, dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        keys, entries = keys[order], np.asarray(entries, dtype=np.uint64)[order]
        # Entries for the same bucket take consecutive ring slots, in the order given.
        first = np.searchsorted(keys, keys, side="left")
        rank = np.arange(keys.size) - first
        slots = (self._head[keys].astype(np.int64) + rank) % self.bucket_size
        self._table[keys, slots] = entries
        unique, counts = np.unique(keys, return_counts=True)
        self._head[unique] = (self._head[unique] + counts) % self.bucket_size

    def index_read(self, keys: np.ndarray) -> np.ndarray:
        return self._table[np.asarray(keys, dtype=np.int64)]

    def new_query(self, account: str, timestamp: float, content: int = 0) -> int:
        self._last_id += 1
        if self._last_id >= 2**32:
            raise VoxauditError("query ids: the 32-bit id space is used up; restart the store")
        slot = self._last_id % self._query_ids.size
        self._query_ids[slot] = self._last_id
        self._query_accounts[slot] = self._intern(account)
        self._query_times[slot] = timestamp
        self._query_contents[slot] = content
        return self._last_id

    def query_info(self, ids: np.ndarray) -> list[tuple[str, float, int] | None]:
        ids = np.asarray(ids, dtype=np.int64)
        slots = ids % self._query_ids.size
        # A slot reused by a newer query means the one asked for has expired.
        alive = self._query_ids[slots] == ids
        names, times = self._query_accounts[slots], self._query_times[slots]
        contents = self._query_contents[slots]
        return [
            (self._account_names[names[i]], float(times[i]), int(contents[i])) if alive[i] else None
            for i in range(ids.size)
        ]

    def memory_push(self, account: str, item: bytes, depth: int) -> None:
        memory = self._memories.get(account)
        if memory is None or memory.maxlen != depth:
            memory = self._memories[account] = deque(memory or (), maxlen=depth)
        memory.append(item)

    def memory(self, account: str) -> list[bytes]:
        return list(self._memories.get(account, ()))

    def memory_clear(self, account: str) -> None:
        self._memories.pop(account, None)

    def ban(self, account: str, reason: dict[str, Any]) -> None:
        self._bans.setdefault(account, reason)

    def unban(self, account: str) -> bool:
        return self._bans.pop(account, None) is not None

    def ban_of(self, account: str) -> dict[str, Any] | None:
        return self._bans.get(account)

    def bans(self) -> dict[str, dict[str, Any]]:
        return dict(self._bans)

    def add_flag(self, record: dict[str, Any]) -> None:
        self._flags.append(record)

    def flags(self) -> list[dict[str, Any]]:
        return list(self._flags)

    def nbytes(self) -> int:
        """Bytes held by the index and query tables, plus the detector memories' items."""
        tables = (
            self._table.nbytes
            + self._head.nbytes
            + self._query_ids.nbytes
            + self._query_accounts.nbytes
            + self._query_times.nbytes
            + self._query_contents.nbytes
        )
        return tables + sum(len(i) for m in self._memories.values() for i in m)

    def ping(self) -> bool:
        return True  # the state is this process's memory

    def _intern(self, account: str) -> int:
        index = self._account_ids.get(account)
        if index is None:
            index = self._account_ids[account] = len(self._account_names)
            self._account_names.append(account)
        return index


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS buckets (key INTEGER PRIMARY KEY, head INTEGER NOT NULL,
    entries BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS queries (slot INTEGER PRIMARY KEY, id INTEGER NOT NULL,
    account TEXT NOT NULL, time REAL NOT NULL, content INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS memories (seq INTEGER PRIMARY KEY, account TEXT NOT NULL,
    item BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS memories_by_account ON memories (account, seq);
CREATE TABLE IF NOT EXISTS bans (account TEXT PRIMARY KEY, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS flags (seq INTEGER PRIMARY KEY, record TEXT NOT NULL);
"""
#: Rows asked for in one ``IN (...)``, well under SQLite's limit on bound parameters.
_SQLITE_CHUNK = 500


class SQLiteStore:
    """``InMemoryStore``'s rings in one SQLite file, so that state survives a crash or restart.

    Each index bucket is one row (its ring head and ``bucket_size`` uint64 entries as a blob),
    so the file is bounded like ``InMemoryStore``'s tables, and each ``index_add`` is one
    transaction. The file is in WAL mode with ``synchronous=NORMAL``: a committed write
    survives the process being killed (only a power cut may lose the last ones), and a commit
    costs no fsync. One connection is shared by the gateway's threads behind a lock. The
    sizes are recorded in the file, and reopening it with other sizes is refused, since the
    buckets' layout and keys depend on them. Meant for one gateway process; replicas share
    state through ``RedisStore``.
    """

    def __init__(
        self,
        path: str | Path = "voxaudit-guard.sqlite",
        index_keys: int = 2**18,
        bucket_size: int = 16,
        max_queries: int = 2**20,
        max_flags: int = 10_000,
    ) -> None:
        _check_sizes(index_keys, bucket_size)
        self.index_keys = index_keys
        self.bucket_size = bucket_size
        self.max_queries = max_queries
        self.max_flags = max_flags
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are the explicit BEGIN IMMEDIATE of _write.
            self._db = sqlite3.connect(
                self.path, timeout=10.0, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SQLITE_SCHEMA)
            with self._write() as db:
                sizes = {"index_keys": index_keys, "bucket_size": bucket_size, "last_query": 0}
                db.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)", sizes.items())
                stored = dict(db.execute("SELECT name, value FROM meta").fetchall())
        except (OSError, sqlite3.Error) as exc:
            raise VoxauditError(
                f"store_path: cannot use {self.path} as a SQLite store: {exc}"
            ) from exc
        for name in ("index_keys", "bucket_size"):
            if stored[name] != getattr(self, name):
                self._db.close()
                raise VoxauditError(
                    f"{name}: {self.path} was made with {name} = {stored[name]}; got "
                    f"{getattr(self, name)} (use another store_path, or the same {name})"
                )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, under the lock; IMMEDIATE takes the file's write lock at the
        start, so a read-modify-write (a ring update) cannot interleave with another writer."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, sql: str, parameters: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, tuple(parameters)).fetchall()

    def _where_in(self, sql: str, values: list[int]) -> list[tuple[Any, ...]]:
        """The rows of ``sql`` (ending in ``IN``) for ``values``, asked for in chunks."""
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(values), _SQLITE_CHUNK):
            chunk = values[start : start + _SQLITE_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows.extend(self._db.execute(f"{sql} ({marks})", chunk).fetchall())
        return rows

    def _buckets(self, unique: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ring heads and entries of the buckets ``unique`` (sorted keys); zeros where empty.
        The caller holds the lock."""
        heads = np.zeros(unique.size, dtype=np.int64)
        table = np.zeros((unique.size, self.bucket_size), dtype=np.uint64)
        found = self._where_in(
            "SELECT key, head, entries FROM buckets WHERE key IN", unique.tolist()
        )
        for key, head, blob in found:
            i = int(np.searchsorted(unique, key))
            heads[i] = head
            table[i] = np.frombuffer(blob, dtype=np.uint64)
        return heads, table

    def index_add(self, keys: np.ndarray, entries: np.ndarray) -> None:
        keys = np.asarray(keys, dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        keys, entries = keys[order], np.asarray(entries, dtype=np.uint64)[order]
        unique, position, counts = np.unique(keys, return_inverse=True, return_counts=True)
        with self._write() as db:
            heads, table = self._buckets(unique)
            # The ring arithmetic of InMemoryStore.index_add, over the buckets touched.
            first = np.searchsorted(keys, keys, side="left")
            rank = np.arange(keys.size) - first
            table[position, (heads[position] + rank) % self.bucket_size] = entries
            heads = (heads + counts) % self.bucket_size
            db.executemany(
                "INSERT OR REPLACE INTO buckets VALUES (?, ?, ?)",
                zip(unique.tolist(), heads.tolist(), map(np.ndarray.tobytes, table), strict=True),
            )

    def index_read(self, keys: np.ndarray) -> np.ndarray:
        unique, position = np.unique(np.asarray(keys, dtype=np.int64), return_inverse=True)
        with self._lock:
            _, table = self._buckets(unique)
        return table[position]

    def new_query(self, account: str, timestamp: float, content: int = 0) -> int:
        with self._write() as db:
            (last,) = db.execute("SELECT value FROM meta WHERE name = 'last_query'").fetchone()
            query_id = last + 1
            if query_id >= 2**32:
                raise VoxauditError("query ids: the 32-bit id space is used up; reset the store")
            db.execute("UPDATE meta SET value = ? WHERE name = 'last_query'", (query_id,))
            db.execute(
                "INSERT OR REPLACE INTO queries VALUES (?, ?, ?, ?, ?)",
                (query_id % self.max_queries, query_id, account, timestamp, content),
            )
        return query_id

    def query_info(self, ids: np.ndarray) -> list[tuple[str, float, int] | None]:
        ids = np.asarray(ids, dtype=np.int64).tolist()
        slots = sorted({i % self.max_queries for i in ids})
        with self._lock:
            rows = self._where_in(
                "SELECT id, account, time, content FROM queries WHERE slot IN", slots
            )
        # A slot reused by a newer query means the one asked for has expired.
        alive = {
            query_id: (account, float(stamp), int(content))
            for query_id, account, stamp, content in rows
        }
        return [alive.get(i) for i in ids]

    def memory_push(self, account: str, item: bytes, depth: int) -> None:
        with self._write() as db:
            db.execute("INSERT INTO memories (account, item) VALUES (?, ?)", (account, item))
            db.execute(
                "DELETE FROM memories WHERE account = ? AND seq NOT IN (SELECT seq FROM memories"
                " WHERE account = ? ORDER BY seq DESC LIMIT ?)",
                (account, account, depth),
            )

    def memory(self, account: str) -> list[bytes]:
        rows = self._read("SELECT item FROM memories WHERE account = ? ORDER BY seq", (account,))
        return [bytes(item) for (item,) in rows]

    def memory_clear(self, account: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM memories WHERE account = ?", (account,))

    def ban(self, account: str, reason: dict[str, Any]) -> None:
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO bans VALUES (?, ?)", (account, json.dumps(reason)))

    def unban(self, account: str) -> bool:
        with self._write() as db:
            return db.execute("DELETE FROM bans WHERE account = ?", (account,)).rowcount > 0

    def ban_of(self, account: str) -> dict[str, Any] | None:
        rows = self._read("SELECT reason FROM bans WHERE account = ?", (account,))
        return json.loads(rows[0][0]) if rows else None

    def bans(self) -> dict[str, dict[str, Any]]:
        return {a: json.loads(r) for a, r in self._read("SELECT account, reason FROM bans")}

    def add_flag(self, record: dict[str, Any]) -> None:
        with self._write() as db:
            seq = db.execute(
                "INSERT INTO flags (record) VALUES (?)", (json.dumps(record),)
            ).lastrowid
            db.execute("DELETE FROM flags WHERE seq <= ?", (seq - self.max_flags,))

    def flags(self) -> list[dict[str, Any]]:
        return [json.loads(r) for (r,) in self._read("SELECT record FROM flags ORDER BY seq")]

    def nbytes(self) -> int:
        """The size of the database's pages (the rings bound the index and query tables)."""
        (pages,), (page_size,) = (
            self._read("PRAGMA page_count")[0],
            self._read("PRAGMA page_size")[0],
        )
        return int(pages) * int(page_size)

    def ping(self) -> bool:
        return bool(self._read("SELECT value FROM meta WHERE name = 'last_query'"))

    def close(self) -> None:
        with self._lock:
            self._db.close()


class RedisStore:
    """The same state in Redis, shared by gateway replicas; keys start with ``prefix``.

    Index buckets and query records expire ``ttl_s`` after their last write, so memory stays
    bounded by the traffic of that window; bans, flags and detector memory do not expire.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        prefix: str = "voxaudit:guard",
        index_keys: int = 2**22,
        bucket_size: int = 16,
        ttl_s: float = 24 * 3600.0,
        max_flags: int = 10_000,
        client: Any = None,
    ) -> None:
        import redis

        _check_sizes(index_keys, bucket_size)
        self.index_keys = index_keys
        self.bucket_size = bucket_size
        self.ttl_s = int(ttl_s)
        self.max_flags = max_flags
        self.prefix = prefix
        self._redis = client if client is not None else redis.Redis.from_url(url)

    def ping(self) -> bool:
        return bool(self._redis.ping())

    def _key(self, *parts: object) -> str:
        return ":".join([self.prefix, *map(str, parts)])

    def index_add(self, keys: np.ndarray, entries: np.ndarray) -> None:
        pipe = self._redis.pipeline(transaction=False)
        touched = set()
        for key, entry in zip(np.asarray(keys).tolist(), np.asarray(entries).tolist(), strict=True):
            name = self._key("ix", key)
            pipe.lpush(name, entry)
            touched.add(name)
        for name in touched:
            pipe.ltrim(name, 0, self.bucket_size - 1)
            pipe.expire(name, self.ttl_s)
        pipe.execute()

    def index_read(self, keys: np.ndarray) -> np.ndarray:
        pipe = self._redis.pipeline(transaction=False)
        for key in np.asarray(keys).tolist():
            pipe.lrange(self._key("ix", key), 0, self.bucket_size - 1)
        rows = np.zeros((len(keys), self.bucket_size), dtype=np.uint64)
        for i, values in enumerate(pipe.execute()):
            rows[i, : len(values)] = [int(v) for v in values]
        return rows

    def new_query(self, account: str, timestamp: float, content: int = 0) -> int:
        query_id = int(self._redis.incr(self._key("seq")))
        if query_id >= 2**32:
            raise VoxauditError("query ids: the 32-bit id space is used up; reset the store")
        name = self._key("q", query_id)
        self._redis.set(name, json.dumps([account, timestamp, content]), ex=self.ttl_s)
        return query_id

    def query_info(self, ids: np.ndarray) -> list[tuple[str, float, int] | None]:
        if len(ids) == 0:
            return []
        values = self._redis.mget([self._key("q", i) for i in np.asarray(ids).tolist()])
        return [None if v is None else tuple(json.loads(v)) for v in values]  # type: ignore[misc]

    def memory_push(self, account: str, item: bytes, depth: int) -> None:
        name = self._key("mem", account)
        pipe = self._redis.pipeline()
        pipe.rpush(name, item)
        pipe.ltrim(name, -depth, -1)
        pipe.execute()

    def memory(self, account: str) -> list[bytes]:
        return list(self._redis.lrange(self._key("mem", account), 0, -1))

    def memory_clear(self, account: str) -> None:
        self._redis.delete(self._key("mem", account))

    def ban(self, account: str, reason: dict[str, Any]) -> None:
        self._redis.hsetnx(self._key("bans"), account, json.dumps(reason))

    def unban(self, account: str) -> bool:
        return bool(self._redis.hdel(self._key("bans"), account))

    def ban_of(self, account: str) -> dict[str, Any] | None:
        value = self._redis.hget(self._key("bans"), account)
        return None if value is None else json.loads(value)

    def bans(self) -> dict[str, dict[str, Any]]:
        items = self._redis.hgetall(self._key("bans")).items()
        return {k.decode(): json.loads(v) for k, v in items}

    def add_flag(self, record: dict[str, Any]) -> None:
        pipe = self._redis.pipeline()
        pipe.rpush(self._key("flags"), json.dumps(record))
        pipe.ltrim(self._key("flags"), -self.max_flags, -1)
        pipe.execute()

    def flags(self) -> list[dict[str, Any]]:
        return [json.loads(v) for v in self._redis.lrange(self._key("flags"), 0, -1)]

    def nbytes(self) -> int:
        """What Redis reports for its whole dataset (``used_memory_dataset``)."""
        return int(self._redis.info("memory").get("used_memory_dataset", 0))
