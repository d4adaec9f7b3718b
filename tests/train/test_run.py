import json
from pathlib import Path

import pytest
import torch

from voxaudit.data.loaders import load_corpus
from voxaudit.data.splits import AuditSplit, SplitMismatchError, make_split
from voxaudit.data.synth import synthesize_corpus
from voxaudit.errors import VoxauditError
from voxaudit.models.checkpoints import CHECKPOINT, load_model, read_checkpoint
from voxaudit.models.classifier import SpokenClassifier, classifier_for
from voxaudit.train.data import SpeakerBatchSampler
from voxaudit.train.loop import TrainConfig
from voxaudit.train.run import (
    MODEL_KINDS,
    ModelKind,
    carve_validation,
    read_run_config,
    train_model,
)

CONFIG = {
    "model": {"label": "speaker", "hidden": 8, "n_mels": 16},
    "train": {"epochs": 1, "batch_size": 4, "device": "cpu"},
}


@pytest.fixture(scope="module")
def audit(tmp_path_factory) -> tuple[Path, Path]:
    """A synthetic corpus of 4 speakers x 4 on disk and a saved sample-level split of it."""
    root = tmp_path_factory.mktemp("run")
    synthesize_corpus(root / "corpus", n_speakers=4, per_speaker=4, workers=1, progress=False)
    corpus = load_corpus(root / "corpus")
    split = make_split(corpus, "sample", seed=0, n_shadow=1)
    return root / "corpus", split.save(root / "split.json")


@pytest.fixture(scope="module")
def speaker_audit(tmp_path_factory) -> tuple[Path, Path]:
    """6 speakers x 4 and a speaker-level split: 2 member speakers of 4 voices per model."""
    root = tmp_path_factory.mktemp("speakers")
    synthesize_corpus(root / "corpus", n_speakers=6, per_speaker=4, workers=1, progress=False)
    corpus = load_corpus(root / "corpus")
    split = make_split(corpus, "speaker", seed=0, reference_speakers=0, unseen_fraction=0.0)
    return root / "corpus", split.save(root / "split.json")


def test_trains_on_exactly_the_roles_training_pool(audit, tmp_path: Path):
    corpus_dir, split_path = audit
    split = json.loads(split_path.read_text())
    checkpoint = train_model(
        "classifier", corpus_dir, split_path, "target", CONFIG, tmp_path, progress=False
    )
    assert checkpoint == tmp_path / CHECKPOINT
    state = read_checkpoint(checkpoint)
    assert state["data"]["train_ids"] == split["pools"]["target_train"]
    assert state["data"]["val_ids"] is None
    assert not set(state["data"]["train_ids"]) & set(split["pools"]["target_holdout"])
    assert state["metadata"]["role"] == "target" and state["metadata"]["kind"] == "classifier"
    classifier = SpokenClassifier.load(tmp_path)
    assert classifier.classes == sorted({i.split("-")[0] for i in split["pools"]["target_train"]})


def test_it_trains_on_given_ids_instead_of_a_split_and_refuses_both_or_unknown(audit, tmp_path):
    corpus_dir, split_path = audit
    ids = sorted(load_corpus(corpus_dir).ids)[:6]
    checkpoint = train_model("classifier", corpus_dir, None, "base", CONFIG, tmp_path / "base",
                             progress=False, train_ids=ids)  # fmt: skip
    state = read_checkpoint(checkpoint)
    assert state["data"]["train_ids"] == ids and state["metadata"]["role"] == "base"
    with pytest.raises(VoxauditError, match="a split file or train_ids, not both"):
        train_model("classifier", corpus_dir, split_path, "target", CONFIG, tmp_path / "x",
                    progress=False, train_ids=ids)  # fmt: skip
    with pytest.raises(VoxauditError, match="'nope' is not in corpus"):
        train_model("classifier", corpus_dir, None, "base", CONFIG, tmp_path / "y",
                    progress=False, train_ids=["nope"])  # fmt: skip


