"""The speaker family's queries: which speakers and voices each model is asked about, and the
embeddings it gives for them (cached on disk, so a stopped run resumes).

Member speakers of the target are queried with ``mixing_ratio`` non-training voices; shadow
member speakers give one row per ratio of ``train_ratios`` (mixing-ratio training). Voices are
drawn once per speaker and ratio, so fewer voices are a prefix (a subset) of more voices.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voxaudit.data.corpus import Corpus
from voxaudit.data.splits import AuditSplit
from voxaudit.errors import VoxauditError
from voxaudit.files import write_atomically
from voxaudit.mia.core import AuditedModel
from voxaudit.mia.feature_cache import model_digest
from voxaudit.mia.slmia import voice_chunks
from voxaudit.mia.speaker_baselines import augmented_views
from voxaudit.models.access import Access
from voxaudit.progress import track


@dataclass(frozen=True)
class Speaker:
    """An evaluated speaker of one model: training voices, non-training voices, membership."""

    name: str
    trained: tuple[str, ...]  # empty for a non-member
    unseen: tuple[str, ...]  # a member's voices kept out of training; a non-member's voices
    member: bool


def _group(ids: Sequence[str], corpus: Corpus) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for uid in sorted(ids):
        groups.setdefault(corpus[uid].speaker, []).append(uid)
    return groups


def evaluated_speakers(corpus: Corpus, split: AuditSplit, role: str, config: Any) -> list[Speaker]:
    """As many member as non-member speakers of ``role`` (at most ``max_per_side`` each)."""
    trained = _group(split.train_ids(role), corpus)
    unseen = _group(split.unseen_ids(role), corpus)
    others = _group(split.holdout_ids(role), corpus)
    n = min(len(trained), len(others), config.max_per_side or len(trained))
    if n == 0:
        raise VoxauditError(f"{role}: the split leaves no member or no non-member speaker")
    rng = np.random.default_rng([config.seed, *role.encode()])
    pick = [sorted(rng.choice(sorted(side), n, replace=False)) for side in (trained, others)]
    return [
        *(Speaker(s, tuple(trained[s]), tuple(unseen.get(s, ())), True) for s in pick[0]),
        *(Speaker(s, (), tuple(others[s]), False) for s in pick[1]),
    ]


def _unseen_count(member: bool, available: int, k: int, ratio: float) -> int:
    """How many non-training voices a speaker's ``k`` queried voices hold at ``ratio``.

    A member with fewer non-training voices than the ratio asks gives all it has, and training
    voices for the rest; a non-member's voices are all non-training voices.
    """
    return min(int(np.floor(ratio * k + 0.5)), available) if member else k


def _feasible(speaker: Speaker, k: int, ratio: float) -> bool:
    n_unseen = _unseen_count(speaker.member, len(speaker.unseen), k, ratio)
    return n_unseen <= len(speaker.unseen) and k - n_unseen <= len(speaker.trained)


def voice_count(
    speakers: Mapping[str, Sequence[Speaker]],
    ratios: Mapping[str, Sequence[float]],
    config: Any,
) -> int:
    """The most voices, up to ``config.voices``, that every speaker can give at every ratio."""
    for k in range(config.voices, 0, -1):
        if all(
            _feasible(s, k, r)
            for role, group in speakers.items()
            for s in group
            for r in ratios[role]
        ):
            return k
    raise VoxauditError("some evaluated speaker has no voice to query")


Draw = dict[str, tuple[list[str], list[str]]]  # speaker -> (unseen order, trained order)


def draws_for(
    speakers: Sequence[Speaker], ratios: Sequence[float], role: str, config: Any
) -> list[Draw]:
    """Per ratio, each speaker's voices in random order: queries take a prefix of each list.

    One order per speaker and ratio, so that fewer voices are a subset of more voices.
    """
    draws = []
    for index, _ in enumerate(ratios):
        draw = {}
        for s in speakers:
            rng = np.random.default_rng([config.seed, index, *f"{role}/{s.name}".encode()])
            draw[s.name] = (
                [s.unseen[i] for i in rng.permutation(len(s.unseen))],
                [s.trained[i] for i in rng.permutation(len(s.trained))],
            )
        draws.append(draw)
    return draws


def queried_voices(draw: Draw, speaker: str, k: int, ratio: float) -> list[str]:
    """The ``k`` voices a speaker is queried with at ``ratio``: prefixes of its draw."""
    unseen, trained = draw[speaker]
    n_unseen = _unseen_count(bool(trained), len(unseen), k, ratio)
    return [*unseen[:n_unseen], *trained[: k - n_unseen]]


def draw_ids(draws: Sequence[Draw], k: int) -> list[str]:
    """Every voice a model may be queried with: each ratio's draw at the most voices, any mix."""
    ids = set()
    for draw in draws:
        for unseen, trained in draw.values():
            ids.update(unseen[:k], trained[:k])
    return sorted(ids)


