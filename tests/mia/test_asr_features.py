"""ASR membership features: columns by threat model, exact values, batching, cache and resume."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from tests.audio_fixtures import tone
from tests.models.test_recognizer import _attention
from voxaudit.errors import VoxauditError
from voxaudit.mia.asr_features import AsrFeatures
from voxaudit.mia.table import FAMILIES
from voxaudit.models.access import Access
from voxaudit.models.ctc import CTCModel
from voxaudit.models.recognizer import Recognizer, cer, wer

TEXTS = ["ab", "cab", "a b", "bad", "dab"]
IDS = [f"u{k}" for k in range(len(TEXTS))]
SPEAKERS = ["s0", "s0", "s1", "s1", "s1"]
# Small settings keep the tests fast; every code path still runs.
SMALL = {"snrs_db": (30.0, 10.0), "draws": 2, "adversarial_eps": (0.01,), "pgd_steps": 2}


@pytest.fixture(scope="module")
def waves() -> list[np.ndarray]:
    return [tone(seconds=0.4 + 0.05 * k, freq=150.0 + 40 * k, seed=k) for k in range(len(TEXTS))]


@pytest.fixture(scope="module")
def ctc() -> Recognizer:
    torch.manual_seed(0)
    model = CTCModel(encoder="gru", d_model=64, layers=2, conv_channels=8)
    # A sharper head than at initialization: confident outputs, as a trained model has.
    with torch.no_grad():
        model.head.weight.mul_(10)
    return Recognizer(model, batch_size=4)


@pytest.fixture(scope="module")
def attention() -> Recognizer:
    torch.manual_seed(0)
    return Recognizer(_attention(), batch_size=4)


class Spy:
    """Forwards to a model, recording each call's method and waveforms; can hide methods or fail.

    After ``fail_after`` answered calls, the next one raises: an interrupted run.
    """

    def __init__(self, model, hide: tuple[str, ...] = (), fail_after: int | None = None):
        self._model = model
        self._hide = hide
        self._fail_after = fail_after
        self.calls: list[tuple[str, list[np.ndarray]]] = []

    def __getattr__(self, name: str):
        if name in self._hide:
            raise AttributeError(name)
        attribute = getattr(self._model, name)
        if not callable(attribute):
            return attribute

        def call(waveforms, *args, **kwargs):
            if self._fail_after is not None and len(self.calls) >= self._fail_after:
                raise RuntimeError("interrupted")
            self.calls.append((name, list(waveforms)))
            return attribute(waveforms, *args, **kwargs)

        return call


def extract(model, waves, features=None, **kwargs):
    features = features or AsrFeatures(**SMALL)
    return features.extract(model, waves, TEXTS, IDS, SPEAKERS, progress=False, **kwargs)


BLACK = ["wer", "cer", "length_ratio"] + [
    f"noise_snr{s}_{m}_delta" for s in (30, 10) for m in ("wer", "cer")
]
GREY = ["loss", "loss_per_char", "max_prob_mean", "max_prob_min", "entropy_mean", "entropy_std"]
GREY += [f"noise_snr{s}_{x}" for s in (30, 10) for x in ("loss_mean", "loss_std", "kl_mean")]
WHITE = [f"{a}_eps0.01_{x}" for a in ("fgsm", "pgd") for x in ("loss_delta", "kl", "wer_delta")]


def family_of(column: str) -> str:
    if column in ("wer", "cer", "length_ratio"):
        return "transcript"
    if column.startswith(("max_prob", "entropy")):
        return "confidence"
    if column.startswith(("fgsm_", "pgd_")):
        return "adversarial"
    return column.split("_")[0]  # score_*, loss*, noise_*


@pytest.mark.parametrize(
    ("level", "scores", "present", "absent"),
    [
        ("black", False, BLACK, ["score_log_score", *GREY, *WHITE]),
        ("black", True, [*BLACK, "score_log_score"], [*GREY, *WHITE]),
        ("grey", False, [*BLACK, "score_log_score", *GREY], WHITE),
        ("white", False, [*BLACK, "score_log_score", *GREY, *WHITE], []),
    ],
)
def test_columns_follow_the_threat_model(ctc, waves, level, scores, present, absent) -> None:
    table = extract(Access(ctc, level, scores=scores), waves)
    assert set(present) <= set(table.columns)
    assert not set(absent) & set(table.columns)
    assert table.families == tuple(family_of(c) for c in table.columns)
    if level == "black" and not scores:
        assert table.columns == tuple(BLACK)
    # Families come in FeatureTable's order; the table is finite and has one row per id.
    assert [FAMILIES.index(f) for f in table.families] == sorted(
        FAMILIES.index(f) for f in table.families
    )
    assert table.ids == tuple(IDS) and table.speakers == tuple(SPEAKERS)
    assert np.isfinite(table.values).all()


def test_features_match_direct_computation(ctc, waves) -> None:
    table = extract(Access(ctc, "grey"), waves)
    hypotheses = ctc.transcribe(waves)
    loss = ctc.utterance_loss(waves, TEXTS)
    assert (loss > 0).all()
    np.testing.assert_allclose(table.column("loss"), loss, rtol=1e-5)
    np.testing.assert_allclose(table.column("loss_per_char"), loss / [2, 3, 3, 3, 3], rtol=1e-5)
    np.testing.assert_allclose(
        table.column("wer"), [wer([t], [h]) for t, h in zip(TEXTS, hypotheses, strict=True)]
    )
    np.testing.assert_allclose(
        table.column("cer"), [cer([t], [h]) for t, h in zip(TEXTS, hypotheses, strict=True)]
    )
    np.testing.assert_allclose(
        table.column("length_ratio"),
        [len(h) / len(t) for t, h in zip(TEXTS, hypotheses, strict=True)],
    )
    probs = [np.exp(lp.astype(np.float64)) for lp in ctc.log_probs(waves)]
    np.testing.assert_allclose(
        table.column("max_prob_min"), [p.max(axis=1).min() for p in probs], rtol=1e-5
    )
    entropy = [-(p * np.log(p)).sum(axis=1) for p in probs]
    np.testing.assert_allclose(
        table.column("entropy_std"), [e.std() for e in entropy], rtol=1e-3, atol=1e-7
    )
    scores = ctc.scores(waves)
    np.testing.assert_allclose(table.column("score_log_score"), [s["log_score"] for s in scores])


class SphinxLike:
    """A black-box decoder with transcripts and scores only, like the PocketSphinx adapter."""

    sample_rate = 16000

    def transcribe(self, waveforms):
        return ["ab" for _ in waveforms]

    def scores(self, waveforms):
        return [
            {"text": "ab", "log_score": -float(len(w)), "posterior": 0.5, "nbest": ["ab", "a"]}
            for w in waveforms
        ]


def test_decoder_scores_become_score_columns(waves) -> None:
    table = extract(SphinxLike(), waves)
    assert table.select(families=["score"]).columns == ("score_log_score", "score_posterior")
    np.testing.assert_array_equal(table.column("score_log_score"), [-len(w) for w in waves])
    np.testing.assert_array_equal(table.column("wer"), [0.0, 1.0, 1.0, 1.0, 1.0])
    assert set(table.families) == {"transcript", "score", "noise"}


def test_kl_vanishes_at_high_snr_and_grows_as_the_snr_falls(ctc, waves) -> None:
    features = AsrFeatures(snrs_db=(120.0, 30.0, 0.0), draws=2, adversarial_eps=())
    table = extract(Access(ctc, "grey"), waves, features)
    kl = {snr: table.column(f"noise_snr{snr}_kl_mean") for snr in (120, 30, 0)}
    assert (np.abs(kl[120]) < 1e-6).all()
    assert (kl[120] < kl[30]).all() and (kl[30] < kl[0]).all()
    # At 120 dB the noisy losses are the clean loss.
    np.testing.assert_allclose(
        table.column("noise_snr120_loss_mean"), table.column("loss"), rtol=1e-4
    )


def test_noise_is_scaled_to_each_utterance_and_adversaries_stay_in_budget(ctc, waves) -> None:
    spy = Spy(Access(ctc, "white"))
    features = AsrFeatures(snrs_db=(20.0,), draws=3, adversarial_eps=(0.01,), pgd_steps=3)
    table = extract(spy, [w * (k + 1) for k, w in enumerate(waves)], features)
    calls = [name for name, _ in spy.calls]
    # One chunk: its clean utterances, their scores, pgd_steps gradient calls, one perturbed call.
    assert sorted(calls) == sorted(["analyze", "scores", *["input_gradients"] * 3, "analyze"])
    clean, copies = [w for name, w in spy.calls if name == "analyze"]
    n = len(clean)
    noisy, fgsm, pgd = copies[: 3 * n], copies[3 * n : 4 * n], copies[4 * n :]
    for k, wave in enumerate(clean):
        for draw in range(3):
            noise = noisy[draw * n + k] - wave
            snr = 10 * np.log10(np.mean(wave.astype(np.float64) ** 2) / np.mean(noise**2.0))
            assert snr == pytest.approx(20.0, abs=0.3)
        budget = 0.01 * np.abs(wave).max()
        assert np.abs(fgsm[k] - wave).max() == pytest.approx(budget, rel=1e-4)
        assert np.abs(pgd[k] - wave).max() <= budget * (1 + 1e-4)
    assert (table.column("fgsm_eps0.01_loss_delta") > 0).all()
    assert (table.column("pgd_eps0.01_loss_delta") > 0).all()
    assert (table.column("fgsm_eps0.01_kl") > 0).all()


def test_batching_and_order_do_not_change_the_features(ctc, waves) -> None:
    reference = extract(Access(ctc, "white"), waves, AsrFeatures(**SMALL, batch_size=1))
    batched = extract(Access(ctc, "white"), waves, AsrFeatures(**SMALL, batch_size=7))
    np.testing.assert_allclose(batched.values, reference.values, rtol=1e-4, atol=1e-6)
    order = [3, 0, 4, 2, 1]
    shuffled = AsrFeatures(**SMALL, batch_size=2).extract(
        Access(ctc, "white"),
        [waves[k] for k in order],
        [TEXTS[k] for k in order],
        [IDS[k] for k in order],
        [SPEAKERS[k] for k in order],
        progress=False,
    )
    assert shuffled.ids == tuple(IDS[k] for k in order)
    np.testing.assert_allclose(shuffled.rows(IDS).values, reference.values, rtol=1e-4, atol=1e-6)
    # Another seed draws other noise.
    reseeded = extract(Access(ctc, "white"), waves, AsrFeatures(**SMALL, seed=1))
    assert not np.allclose(
        reseeded.column("noise_snr10_loss_std"), reference.column("noise_snr10_loss_std")
    )


def test_protocol_methods_give_what_analyze_gives(ctc, waves) -> None:
    analyzed = Spy(Access(ctc, "white"))
    protocol = Spy(Access(ctc, "white"), hide=("analyze",))
    with_analyze = extract(analyzed, waves)
    without = extract(protocol, waves)
    assert with_analyze.columns == without.columns
    np.testing.assert_allclose(with_analyze.values, without.values, rtol=1e-4, atol=1e-6)
    assert "analyze" not in {name for name, _ in protocol.calls}
    assert {name for name, _ in protocol.calls} >= {"transcribe", "utterance_loss", "log_probs"}


def test_attention_models_are_compared_under_teacher_forcing(attention, waves) -> None:
    features = AsrFeatures(snrs_db=(120.0, 0.0), draws=2, adversarial_eps=())
    table = extract(Access(attention, "grey"), waves, features)
    np.testing.assert_allclose(
        table.column("loss"), attention.utterance_loss(waves, TEXTS), rtol=1e-4
    )
    assert (np.abs(table.column("noise_snr120_kl_mean")) < 1e-6).all()
    assert (table.column("noise_snr0_kl_mean") > 1e-6).all()


def test_an_interrupted_run_resumes_with_the_missing_chunks_only(ctc, waves, tmp_path) -> None:
    features = AsrFeatures(**{**SMALL, "batch_size": 2})
    fresh = Access(ctc, "grey")
    expected = extract(fresh, waves, features)
    per_utterance = fresh.queries / len(IDS)
    # Each chunk of two makes three calls (clean, scores, perturbed): fail in the second chunk.
    with pytest.raises(RuntimeError, match="interrupted"):
        extract(Spy(Access(ctc, "grey"), fail_after=4), waves, features, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("chunk-*.npz"))) == 1
    resumed = Access(ctc, "grey")
    table = extract(resumed, waves, features, cache_dir=tmp_path)
    assert resumed.queries == per_utterance * 3
    np.testing.assert_allclose(table.values, expected.values, rtol=1e-5, atol=1e-7)
    assert table.ids == expected.ids and table.columns == expected.columns
    # Complete now, and a batch size is no setting: nothing more to compute.
    again = Access(ctc, "grey")
    extract(again, waves, AsrFeatures(**{**SMALL, "batch_size": 3}), cache_dir=tmp_path)
    assert again.queries == 0


def test_a_cache_made_otherwise_is_refused(ctc, waves, tmp_path) -> None:
    extract(Access(ctc, "grey"), waves, cache_dir=tmp_path)
    with pytest.raises(VoxauditError, match=rf"{re.escape(str(tmp_path))}.*draws=2, not 3"):
        extract(
            Access(ctc, "grey"), waves, AsrFeatures(**{**SMALL, "draws": 3}), cache_dir=tmp_path
        )
    with pytest.raises(VoxauditError, match=r"grey-box .* not black-box"):
        extract(Access(ctc, "black"), waves, cache_dir=tmp_path)
    with pytest.raises(VoxauditError, match="other utterances"):
        AsrFeatures(**SMALL).extract(
            Access(ctc, "grey"),
            waves,
            TEXTS,
            ["x", *IDS[1:]],
            SPEAKERS,
            cache_dir=tmp_path,
            progress=False,
        )
    louder = [2 * w for w in waves]
    with pytest.raises(VoxauditError, match="other audio"):
        extract(Access(ctc, "grey"), louder, cache_dir=tmp_path)


def test_a_cache_refuses_another_models_features(ctc, waves, tmp_path) -> None:
    extract(Access(ctc, "grey"), waves, cache_dir=tmp_path, model_id="sha256:first")
    again = Access(ctc, "grey")
    extract(again, waves, cache_dir=tmp_path, model_id="sha256:first")
    assert again.queries == 0
    with pytest.raises(VoxauditError, match=r"another model \(sha256:first, not sha256:new\)"):
        extract(Access(ctc, "grey"), waves, cache_dir=tmp_path, model_id="sha256:new")


def test_inputs_are_checked(ctc, waves) -> None:
    box = Access(ctc, "black")
    with pytest.raises(VoxauditError, match="5 waveforms, 4 transcripts, 5 ids, 5 speakers"):
        AsrFeatures().extract(box, waves, TEXTS[:4], IDS, SPEAKERS)
    with pytest.raises(VoxauditError, match="no utterances"):
        AsrFeatures().extract(box, [], [], [], [])
    with pytest.raises(VoxauditError, match="'u1' appears twice"):
        AsrFeatures().extract(box, waves, TEXTS, ["u0", "u1", "u1", "u3", "u4"], SPEAKERS)
    with pytest.raises(VoxauditError, match="draws must be at least 1"):
        AsrFeatures(draws=0)
    with pytest.raises(VoxauditError, match="no transcribe"):
        AsrFeatures().extract(object(), waves, TEXTS, IDS, SPEAKERS)


def test_progress_bar_runs(ctc, waves) -> None:
    table = AsrFeatures(snrs_db=(), adversarial_eps=()).extract(
        Access(ctc, "black"), waves, TEXTS, IDS, SPEAKERS, progress=True
    )
    assert table.columns == ("wer", "cer", "length_ratio")
