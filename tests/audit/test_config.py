import json

import pytest
import yaml

from voxaudit.audit import EXAMPLE, AuditConfig
from voxaudit.audit.config import GuardEvaluation, tomllib
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


def _guarded(data, family="asr", **options):
    """The example config with a [guard] section holding ``options``, on a ``family`` target."""
    data["target"]["family"] = family
    data["levels"] = ["speaker"] if family == "speaker" else ["sample"]
    data["guard"] = options


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
        (
            lambda d: _guarded(d, attacks=["fgsm"]),
            "[guard] attacks: unknown attack(s) 'fgsm'; known: ctc (white box), irta-like",
        ),
        (lambda d: _guarded(d, attacks="nes (black box)"), "[guard] attacks: a non-empty list"),
        (lambda d: _guarded(d, benign=30), "[guard] benign: a whole number >= 150"),
        (lambda d: _guarded(d, carriers=0), "[guard] carriers must be a whole number >= 1"),
        (lambda d: _guarded(d, fpr=1.5), "[guard] fpr must be a number between 0 and 1"),
        (lambda d: _guarded(d, target=""), "[guard] target must be a command"),
        (lambda d: _guarded(d, gateway="yes"), "[guard] gateway must be true or false"),
        (lambda d: _guarded(d, colour="red"), "[guard]: unknown field(s) colour"),
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


def test_the_guard_section_defaults_to_a_small_cpu_run(tmp_path):
    assert AuditConfig.load(_write(tmp_path, _guarded)).guard == GuardEvaluation(
        benign=200,
        carriers=1,
        attacks=("ctc (white box)", "nes (black box)"),
        target="open the door",
        fpr=0.001,
        gateway=False,
    )
    assert AuditConfig.example().guard is None  # an optional stage, off by default
    # The example's commented-out block, uncommented, is the defaults.
    block = EXAMPLE[EXAMPLE.index("# [guard]") :].splitlines()
    options = tomllib.loads("\n".join(line.removeprefix("# ") for line in block))["guard"]
    assert AuditConfig.load(_write(tmp_path, lambda d: _guarded(d, **options))).guard == (
        GuardEvaluation()
    )


def test_guard_options_are_read(tmp_path):
    options = {"benign": 300, "carriers": 2, "attacks": ["genetic (black box)"],
               "target": "call mom", "fpr": 0.01, "gateway": True}  # fmt: skip
    config = AuditConfig.load(_write(tmp_path, lambda d: _guarded(d, **options)))
    assert config.guard == GuardEvaluation(300, 2, ("genetic (black box)",), "call mom", 0.01, True)


@pytest.mark.parametrize("family", ["classifier", "speaker"])
def test_the_guard_applies_to_asr_targets_only(tmp_path, family):
    path = _write(tmp_path, lambda d: _guarded(d, family))
    with pytest.raises(VoxauditError) as caught:
        AuditConfig.load(path)
    message = str(caught.value)
    assert str(path) in message and "[guard]" in message and repr(family) in message


def test_the_guard_needs_a_model_not_an_adapter(tmp_path):
    def adapter(data):
        _guarded(data)
        data["target"] |= {"adapter": "pocketsphinx", "recordings": "mine"}

    with pytest.raises(VoxauditError, match=r"\[guard\]: the attacks need the target's losses"):
        AuditConfig.load(_write(tmp_path, adapter))
