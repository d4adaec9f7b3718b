"""``voxaudit guard`` commands, invoked on the sub-app directly."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from voxaudit.errors import VoxauditError
from voxaudit.guard.cli import guard_app
from voxaudit.guard.config import load_config


def test_calibrate_writes_thresholds(tmp_path):
    out = tmp_path / "guard.toml"
    out.write_text('admin_key = "keep me"\n')
    result = CliRunner().invoke(
        guard_app,
        [
            "calibrate",
            "--synth",
            "40",
            "--accounts",
            "2",
            "--k",
            "5",
            "--fpr",
            "0.05",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    config = load_config(out, {})
    assert config.admin_key == "keep me"
    assert config.index_threshold is not None and config.index_threshold >= 1
    assert config.memory_threshold is not None and 0 < config.memory_threshold < 1


def test_calibrate_refuses_a_bad_fpr(tmp_path):
    result = CliRunner().invoke(
        guard_app, ["calibrate", "--synth", "12", "--fpr", "2", "--out", str(tmp_path / "g.toml")]
    )
    assert result.exit_code == 2
    assert "fpr" in result.output


def test_serve_refuses_a_bad_config(tmp_path):
    bad = tmp_path / "guard.toml"
    bad.write_text("store = 'floppy'\n")
    result = CliRunner().invoke(guard_app, ["serve", "--config", str(bad)])
    assert result.exit_code == 2
    assert "store" in result.output


def test_calibrate_writes_the_robust_variant_for_serve(tmp_path):
    out = tmp_path / "guard.toml"
    args = ["calibrate", "--synth", "40", "--accounts", "2", "--k", "5", "--fpr", "0.05"]
    result = CliRunner().invoke(guard_app, [*args, "--noise-db", "25", "75", "--out", str(out)])
    assert result.exit_code == 0, result.output
    config = load_config(out, {})
    assert config.fingerprint_noise_db == (25.0, 75.0)
    assert config.index_threshold is not None
    variable = "VOXAUDIT_GUARD_FINGERPRINT_NOISE_DB"
    assert load_config(out, {variable: "30, 40"}).fingerprint_noise_db == (30.0, 40.0)
    assert load_config(out, {variable: ""}).fingerprint_noise_db is None


@pytest.mark.parametrize("raw", ["75,25", "25", "loud,quiet"])
def test_a_bad_noise_range_names_the_field(tmp_path, raw):
    with pytest.raises(VoxauditError, match="fingerprint_noise_db"):
        load_config(None, {"VOXAUDIT_GUARD_FINGERPRINT_NOISE_DB": raw})