def test_shadow_role_and_toml_config(audit, tmp_path: Path):
    corpus_dir, split_path = audit
    config = tmp_path / "run.toml"
    config.write_text('[model]\nlabel = "speaker"\nhidden = 8\nn_mels = 16\n[train]\nepochs = 1\n')
    train_model(
        "classifier", corpus_dir, split_path, "shadow-0", config, tmp_path / "out", progress=False
    )
    state = read_checkpoint(tmp_path / "out")
    assert state["data"]["train_ids"] == json.loads(split_path.read_text())["shadow_train"][0]


def test_validation_comes_from_the_training_pool(audit, tmp_path: Path):
    corpus_dir, split_path = audit
    config = {**CONFIG, "train": {**CONFIG["train"], "early_stopping_patience": 1}}
    train_model(
        "classifier",
        corpus_dir,
        split_path,
        "target",
        config,
        tmp_path,
        progress=False,
        val_fraction=0.25,
    )
    state = read_checkpoint(tmp_path)
    pool = json.loads(split_path.read_text())["pools"]["target_train"]
    train, val = state["data"]["train_ids"], state["data"]["val_ids"]
    assert len(val) == round(0.25 * len(pool)) and sorted(train + val) == sorted(pool)
    assert state["history"]["epochs"][0]["val_loss"] is not None
    with pytest.raises(VoxauditError, match="set val_fraction"):
        train_model(
            "classifier", corpus_dir, split_path, "target", config, tmp_path / "x", progress=False
        )


def test_a_split_of_another_corpus_is_refused(audit, tmp_path: Path):
    corpus_dir, _ = audit
    corpus = load_corpus(corpus_dir)
    other = corpus.filter(speakers=corpus.speakers[:3])
    assert len(other) == 12
    split_path = make_split(other, "sample", seed=0).save(tmp_path / "other.json")
    with pytest.raises(SplitMismatchError, match="re-run `voxaudit split`") as caught:
        train_model("classifier", corpus_dir, split_path, "target", CONFIG, tmp_path / "out")
    assert str(caught.value).startswith(f"{split_path}: this split was made for corpus")
    assert not (tmp_path / "out").exists()


def test_kinds_and_config_errors_are_clear(audit, tmp_path: Path):
    corpus_dir, split_path = audit
    with pytest.raises(VoxauditError, match="unknown model kind 'tts'"):
        train_model("tts", corpus_dir, split_path, "target", CONFIG, tmp_path)
    bad_augment = {**CONFIG, "augment": {"masks": 3}}
    with pytest.raises(VoxauditError, match=r"config: \[augment\]: unknown key\(s\) masks"):
        train_model("classifier", corpus_dir, split_path, "target", bad_augment, tmp_path)
    with pytest.raises(VoxauditError, match="unknown section"):
        train_model("classifier", corpus_dir, split_path, "target", {"optim": {}}, tmp_path)
    bad_model = {"model": {"layers": 3}}
    with pytest.raises(VoxauditError, match=r"\[model\]: unknown key\(s\) layers; known: cell"):
        train_model("classifier", corpus_dir, split_path, "target", bad_model, tmp_path)
    with pytest.raises(VoxauditError, match="unknown model role"):
        train_model("classifier", corpus_dir, split_path, "shadow-7", CONFIG, tmp_path)


def test_read_run_config_defaults():
    config = read_run_config({})
    assert config.model == {} and config.sampler == {} and config.train == TrainConfig()


