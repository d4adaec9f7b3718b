"""The ASR a gateway forwards to: any ``SpeechRecognizer`` in process, or an upstream HTTP API."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soundfile as sf

from voxaudit.errors import VoxauditError


class BackendError(VoxauditError):
    """The ASR behind the gateway failed; the gateway answers 502."""


class Backend(Protocol):
    name: str

    def transcribe(self, waveform: np.ndarray, sample_rate: int) -> str: ...


class RecognizerBackend:
    """A ``SpeechRecognizer`` (built-in model, pocketsphinx, ...) called in process."""

    def __init__(self, recognizer: Any, name: str = "recognizer") -> None:
        self.recognizer = recognizer
        self.name = name

    def transcribe(self, waveform: np.ndarray, sample_rate: int) -> str:
        if sample_rate != self.recognizer.sample_rate:
            raise BackendError(
                f"sample_rate: the backend takes {self.recognizer.sample_rate} Hz, "
                f"got {sample_rate}"
            )
        try:
            return self.recognizer.transcribe([waveform])[0]
        except Exception as exc:  # a model failure is the backend's, not the client's
            raise BackendError(f"{self.name} failed: {type(exc).__name__}: {exc}") from exc


class HTTPBackend:
    """An upstream ASR that takes a WAV body by POST and answers JSON with a ``text`` field."""

    def __init__(self, url: str, timeout_s: float = 30.0, client: Any = None) -> None:
        import httpx

        self.url = url
        self.name = url
        self._client = client if client is not None else httpx.Client(timeout=timeout_s)

    def transcribe(self, waveform: np.ndarray, sample_rate: int) -> str:
        import httpx

        buffer = io.BytesIO()
        sf.write(buffer, waveform, sample_rate, format="WAV", subtype="FLOAT")
        try:
            response = self._client.post(
                self.url, content=buffer.getvalue(), headers={"Content-Type": "audio/wav"}
            )
            response.raise_for_status()
            return str(response.json()["text"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise BackendError(f"upstream ASR {self.url} failed: {exc}") from exc


def backend_from_spec(spec: str, timeout_s: float = 30.0, device: str = "cpu") -> Backend:
    """``http(s)://...`` (upstream API), ``pocketsphinx``, or a built-in model's run folder."""
    if spec.startswith(("http://", "https://")):
        return HTTPBackend(spec, timeout_s)
    if spec != "pocketsphinx" and not Path(spec).exists():
        raise VoxauditError(f"backend: {spec} is no run folder, URL or 'pocketsphinx'")
    from voxaudit.mia.families import resolve_model

    model = resolve_model("asr", spec, device=device)
    return RecognizerBackend(model.model, name=model.source)
