"""Checkpoint files of built-in models: reading them back and rebuilding the model.

The training loop (``voxaudit.train.loop``) writes checkpoints; models, audits and defenses
read them, so reading lives here, below all of them.
"""

from __future__ import annotations

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


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents (tensors on the CPU); ``path`` may be its run directory."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
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