def test_a_bad_config_file_fails_naming_file_section_and_key_before_the_corpus(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('[model]\nlabel = "speaker"\n[train]\nepochs = 1\nlr = "fast"\n')
    missing = tmp_path / "no-corpus"  # never read: the config fails first
    with pytest.raises(VoxauditError) as caught:
        train_model("classifier", missing, tmp_path / "s.json", "target", config, tmp_path / "o")
    assert str(caught.value) == f"{config}: [train]: key 'lr': expected a number, got 'fast'"
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("kind", "config", "message"),
    [
        ("classifier", {"train": {"lr": -1.0}}, "[train]: train config: lr must be a number >= 0"),
        ("classifier", {"train": {"epoch": 3}}, "[train]: unknown key(s) epoch; known: amp"),
        ("classifier", {"model": {"hidden": "big"}}, "[model]: key 'hidden': expected an integer"),
        ("asr", {"model": {"family": "rnnt"}}, "key 'family': expected one of 'ctc', 'attention'"),
        ("asr", {"model": {"preset": "huge"}}, "key 'preset': expected one of 'tiny', 'small'"),
        ("asr", {"model": {"encoder": "lstm"}}, "key 'encoder': expected one of 'gru'"),
        ("asr", {"model": {"family": "attention", "d_model": 3.5}}, "key 'd_model': expected an"),
        ("speaker", {"model": {"n_speakers": 3}}, "[model]: unknown key(s) n_speakers"),
        ("speaker", {"model": {"family": "xvector", "hidden": 8}}, "unknown key(s) hidden"),
        ("speaker", {"sampler": {"seed": 1}}, "[sampler]: unknown key(s) seed"),
        (
            "speaker",
            {"sampler": {"speakers_per_batch": "2"}},
            "[sampler]: key 'speakers_per_batch': expected an integer, got '2'",
        ),
        ("asr", {"sampler": {"speakers_per_batch": 2}}, "[sampler]: model kind 'asr' takes no"),
        ("asr", {"augment": {"time_width": "wide"}}, "[augment]: key 'time_width': expected a"),
        ("asr", {"model": []}, "[model] must be a table of settings"),
    ],
)
def test_every_section_is_checked_against_what_the_kind_builds(kind, config, message):
    with pytest.raises(VoxauditError) as caught:
        read_run_config(config, kind, where="run.toml")
    assert str(caught.value).startswith("run.toml: ") and message in str(caught.value)


def test_checked_settings_are_what_the_kind_takes():
    config = read_run_config(
        {
            "model": {"family": "ctc", "preset": "tiny", "rnn": "dpgru", "dropout": 0},
            "augment": {"freq_masks": 1},
        },
        "asr",
    )
    assert config.model == {"family": "ctc", "preset": "tiny", "rnn": "dpgru", "dropout": 0}
    assert config.augment == {"freq_masks": 1} and config.origin == "config"
    with pytest.raises(VoxauditError, match=r"^sweep\.toml: \[base\.train\]: key 'lr'"):
        read_run_config({"train": {"lr": "x"}}, where="sweep.toml", table="base.")


def test_a_registered_kind_with_a_batch_sampler(audit, tmp_path: Path, monkeypatch):
    batches = []

    class Recording(SpeakerBatchSampler):
        def __iter__(self):
            for batch in super().__iter__():
                batches.append(batch)
                yield batch

    kind = ModelKind(
        build=classifier_for, target=lambda model: model.target, batch_sampler=Recording
    )
    monkeypatch.setitem(MODEL_KINDS, "speaker", kind)
    corpus_dir, split_path = audit
    config = {**CONFIG, "sampler": {"speakers_per_batch": 2, "utterances_per_speaker": 1}}
    train_model("speaker", corpus_dir, split_path, "target", config, tmp_path, progress=False)
    steps = read_checkpoint(tmp_path)["history"]["epochs"][0]["steps"]
    assert steps == len(batches) > 0 and all(len(b) == 2 for b in batches)
    bad = {**CONFIG, "sampler": {"speakers": 2}}
    with pytest.raises(VoxauditError, match=r"\[sampler\]: unknown key\(s\) speakers; known: spe"):
        train_model("speaker", corpus_dir, split_path, "target", bad, tmp_path / "bad")
    with pytest.raises(VoxauditError, match=r"takes no \[sampler\] settings"):
        train_model("classifier", corpus_dir, split_path, "target", config, tmp_path / "bad")


def test_carve_validation_is_seeded_and_disjoint():
    ids = [f"u{i}" for i in range(10)]
    train, val = carve_validation(ids, 0.2, seed=3)
    assert (train, val) == carve_validation(ids, 0.2, seed=3)
    assert len(val) == 2 and sorted(train + val) == sorted(ids)
    assert carve_validation(ids, 0.0, seed=3) == (ids, [])
    with pytest.raises(VoxauditError, match="val_fraction"):
        carve_validation(ids, 1.0, seed=0)


