"""The ASR a gateway forwards to: any ``SpeechRecognizer`` in process, or an upstream HTTP API.

The gateway calls its backend from several threads at once (one per request in flight), so
every backend here is safe under concurrency: requests never share a decoder mid-utterance.
"""

from __future__ import annotations

import io
import logging
import os
import queue
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soundfile as sf

from voxaudit.data.audio import resample
from voxaudit.errors import VoxauditError

log = logging.getLogger(__name__)


class BackendError(VoxauditError):
    """The ASR behind the gateway failed; the gateway answers 502."""


class Backend(Protocol):
    name: str

    def transcribe(self, waveform: np.ndarray, sample_rate: int) -> str: ...


class RecognizerBackend:
    """A ``SpeechRecognizer`` (built-in model, pocketsphinx, ...) called in process.

    A recognizer is not assumed to be thread-safe (a pocketsphinx decoder holds the utterance
    it is decoding; ``Recognizer`` flips its model between train and eval mode around a call),
    so each one decodes one request at a time: a call borrows an idle recognizer from the pool
    of ``recognizer`` and ``replicas``, waiting while all are busy. Replicas are independent
    copies (separately loaded) that let that many requests decode at once.
    """

    def __init__(
        self, recognizer: Any, name: str = "recognizer", replicas: Sequence[Any] = ()
    ) -> None:
        self.name = name
        self.sample_rate = int(recognizer.sample_rate)
        self.pool_size = 1 + len(replicas)
        members = [recognizer, *replicas]
        # One object in the pool twice would let two requests share it again.
        if len({id(member) for member in members}) != len(members):
            raise ValueError("replicas must be distinct recognizer objects")
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for member in members:
            if int(member.sample_rate) != self.sample_rate:
                raise ValueError(
                    f"replicas must share one sample rate; got {member.sample_rate} and "
                    f"{self.sample_rate}"
                )
            self._idle.put(member)

    def transcribe(self, waveform: np.ndarray, sample_rate: int) -> str:
        # The gateway works at its configured rate; the model hears its own.
        wave = resample(waveform, sample_rate, self.sample_rate)
        with self._borrow() as recognizer:
            try:
                return recognizer.transcribe([wave])[0]
            except Exception as exc:  # a model failure is the backend's, not the client's
                # The client sees the failure's type only; its message may hold internals.
                log.exception("%s failed", self.name)
                raise BackendError(f"{self.name} failed ({type(exc).__name__})") from exc

    @contextmanager
    def _borrow(self) -> Iterator[Any]:
        """An idle recognizer for the duration; it goes back to the pool even on failure."""
        recognizer = self._idle.get()
        try:
            yield recognizer
        finally:
            self._idle.put(recognizer)


class HTTPBackend:
    """An upstream ASR over HTTP. Two APIs: a WAV body by POST answered with JSON ``{"text"}``
    (a voxaudit gateway's ``/v1/transcribe``), or, for a URL ending in
    ``/audio/transcriptions``, OpenAI's transcription API (multipart ``file`` and ``model``,
    the key as ``Authorization: Bearer``), which Whisper servers speak.

    Requests share one ``httpx.Client``, which is thread-safe: each request has its own
    connection from the client's pool, so replies cannot cross.
    """

    def __init__(
        self,
        url: str,
        timeout_s: float = 30.0,
        client: Any = None,
        model: str = "whisper-1",
        api_key: str | None = None,
    ) -> None:
        import httpx

        self.url = url
        self.name = url
        self.openai = url.rstrip("/").endswith("/audio/transcriptions")
        self.model = model
        self.api_key = api_key
        self._client = client if client is not None else httpx.Client(timeout=timeout_s)

    def transcribe(self, waveform: np.ndarray, sample_rate: int) -> str:
        import httpx

        buffer = io.BytesIO()
        sf.write(buffer, waveform, sample_rate, format="WAV", subtype="FLOAT")
        try:
            if self.openai:
                headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
                response = self._client.post(
                    self.url,
                    files={"file": ("audio.wav", buffer.getvalue(), "audio/wav")},
                    data={"model": self.model, "response_format": "json"},
                    headers=headers,
                )
            else:
                response = self._client.post(
                    self.url, content=buffer.getvalue(), headers={"Content-Type": "audio/wav"}
                )
            response.raise_for_status()
            return str(response.json()["text"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise BackendError(f"upstream ASR {self.url} failed ({type(exc).__name__})") from exc


def backend_from_spec(
    spec: str, timeout_s: float = 30.0, device: str = "cpu", workers: int = 2
) -> Backend:
    """``http(s)://...`` (upstream API; OpenAI's when the URL ends in ``/audio/transcriptions``,
    its key from ``VOXAUDIT_UPSTREAM_API_KEY``), ``pocketsphinx``, or a built-in model's run
    folder.

    An in-process model is loaded ``workers`` times, so that many requests decode at once.
    """
    if spec.startswith(("http://", "https://")):
        return HTTPBackend(spec, timeout_s, api_key=os.environ.get("VOXAUDIT_UPSTREAM_API_KEY"))
    if spec != "pocketsphinx" and not Path(spec).exists():
        raise VoxauditError(f"backend: {spec} is no run folder, URL or 'pocketsphinx'")
    if workers < 1:
        raise VoxauditError(f"backend workers: at least 1; got {workers}")
    from voxaudit.mia.families import resolve_model

    loaded = [resolve_model("asr", spec, device=device) for _ in range(workers)]
    return RecognizerBackend(
        loaded[0].model, name=loaded[0].source, replicas=[m.model for m in loaded[1:]]
    )
