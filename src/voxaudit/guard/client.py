"""Queries to a guard gateway over HTTP, as an attacker's (or any client's) traffic reaches it.

``GatewayClient`` is an observer for ``voxaudit.attacks.tap.QueryTap``: each waveform the
attack sends is POSTed to ``/v1/transcribe`` as a WAV body with the API key of the account
the tap sends it from, and the gateway's answer is the verdict. With the tap's ``refuse``
set to ``GatewayReply.is_refused`` the attack stops at its first 403.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import soundfile as sf

from voxaudit.errors import VoxauditError


@dataclass(frozen=True)
class GatewayReply:
    """The gateway's answer to one query."""

    status: int
    error: str | None  # the JSON error code of a refusal ("flagged", "banned", ...)
    text: str | None  # the transcript of an accepted query

    def is_refused(self) -> bool:
        """A 403: the query was flagged, or its account is banned."""
        return self.status == 403


class GatewayClient:
    """POSTs waveforms to a gateway through ``client`` (an ``httpx.Client`` with a base URL,
    or FastAPI's ``TestClient``), with the API key ``api_keys`` gives each account."""

    def __init__(self, client: Any, api_keys: Mapping[str, str], sample_rate: int = 16000) -> None:
        self.client = client
        self.api_keys = dict(api_keys)
        self.sample_rate = sample_rate

    def __call__(self, account: str, waveform: np.ndarray) -> GatewayReply:
        key = self.api_keys.get(account)
        if key is None:
            raise VoxauditError(f"api_keys: no API key for account {account!r}")
        buffer = io.BytesIO()
        # 32-bit float WAV: the gateway sees the attack's samples exactly, small
        # perturbations included (16-bit PCM would round the quietest of them away).
        sf.write(buffer, np.asarray(waveform, np.float32), self.sample_rate, "FLOAT", format="WAV")
        response = self.client.post(
            "/v1/transcribe",
            content=buffer.getvalue(),
            headers={"X-API-Key": key, "Content-Type": "audio/wav"},
        )
        body = response.json()
        return GatewayReply(response.status_code, body.get("error"), body.get("text"))
