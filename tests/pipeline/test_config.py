import json
from pathlib import Path

import pytest
import yaml

from voxaudit.errors import VoxauditError
from voxaudit.pipeline import EXAMPLE, PipelineConfig
from voxaudit.pipeline.config import GuardEvaluation, tomllib


def test_the_example_is_the_built_in_default_and_loads(tmp_path):
    path = tmp_path / "voxaudit-audit.toml"
    path.write_text(EXAMPLE, encoding="utf-8")
    config = PipelineConfig.load(path)
    assert config == PipelineConfig.example(tmp_path)
    assert config.target.family == "classifier" and config.target.source == "train"
    assert config.corpus.path.parent.parent == tmp_path  # relative to the config file
    assert config.levels == ("sample",) and config.shadows == 2


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_yaml_and_json_read_like_toml(tmp_path, suffix):
    data = tomllib.loads(EXAMPLE)
    path = tmp_path / f"audit{suffix}"
    path.write_text(yaml.safe_dump(data) if suffix == ".yaml" else json.dumps(data))
    assert PipelineConfig.load(path) == PipelineConfig.example(tmp_path)


def _guarded(data, family="asr", **options):
    """The example config with a [guard] section holding ``options``, on a ``family`` target."""
    data["target"]["family"] = family
    if family == "speaker":  # the example's model and audit settings are a classifier's
        data["target"]["model"] = {"family": "ge2e"}
        data["audit"] = {"voices": 4}
    elif family == "asr":
        data["target"]["model"] = {"family": "ctc"}
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
        (lambda d: d.update(colour="red"), "unknown key(s) colour"),
        (lambda d: d["target"].pop("family"), "family must be one of"),
        (lambda d: d.update(levels=["speaker"]), "classifier model is audited at sample level"),
        (lambda d: d.update(threat="grey-ish"), "threat must be one of"),
        (lambda d: d["target"].update(checkpoint="runs/t"), "needs the split it was trained on"),
        (lambda d: d["target"].update(adapter="pocketsphinx"), "asr and speaker targets"),
        (lambda d: d["shadows"].update(count=0), "count must be a whole number >= 1"),
        (lambda d: d["split"].update(bogus=1), "[split]: unknown key(s) bogus"),
        (lambda d: d["shadows"].update(count=1), "mode halves needs count >= 2"),
        (lambda d: d["shadows"].update(mode="random"), "mode must be disjoint or halves"),
        (lambda d: d.pop("corpus"), "missing table [corpus]"),
        (
            lambda d: _guarded(d, attacks=["fgsm"]),
            "[guard] attacks: unknown attack(s) 'fgsm'; known: ctc (white box), irta-like",
        ),
        (
            lambda d: _guarded(d, attacks="nes (black box)"),
            "[guard]: key 'attacks': expected a list, got 'nes (black box)'",
        ),
        (lambda d: _guarded(d, benign=30), "[guard] benign: a whole number >= 150"),
        (lambda d: _guarded(d, carriers=0), "[guard] carriers must be a whole number >= 1"),
        (lambda d: _guarded(d, fpr=1.5), "[guard] fpr must be a number between 0 and 1"),
        (lambda d: _guarded(d, target=""), "[guard] target must be a command"),
        (lambda d: _guarded(d, gateway="yes"), "[guard]: key 'gateway': expected true or false"),
        (lambda d: _guarded(d, colour="red"), "[guard]: unknown key(s) colour"),
        # Every key is checked against its type as the file is read, before any work.
        (lambda d: d.update(seed="zero"), "key 'seed': expected an integer, got 'zero'"),
        (lambda d: d.update(seed=-1), "seed must be an integer >= 0"),
        (lambda d: d.update(device=0), "key 'device': expected a string, got 0"),
        (lambda d: d.update(levels="sample"), "key 'levels': expected a list, got 'sample'"),
        (lambda d: d.update(audit=3), "key 'audit': expected a table, got 3"),
        (
            lambda d: d["audit"].update(max_per_side="eight"),
            "[audit]: key 'max_per_side': expected an integer or none, got 'eight'",
        ),
        (lambda d: d["audit"].update(draws=[4]), "[audit]: key 'draws': expected an integer"),
        (lambda d: d["audit"].update(bogus=1), "[audit]: unknown key(s) bogus; known: "),
        (lambda d: d["audit"].update(threat="white"), "[audit]: unknown key(s) threat"),
        (lambda d: d["corpus"].update(strict="yes"), "[corpus]: key 'strict': expected true"),
        (
            lambda d: d["corpus"]["synthesize"].update(speakers="many"),
            "[corpus]: key 'synthesize.speakers': expected an integer, got 'many'",
        ),
        (
            lambda d: d["corpus"]["synthesize"].update(voices=3),
            "[corpus.synthesize]: unknown key(s) voices",
        ),
        (lambda d: d["corpus"].update(path=3), "[corpus]: key 'path': expected a path, got 3"),
        (lambda d: d["shadows"].update(count="two"), "[shadows]: key 'count': expected an integer"),
        (
            lambda d: d["split"].update(target_fraction="half"),
            "[split]: key 'target_fraction': expected a number, got 'half'",
        ),
        (lambda d: d["target"].update(checkpoint=1), "[target]: key 'checkpoint': expected a path"),
        (
            lambda d: d["target"]["train"].update(lr="fast"),
            "[target.train]: key 'lr': expected a number, got 'fast'",
        ),
        (lambda d: d["target"]["train"].update(lr=-1.0), "[target.train]: train config: lr must"),
        (
            lambda d: d["target"]["model"].update(hidden="big"),
            "[target.model]: key 'hidden': expected an integer, got 'big'",
        ),
        (lambda d: d["target"]["model"].update(layers=2), "[target.model]: unknown key(s) layers"),
        (
            lambda d: d["target"].update(sampler={"speakers_per_batch": 2}),
            "[target.sampler]: model kind 'classifier' takes no [sampler] settings",
        ),
        (
            lambda d: d["target"].update(augment={"freq_masks": "two"}),
            "[target.augment]: key 'freq_masks': expected an integer, got 'two'",
        ),
        (lambda d: d.update(defenses={"sweep": 1}), "[defenses]: key 'sweep': expected a path"),
    ],
)
def test_bad_configs_name_the_file_and_the_field(tmp_path, edit, message):
    path = _write(tmp_path, edit)
    with pytest.raises(VoxauditError) as caught:
        PipelineConfig.load(path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_a_bad_key_is_one_line_whatever_the_format(tmp_path):
    path = tmp_path / "audit.toml"
    path.write_text(EXAMPLE.replace("seed = 0", 'seed = "zero"'), encoding="utf-8")
    with pytest.raises(VoxauditError) as caught:
        PipelineConfig.load(path)
    assert str(caught.value) == f"{path}: key 'seed': expected an integer, got 'zero'"


def test_audit_options_are_checked_against_the_familys_audit_config(tmp_path):
    def speaker(data):
        data["target"] = {"family": "speaker", "model": {"family": "ge2e", "hidden": 8}}
        data["levels"] = ["speaker"]
        data["audit"] = {"chunk_seconds": "none", "voice_counts": [1, 2], "max_per_side": "None"}

    config = PipelineConfig.load(_write(tmp_path, speaker))
    # TOML has no null: "none" is the None that turns chunk splitting off.
    assert config.audit == {"chunk_seconds": None, "voice_counts": (1, 2), "max_per_side": None}
    from voxaudit.mia import families

    assert families.get("speaker").config(**config.audit).chunk_seconds is None
    with pytest.raises(VoxauditError, match=r"\[audit\]: unknown key\(s\) draws"):  # asr's
        PipelineConfig.load(_write(tmp_path, lambda d: (speaker(d), d["audit"].update(draws=8))))


def test_the_corpus_can_be_strict(tmp_path):
    config = PipelineConfig.load(_write(tmp_path, lambda d: d["corpus"].update(strict=True)))
    assert config.corpus.strict and not PipelineConfig.example().corpus.strict


def test_unreadable_and_unknown_formats_are_refused(tmp_path):
    with pytest.raises(VoxauditError, match="cannot read"):
        PipelineConfig.load(tmp_path / "missing.toml")
    (tmp_path / "a.ini").write_text("x")
    with pytest.raises(VoxauditError, match=r"end in \.toml, \.yaml"):
        PipelineConfig.load(tmp_path / "a.ini")
    (tmp_path / "b.toml").write_text("= nope")
    with pytest.raises(VoxauditError, match="invalid TOML"):
        PipelineConfig.load(tmp_path / "b.toml")


def test_the_guard_section_defaults_to_a_small_cpu_run(tmp_path):
    assert PipelineConfig.load(_write(tmp_path, _guarded)).guard == GuardEvaluation(
        benign=200,
        carriers=1,
        attacks=("ctc (white box)", "nes (black box)"),
        target="open the door",
        fpr=0.001,
        gateway=False,
    )
    assert PipelineConfig.example().guard is None  # an optional stage, off by default
    # The example's commented-out block, uncommented, is the defaults.
    block = EXAMPLE[EXAMPLE.index("# [guard]") :].splitlines()
    options = tomllib.loads("\n".join(line.removeprefix("# ") for line in block))["guard"]
    assert PipelineConfig.load(_write(tmp_path, lambda d: _guarded(d, **options))).guard == (
        GuardEvaluation()
    )


def test_guard_options_are_read(tmp_path):
    options = {"benign": 300, "carriers": 2, "attacks": ["genetic (black box)"],
               "target": "call mom", "fpr": 0.01, "gateway": True}  # fmt: skip
    config = PipelineConfig.load(_write(tmp_path, lambda d: _guarded(d, **options)))
    assert config.guard == GuardEvaluation(300, 2, ("genetic (black box)",), "call mom", 0.01, True)


@pytest.mark.parametrize("family", ["classifier", "speaker"])
def test_the_guard_applies_to_asr_targets_only(tmp_path, family):
    path = _write(tmp_path, lambda d: _guarded(d, family))
    with pytest.raises(VoxauditError) as caught:
        PipelineConfig.load(path)
    message = str(caught.value)
    assert str(path) in message and "[guard]" in message and repr(family) in message


def test_the_guard_needs_a_model_not_an_adapter(tmp_path):
    def adapter(data):
        _guarded(data)
        data["target"] |= {"adapter": "pocketsphinx", "recordings": "mine"}

    with pytest.raises(VoxauditError, match=r"\[guard\]: the guard stage attacks a built-in model"):
        PipelineConfig.load(_write(tmp_path, adapter))


def test_a_reference_model_is_read_relative_to_the_config_file(tmp_path):
    config = PipelineConfig.load(_write(tmp_path, lambda d: d.update(reference={"model": "base"})))
    assert config.reference == tmp_path / "base"
    assert PipelineConfig.example().reference is None  # optional, off by default
    # The example's commented-out section, uncommented, reads.
    line = next(x for x in EXAMPLE.splitlines() if x.startswith("# model = "))
    section = tomllib.loads("[reference]\n" + line.removeprefix("# "))
    config = PipelineConfig.load(_write(tmp_path, lambda d: d.update(section)))
    assert config.reference == tmp_path / "runs" / "base"
    for bad, message in (
        ({}, r"\[reference\]: missing key model"),
        ({"model": "b", "path": "c"}, r"\[reference\]: unknown key\(s\) path"),
    ):
        with pytest.raises(VoxauditError, match=message):
            PipelineConfig.load(_write(tmp_path, lambda d, bad=bad: d.update(reference=bad)))

    def scoring(data):
        data["target"] = {"family": "asr", "adapter": "pocketsphinx", "recordings": "mine"}
        data["reference"] = {"model": "base"}

    with pytest.raises(VoxauditError, match=r"\[reference\]: scoring mode"):
        PipelineConfig.load(_write(tmp_path, scoring))


def test_a_targets_finetune_base_is_read_relative_to_the_config_file(tmp_path):
    def finetuned(data):
        data["target"]["finetune"] = {"init_from": "runs/base", "freeze": ["front_end"]}

    config = PipelineConfig.load(_write(tmp_path, finetuned))
    assert config.target.finetune == {
        "init_from": str(tmp_path / "runs" / "base"),
        "freeze": ["front_end"],
    }
    assert PipelineConfig.example().target.finetune == {}

    def bad(data):
        data["target"]["finetune"] = {"init_from": "runs/base", "frozen": ["x"]}

    with pytest.raises(VoxauditError, match="frozen"):
        PipelineConfig.load(_write(tmp_path, bad))


def test_the_built_in_base_scenario_is_read_and_checked(tmp_path):
    def based(data):
        data["target"]["model"]["label"] = "transcript"
        data["base"] = {"fraction": 0.25, "train": {"epochs": 3}, "freeze": ["front_end"]}

    config = PipelineConfig.load(_write(tmp_path, based))
    assert config.base is not None and config.base.fraction == 0.25
    assert config.base.by == "speakers" and config.base.freeze == ("front_end",)
    assert PipelineConfig.example().base is None


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["base"].update(fraction=1.0), r"\[base\] fraction must lie strictly"),
        (lambda d: d["base"].update(by="voices"), r"\[base\] by must be one of"),
        (lambda d: d["base"].update(train={"epoch": 3}), r"\[base.train\]: unknown key"),
        (lambda d: d["base"].update(fraction="a third"), r"\[base\].*fraction"),
        (lambda d: d.update(reference={"model": "runs/base"}), r"leave \[reference\] out"),
        (lambda d: d["target"].update(finetune={"init_from": "b"}), r"leave \[target\] finetune"),
        (lambda d: d["target"]["model"].update(label="speaker"), 'use by = "recordings"'),
    ],
)
def test_a_bad_base_section_is_refused_naming_the_key(tmp_path, edit, message):
    def based(data):
        data["target"]["model"]["label"] = "transcript"
        data["base"] = {"fraction": 0.3}
        edit(data)

    with pytest.raises(VoxauditError, match=message):
        PipelineConfig.load(_write(tmp_path, based))


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"canaries": "many"}, r"\[dp_audit\].*canaries"),
        ({"kind": "random-transcript"}, "takes wrong-label canaries"),
        ({"colour": 1}, "colour"),
        ({"score": "calibrated"}, "calibrated needs a reference model"),
    ],
)
def test_a_bad_dp_audit_section_is_refused_naming_the_key(tmp_path, section, message):
    with pytest.raises(VoxauditError, match=message):
        PipelineConfig.load(_example_with(tmp_path, dp_audit=section))


