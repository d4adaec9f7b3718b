"""The OpenAI-compatible endpoint, ``POST /v1/audio/transcriptions``, and the upstream backend
that speaks it: what an existing Whisper client sends, guarded like ``/v1/transcribe``."""

from __future__ import annotations

import httpx
import numpy as np

from tests.guard.test_service import FakeBackend, attack, make_client, wav
from voxaudit.guard.backends import HTTPBackend

ENDPOINT = "/v1/audio/transcriptions"


def post(client, body: bytes, key: str = "k-alice", **fields: str) -> httpx.Response:
    """As the OpenAI SDK sends it: multipart ``file`` and ``model``, a Bearer key."""
    return client.post(
        ENDPOINT,
        files={"file": ("clip.wav", body, "audio/wav")},
        data={"model": "whisper-1", **fields},
        headers={"Authorization": f"Bearer {key}"},
    )


def test_a_multipart_upload_is_transcribed_in_each_response_format(speech):
    client = make_client()
    body = wav(speech[0])
    assert post(client, body).json() == {"text": f"heard {speech[0].size} samples"}
    text = post(client, body, response_format="text")
    assert text.status_code == 200 and text.text == f"heard {speech[0].size} samples"
    verbose = post(client, body, response_format="verbose_json").json()
    assert verbose["task"] == "transcribe"
    assert abs(verbose["duration"] - speech[0].size / 16000) < 1e-3
    refused = post(client, body, response_format="srt")
    assert refused.status_code == 400 and "response_format" in refused.json()["detail"]


def test_keys_bad_requests_and_sizes_are_4xx(speech):
    client = make_client()
    body = wav(speech[0])
    assert post(client, body, key="nope").status_code == 401
    no_file = client.post(ENDPOINT, data={"model": "whisper-1"},
                          headers={"Authorization": "Bearer k-alice"})  # fmt: skip
    assert no_file.status_code in (400, 415)
    missing = client.post(ENDPOINT, files={"audio": ("a.wav", body, "audio/wav")},
                          headers={"X-API-Key": "k-alice"})  # fmt: skip
    assert missing.status_code == 400 and "'file'" in missing.json()["detail"]
    raw = client.post(ENDPOINT, content=body, headers={"X-API-Key": "k-alice",
                                                       "Content-Type": "audio/wav"})  # fmt: skip
    assert raw.status_code == 415
    big = wav(np.zeros(400_000, dtype=np.float32))  # 800 kB > max_bytes of the test config
    assert post(client, big).status_code == 413
    garbled = client.post(ENDPOINT, content=b"--x\r\nnot a form",
                          headers={"X-API-Key": "k-alice",
                                   "Content-Type": "multipart/form-data; boundary=x"})  # fmt: skip
    assert 400 <= garbled.status_code < 500


def test_an_attack_through_the_openai_endpoint_is_banned_like_any_other(speech):
    client = make_client()
    statuses = [post(client, body).status_code for body in attack(speech[5], 8)]
    assert statuses == [200] * 4 + [403] * 4
    assert post(client, wav(speech[6])).json()["error"] == "banned"
    assert post(client, wav(speech[6]), key="k-bob").status_code == 200


def test_the_upstream_backend_speaks_the_openai_api_to_a_gateway():
    """A gateway forwarding to another gateway's OpenAI endpoint, as to a Whisper server."""
    upstream = make_client(FakeBackend())
    backend = HTTPBackend("http://upstream/v1/audio/transcriptions", client=upstream,
                          api_key="k-bob")  # fmt: skip
    assert backend.openai
    clip = np.sin(np.linspace(0, 900, 16000)).astype(np.float32) * 0.3
    assert backend.transcribe(clip, 16000) == "heard 16000 samples"
    front = make_client(backend)
    answer = post(front, wav(clip), key="k-alice")
    assert answer.status_code == 200 and answer.json() == {"text": "heard 16000 samples"}
