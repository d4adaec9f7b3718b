"""Train-time defenses as hooks of the one training loop, on a tiny tone classifier."""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch

from tests.audio_fixtures import tone
from voxaudit.data.corpus import Utterance
from voxaudit.data.features import collate
from voxaudit.defend.training import (
    DPSGD,
    AdversarialRegularization,
    AdversarialTraining,
    Distillation,
    recorded_epsilon,
)
from voxaudit.errors import VoxauditError
from voxaudit.models.classifier import classifier_for
from voxaudit.train.data import UtteranceDataset
from voxaudit.train.loop import TrainConfig, Trainer

HAS_OPACUS = importlib.util.find_spec("opacus") is not None


def _utterances(prefix: str, n: int = 4) -> list[Utterance]:
    return [
        Utterance(
            f"{prefix}{k}-{j}", "spk", transcript=word,
            samples=tone(0.3, freq=200.0 * (k + 1), seed=hash((prefix, j)) % 1000),
            sample_rate=16000,
        )
        for k, word in enumerate(["one", "two", "three"])
        for j in range(n)
    ]  # fmt: skip


@pytest.fixture(scope="module")
def members():
    return _utterances("m")


def _model(utterances, seed=0, **kwargs):
    torch.manual_seed(seed)
    return classifier_for(utterances, "transcript", hidden=8, n_mels=16, **kwargs)


def _batch(model, utterances):
    data = UtteranceDataset(utterances, model.front_end, model.target)
    features, targets = zip(*(data[i] for i in range(len(data))), strict=True)
    return collate(list(features), torch.tensor(targets))


def _fit(model, utterances, hooks, epochs=3):
    data = UtteranceDataset(utterances, model.front_end, model.target)
    config = TrainConfig(epochs=epochs, batch_size=4, lr=1e-2, device="cpu")
    return Trainer(config, hooks, progress=False).fit(model, data)


def test_distillation_is_zero_against_itself_and_pulls_the_student_to_the_teacher(members):
    teacher = _model(members, seed=1)
    _fit(teacher, members, [], epochs=4)
    batch = _batch(teacher, members)
    same = Distillation(copy.deepcopy(teacher))
    with torch.no_grad():
        outputs = teacher.eval().forward_features(batch.features, batch.lengths)
    assert same.term(teacher, batch, outputs).item() == pytest.approx(0.0, abs=1e-6)
    student = _model(members, seed=2)
    hook = Distillation(teacher, temperature=2.0, weight=5.0)

    def gap() -> float:
        with torch.no_grad():
            out = student.eval().forward_features(batch.features, batch.lengths)
            return hook.term(student, batch, out).item()

    before = gap()
    _fit(student, members, [hook], epochs=4)
    assert before > 0 and gap() < 0.5 * before


def test_distillation_refuses_sequence_outputs(members):
    hook = Distillation(_model(members))
    batch = _batch(_model(members), members)
    with pytest.raises(VoxauditError, match=r"logits \[batch, classes\]"):
        hook.term(None, batch, torch.zeros(2, 5, 3))


@pytest.mark.parametrize("steps", [1, 3])
def test_adversarial_examples_stay_in_the_ball_spare_padding_and_raise_the_loss(members, steps):
    model = _model(members)
    _fit(model, members, [], epochs=2)
    batch = _batch(model, members)
    transform = AdversarialTraining(eps=0.2, steps=steps)
    adversarial = transform.transform(model, batch)
    change = adversarial.features - batch.features
    assert change.abs().max() <= 0.2 + 1e-6 and change.abs().max() > 0.1
    assert (change[~batch.mask] == 0).all()
    with torch.no_grad():
        assert model.training_loss(adversarial) > model.training_loss(batch)
    _fit(model, members, [transform], epochs=1)  # and it trains


def test_adversarial_regularization_trains_its_inference_model_and_the_target(members):
    model = _model(members)
    hook = AdversarialRegularization(_utterances("r", 2), n_classes=3, weight=1.0, batch_size=4)
    before = [p.detach().clone() for p in hook.inference.parameters()]
    history = _fit(model, members, [hook], epochs=3)
    assert any(
        not torch.equal(a, b) for a, b in zip(before, hook.inference.parameters(), strict=True)
    )
    assert all(torch.isfinite(torch.tensor(history.train_loss)))
    with pytest.raises(VoxauditError, match="reference"):
        AdversarialRegularization([], 3)


