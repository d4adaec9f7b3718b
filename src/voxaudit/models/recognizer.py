"""The built-in ASR models behind the ``SpeechRecognizer`` protocol, and error rates.

``Recognizer`` takes waveforms, pads them into batches of similar length, computes features with
the model's own ``LogMel`` and returns numpy arrays in the input order. Input gradients are
taken through that front-end, so they are with respect to the waveform samples themselves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import jiwer
import numpy as np
import torch
from torch import nn

from voxaudit.data.corpus import Utterance
from voxaudit.data.text import normalize_transcript
from voxaudit.errors import VoxauditError
from voxaudit.models.base import Waveforms
from voxaudit.models.ctc import CTCModel
from voxaudit.models.encoders import lengths_to_mask
from voxaudit.models.lm import LMFusion
from voxaudit.models.seq2seq import AttentionModel
from voxaudit.models.tokens import CharTokenizer
from voxaudit.models.wav2vec2 import Wav2Vec2CTC

ASRModel = CTCModel | AttentionModel

Result = TypeVar("Result")


@dataclass(frozen=True)
class Analysis:
    """What one forward pass tells about an utterance and its reference (``Recognizer.analyze``)."""

    transcript: str  # as ``transcribe`` gives it
    loss: float  # -log p(reference), as ``utterance_loss`` gives it
    log_probs: np.ndarray | None = None  # [steps, V], unless keep_log_probs=False
    kl: float | None = None  # mean over steps of KL(compare_to || output), given compare_to


class Recognizer:
    """A CTC or attention model as a ``SpeechRecognizer`` over mono float32 waveforms.

    The model is put in eval mode for each call and returned to its previous mode afterwards.
    ``beam`` > 1 selects CTC prefix beam search (CTC models only); ``lm`` fuses a character
    language model into that search.
    """

    def __init__(
        self,
        model: ASRModel,
        tokenizer: CharTokenizer | None = None,
        device: torch.device | str | None = None,
        batch_size: int = 16,
        beam: int = 1,
        lm: LMFusion | None = None,
    ) -> None:
        if tokenizer is not None and tokenizer.alphabet != model.tokenizer.alphabet:
            raise ValueError(
                f"the tokenizer's alphabet {tokenizer.alphabet!r} is not the model's "
                f"{model.tokenizer.alphabet!r}"
            )
        if beam < 1 or (beam > 1 and not isinstance(model, CTCModel)):
            raise ValueError(f"beam must be 1, or more for CTC models; got {beam}")
        if lm is not None and not isinstance(model, CTCModel):
            raise ValueError("a language model fuses into CTC beam search: CTC models only")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1; got {batch_size}")
        self.model = model if device is None else model.to(device)
        self.device = next(self.model.parameters()).device
        self.tokenizer = model.tokenizer
        self.sample_rate = model.sample_rate
        self.batch_size = batch_size
        self.beam = beam
        self.lm = lm

    def transcribe(self, waveforms: Waveforms) -> list[str]:
        """One normalized transcript per waveform."""

        def decode(wave: torch.Tensor, n: torch.Tensor, _: list[int]) -> list[str]:
            return self.model.decode(*self._features(wave, n), beam=self.beam, lm=self.lm)

        with self._evaluating(), torch.no_grad():
            return self._map(waveforms, decode)

    def log_probs(self, waveforms: Waveforms) -> list[np.ndarray]:
        """CTC: frame log-probabilities ``[T', V]``; attention: those of its greedy tokens."""

        def score(wave: torch.Tensor, n: torch.Tensor, _: list[int]) -> list[np.ndarray]:
            return [
                lp.cpu().numpy() for lp in self.model.output_log_probs(*self._features(wave, n))
            ]

        with self._evaluating(), torch.no_grad():
            return self._map(waveforms, score)

    def utterance_loss(
        self, waveforms: Waveforms, transcripts: Sequence[str], normalize: bool = False
    ) -> np.ndarray:
        """Per-utterance -log p(transcript): CTC loss or summed token cross-entropy.

        ``normalize`` divides by the number of characters (CTC) or tokens with eos (attention),
        as the training losses do.
        """

        def losses(wave: torch.Tensor, n: torch.Tensor, idx: list[int]) -> list[float]:
            return self._losses(wave, n, [transcripts[i] for i in idx], normalize).tolist()

        with self._evaluating(), torch.no_grad():
            return np.asarray(self._map(waveforms, losses, len(transcripts)), dtype=np.float64)

    def scores(self, waveforms: Waveforms) -> list[dict[str, str | float]]:
        """Per utterance its transcript (``text``) and log-probability (``log_score``).

        What a scoring API reports: -``utterance_loss`` of the model's own transcript (CTC:
        summed over alignments; attention: its tokens and eos).
        """
        texts = self.transcribe(waveforms)
        log_scores = -self.utterance_loss(waveforms, texts)
        return [
            {"text": text, "log_score": float(score)}
            for text, score in zip(texts, log_scores, strict=True)
        ]

    def analyze(
        self,
        waveforms: Waveforms,
        transcripts: Sequence[str],
        compare_to: Sequence[np.ndarray] | None = None,
        keep_log_probs: bool = True,
    ) -> list[Analysis]:
        """Transcript, loss of ``transcripts`` and step log-probabilities from one forward pass.

        Steps are CTC frames or, for attention models, the decoder steps teacher-forced on
        ``transcripts`` (unlike ``log_probs``, which follows the model's own hypothesis), so two
        inputs of the same length and transcript have distributions that line up step by step.
        ``compare_to`` (per waveform, log-probabilities ``[steps, V]``, e.g. of an earlier
        analysis of the clean input) adds ``kl``, computed on the model's device; then
        ``keep_log_probs=False`` saves bringing every distribution back.
        """
        if compare_to is not None and len(compare_to) != len(waveforms):
            raise ValueError(f"{len(waveforms)} waveforms but {len(compare_to)} to compare to")

        def run(wave: torch.Tensor, n: torch.Tensor, idx: list[int]) -> list[Analysis]:
            targets = self._targets([transcripts[i] for i in idx])
            losses, log_probs, steps, texts = self.model.analyze_features(
                *self._features(wave, n), *targets, beam=self.beam
            )
            kls: list[float | None] = [None] * len(idx)
            if compare_to is not None:
                kls = _mean_kl(log_probs, steps, [compare_to[i] for i in idx], idx).tolist()
            kept: list[np.ndarray | None] = [None] * len(idx)
            if keep_log_probs:
                kept = [
                    lp[:k].cpu().numpy() for lp, k in zip(log_probs, steps.tolist(), strict=True)
                ]
            return [
                Analysis(*fields) for fields in zip(texts, losses.tolist(), kept, kls, strict=True)
            ]

        with self._evaluating(), torch.no_grad():
            return self._map(waveforms, run, len(transcripts))

    def input_gradients(
        self, waveforms: Waveforms, transcripts: Sequence[str], normalize: bool = False
    ) -> list[np.ndarray]:
        """d(utterance loss) / d(waveform) per utterance, as long as its waveform."""

        def gradients(wave: torch.Tensor, n: torch.Tensor, idx: list[int]) -> list[np.ndarray]:
            wave = wave.requires_grad_(True)
            loss = self._losses(wave, n, [transcripts[i] for i in idx], normalize).sum()
            # autograd.grad, not backward(): the model's parameter gradients stay untouched.
            (grad,) = torch.autograd.grad(loss, wave)
            return [g[:k].cpu().numpy() for g, k in zip(grad, n.tolist(), strict=True)]

        # cuDNN cannot take RNN gradients in eval mode; the native kernels can.
        with self._evaluating(), torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
            return self._map(waveforms, gradients, len(transcripts))

    @contextlib.contextmanager
    def _evaluating(self) -> Iterator[None]:
        """Eval mode (no dropout) for the duration, then the model's previous mode."""
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)

    def _map(
        self,
        waveforms: Waveforms,
        fn: Callable[[torch.Tensor, torch.Tensor, list[int]], list[Result]],
        expected: int | None = None,
    ) -> list[Result]:
        """Apply ``fn(padded [B, N], num_samples [B], indices)`` to length-sorted batches."""
        if expected is not None and expected != len(waveforms):
            raise ValueError(f"{len(waveforms)} waveforms but {expected} transcripts")
        waves = [_as_waveform(w, i) for i, w in enumerate(waveforms)]
        # Sorting by length keeps padding, and so wasted computation, small.
        order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
        results: dict[int, Result] = {}
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            chunk = [torch.from_numpy(waves[i]) for i in idx]
            padded = nn.utils.rnn.pad_sequence(chunk, batch_first=True).to(self.device)
            num_samples = torch.tensor([len(c) for c in chunk], device=self.device)
            results.update(zip(idx, fn(padded, num_samples, idx), strict=True))
        return [results[i] for i in range(len(waves))]

    def _features(
        self, padded: torch.Tensor, num_samples: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel features of a zero-padded batch and each utterance's frame count."""
        return self.model.front_end(padded), self.model.front_end.frame_lengths(num_samples)

    def _targets(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded character ids ``[B, S]`` of transcripts and their lengths.

        Characters the model has no token for are left out: an audit's references may hold
        some its training transcripts never did (``unseen_characters`` counts them).
        """
        encoded = [
            torch.tensor(self.tokenizer.encode(t, unknown="skip"), dtype=torch.long) for t in texts
        ]
        targets = nn.utils.rnn.pad_sequence(encoded, batch_first=True).to(self.device)
        return targets, torch.tensor([len(e) for e in encoded], device=self.device)

    def _losses(
        self, padded: torch.Tensor, num_samples: torch.Tensor, texts: list[str], normalize: bool
    ) -> torch.Tensor:
        """Per-utterance losses ``[B]`` of a padded batch against its transcripts."""
        features, lengths = self._features(padded, num_samples)
        return self.model.utterance_loss(features, lengths, *self._targets(texts), normalize)


def _mean_kl(
    log_probs: torch.Tensor, steps: torch.Tensor, reference: list[np.ndarray], indices: list[int]
) -> torch.Tensor:
    """Per utterance, the mean over its steps of KL(reference || log_probs); ``[B]``."""
    # Padded on the host, so that the batch goes to the device in one copy.
    padded = np.zeros(log_probs.shape, dtype=np.float32)
    for row, (ref, k, index) in enumerate(zip(reference, steps.tolist(), indices, strict=True)):
        if np.shape(ref) != (k, log_probs.shape[2]):
            raise ValueError(
                f"compare_to {index}: shape {np.shape(ref)}, but the output has "
                f"{(k, log_probs.shape[2])}"
            )
        padded[row, :k] = ref
    target = torch.from_numpy(padded).to(log_probs.device)
    kl = nn.functional.kl_div(log_probs, target, reduction="none", log_target=True).sum(dim=2)
    mask = lengths_to_mask(steps, kl.shape[1])
    return (kl * mask).sum(dim=1) / steps.clamp_min(1)


def _as_waveform(waveform: np.ndarray, index: int) -> np.ndarray:
    """A non-empty 1-D float32 array, or a ValueError naming the offending input."""
    wave = np.array(waveform, dtype=np.float32)  # a copy: torch wants writable memory
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(
            f"waveform {index}: expected a non-empty 1-D array, got shape {wave.shape}"
        )
    return wave


def cer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus character error rate (jiwer): edits / reference characters, both normalized."""
    return float(jiwer.cer(*_normalized(references, hypotheses)))


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus word error rate (jiwer): word edits / reference words, both normalized."""
    return float(jiwer.wer(*_normalized(references, hypotheses)))


def _normalized(
    references: Sequence[str], hypotheses: Sequence[str]
) -> tuple[list[str], list[str]]:
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    return [normalize_transcript(r) for r in references], [
        normalize_transcript(h) for h in hypotheses
    ]


ASR_FAMILIES = {"ctc": CTCModel, "attention": AttentionModel, "wav2vec2": Wav2Vec2CTC}


def asr_model_for(
    utterances: Sequence[Utterance], family: str = "ctc", preset: str = "small", **overrides
) -> CTCModel | AttentionModel:
    """An ASR model of ``family`` and size ``preset`` to train on ``utterances`` (transcribed).

    Its alphabet, unless ``overrides`` gives one, is the characters of the utterances'
    transcripts (``CharTokenizer.from_texts``), so a corpus in any script can be learned.

    Parameters
    ----------
    utterances:
        The training pool; every utterance needs a transcript.
    family:
        A key of ``ASR_FAMILIES``.
    preset:
        A size of the family's ``PRESETS``.
    overrides:
        Constructor arguments that replace the preset's (e.g. ``alphabet``, ``dropout``).
    """
    if family not in ASR_FAMILIES:
        raise VoxauditError(f"unknown ASR family {family!r}; use one of: {', '.join(ASR_FAMILIES)}")
    untranscribed = [u.id for u in utterances if not u.transcript]
    if untranscribed:
        raise VoxauditError(
            f"{len(untranscribed)} training utterance(s) have no transcript, "
            f"e.g. {untranscribed[0]!r}: an ASR model needs them"
        )
    overrides.setdefault(
        "alphabet", CharTokenizer.from_texts(u.transcript for u in utterances).alphabet
    )
    return ASR_FAMILIES[family].from_preset(preset, **overrides)


def transcript_targets(model: CTCModel | AttentionModel) -> Callable[[Utterance], list[int]]:
    """The target function of an ASR model: the character ids of the transcript.

    A character outside the model's alphabet is an error here: training targets must be exact.
    """
    return lambda utterance: model.tokenizer.encode(utterance.transcript)


def unseen_characters(model: object, texts: Iterable[str]) -> dict[str, int] | None:
    """How often each character of the normalized ``texts`` is outside the model's alphabet.

    ``Recognizer`` leaves such characters out of the references it scores, so an audit on
    recordings in another script or with rarer letters than the training transcripts runs,
    and this says how much of the references went unscored. Most frequent first.

    Parameters
    ----------
    model:
        A ``CharTokenizer``, or anything whose ``tokenizer`` is one (``Recognizer``,
        ``CTCModel``, ``AttentionModel``).
    texts:
        The references, e.g. an audit's transcripts.

    Returns
    -------
    The counts by character; None when ``model`` has no character tokenizer (an external
    recognizer), whose inventory is unknown.
    """
    tokenizer = model if isinstance(model, CharTokenizer) else getattr(model, "tokenizer", None)
    if not isinstance(tokenizer, CharTokenizer):
        return None
    return dict(tokenizer.unseen(texts).most_common())
