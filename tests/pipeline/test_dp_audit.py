"""The one-run DP audit end to end on tiny tone classifiers: a model that memorizes its
canaries is found to leak, DP-SGD's accountant is never contradicted, bad settings fail first."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.audio_fixtures import tone
from voxaudit.cli import app
from voxaudit.data.corpus import Corpus, Utterance
from voxaudit.errors import VoxauditError
from voxaudit.mia.configs import DPAuditConfig
from voxaudit.mia.one_run import audit_canaries
from voxaudit.pipeline.dp_audit import dp_audit

HAS_OPACUS = importlib.util.find_spec("opacus") is not None
WORDS = ["one", "two", "three"]
CANARIES = 80


@pytest.fixture(scope="module")
def tones() -> Corpus:
    """160 clips of three words, each its own pitch, so a wrong label is a fact to memorize."""
    rng = np.random.default_rng(0)
    return Corpus(
        [
            Utterance(f"u{i:03d}", "spk", transcript=WORDS[i % 3],
                      samples=tone(0.25, freq=float(rng.uniform(150, 1500)), seed=i),
                      sample_rate=16000)
            for i in range(160)
        ],
        name="tones",
    )  # fmt: skip


def _recipe(dp: bool = False, epochs: int = 40) -> dict:
    model = {"label": "transcript", "hidden": 32, "n_mels": 16, "dropout": 0.0}
    return {"model": model | ({"cell": "dpgru"} if dp else {}),
            "train": {"epochs": epochs, "lr": 1e-2, "batch_size": 16}}  # fmt: skip


@pytest.fixture(scope="module")
def memorized(tones, tmp_path_factory):
    out = tmp_path_factory.mktemp("dp") / "no-noise"
    return out, dp_audit("classifier", tones, _recipe(), out, DPAuditConfig(canaries=CANARIES),
                         device="cpu", progress=False)  # fmt: skip


def test_a_model_trained_without_noise_on_canaries_gets_a_clearly_positive_bound(memorized):
    _, result = memorized
    assert result["accountant_epsilon"] is None and result["canaries"] == CANARIES
    assert result["epsilon_hat"] > 1.5, result["statement"]
    assert "at least as leaky as epsilon >= " in result["statement"]
    # The stored per-canary scores give the same bound again.
    scores = [e["score"] for e in result["examples"]]
    included = np.array([e["included"] for e in result["examples"]])
    again = audit_canaries(scores, included, result["delta"], result["confidence"])
    assert again["epsilon"] == pytest.approx(result["epsilon_hat"])


def test_a_finished_audit_is_read_back_and_another_setting_refused(memorized, tones):
    out, result = memorized
    assert dp_audit("classifier", tones, _recipe(), out, DPAuditConfig(canaries=CANARIES),
                    device="cpu", progress=False) == result  # fmt: skip
    with pytest.raises(VoxauditError, match="canaries"):
        dp_audit("classifier", tones, _recipe(), out, DPAuditConfig(canaries=CANARIES + 2),
                 device="cpu", progress=False)  # fmt: skip
    record = json.loads((out / "canaries.json").read_text())
    assert sum(row["included"] for row in record["utterances"]) == result["included"]


@pytest.mark.skipif(not HAS_OPACUS, reason="DP-SGD needs Opacus")
def test_the_bound_never_exceeds_the_dp_sgd_accountants_epsilon(memorized, tones, tmp_path):
    """Over seeds, at 95% confidence: a bound above the accountant's epsilon would mean the
    accounting or the DP-SGD implementation is wrong. The undefended bound is above that
    epsilon, so this test would catch noise that was not added."""
    settings = DPAuditConfig(canaries=CANARIES, noise_multiplier=4.0)
    claimed = []
    for seed in range(3):
        result = dp_audit("classifier", tones, _recipe(dp=True, epochs=10), tmp_path / str(seed),
                          settings, seed=seed, device="cpu", progress=False)  # fmt: skip
        assert result["accountant_epsilon"] is not None
        assert result["epsilon_hat"] <= result["accountant_epsilon"], result["statement"]
        assert "the bound is consistent with it" in result["statement"]
        claimed.append(result["accountant_epsilon"])
    assert memorized[1]["epsilon_hat"] > max(claimed)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (DPAuditConfig(kind="synthetic-speaker"), "takes wrong-label canaries"),
        (DPAuditConfig(score="calibrated"), "calibrated needs a reference model"),
        (DPAuditConfig(canaries=1), "canaries must be an integer >= 2"),
        (DPAuditConfig(confidence=1.0), "confidence must lie in"),
        (DPAuditConfig(noise_multiplier=0.0), "must be > 0"),
    ],
)
def test_bad_settings_fail_before_any_training(settings, message, tones, tmp_path):
    with pytest.raises(VoxauditError, match=message):
        dp_audit("classifier", tones, _recipe(), tmp_path, settings, progress=False)
    assert not (tmp_path / "model").exists()


def test_a_speaker_encoder_is_not_trained_under_dp_sgd_here(tones, tmp_path):
    with pytest.raises(VoxauditError, match="couples the utterances of a batch"):
        dp_audit("speaker", tones, {}, tmp_path, DPAuditConfig(noise_multiplier=1.0))


def test_the_command_trains_and_states_the_bound(tones, tmp_path):
    for utterance in tones:  # the command reads a corpus folder
        import soundfile as sf

        path = tmp_path / "corpus" / utterance.transcript / f"{utterance.id}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, utterance.load(), 16000)
    config = tmp_path / "recipe.toml"
    config.write_text('[model]\nlabel = "speaker"\nhidden = 8\nn_mels = 16\n'
                      "[train]\nepochs = 1\nbatch_size = 16\n")  # fmt: skip
    result = CliRunner().invoke(app, [
        "dp-audit", "classifier", "--corpus", str(tmp_path / "corpus"), "--config", str(config),
        "--out", str(tmp_path / "out"), "--canaries", "20", "--device", "cpu",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "epsilon" in result.output
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert saved["canaries"] == 20 and len(saved["examples"]) == 20
    bad = CliRunner().invoke(app, [
        "dp-audit", "classifier", "--corpus", str(tmp_path / "corpus"),
        "--out", str(tmp_path / "bad"), "--canary-kind", "nope",
    ])  # fmt: skip
    assert bad.exit_code != 0 and "kind" in bad.output


@pytest.fixture(scope="module")
def null_model(tones, tmp_path_factory):
    """The recipe on the same fixed training set, no canary in it: the null control, and a
    reference model for calibrated scores."""
    from voxaudit.data.canaries import make_canaries
    from voxaudit.train.run import train_model

    canaries, rest = make_canaries(tones, "wrong-label", CANARIES, seed=0, label="transcript")
    run_dir = tmp_path_factory.mktemp("null")
    recipe = _recipe()
    recipe["train"] |= {"device": "cpu", "seed": 0}
    train_model("classifier", rest, None, "null", recipe, run_dir, progress=False,
                train_ids=[u.id for u in rest])  # fmt: skip
    return run_dir, canaries


def test_a_model_that_never_saw_a_canary_gets_no_bound(null_model):
    from voxaudit.data.canaries import canary_units
    from voxaudit.mia import families
    from voxaudit.mia.one_run import canary_scores

    run_dir, canaries = null_model
    model = families.get("classifier").load(run_dir, "null", "cpu").model
    scores = canary_scores(model, canary_units(canaries), label="transcript")
    assert audit_canaries(scores, canaries.included)["epsilon"] == 0.0


def test_a_calibrated_score_subtracts_the_reference_models(null_model, memorized, tones, tmp_path):
    run_dir, _ = null_model
    settings = DPAuditConfig(canaries=CANARIES, score="calibrated")
    result = dp_audit("classifier", tones, _recipe(), tmp_path, settings, reference=run_dir,
                      device="cpu", progress=False)  # fmt: skip
    plain = {e["canary"]: e["score"] for e in memorized[1]["examples"]}
    # The same canaries and model as the plain run; each score moved by the reference's loss.
    assert [e["ids"] for e in result["examples"]] == [e["ids"] for e in memorized[1]["examples"]]
    assert any(abs(e["score"] - plain[e["canary"]]) > 1e-3 for e in result["examples"])
    # Still a positive bound; weaker than the plain loss's here, where the reference (trained
    # from the same seed without canaries) adds its own noise to every score.
    assert result["epsilon_hat"] > 0
    with pytest.raises(VoxauditError):
        dp_audit("classifier", tones, _recipe(), tmp_path / "bad", settings,
                 reference=tmp_path / "no-such-model", progress=False)  # fmt: skip
    assert not (tmp_path / "bad" / "model").exists()


@pytest.mark.parametrize(
    ("family", "kind", "recipe"),
    [
        ("asr", "random-transcript", {"model": {"family": "ctc", "preset": "tiny", "d_model": 32,
                                                "layers": 1, "conv_channels": 8}}),
        ("asr", "synthetic-sentence", {"model": {"family": "ctc", "preset": "tiny", "d_model": 32,
                                                 "layers": 1, "conv_channels": 8}}),
        ("speaker", "synthetic-speaker", {"model": {"family": "ge2e", "n_mels": 16, "hidden": 16,
                                                    "layers": 1, "embedding_dim": 8},
                                          "sampler": {"speakers_per_batch": 4}}),
    ],
)  # fmt: skip
def test_every_family_trains_with_its_canaries_and_scores_them(family, kind, recipe, tmp_path):
    from voxaudit.data.synth import synthesize_corpus_in_memory

    corpus = synthesize_corpus_in_memory(n_speakers=4, per_speaker=6, seed=1)
    recipe = recipe | {"train": {"epochs": 1, "batch_size": 4}}
    result = dp_audit(family, corpus, recipe, tmp_path, DPAuditConfig(canaries=6, kind=kind),
                      device="cpu", progress=False)  # fmt: skip
    assert result["kind"] == kind and len(result["examples"]) == 6
    assert all(np.isfinite(e["score"]) for e in result["examples"])
    assert result["epsilon_hat"] >= 0 and result["accountant_epsilon"] is None
    if family == "speaker":
        assert "speaker canaries" in result["statement"]
        assert all(len(e["ids"]) == 4 for e in result["examples"])


def test_the_shipped_recipe_is_the_one_the_bench_measured():
    """README's dp-audit command runs configs/dp-audit-classifier.toml; its figures come from
    bench/dp_audit.py's fsdd-classifier setup: the two must train alike."""
    import importlib.util
    from pathlib import Path

    from voxaudit.config import read_config_file
    from voxaudit.train.run import read_run_config

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("bench_dp_audit", root / "bench/dp_audit.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    setup = bench.SETUPS["fsdd-classifier"]
    shipped = read_config_file(root / "configs/dp-audit-classifier.toml")
    read_run_config(shipped, "classifier")
    assert shipped["model"] == setup["model"]
    assert shipped["train"] == bench.TRAIN | {"epochs": setup["epochs"]}