def test_adversarial_regularization_reads_the_class_count_from_the_model(members):
    hook = AdversarialRegularization(_utterances("r", 2), batch_size=4)
    _fit(_model(members), members, [hook], epochs=1)
    assert hook.n_classes == 3 and hook.inference[0].in_features == 2 * 3


class _Killed:
    """An input transform that dies at a given step, like a killed process."""

    def __init__(self, at_step: int) -> None:
        self.at_step, self.calls = at_step, 0

    def transform(self, model, batch):
        self.calls += 1
        if self.calls == self.at_step:
            raise KeyboardInterrupt
        return batch


def test_adversarial_regularization_resumes_exactly_where_it_stopped(members, tmp_path):
    def run(out_dir, *extra, model_seed=0):
        model = _model(members, seed=model_seed)
        # 6 reference utterances in batches of 4: each epoch (3 steps) ends mid-pass.
        hook = AdversarialRegularization(_utterances("r", 2), weight=1.0, batch_size=4)
        data = UtteranceDataset(members, model.front_end, model.target)
        config = TrainConfig(epochs=3, batch_size=4, lr=1e-2, device="cpu", seed=0)
        history = Trainer(config, [hook, *extra], progress=False).fit(model, data, out_dir=out_dir)
        return model, hook, history

    whole, whole_hook, whole_history = run(tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):  # dies in epoch 2, after epoch 1's checkpoint
        run(tmp_path / "cut", _Killed(at_step=5))
    resumed, resumed_hook, resumed_history = run(tmp_path / "cut", model_seed=9)

    assert resumed_history.train_loss == whole_history.train_loss
    for a, b in [
        *zip(whole.parameters(), resumed.parameters(), strict=True),
        *zip(whole_hook.inference.parameters(), resumed_hook.inference.parameters(), strict=True),
    ]:
        assert torch.equal(a, b)


def test_a_checkpoint_without_the_learning_hook_is_refused(members, tmp_path):
    model = _model(members)
    data = UtteranceDataset(members, model.front_end, model.target)
    config = TrainConfig(epochs=1, batch_size=4, lr=1e-2, device="cpu")
    Trainer(config, [], progress=False).fit(model, data, out_dir=tmp_path)
    hook = AdversarialRegularization(_utterances("r", 2), batch_size=4)
    with pytest.raises(VoxauditError, match="other learning hooks"):
        Trainer(config, [hook], progress=False).fit(model, data, out_dir=tmp_path)


@pytest.mark.skipif(not HAS_OPACUS, reason="needs Opacus")
def test_dpsgd_trains_an_opacus_model_and_spends_epsilon(members):
    model = _model(members, cell="dpgru")
    engine = DPSGD(noise_multiplier=1.0, max_grad_norm=1.0)
    with pytest.raises(VoxauditError, match="not trained"):
        engine.epsilon()
    history = _fit(model, members, [engine], epochs=2)
    assert len(history.epochs) == 2
    assert 0 < engine.epsilon() < float("inf")
    more_noise = DPSGD(noise_multiplier=4.0)
    _fit(_model(members, cell="dpgru"), members, [more_noise], epochs=2)
    assert more_noise.epsilon() < engine.epsilon()


@pytest.mark.skipif(not HAS_OPACUS, reason="needs Opacus")
def test_a_resumed_dpsgd_run_spends_the_epsilon_of_the_whole_run(members, tmp_path):
    def run(out_dir, *extra):
        model = _model(members, cell="dpgru")
        engine = DPSGD(noise_multiplier=1.0, max_grad_norm=1.0)
        data = UtteranceDataset(members, model.front_end, model.target)
        config = TrainConfig(epochs=3, batch_size=4, lr=1e-2, device="cpu")
        Trainer(config, [engine, *extra], progress=False).fit(model, data, out_dir=out_dir)
        return engine

    whole = run(tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):  # dies in epoch 2, after epoch 1's checkpoint
        run(tmp_path / "cut", _Killed(at_step=4))
    resumed = run(tmp_path / "cut")
    assert resumed.restored and not whole.restored
    assert resumed.epsilon() == pytest.approx(whole.epsilon())
    # Without the accountant's history the resumed run would count only epochs 2 and 3.
    assert sum(steps for *_, steps in resumed.engine.accountant.history) == sum(
        steps for *_, steps in whole.engine.accountant.history
    )


