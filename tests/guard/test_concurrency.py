"""Concurrent requests never hear each other: every backend, directly and through the app."""

from __future__ import annotations

import asyncio
import copy
import io
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest
import soundfile as sf
import torch

from voxaudit.guard.backends import (
    Backend,
    BackendError,
    HTTPBackend,
    RecognizerBackend,
    backend_from_spec,
)
from voxaudit.guard.config import GuardConfig
from voxaudit.guard.service import Gateway, create_app

N_CLIPS = 24
RATE = 16000
# A narrow search: an order of magnitude faster than the defaults, still one text per clip.
FAST_SPHINX = {"fwdflat": False, "bestpath": False, "maxhmmpf": 1000, "beam": 1e-40}


@pytest.fixture(scope="module")
def clips(speech) -> list[np.ndarray]:
    """24 distinct one-second clips of different utterances."""
    return [clip[:RATE] for clip in speech[:N_CLIPS]]


def sphinx(**config):
    pytest.importorskip("pocketsphinx")
    from voxaudit.models.adapters.pocketsphinx import PocketSphinxRecognizer

    return PocketSphinxRecognizer(**{**FAST_SPHINX, **config})


def ctc_recognizer():
    """A small CTC model whose random weights give each clip a text of its own. It is left in
    training mode with dropout, as after training: a call that ran in that mode would differ."""
    from voxaudit.models.ctc import CTCModel
    from voxaudit.models.recognizer import Recognizer

    torch.manual_seed(0)
    model = CTCModel(encoder="gru", d_model=32, layers=1, conv_channels=8, dropout=0.3)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    model.train()
    return Recognizer(model)


def pocketsphinx_backend() -> RecognizerBackend:
    return RecognizerBackend(sphinx(), name="pocketsphinx", replicas=[sphinx()])


def ctc_backend() -> RecognizerBackend:
    recognizer = ctc_recognizer()
    replica = copy.deepcopy(recognizer)
    return RecognizerBackend(recognizer, name="ctc", replicas=[replica])


def concurrently(backend: Backend, clips: list[np.ndarray]) -> list[str]:
    """Every clip through ``backend`` at once, from more threads than the backend has workers."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda clip: backend.transcribe(clip, RATE), clips))


class EchoASR(BaseHTTPRequestHandler):
    """An upstream ASR whose 'transcript' is a digest of the audio it was sent."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        samples, rate = sf.read(io.BytesIO(body), dtype="float32")
        time.sleep(0.01)  # long enough for requests to overlap
        text = f"{samples.size} samples at {rate} Hz summing to {float(samples.sum()):.6f}"
        reply = json.dumps({"text": text}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        """Quiet: the test output is not the place for an access log."""


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoASR)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1/asr"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.mark.parametrize("make", [ctc_backend, pocketsphinx_backend], ids=["ctc", "pocketsphinx"])
def test_each_concurrent_request_gets_its_own_transcript(clips, make):
    backend = make()
    sequential = [backend.transcribe(clip, RATE) for clip in clips]
    assert len(set(sequential)) == N_CLIPS  # distinct texts, or cross-talk could hide
    assert concurrently(backend, clips) == sequential


def test_one_shared_pocketsphinx_decoder_takes_turns(clips):
    recognizer = sphinx()
    sequential = recognizer.transcribe(clips)
    with ThreadPoolExecutor(max_workers=8) as pool:
        texts = list(pool.map(lambda clip: recognizer.transcribe([clip])[0], clips))
        scores = list(pool.map(lambda clip: recognizer.scores([clip])[0], clips[:8]))
    assert texts == sequential
    assert [s["text"] for s in scores] == sequential[:8]
    assert all(s["nbest"][0] == s["text"] for s in scores)


def test_the_http_backend_under_concurrency(clips, upstream):
    backend = HTTPBackend(upstream, timeout_s=30)
    sequential = [backend.transcribe(clip, RATE) for clip in clips]
    assert len(set(sequential)) == N_CLIPS
    assert concurrently(backend, clips) == sequential


def test_a_failing_call_returns_its_recognizer_to_the_pool():
    class Broken:
        sample_rate = RATE

        def transcribe(self, waveforms):
            raise RuntimeError(f"decoder state {object()}")

    backend = RecognizerBackend(Broken(), name="broken")
    for _ in range(3):  # a lost recognizer would block the second call forever
        with pytest.raises(BackendError) as caught:
            backend.transcribe(np.zeros(RATE, np.float32), RATE)
        assert str(caught.value) == "broken failed (RuntimeError)"


def test_the_pool_takes_distinct_recognizers_of_one_rate():
    recognizer = sphinx()
    with pytest.raises(ValueError, match="distinct"):
        RecognizerBackend(recognizer, replicas=[recognizer])
    with pytest.raises(ValueError, match="sample rate"):
        RecognizerBackend(recognizer, replicas=[sphinx(sample_rate=8000)])
    assert backend_from_spec("pocketsphinx", workers=3).pool_size == 3


def test_a_backend_hears_its_own_rate():
    class Recorder:
        sample_rate = 8000

        def __init__(self) -> None:
            self.sizes: list[int] = []

        def transcribe(self, waveforms):
            self.sizes.append(waveforms[0].size)
            return ["ok"]

    recorder = Recorder()
    assert RecognizerBackend(recorder).transcribe(np.zeros(RATE, np.float32), RATE) == "ok"
    assert recorder.sizes == [8000]


def test_concurrent_uploads_through_the_app(clips):
    backend = pocketsphinx_backend()
    expected = [backend.transcribe(clip, RATE) for clip in clips]
    keys = {f"k{i}": f"user{i}" for i in range(N_CLIPS)}
    gateway = Gateway(GuardConfig(api_keys=keys, index_threshold=4, memory_threshold=0.5), backend)
    app = create_app(gateway)

    def body(clip: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        sf.write(buffer, clip, RATE, format="WAV", subtype="FLOAT")  # the very samples
        return buffer.getvalue()

    async def send_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://guard") as client:
            return await asyncio.gather(
                *(
                    client.post("/v1/transcribe", content=body(clip), headers={"X-API-Key": key})
                    for key, clip in zip(keys, clips, strict=True)
                )
            )

    responses = asyncio.run(send_all())
    assert [r.status_code for r in responses] == [200] * N_CLIPS, [r.text for r in responses]
    assert [r.json()["text"] for r in responses] == expected