def _example_with(tmp_path: Path, **sections: dict) -> Path:
    """The built-in example with ``sections`` added, as a config file."""
    path = tmp_path / "audit.json"
    path.write_text(json.dumps(tomllib.loads(EXAMPLE) | sections))
    return path


def test_the_dp_audit_section_resolves_its_canary_kind(tmp_path):
    section = {"canaries": 100, "noise_multiplier": 1.0}
    config = PipelineConfig.load(_example_with(tmp_path, dp_audit=section)).dp_audit
    assert config is not None and config.kind == "wrong-label" and config.canaries == 100
    assert config.noise_multiplier == 1.0 and config.delta == 1e-5


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"engine": "spark"}, r"audit.json: \[compute\]: engine must be local or ray"),
        ({"cpus_per_task": "two"}, r"\[compute\]: key 'cpus_per_task': expected a number"),
        ({"workers": 4}, r"\[compute\]: unknown key\(s\) workers"),
        ({"address": "auto"}, r"\[compute\]: address and cpus are Ray settings"),
    ],
)
def test_a_bad_compute_section_is_refused_naming_the_key(tmp_path, section, message):
    with pytest.raises(VoxauditError, match=message):
        PipelineConfig.load(_example_with(tmp_path, compute=section))


def test_the_compute_section_is_read_and_defaults_to_the_local_engine(tmp_path):
    assert PipelineConfig.example().compute.engine == "local"
    pytest.importorskip("ray")
    section = {"engine": "ray", "address": "auto", "cpus_per_task": 2, "gpus_per_task": 0.5}
    compute = PipelineConfig.load(_example_with(tmp_path, compute=section)).compute
    assert (compute.engine, compute.address, compute.cpus_per_task) == ("ray", "auto", 2)
    assert compute.record()["gpus_per_task"] == 0.5