@pytest.mark.skipif(not HAS_OPACUS, reason="needs Opacus")
def test_dpsgd_names_the_layers_opacus_cannot_train(members):
    with pytest.raises(VoxauditError, match="dpgru"):
        _fit(_model(members, cell="gru"), members, [DPSGD()], epochs=1)


@pytest.mark.skipif(not HAS_OPACUS, reason="needs Opacus")
def test_dpsgd_trains_a_ctc_recognizer_named_in_its_config(members, tmp_path):
    from voxaudit.models.checkpoints import load_model
    from voxaudit.models.recognizer import asr_model_for, transcript_targets

    torch.manual_seed(0)
    tiny = {"d_model": 16, "layers": 1, "conv_channels": 4, "dropout": 0.0, "n_mels": 16}
    model = asr_model_for(members, "ctc", "tiny", rnn="dpgru", **tiny)
    data = UtteranceDataset(members, model.front_end, transcript_targets(model))
    engine = DPSGD(noise_multiplier=1.0, max_grad_norm=1.0)
    config = TrainConfig(epochs=2, batch_size=4, lr=1e-2, device="cpu")
    history = Trainer(config, [engine], progress=False).fit(model, data, out_dir=tmp_path)
    assert len(history.epochs) == 2 and 0 < engine.epsilon() < float("inf")
    # The cell's name is part of the saved config, so the checkpoint reloads the same model.
    reloaded = load_model(tmp_path)
    assert type(reloaded.encoder.encoder.rnn).__name__ == "DPGRU"
    batch = collate([data.features(i) for i in range(3)])
    with torch.no_grad():
        saved = reloaded.forward_features(batch.features, batch.lengths)[0]
        trained = model.eval().forward_features(batch.features, batch.lengths)[0]
    assert torch.allclose(saved, trained, atol=1e-5)
    with pytest.raises(VoxauditError, match="rnn"):
        asr_model_for(members, "ctc", "tiny", rnn="lstm", **tiny)


@pytest.mark.skipif(not HAS_OPACUS, reason="needs Opacus")
def test_dpsgd_takes_a_noise_only_step_for_an_empty_poisson_batch(members):
    model = _model(members, cell="dpgru")
    engine = DPSGD(noise_multiplier=1.0, max_grad_norm=1.0)
    data = UtteranceDataset(members, model.front_end, model.target)
    # One utterance in 12 per batch: Poisson sampling leaves about a third of batches empty.
    config = TrainConfig(epochs=2, batch_size=1, lr=1e-2, device="cpu")
    trainer = Trainer(config, [engine], progress=False)
    before = [p.detach().clone() for p in model.parameters()]
    history = trainer.fit(model, data)
    assert len(history.epochs) == 2 and 0 < engine.epsilon() < float("inf")
    assert engine.loader is not None and engine.loader.empty_steps > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def testrecorded_epsilon_is_kept_beside_the_model_and_never_guessed_for_a_resumed_run(tmp_path):
    class Accountant:
        def get_epsilon(self, delta: float) -> float:
            return 2.5

    trained = DPSGD()
    trained.engine = Accountant()
    # A run resumed from an old checkpoint, without the accountant's history, restarted the
    # accountant: no epsilon rather than too few. With the history it counts every step.
    assert recorded_epsilon([trained], tmp_path / "resumed", fresh=False) is None
    trained.restored = True
    assert recorded_epsilon([trained], tmp_path / "restored", fresh=False) == 2.5
    trained.restored = False
    assert recorded_epsilon([trained], tmp_path / "model", fresh=True) == 2.5
    # A later setting that reuses the trained model reads the recorded epsilon back.
    assert recorded_epsilon([DPSGD()], tmp_path / "model", fresh=False) == 2.5
    assert recorded_epsilon([], tmp_path / "model", fresh=False) is None
