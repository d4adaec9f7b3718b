import copy
import itertools
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.audio_fixtures import tone
from voxaudit.data.corpus import Utterance
from voxaudit.data.features import Batch
from voxaudit.defend.training import L2Penalty
from voxaudit.errors import VoxauditError
from voxaudit.models.checkpoints import (
    CHECKPOINT,
    import_model_class,
    load_model,
    read_checkpoint,
    resolve_device,
)
from voxaudit.models.classifier import UtteranceClassifierNet, classifier_for
from voxaudit.train.data import UtteranceDataset
from voxaudit.train.loop import HISTORY, History, TrainConfig, Trainer

FAST = {"batch_size": 4, "lr": 1e-2, "device": "cpu"}


def tones(n_classes: int = 4, per_class: int = 4) -> list[Utterance]:
    """Half-second harmonic tones, one pitch per class (the 'speaker')."""
    return [
        Utterance(
            f"c{c}-{i}",
            f"spk{c}",
            samples=tone(0.5, freq=150.0 * (c + 1), seed=10 * c + i),
            sample_rate=16000,
        )
        for c in range(n_classes)
        for i in range(per_class)
    ]


def model_and_data(seed: int = 0, dropout: float = 0.0):
    utts = tones()
    torch.manual_seed(seed)
    model = classifier_for(utts, hidden=8, n_mels=16, dropout=dropout)
    return model, UtteranceDataset(utts, model.front_end, model.target)


def fit(config: dict, hooks=(), out_dir=None, val=False, model_seed=0, dropout=0.0):
    model, data = model_and_data(model_seed, dropout)
    val_set = data if val else None
    history = Trainer(TrainConfig(**{**FAST, **config}), hooks, progress=False).fit(
        model, data, val_set, out_dir
    )
    return model, history


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def losses(history: History) -> list[tuple]:
    """The deterministic part of a history (not the timings)."""
    return [(r.epoch, r.steps, r.train_loss, r.val_loss) for r in history.epochs]


