"""Chunked, cached, resumable per-utterance feature extraction, shared by the feature extractors.

An extractor computes a :class:`FeatureTable` per chunk of utterances; :func:`extract_chunks`
runs the chunks, saving each finished one (atomically) under ``cache_dir``, whose
``manifest.json`` records the extraction's format, access, settings, ids, a digest of the data
and, when the caller passes one, of the model (:func:`model_digest`). A rerun reuses every cached
row and refuses a directory made with other settings, data or weights, so an audit rerun into the
same folder after retraining a model recomputes nothing stale. The batch size is no setting
(features must not depend on it).

Perturbations draw from :func:`utterance_rng`, a generator seeded by the utterance's id, so an
utterance's features depend on neither batching nor order.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voxaudit.errors import VoxauditError
from voxaudit.files import write_atomically
from voxaudit.mia.table import FeatureTable
from voxaudit.progress import make_progress

MANIFEST = "manifest.json"


def utterance_rng(seed: int, utterance_id: str) -> np.random.Generator:
    """A generator of the utterance's own, the same whatever batch or order it comes in."""
    digest = hashlib.sha256(str(utterance_id).encode("utf-8")).digest()
    return np.random.default_rng([seed, *np.frombuffer(digest, dtype=np.uint32).tolist()])


def data_digest(
    waves: Sequence[np.ndarray], texts: Sequence[str], ids: Sequence[str], speakers: Sequence[str]
) -> str:
    """SHA-256 of the utterances (ids, speakers, texts or labels, samples), whatever their order."""
    digest = hashlib.sha256()
    for k in sorted(range(len(ids)), key=lambda k: str(ids[k])):
        digest.update(json.dumps([ids[k], speakers[k], texts[k], waves[k].size]).encode())
        digest.update(waves[k].tobytes())
    return digest.hexdigest()


def model_digest(model: Any, source: str) -> str:
    """What identifies a queried model in a cache: SHA-256 of the weights of the torch module
    behind ``model`` (itself, or a wrapper's ``.model``); ``source`` for models with no weights
    here (pocketsphinx, an API)."""
    import torch

    module = model if isinstance(model, torch.nn.Module) else getattr(model, "model", None)
    if not isinstance(module, torch.nn.Module):
        return source
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        # Bytes of any dtype (bfloat16 has no numpy twin), after the name and shape.
        flat = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
        digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(flat.numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def extract_chunks(
    compute: Callable[[list[int]], FeatureTable],
    ids: Sequence[str],
    batch_size: int,
    *,
    cache_dir: str | Path | None,
    manifest: dict[str, Any],
    what: str,
    progress: bool = True,
) -> list[FeatureTable]:
    """The tables of all chunks: cached ones read back, the others computed and cached.

    ``compute(indices)`` gives the table of the utterances at those positions of ``ids``.
    ``manifest`` holds ``format``, ``threat``, ``capabilities``, ``settings``, ``ids``,
    ``data`` and ``model`` (None when unknown); ``what`` names the features in messages (e.g.
    ``"ASR features"``).
    """
    tables: list[FeatureTable] = []
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        tables = _open_cache(cache_dir, manifest, what)
    done = {row for table in tables for row in table.ids}
    todo = [k for k, row in enumerate(ids) if row not in done]
    with progress_bar(progress, what, len(ids)) as advance:
        advance(len(ids) - len(todo))
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            table = compute(chunk)
            if cache_dir is not None:
                table.save(_chunk_path(cache_dir, table.ids))
            tables.append(table)
            advance(len(chunk))
    return tables


@contextlib.contextmanager
def progress_bar(enabled: bool, label: str, total: int) -> Iterator[Callable[[int], None]]:
    """``advance(n)``: a progress bar over utterances, or nothing when disabled."""
    if not enabled:
        yield lambda n: None
        return
    with make_progress() as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _chunk_path(cache_dir: Path, ids: Sequence[str]) -> Path:
    name = hashlib.sha1("\n".join(map(str, ids)).encode("utf-8")).hexdigest()[:16]
    return cache_dir / f"chunk-{name}.npz"


def _open_cache(cache_dir: Path, manifest: dict[str, Any], what: str) -> list[FeatureTable]:
    """The cached chunk tables, after claiming ``cache_dir`` or checking it holds the same."""
    path = cache_dir / MANIFEST
    chunks = sorted(cache_dir.glob("chunk-*.npz"))
    if not path.exists():
        if chunks:
            raise VoxauditError(f"{cache_dir} holds feature chunks but no {MANIFEST}; delete it")
        cache_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(manifest, indent=1) + "\n")
        return []
    try:
        found = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise VoxauditError(f"{path}: not a readable feature cache manifest ({exc})") from exc
    difference = _difference(found, manifest)
    if difference:
        raise VoxauditError(
            f"{cache_dir} holds {what} {difference}; use another directory or delete it"
        )
    return [FeatureTable.load(p) for p in chunks]


def _difference(found: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    """How a cache's manifest differs from this extraction's, in words; None if it does not."""
    if found.get("format") != wanted["format"]:
        return f"in another format ({found.get('format')!r}, not {wanted['format']!r})"
    if found["capabilities"] != wanted["capabilities"]:
        was, now = (", ".join(m["capabilities"]) or "outputs only" for m in (found, wanted))
        return (
            f"extracted at {found['threat']}-box access ({was}), not {wanted['threat']}-box ({now})"
        )
    for key in sorted(set(found["settings"]) | set(wanted["settings"])):
        was, now = found["settings"].get(key), wanted["settings"].get(key)
        if was != now:
            return f"made with setting {key}={was}, not {now}"
    if set(found["ids"]) != set(wanted["ids"]):
        missing = sorted(set(wanted["ids"]) - set(found["ids"]), key=str)
        extra = sorted(set(found["ids"]) - set(wanted["ids"]), key=str)
        example = f"it lacks {missing[0]!r}" if missing else f"it has {extra[0]!r}"
        return f"of other utterances ({len(found['ids'])} ids, not {len(wanted['ids'])}; {example})"
    if found["data"] != wanted["data"]:
        return "of the same ids but other audio, labels or speakers"
    if found.get("model") != wanted.get("model"):
        was = found.get("model") or "a model it did not record"
        return f"of another model ({was}, not {wanted.get('model') or 'an unrecorded one'})"
    return None
