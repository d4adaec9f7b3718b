"""The audit end to end on a tiny real model: report, resume, refusal of a changed config, CLI."""

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from voxaudit.cli import app
from voxaudit.errors import VoxauditError
from voxaudit.guard.evaluation import DETECTORS
from voxaudit.mia.core import CROSS_FIT
from voxaudit.pipeline import PipelineConfig, run_audit
from voxaudit.pipeline.config import BaseSpec

runner = CliRunner()


def test_the_audit_trains_attacks_and_reports_each_level(tiny_audit):
    _, out, report = tiny_audit
    assert report["schema"] == "voxaudit.audit-report/1"
    (summary,) = report["summary"]
    assert summary["level"] == "sample" and summary["risk"] in {"none", "low", "moderate", "high"}
    assert 0 <= summary["auroc"]["low"] <= summary["auroc"]["value"] <= summary["auroc"]["high"]
    (level,) = report["levels"]
    assert set(level["models"]) == {"target", "shadow-0", "shadow-1"}
    models = {r["model"] for r in level["mia"]["results"]}
    assert models == {"target", "null"}  # every attack has its null control
    utility = level["utility"]
    assert utility["metric"] == "accuracy" and 0 <= utility["holdout"] <= 1
    assert report["run"]["seconds"]["total"] > 0 and report["run"]["packages"]["torch"]
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))
    assert (out / "report.html").is_file()


def test_a_rerun_resumes_without_retraining_or_reattacking(tiny_audit, monkeypatch):
    config, out, report = tiny_audit

    def refuse(*args, **kwargs):
        raise AssertionError("a finished stage was recomputed")

    monkeypatch.setattr("voxaudit.train.run.train_model", refuse)
    monkeypatch.setattr("voxaudit.mia.core.run_audit", refuse)
    again = run_audit(config, out, progress=False)
    assert again["levels"] == json.loads(json.dumps(report["levels"]))


def test_an_interrupted_level_resumes_from_its_checkpoints(tiny_audit, tmp_path, monkeypatch):
    config, out, _ = tiny_audit
    calls = []
    import voxaudit.train.run as run_module

    real = run_module.train_model

    def counting(*args, **kwargs):
        calls.append(args[3])
        return real(*args, **kwargs)

    def read_again(*args, **kwargs):
        raise AssertionError("a training stage read the corpus again")

    monkeypatch.setattr(run_module, "train_model", counting)
    # The corpus stage reads and checks the corpus once; every training gets it passed on.
    monkeypatch.setattr(run_module, "load_corpus", read_again)
    (out / "sample" / "done.json").unlink()  # as if killed during the attacks
    history = {r: (out / "sample/models" / r / "history.json").read_text() for r in
               ("target", "shadow-0", "shadow-1")}  # fmt: skip
    resumed = run_audit(config, out, progress=False)
    assert sorted(calls) == ["shadow-0", "shadow-1", "target"]
    for role, text in history.items():  # finished training is not repeated
        assert (out / "sample/models" / role / "history.json").read_text() == text
    assert resumed["summary"][0]["auroc"] == tiny_audit[2]["summary"][0]["auroc"]


def test_the_guard_stage_attacks_the_target_reports_and_resumes(tiny_guard_audit, monkeypatch):
    config, out, report = tiny_guard_audit
    guard = report["guard"]
    (level,) = report["levels"]
    assert guard["model"] == level["models"]["target"]  # the audited target, not a shadow
    assert guard["attacks"][0]["attack"] == "nes (black box)"
    assert {g["detector"] for g in guard["aggregate"]} == set(DETECTORS)
    assert report["run"]["seconds"]["guard evaluation"] > 0
    done = out / "guard" / "done.json"
    assert json.loads((out / "report.json").read_text())["guard"] == json.loads(done.read_text())
    assert '<section id="guard">' in (out / "report.html").read_text()

    def refuse(*args, **kwargs):
        raise AssertionError("a finished stage was recomputed")

    for name in ("voxaudit.guard.evaluation.evaluate_guard", "voxaudit.mia.core.run_audit",
                 "voxaudit.train.run.train_model"):  # fmt: skip
        monkeypatch.setattr(name, refuse)
    stamp = done.stat().st_mtime_ns
    again = run_audit(config, out, progress=False)
    assert again["guard"] == json.loads(json.dumps(guard)) and done.stat().st_mtime_ns == stamp


def test_a_changed_config_is_refused_in_the_same_folder(tiny_audit):
    config, out, _ = tiny_audit
    changed = replace(config, seed=1)
    with pytest.raises(VoxauditError, match=r"different config \(changed: seed\)"):
        run_audit(changed, out, progress=False)


