"""Classifier labels: speaker, transcript, or any column the corpus keeps on its utterances."""

import pickle

import pytest

from tests.audio_fixtures import tone
from voxaudit.data.corpus import Utterance
from voxaudit.errors import VoxauditError
from voxaudit.models.classifier import UtteranceClassifierNet, classifier_for, label_function


def _utterance(uid: str, speaker: str, **columns: str) -> Utterance:
    return Utterance(uid, speaker, "open", samples=tone(0.2), sample_rate=16000, columns=columns)


@pytest.fixture
def commands() -> list[Utterance]:
    return [
        _utterance(f"{spk}-{k}", spk, **{"class": word, "take": str(k)})
        for spk in ("s01", "s02")
        for k, word in enumerate(["افتح", "اغلق", "stop"])
    ]


def test_speaker_and_transcript_labels(commands):
    assert label_function("speaker")(commands[3]) == "s02"
    assert label_function("transcript")(commands[3]) == "open"


def test_any_other_name_is_a_column(commands):
    label = label_function("class")
    assert [label(u) for u in commands[:3]] == ["افتح", "اغلق", "stop"]
    # A column label travels to worker processes (data loaders) with the model's target.
    assert pickle.loads(pickle.dumps(label))(commands[1]) == "اغلق"


def test_a_missing_column_names_the_column_the_utterance_and_the_columns(commands):
    with pytest.raises(VoxauditError) as info:
        label_function("gender")(commands[4])
    message = str(info.value)
    assert "\n" not in message
    assert "'gender'" in message and "'s02-1'" in message and "class, take" in message
    bare = Utterance("x", "s", samples=tone(0.2), sample_rate=16000)
    with pytest.raises(VoxauditError, match=r"'x' has no column 'class' \(its columns: none"):
        label_function("class")(bare)
    with pytest.raises(VoxauditError, match="empty label"):
        label_function("")


def test_a_classifier_by_column(commands):
    model = classifier_for(commands, "class", hidden=8, n_mels=16)
    assert model.classes == sorted({"افتح", "اغلق", "stop"})
    assert model.target(commands[5]) == model.classes.index("stop")
    assert model.config()["label"] == "class"
    rebuilt = UtteranceClassifierNet(**model.config())
    assert rebuilt.target(commands[0]) == model.target(commands[0])


def test_a_classifier_by_a_column_some_utterance_lacks_fails_before_training(commands):
    lacking = [*commands, _utterance("late", "s03", take="0")]
    with pytest.raises(VoxauditError, match=r"utterance 'late' has no column 'class'"):
        classifier_for(lacking, "class", hidden=8, n_mels=16)
    empty = [*commands, _utterance("blank", "s03", **{"class": ""})]
    with pytest.raises(VoxauditError, match=r"1 utterance\(s\) have no class, e\.g\. 'blank'"):
        classifier_for(empty, "class", hidden=8, n_mels=16)
