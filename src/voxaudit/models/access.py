"""Threat-model access levels: a wrapper that exposes only what an attacker may query.

``Access(model, level)`` wraps any waveform model (a ``SpeechRecognizer``, ``SpeakerEncoder``
or ``UtteranceClassifier``; the family is told by its ``transcribe``, ``embed`` or
``predict_proba``). What each level exposes:

==============  ======================  ==========================  ===================
family          black box               grey box adds               white box adds
==============  ======================  ==========================  ===================
ASR             transcribe              log_probs, utterance_loss,  input_gradients
                                        analyze
classifier      predict (labels)        predict_proba,              input_gradients
                                        utterance_loss
speaker         verify (accept/reject)  embed                       input_gradients
==============  ======================  ==========================  ===================

``scores`` comes with black-box access when ``scores=True`` and with grey and white boxes:
the recognizer's own ``scores`` (ASR), the predicted label's probability (classifier) or the
cosine score of each verified pair (speaker). A method the level hides raises
``AccessDenied`` (an ``AttributeError`` too, so ``hasattr`` and protocol checks see it as
absent); a method the model itself lacks is simply absent at every level.

Every call adds the number of waveforms it sends to ``queries`` and, with a ``query_log``
(a list, or any callable taking a ``QueryRecord``), records one entry per waveform.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, MutableSequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from voxaudit.errors import VoxauditError
from voxaudit.models.base import Waveforms


class AccessLevel(Enum):
    """What an attacker sees: outputs only, outputs and losses, or gradients as well."""

    BLACK = "black"
    GREY = "grey"
    WHITE = "white"

    @property
    def rank(self) -> int:
        return list(AccessLevel).index(self)


class AccessDenied(VoxauditError, AttributeError):
    """A method that the wrapper's access level hides was asked for."""


@dataclass(frozen=True)
class QueryRecord:
    """One waveform sent to a wrapped model."""

    timestamp: float  # seconds since the epoch
    method: str
    sha1: str  # of the waveform's float32 samples
    length: int  # samples


QueryLog = MutableSequence[QueryRecord] | Callable[[QueryRecord], Any]


@dataclass(frozen=True)
class _Method:
    level: AccessLevel
    call: Callable[..., Any]
    needs: str | None = None  # the model's method it calls: absent when the model lacks it
    scored: bool = False  # black-box access with scores=True exposes it too


