"""Fine-tuning: a run that starts from a trained base's weights, freezes some of them and
records the base's provenance (what a reference-model attack needs to trust the base)."""

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from voxaudit.cli import app
from voxaudit.data.corpus import Corpus
from voxaudit.data.loaders import load_corpus
from voxaudit.data.splits import make_split
from voxaudit.data.synth import synthesize_corpus, synthesize_corpus_in_memory
from voxaudit.errors import VoxauditError
from voxaudit.mia.families.asr import AsrFamily
from voxaudit.models.checkpoints import (
    checkpoint_base,
    checkpoint_role,
    file_sha256,
    load_model,
    read_checkpoint,
)
from voxaudit.models.recognizer import Recognizer
from voxaudit.models.wav2vec2 import Wav2Vec2CTC
from voxaudit.train.loop import freeze_parameters
from voxaudit.train.run import train_model

TRAIN = {"epochs": 1, "batch_size": 4, "device": "cpu"}
CLASSIFIER = {"model": {"label": "speaker", "hidden": 8, "n_mels": 16}, "train": TRAIN}
WAV2VEC2 = {
    "model": {"family": "wav2vec2", "preset": "tiny", "dropout": 0.0},
    "train": {**TRAIN, "epochs": 10, "lr": 3e-3},
}


@pytest.fixture(scope="module")
def audit(tmp_path_factory) -> tuple[Path, Path]:
    """4 speakers x 4 synthetic utterances and a sample-level split with one shadow."""
    root = tmp_path_factory.mktemp("finetune")
    synthesize_corpus(root / "corpus", n_speakers=4, per_speaker=4, workers=1, progress=False)
    split = make_split(load_corpus(root / "corpus"), "sample", seed=0, n_shadow=1)
    return root / "corpus", split.save(root / "split.json")


@pytest.fixture(scope="module")
def base(audit, tmp_path_factory) -> Path:
    """A classifier pretrained on the shadow's pool: the base the target is fine-tuned from."""
    out = tmp_path_factory.mktemp("base")
    return train_model("classifier", *audit, "shadow-0", CLASSIFIER, out, progress=False).parent


@pytest.fixture(scope="module")
def wav2vec2_base(audit, tmp_path_factory) -> Path:
    """A tiny wav2vec2 CTC model pretrained for 10 steps on the shadow's pool."""
    out = tmp_path_factory.mktemp("wav2vec2-base")
    return train_model("asr", *audit, "shadow-0", WAV2VEC2, out, progress=False).parent


def _finetune(audit, out: Path, config=None, **options) -> Path:
    config = {"train": TRAIN} if config is None else config
    return train_model("classifier", *audit, "target", config, out, progress=False, **options)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["model_state"]


def test_the_fine_tuned_model_starts_from_the_bases_weights(audit, base, tmp_path):
    # lr = 0: the one step changes nothing, so the checkpoint holds the weights it started from.
    config = {"train": {**TRAIN, "lr": 0.0, "max_steps": 1}}
    tuned = _weights(_finetune(audit, tmp_path, config, init_from=base))
    start = _weights(base)
    assert tuned.keys() == start.keys()
    assert all(torch.equal(tuned[k], start[k]) for k in start)


def test_the_checkpoint_records_its_base_and_its_own_training_ids(audit, base, tmp_path):
    split = json.loads(audit[1].read_text())
    checkpoint = _finetune(audit, tmp_path, init_from=base)
    recorded = checkpoint_base(checkpoint)
    assert recorded is not None
    assert recorded["path"] == str((base / "checkpoint.pt").resolve())
    assert recorded["sha256"] == file_sha256(base / "checkpoint.pt")
    assert (recorded["kind"], recorded["role"]) == ("classifier", "shadow-0")
    assert recorded["train_ids"] == split["shadow_train"][0]
    assert recorded["n_train_ids"] == len(split["shadow_train"][0])
    assert recorded["base"] is None  # the base was trained from scratch
    # The base's ids are readable from the base itself too, and the fine-tuned model's own.
    assert checkpoint_role(base, None)[1] == frozenset(recorded["train_ids"])
    assert read_checkpoint(checkpoint)["data"]["train_ids"] == split["pools"]["target_train"]
    assert checkpoint_base(base) is None
    # Without [model] the base's settings were taken: the model is the base's.
    assert read_checkpoint(checkpoint)["model_config"] == read_checkpoint(base)["model_config"]


