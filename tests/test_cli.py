import json
import shutil

import pytest
import typer
from typer.testing import CliRunner

from tests.audio_fixtures import write_wav
from voxaudit.cli import app
from voxaudit.errors import VoxauditError

runner = CliRunner()


def _fsdd_folder(root, good=19):
    for i in range(good):
        write_wav(root / f"{i % 10}_{('amy', 'ben')[i % 2]}_{i}.wav", seed=i)
    (root / "3_amy_99.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    return root


def test_inspect_lists_usable_and_names_the_bad_file(tmp_path):
    result = runner.invoke(app, ["data", "inspect", str(_fsdd_folder(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "usable utterances" in result.output and " 19 " in result.output
    assert "3_amy_99.wav" in result.output and "unreadable" in result.output


def test_inspect_json(tmp_path):
    result = runner.invoke(app, ["data", "inspect", str(_fsdd_folder(tmp_path)), "--json"])
    summary = json.loads(result.output)
    assert (summary["utterances"], summary["speakers"], summary["layout"]) == (19, 2, "fsdd")
    assert summary["problems"][0]["where"].endswith("3_amy_99.wav")


def test_inspect_strict_fails_with_exit_2(tmp_path):
    result = runner.invoke(app, ["data", "inspect", str(_fsdd_folder(tmp_path)), "--strict"])
    assert result.exit_code == 2
    assert "3_amy_99.wav" in result.output and "Traceback" not in result.output


def test_inspect_unknown_layout_lists_known_ones(tmp_path):
    write_wav(tmp_path / "clip.wav")
    result = runner.invoke(app, ["data", "inspect", str(tmp_path)])
    assert result.exit_code == 2
    for name in ("librispeech", "kaldi", "manifest", "fsdd", "folder"):
        assert name in result.output


def test_inspect_real_fsdd(fsdd_root):
    result = runner.invoke(app, ["data", "inspect", str(fsdd_root), "--json"])
    summary = json.loads(result.output)
    assert (summary["utterances"], summary["speakers"], summary["problems"]) == (3000, 6, [])


def test_split_command_writes_a_loadable_split(tmp_path):
    from voxaudit.data.loaders import load_corpus
    from voxaudit.data.splits import AuditSplit

    corpus_dir = tmp_path / "corpus"
    for i in range(24):
        write_wav(corpus_dir / f"{i % 10}_{('amy', 'ben', 'cat')[i % 3]}_{i}.wav", seed=i)
    out = tmp_path / "split.json"
    result = runner.invoke(
        app,
        ["split", str(corpus_dir), "--out", str(out), "--shadows", "4", "--halves", "--seed", "3"],
    )
    assert result.exit_code == 0, result.output
    split = AuditSplit.load(out)
    assert (split.level, split.seed, split.n_shadow) == ("sample", 3, 4)
    split.check(load_corpus(corpus_dir))
    assert len(split.train_ids("target")) == len(split.holdout_ids("target"))
    # Online LiRA's references: halves of the target's pools.
    online = tmp_path / "online.json"
    result = runner.invoke(
        app,
        ["split", str(corpus_dir), "--out", str(online), "--shadows", "4", "--halves",
         "--seed", "3", "--halves-population", "target"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    candidates = set(split.train_ids("target") + split.holdout_ids("target"))
    assert {i for t in AuditSplit.load(online).shadow_train for i in t} == candidates
    # Stratified by the spoken digit too: every digit within one between members and holdout.
    stratified = tmp_path / "stratified.json"
    result = runner.invoke(
        app, ["split", str(corpus_dir), "--out", str(stratified), "--stratify-labels"]
    )
    assert result.exit_code == 0, result.output
    split = AuditSplit.load(stratified)
    assert split.params["stratify_labels"] is True
    digit = {u.id: u.transcript for u in load_corpus(corpus_dir)}
    for word in set(digit.values()):
        members = sum(digit[i] == word for i in split.train_ids("target"))
        holdout = sum(digit[i] == word for i in split.holdout_ids("target"))
        assert abs(members - holdout) <= 1, word


def test_split_command_reports_bad_options_without_traceback(tmp_path):
    corpus_dir = tmp_path / "corpus"
    for i in range(6):
        write_wav(corpus_dir / f"{i}_amy_{i}.wav", seed=i)
    result = runner.invoke(
        app, ["split", str(corpus_dir), "--out", str(tmp_path / "s.json"), "--level", "speaker"]
    )
    assert result.exit_code == 2
    assert "speakers" in result.output and "Traceback" not in result.output


def test_synth_then_inspect_round_trip(tmp_path):
    out = tmp_path / "synth"
    result = runner.invoke(
        app,
        [
            "data",
            "synth",
            "--out",
            str(out),
            "--speakers",
            "3",
            "--per-speaker",
            "2",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(runner.invoke(app, ["data", "inspect", str(out), "--json"]).output)
    assert (summary["utterances"], summary["speakers"], summary["layout"]) == (6, 3, "manifest")
    assert summary["sample_rates"] == {"16000": 6} and summary["problems"] == []


def test_demo_runs_the_built_in_audit_config(tmp_path, monkeypatch):
    from voxaudit.pipeline import PipelineConfig

    seen = {}

    def fake_run_audit(config, out, console=None):
        seen.update(config=config, out=out)
        raise VoxauditError("stopped here")

    monkeypatch.setattr("voxaudit.pipeline.run_audit", fake_run_audit)
    result = runner.invoke(app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "stopped here" in result.output
    assert seen == {"config": PipelineConfig.example("."), "out": tmp_path}


def test_train_classifier_on_a_split_role(tmp_path):
    corpus_dir = tmp_path / "corpus"
    for i in range(16):
        write_wav(
            corpus_dir / f"{i % 10}_{('amy', 'ben')[i % 2]}_{i}.wav",
            seed=i,
            freq=150 + 40 * (i % 2),
        )
    split_file = tmp_path / "split.json"
    assert runner.invoke(app, ["split", str(corpus_dir), "--out", str(split_file)]).exit_code == 0
    config = tmp_path / "run.toml"
    config.write_text("[model]\nhidden = 16\n\n[train]\nepochs = 1\nbatch_size = 4\n")
    args = [
        "train",
        "classifier",
        "--corpus",
        str(corpus_dir),
        "--split",
        str(split_file),
        "--role",
        "shadow-0",
        "--config",
        str(config),
        "--out",
        str(tmp_path / "run"),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "checkpoint.pt").is_file()

    other = tmp_path / "other"
    write_wav(other / "0_amy_99.wav")
    for path in corpus_dir.iterdir():
        (other / path.name).write_bytes(path.read_bytes())
    args[3] = str(other)
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "re-run `voxaudit split`" in result.output


def test_mia_asr_trains_nothing_and_audits_trained_checkpoints(tmp_path):
    from voxaudit.data.synth import synthesize_corpus

    corpus_dir = tmp_path / "corpus"
    synthesize_corpus(corpus_dir, n_speakers=8, per_speaker=4, seed=1, workers=1)
    split_file = tmp_path / "split.json"
    made = runner.invoke(
        app, ["split", str(corpus_dir), "--out", str(split_file), "--shadows", "2"]
    )
    assert made.exit_code == 0, made.output
    config = tmp_path / "run.toml"
    config.write_text(
        '[model]\nfamily = "ctc"\npreset = "tiny"\nd_model = 32\nlayers = 1\n\n'
        "[train]\nepochs = 1\nbatch_size = 4\n"
    )
    for role in ("target", "shadow-0", "shadow-1"):
        args = ["train", "asr", "--corpus", str(corpus_dir), "--split", str(split_file)]
        args += ["--role", role, "--config", str(config), "--out", str(tmp_path / role)]
        trained = runner.invoke(app, args)
        assert trained.exit_code == 0, trained.output
    audit = ["mia", "asr", "--corpus", str(corpus_dir), "--split", str(split_file)]
    audit += ["--target", str(tmp_path / "target"), "--out", str(tmp_path / "report")]
    audit += ["--shadow", str(tmp_path / "shadow-0"), "--shadow", str(tmp_path / "shadow-1")]
    audit += ["--threat", "black", "--draws", "1", "--snr", "20", "--bootstrap", "100"]
    result = runner.invoke(app, audit)
    assert result.exit_code == 0, result.output
    assert "Membership inference" in result.output
    assert (tmp_path / "report" / "report.html").is_file()
    table = runner.invoke(app, ["mia", "table", str(tmp_path / "report"), "--metric", "auroc"])
    assert table.exit_code == 0, table.output
    header, rule, *rows = table.output.splitlines()
    assert header == "| attack | features | model | AUROC |" and rule.count("---") == 4
    assert rows and all(row.count("|") == 5 for row in rows)
    assert any("null" in row for row in rows)
    # The gate's spelling of a TPR names the same column as the report's key.
    spellings = [
        runner.invoke(app, ["mia", "table", str(tmp_path / "report"), "--metric", name]).output
        for name in ("tpr@1%fpr", "tpr_at_1%_fpr")
    ]
    assert spellings[0] == spellings[1] and "TPR" in spellings[0].splitlines()[0]
    bad = runner.invoke(app, ["mia", "table", str(tmp_path / "report"), "--metric", "f1"])
    assert bad.exit_code != 0 and "no metric f1" in bad.output
    # An audit folder (LEVEL/report beside the audit's own report.json): a table per level.
    audit_dir = tmp_path / "audit"
    for level in ("sample", "speaker"):
        shutil.copytree(tmp_path / "report", audit_dir / level / "report")
    (audit_dir / "report.json").write_text('{"schema": "voxaudit.audit-report/1"}')
    both = runner.invoke(app, ["mia", "table", str(audit_dir), "--metric", "auroc"])
    assert both.exit_code == 0, both.output
    assert both.output.count("| attack | features | model | AUROC |") == 2
    assert both.output.index("## sample level") < both.output.index("## speaker level")
    empty = runner.invoke(app, ["mia", "table", str(tmp_path / "shadow-0")])
    assert empty.exit_code != 0 and "report.json" in empty.output
    # A shadow given as the target is refused by its recorded role, with exit code 2.
    wrong = [*audit[:6], "--target", str(tmp_path / "shadow-0"), *audit[8:]]
    refused = runner.invoke(app, wrong)
    assert refused.exit_code == 2 and "trained as 'shadow-0'" in refused.output


def test_mia_asr_score_ranks_recordings_on_pocketsphinx(tmp_path):
    pytest.importorskip("pocketsphinx")
    from voxaudit.data.synth import synthesize_corpus

    corpus_dir, recordings = tmp_path / "corpus", tmp_path / "mine"
    synthesize_corpus(corpus_dir, n_speakers=6, per_speaker=4, seed=1, workers=1)
    synthesize_corpus(recordings, n_speakers=1, per_speaker=3, seed=2, workers=1)
    split_file = tmp_path / "split.json"
    made = runner.invoke(
        app, ["split", str(corpus_dir), "--out", str(split_file), "--shadows", "1"]
    )
    assert made.exit_code == 0, made.output
    config = tmp_path / "run.toml"
    config.write_text(
        '[model]\nfamily = "ctc"\npreset = "tiny"\nd_model = 32\nlayers = 1\n\n'
        "[train]\nepochs = 1\nbatch_size = 4\n"
    )
    args = ["train", "asr", "--corpus", str(corpus_dir), "--split", str(split_file)]
    args += ["--role", "shadow-0", "--config", str(config), "--out", str(tmp_path / "shadow-0")]
    assert runner.invoke(app, args).exit_code == 0
    score = ["mia", "asr-score", "--model", "pocketsphinx", "--recordings", str(recordings)]
    score += ["--corpus", str(corpus_dir), "--split", str(split_file), "--draws", "1"]
    score += ["--shadow", str(tmp_path / "shadow-0"), "--snr", "20", "--out", str(tmp_path / "r")]
    result = runner.invoke(app, score)
    assert result.exit_code == 0, result.output
    assert "scores, not verdicts" in result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["kind"] == "scores" and len(report["scores"]) == 3
    assert report["setup"]["model_class"] == "PocketSphinxRecognizer"
    missing = [*score[:3], str(tmp_path / "nowhere"), *score[4:]]
    refused = runner.invoke(app, missing)
    assert refused.exit_code == 2 and "nowhere" in refused.output


def test_mia_speaker_audits_and_scores_trained_encoders(tmp_path):
    from voxaudit.data.synth import synthesize_corpus

    corpus_dir, recordings = tmp_path / "corpus", tmp_path / "mine"
    synthesize_corpus(corpus_dir, n_speakers=14, per_speaker=4, seed=1, workers=1)
    synthesize_corpus(recordings, n_speakers=2, per_speaker=3, seed=2, workers=1)
    split_file = tmp_path / "split.json"
    made = runner.invoke(
        app,
        ["split", str(corpus_dir), "--out", str(split_file), "--level", "speaker",
         "--reference-speakers", "2"],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    config = tmp_path / "run.toml"
    config.write_text(
        '[model]\nfamily = "ge2e"\nn_mels = 16\nhidden = 16\nlayers = 1\nembedding_dim = 8\n'
        "[train]\nepochs = 1\n[sampler]\nspeakers_per_batch = 2\nutterances_per_speaker = 2\n"
    )
    for role in ("target", "shadow-0"):
        args = ["train", "speaker", "--corpus", str(corpus_dir), "--split", str(split_file)]
        args += ["--role", role, "--config", str(config), "--out", str(tmp_path / role)]
        trained = runner.invoke(app, args)
        assert trained.exit_code == 0, trained.output
    audit = ["mia", "speaker", "--corpus", str(corpus_dir), "--split", str(split_file)]
    audit += ["--target", str(tmp_path / "target"), "--shadow", str(tmp_path / "shadow-0")]
    audit += ["--out", str(tmp_path / "report"), "--voices", "2", "--seeds", "1"]
    audit += ["--bootstrap", "100"]
    result = runner.invoke(app, audit)
    assert result.exit_code == 0, result.output
    assert "SLMIA-SR" in result.output and "Membership inference" in result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["setup"]["family"] == "speaker" and report["setup"]["voices_per_speaker"] == 2
    assert (tmp_path / "report" / "report.html").is_file()
    wrong = [*audit[:6], "--target", str(tmp_path / "shadow-0"), *audit[8:]]
    refused = runner.invoke(app, wrong)
    assert refused.exit_code == 2 and "trained as 'shadow-0'" in refused.output

    score = ["mia", "speaker-score", "--model", str(tmp_path / "target"), "--recordings"]
    score += [str(recordings), "--corpus", str(corpus_dir), "--split", str(split_file)]
    score += ["--shadow", str(tmp_path / "shadow-0"), "--out", str(tmp_path / "scores")]
    scored = runner.invoke(app, [*score, "--voices", "2", "--select-features"])
    assert scored.exit_code == 0, scored.output
    assert "scores, not verdicts" in scored.output
    report = json.loads((tmp_path / "scores" / "report.json").read_text())
    assert report["kind"] == "scores" and len(report["scores"]) == 2
    tried = {row["features"] for row in report["selection"]["cv_results"]}
    assert tried == {"intra + inter", "intra", "inter"}
    sample_split = tmp_path / "sample.json"
    runner.invoke(app, ["split", str(corpus_dir), "--out", str(sample_split)])
    refused = runner.invoke(app, [*audit[:5], str(sample_split), *audit[6:]])
    assert refused.exit_code == 2 and "speaker-level split" in refused.output


def test_mia_classifier_and_defend_sweep_commands(tmp_path):
    from voxaudit.data.synth import synthesize_corpus

    corpus_dir = tmp_path / "corpus"
    synthesize_corpus(corpus_dir, n_speakers=6, per_speaker=8, seed=2, workers=1)
    split_file = tmp_path / "s.json"
    made = runner.invoke(
        app, ["split", str(corpus_dir), "--out", str(split_file), "--shadows", "2"]
    )
    assert made.exit_code == 0, made.output
    config = tmp_path / "run.toml"
    config.write_text(
        '[model]\nlabel = "speaker"\nhidden = 8\nn_mels = 16\n\n'
        "[train]\nepochs = 1\nbatch_size = 4\n"
    )
    for role in ("target", "shadow-0", "shadow-1"):
        args = ["train", "classifier", "--corpus", str(corpus_dir), "--split", str(split_file)]
        args += ["--role", role, "--config", str(config), "--out", str(tmp_path / role)]
        assert runner.invoke(app, args).exit_code == 0
    audit = ["mia", "classifier", "--corpus", str(corpus_dir), "--split", str(split_file)]
    audit += ["--target", str(tmp_path / "target"), "--out", str(tmp_path / "report")]
    audit += ["--shadow", str(tmp_path / "shadow-0"), "--shadow", str(tmp_path / "shadow-1")]
    audit += ["--draws", "1", "--bootstrap", "100"]
    result = runner.invoke(app, audit)
    assert result.exit_code == 0, result.output
    assert "Membership inference" in result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert "precision" in report["results"][0]["metrics"]
    assert report["setup"]["config"]["decision"] == "accuracy"
    bad = runner.invoke(app, [*audit, "--decision", "precision=0.9"])
    assert bad.exit_code == 2 and "unknown decision 'precision=0.9'" in bad.output

    sweep = tmp_path / "sweep.toml"
    sweep.write_text(
        'family = "classifier"\ncorpus = "corpus"\nsplit = "s.json"\n'
        '[base.model]\nlabel = "speaker"\nhidden = 8\nn_mels = 16\n'
        "[base.train]\nepochs = 1\nbatch_size = 4\n"
        '[audit]\ndraws = 1\nsnrs_db = [10.0]\nclassifiers = ["logistic"]\nn_bootstrap = 100\n'
        '[[settings]]\nname = "none"\n[[settings]]\nname = "top-1"\nserve = { top_k = { k = 1 } }\n'
    )
    swept = runner.invoke(app, ["defend", "sweep", str(sweep), "--out", str(tmp_path / "sw")])
    assert swept.exit_code == 0, swept.output
    assert "Defense sweep" in swept.output and (tmp_path / "sw" / "pareto.png").is_file()
    bad = runner.invoke(app, ["defend", "sweep", str(tmp_path / "none.toml"), "--out", "x"])
    assert bad.exit_code == 2 and "none.toml" in bad.output


def _manifest_corpus(root, missing=("gone.wav",)):
    """A manifest corpus of 24 clips by 3 speakers, plus rows whose audio is not there."""
    rows = ["path,text,speaker"]
    for i in range(24):
        write_wav(root / f"clip{i}.wav", seed=i)
        rows.append(f"clip{i}.wav,,{('amy', 'ben', 'cat')[i % 3]}")
    rows += [f"{name},,amy" for name in missing]
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def test_split_lists_rows_without_audio_and_strict_refuses_them(tmp_path):
    corpus_dir = _manifest_corpus(tmp_path / "corpus")
    out = tmp_path / "split.json"
    result = runner.invoke(app, ["split", str(corpus_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "manifest.csv:26" in result.output and "audio file not found: gone.wav" in result.output
    strict = runner.invoke(
        app, ["split", str(corpus_dir), "--out", str(tmp_path / "s.json"), "--strict"]
    )
    assert strict.exit_code == 2 and "Traceback" not in strict.output
    assert "strict mode" in strict.output and "gone.wav" in strict.output
    assert not (tmp_path / "s.json").exists()


def _audit_config(tmp_path, old: str, new: str):
    from voxaudit.pipeline import EXAMPLE

    path = tmp_path / "audit.toml"
    path.write_text(EXAMPLE.replace(old, new, 1), encoding="utf-8")
    return path


def test_a_wrong_type_in_an_audit_config_is_one_line_naming_file_and_key(tmp_path):
    path = _audit_config(tmp_path, "seed = 0", 'seed = "zero"')
    result = runner.invoke(app, ["audit", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {path}: key 'seed': expected an integer, got 'zero'"


def test_a_bad_audit_option_fails_before_anything_trains_and_shows_its_section(tmp_path):
    path = _audit_config(tmp_path, "max_per_side = 128", 'max_per_side = "eight"')
    out = tmp_path / "out"
    result = runner.invoke(app, ["audit", str(path), "--out", str(out)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    # The brackets of [audit] are a section name, not rich markup.
    expected = f"{path}: [audit]: key 'max_per_side': expected an integer or none, got 'eight'"
    assert result.output.strip() == f"error: {expected}"
    assert not out.exists() and not (tmp_path / "voxaudit-out").exists()  # no corpus, no model


def test_error_messages_keep_their_brackets(tmp_path):
    from voxaudit.cli import _friendly_errors

    @_friendly_errors
    def fails() -> None:
        raise VoxauditError("x.toml: [shadows] and [model] and [bold]not bold[/bold]")

    command = typer.Typer()
    command.command()(fails)
    result = runner.invoke(command, [])
    assert result.exit_code == 2
    assert "x.toml: [shadows] and [model] and [bold]not bold[/bold]" in result.output


def test_an_audit_lists_bad_corpus_files_and_a_strict_corpus_refuses_them(tmp_path, monkeypatch):
    _fsdd_folder(tmp_path / "corpus")
    path = _audit_config(
        tmp_path, 'path = "voxaudit-out/synthetic-32x16"', 'path = "corpus"\nstrict = true'
    )
    path.write_text(path.read_text().replace("\nsynthesize = {", "\n# synthesize = {"))
    result = runner.invoke(app, ["audit", str(path), "--out", str(tmp_path / "strict")])
    assert result.exit_code == 2 and "strict mode" in result.output
    assert "3_amy_99.wav" in result.output and not (tmp_path / "strict" / "sample").exists()

    def stop(config):
        raise VoxauditError("stopped after the corpus")

    monkeypatch.setattr("voxaudit.pipeline.run._levels", stop)
    path.write_text(path.read_text().replace("strict = true", "strict = false"))
    result = runner.invoke(app, ["audit", str(path), "--out", str(tmp_path / "lenient")])
    assert result.exit_code == 2 and "stopped after the corpus" in result.output
    assert "3_amy_99.wav" in result.output and "unreadable" in result.output


MODULE = '''
import numpy as np

from voxaudit.data.loaders import load_corpus


class Lookup:
    """Sure of the clips it memorized (takes 0-3), unsure of the others."""

    sample_rate = 16000

    def __init__(self, memorize=True):
        corpus = load_corpus(CORPUS)
        self.classes = sorted({u.speaker for u in corpus})
        self.known = {self.key(u.load(16000)): u.speaker for u in corpus
                      if memorize and int(u.id.rsplit("_", 1)[1]) < 4}

    @staticmethod
    def key(wave):
        return round(float(np.asarray(wave, np.float64)[:300].sum()), 3)

    def predict_proba(self, waveforms):
        rows = []
        for w in waveforms:
            p = np.ones(len(self.classes)) + np.abs(np.asarray(w[: len(self.classes)], float))
            if self.key(w) in self.known:
                p[self.classes.index(self.known[self.key(w)])] = 50.0
            rows.append(p / p.sum())
        return np.array(rows)

    def utterance_loss(self, waveforms, labels):
        p = self.predict_proba(waveforms)
        return -np.log(p[np.arange(len(labels)), [self.classes.index(x) for x in labels]])


def memorizer():
    return Lookup()
'''


def test_mia_classifier_gives_a_verdict_on_a_users_model_from_membership_lists(
    tmp_path, monkeypatch
):
    corpus_dir = tmp_path / "clips"
    for s in range(6):
        for k in range(8):
            write_wav(corpus_dir / f"spk{s}" / f"spk{s}_{k}.wav", seconds=0.3, freq=150 + 30 * s,
                      seed=10 * s + k)  # fmt: skip
    ids = [f"spk{s}/spk{s}_{k}" for s in range(6) for k in range(8)]
    (tmp_path / "members.txt").write_text("\n".join(i for i in ids if int(i[-1]) < 4))
    (tmp_path / "nonmembers.txt").write_text("\n".join(i for i in ids if int(i[-1]) >= 4))
    (tmp_path / "usermodel.py").write_text(f"CORPUS = {str(corpus_dir)!r}\n" + MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    args = [
        "mia", "classifier", "--corpus", str(corpus_dir), "--target", "usermodel:memorizer",
        "--members", str(tmp_path / "members.txt"),
        "--nonmembers", str(tmp_path / "nonmembers.txt"), "--out", str(tmp_path / "out"),
        "--draws", "1", "--bootstrap", "200", "--threat", "grey",
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["setup"]["target"] == "usermodel:memorizer"
    assert report["headline"]["metrics"]["auroc"]["value"] > 0.9
    assert (tmp_path / "out" / "examples.csv").is_file()
    both = runner.invoke(app, [*args, "--split", str(tmp_path / "split.json")])
    assert both.exit_code == 2 and "either --split, or --members" in both.output
    shadowed = runner.invoke(app, [*args, "--shadow", "usermodel:memorizer"])
    assert shadowed.exit_code == 2 and "one members and one non-members file per shadow" in (
        shadowed.output
    )


def test_help_in_a_pipe_keeps_every_option_name_whole():
    """In a pipe rich's table cut names at 80 columns ("--halves-popula…"); plain help wraps
    the descriptions and keeps each name."""
    result = runner.invoke(app, ["split", "--help"], terminal_width=60)
    assert result.exit_code == 0, result.output
    for name in ("--halves-population", "--target-fraction", "--reference-speakers"):
        assert name in result.output
    assert "…" not in result.output


def test_train_help_lists_each_kinds_model_settings():
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 0, result.output
    assert "[model] of classifier" in result.output and "hidden" in result.output
    assert "[model] of asr, family = 'ctc'" in result.output
    assert "tiny|small|base (default 'small')" in result.output
    assert "[model] of speaker, family = 'xvector'" in result.output and "margin" in result.output