def test_unknown_audit_options_fail_before_anything_is_trained(tiny_audit, tmp_path):
    config, _, _ = tiny_audit
    bad = replace(config, audit={"max_per_sidez": 3})
    with pytest.raises(VoxauditError, match=r"\[audit\]: .*max_per_sidez"):
        run_audit(bad, tmp_path / "never", progress=False)
    assert not (tmp_path / "never").exists()


def test_the_cli_gate_exits_non_zero_above_the_bound(tiny_audit, tiny_config_path):
    _, out, report = tiny_audit
    auroc = max(
        r["metrics"]["auroc"]["value"]
        for r in report["levels"][0]["mia"]["results"]
        if r["model"] == "target"
    )
    args = ["audit", str(tiny_config_path), "--out", str(out), "--fail-above"]
    failed = runner.invoke(app, [*args, f"auroc={auroc - 0.01:.3f}"])
    assert failed.exit_code == 1 and "privacy gate: FAIL sample auroc" in failed.output
    passed = runner.invoke(app, [*args, "auroc=1.0"])
    assert passed.exit_code == 0 and "privacy gate: pass" in passed.output
    bad = runner.invoke(app, [*args, "auc=0.5"])
    assert bad.exit_code == 2 and "unknown metric 'auc'" in bad.output


def test_audit_init_writes_the_example_and_never_overwrites(tmp_path):
    path = tmp_path / "mine.toml"
    assert runner.invoke(app, ["audit", "init", str(path)]).exit_code == 0
    assert PipelineConfig.load(path) == PipelineConfig.example(tmp_path)
    again = runner.invoke(app, ["audit", "init", str(path)])
    assert again.exit_code == 2 and "not overwritten" in again.output


SPEAKER = """\
device = "cpu"
levels = ["speaker"]
[corpus]
path = "corpus"
synthesize = { speakers = 16, per_speaker = 6 }
[target]
family = "speaker"
model = { family = "ge2e", hidden = 16, layers = 1, embedding_dim = 16 }
train = { epochs = 1, lr = 1e-3 }
sampler = { speakers_per_batch = 4, utterances_per_speaker = 3 }
[shadows]
count = 1
mode = "disjoint"
[split]
reference_speakers = 2
[audit]
voices = 3
voice_counts = [1, 2]
imposter_counts = [1]
imposter_voices = [1]
classifiers = ["logistic"]
curve_classifiers = ["logistic"]
attack_seeds = 1
n_bootstrap = 200
cv = 2
"""


def test_a_speaker_encoder_is_audited_at_speaker_level_with_its_eer(tmp_path):
    path = tmp_path / "speaker.toml"
    path.write_text(SPEAKER)
    report = run_audit(PipelineConfig.load(path), tmp_path / "out", progress=False)
    (summary,) = report["summary"]
    assert summary["question"] == "Was this person's voice used to train the model?"
    (level,) = report["levels"]
    assert level["utility"]["metric"] == "eer" and set(level["models"]) == {"target", "shadow-0"}
    assert any(r["name"].startswith("SLMIA-SR") for r in level["mia"]["results"])


