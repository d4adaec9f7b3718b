"""The gateway's settings: file values are checked against the fields' types, as they are read."""

from __future__ import annotations

import pytest

from voxaudit.errors import VoxauditError
from voxaudit.guard.config import load_config, save_thresholds


def _file(tmp_path, text: str):
    path = tmp_path / "guard.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('k = "ten"\n', "key 'k': expected an integer, got 'ten'"),
        ("k = true\n", "key 'k': expected an integer, got True"),
        ('ban_related = "yes"\n', "key 'ban_related': expected true or false, got 'yes'"),
        ('detectors = "index"\n', "key 'detectors': expected a list, got 'index'"),
        ("fingerprint_noise_db = [25]\n", "key 'fingerprint_noise_db': expected a list of 2"),
        ('index_threshold = "low"\n', "key 'index_threshold': expected a number or none"),
        ("api_keys = { a = 1 }\n", "key 'api_keys.a': expected a string, got 1"),
        ("colour = 'blue'\n", "unknown key(s) colour; known: admin_key, api_keys"),
    ],
)
def test_a_bad_file_value_names_the_file_and_the_key(tmp_path, text, message):
    path = _file(tmp_path, text)
    with pytest.raises(VoxauditError) as caught:
        load_config(path, {})
    assert str(caught.value).startswith(f"{path}: {message}")


def test_file_values_keep_their_types_and_none_unsets_a_threshold(tmp_path):
    path = _file(tmp_path, 'k = 10\nindex_threshold = "none"\nfingerprint_noise_db = [25, 75]\n')
    config = load_config(path, {})
    assert config.k == 10 and config.index_threshold is None
    assert config.fingerprint_noise_db == (25, 75)
    save_thresholds(path, {"index": 4})
    assert load_config(path, {}).index_threshold == 4.0


def test_the_environment_is_text_read_as_each_fields_type(tmp_path):
    path = _file(tmp_path, "k = 10\n")
    environ = {"VOXAUDIT_GUARD_K": "12", "VOXAUDIT_GUARD_BAN_RELATED": "no"}
    config = load_config(path, environ)
    assert config.k == 12 and config.ban_related is False
    with pytest.raises(VoxauditError, match="k: cannot read 'ten' as int"):
        load_config(path, {"VOXAUDIT_GUARD_K": "ten"})


def test_the_backend_pool_size_is_a_setting(tmp_path):
    path = _file(tmp_path, "backend_workers = 3\n")
    assert load_config(path, {}).backend_workers == 3
    assert load_config(path, {"VOXAUDIT_GUARD_BACKEND_WORKERS": "1"}).backend_workers == 1
    assert load_config(_file(tmp_path, ""), {}).backend_workers == 2
    with pytest.raises(VoxauditError, match="backend_workers: must be positive"):
        load_config(_file(tmp_path, "backend_workers = 0\n"), {})
