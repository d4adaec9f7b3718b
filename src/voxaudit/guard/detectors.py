"""Stateful detectors of query-based attacks: paper 003's account memory and a global index.

Both score each query against what came before, remember it, and flag it when the score
crosses a threshold set by ``calibrate`` on benign traffic for a target false-positive rate.

- ``MemoryDetector`` (paper 003): per account, the vector fingerprints of the last ``k``
  queries; the score is their cosine similarities to the new query, averaged with weights from
  the inverse variance coefficient method. One account's memory only, and diluted by fake
  queries: the paper's weaknesses.
- ``IndexDetector`` (beyond the paper): one inverted index of landmark hashes over every
  account's recent queries. An attack is a run of many *distinct* variants of one carrier,
  sent by the accounts that run the search; shared content is one recording that many
  accounts send, each once or twice. So the score counts, per account, the distinct variants
  among the earlier queries that match the new one (copies of one recording are one variant,
  shared by its senders), beyond each account's first, summed over accounts: an attack is
  caught whatever share of fake queries it mixes in and however many accounts it spreads
  over, while a recording that went around, or one user's re-recording of it, scores
  nothing. A lookup reads a fixed number of bounded buckets, so its cost does not grow with
  the number of queries stored.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from voxaudit.errors import VoxauditError
from voxaudit.guard.fingerprint import Fingerprint
from voxaudit.guard.store import GuardStore, InMemoryStore

#: A time-ordered stream of queries: (account, fingerprint, timestamp in seconds).
Traffic = Sequence[tuple[str, Fingerprint, float]]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing spreads landmark hashes evenly


@dataclass(frozen=True)
class Decision:
    """The verdict on one query."""

    flagged: bool
    score: float
    threshold: float | None
    detector: str
    reason: str
    # Other accounts whose own variants this query matched (copies of a recording that several
    # accounts sent are no evidence against any of them).
    related: tuple[str, ...] = ()


class Detector(Protocol):
    name: str
    threshold: float | None

    def check(
        self, account: str, fingerprint: Fingerprint, timestamp: float | None = None
    ) -> Decision: ...

    def calibrate(self, traffic: Traffic, fpr: float = 0.001) -> float: ...


class _Calibrated(ABC):
    """Replay benign traffic through a scratch copy and set the threshold for a target FPR."""

    name = "detector"
    threshold: float | None

    @abstractmethod
    def scratch(self) -> _Calibrated:
        """An uncalibrated copy with the same settings and an empty in-process store."""
        ...

    @abstractmethod
    def observe(
        self, account: str, fingerprint: Fingerprint, timestamp: float
    ) -> tuple[float | None, list[str]]:
        """Score the query (None while there is too little history) and remember it; also
        the accounts of the earlier queries it matched, where the detector knows them."""
        ...

    def check(
        self, account: str, fingerprint: Fingerprint, timestamp: float | None = None
    ) -> Decision:
        """Score the query, remember it and say whether it is flagged."""
        stamp = time.time() if timestamp is None else timestamp
        value, accounts = self.observe(account, fingerprint, stamp)
        flagged = value is not None and self.threshold is not None and self._over(value)
        related = sorted(set(accounts) - {account}) if flagged else ()
        return self._decision(bool(flagged), 0.0 if value is None else value, related)

    def benign_scores(self, traffic: Traffic) -> np.ndarray:
        """The scores benign ``traffic`` gets, replayed through a scratch copy."""
        copy = self.scratch()
        scores = [copy.observe(a, f, t)[0] for a, f, t in traffic]
        return np.asarray([s for s in scores if s is not None], dtype=np.float64)

    def calibrate(self, traffic: Traffic, fpr: float = 0.001) -> float:
        """Set ``threshold`` so that at most ``fpr`` of benign queries are flagged."""
        if not 0.0 < fpr < 1.0:
            raise VoxauditError(f"fpr: between 0 and 1; got {fpr}")
        scores = self.benign_scores(traffic)
        if scores.size == 0:
            raise VoxauditError(
                f"benign traffic: no query got a {self.name} score (too few queries per account?)"
            )
        self.threshold = self._threshold_for(scores, fpr)
        return self.threshold

    @abstractmethod
    def _over(self, value: float) -> bool: ...

    @abstractmethod
    def _threshold_for(self, scores: np.ndarray, fpr: float) -> float: ...

    def _decision(self, flagged: bool, value: float, related: Iterable[str] = ()) -> Decision:
        reason = (
            f"{self.name} score {value:.3g} crossed the threshold {self.threshold:.3g}"
            if flagged
            else ""
        )
        return Decision(flagged, value, self.threshold, self.name, reason, tuple(related))


class MemoryDetector(_Calibrated):
    """Paper 003: weighted cosine similarity to the account's last ``k`` queries.

    A score needs ``min_history`` queries in memory. Paper 003 waits for k ("the shortest
    depth before we can make sure"), which leaves every account's first k queries unscored:
    an attacker who stays below k per account is never seen, and a false-positive rate on
    ordinary accounts means nothing. By default the memory scores from its first query, on the
    partial memory it has: the paper's weighted similarity over the n queries held, times
    n / k (the empty slots count as similarity 0), which is the paper's score once the memory
    is full; the threshold is calibrated on scores at every depth. After a flag the memory
    starts over, which is what paper 003's DSR = detections * k / queries counts.
    ``threshold`` is the paper's delta: a query scoring above it is flagged.
    """

    name = "memory"

    def __init__(
        self,
        store: GuardStore | None = None,
        k: int = 75,
        threshold: float | None = None,
        min_history: int = 1,
        l_max: int | None = None,
    ) -> None:
        if k < 1:
            raise VoxauditError(f"k: at least 1; got {k}")
        self.store = store if store is not None else InMemoryStore()
        self.k = k
        self.threshold = threshold
        self.min_history = min_history
        if not 1 <= self.min_history <= k:
            raise VoxauditError(f"min_history: between 1 and k={k}; got {min_history}")
        # Paper: l_max = floor(0.1 k), and at least 2 (a spread needs two values).
        self.l_max = max(2, int(0.1 * k)) if l_max is None else l_max

    def scratch(self) -> MemoryDetector:
        store = InMemoryStore(index_keys=1, max_queries=1)
        return MemoryDetector(store, k=self.k, min_history=self.min_history, l_max=self.l_max)

    def observe(
        self, account: str, fingerprint: Fingerprint, timestamp: float
    ) -> tuple[float | None, list[str]]:
        memory = self.store.memory(account)
        value = None
        if len(memory) >= self.min_history:
            similarities = decode_vectors(memory, fingerprint.vector.size) @ fingerprint.vector
            weights = inverse_variance_weights(similarities, self.l_max)
            # A partial memory's empty slots count as similarity 0: one close pair in a new
            # account's first queries is not k of them (paper 003's score once it is full).
            value = float(weights @ similarities) * len(memory) / self.k
        if value is not None and self.threshold is not None and self._over(value):
            self.store.memory_clear(account)
        else:
            self.store.memory_push(account, encode_vector(fingerprint.vector), self.k)
        return value, []

    def _over(self, value: float) -> bool:
        return value > self.threshold  # type: ignore[operator]

    def _threshold_for(self, scores: np.ndarray, fpr: float) -> float:
        return float(np.quantile(scores, 1.0 - fpr, method="higher"))


class IndexDetector(_Calibrated):
    """Time-consistent landmark matches against every account's recent queries.

    An earlier query matches when at least ``max(min_matches, min_match_fraction * n)`` of the
    new query's hashes (n of them, at most ``stored_hashes``) agree with it at one time
    offset, and it is no older than ``window_s``. The matched queries and the new one are
    grouped into clips by ``Fingerprint.content`` (the same 16-bit samples; content 0, unknown,
    keeps a query apart). Each clip is one variant. Per account, ``alone`` counts the clips it
    alone sent and ``shared`` its equal shares of the clips several accounts sent; the score
    is the sum over accounts of ``max(0, alone - 1) + max(0, shared - 1)``. One account's run
    of variants scores one per variant beyond the first, a run spread over Sybil accounts one
    per variant beyond each account's first, while a recording that many accounts sent (any
    number of times), and each one's own re-recording of it, score nothing. Each query stores
    its ``stored_hashes`` hashes of lowest hash value (a bottom-k sketch, so near copies store
    the same ones) and looks up at most ``query_hashes``.
    """

    name = "index"

    def __init__(
        self,
        store: GuardStore | None = None,
        threshold: float | None = None,
        min_matches: int = 6,
        min_match_fraction: float = 0.1,
        window_s: float = 24 * 3600.0,
        stored_hashes: int = 32,
        query_hashes: int = 128,
    ) -> None:
        self.store = store if store is not None else InMemoryStore()
        self.threshold = threshold
        self.min_matches = min_matches
        self.min_match_fraction = min_match_fraction
        self.window_s = window_s
        self.stored_hashes = stored_hashes
        self.query_hashes = query_hashes
        self._key_shift = np.uint64(64 - int(self.store.index_keys).bit_length() + 1)

    def scratch(self) -> IndexDetector:
        store = InMemoryStore(self.store.index_keys, self.store.bucket_size, max_queries=2**16)
        return IndexDetector(
            store,
            min_matches=self.min_matches,
            min_match_fraction=self.min_match_fraction,
            window_s=self.window_s,
            stored_hashes=self.stored_hashes,
            query_hashes=self.query_hashes,
        )

    def observe(
        self, account: str, fingerprint: Fingerprint, timestamp: float
    ) -> tuple[float | None, list[str]]:
        matched = self._matching_queries(fingerprint, timestamp)
        self.remember(account, fingerprint, timestamp)
        senders: dict[object, set[str]] = {}
        for i, (sender, _, content) in enumerate(matched):
            senders.setdefault(content or ("query", i), set()).add(sender)
        senders.setdefault(fingerprint.content or ("new",), set()).add(account)
        # Per account: the variants it alone sent, and its shares of those several sent.
        alone: dict[str, float] = {}
        shared: dict[str, float] = {}
        for who in senders.values():
            held = alone if len(who) == 1 else shared
            for sender in who:
                held[sender] = held.get(sender, 0.0) + 1.0 / len(who)
        # Each account's first variant of either kind is free: a user who sent a clip that
        # went around and a re-recording of it holds one of each; an attacker's run is many
        # (and sending each variant from two accounts only halves each one's count).
        score = sum(max(0.0, v - 1.0) for held in (alone, shared) for v in held.values())
        # Evidence against another account is two or more variants of its own; a recording
        # that several accounts sent is shared content, not evidence.
        evidence = [sender for sender, held in alone.items() if held >= 2.0]
        return round(score, 6), evidence

    def _over(self, value: float) -> bool:
        return value >= self.threshold  # type: ignore[operator]

    def _threshold_for(self, scores: np.ndarray, fpr: float) -> float:
        # The smallest benign score (or one past the largest) that at most fpr of benign
        # queries reach: scores are sums of variant shares, mostly whole counts.
        candidates = np.append(np.unique(scores), np.floor(scores.max()) + 1.0)
        for value in candidates:
            if np.mean(scores >= value) <= fpr:
                return float(value)
        raise AssertionError("unreachable: no benign score exceeds its maximum")

    def _sketch(self, fingerprint: Fingerprint, size: int) -> tuple[np.ndarray, ...]:
        """Bucket keys, tags and anchor frames of the ``size`` lowest mixed hashes."""
        mixed = fingerprint.hashes.astype(np.uint64) * _GOLDEN
        times = fingerprint.times
        if mixed.size > size:
            lowest = np.argpartition(mixed, size - 1)[:size]
            mixed, times = mixed[lowest], times[lowest]
        keys = (mixed >> self._key_shift).astype(np.int64)
        tags = (mixed >> np.uint64(8)) & np.uint64(0xFFFF)
        return keys, tags, times.astype(np.int64)

    def _matching_queries(
        self, fingerprint: Fingerprint, now: float
    ) -> list[tuple[str, float, int]]:
        keys, tags, times = self._sketch(fingerprint, self.query_hashes)
        if keys.size == 0:
            return []
        rows = self.store.index_read(keys)
        hit = (rows != 0) & ((rows & np.uint64(0xFFFF)) == tags[:, None])
        if not hit.any():
            return []
        query_ids = (rows[hit] >> np.uint64(32)).astype(np.int64)
        anchors = ((rows[hit] >> np.uint64(16)) & np.uint64(0xFFFF)).astype(np.int64)
        offsets = np.broadcast_to(times[:, None], rows.shape)[hit] - anchors
        # Per earlier query, the hashes at its most common offset (Wang's histogram peak).
        pair, counts = np.unique(query_ids * 2**17 + (offsets + 2**16), return_counts=True)
        ids = pair >> 17
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        best = np.maximum.reduceat(counts, starts)
        needed = max(self.min_matches, self.min_match_fraction * min(keys.size, self.stored_hashes))
        candidates = ids[starts][best >= needed]
        infos = self.store.query_info(candidates)
        return [info for info in infos if info is not None and now - info[1] <= self.window_s]

    def remember(self, account: str, fingerprint: Fingerprint, now: float) -> None:
        query_id = self.store.new_query(account, now, fingerprint.content)
        keys, tags, times = self._sketch(fingerprint, self.stored_hashes)
        if keys.size == 0:
            return
        entries = (
            (np.uint64(query_id) << np.uint64(32))
            | ((times.astype(np.uint64) & np.uint64(0xFFFF)) << np.uint64(16))
            | tags
        )
        self.store.index_add(keys, entries)


def window_lengths(n: int, l_max: int) -> np.ndarray:
    """Paper 003's window length for each of n similarities: 2, 3, .., l_max, then again from
    l_max // 2 (at least 2) up to l_max, and so on."""
    lengths, length = [], 2
    for _ in range(n):
        lengths.append(length)
        length += 1
        if length > l_max:
            length = max(2, l_max // 2)
    return np.asarray(lengths, dtype=np.int64)


def inverse_variance_weights(similarities: np.ndarray, l_max: int) -> np.ndarray:
    """Paper 003's weights: alpha_i = 1 - std / mean of the similarities within l_i / 2 of i,
    clipped at 0 and scaled to sum to 1 (uniform when every alpha is 0)."""
    s = np.asarray(similarities, dtype=np.float64)
    n = s.size
    if n == 0:
        return s
    # Each window's mean and spread from running sums: one pass, not one slice per i.
    half = window_lengths(n, l_max) // 2
    index = np.arange(n)
    lo, hi = np.maximum(0, index - half), np.minimum(n, index + half + 1)
    sums = np.concatenate([[0.0], np.cumsum(s)])
    squares = np.concatenate([[0.0], np.cumsum(s * s)])
    count = hi - lo
    mean = (sums[hi] - sums[lo]) / count
    std = np.sqrt(np.maximum((squares[hi] - squares[lo]) / count - mean**2, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        alphas = np.where(mean > 0, 1.0 - std / mean, 0.0)
    alphas = np.clip(alphas, 0.0, None)
    total = alphas.sum()
    return alphas / total if total > 0 else np.full(n, 1.0 / n)


def encode_vector(vector: np.ndarray) -> bytes:
    """A sparse vector as its nonzero positions (uint16) then values (float16)."""
    where = np.flatnonzero(vector).astype(np.uint16)
    return where.tobytes() + vector[where].astype(np.float16).tobytes()


def decode_vectors(items: Sequence[bytes], dim: int) -> np.ndarray:
    """``[len(items), dim]``: the vectors ``encode_vector`` wrote, in one scatter."""
    counts = np.asarray([len(item) // 4 for item in items])
    rows = np.repeat(np.arange(len(items)), counts)
    pairs = list(zip(items, counts.tolist(), strict=True))
    where = np.concatenate([np.frombuffer(it, np.uint16, n) for it, n in pairs])
    values = np.concatenate([np.frombuffer(it, np.float16, n, offset=2 * n) for it, n in pairs])
    matrix = np.zeros((len(items), dim), dtype=np.float32)
    matrix[rows, where] = values
    return matrix
