import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.audio_fixtures import tone
from voxaudit.data.corpus import Utterance
from voxaudit.data.features import collate
from voxaudit.errors import VoxauditError
from voxaudit.models.base import Trainable, UtteranceClassifier
from voxaudit.models.checkpoints import load_model
from voxaudit.models.classifier import (
    SpokenClassifier,
    UtteranceClassifierNet,
    classifier_for,
)
from voxaudit.train.data import UtteranceDataset
from voxaudit.train.loop import TrainConfig, Trainer


@pytest.fixture(scope="module")
def digits() -> list[Utterance]:
    """Two 'speakers' saying three 'digits': tones whose pitch is the digit."""
    return [
        Utterance(
            f"{spk}-{word}",
            spk,
            transcript=word,
            samples=tone(0.3 + 0.05 * k, freq=180.0 * (k + 1), seed=k + 7 * j),
            sample_rate=16000,
        )
        for j, spk in enumerate(["ann", "bob"])
        for k, word in enumerate(["one", "three", "two"])
    ]


def small(utterances, label="transcript", **kwargs) -> UtteranceClassifierNet:
    torch.manual_seed(0)
    return classifier_for(utterances, label, hidden=8, n_mels=16, **kwargs).eval()


def test_classes_come_from_the_label_function(digits):
    assert small(digits, "transcript").classes == ["one", "three", "two"]
    model = small(digits, "speaker")
    assert model.classes == ["ann", "bob"] and model.target(digits[4]) == 1
    assert isinstance(model, Trainable)
    with pytest.raises(VoxauditError, match="unknown label"):
        classifier_for(digits, "gender")
    silent = [Utterance("x", "ann", samples=tone(0.2), sample_rate=16000), *digits]
    with pytest.raises(VoxauditError, match=r"have no transcript, e\.g\. 'x'"):
        classifier_for(silent, "transcript")


def test_logits_do_not_depend_on_batch_padding(digits):
    model = small(digits)
    front = model.front_end
    feats = [front(torch.from_numpy(u.samples)) for u in digits]
    batch = collate(feats)
    with torch.no_grad():
        together = model.forward_features(batch.features, batch.lengths)
        alone = torch.cat([model.forward_features(f[None], torch.tensor([len(f)])) for f in feats])
    assert together.shape == (6, 3)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)


def test_training_loss_is_cross_entropy_with_optional_smoothing(digits):
    model = small(digits)
    feats = [model.front_end(torch.from_numpy(u.samples)) for u in digits]
    batch = collate(feats, [model.target(u) for u in digits])
    with torch.no_grad():
        plain = model.training_loss(batch)
        logits = model.forward_features(batch.features, batch.lengths)
        model.label_smoothing = 0.2
        smoothed = model.training_loss(batch)
    torch.testing.assert_close(plain, torch.nn.functional.cross_entropy(logits, batch.targets))
    assert plain.dim() == 0 and not torch.isclose(plain, smoothed)


def test_spoken_classifier_probabilities_and_losses(digits):
    model = small(digits)
    classifier = SpokenClassifier(model, batch_size=4)
    assert isinstance(classifier, UtteranceClassifier)
    waves = [u.samples for u in digits]
    proba = classifier.predict_proba(waves)
    assert proba.shape == (6, 3) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    losses = classifier.utterance_loss(waves, [u.transcript for u in digits])
    assert losses.shape == (6,)
    index = [model.class_index(u.transcript) for u in digits]
    np.testing.assert_allclose(losses, -np.log(proba[np.arange(6), index]), rtol=1e-4)
    one_by_one = SpokenClassifier(model, batch_size=1).predict_proba(waves)
    np.testing.assert_allclose(one_by_one, proba, atol=1e-5)
    assert classifier.predict_proba([]).shape == (0, 3)


def test_spoken_classifier_refuses_bad_input(digits):
    classifier = SpokenClassifier(small(digits))
    with pytest.raises(VoxauditError, match="not one of the classifier's 3 classes"):
        classifier.utterance_loss([digits[0].samples], ["four"])
    with pytest.raises(VoxauditError, match="1 waveforms but 2 labels"):
        classifier.utterance_loss([digits[0].samples], ["one", "two"])
    with pytest.raises(VoxauditError, match="mono"):
        classifier.predict_proba([np.zeros((2, 100), dtype=np.float32)])


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_config_round_trips_through_a_checkpoint(digits, tmp_path: Path, cell):
    model = small(digits, cell=cell, dropout=0.3)
    data = UtteranceDataset(digits, model.front_end, model.target)
    config = TrainConfig(epochs=1, batch_size=3, device="cpu")
    Trainer(config, progress=False).fit(model, data, out_dir=tmp_path)
    loaded = load_model(tmp_path)
    assert isinstance(loaded, UtteranceClassifierNet)
    assert loaded.config() == model.config()
    assert loaded.config()["cell"] == cell and loaded.config()["dropout"] == 0.3
    waves = [u.samples for u in digits]
    np.testing.assert_array_equal(
        SpokenClassifier.load(tmp_path).predict_proba(waves),
        SpokenClassifier(model).predict_proba(waves),
    )


def test_bad_constructor_arguments_are_named():
    with pytest.raises(VoxauditError, match="at least 2 classes"):
        UtteranceClassifierNet(1)
    with pytest.raises(VoxauditError, match="2 class names for 3 classes"):
        UtteranceClassifierNet(3, classes=["a", "b"])
    with pytest.raises(VoxauditError, match="unknown cell"):
        UtteranceClassifierNet(3, cell="transformer")


HAS_OPACUS = importlib.util.find_spec("opacus") is not None


@pytest.mark.skipif(not HAS_OPACUS, reason="needs Opacus")
@pytest.mark.parametrize(("cell", "layer"), [("dpgru", "DPGRU"), ("dplstm", "DPLSTM")])
def test_dp_cells_build_opacus_layers(digits, cell, layer):
    model = small(digits, cell=cell)
    assert type(model.rnn).__name__ == layer
    assert SpokenClassifier(model).predict_proba([digits[0].samples]).shape == (1, 3)


@pytest.mark.skipif(HAS_OPACUS, reason="Opacus is installed")
def test_dp_cells_say_they_need_opacus():
    with pytest.raises(VoxauditError, match="needs Opacus"):
        UtteranceClassifierNet(3, cell="dpgru")