def imposters_of(corpus: Corpus, split: AuditSplit, config: Any) -> dict[str, list[str]]:
    """Imposters in random order, each with its voices in random order (prefixes are nested)."""
    groups = _group(split.pools["reference"], corpus)
    rng = np.random.default_rng([config.seed, *b"imposters"])
    order = sorted(groups)
    return {
        order[i]: [groups[order[i]][j] for j in rng.permutation(len(groups[order[i]]))]
        for i in rng.permutation(len(order))
    }


# --- queries --------------------------------------------------------------------------------


@dataclass
class Embeddings:
    """One model's embeddings of each queried voice, of its chunks and of its augmented views."""

    whole: dict[str, np.ndarray]
    chunks: dict[str, np.ndarray]  # [chunks, dim], possibly no rows
    views: dict[str, np.ndarray]  # [views, dim], for the voices EncoderMI queries
    queries: int

    def voices(self, ids: Sequence[str], chunks: bool) -> np.ndarray:
        rows = [self.whole[i][None] for i in ids]
        if chunks:
            rows += [self.chunks[i] for i in ids]
        return np.concatenate(rows)


def embed(
    model: AuditedModel,
    corpus: Any,
    ids: Sequence[str],
    view_ids: Sequence[str],
    config: Any,
    out_dir: Path,
    progress: bool,
) -> Embeddings:
    """Embeddings of ``ids`` (whole and chunked) and of views of ``view_ids``, cached on disk
    under a key of the model's weights, the ids, their audio and the settings."""
    ids = sorted(set(ids))
    audio = hashlib.sha256("\n".join(corpus[i].content_key() for i in ids).encode()).hexdigest()
    settings = [
        model_digest(model.model, model.source),
        ids,
        audio,
        sorted(view_ids),
        config.chunk_seconds,
        config.chunk_overlap,
        config.views,
        config.seed,
    ]
    key = hashlib.sha1(json.dumps(settings).encode()).hexdigest()[:16]
    path = out_dir / "embeddings" / f"{model.role}-{key}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            return _unpack(data)
    access = Access(model.model, "grey")
    rate = access.sample_rate
    whole, chunks, views = {}, {}, {}
    viewed_ids = set(view_ids)
    for start in track(
        range(0, len(ids), config.batch_size), f"embedding ({model.role})", enabled=progress
    ):
        batch = ids[start : start + config.batch_size]
        waves = {uid: corpus[uid].load(rate) for uid in batch}
        pieces = {
            uid: voice_chunks(w, rate, config.chunk_seconds, config.chunk_overlap)
            if config.chunk_seconds
            else []
            for uid, w in waves.items()
        }
        viewed = {
            uid: augmented_views(w, rate, config.views, [config.seed, *uid.encode()])
            for uid, w in waves.items()
            if uid in viewed_ids
        }
        flat = [
            *waves.values(),
            *(c for p in pieces.values() for c in p),
            *(v for vs in viewed.values() for v in vs),
        ]
        embedded = np.asarray(access.embed(flat), dtype=np.float64)
        at = len(batch)
        whole |= dict(zip(batch, embedded[:at], strict=True))
        for uid, p in pieces.items():
            chunks[uid] = embedded[at : at + len(p)].reshape(len(p), embedded.shape[1])
            at += len(p)
        for uid, vs in viewed.items():
            views[uid] = embedded[at : at + len(vs)]
            at += len(vs)
    result = Embeddings(whole, chunks, views, access.queries)
    _pack(path, result)
    return result


def _pack(path: Path, e: Embeddings) -> None:
    """Save atomically: each table as its ids, row counts and stacked rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"queries": np.array(e.queries)}
    for name, table in (("whole", e.whole), ("chunks", e.chunks), ("views", e.views)):
        ids = sorted(table)
        rows = [np.atleast_2d(table[i]) if name != "whole" else table[i][None] for i in ids]
        arrays[f"{name}draw_ids"] = np.array(ids, dtype=str)
        arrays[f"{name}_counts"] = np.array([len(r) for r in rows], dtype=np.int64)
        arrays[f"{name}_rows"] = np.concatenate(rows) if rows else np.zeros((0, 0))
    write_atomically(path, lambda f: np.savez(f, **arrays))


def _unpack(data: Any) -> Embeddings:
    tables = []
    for name in ("whole", "chunks", "views"):
        ids, counts, rows = data[f"{name}draw_ids"], data[f"{name}_counts"], data[f"{name}_rows"]
        parts = np.split(rows, np.cumsum(counts)[:-1]) if len(ids) else []
        table = {str(i): p for i, p in zip(ids, parts, strict=True)}
        if name == "whole":
            table = {i: p[0] for i, p in table.items()}
        tables.append(table)
    return Embeddings(*tables, int(data["queries"]))