class Access:
    """``model`` seen through ``level``; speaker ``verify`` accepts cosine >= ``threshold``."""

    def __init__(
        self,
        model: Any,
        level: AccessLevel | str,
        scores: bool = False,
        query_log: QueryLog | None = None,
        threshold: float = 0.5,
    ) -> None:
        self.level = AccessLevel(level)
        self.scores_allowed = scores
        self.threshold = threshold
        self.queries = 0
        self._model = model
        self._family, self._methods = self._table(model)
        self.sample_rate: int = model.sample_rate
        self._log = None if query_log is None else _sink(query_log)
        if self._family == "utterance classifier":
            self.classes: list[str] = list(model.classes)

    def _table(self, model: Any) -> tuple[str, dict[str, _Method]]:
        black, grey, white = AccessLevel

        def forward(name: str, level: AccessLevel, scored: bool = False) -> _Method:
            return _Method(level, self._forward(name), needs=name, scored=scored)

        if hasattr(model, "transcribe"):
            return "speech recognizer", {
                "transcribe": forward("transcribe", black),
                "scores": forward("scores", grey, scored=True),
                "log_probs": forward("log_probs", grey),
                "utterance_loss": forward("utterance_loss", grey),
                # One pass giving transcripts, losses and log-probs: what the grey box sees.
                "analyze": forward("analyze", grey),
                "input_gradients": forward("input_gradients", white),
            }
        if hasattr(model, "embed"):
            return "speaker encoder", {
                "verify": _Method(black, self._verify),
                "scores": _Method(grey, self._pair_scores, scored=True),
                "embed": forward("embed", grey),
                "input_gradients": forward("input_gradients", white),
            }
        if hasattr(model, "predict_proba"):
            return "utterance classifier", {
                "predict": _Method(black, self._predict),
                "scores": _Method(grey, self._top_probability, scored=True),
                "predict_proba": forward("predict_proba", grey),
                "utterance_loss": forward("utterance_loss", grey),
                "input_gradients": forward("input_gradients", white),
            }
        raise VoxauditError(
            f"{type(model).__name__} is no waveform model: it has none of transcribe, embed "
            "and predict_proba"
        )

    def __getattr__(self, name: str) -> Callable[..., Any]:
        # Only reached for names that are not plain attributes: the protocol methods.
        if name.startswith("_"):
            raise AttributeError(name)
        method = self._methods.get(name)
        if method is None or (method.needs and not hasattr(self._model, method.needs)):
            raise AttributeError(f"{self._describe()} has no {name!r}")
        if not self._allows(method):
            raise AccessDenied(
                f"{name} is hidden by {self._describe()}: it needs {self._needed(method)}"
            )
        return method.call

    def __dir__(self) -> list[str]:
        visible = [name for name in self._methods if hasattr(self, name)]
        return sorted({*super().__dir__(), *visible})

    def __repr__(self) -> str:
        return f"<{self._describe()}: {self.queries} queries>"

    def _allows(self, method: _Method) -> bool:
        if method.scored and self.scores_allowed:
            return True
        return self.level.rank >= method.level.rank

    def _describe(self) -> str:
        scored = " with scores" if self.scores_allowed else ""
        return f"{self.level.value}-box{scored} access to a {self._family}"

    @staticmethod
    def _needed(method: _Method) -> str:
        if method.scored:
            return "black-box access with scores=True, or grey-box access"
        return f"{method.level.value}-box access"

    # -- counting and logging -------------------------------------------------------------

    def _count(self, method: str, waveforms: Waveforms) -> None:
        self.queries += len(waveforms)
        if self._log is None:
            return
        now = time.time()
        for w in waveforms:
            samples = np.ascontiguousarray(w, dtype=np.float32)
            digest = hashlib.sha1(samples.tobytes()).hexdigest()
            self._log(QueryRecord(now, method, digest, int(samples.size)))

    def _forward(self, name: str) -> Callable[..., Any]:
        def call(waveforms: Waveforms, *args: Any, **kwargs: Any) -> Any:
            self._count(name, waveforms)
            return getattr(self._model, name)(waveforms, *args, **kwargs)

        call.__name__ = name
        call.__doc__ = getattr(type(self._model), name, call).__doc__
        return call

    # -- outputs the wrapper derives ------------------------------------------------------

    def _predict(self, waveforms: Waveforms) -> list[str]:
        """The most probable class of each utterance."""
        self._count("predict", waveforms)
        probabilities = np.asarray(self._model.predict_proba(waveforms))
        return [self.classes[i] for i in probabilities.argmax(axis=1)]

    def _top_probability(self, waveforms: Waveforms) -> np.ndarray:
        """``[batch]`` probability of each utterance's predicted class."""
        self._count("scores", waveforms)
        return np.asarray(self._model.predict_proba(waveforms)).max(axis=1)

    def _verify(self, first: Waveforms, second: Waveforms) -> np.ndarray:
        """``[pairs]`` bool: does ``first[i]`` come from the speaker of ``second[i]``?"""
        return self._cosines("verify", first, second) >= self.threshold

    def _pair_scores(self, first: Waveforms, second: Waveforms) -> np.ndarray:
        """``[pairs]`` cosine similarity of the embeddings of ``first[i]`` and ``second[i]``."""
        return self._cosines("scores", first, second)

    def _cosines(self, method: str, first: Waveforms, second: Waveforms) -> np.ndarray:
        if len(first) != len(second):
            raise VoxauditError(f"{method} pairs waveforms: got {len(first)} and {len(second)}")
        both = [*first, *second]
        self._count(method, both)
        embeddings = np.asarray(self._model.embed(both), dtype=np.float64)
        a, b = embeddings[: len(first)], embeddings[len(first) :]
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        return (a * b).sum(axis=1) / np.maximum(norms, 1e-12)


def _sink(query_log: QueryLog) -> Callable[[QueryRecord], Any]:
    if callable(query_log):
        return query_log
    if hasattr(query_log, "append"):
        return query_log.append
    raise VoxauditError("query_log must be a list-like with append() or a callable")
