"""The ASR membership audit end to end, on tiny untrained models (plumbing, validity rules)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from voxaudit.data.splits import make_split
from voxaudit.data.synth import synthesize_corpus_in_memory
from voxaudit.errors import VoxauditError
from voxaudit.mia.configs import AsrAuditConfig
from voxaudit.mia.core import AuditedModel as AuditModel
from voxaudit.mia.core import run_audit, run_scoring
from voxaudit.mia.families.asr import AsrFamily
from voxaudit.mia.results import read_report
from voxaudit.models.ctc import CTCModel
from voxaudit.models.recognizer import Recognizer

FAST = {
    "snrs_db": (20.0,),
    "draws": 2,
    "adversarial_eps": (0.01,),
    "pgd_steps": 1,
    "classifiers": ("logistic",),
    "n_bootstrap": 200,
    "utterances_per_speaker": (1, 2),
}


def audit_asr(*args, **kwargs):
    return run_audit(AsrFamily(), *args, **kwargs)


def score_asr(*args, **kwargs):
    return run_scoring(AsrFamily(), *args, **kwargs)


@pytest.fixture(scope="module")
def corpus():
    return synthesize_corpus_in_memory(n_speakers=12, per_speaker=4, seed=3)


def _model(role: str, seed: int) -> AuditModel:
    torch.manual_seed(seed)
    model = CTCModel(encoder="gru", d_model=32, layers=1, conv_channels=8)
    return AuditModel(role, f"tiny-{role}", Recognizer(model.eval(), batch_size=8))


@pytest.mark.parametrize(
    ("level", "threat"), [("sample", "white"), ("sample", "black"), ("speaker", "grey")]
)
def test_audit_writes_a_valid_report_with_a_null_row_for_every_target_row(
    corpus, tmp_path, level, threat
):
    split = make_split(corpus, level, seed=0, n_shadow=2, reference_speakers=2)
    shadows = [_model("shadow-0", 1), _model("shadow-1", 2)]
    config = AsrAuditConfig(threat=threat, **FAST)
    report = audit_asr(
        corpus, split, _model("target", 0), shadows, tmp_path, config=config, progress=False
    )
    assert read_report(tmp_path) == json.loads((tmp_path / "report.json").read_text())
    assert (tmp_path / "examples.csv").exists()
    results = report["results"]
    targets = [(r["name"], r["features"]) for r in results if r["model"] == "target"]
    nulls = [(r["name"], r["features"]) for r in results if r["model"] == "null"]
    assert targets and sorted(targets) == sorted(nulls)
    for r in results:
        assert r["n_members"] == r["n_nonmembers"] > 0
    names = {name for name, _ in targets}
    features = {f for _, f in targets}
    if threat == "black":
        assert not any("loss" in f for f in features) and "threshold on loss_per_char" not in names
    if threat == "white" and level == "sample":
        assert "loss + noise + adversarial" in features
        assert {"LiRA offline, fixed variance", "RMIA"} <= names
    if level == "speaker":
        assert any("1 utterance/speaker" in f for f in features)
    assert report["setup"]["null_control"].endswith("(as null control)")


def test_a_rerun_with_a_retrained_target_refuses_the_old_features(corpus, tmp_path):
    split = make_split(corpus, "sample", seed=0, n_shadow=1, reference_speakers=2)
    config = AsrAuditConfig(threat="black", **FAST)
    audit_asr(corpus, split, _model("target", 0), [_model("shadow-0", 1)], tmp_path, config=config,
              progress=False)  # fmt: skip
    # Same role and name, other weights: the cached features are not the new model's.
    with pytest.raises(VoxauditError, match=r"features.target holds ASR features of another model"):
        audit_asr(corpus, split, _model("target", 9), [_model("shadow-0", 1)], tmp_path,
                  config=config, progress=False)  # fmt: skip


def test_a_null_control_that_saw_the_target_data_is_refused(corpus, tmp_path):
    split = make_split(
        corpus, "sample", seed=0, n_shadow=2, shadow_mode="halves", halves_population="all"
    )
    shadows = [_model("shadow-0", 1), _model("shadow-1", 2)]
    with pytest.raises(VoxauditError, match="null-control"):
        audit_asr(
            corpus, split, _model("target", 0), shadows, tmp_path,
            config=AsrAuditConfig(**FAST), progress=False,
        )  # fmt: skip


def test_a_given_null_control_that_trained_on_evaluated_utterances_is_refused(corpus, tmp_path):
    split = make_split(corpus, "sample", seed=0, n_shadow=1)
    seen = frozenset(split.train_ids("target")[:1])
    null = replace(_model("null", 9), trained_ids=seen)
    with pytest.raises(VoxauditError, match="null control tiny-null trained on some"):
        audit_asr(
            corpus, split, _model("target", 0), [_model("shadow-0", 1)], tmp_path, null=null,
            config=AsrAuditConfig(threat="black", **FAST), progress=False,
        )  # fmt: skip


def test_online_lira_runs_when_the_halves_include_the_target_and_a_null_model_is_given(
    corpus, tmp_path
):
    # Four halves: every utterance is IN for two references and OUT for two, so both LiRA
    # variants can pool a variance.
    split = make_split(
        corpus, "sample", seed=0, n_shadow=4, shadow_mode="halves", halves_population="target"
    )
    shadows = [_model(f"shadow-{k}", 1 + k) for k in range(4)]
    null = replace(_model("null", 9), trained_ids=frozenset(split.pools["shadow_train"]))
    report = audit_asr(
        corpus, split, _model("target", 0), shadows, tmp_path, null=null,
        config=AsrAuditConfig(threat="grey", **FAST), progress=False,
    )  # fmt: skip
    online = {r["model"] for r in report["results"] if r["name"] == "LiRA online, fixed variance"}
    assert online == {"target", "null"}
    assert report["setup"]["null_control"] == "tiny-null"


def test_lira_that_the_references_cannot_fit_is_left_out_and_said_so(corpus, tmp_path):
    # Two halves of the target's pools: every utterance has a single IN and a single OUT
    # reference, too few to pool LiRA's variance; RMIA still runs.
    split = make_split(
        corpus, "sample", seed=0, n_shadow=2, shadow_mode="halves", halves_population="target"
    )
    null = replace(_model("null", 9), trained_ids=frozenset(split.pools["shadow_train"]))
    report = audit_asr(
        corpus, split, _model("target", 0), [_model("shadow-0", 1), _model("shadow-1", 2)],
        tmp_path, null=null, config=AsrAuditConfig(threat="grey", **FAST), progress=False,
    )  # fmt: skip
    names = {r["name"] for r in report["results"]}
    assert "RMIA" in names and not any(n.startswith("LiRA") for n in names)
    left_out = report["selection"]["calibrated attacks left out"]
    assert [reason.split(":")[0] for reason in left_out] == ["LiRA offline", "LiRA online"]


def test_rmia_without_an_out_reference_for_every_utterance_is_left_out_and_said_so(
    corpus, tmp_path
):
    # The first of two halves of the target's pools: the utterances it trained on have no
    # reference that did not, so RMIA (and LiRA) cannot score them.
    split = make_split(
        corpus, "sample", seed=0, n_shadow=2, shadow_mode="halves", halves_population="target"
    )
    null = replace(_model("null", 9), trained_ids=frozenset(split.pools["shadow_train"]))
    report = audit_asr(
        corpus, split, _model("target", 0), [_model("shadow-0", 1)], tmp_path, null=null,
        config=AsrAuditConfig(threat="grey", **FAST), progress=False,
    )  # fmt: skip
    names = {r["name"] for r in report["results"]}
    assert "RMIA" not in names and not any(n.startswith("LiRA") for n in names)
    left_out = report["selection"]["calibrated attacks left out"]
    assert any(
        reason.startswith("RMIA: it needs, for every evaluated utterance") for reason in left_out
    )


def test_unknown_shadow_roles_are_refused(corpus, tmp_path):
    split = make_split(corpus, "sample", seed=0, n_shadow=1)
    with pytest.raises(VoxauditError, match="shadow roles"):
        audit_asr(corpus, split, _model("target", 0), [_model("shadow-5", 1)], tmp_path)


def test_rmia_population_needs_an_out_reference_when_only_some_halves_shadows_are_used(
    corpus, tmp_path
):
    split = make_split(corpus, "sample", seed=0, n_shadow=4, shadow_mode="halves")
    shadows = [_model("shadow-0", 1), _model("shadow-1", 2)]
    report = audit_asr(
        corpus, split, _model("target", 0), shadows, tmp_path,
        config=AsrAuditConfig(threat="grey", **FAST), progress=False,
    )  # fmt: skip
    assert "RMIA" in {r["name"] for r in report["results"]}


def _recordings(n: int = 6):
    return synthesize_corpus_in_memory(n_speakers=2, per_speaker=n // 2, seed=11)


def test_scoring_mode_gives_one_score_per_recording_and_no_verdicts(corpus, tmp_path):
    split = make_split(corpus, "sample", seed=0, n_shadow=2)
    shadows = [_model("shadow-0", 1), _model("shadow-1", 2)]
    recordings = _recordings()
    report = score_asr(
        recordings, _model("target", 0), corpus, split, shadows, tmp_path,
        config=AsrAuditConfig(**FAST), progress=False,
    )  # fmt: skip
    assert report["kind"] == "scores" and "results" not in report
    assert sorted(item["id"] for item in report["scores"]) == sorted(u.id for u in recordings)
    assert all(0.0 <= item["score"] <= 1.0 for item in report["scores"])
    assert all(0.0 <= item["percentile"] <= 100.0 for item in report["scores"])
    assert all(math.isfinite(item["log_odds"]) for item in report["scores"])
    # Utility on the recordings comes first: every model's WER and CER.
    utility = report["setup"]["utility"]
    assert set(utility) == {"target", "shadow-0", "shadow-1"}
    assert all(set(rates) == {"wer", "cer"} for rates in utility.values())
    reference = report["setup"]["reference_attack"]
    assert reference["features"] == ["transcript", "noise"]
    # Only error-rate columns: a decoder's own scores mean something different in every model.
    assert all(c.startswith(("wer", "cer", "length", "noise_")) for c in reference["columns"])
    assert not any("loss" in c for c in reference["columns"])
    assert read_report(tmp_path / "report.json")["kind"] == "scores"


class Silent:
    """A ``SpeechRecognizer`` (voxaudit.models.base) that hears nothing: WER 1 on anything."""

    sample_rate = 16000

    def transcribe(self, waveforms):
        return ["" for _ in waveforms]


def test_scoring_mode_warns_that_a_target_which_recognizes_nothing_gives_meaningless_scores(
    corpus, tmp_path
):
    split = make_split(corpus, "sample", seed=0, n_shadow=2)
    shadows = [_model("shadow-0", 1), _model("shadow-1", 2)]
    report = score_asr(
        _recordings(), AuditModel("target", "silent", Silent()), corpus, split, shadows,
        tmp_path, config=AsrAuditConfig(**FAST), progress=False,
    )  # fmt: skip
    assert report["setup"]["utility"]["target"] == {"wer": 1.0, "cer": 1.0}
    failure = [w for w in report["warnings"] if w.startswith("The target fails")]
    assert len(failure) == 1 and "WER 1.00" in failure[0] and "no meaning" in failure[0]
    assert read_report(tmp_path)["warnings"] == report["warnings"]


def test_scoring_mode_refuses_untranscribed_recordings_and_speaker_splits(corpus, tmp_path):
    from voxaudit.data.corpus import Corpus

    sample_split = make_split(corpus, "sample", seed=0, n_shadow=1)
    recordings = _recordings()
    bare = Corpus([replace(u, transcript="") for u in recordings], name="bare")
    with pytest.raises(VoxauditError, match="without a transcript"):
        score_asr(
            bare, _model("target", 0), corpus, sample_split, [_model("shadow-0", 1)], tmp_path
        )
    speaker_split = make_split(corpus, "speaker", seed=0, n_shadow=1, reference_speakers=2)
    with pytest.raises(VoxauditError, match="sample-level"):
        score_asr(
            recordings,
            _model("target", 0),
            corpus,
            speaker_split,
            [_model("shadow-0", 1)],
            tmp_path,
        )


def test_characters_a_target_has_no_token_for_are_counted_in_the_setup(corpus, tmp_path):
    """A target whose alphabet lacks "e" scores the references without it and says how many
    it left out; the shadows, with every letter, leave none out."""
    from voxaudit.data.text import ALPHABET

    split = make_split(corpus, "sample", seed=0, n_shadow=2)
    torch.manual_seed(0)
    no_e = CTCModel(encoder="gru", d_model=32, layers=1, conv_channels=8,
                    alphabet=ALPHABET.replace("e", ""))  # fmt: skip
    target = AuditModel("target", "tiny-target", Recognizer(no_e.eval(), batch_size=8))
    shadows = [_model("shadow-0", 1), _model("shadow-1", 2)]
    config = AsrAuditConfig(threat="grey", **FAST)
    report = audit_asr(corpus, split, target, shadows, tmp_path, config=config, progress=False)
    unseen = report["setup"]["unseen_characters"]
    assert set(unseen["target"]) == {"e"} and unseen["target"]["e"] > 0
    assert unseen["shadow-0"] == {} and unseen["shadow-1"] == {}
