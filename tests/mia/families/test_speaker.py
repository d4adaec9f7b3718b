"""The speaker-level membership audit end to end, on tiny untrained encoders (plumbing, rules)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from voxaudit.data.corpus import Corpus
from voxaudit.data.splits import make_split
from voxaudit.data.synth import synthesize_corpus_in_memory
from voxaudit.errors import VoxauditError
from voxaudit.mia.configs import SpeakerAuditConfig
from voxaudit.mia.core import AuditedModel, run_audit, run_scoring
from voxaudit.mia.families.speaker import SpeakerFamily
from voxaudit.mia.families.speaker_attacks import FEATURE_SETS
from voxaudit.mia.families.speaker_queries import (
    draws_for,
    embed,
    evaluated_speakers,
    queried_voices,
)
from voxaudit.mia.results import read_report
from voxaudit.mia.slmia import slmia_columns
from voxaudit.models.speaker import Encoder, GE2EEncoder

FAST = SpeakerAuditConfig(
    voices=3,
    voice_counts=(1, 3),
    imposter_counts=(1,),
    imposter_voices=(1,),
    train_ratios=(0.0, 0.5),
    views=2,
    classifiers=("logistic",),
    curve_classifiers=("logistic",),
    attack_seeds=2,
    cv=2,
    n_bootstrap=100,
    select_chunking=False,  # the paper's setting: chunk splitting always on
)


def audit_speaker(*args, **kwargs):
    return run_audit(SpeakerFamily(), *args, **kwargs)


def score_speaker(*args, **kwargs):
    return run_scoring(SpeakerFamily(), *args, **kwargs)


@pytest.fixture(scope="module")
def corpus():
    return synthesize_corpus_in_memory(n_speakers=14, per_speaker=4, seed=5)


@pytest.fixture(scope="module")
def split(corpus):
    return make_split(corpus, "speaker", seed=0, n_shadow=1, reference_speakers=2)


def _model(role: str, seed: int) -> AuditedModel:
    torch.manual_seed(seed)
    model = GE2EEncoder(n_mels=16, hidden=16, layers=1, embedding_dim=8)
    return AuditedModel(role, f"tiny-{role}", Encoder(model.eval(), batch_size=16))


def _audit(corpus, split, out, config=FAST, target_seed=0) -> dict:
    """The audit of a tiny target against one tiny shadow."""
    return audit_speaker(
        corpus, split, _model("target", target_seed), [_model("shadow-0", 1)], out,
        config=config, progress=False,
    )  # fmt: skip


def test_audit_writes_a_report_with_slmia_baselines_curves_and_a_null_row_each(
    corpus, split, tmp_path
):
    report = _audit(corpus, split, tmp_path)
    assert read_report(tmp_path) == json.loads((tmp_path / "report.json").read_text())
    results = report["results"]
    targets = [(r["name"], r["features"]) for r in results if r["model"] == "target"]
    nulls = [(r["name"], r["features"]) for r in results if r["model"] == "null"]
    assert targets and sorted(targets) == sorted(nulls)
    names = {name for name, _ in targets}
    assert {"SLMIA-SR", "LRL-MIA", "GE2E loss threshold", "EncoderMI-T", "EncoderMI-V"} <= names
    assert {"FaceAuditor-S", "SLMIA-SR ablation", "SLMIA-SR query reduction"} <= names
    features = {f for _, f in targets}
    assert {"1 target voice/speaker", "1 imposter(s)", "1 voice(s)/imposter"} <= features
    evaluated = report["setup"]["evaluated"]["target"]
    for r in results:
        assert r["n_members"] == evaluated["member_speakers"]
        assert r["n_nonmembers"] == evaluated["nonmember_speakers"]
    main = next(r for r in results if r["name"] == "SLMIA-SR" and r["model"] == "target")
    assert "averaged over 2 attack-classifier seed(s)" in main["notes"]
    assert report["setup"]["voices_per_speaker"] == 3
    assert report["setup"]["null_control"].endswith("(as null control)")
    # Every voice, chunk, view and imposter voice was a query, and a rerun reads the cache.
    queries = report["setup"]["queries"]
    assert queries["target"] > 3 * 2 * evaluated["member_speakers"]
    assert queries["null"] == queries["target"]  # the null control hears the target's voices
    again = _audit(corpus, split, tmp_path)
    assert again["setup"]["queries"] == queries
    assert [r["metrics"] for r in again["results"]] == [r["metrics"] for r in results]
    # A retrained target under the same name is queried afresh, never served stale embeddings.
    cached = {p.name for p in (tmp_path / "embeddings").glob("target-*.npz")}
    _audit(corpus, split, tmp_path, target_seed=7)
    assert len(cached) == 1
    assert {p.name for p in (tmp_path / "embeddings").glob("target-*.npz")} > cached


def test_chunk_splitting_is_kept_only_where_it_wins_on_shadow_cross_validation(
    corpus, split, tmp_path
):
    config = replace(FAST, select_chunking=True, voice_counts=(3,), attack_seeds=1)
    report = _audit(corpus, split, tmp_path, config=config)
    choice = report["selection"]["chunk splitting"]
    shadow_auroc = choice["shadow_cv_auroc"]
    assert choice["chosen"] == (shadow_auroc["with"] >= shadow_auroc["without"])
    main = next(r for r in report["results"] if r["name"] == "SLMIA-SR")
    kept = "chunk splitting (chosen on shadows)" in main["features"]
    assert kept == choice["chosen"]
    assert kept != ("whole voices (chosen on shadows)" in main["features"])
    # The option not taken is still reported, as an ablation.
    other = "without chunk splitting" if kept else "with chunk splitting"
    assert any(r["features"] == other for r in report["results"])


def test_the_feature_set_is_chosen_with_the_classifier_on_shadow_cross_validation(
    corpus, split, tmp_path
):
    config = replace(FAST, select_features=True, voice_counts=(3,), attack_seeds=1)
    report = _audit(corpus, split, tmp_path, config=config)
    main = next(r for r in report["results"] if r["name"] == "SLMIA-SR")
    assert main["features"].startswith("feature set chosen on shadows, ")
    chosen = report["selection"][f"SLMIA-SR ({main['features']})"]
    cv = chosen["cv_results"]
    assert sorted(row["features"] for row in cv) == sorted(FEATURE_SETS)
    best = max(cv, key=lambda row: row["auroc_mean"])
    assert chosen["selected"] == [[best["classifier"], best["features"]]]
    # Scoring mode fits the same choice, and says which families its columns come from.
    recordings = synthesize_corpus_in_memory(n_speakers=2, per_speaker=3, seed=11)
    scored = score_speaker(
        recordings, _model("target", 0), corpus, split, [_model("shadow-0", 1)],
        tmp_path / "scores", config=config, progress=False,
    )  # fmt: skip
    reference = scored["setup"]["reference_attack"]
    columns, families = slmia_columns(config.measures)
    expected = [c for c, f in zip(columns, families, strict=True) if f in reference["features"]]
    assert sorted(reference["columns"]) == sorted(expected)


def test_embeddings_are_cached_by_weights_ids_and_audio(corpus, tmp_path):
    ids = [u.id for u in corpus.utterances[:3]]
    model = _model("target", 0)
    first = embed(model, corpus, ids, [], FAST, tmp_path, progress=False)
    again = embed(model, corpus, ids, [], FAST, tmp_path, progress=False)
    assert again.queries == first.queries > 0  # read back, not queried again
    assert len(list((tmp_path / "embeddings").glob("*.npz"))) == 1
    # The same ids with other audio (a regenerated corpus) are embedded afresh.
    changed, other = corpus[ids[0]], corpus[ids[1]]
    regenerated = Corpus(
        replace(u, samples=other.samples) if u.id == changed.id else u for u in corpus.utterances
    )
    fresh = embed(model, regenerated, ids, [], FAST, tmp_path, progress=False)
    assert len(list((tmp_path / "embeddings").glob("*.npz"))) == 2
    assert not np.allclose(fresh.whole[changed.id], first.whole[changed.id])


def test_queried_voices_follow_the_split_pools_and_the_mixing_ratio(corpus, split):
    speakers = evaluated_speakers(corpus, split, "target", FAST)
    trained, unseen = set(split.train_ids("target")), set(split.unseen_ids("target"))
    holdout = set(split.holdout_ids("target"))
    imposters = set(split.pools["reference"])
    members = [s for s in speakers if s.member]
    assert len(members) == len(speakers) - len(members) > 0
    for ratio in (0.0, 0.5, 1.0):
        (draw,) = draws_for(speakers, [ratio], "target", FAST)
        for s in speakers:
            voices = queried_voices(draw, s.name, 2, ratio)
            assert len(voices) == 2 and not set(voices) & imposters
            assert {corpus[v].speaker for v in voices} == {s.name}
            if not s.member:
                assert set(voices) <= holdout
            elif ratio == 0.0:
                assert set(voices) <= trained
            else:
                # 4 voices, 1 kept out of training: a ratio asks for what there is.
                assert len(set(voices) & unseen) == 1
            # Fewer voices are a prefix of more: query reduction only removes voices.
            assert queried_voices(draw, s.name, 1, ratio) == voices[:1]


def test_a_sample_level_split_or_no_imposters_is_refused(corpus, tmp_path):
    shadows = [_model("shadow-0", 1)]
    sample = make_split(corpus, "sample", seed=0)
    with pytest.raises(VoxauditError, match="speaker-level split"):
        audit_speaker(corpus, sample, _model("target", 0), shadows, tmp_path, config=FAST)
    no_imposters = make_split(corpus, "speaker", seed=0, reference_speakers=0)
    with pytest.raises(VoxauditError, match="imposter"):
        audit_speaker(corpus, no_imposters, _model("target", 0), shadows, tmp_path, config=FAST)


def test_bad_config_values_name_the_field():
    with pytest.raises(VoxauditError, match="train_ratios"):
        SpeakerAuditConfig(train_ratios=(1.5,))
    with pytest.raises(VoxauditError, match="views"):
        SpeakerAuditConfig(views=1)


def test_scoring_mode_scores_each_speaker_of_the_recordings(corpus, split, tmp_path):
    recordings = synthesize_corpus_in_memory(n_speakers=2, per_speaker=3, seed=11)
    report = score_speaker(
        recordings, _model("target", 0), corpus, split, [_model("shadow-0", 1)], tmp_path,
        config=FAST, progress=False,
    )  # fmt: skip
    assert report["kind"] == "scores" and "results" not in report
    assert sorted(item["id"] for item in report["scores"]) == sorted(recordings.speakers)
    assert all(0.0 <= item["score"] <= 1.0 for item in report["scores"])
    assert all(0.0 <= item["percentile"] <= 100.0 for item in report["scores"])
    assert all(np.isfinite(item["log_odds"]) for item in report["scores"])
    utility = report["setup"]["utility"]
    assert set(utility) == {"target", "shadow-0"}
    assert all(0.0 <= rates["eer"] <= 1.0 for rates in utility.values())
    assert report["setup"]["level"] == "speaker"
    assert report["setup"]["recordings"]["voices_each"] == 3
    assert np.isfinite(report["setup"]["reference_attack"]["shadow_cv_auroc"])


def test_scoring_utility_needs_two_speakers_and_says_why_it_is_missing():
    one = synthesize_corpus_in_memory(n_speakers=1, per_speaker=3, seed=11)
    utility = SpeakerFamily().recording_utility([_model("target", 0)], one)
    assert isinstance(utility, str) and "at least two speakers" in utility


def test_one_voice_per_speaker_with_clips_shorter_than_a_chunk_fails_before_any_work():
    """SLMIA-SR needs two embeddings per speaker: with one voice each and no chunk that fits,
    the audit refuses the split at once (the pipeline asks before training anything)."""
    from voxaudit.data.corpus import Utterance
    from voxaudit.data.splits import AuditSplit

    rate = 16000
    clips = Corpus(
        [
            Utterance(
                f"s{s}_{k}",
                f"s{s}",
                "",
                samples=np.full(rate // 2, 0.1, np.float32),
                sample_rate=rate,
            )
            for s in range(16)
            for k in range(2)
        ]
    )
    speakers = {s: [f"s{s}_0", f"s{s}_1"] for s in range(16)}
    split = AuditSplit.from_membership(
        clips,
        [speakers[s][0] for s in range(4)],
        [i for s in range(4, 8) for i in speakers[s]],
        level="speaker",
        reference=[i for s in range(8, 12) for i in speakers[s]],
        shadows=[
            ([speakers[s][0] for s in range(12, 16)], [i for s in range(4, 8) for i in speakers[s]])
        ],
    )
    family = SpeakerFamily()
    with pytest.raises(VoxauditError, match=r"chunk_seconds = 1.6 but some clip lasts 0.50 s"):
        family.check_data(clips, split, ["shadow-0"], SpeakerAuditConfig())
    family.check_data(clips, split, ["shadow-0"], SpeakerAuditConfig(chunk_seconds=0.25))
