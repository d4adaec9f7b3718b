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

    def new_query(self, account: str, timestamp: float) -> int: ...

    def query_info(self, ids: np.ndarray) -> list[tuple[str, float] | None]: ...

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

    def new_query(self, account: str, timestamp: float) -> int:
        self._last_id += 1
        if self._last_id >= 2**32:
            raise VoxauditError("query ids: the 32-bit id space is used up; restart the store")
        slot = self._last_id % self._query_ids.size
        self._query_ids[slot] = self._last_id
        self._query_accounts[slot] = self._intern(account)
        self._query_times[slot] = timestamp
        return self._last_id

    def query_info(self, ids: np.ndarray) -> list[tuple[str, float] | None]:
        ids = np.asarray(ids, dtype=np.int64)
        slots = ids % self._query_ids.size
        # A slot reused by a newer query means the one asked for has expired.
        alive = self._query_ids[slots] == ids
        names, times = self._query_accounts[slots], self._query_times[slots]
        return [
            (self._account_names[names[i]], float(times[i])) if alive[i] else None
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

    def new_query(self, account: str, timestamp: float) -> int:
        query_id = int(self._redis.incr(self._key("seq")))
        if query_id >= 2**32:
            raise VoxauditError("query ids: the 32-bit id space is used up; reset the store")
        name = self._key("q", query_id)
        self._redis.set(name, json.dumps([account, timestamp]), ex=self.ttl_s)
        return query_id

    def query_info(self, ids: np.ndarray) -> list[tuple[str, float] | None]:
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
