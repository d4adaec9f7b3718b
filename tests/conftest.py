"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# The real recordings live beside the checkout (never in it); VOXAUDIT_FSDD points elsewhere.
FSDD = Path(
    os.environ.get("VOXAUDIT_FSDD", Path(__file__).resolve().parents[2] / "shared/data/fsdd")
)


@pytest.fixture
def fsdd_root() -> Path:
    """The real FSDD recordings beside the checkout; the test is skipped when they are absent."""
    if not (FSDD / "recordings").is_dir():
        pytest.skip("../shared/data/fsdd is not present")
    return FSDD


@pytest.fixture(autouse=True)
def _torch_one_thread_seeded():
    """Tiny models run fastest on one thread, and seeding keeps model-building tests repeatable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