@pytest.mark.parametrize(
    ("kind", "model"),
    [
        ("asr", {"family": "ctc", "preset": "tiny"}),
        ("asr", {"family": "attention", "preset": "tiny"}),
        ("asr", {"family": "ctc", "preset": "tiny", "augment": True}),
        ("speaker", {"family": "ge2e", "hidden": 32, "layers": 1, "embedding_dim": 16}),
        ("speaker", {"family": "xvector", "channels": 32, "embedding_dim": 16}),
    ],
)
def test_every_model_family_trains_through_the_entry_point(
    audit, speaker_audit, tmp_path: Path, kind, model
):
    corpus_dir, split_path = speaker_audit if kind == "speaker" else audit
    augment = model.pop("augment", False)
    config = {"model": model, "train": {"epochs": 1, "batch_size": 4, "max_steps": 2}}
    if augment:
        config["augment"] = {"freq_masks": 1, "time_masks": 1}
    if kind == "speaker":
        config["sampler"] = {"speakers_per_batch": 2, "utterances_per_speaker": 2}
    checkpoint = train_model(
        kind, corpus_dir, split_path, "target", config, tmp_path, progress=False
    )
    trained = read_checkpoint(checkpoint)
    split = AuditSplit.load(split_path)
    assert sorted(trained["data"]["train_ids"]) == sorted(split.train_ids("target"))
    assert (
        type(load_model(checkpoint)).__name__
        == {
            "ctc": "CTCModel",
            "attention": "AttentionModel",
            "ge2e": "GE2EEncoder",
            "xvector": "XVectorEncoder",
        }[model["family"]]
    )


def test_the_same_config_trains_the_same_model_whatever_ran_before(tmp_path):
    from voxaudit.data.loaders import load_corpus
    from voxaudit.data.splits import make_split
    from voxaudit.data.synth import synthesize_corpus

    corpus_dir = tmp_path / "corpus"
    synthesize_corpus(corpus_dir, n_speakers=4, per_speaker=4, seed=5, workers=1)
    make_split(load_corpus(corpus_dir), "sample", seed=0, n_shadow=1).save(tmp_path / "s.json")
    config = {"model": {"label": "speaker", "hidden": 8, "n_mels": 16}, "train": {"epochs": 1}}
    first = train_model("classifier", corpus_dir, tmp_path / "s.json", "target", config,
                        tmp_path / "a", progress=False)  # fmt: skip
    torch.randn(1000)  # the global RNG moves on, as other work in the process would move it
    second = train_model("classifier", corpus_dir, tmp_path / "s.json", "target", config,
                         tmp_path / "b", progress=False)  # fmt: skip
    a, b = (torch.load(p, weights_only=False)["model_state"] for p in (first, second))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_every_role_of_a_split_gets_the_whole_corpus_alphabet(tmp_path: Path):
    """A character only one pool holds is in every model's alphabet (the same output layer for
    target and shadows, and no alphabet that tells what a model trained on); a config's own
    alphabet wins."""
    import numpy as np

    from voxaudit.data.corpus import Corpus, Utterance

    rng = np.random.default_rng(0)
    texts = ["سلام", "مرحبا", "شكرا", "نعم"] * 3 + ["ظ"]  # one recording holds the only "ظ"
    corpus = Corpus(
        [
            Utterance(f"u{i}", f"s{i % 4}", text, samples=rng.normal(0, 0.1, 4000).astype(
                np.float32), sample_rate=16000)
            for i, text in enumerate(texts)
        ],
        name="arabic",
    )  # fmt: skip
    split = make_split(corpus, "sample", seed=0, n_shadow=1)
    split_path = split.save(tmp_path / "split.json")
    holder = next(r for r in split.roles if "u12" in split.train_ids(r))
    other = next(r for r in split.roles[:2] if r != holder)
    config = {"model": {"family": "ctc", "preset": "tiny", "d_model": 16, "layers": 1},
              "train": {"epochs": 1, "batch_size": 4, "max_steps": 1, "device": "cpu"}}  # fmt: skip
    alphabets = {
        role: load_model(train_model("asr", corpus, split_path, role, config, tmp_path / role,
                                     progress=False)).tokenizer.alphabet
        for role in {holder, other}
    }  # fmt: skip
    assert len(set(alphabets.values())) == 1 and "ظ" in alphabets[other]
    config["model"]["alphabet"] = " 'سلامرحبشكنعظ"
    own = train_model("asr", corpus, split_path, other, config, tmp_path / "own", progress=False)
    assert load_model(own).tokenizer.alphabet == " 'سلامرحبشكنعظ"