class Crash:
    """An input transform that raises at a given global step, like a killed process."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step
        self.calls = 0

    def transform(self, model, batch: Batch) -> Batch:
        self.calls += 1
        if self.calls == self.at_step:
            raise KeyboardInterrupt
        return batch


class Counter:
    """An input transform that counts the batches it sees and passes them on unchanged."""

    def __init__(self) -> None:
        self.calls = 0

    def transform(self, model, batch: Batch) -> Batch:
        self.calls += 1
        return batch


def test_loss_falls_and_history_is_complete():
    _, history = fit({"epochs": 6}, val=True)
    assert len(history.epochs) == 6 and history.stopped is None
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert history.val_loss[-1] < history.val_loss[0]
    assert all(r.steps == 4 and r.seconds > 0 and r.utterances_per_s > 0 for r in history.epochs)


def test_same_seed_same_weights():
    a, ha = fit({"epochs": 2, "seed": 3}, dropout=0.2)
    b, hb = fit({"epochs": 2, "seed": 3}, dropout=0.2)
    assert same_weights(a, b) and losses(ha) == losses(hb)


def test_interrupted_then_resumed_training_is_bit_identical(tmp_path: Path):
    config = {"epochs": 3, "seed": 1}
    whole, whole_history = fit(config, out_dir=tmp_path / "whole", dropout=0.2)

    with pytest.raises(KeyboardInterrupt):  # dies in epoch 2 of 3, after epoch 1's checkpoint
        fit(config, hooks=[Crash(at_step=6)], out_dir=tmp_path / "cut", dropout=0.2)
    assert len(read_checkpoint(tmp_path / "cut")["history"]["epochs"]) == 1

    counter = Counter()
    # A different initialization: everything must come from the checkpoint.
    resumed, resumed_history = fit(
        config, hooks=[counter], out_dir=tmp_path / "cut", model_seed=99, dropout=0.2
    )
    assert counter.calls == 8  # only epochs 2 and 3 ran again
    assert same_weights(whole, resumed)
    assert losses(whole_history) == losses(resumed_history)
    saved = json.loads((tmp_path / "cut" / HISTORY).read_text())
    assert [r["train_loss"] for r in saved["epochs"]] == whole_history.train_loss


def test_a_finished_run_is_not_trained_again_but_can_be_extended(tmp_path: Path):
    first, history = fit({"epochs": 2}, out_dir=tmp_path)
    counter = Counter()
    again, again_history = fit({"epochs": 2}, hooks=[counter], out_dir=tmp_path, model_seed=5)
    assert counter.calls == 0 and same_weights(first, again)
    assert losses(again_history) == losses(history)

    _, longer = fit({"epochs": 3}, hooks=[counter], out_dir=tmp_path)
    assert counter.calls == 4 and len(longer.epochs) == 3
    _, straight = fit({"epochs": 3})
    assert losses(longer) == losses(straight)


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path: Path):
    fit({"epochs": 1}, out_dir=tmp_path)
    with pytest.raises(VoxauditError, match=r"other training settings \(lr\)"):
        fit({"epochs": 2, "lr": 0.5}, out_dir=tmp_path)
    model = UtteranceClassifierNet(4, hidden=4, n_mels=16)
    data = model_and_data()[1]
    with pytest.raises(VoxauditError, match="another model config"):
        Trainer(TrainConfig(**FAST), progress=False).fit(model, data, out_dir=tmp_path)


def test_checkpoint_contents_and_load_model(tmp_path: Path):
    model, _ = fit({"epochs": 1}, out_dir=tmp_path)
    state = read_checkpoint(tmp_path / CHECKPOINT)
    assert state["model_class"] == "voxaudit.models.classifier.UtteranceClassifierNet"
    assert state["train_config"]["epochs"] == 1
    assert state["data"]["train_ids"] == [u.id for u in tones()]
    loaded = load_model(tmp_path)
    assert not loaded.training and same_weights(model, loaded)


def test_checkpoints_are_atomic(tmp_path: Path, monkeypatch):
    fit({"epochs": 1}, out_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT, HISTORY]
    before = (tmp_path / CHECKPOINT).read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        fit({"epochs": 2}, out_dir=tmp_path)
    assert (tmp_path / CHECKPOINT).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT, HISTORY]


def test_l2_penalty_adds_its_value_to_the_loss():
    weight = 0.01
    model, _ = model_and_data()
    expected = weight * sum(float(p.detach().square().sum()) for p in model.parameters())
    # lr = 0 keeps the parameters, so the one epoch's loss differs by exactly the penalty.
    _, plain = fit({"epochs": 1, "lr": 0.0})
    _, penalized = fit({"epochs": 1, "lr": 0.0}, hooks=[L2Penalty(weight)])
    assert penalized.train_loss[0] - plain.train_loss[0] == pytest.approx(expected, rel=1e-4)


def test_engine_wraps_once_and_its_loader_is_used():
    class CountingLoader:
        def __init__(self, loader):
            self.loader, self.batches = loader, 0

        def __len__(self):
            return len(self.loader)

        def __iter__(self):
            for batch in self.loader:
                self.batches += 1
                yield batch

    class Engine:
        def __init__(self):
            self.calls = 0

        def wrap(self, model, optimizer, loader):
            self.calls += 1
            self.loader = CountingLoader(loader)
            return model, optimizer, self.loader

    engine = Engine()
    fit({"epochs": 3}, hooks=[engine])
    assert engine.calls == 1 and engine.loader.batches == 12


def test_an_engine_model_without_the_model_methods_trains_the_original():
    class InPlaceHooks(torch.nn.Module):
        """Like Opacus' GradSampleModule: holds the model, hides its methods."""

        def __init__(self, inner):
            super().__init__()
            self._module = inner

    class Engine:
        def wrap(self, model, optimizer, loader):
            return InPlaceHooks(model), optimizer, loader

    untrained, _ = model_and_data()
    trained, history = fit({"epochs": 2}, hooks=[Engine()])
    _, plain = fit({"epochs": 2})
    assert losses(history) == losses(plain)
    assert not same_weights(untrained, trained)


