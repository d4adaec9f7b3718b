"""Attacks with a reference (base) model and no shadow training: the base loss ratio, RMIA
calibrated by the base, and, for speaker encoders, the base-calibrated similarity."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest

import voxaudit
from voxaudit.data.corpus import Corpus, Utterance
from voxaudit.data.splits import AuditSplit, make_split
from voxaudit.data.synth import synthesize_corpus_in_memory
from voxaudit.errors import VoxauditError
from voxaudit.mia import families
from voxaudit.mia.configs import ClassifierAuditConfig, SpeakerAuditConfig
from voxaudit.mia.core import AuditedModel, run_audit

RATE = 8000
GAIN = 1.5  # how much lower a memorized recording's loss is
FAST = {"classifiers": ("logistic",), "cv": 2, "n_bootstrap": 200, "draws": 1,
        "snrs_db": (20.0,), "min_per_side": 2}  # fmt: skip
BASE_RATIO = "base loss ratio"


def _key(wave: np.ndarray) -> str:
    return hashlib.sha1(np.asarray(wave, dtype=np.float32).tobytes()).hexdigest()


def _level(utterance: Utterance) -> float:
    return float(np.sqrt(np.mean(utterance.load(RATE).astype(np.float64) ** 2)))


class Toy:
    """A speaker-ID classifier whose loss on a recording is the recording's difficulty (quiet
    recordings are hard: from 0.3 to 3.3 nats), plus noise of the model's own (0.3 nats), and
    ``GAIN`` lower on the recordings it memorized. A noisy copy is a stranger to it.

    The difficulty spreads losses far wider than memorization moves them, so a global loss
    threshold tells members apart only roughly, while the loss minus a base model's loss
    (the same difficulty, nothing memorized) leaves the memorization alone.
    """

    sample_rate = RATE

    def __init__(self, corpus: Corpus, memorized: set[str] = frozenset(), seed: int = 0) -> None:
        self.classes = sorted({u.speaker for u in corpus})
        levels = {u.id: _level(u) for u in corpus}
        low, high = min(levels.values()), max(levels.values())
        self.known = {}
        for u in corpus:
            noise = np.random.default_rng([seed, *u.id.encode()]).normal(0.0, 0.3)
            difficulty = 0.3 + 3.0 * (high - levels[u.id]) / (high - low)
            loss = max(difficulty + noise - GAIN * (u.id in memorized), 0.02)
            self.known[_key(u.load(RATE))] = (self.classes.index(u.speaker), loss)

    def predict_proba(self, waveforms):
        rows = []
        for wave in waveforms:
            found = self.known.get(_key(wave))
            if found is None:
                rows.append(np.full(len(self.classes), 1.0 / len(self.classes)))
                continue
            label, loss = found
            row = np.full(len(self.classes), (1 - np.exp(-loss)) / (len(self.classes) - 1))
            row[label] = np.exp(-loss)
            rows.append(row)
        return np.array(rows)

    def utterance_loss(self, waveforms, labels):
        p = self.predict_proba(waveforms)
        return -np.log(p[np.arange(len(labels)), [self.classes.index(y) for y in labels]])


def toy_corpus(speakers: int = 8, takes: int = 8) -> Corpus:
    """Noise bursts at a level of their own each, from very quiet to loud."""
    rng = np.random.default_rng(0)
    return Corpus(
        [
            Utterance(
                f"s{s}_{k}",
                f"s{s}",
                "",
                samples=(rng.standard_normal(800) * rng.uniform(0.05, 0.5)).astype(np.float32),
                sample_rate=RATE,
            )
            for s in range(speakers)
            for k in range(takes)
        ],
        name="toy",
    )


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return toy_corpus()


def takes(corpus: Corpus, chosen: range) -> list[str]:
    return [u.id for u in corpus if int(u.id.rsplit("_", 1)[1]) in chosen]


def classifier_audit(corpus, split, target, out, references, shadows=(), null=None, **options):
    config = ClassifierAuditConfig(**{**FAST, **options})
    return run_audit(families.get("classifier"), corpus, split, target, list(shadows), out,
                     null=null, config=config, progress=False,
                     references=references)  # fmt: skip


def row(report: dict, name: str, model: str = "target") -> dict:
    return next(r for r in report["results"] if r["name"] == name and r["model"] == model)


def test_the_base_loss_ratio_finds_a_memorizer_and_not_a_model_that_memorized_nothing(
    corpus, tmp_path
):
    members, nonmembers = takes(corpus, range(4)), takes(corpus, range(4, 8))
    split = AuditSplit.from_membership(corpus, members, nonmembers)
    base = AuditedModel("reference", "base", Toy(corpus, seed=9), frozenset(), "speaker")
    leaky = AuditedModel("target", "leaky", Toy(corpus, set(members)), frozenset(members),
                         "speaker")  # fmt: skip
    report = classifier_audit(corpus, split, leaky, tmp_path / "leaky", [base])
    ratio = row(report, BASE_RATIO)["metrics"]["auroc"]
    assert ratio["low"] > 0.9
    # The difficulty the base cancels is what holds the plain loss threshold back.
    assert ratio["value"] > row(report, "threshold on loss")["metrics"]["auroc"]["value"] + 0.1
    assert row(report, BASE_RATIO, "null")["metrics"]["auroc"]["low"] <= 0.5
    assert report["null_control"]["valid"]
    assert "cross-fitted" in row(report, BASE_RATIO)["notes"]
    assert report["setup"]["references"] == [
        {"source": "base", "trained_ids": "recorded: none is an evaluated row"}
    ]
    cost = report["setup"]["attack_costs"][f"{BASE_RATIO} (true-label confidence)"]
    assert cost["models_trained"] == 0 and cost["forward_passes_per_example"] == 2
    assert cost["cpu_seconds"] >= 0

    quiet = AuditedModel("target", "quiet", Toy(corpus), frozenset(members), "speaker")
    report = classifier_audit(corpus, split, quiet, tmp_path / "quiet", [base])
    auroc = row(report, BASE_RATIO)["metrics"]["auroc"]
    assert auroc["low"] <= 0.5 <= auroc["high"]


def test_with_shadows_the_threshold_is_fixed_on_them_and_rmia_uses_the_base_too(corpus, tmp_path):
    # Takes 0-1 are the target's members, 2-3 its non-members; the shadow trains on 4-5.
    split = AuditSplit.from_membership(
        corpus, takes(corpus, range(2)), takes(corpus, range(2, 4)),
        shadows=[(takes(corpus, range(4, 6)), takes(corpus, range(6, 8)))],
    )  # fmt: skip
    shadow = AuditedModel("shadow-0", "shadow", Toy(corpus, set(split.train_ids("shadow-0")), 1),
                          frozenset(split.train_ids("shadow-0")), "speaker")  # fmt: skip
    null = AuditedModel("null", "null", Toy(corpus, seed=2), frozenset(), "speaker")
    target = AuditedModel("target", "t", Toy(corpus, set(split.train_ids())),
                          frozenset(split.train_ids()), "speaker")  # fmt: skip
    base = AuditedModel("reference", "base", Toy(corpus, seed=9), None, "speaker")
    report = classifier_audit(corpus, split, target, tmp_path, [base], [shadow], null)
    ratio = row(report, BASE_RATIO)
    assert ratio["shadow_auroc"] > 0.9 and "shadow models' own ratios" in ratio["notes"]
    assert ratio["metrics"]["auroc"]["low"] > 0.8
    assert ratio["metrics"]["accuracy"]["value"] > 0.8  # the shadow-fixed threshold carries over
    rmia = row(report, "RMIA, base reference")
    assert rmia["metrics"]["auroc"]["value"] > 0.8
    # It queries the target, the shadow and the base, and the shadow had to be trained.
    cost = report["setup"]["attack_costs"]["RMIA, base reference (true-label confidence)"]
    assert cost["models_trained"] == 1 and cost["forward_passes_per_example"] == 3
    assert report["null_control"]["valid"]
    # An unrecorded base is taken on trust, and the report says so.
    assert report["setup"]["references"][0]["trained_ids"].startswith("unrecorded: unverified")
    assert any("reference model (base) records no training ids" in w for w in report["warnings"])


def test_a_base_that_trained_on_the_evaluated_rows_is_refused_before_any_query(corpus, tmp_path):
    members, nonmembers = takes(corpus, range(4)), takes(corpus, range(4, 8))
    split = AuditSplit.from_membership(corpus, members, nonmembers)
    target = AuditedModel("target", "t", Toy(corpus, set(members)), frozenset(members), "speaker")
    shared = AuditedModel("reference", "shared-base", Toy(corpus, set(members[:3])),
                          frozenset([*members[:3], "elsewhere"]), "speaker")  # fmt: skip
    with pytest.raises(VoxauditError, match=r"reference model shared-base trained on 3 of the "
                                            r"target's evaluated utterances"):  # fmt: skip
        classifier_audit(corpus, split, target, tmp_path, [shared])
    assert not (tmp_path / "features").exists()


def test_the_api_takes_a_reference_model(corpus):
    members, nonmembers = takes(corpus, range(4)), takes(corpus, range(4, 8))
    result = voxaudit.audit(Toy(corpus, set(members)), corpus, members=members,
                            nonmembers=nonmembers, reference_model=Toy(corpus, seed=9),
                            **FAST)  # fmt: skip
    assert row(result.report, BASE_RATIO)["metrics"]["auroc"]["low"] > 0.9
    assert result.report["setup"]["references"][0]["trained_ids"].startswith("unrecorded")
    assert result.valid


# --- speaker encoders -----------------------------------------------------------------------

SPEAKER = SpeakerAuditConfig(
    voices=2, voice_counts=(2,), imposter_counts=(1,), imposter_voices=(1,), chunk_seconds=None,
    views=2, attack_seeds=1, classifiers=("logistic",), curve_classifiers=("logistic",), cv=2,
    n_bootstrap=100, train_ratios=(0.0,),
)  # fmt: skip


class ToyEncoder:
    """A speaker encoder: a voice's embedding is its speaker's direction plus the voice's own
    noise, scaled by the speaker's spread (some voices vary more, for any encoder) and shrunk
    for speakers it trained on. Two such encoders embed an unlearned voice alike."""

    sample_rate = 16000

    def __init__(self, corpus: Corpus, trained: set[str] = frozenset()) -> None:
        speakers = sorted({u.speaker for u in corpus})
        spread = {
            s: np.random.default_rng([k, 1]).uniform(0.5, 2.0) for k, s in enumerate(speakers)
        }
        self.known = {}
        for u in corpus:
            k = speakers.index(u.speaker)
            direction = np.random.default_rng([k, 2]).normal(size=8)
            noise = np.random.default_rng([*u.id.encode()]).normal(size=8)
            scale = spread[u.speaker] * (0.3 if u.speaker in trained else 1.0)
            self.known[_key(u.load(self.sample_rate))] = direction + scale * noise

    def embed(self, waveforms):
        return np.stack([
            self.known.get(_key(w), np.random.default_rng(len(w)).normal(size=8))
            for w in waveforms
        ])  # fmt: skip


def test_speaker_level_base_calibrated_similarity_finds_the_trained_voices(tmp_path):
    corpus = synthesize_corpus_in_memory(n_speakers=24, per_speaker=4, seed=5)
    split = make_split(corpus, "speaker", seed=0, n_shadow=1, reference_speakers=2)

    def encoder(role: str) -> AuditedModel:
        trained = {corpus[i].speaker for i in split.train_ids(role)} if role != "base" else set()
        return AuditedModel(role, role, ToyEncoder(corpus, trained))

    report = run_audit(families.get("speaker"), corpus, split, encoder("target"),
                       [encoder("shadow-0")], tmp_path, config=SPEAKER, progress=False,
                       references=[encoder("base")])  # fmt: skip
    name = "base-calibrated similarity"
    target, null = row(report, name), row(report, name, "null")
    assert target["metrics"]["auroc"]["low"] > 0.9 and target["shadow_auroc"] > 0.9
    # An unlearned voice sounds the same to the model and to the base: a difference of 0.
    examples = target["examples"]
    assert all(s == 0 for s, m in zip(examples["score"], examples["is_member"], strict=True)
               if not m)  # fmt: skip
    assert null["metrics"]["auroc"]["value"] == 0.5 and report["null_control"]["valid"]
    (label,) = report["setup"]["attack_costs"]
    assert label.startswith(name) and report["setup"]["attack_costs"][label][
        "forward_passes_per_voice"] == 2  # fmt: skip

    member = next(s for s, m in zip(examples["id"], examples["is_member"], strict=True) if m)
    voice = next(u.id for u in corpus if u.speaker == member)
    heard = AuditedModel("base", "heard-base", ToyEncoder(corpus), frozenset([voice]))
    with pytest.raises(VoxauditError, match=r"heard-base trained on 1 of the target's "
                                            r"evaluated speakers' voices"):  # fmt: skip
        run_audit(families.get("speaker"), corpus, split, encoder("target"),
                  [encoder("shadow-0")], tmp_path / "refused", config=SPEAKER, progress=False,
                  references=[heard])  # fmt: skip


WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


class ToyRecognizer:
    """Transcribes a recording with a share of its ten words wrong: the recording's difficulty
    (quiet recordings are hard: 10% to 90% wrong), three words fewer on those it memorized. A
    noisy copy it gets all wrong."""

    sample_rate = RATE

    def __init__(self, corpus: Corpus, memorized: set[str] = frozenset(), seed: int = 0) -> None:
        levels = {u.id: _level(u) for u in corpus}
        low, high = min(levels.values()), max(levels.values())
        self.known = {}
        for u in corpus:
            noise = np.random.default_rng([seed, *u.id.encode()]).normal(0.0, 0.05)
            error = 0.1 + 0.8 * (high - levels[u.id]) / (high - low) + noise
            wrong = int(np.clip(round(10 * error) - 3 * (u.id in memorized), 0, 10))
            self.known[_key(u.load(RATE))] = " ".join(["x"] * wrong + WORDS[wrong:])

    def transcribe(self, waveforms):
        return [self.known.get(_key(wave), "x") for wave in waveforms]


def test_in_a_black_box_the_base_calibrates_each_transcripts_error(corpus, tmp_path):
    """Transcripts alone: the target's WER on a recording minus the base's finds a memorizer
    whose plain WER threshold is held back by how hard each recording is."""
    spoken = Corpus([replace(u, transcript=" ".join(WORDS)) for u in corpus], name="toy")
    members, nonmembers = takes(spoken, range(4)), takes(spoken, range(4, 8))
    base = ToyRecognizer(spoken, seed=9)
    options = {"classifiers": ("logistic",), "cv": 2, "n_bootstrap": 200, "draws": 1,
               "snrs_db": (20.0,)}  # fmt: skip

    def audited(model):
        return voxaudit.audit(model, spoken, members, nonmembers, family="asr", threat="black",
                              reference_model=base, **options).report  # fmt: skip

    report = audited(ToyRecognizer(spoken, set(members)))
    name = "base error difference"
    auroc = row(report, name)["metrics"]["auroc"]
    assert auroc["low"] > 0.8
    assert auroc["value"] > row(report, "threshold on wer")["metrics"]["auroc"]["value"] + 0.1
    cost = report["setup"]["attack_costs"][f"{name} (wer)"]
    assert cost["models_trained"] == 0 and cost["forward_passes_per_example"] == 2
    # Grey-box rows stay out of a black-box audit.
    assert not any(r["name"] == BASE_RATIO for r in report["results"])

    quiet = row(audited(ToyRecognizer(spoken)), name)["metrics"]["auroc"]
    assert quiet["low"] <= 0.5 <= quiet["high"]
