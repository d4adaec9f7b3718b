import json

import pytest
import yaml

from voxaudit.audit import EXAMPLE, AuditConfig
from voxaudit.audit.config import tomllib
from voxaudit.errors import VoxauditError


def test_the_example_is_the_built_in_default_and_loads(tmp_path):
    path = tmp_path / "voxaudit-audit.toml"
    path.write_text(EXAMPLE, encoding="utf-8")
    config = AuditConfig.load(path)
    assert config == AuditConfig.example(tmp_path)
    assert config.target.family == "classifier" and config.target.source == "train"
    assert config.corpus.path.parent.parent == tmp_path  # relative to the config file
    assert config.levels == ("sample",) and config.shadows == 2


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_yaml_and_json_read_like_toml(tmp_path, suffix):
    data = tomllib.loads(EXAMPLE)
    path = tmp_path / f"audit{suffix}"
    path.write_text(yaml.safe_dump(data) if suffix == ".yaml" else json.dumps(data))
    assert AuditConfig.load(path) == AuditConfig.example(tmp_path)


def _write(tmp_path, edit):
    data = tomllib.loads(EXAMPLE)
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(colour="red"), "unknown field(s) colour"),
        (lambda d: d["target"].pop("family"), "family must be one of"),
        (lambda d: d.update(levels=["speaker"]), "classifier model is audited at sample level"),
        (lambda d: d.update(threat="grey-ish"), "threat must be one of"),
        (lambda d: d["target"].update(checkpoint="runs/t"), "needs the split it was trained on"),
        (lambda d: d["target"].update(adapter="pocketsphinx"), "asr and speaker targets"),
        (lambda d: d["shadows"].update(count=0), "count must be a whole number >= 1"),
        (lambda d: d["split"].update(bogus=1), "[split]: unknown field(s) bogus"),
        (lambda d: d["shadows"].update(count=1), "mode halves needs count >= 2"),
        (lambda d: d["shadows"].update(mode="random"), "mode must be disjoint or halves"),
        (lambda d: d.pop("corpus"), "missing table [corpus]"),
    ],
)
def test_bad_configs_name_the_file_and_the_field(tmp_path, edit, message):
    path = _write(tmp_path, edit)
    with pytest.raises(VoxauditError) as caught:
        AuditConfig.load(path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_unreadable_and_unknown_formats_are_refused(tmp_path):
    with pytest.raises(VoxauditError, match="cannot read"):
        AuditConfig.load(tmp_path / "missing.toml")
    (tmp_path / "a.ini").write_text("x")
    with pytest.raises(VoxauditError, match=r"end in \.toml, \.yaml"):
        AuditConfig.load(tmp_path / "a.ini")
    (tmp_path / "b.toml").write_text("= nope")
    with pytest.raises(VoxauditError, match="invalid TOML"):
        AuditConfig.load(tmp_path / "b.toml")