@pytest.mark.parametrize(
    ("mode", "count", "given"),
    [("disjoint", 1, "folder"), ("halves", 2, "folder"), ("halves", 0, "folder"),
     ("disjoint", 1, "factory")],
)  # fmt: skip
def test_a_model_trained_elsewhere_with_membership_lists_gets_a_verdict(
    tiny_audit, tmp_path, monkeypatch, mode, count, given
):
    """The tiny audit's target, given as a model with its member and non-member lists (its run
    folder, or a module.path:factory of the user's that returns the classifier, so nothing
    records what it classifies by): the shadows train on the corpus' other recordings, and
    the verdict is the same kind."""
    from voxaudit.data.splits import AuditSplit

    config, out, _ = tiny_audit
    split = AuditSplit.load(out / "sample" / "split.json")
    (tmp_path / "members.txt").write_text("\n".join(split.train_ids("target")))
    (tmp_path / "nonmembers.txt").write_text("\n".join(split.holdout_ids("target")))
    corpus = config.corpus.path
    adapter = out / "sample" / "models" / "target"
    if given == "factory":
        (tmp_path / "users_model.py").write_text(
            "from voxaudit.models.classifier import SpokenClassifier\n\n\n"
            f"def make():\n    return SpokenClassifier.load({str(adapter)!r}, 'cpu')\n"
        )
        monkeypatch.syspath_prepend(str(tmp_path))
        adapter = "users_model:make"
    text = f"""
seed = 0
device = "cpu"
[corpus]
path = "{corpus}"
[target]
family = "classifier"
adapter = "{adapter}"
members = "members.txt"
nonmembers = "nonmembers.txt"
model = {{ label = "speaker", hidden = 8, n_mels = 16, dropout = 0.0 }}
train = {{ epochs = 2, lr = 3e-3, batch_size = 8 }}
[shadows]
count = {count}
mode = "{mode}"
[audit]
max_per_side = 16
draws = 1
classifiers = ["logistic"]
n_bootstrap = 100
min_per_side = 2
cv = 2
"""
    (tmp_path / "audit.toml").write_text(text)
    loaded = PipelineConfig.load(tmp_path / "audit.toml")
    assert loaded.target.source == "membership"
    report = run_audit(loaded, tmp_path / "out", progress=False)
    (level,) = report["levels"]
    roles = {f"shadow-{k}" for k in range(count)}
    assert set(level["models"]) == roles  # the target is not retrained
    made = AuditSplit.load(tmp_path / "out" / "sample" / "split.json")
    for role in roles:
        assert set(made.train_ids(role)).isdisjoint(
            {*split.train_ids("target"), *split.holdout_ids("target")}
        )
    if mode == "halves" and count:  # each other recording trains exactly one of the two shadows
        ins = [set(made.train_ids(role)) for role in sorted(roles)]
        assert ins[0].isdisjoint(ins[1]) and ins[0] | ins[1] == set(
            made.pools["shadow_train"]
        ) | set(made.pools["shadow_holdout"])
    fitted_on = level["mia"]["setup"]["attacks_fitted_on"]
    assert fitted_on == ("shadow models" if count else CROSS_FIT)
    assert level["mia"]["setup"]["label"] == "speaker"
    assert level["mia"]["headline"]["name"]


def test_membership_lists_need_the_model_and_each_other(tmp_path):
    base = '[corpus]\npath = "c"\n[target]\nfamily = "classifier"\n'
    for extra, message in (
        ('members = "m.txt"\nnonmembers = "n.txt"\n', r"members = \.\.\. needs the model"),
        ('adapter = "x:y"\nmembers = "m.txt"\n', "members and nonmembers go together"),
        ('adapter = "x:y"\n', "a classifier adapter needs members and nonmembers"),
    ):
        (tmp_path / "a.toml").write_text(base + extra)
        with pytest.raises(VoxauditError, match=message):
            PipelineConfig.load(tmp_path / "a.toml")


@pytest.mark.parametrize(("column", "label"), [("text", "transcript"), ("class", "class")])
def test_a_classifier_audit_of_non_latin_transcripts_runs_from_a_manifest(tmp_path, column, label):
    """Arabic and Mandarin commands in a manifest, as transcripts or in a column the user
    names: the classes are the words as written (not erased to ""), the audit runs end to
    end."""
    import csv

    from tests.audio_fixtures import write_wav
    from voxaudit.models.checkpoints import load_model

    words = ["افتح", "أغلق", "你好", "谢谢"]
    rows = []
    for speaker in range(4):
        for take in range(6):
            word = words[(speaker + take) % 4]
            name = f"clips/s{speaker}_{take}.wav"
            write_wav(tmp_path / name, freq=150.0 + 40 * words.index(word) + 5 * speaker,
                      seed=10 * speaker + take)  # fmt: skip
            rows.append({"path": name, "speaker": f"s{speaker}", column: word})
    with (tmp_path / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["path", "speaker", column])
        writer.writeheader()
        writer.writerows(rows)
    config_path = tmp_path / "audit.toml"
    config_path.write_text(
        'seed = 0\ndevice = "cpu"\nlevels = ["sample"]\n[corpus]\npath = "manifest.csv"\n'
        '[target]\nfamily = "classifier"\n'
        f'model = {{ label = "{label}", hidden = 8, n_mels = 16, dropout = 0.0 }}\n'
        "train = { epochs = 1, batch_size = 8 }\n[shadows]\ncount = 2\n"
        '[audit]\nmax_per_side = 6\ndraws = 1\nsnrs_db = [20.0]\nclassifiers = ["logistic"]\n'
        "n_bootstrap = 50\nmin_per_side = 2\n",
        encoding="utf-8",
    )
    report = run_audit(PipelineConfig.load(config_path), tmp_path / "out", progress=False)
    (level,) = report["levels"]
    target = load_model(level["models"]["target"])
    assert sorted(target.classes) == sorted(words)
    assert level["utility"]["metric"] == "accuracy"
    assert {r["model"] for r in level["mia"]["results"]} >= {"target", "null"}


