"""The defense sweep: config errors, the shipped configs, the Pareto frontier, shared models,
and tiny resumable sweeps of each family."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from voxaudit.data.loaders import load_corpus
from voxaudit.data.splits import make_split
from voxaudit.data.synth import synthesize_corpus
from voxaudit.defend.sweep import (
    SweepConfig,
    _claim,
    pareto_front,
    run_setting,
    run_sweep,
    setting_groups,
)
from voxaudit.errors import VoxauditError
from voxaudit.mia import families

SHIPPED = sorted((Path(__file__).parents[2] / "configs").glob("sweep-*.toml"))


def test_pareto_front_by_hand():
    # (accuracy, AUROC): b is beaten by a (as useful, less leaky); d by c.
    points = [(0.9, 0.6), (0.9, 0.7), (0.8, 0.5), (0.7, 0.55), (0.95, 0.9)]
    assert pareto_front(points, higher_utility_is_better=True) == [True, False, True, False, True]
    # With CER, lower utility values are better: (0.1, 0.9) and (0.3, 0.5) trade off.
    assert pareto_front([(0.1, 0.9), (0.3, 0.5), (0.3, 0.6)], False) == [True, True, False]


def _write(tmp_path, text):
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def test_config_errors_name_the_setting_and_field(tmp_path):
    head = 'family = "asr"\ncorpus = "c"\nsplit = "s.json"\n'
    with pytest.raises(VoxauditError, match=r"settings\[1\]: unknown hook 'dropout_x'"):
        SweepConfig.load(
            _write(tmp_path, head + '[[settings]]\nname = "a"\n[[settings]]\nname = "b"\n'
                   "hooks = { dropout_x = {} }\n")
        )  # fmt: skip
    with pytest.raises(VoxauditError, match=r"missing key\(s\) settings"):
        SweepConfig.load(_write(tmp_path, head))
    with pytest.raises(VoxauditError, match="family 'video'"):
        SweepConfig.load(_write(tmp_path, head.replace("asr", "video") + "settings = []\n"))
    with pytest.raises(VoxauditError, match="must differ"):
        SweepConfig.load(
            _write(tmp_path, head + '[[settings]]\nname = "A"\n[[settings]]\nname = "a"\n')
        )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('shadows = "two"\n', "sweep.toml: key 'shadows': expected an integer, got 'two'"),
        ("colour = 1\n", "sweep.toml: unknown key(s) colour; known: audit, base"),
        ("settings = 3\n", "sweep.toml: key 'settings': expected a list, got 3"),
        ("[audit]\nmax_per_side = 'eight'\n", "[audit]: key 'max_per_side': expected an integer"),
        ("[audit]\nvoices = 3\n", "[audit]: unknown key(s) voices"),  # a speaker option
        ("[base.train]\nlr = 'fast'\n", "[base.train]: key 'lr': expected a number, got 'fast'"),
        ("[base.model]\nfamily = 'rnnt'\n", "[base.model]: key 'family': expected one of 'ctc'"),
        ("[base.optim]\n", "sweep.toml: unknown section(s) optim; use [base.model]"),
        ("[[settings]]\nname = 1\n", "settings[0]: key 'name': expected a string, got 1"),
        ("[[settings]]\nhooks = {}\n", "settings[0]: missing key(s) name"),
        ("[[settings]]\nname = 'a'\ncolour = 1\n", "settings[0]: unknown key(s) colour"),
        (
            "[[settings]]\nname = 'a'\ntrain = { lr = 'fast' }\n",
            "sweep.toml: settings[0]: [train]: key 'lr': expected a number, got 'fast'",
        ),
        (
            "[[settings]]\nname = 'a'\nmodel = { rnn = 3 }\n",
            "settings[0]: [model]: key 'rnn': expected a Callable or a string, got 3",
        ),
        (
            "[[settings]]\nname = 'a'\nhooks = { dpsgd = { noise_multiplier = 'one' } }\n",
            "settings[0]: hooks.dpsgd: key 'noise_multiplier': expected a number, got 'one'",
        ),
        (
            "[[settings]]\nname = 'a'\nhooks = { distillation = { teacher = 1 } }\n",
            "settings[0]: hooks.distillation: unknown key(s) teacher; known: temperature",
        ),
        (
            "[[settings]]\nname = 'a'\nserve = { top_k = { k = 'one' } }\n",
            "settings[0]: serve.top_k: key 'k': expected an integer, got 'one'",
        ),
        (
            "[[settings]]\nname = 'a'\nserve = { top_k = {}, rounding = {} }\n",
            "settings[0]: serve through one defense at most, not 2",
        ),
    ],
)
def test_every_key_of_a_sweep_config_is_checked_as_it_is_read(tmp_path, text, message):
    head = 'family = "asr"\ncorpus = "c"\nsplit = "s.json"\n'
    settings = "" if "settings" in text else '[[settings]]\nname = "none"\n'
    top, tables = (text, "") if not text.startswith("[") else ("", text)
    path = _write(tmp_path, head + top + settings + tables)
    with pytest.raises(VoxauditError) as caught:
        SweepConfig.load(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)


def test_a_sweeps_audit_options_are_read_as_the_familys_types(tmp_path):
    path = _write(
        tmp_path,
        'family = "asr"\ncorpus = "c"\nsplit = "s.json"\n[[settings]]\nname = "none"\n'
        '[audit]\nsnrs_db = [20, 10.5]\nmax_per_side = "none"\n',
    )
    assert SweepConfig.load(path).audit == {"snrs_db": (20, 10.5), "max_per_side": None}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_configs_load_and_start_from_an_undefended_setting(path):
    config = SweepConfig.load(path)
    assert path.stem == f"sweep-{config.family}"
    first = config.settings[0]
    assert first.name == "none" and not (first.model or first.train or first.hooks or first.serve)
    # Paths are relative to the config file: the split lands in the git-ignored output folder.
    assert config.split.resolve().parent.parent == Path(__file__).parents[2] / "voxaudit-out"


def test_every_family_ships_a_config():
    assert {p.stem for p in SHIPPED} == {f"sweep-{family}" for family in families.names()}


def test_tiny_asr_sweep_writes_points_and_resumes(tmp_path):
    corpus_dir = tmp_path / "corpus"
    synthesize_corpus(corpus_dir, n_speakers=8, per_speaker=4, seed=1, workers=1)
    make_split(load_corpus(corpus_dir), "sample", seed=0, n_shadow=2).save(tmp_path / "s.json")
    config_path = _write(
        tmp_path,
        'family = "asr"\ncorpus = "corpus"\nsplit = "s.json"\nshadows = 2\nthreat = "grey"\n'
        '[base.model]\nfamily = "ctc"\npreset = "tiny"\nd_model = 32\nlayers = 1\n'
        "[base.train]\nepochs = 1\nbatch_size = 4\n"
        '[audit]\ndraws = 1\nsnrs_db = [20.0]\nclassifiers = ["logistic"]\nn_bootstrap = 100\n'
        '[[settings]]\nname = "none"\n'
        '[[settings]]\nname = "L2 0.01"\nhooks = { l2 = { weight = 0.01 } }\n'
        '[[settings]]\nname = "transcripts only"\nthreat = "black"\n',
    )
    config = SweepConfig.load(config_path)
    summary = run_sweep(config, tmp_path / "out", progress=False)
    names = [r["setting"] for r in summary["settings"]]
    assert names == ["none", "L2 0.01", "transcripts only"]
    assert summary["utility_metric"] == "cer" and any(r["pareto"] for r in summary["settings"])
    black = summary["settings"][2]
    assert black["threat"] == "black" and "loss" not in black["leakage"]["features"]
    for result in summary["settings"]:
        assert 0 <= result["leakage"]["auroc"]["low"] <= result["leakage"]["auroc"]["high"] <= 1
        assert "value" in result["leakage"]["null_auroc"]
    assert (tmp_path / "out" / "pareto.png").stat().st_size > 1000
    # A rerun reads every finished setting back instead of recomputing it.
    result_file = tmp_path / "out" / "settings" / "none" / "result.json"
    stamp = result_file.stat().st_mtime_ns
    again = run_sweep(config, tmp_path / "out", progress=False)
    assert result_file.stat().st_mtime_ns == stamp
    assert json.loads(result_file.read_text())["utility"] == again["settings"][0]["utility"]


def test_classifier_sweep_with_serve_time_defenses(tmp_path):
    corpus_dir = tmp_path / "corpus"
    synthesize_corpus(corpus_dir, n_speakers=6, per_speaker=8, seed=2, workers=1)
    make_split(load_corpus(corpus_dir), "sample", seed=0, n_shadow=2).save(tmp_path / "s.json")
    config = SweepConfig.load(
        _write(
            tmp_path,
            'family = "classifier"\ncorpus = "corpus"\nsplit = "s.json"\n'
            '[base.model]\nlabel = "speaker"\nhidden = 8\nn_mels = 16\n'
            "[base.train]\nepochs = 2\nbatch_size = 4\nlr = 0.01\n"
            '[audit]\ndraws = 1\nsnrs_db = [10.0]\nclassifiers = ["logistic"]\n'
            "n_bootstrap = 100\n"
            '[[settings]]\nname = "none"\n'
            '[[settings]]\nname = "label only"\nserve = { label_only = {} }\n'
            '[[settings]]\nname = "memguard"\nserve = { memguard = { steps = 20 } }\n'
            '[[settings]]\nname = "DP-SGD"\nmodel = { cell = "dpgru" }\n'
            "hooks = { dpsgd = { noise_multiplier = 1.0 } }\n",
        )
    )
    summary = run_sweep(config, tmp_path / "out", progress=False)
    by_name = {r["setting"]: r for r in summary["settings"]}
    assert summary["utility_metric"] == "accuracy"
    # "label only" serves the undefended models; MemGuard's hold a share out; DP-SGD's differ.
    assert len(list((tmp_path / "out" / "models").iterdir())) == 3
    # Each DP-SGD model reports the finite epsilon it spent; the others report none.
    assert set(by_name["DP-SGD"]["epsilon"]) == {"target", "shadow-0", "shadow-1"}
    assert all(0 < e < float("inf") for e in by_name["DP-SGD"]["epsilon"].values())
    assert by_name["none"]["epsilon"] is None
    # Serving labels only costs no accuracy: the same model, the same predicted labels.
    assert by_name["label only"]["utility"] == by_name["none"]["utility"]
    # MemGuard's defender keeps a share of its pool out as known non-members, so its model
    # trains on less; the cost is the defense's, and the sweep reports it.
    assert 0 <= by_name["memguard"]["utility"]["value"] <= 1


def test_speaker_sweep_scores_eer_and_serves_defended_embeddings(tmp_path):
    corpus_dir = tmp_path / "corpus"
    synthesize_corpus(corpus_dir, n_speakers=12, per_speaker=4, seed=3, workers=1)
    split = make_split(
        load_corpus(corpus_dir), "speaker", seed=0, n_shadow=1, reference_speakers=2,
        unseen_fraction=0.25,
    )  # fmt: skip
    split.save(tmp_path / "s.json")
    config = SweepConfig.load(
        _write(
            tmp_path,
            'family = "speaker"\ncorpus = "corpus"\nsplit = "s.json"\nshadows = 1\n'
            "[base.model]\nn_mels = 16\nhidden = 16\nlayers = 1\nembedding_dim = 8\n"
            "[base.train]\nepochs = 1\n"
            "[base.sampler]\nspeakers_per_batch = 2\nutterances_per_speaker = 2\n"
            "[audit]\nvoices = 2\nvoice_counts = []\nimposter_counts = []\n"
            'imposter_voices = []\nviews = 2\nclassifiers = ["logistic"]\n'
            'curve_classifiers = ["logistic"]\nattack_seeds = 1\ncv = 2\nn_bootstrap = 50\n'
            '[[settings]]\nname = "rounding 1"\nserve = { rounding = { decimals = 1 } }\n',
        )
    )
    summary = run_sweep(config, tmp_path / "out", progress=False)
    (result,) = summary["settings"]
    assert summary["utility_metric"] == "eer" and 0 <= result["utility"]["value"] <= 1
    assert "null_auroc" in result["leakage"] and result["pareto"]
    with pytest.raises(VoxauditError, match="grey-box only"):
        run_sweep(
            SweepConfig(**{**config.__dict__, "threat": "black"}), tmp_path / "b", progress=False
        )


def test_a_sweep_folder_refuses_another_config_or_a_redefined_setting(tmp_path):
    (tmp_path / "s.json").write_text('{"a split": 1}')
    head = 'family = "classifier"\ncorpus = "c"\nsplit = "s.json"\n'
    setting = '[[settings]]\nname = "none"\n'
    config = SweepConfig.load(_write(tmp_path, head + setting))
    out = tmp_path / "out"
    _claim(config, out)
    _claim(config, out)  # the same config: resumes
    longer = SweepConfig.load(_write(tmp_path, head + "[base.train]\nepochs = 9\n" + setting))
    with pytest.raises(VoxauditError, match=r"different config \(changed: base\)"):
        _claim(longer, out)
    (tmp_path / "s.json").write_text('{"another split": 1}')
    with pytest.raises(VoxauditError, match="split_sha256"):
        _claim(config, out)
    # A finished setting whose definition changed under the same name is not read back.
    done = out / "settings" / "none" / "result.json"
    done.parent.mkdir(parents=True)
    done.write_text(json.dumps({"setting": "none", "definition": {"name": "none", "train": {}}}))
    redefined = SweepConfig.load(
        _write(tmp_path, head + setting + "train = { weight_decay = 0.1 }\n")
    )
    with pytest.raises(VoxauditError, match="'none' was run with another definition"):
        run_setting(redefined, redefined.settings[0], out, progress=False)


def test_settings_that_share_models_are_grouped_into_one_task(tmp_path):
    head = 'family = "classifier"\ncorpus = "c"\nsplit = "s.json"\n'
    config = SweepConfig.load(
        _write(
            tmp_path,
            head + '[[settings]]\nname = "L2"\nhooks = { l2 = { weight = 0.01 } }\n'
            '[[settings]]\nname = "top-1"\nserve = { top_k = { k = 1 } }\n'
            '[[settings]]\nname = "distilled"\nhooks = { distillation = {} }\n'
            '[[settings]]\nname = "none"\n'
            '[[settings]]\nname = "memguard"\nserve = { memguard = {} }\n',
        )
    )
    # top-1 serves the undefended models; distillation's teacher is the undefended model;
    # MemGuard's defender holds a share out, so its models are its own, as are L2's.
    assert [[s.name for s in group] for group in setting_groups(config)] == [
        ["L2"],
        ["top-1", "distilled", "none"],
        ["memguard"],
    ]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")
def test_a_sweep_on_ray_gives_the_local_engines_points(tmp_path):
    corpus_dir = tmp_path / "corpus"
    synthesize_corpus(corpus_dir, n_speakers=6, per_speaker=8, seed=2, workers=1)
    make_split(load_corpus(corpus_dir), "sample", seed=0, n_shadow=2).save(tmp_path / "s.json")
    text = (
        'family = "classifier"\ncorpus = "corpus"\nsplit = "s.json"\n'
        '[base.model]\nlabel = "speaker"\nhidden = 8\nn_mels = 16\n'
        "[base.train]\nepochs = 2\nbatch_size = 4\nlr = 0.01\n"
        '[audit]\ndraws = 1\nsnrs_db = [10.0]\nclassifiers = ["logistic"]\nn_bootstrap = 100\n'
        '[[settings]]\nname = "none"\n'
        '[[settings]]\nname = "top-1"\nserve = { top_k = { k = 1 } }\n'
        '[[settings]]\nname = "L2"\nhooks = { l2 = { weight = 0.01 } }\n'
    )
    local = run_sweep(SweepConfig.load(_write(tmp_path, text)), tmp_path / "local", progress=False)
    on_ray = SweepConfig.load(_write(tmp_path, text + '[compute]\nengine = "ray"\ncpus = 2\n'))
    assert on_ray.compute.engine == "ray"
    ray_summary = run_sweep(on_ray, tmp_path / "ray", progress=False)

    def points(summary):
        keys = ("setting", "utility", "leakage", "pareto")
        return [[r[key] for key in keys] for r in summary["settings"]]

    assert points(ray_summary) == points(local)
