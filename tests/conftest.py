"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
