"""Hugging Face ``transformers`` speech recognizers loaded from a local directory only.

``HFCTCRecognizer`` takes wav2vec2-style CTC models (wav2vec2, HuBERT, WavLM, ... with a
``Wav2Vec2FeatureExtractor`` on raw waveforms) and offers every ``SpeechRecognizer`` method,
input gradients included. ``HFWhisperRecognizer`` takes Whisper and offers transcripts,
token log-probabilities and losses, but no input gradients: its feature extractor runs in
numpy, so the waveform is not on the autograd graph.

Both run each utterance on its own: a batch padded to its longest member changes the outputs
of models that normalize over time, and an audit's answers must not depend on batch company.
Losses are ``-log p(transcript | audio)`` in nats: the CTC loss summed over the utterance, or
the summed token cross-entropy of the transcript and end-of-text token.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from voxaudit.data.audio import resample
from voxaudit.data.text import normalize_transcript
from voxaudit.errors import VoxauditError
from voxaudit.models.adapters import require
from voxaudit.models.base import Waveforms


def _load(path: str | Path, model_class: str) -> tuple[Any, Any]:
    """``(processor, model)`` from a local directory, never from the hub."""
    path = Path(path)
    if not path.is_dir():
        raise VoxauditError(f"{path} is not a local model directory (voxaudit never downloads)")
    # local_files_only stops these loads; the variable stops anything else in the library.
    os.environ["HF_HUB_OFFLINE"] = "1"
    transformers = require("transformers")
    try:
        processor = transformers.AutoProcessor.from_pretrained(path, local_files_only=True)
        model = getattr(transformers, model_class).from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise VoxauditError(f"{path}: cannot load it as {model_class} ({reason})") from exc
    return processor, model.eval()


def _check_transcripts(waveforms: Waveforms, transcripts: Sequence[str]) -> None:
    if len(waveforms) != len(transcripts):
        raise VoxauditError(f"{len(waveforms)} waveforms but {len(transcripts)} transcripts")


class HFCTCRecognizer:
    """A wav2vec2-style CTC model from ``path``; waveforms arrive at ``sample_rate``."""

    def __init__(
        self, path: str | Path, sample_rate: int = 16000, device: str | torch.device = "cpu"
    ) -> None:
        self.processor, model = _load(path, "AutoModelForCTC")
        extractor = self.processor.feature_extractor
        if model.main_input_name != "input_values" or not hasattr(extractor, "do_normalize"):
            raise VoxauditError(
                f"{path}: {type(model).__name__} does not take raw waveforms; "
                "only wav2vec2-style CTC models are supported"
            )
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.sample_rate = sample_rate
        self.tokenizer = self.processor.tokenizer
        self._rate = int(extractor.sampling_rate)
        self._normalize = bool(extractor.do_normalize)
        letters = [t for t in self.tokenizer.get_vocab() if len(t) == 1 and t.isalpha()]
        # Some checkpoints spell in capitals (e.g. wav2vec2-base-960h); transcripts are lower.
        self._upper = bool(letters) and all(t.isupper() for t in letters)

    def transcribe(self, waveforms: Waveforms) -> list[str]:
        """Greedy CTC transcripts, normalized."""
        with torch.no_grad():
            ids = [self._logits(self._tensor(w)).argmax(-1) for w in waveforms]
        return [normalize_transcript(self.tokenizer.decode(i.tolist())) for i in ids]

    def log_probs(self, waveforms: Waveforms) -> list[np.ndarray]:
        """Frame log-probabilities ``[frames, vocabulary]`` per utterance."""
        with torch.no_grad():
            return [
                F.log_softmax(self._logits(self._tensor(w)), -1).cpu().numpy() for w in waveforms
            ]

    def utterance_loss(self, waveforms: Waveforms, transcripts: Sequence[str]) -> np.ndarray:
        """CTC loss (nats) of each transcript; inf where no alignment fits."""
        _check_transcripts(waveforms, transcripts)
        pairs = zip(waveforms, transcripts, strict=True)
        with torch.no_grad():
            return np.array([float(self._loss(self._tensor(w), t)) for w, t in pairs])

    def input_gradients(self, waveforms: Waveforms, transcripts: Sequence[str]) -> list[np.ndarray]:
        """d(CTC loss) / d(waveform) per utterance; the input must be at the model's rate."""
        _check_transcripts(waveforms, transcripts)
        if self.sample_rate != self._rate:
            raise VoxauditError(
                f"input gradients need waveforms at the model's {self._rate} Hz, "
                f"not {self.sample_rate} Hz"
            )
        gradients = []
        for w, transcript in zip(waveforms, transcripts, strict=True):
            samples = self._tensor(w).requires_grad_(True)
            with torch.enable_grad():
                # autograd.grad leaves the parameters' .grad alone, unlike backward().
                (gradient,) = torch.autograd.grad(self._loss(samples, transcript), samples)
            gradients.append(gradient.cpu().numpy())
        return gradients

    def _tensor(self, waveform: np.ndarray) -> torch.Tensor:
        samples = resample(np.asarray(waveform, dtype=np.float32), self.sample_rate, self._rate)
        return torch.from_numpy(samples).to(self.device)

    def _logits(self, samples: torch.Tensor) -> torch.Tensor:
        """``[frames, vocabulary]`` logits, normalizing in torch as the feature extractor does."""
        x = samples[None]
        if self._normalize:
            x = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)
        return self.model(x).logits[0]

    def _loss(self, samples: torch.Tensor, transcript: str) -> torch.Tensor:
        text = transcript.upper() if self._upper else transcript
        targets = torch.tensor(self.tokenizer(text).input_ids, device=self.device)
        log_probs = F.log_softmax(self._logits(samples).float(), -1)
        return F.ctc_loss(
            log_probs[:, None],
            targets[None],
            torch.tensor([len(log_probs)]),
            torch.tensor([len(targets)]),
            blank=self.model.config.pad_token_id,
            reduction="sum",
        )


