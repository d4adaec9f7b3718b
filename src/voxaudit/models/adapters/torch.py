"""A user's own torch module behind the waveform protocols, in the spirit of ART's
``PyTorchClassifier``: wrap it once, and every audit can query it.

* :class:`TorchClassifier`: a module from waveforms to class logits (an ``UtteranceClassifier``).
* :class:`TorchRecognizer`: a recognizer from a loss function and a decoder (a
  ``SpeechRecognizer``): whatever the model's architecture, ``loss(module, waveform,
  transcript)`` is -log p(transcript | audio) and ``decode(module, waveform)`` its transcript.
* :class:`TorchSpeakerEncoder`: a module from waveforms to speaker embeddings (a
  ``SpeakerEncoder``).

Each utterance runs on its own (a batch of one, shape ``[1, samples]``), unless the module is
told to take padded batches: models that normalize over time would otherwise answer differently
depending on which utterances share a batch. ``preprocess`` turns a waveform tensor ``[1,
samples]`` into the module's input (e.g. a log-mel front-end); it must be differentiable for
white-box attacks (input gradients).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from voxaudit.errors import VoxauditError
from voxaudit.models.base import Waveforms

Preprocess = Callable[[torch.Tensor], torch.Tensor]


class _TorchModel:
    """What the three adapters share: device, eval mode, one utterance at a time."""

    def __init__(
        self,
        module: nn.Module,
        sample_rate: int,
        preprocess: Preprocess | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if not isinstance(module, nn.Module):
            raise VoxauditError(f"expected a torch.nn.Module, got {type(module).__name__}")
        if int(sample_rate) <= 0:
            raise VoxauditError(f"sample_rate must be a positive number of Hz, not {sample_rate}")
        self.model = module.to(device).eval()
        self.sample_rate = int(sample_rate)
        self.preprocess = preprocess
        self.device = torch.device(device)

    def _input(self, waveform: np.ndarray, grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The waveform as ``[1, samples]`` on the device, and the module's input from it."""
        samples = np.asarray(waveform, dtype=np.float32)
        if samples.ndim != 1 or samples.size == 0:
            raise VoxauditError(f"expected a non-empty mono waveform, got shape {samples.shape}")
        x = torch.from_numpy(samples.copy()).to(self.device)[None]
        x.requires_grad_(grad)
        return x, self.preprocess(x) if self.preprocess is not None else x

    def _each(self, waveforms: Waveforms, run: Callable[[np.ndarray], np.ndarray]) -> list:
        with torch.no_grad():
            return [run(w) for w in waveforms]

    def _gradients(
        self, waveforms: Waveforms, loss: Callable[[torch.Tensor, int], torch.Tensor]
    ) -> list[np.ndarray]:
        """d(loss of utterance k) / d(its waveform), for each utterance k."""
        out = []
        for k, waveform in enumerate(waveforms):
            x, inputs = self._input(waveform, grad=True)
            (gradient,) = torch.autograd.grad(loss(inputs, k), x)
            out.append(gradient[0].detach().cpu().numpy())
        return out


