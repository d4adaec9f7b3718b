"""Atomic file writes: every result, cache and checkpoint voxaudit writes goes through here."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from voxaudit.errors import VoxauditError


def write_atomically(path: str | Path, content: str | bytes | Callable[[IO[bytes]], None]) -> Path:
    """Write ``content`` (text, bytes, or a function writing to a binary stream) to ``path``.

    Through a synced temporary file in the same folder and a rename, so a reader, or a run
    that was killed halfway, sees the old file or the new one and never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as stream:
            if callable(content):
                content(stream)
            else:
                stream.write(content.encode("utf-8") if isinstance(content, str) else content)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, data: Any) -> Path:
    """``data`` as indented JSON, written atomically."""
    return write_atomically(path, json.dumps(data, indent=1) + "\n")


def claim_folder(out_dir: Path, record_name: str, record: dict[str, Any], what: str) -> None:
    """Record ``record`` in ``out_dir/record_name``, or refuse a folder whose record differs.

    A resumable run keeps what it finished in ``out_dir``; resuming under another config
    would mix results that do not belong together, so the error names the changed keys.
    """
    path = out_dir / record_name
    if not path.exists():
        write_json(path, record)
        return
    previous = json.loads(path.read_text("utf-8"))
    changed = sorted(
        key for key in record.keys() | previous.keys()
        if json_key(record.get(key)) != json_key(previous.get(key))
    )  # fmt: skip
    if changed:
        raise VoxauditError(
            f"{out_dir}: holds {what} made with a different config (changed: "
            f"{', '.join(changed)}); its results would not match. Use another --out, or "
            "delete the folder to start over."
        )


def json_key(data: Any) -> str:
    """``data`` as canonical JSON, so tuples and lists, and key orders, compare alike."""
    return json.dumps(data, sort_keys=True, default=str)