def test_a_base_from_another_split_is_accepted(audit, base, tmp_path):
    corpus_dir, _ = audit
    other = make_split(load_corpus(corpus_dir), "sample", seed=7, n_shadow=1)
    other_split = other.save(tmp_path / "other.json")
    train_model(
        "classifier",
        corpus_dir,
        other_split,
        "target",
        {"train": TRAIN},
        tmp_path / "run",
        progress=False,
        init_from=base / "checkpoint.pt",
    )
    assert set(checkpoint_base(tmp_path / "run")["train_ids"]) == checkpoint_role(base, None)[1]


def test_frozen_parameters_stay_bit_identical_and_the_others_train(audit, base, tmp_path):
    config = {"train": {**TRAIN, "epochs": 2, "lr": 1e-2}}
    checkpoint = _finetune(audit, tmp_path, config, init_from=base, freeze=["conv", "rnn"])
    tuned, start = _weights(checkpoint), _weights(base)
    frozen = [k for k in start if k.startswith(("conv.", "rnn."))]
    assert frozen and all(torch.equal(tuned[k], start[k]) for k in frozen)
    assert not torch.equal(tuned["head.weight"], start["head.weight"])
    assert read_checkpoint(checkpoint)["metadata"]["freeze"] == ["conv", "rnn"]


def test_model_settings_must_build_the_bases_shapes(audit, base, tmp_path):
    wider = {"model": {**CLASSIFIER["model"], "hidden": 16}, "train": TRAIN}
    with pytest.raises(VoxauditError) as error:
        _finetune(audit, tmp_path / "wider", wider, init_from=base)
    message = str(error.value)
    assert "\n" not in message and str(base) in message
    assert "hidden 8 in the base, 16 here" in message and "leave [model] out" in message
    assert not (tmp_path / "wider" / "checkpoint.pt").exists()
    # A setting no weight depends on may differ from the base's.
    other_dropout = {"model": {**CLASSIFIER["model"], "dropout": 0.3}, "train": TRAIN}
    checkpoint = _finetune(audit, tmp_path / "dropout", other_dropout, init_from=base)
    assert read_checkpoint(checkpoint)["model_config"]["dropout"] == 0.3


def test_a_classifier_base_of_other_classes_is_refused(base, tmp_path):
    corpus = synthesize_corpus_in_memory(n_speakers=3, per_speaker=4)
    split = make_split(corpus, "sample", seed=0).save(tmp_path / "split.json")
    with pytest.raises(VoxauditError) as error:
        train_model("classifier", corpus, split, "target", {"train": TRAIN}, tmp_path / "run",
                    progress=False, init_from=base)  # fmt: skip
    message = str(error.value)
    assert "classes [" in message and "the training pool gives classes, n_classes" in message


def test_a_base_of_another_model_kind_is_refused(audit, base, tmp_path):
    with pytest.raises(VoxauditError, match="holds a UtteranceClassifierNet, but model kind 'asr'"):
        train_model("asr", *audit, "target", {"train": TRAIN}, tmp_path, init_from=base)


def test_an_unknown_freeze_prefix_names_the_top_level_modules(audit, base, tmp_path):
    with pytest.raises(VoxauditError) as error:
        _finetune(audit, tmp_path, init_from=base, freeze=["encoder"])
    message = str(error.value)
    assert "'encoder' names no part of UtteranceClassifierNet" in message and "\n" not in message
    assert "front_end, conv, norm, rnn, dropout, head" in message


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(2, 2)
        self.encoder_norm = nn.LayerNorm(2)
        self.head = nn.Linear(2, 1)


def test_freeze_prefixes_cover_whole_names_only():
    net = _Net()
    assert freeze_parameters(net, ["encoder"]) == 2
    trainable = {name for name, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"encoder_norm.weight", "encoder_norm.bias", "head.weight", "head.bias"}
    assert freeze_parameters(_Net(), ["head.bias"]) == 1
    with pytest.raises(VoxauditError, match="nothing to train"):
        freeze_parameters(_Net(), ["encoder", "encoder_norm", "head"])


def test_a_resumed_fine_tune_carries_on_from_its_own_checkpoint(audit, base, tmp_path):
    two = {"train": {**TRAIN, "epochs": 2}}
    whole = _weights(_finetune(audit, tmp_path / "whole", two, init_from=base, freeze=["conv"]))
    _finetune(audit, tmp_path / "resumed", init_from=base, freeze=["conv"])
    # The second call resumes after epoch 1; loading the base again would undo that epoch.
    resumed = _weights(_finetune(audit, tmp_path / "resumed", two, init_from=base, freeze=["conv"]))
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    with pytest.raises(VoxauditError, match="other run metadata"):
        _finetune(audit, tmp_path / "resumed", two, init_from=base)  # not frozen any more


