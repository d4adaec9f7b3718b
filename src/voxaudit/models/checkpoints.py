"""Checkpoint files of built-in models: reading them back and rebuilding the model.

The training loop (``voxaudit.train.loop``) writes checkpoints; models, audits and defenses
read them, so reading lives here, below all of them. A fine-tuned model's checkpoint records
its base (``metadata.base``, see :func:`base_provenance`): the base is a reference model for
membership attacks only if it never saw the fine-tuning data, which its ids tell.
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from voxaudit.errors import VoxauditError

CHECKPOINT = "checkpoint.pt"
FORMAT = "voxaudit.checkpoint/1"


def resolve_device(name: str) -> torch.device:
    """``"auto"`` is the GPU when there is one; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VoxauditError(f"device {name!r} was asked for but no CUDA GPU is available")
    return torch.device(name)


def class_path(obj: object) -> str:
    """Dotted import path of the object's class."""
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def checkpoint_file(path: str | Path) -> Path:
    """The checkpoint file at ``path``: the path itself, or ``checkpoint.pt`` in a run folder."""
    path = Path(path)
    return path / CHECKPOINT if path.is_dir() else path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents (tensors on the CPU); ``path`` may be its run directory."""
    path = checkpoint_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise VoxauditError(f"{path}: no such checkpoint") from exc
    except Exception as exc:
        raise VoxauditError(f"{path}: not a readable checkpoint ({exc})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise VoxauditError(f"{path}: not a voxaudit checkpoint (expected format {FORMAT})")
    return state


def import_model_class(dotted: str) -> type[nn.Module]:
    """The model class at ``dotted``; only ``voxaudit.`` modules are imported."""
    module_name, _, name = dotted.rpartition(".")
    if not module_name.startswith("voxaudit."):
        raise VoxauditError(f"refusing to import model class {dotted!r}: not a voxaudit model")
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise VoxauditError(f"model class {dotted!r} not found ({exc})") from exc
    if not (isinstance(found, type) and issubclass(found, nn.Module)):
        raise VoxauditError(f"{dotted!r} is not a torch module class")
    return found


def load_model(
    path: str | Path,
    device: str | torch.device = "cpu",
    expected: type | tuple[type, ...] = nn.Module,
) -> nn.Module:
    """Rebuild a trained model from its checkpoint (file or run directory), in eval mode.

    ``expected`` names the model class(es) the caller can use; another is a clear error.
    """
    state = read_checkpoint(path)
    model_class = import_model_class(state["model_class"])
    if not issubclass(model_class, expected):
        wanted = expected if isinstance(expected, tuple) else (expected,)
        raise VoxauditError(
            f"{path}: holds a {model_class.__name__}, not a "
            + " or ".join(cls.__name__ for cls in wanted)
        )
    model = model_class(**state["model_config"])
    model.load_state_dict(state["model_state"])
    return model.to(device).eval()


def checkpoint_role(path: str | Path, role: str | None) -> tuple[str, frozenset[str] | None]:
    """The split role a ``voxaudit train`` checkpoint was trained for, and its trained ids.

    ``role`` overrides the recorded one (e.g. ``"null"``) and must agree with it when both are
    known, except for the null control. The trained ids (None when unrecorded) exclude a
    validation share carved from the pool.
    """
    state = read_checkpoint(path)
    recorded = (state.get("metadata") or {}).get("role")
    if role is None and recorded is None:
        raise VoxauditError(f"{path}: the checkpoint records no split role; give it explicitly")
    if role not in (None, "null") and recorded not in (None, role):
        raise VoxauditError(f"{path}: trained as {recorded!r}, not as {role!r}")
    train_ids = (state.get("data") or {}).get("train_ids")
    return role or recorded, frozenset(train_ids) if train_ids is not None else None


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def base_provenance(path: str | Path) -> dict[str, Any]:
    """What a fine-tuned checkpoint records of its base checkpoint (file or run folder).

    Parameters
    ----------
    path:
        The base: a checkpoint file or its run folder.

    Returns
    -------
    JSON-able: ``path`` (the checkpoint file, absolute), ``sha256`` (of its bytes), ``kind``,
    ``role``, ``corpus`` and ``corpus_fingerprint`` (as its run recorded them, else None),
    ``train_ids`` (the ids it was trained on, None when unrecorded) and ``n_train_ids``, and
    ``base``: the base's own base when it was itself fine-tuned (what its ancestors trained
    on is in it too), else None.
    """
    file = checkpoint_file(path).resolve()
    state = read_checkpoint(file)
    metadata = state.get("metadata") or {}
    train_ids = (state.get("data") or {}).get("train_ids")
    return {
        "path": str(file),
        "sha256": file_sha256(file),
        "kind": metadata.get("kind"),
        "role": metadata.get("role"),
        "corpus": metadata.get("corpus"),
        "corpus_fingerprint": metadata.get("corpus_fingerprint"),
        "n_train_ids": None if train_ids is None else len(train_ids),
        "train_ids": train_ids,
        "base": metadata.get("base"),
    }


def checkpoint_base(path: str | Path) -> dict[str, Any] | None:
    """The base a checkpoint was fine-tuned from, as :func:`base_provenance` recorded it.

    Parameters
    ----------
    path:
        A checkpoint file or its run folder.

    Returns
    -------
    The record (its ``train_ids`` are the base's; the checkpoint's own are ``data.train_ids``),
    or None for a model trained from scratch.
    """
    return (read_checkpoint(path).get("metadata") or {}).get("base")