class HFWhisperRecognizer:
    """A Whisper checkpoint from ``path``; clips longer than its window (30 s) are cut there."""

    def __init__(
        self,
        path: str | Path,
        sample_rate: int = 16000,
        language: str = "en",
        device: str | torch.device = "cpu",
        max_new_tokens: int = 128,
    ) -> None:
        self.processor, model = _load(path, "AutoModelForSpeechSeq2Seq")
        if model.config.model_type != "whisper":
            raise VoxauditError(f"{path}: holds a {type(model).__name__}, not a Whisper model")
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.sample_rate = sample_rate
        self.tokenizer = self.processor.tokenizer
        self._rate = int(self.processor.feature_extractor.sampling_rate)
        # Whisper writes numbers as digits, which English references spell out: normalizing in
        # the transcript's language spells them too, where it has a digit table.
        self._language = language
        # English-only checkpoints take no language or task tokens; multilingual ones must.
        multilingual = getattr(model.generation_config, "is_multilingual", False)
        self._generate_args = {"language": language, "task": "transcribe"} if multilingual else {}
        self.tokenizer.set_prefix_tokens(predict_timestamps=False, **self._generate_args)
        self._prefix = list(self.tokenizer.prefix_tokens)
        room = model.config.max_target_positions - len(self._prefix)
        self._max_new_tokens = min(max_new_tokens, room)
        self._special = set(self.tokenizer.all_special_ids)

    def transcribe(self, waveforms: Waveforms) -> list[str]:
        """Greedy transcripts, normalized."""
        return [
            normalize_transcript(self.tokenizer.decode(t), self._language)
            for t in self._generate(waveforms)
        ]

    def log_probs(self, waveforms: Waveforms) -> list[np.ndarray]:
        """Log-probabilities ``[tokens + 1, vocabulary]`` along each greedy transcript.

        Row k is the distribution the decoder gives the k-th token of its own transcript,
        the last row that of the end-of-text token.
        """
        tokens = self._generate(waveforms)
        with torch.no_grad():
            return [
                self._token_log_probs(w, t).cpu().numpy()
                for w, t in zip(waveforms, tokens, strict=True)
            ]

    def utterance_loss(self, waveforms: Waveforms, transcripts: Sequence[str]) -> np.ndarray:
        """Summed cross-entropy (nats) of each transcript's tokens and end-of-text."""
        _check_transcripts(waveforms, transcripts)
        losses = []
        with torch.no_grad():
            for w, transcript in zip(waveforms, transcripts, strict=True):
                tokens = self._encode(transcript)
                log_probs = self._token_log_probs(w, tokens)
                targets = torch.tensor([*tokens, self.tokenizer.eos_token_id], device=self.device)
                losses.append(-float(log_probs.gather(1, targets[:, None]).sum()))
        return np.array(losses)

    def _encode(self, transcript: str) -> list[int]:
        # Whisper's transcripts start with a space, so its text tokens do too.
        return self.tokenizer(" " + transcript, add_special_tokens=False).input_ids

    def _features(self, waveform: np.ndarray) -> torch.Tensor:
        samples = resample(np.asarray(waveform, dtype=np.float32), self.sample_rate, self._rate)
        features = self.processor.feature_extractor(
            samples, sampling_rate=self._rate, return_tensors="pt"
        ).input_features
        return features.to(self.device, self.model.dtype)

    def _generate(self, waveforms: Waveforms) -> list[list[int]]:
        """Greedy text tokens of each utterance, special tokens left out."""
        sequences = []
        with torch.no_grad():
            for w in waveforms:
                ids = self.model.generate(
                    self._features(w), max_new_tokens=self._max_new_tokens, **self._generate_args
                )[0]
                sequences.append([int(t) for t in ids if int(t) not in self._special])
        return sequences

    def _token_log_probs(self, waveform: np.ndarray, tokens: list[int]) -> torch.Tensor:
        """Teacher-forced log-probabilities ``[len(tokens) + 1, vocabulary]`` after the prefix."""
        decoder_input = [*self._prefix, *tokens]
        if len(decoder_input) > self.model.config.max_target_positions:
            raise VoxauditError(
                f"a transcript of {len(tokens)} tokens is longer than this Whisper model reads"
            )
        logits = self.model(
            input_features=self._features(waveform),
            decoder_input_ids=torch.tensor([decoder_input], device=self.device),
        ).logits[0]
        return F.log_softmax(logits[len(self._prefix) - 1 :].float(), -1)