def test_input_transforms_run_in_order_on_every_batch():
    seen = []

    class Silence:
        def transform(self, model, batch):
            return Batch(torch.zeros_like(batch.features), batch.lengths, batch.targets)

    class Spy:
        def transform(self, model, batch):
            seen.append(bool((batch.features == 0).all()))
            return batch

    _, history = fit({"epochs": 2}, hooks=[Silence(), Spy()])
    assert seen == [True] * 8
    assert history.train_loss[0] == pytest.approx(torch.log(torch.tensor(4.0)).item(), abs=0.2)


def test_a_teacher_can_be_a_loss_term():
    class Distillation:
        """KL from a frozen teacher's soft labels to the student's, as a loss term."""

        def __init__(self, teacher, weight):
            self.teacher, self.weight, self.calls = teacher.eval(), weight, 0

        def term(self, model, batch, outputs):
            self.calls += 1
            with torch.no_grad():
                soft = torch.softmax(
                    self.teacher.forward_features(batch.features, batch.lengths), -1
                )
            return self.weight * F.kl_div(
                torch.log_softmax(outputs, -1), soft, reduction="batchmean"
            )

    teacher, _ = fit({"epochs": 2})
    frozen = copy.deepcopy(teacher.state_dict())
    hook = Distillation(teacher, 1.0)
    _, plain = fit({"epochs": 1}, model_seed=1)
    _, distilled = fit({"epochs": 1}, hooks=[hook], model_seed=1)
    assert hook.calls == 4
    assert distilled.train_loss[0] > plain.train_loss[0]  # the KL term is positive
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in frozen.items())


def test_hooks_without_a_hook_method_are_refused():
    with pytest.raises(TypeError, match="term, transform or wrap"):
        Trainer(TrainConfig(), hooks=[object()])


def test_early_stopping_stops_when_validation_loss_stalls(tmp_path: Path):
    # lr = 0: the validation loss never falls after the first epoch.
    _, history = fit(
        {"epochs": 10, "lr": 0.0, "early_stopping_patience": 2}, val=True, out_dir=tmp_path
    )
    assert history.stopped == "early_stopping" and len(history.epochs) == 3
    counter = Counter()
    _, again = fit(
        {"epochs": 10, "lr": 0.0, "early_stopping_patience": 2},
        hooks=[counter],
        val=True,
        out_dir=tmp_path,
    )
    assert counter.calls == 0 and len(again.epochs) == 3
    with pytest.raises(VoxauditError, match="validation"):
        fit({"early_stopping_patience": 2})


def test_max_steps_caps_training():
    _, history = fit({"epochs": 5, "max_steps": 6})
    assert history.stopped == "max_steps"
    assert [r.steps for r in history.epochs] == [4, 2]


def test_label_smoothing_reaches_the_model_and_needs_support():
    model, data = model_and_data()
    Trainer(TrainConfig(**FAST, epochs=1, label_smoothing=0.1), progress=False).fit(model, data)
    assert model.label_smoothing == 0.1

    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_loss(self, batch):
            return self.w.square().sum()

        def forward_features(self, features, lengths):
            return features

        def config(self):
            return {}

    with pytest.raises(VoxauditError, match="label_smoothing"):
        Trainer(TrainConfig(**FAST, label_smoothing=0.1), progress=False).fit(Plain(), data)
    with pytest.raises(VoxauditError, match="cannot be trained"):
        Trainer(TrainConfig(**FAST), progress=False).fit(torch.nn.Linear(1, 1), data)


def test_progress_bar_path_runs():
    _, history = fit({"epochs": 1})
    model, data = model_and_data()
    shown = Trainer(TrainConfig(**FAST, epochs=1), progress=True).fit(model, data)
    assert losses(shown) == losses(history)


