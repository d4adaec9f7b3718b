"""Wav2Vec2CTC: a wav2vec2 CTC model built from a config, trainable and auditable as a CTC model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from voxaudit.data.synth import synthesize_corpus_in_memory
from voxaudit.models.base import SpeechRecognizer
from voxaudit.models.ctc import CTCModel
from voxaudit.models.recognizer import Recognizer, asr_model_for
from voxaudit.models.wav2vec2 import Wav2Vec2CTC
from voxaudit.train.run import model_settings


@pytest.fixture(scope="module")
def corpus():
    return synthesize_corpus_in_memory(n_speakers=3, per_speaker=1)


def _tiny(corpus) -> Wav2Vec2CTC:
    model = asr_model_for(list(corpus), family="wav2vec2", preset="tiny", dropout=0.0)
    assert isinstance(model, Wav2Vec2CTC) and isinstance(model, CTCModel)
    return model


def test_is_built_for_the_transcripts_alphabet_with_hugging_faces_names(corpus):
    model = _tiny(corpus)
    letters = {c for u in corpus for c in u.transcript}
    assert letters <= set(model.tokenizer.alphabet)
    assert model.lm_head.out_features == model.tokenizer.ctc_vocab_size
    names = {name.split(".")[0] for name, _ in model.named_parameters()}
    assert names == {"wav2vec2", "lm_head"}
    assert any(n.startswith("wav2vec2.feature_extractor.") for n, _ in model.named_parameters())


def test_outputs_do_not_depend_on_batch_company(corpus):
    model = _tiny(corpus)
    waves = [u.load(16000) for u in corpus]
    alone = Recognizer(model, batch_size=1).log_probs(waves)
    batched = Recognizer(model, batch_size=3).log_probs(waves)
    assert [a.shape for a in alone] == [b.shape for b in batched]
    assert all(np.allclose(a, b, atol=1e-4) for a, b in zip(alone, batched, strict=True))


def test_recognizer_offers_every_method_input_gradients_included(corpus):
    recognizer = Recognizer(_tiny(corpus), beam=2)
    waves, texts = [u.load(16000) for u in corpus][:2], [u.transcript for u in corpus][:2]
    assert isinstance(recognizer, SpeechRecognizer)
    assert len(recognizer.transcribe(waves)) == 2
    losses = recognizer.utterance_loss(waves, texts)
    assert losses.shape == (2,) and np.isfinite(losses).all() and (losses > 0).all()
    gradients = recognizer.input_gradients(waves, texts)
    assert [g.shape for g in gradients] == [w.shape for w in waves]
    assert all(np.isfinite(g).all() and np.abs(g).max() > 0 for g in gradients)


def test_its_config_rebuilds_it_through_json(corpus):
    model = _tiny(corpus)
    rebuilt = Wav2Vec2CTC(**json.loads(json.dumps(model.config())))
    rebuilt.load_state_dict(model.state_dict())
    assert json.dumps(rebuilt.config()) == json.dumps(model.config())
    samples = torch.from_numpy(corpus[0].load(16000))
    features, lengths = model.front_end(samples)[None], torch.tensor([len(samples)])
    model.eval()
    rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(
            model.forward_features(features, lengths)[0],
            rebuilt.forward_features(features, lengths)[0],
        )


def test_train_help_lists_its_settings():
    rows = dict(model_settings("asr")["family = 'wav2vec2'"])
    assert {"preset", "hidden_size", "layers", "conv_dim", "alphabet"} <= set(rows)
    assert "tiny" in rows["preset"]