class TorchClassifier(_TorchModel):
    """A torch module from waveforms (``[1, samples]``, or ``preprocess``'s output) to class
    logits ``[1, n_classes]``, as an ``UtteranceClassifier``.

    Parameters
    ----------
    module : the classifier network.
    classes : the class names, in the order of the module's logits.
    sample_rate : the rate the module expects; audits resample to it.
    preprocess : optional differentiable front-end applied to each waveform tensor.
    device : where the module runs.
    """

    def __init__(
        self,
        module: nn.Module,
        classes: Sequence[str],
        sample_rate: int,
        preprocess: Preprocess | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(module, sample_rate, preprocess, device)
        self.classes = [str(c) for c in classes]
        if len(set(self.classes)) != len(self.classes) or len(self.classes) < 2:
            raise VoxauditError("classes must name at least two distinct classes")

    def _logits(self, inputs: torch.Tensor) -> torch.Tensor:
        logits = self.model(inputs)
        if logits.shape != (1, len(self.classes)):
            raise VoxauditError(
                f"the module returned logits of shape {tuple(logits.shape)}; expected "
                f"(1, {len(self.classes)}) for {len(self.classes)} classes"
            )
        return logits

    def predict_proba(self, waveforms: Waveforms) -> np.ndarray:
        """``[batch, n_classes]`` class probabilities (softmax of the logits)."""

        def run(w: np.ndarray) -> np.ndarray:
            return F.softmax(self._logits(self._input(w)[1]), dim=-1)[0].cpu().numpy()

        rows = self._each(waveforms, run)
        return np.stack(rows).astype(np.float64) if rows else np.zeros((0, len(self.classes)))

    def utterance_loss(self, waveforms: Waveforms, labels: Sequence[str]) -> np.ndarray:
        """Cross-entropy of each utterance's label (nats)."""
        targets = self._targets(labels, len(waveforms))
        with torch.no_grad():
            return np.array(
                [
                    float(F.cross_entropy(self._logits(self._input(w)[1]), targets[k : k + 1]))
                    for k, w in enumerate(waveforms)
                ],
                dtype=np.float64,
            )

    def input_gradients(self, waveforms: Waveforms, labels: Sequence[str]) -> list[np.ndarray]:
        """d(cross-entropy of the label) / d(waveform), per utterance."""
        targets = self._targets(labels, len(waveforms))
        return self._gradients(
            waveforms, lambda inputs, k: F.cross_entropy(self._logits(inputs), targets[k : k + 1])
        )

    def _targets(self, labels: Sequence[str], n: int) -> torch.Tensor:
        if len(labels) != n:
            raise VoxauditError(f"{n} waveforms but {len(labels)} labels")
        index = {c: i for i, c in enumerate(self.classes)}
        unknown = [str(label) for label in labels if str(label) not in index]
        if unknown:
            raise VoxauditError(f"label {unknown[0]!r} is not one of the classifier's classes")
        return torch.tensor([index[str(label)] for label in labels], device=self.device)


class TorchRecognizer(_TorchModel):
    """A speech recognizer from a torch module, its loss and its decoder, as a
    ``SpeechRecognizer``: the audit needs nothing of the architecture.

    Parameters
    ----------
    module : the recognizer network.
    loss : ``loss(module, inputs, transcript) -> 0-d tensor``: -log p(transcript | audio) in
        nats for one utterance (``inputs`` is ``preprocess``'s output, or ``[1, samples]``).
        It must be differentiable in ``inputs`` for white-box audits.
    decode : ``decode(module, inputs) -> str``: the module's transcript of one utterance.
    sample_rate : the rate the module expects; audits resample to it.
    log_probs : optional ``log_probs(module, inputs) -> [steps, vocabulary]`` tensor of output
        log-probabilities (the grey-box confidence features); without it those are left out.
    preprocess : optional differentiable front-end applied to each waveform tensor.
    device : where the module runs.
    """

    def __init__(
        self,
        module: nn.Module,
        loss: Callable[[nn.Module, torch.Tensor, str], torch.Tensor],
        decode: Callable[[nn.Module, torch.Tensor], str],
        sample_rate: int,
        *,
        log_probs: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
        preprocess: Preprocess | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(module, sample_rate, preprocess, device)
        self._loss, self._decode, self._log_probs = loss, decode, log_probs

    def __new__(cls, *args: object, **kwargs: object) -> TorchRecognizer:
        # Capabilities are told by hasattr: without a log_probs function the method is absent.
        if cls is TorchRecognizer and kwargs.get("log_probs") is not None:
            cls = _TorchRecognizerWithLogProbs
        return super().__new__(cls)

    def transcribe(self, waveforms: Waveforms) -> list[str]:
        return self._each(waveforms, lambda w: str(self._decode(self.model, self._input(w)[1])))

    def utterance_loss(self, waveforms: Waveforms, transcripts: Sequence[str]) -> np.ndarray:
        """-log p(transcript | audio) per utterance, from the given loss function."""
        _same_length(waveforms, transcripts)
        with torch.no_grad():
            return np.array(
                [
                    float(self._loss(self.model, self._input(w)[1], t))
                    for w, t in zip(waveforms, transcripts, strict=True)
                ],
                dtype=np.float64,
            )

    def input_gradients(self, waveforms: Waveforms, transcripts: Sequence[str]) -> list[np.ndarray]:
        """d(loss) / d(waveform), per utterance."""
        _same_length(waveforms, transcripts)
        return self._gradients(
            waveforms, lambda inputs, k: self._loss(self.model, inputs, transcripts[k])
        )


class _TorchRecognizerWithLogProbs(TorchRecognizer):
    """A :class:`TorchRecognizer` given a ``log_probs`` function."""

    def log_probs(self, waveforms: Waveforms) -> list[np.ndarray]:
        """Per utterance, output log-probabilities ``[steps, vocabulary]``."""
        assert self._log_probs is not None
        return self._each(
            waveforms,
            lambda w: np.asarray(self._log_probs(self.model, self._input(w)[1]).cpu(), float),
        )


class TorchSpeakerEncoder(_TorchModel):
    """A torch module from waveforms (``[1, samples]``, or ``preprocess``'s output) to a
    speaker embedding ``[1, dim]``, as a ``SpeakerEncoder`` (embeddings L2-normalized here).

    Parameters
    ----------
    module : the encoder network.
    sample_rate : the rate the module expects; audits resample to it.
    preprocess : optional differentiable front-end applied to each waveform tensor.
    device : where the module runs.
    """

    def embed(self, waveforms: Waveforms) -> np.ndarray:
        """``[batch, dim]`` L2-normalized embeddings."""

        def run(w: np.ndarray) -> np.ndarray:
            embedding = self.model(self._input(w)[1])
            if embedding.dim() != 2 or embedding.shape[0] != 1:
                raise VoxauditError(
                    f"the module returned an embedding of shape {tuple(embedding.shape)}; "
                    "expected (1, dim)"
                )
            return F.normalize(embedding, dim=-1)[0].cpu().numpy()

        rows = self._each(waveforms, run)
        return np.stack(rows).astype(np.float64) if rows else np.zeros((0, 0))


def _same_length(waveforms: Waveforms, transcripts: Sequence[str]) -> None:
    if len(waveforms) != len(transcripts):
        raise VoxauditError(f"{len(waveforms)} waveforms but {len(transcripts)} transcripts")