def test_a_finetuned_target_and_its_shadows_start_from_the_base(tiny_guard_audit, tmp_path):
    """[target] finetune = { init_from = BASE }: every model of the audit is fine-tuned from
    the base (here an ASR model of an earlier audit: the alphabet is the corpus', so any
    role's model fits), and records it."""
    from voxaudit.models.checkpoints import checkpoint_base

    config, out, _ = tiny_guard_audit
    base = out / "sample" / "models" / "shadow-0"
    finetuned = replace(
        config, guard=None, target=replace(config.target, finetune={"init_from": str(base)})
    )
    report = run_audit(finetuned, tmp_path / "out", progress=False)
    (level,) = report["levels"]
    for run_dir in level["models"].values():
        assert checkpoint_base(run_dir)["sha256"]


def test_the_built_in_base_scenario_pretrains_fine_tunes_and_calibrates_on_the_base(
    tiny_config_path, tmp_path
):
    """[base]: a base pretrained on a pool no audited model trains on; the target and its
    shadows fine-tuned from it; the base loss ratio among the rows; a rerun retrains nothing."""
    from voxaudit.models.checkpoints import checkpoint_base, read_checkpoint

    tiny = PipelineConfig.load(tiny_config_path)
    config = replace(
        tiny,  # on more recordings per speaker, so that a quarter can go to the base
        corpus=replace(tiny.corpus, path=tmp_path / "corpus",
                       synthesize={"speakers": 4, "per_speaker": 12}),
        base=BaseSpec(fraction=0.25, by="recordings", train={"epochs": 1, "batch_size": 8},
                      freeze=("front_end",)),
    )  # fmt: skip
    report = run_audit(config, tmp_path / "out", progress=False)
    (level,) = report["levels"]
    assert set(level["models"]) == {"base", "target", "shadow-0", "shadow-1"}
    base_ids = set(read_checkpoint(level["models"]["base"] + "/checkpoint.pt")["data"]["train_ids"])
    assert len(base_ids) == 12  # a quarter of the 48 recordings
    for role in ("target", "shadow-0", "shadow-1"):
        checkpoint = read_checkpoint(level["models"][role] + "/checkpoint.pt")
        assert not base_ids & set(checkpoint["data"]["train_ids"])
        assert checkpoint_base(level["models"][role])["sha256"]
    rows = {r["name"] for r in level["mia"]["results"] if r["model"] == "target"}
    assert any("base" in name for name in rows), rows
    again = run_audit(config, tmp_path / "out", progress=False)
    assert again["levels"] == json.loads(json.dumps(report["levels"]))


def test_the_dp_audit_stage_states_its_bound_on_the_first_screen(tiny_config_path, tmp_path):
    from voxaudit.mia.configs import DPAuditConfig
    from voxaudit.report.console import audit_table

    tiny = PipelineConfig.load(tiny_config_path)
    settings = DPAuditConfig(canaries=8).check("classifier", "test", False)
    config = replace(tiny, corpus=replace(tiny.corpus, path=tmp_path / "corpus"), dp_audit=settings)
    report = run_audit(config, tmp_path / "out", progress=False)
    dp = report["dp_audit"]
    assert dp["canaries"] == 8 and dp["kind"] == "wrong-label" and "examples" not in dp
    saved = json.loads((tmp_path / "out" / "dp-audit" / "result.json").read_text())
    assert len(saved["examples"]) == 8 and saved["statement"] == dp["statement"]
    html = (tmp_path / "out" / "report.html").read_text()
    glance = html[html.index('id="at-a-glance"') : html.index('id="level-sample"')]
    assert "Privacy in epsilon terms" in glance and 'href="#dp-audit"' in html
    caption = audit_table(report).caption
    assert caption is not None and "DP audit:" in caption


def test_a_dp_audit_recipe_opacus_cannot_train_fails_before_any_level(tiny_config_path, tmp_path):
    from voxaudit.mia.configs import DPAuditConfig

    tiny = PipelineConfig.load(tiny_config_path)  # a classifier with plain GRU layers
    settings = DPAuditConfig(canaries=8, noise_multiplier=1.0).check("classifier", "test", False)
    config = replace(tiny, corpus=replace(tiny.corpus, path=tmp_path / "corpus"), dp_audit=settings)
    with pytest.raises(VoxauditError, match="dpgru"):
        run_audit(config, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "sample").exists()