def test_train_config_round_trips_and_validates(tmp_path: Path):
    config = TrainConfig(epochs=3, optimizer="sgd", grad_clip=1.0, early_stopping_patience=2)
    assert TrainConfig.from_dict(config.to_dict()) == config
    (tmp_path / "run.toml").write_text("[model]\nhidden = 8\n[train]\nepochs = 3\nlr = 1\n")
    assert TrainConfig.from_file(tmp_path / "run.toml") == TrainConfig(epochs=3, lr=1)
    (tmp_path / "train.json").write_text('{"epochs": 2, "optimizer": "adamw"}')
    assert TrainConfig.from_file(tmp_path / "train.json").optimizer == "adamw"
    (tmp_path / "bad.toml").write_text("epochs = [")
    with pytest.raises(VoxauditError, match=r"bad\.toml: invalid TOML"):
        TrainConfig.from_file(tmp_path / "bad.toml")
    with pytest.raises(VoxauditError, match=r"unknown setting.*epoch\b"):
        TrainConfig.from_dict({"epoch": 3})
    for bad in ({"optimizer": "lion"}, {"lr": -1}, {"epochs": True}, {"device": "tpu"}):
        with pytest.raises(VoxauditError, match="train config"):
            TrainConfig.from_dict(bad)


def test_optimizers_and_grad_clip_train():
    for optimizer in ("adamw", "sgd"):
        _, history = fit({"epochs": 1, "optimizer": optimizer, "grad_clip": 0.5})
        assert torch.isfinite(torch.tensor(history.train_loss)).all()


def test_only_voxaudit_model_classes_are_imported():
    with pytest.raises(VoxauditError, match="not a voxaudit model"):
        import_model_class("os.system")
    with pytest.raises(VoxauditError, match="not a torch module"):
        import_model_class("voxaudit.train.loop.TrainConfig")


def test_device_selection():
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(VoxauditError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_mixed_precision_trains(tmp_path: Path):
    model, history = fit({"epochs": 4, "device": "cuda", "amp": True}, out_dir=tmp_path)
    assert next(model.parameters()).is_cuda
    assert history.train_loss[-1] < history.train_loss[0]
    assert read_checkpoint(tmp_path)["scaler_state"] is not None
    _, resumed = fit({"epochs": 5, "device": "cuda", "amp": True}, out_dir=tmp_path)
    assert len(resumed.epochs) == 5


def test_warmup_ramps_the_learning_rate_linearly():
    class Capture:
        def wrap(self, model, optimizer, loader):
            self.optimizer = optimizer
            return model, optimizer, loader

    capture = Capture()
    fit({"epochs": 5, "warmup_steps": 8, "max_steps": 2}, hooks=[capture])
    assert capture.optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * 2 / 8)
    with pytest.raises(VoxauditError, match="warmup_steps"):
        TrainConfig(warmup_steps=-1)


def test_cosine_decay_follows_warmup_and_ends_at_min_lr():
    config = TrainConfig(lr=1.0, warmup_steps=4, decay_steps=10, min_lr=0.1)
    rates = [config.learning_rate(step) for step in range(20)]
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert rates[4] == pytest.approx(1.0)
    assert rates[9] == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the decay
    assert all(a >= b for a, b in itertools.pairwise(rates[3:]))
    assert rates[14:] == pytest.approx([0.1] * 6)
    assert TrainConfig(lr=0.3).learning_rate(1000) == 0.3
    with pytest.raises(VoxauditError, match="min_lr"):
        TrainConfig(lr=0.1, min_lr=0.2)
    with pytest.raises(VoxauditError, match="decay_steps"):
        TrainConfig(decay_steps=0)


def test_decay_is_applied_by_the_trainer():
    class Capture:
        def wrap(self, model, optimizer, loader):
            self.optimizer = optimizer
            return model, optimizer, loader

    capture = Capture()
    settings = {"epochs": 5, "decay_steps": 4, "max_steps": 2}
    fit(settings, hooks=[capture])
    expected = TrainConfig(lr=1e-2, decay_steps=4).learning_rate(1)
    assert capture.optimizer.param_groups[0]["lr"] == pytest.approx(expected)


def test_load_model_refuses_an_unexpected_model_class(tmp_path):
    fit({"epochs": 1}, out_dir=tmp_path)
    with pytest.raises(VoxauditError, match=r"holds a \w+, not a Linear or Conv1d"):
        load_model(tmp_path, expected=(torch.nn.Linear, torch.nn.Conv1d))
