"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from voxaudit.pipeline import PipelineConfig, run_audit

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


# One tiny audit (a real classifier trained on a few synthetic voices), run once per session
# for the audit and report tests.
TINY = """\
seed = 0
device = "cpu"
threat = "grey"
levels = ["sample"]
[corpus]
path = "corpus"
synthesize = { speakers = 4, per_speaker = 8 }
[target]
family = "classifier"
model = { label = "speaker", hidden = 8, n_mels = 16, dropout = 0.0 }
train = { epochs = 2, lr = 3e-3, batch_size = 8 }
[shadows]
count = 2
[audit]
max_per_side = 8
snrs_db = [20.0, 0.0]
draws = 2
classifiers = ["logistic"]
n_bootstrap = 200
min_per_side = 2
"""


def _config_file(tmp_path_factory, name: str, text: str) -> Path:
    path = tmp_path_factory.mktemp(name) / "audit.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _run(config_path: Path):
    """(config, out_dir, report) of the audit at ``config_path``, run into ``out/`` beside it."""
    config = PipelineConfig.load(config_path)
    out = config_path.parent / "out"
    return config, out, run_audit(config, out, progress=False)


@pytest.fixture(scope="session")
def tiny_config_path(tmp_path_factory):
    return _config_file(tmp_path_factory, "audit", TINY)


@pytest.fixture(scope="session")
def tiny_audit(tiny_config_path):
    """(config, out_dir, report) of the tiny audit."""
    return _run(tiny_config_path)


# A tiny ASR audit with the guard stage: the cheapest attack, the least benign traffic that
# calibrates the memory detector.
TINY_ASR_GUARD = """\
seed = 0
device = "cpu"
levels = ["sample"]
[corpus]
path = "corpus"
synthesize = { speakers = 8, per_speaker = 4 }
[target]
family = "asr"
model = { family = "ctc", preset = "tiny", d_model = 32, layers = 1, conv_channels = 8 }
train = { epochs = 1, batch_size = 4 }
[shadows]
count = 2
[audit]
max_per_side = 8
draws = 1
snrs_db = [20.0]
classifiers = ["logistic"]
n_bootstrap = 100
population = 8
[guard]
benign = 150
attacks = ["nes (black box)"]
"""


@pytest.fixture(scope="session")
def tiny_guard_audit(tmp_path_factory):
    """(config, out_dir, report) of the tiny ASR audit with a guard evaluation."""
    return _run(_config_file(tmp_path_factory, "guard-audit", TINY_ASR_GUARD))