def test_a_config_file_gives_the_base_relative_to_its_folder(audit, base, tmp_path):
    folder = tmp_path / "configs"
    folder.mkdir()
    config = folder / "run.toml"
    relative = os.path.relpath(base, folder)
    config.write_text(
        f'[train]\nepochs = 1\nbatch_size = 4\n[finetune]\ninit_from = "{relative}"\n'
        'freeze = ["conv"]\n'
    )
    checkpoint = _finetune(audit, tmp_path / "run", config)
    assert checkpoint_base(checkpoint)["path"] == str((base / "checkpoint.pt").resolve())
    assert read_checkpoint(checkpoint)["metadata"]["freeze"] == ["conv"]
    config.write_text('[finetune]\nbase = "x"\n')
    with pytest.raises(VoxauditError, match=r"\[finetune\]: unknown key\(s\) base"):
        _finetune(audit, tmp_path / "bad", config)


def test_cli_fine_tunes_from_a_run_folder(audit, base, tmp_path):
    corpus_dir, split_path = audit
    config = tmp_path / "run.toml"
    config.write_text("[train]\nepochs = 1\nbatch_size = 4\ndevice = 'cpu'\n")
    args = ["train", "classifier", "--corpus", str(corpus_dir), "--split", str(split_path)]
    args += ["--config", str(config), "--out", str(tmp_path / "run"), "--init-from", str(base)]
    result = CliRunner().invoke(app, [*args, "--freeze", "front_end"])
    assert result.exit_code == 0, result.output
    state = read_checkpoint(tmp_path / "run")
    assert state["metadata"]["base"]["sha256"] == file_sha256(base / "checkpoint.pt")
    assert state["metadata"]["freeze"] == ["front_end"]
    refused = CliRunner().invoke(app, [*args[:-2], "--out", str(tmp_path / "x"), "--freeze", "x"])
    assert refused.exit_code == 2 and "'x' names no part" in refused.output


def test_an_asr_base_refuses_characters_outside_its_alphabet(audit, wav2vec2_base, tmp_path):
    corpus_dir, split_path = audit
    corpus = load_corpus(corpus_dir)
    first = json.loads(split_path.read_text())["pools"]["target_train"][0]
    changed = [
        dataclasses.replace(u, transcript=u.transcript + " smørrebrød") if u.id == first else u
        for u in corpus
    ]
    with pytest.raises(VoxauditError) as error:
        train_model(
            "asr",
            Corpus(changed, corpus.name),
            split_path,
            "target",
            {"train": TRAIN},
            tmp_path,
            progress=False,
            init_from=wav2vec2_base,
        )
    message = str(error.value)
    assert f"training utterance {first!r}" in message and "'ø'" in message
    assert not (tmp_path / "checkpoint.pt").exists()


def test_wav2vec2_pretrained_on_one_pool_fine_tunes_on_another(audit, wav2vec2_base, tmp_path):
    corpus_dir, split_path = audit
    config = {"train": {**TRAIN, "epochs": 30, "lr": 3e-3}}
    tuned = train_model(
        "asr",
        corpus_dir,
        split_path,
        "target",
        config,
        tmp_path,
        progress=False,
        init_from=wav2vec2_base,
        freeze=["wav2vec2.feature_extractor"],
    )
    # The frozen feature encoder is the base's, as loaded before the first step.
    start, weights = _weights(wav2vec2_base), _weights(tuned)
    frozen = [k for k in start if k.startswith("wav2vec2.feature_extractor.")]
    assert frozen and all(torch.equal(weights[k], start[k]) for k in frozen)
    pools = json.loads(split_path.read_text())
    assert checkpoint_base(tuned)["train_ids"] == pools["shadow_train"][0]
    assert checkpoint_base(tuned)["kind"] == "asr"
    corpus = load_corpus(corpus_dir)
    members = [corpus[uid] for uid in pools["pools"]["target_train"]]
    waves, texts = [u.load(16000) for u in members], [u.transcript for u in members]
    before = Recognizer(load_model(wav2vec2_base)).utterance_loss(waves, texts, normalize=True)
    after = Recognizer(load_model(tuned)).utterance_loss(waves, texts, normalize=True)
    assert after.mean() < 0.9 * before.mean()
    # An ASR audit loads it as any recognizer checkpoint.
    audited = AsrFamily().load(tmp_path, device="cpu")
    assert isinstance(audited.model.model, Wav2Vec2CTC)
    assert audited.role == "target" and audited.trained_ids == {u.id for u in members}
    assert len(audited.model.transcribe(waves[:2])) == 2
