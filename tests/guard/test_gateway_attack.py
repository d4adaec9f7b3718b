"""An iterative attack whose every query goes through the gateway's POST /v1/transcribe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from voxaudit.attacks.iterative import CTCAttack
from voxaudit.attacks.tap import QueryRefused, QueryTap
from voxaudit.errors import VoxauditError
from voxaudit.guard.backends import RecognizerBackend
from voxaudit.guard.client import GatewayClient, GatewayReply
from voxaudit.guard.config import GuardConfig
from voxaudit.guard.service import Gateway, create_app
from voxaudit.guard.store import InMemoryStore
from voxaudit.models.access import Access
from voxaudit.models.ctc import CTCModel
from voxaudit.models.recognizer import Recognizer

ADMIN = {"X-Admin-Key": "root-secret"}


class CountingBackend(RecognizerBackend):
    """The tiny model behind the gateway, counting what reaches it."""

    def __init__(self, recognizer: Recognizer) -> None:
        super().__init__(recognizer, name="tiny")
        self.calls = 0

    def transcribe(self, waveform: np.ndarray, sample_rate: int) -> str:
        self.calls += 1
        return super().transcribe(waveform, sample_rate)


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    torch.manual_seed(0)
    return Recognizer(CTCModel(encoder="gru", d_model=32, layers=1, conv_channels=8, dropout=0.0))


def gateway(recognizer: Recognizer, **settings) -> tuple[TestClient, CountingBackend]:
    config = GuardConfig(
        api_keys={"k-eve": "attacker0", "k-bob": "bob"},
        admin_key="root-secret",
        index_threshold=2,
        memory_threshold=0.5,
        k=6,
        **settings,
    )
    backend = CountingBackend(recognizer)
    return TestClient(create_app(Gateway(config, backend, store=InMemoryStore()))), backend


@pytest.mark.parametrize("noise", [None, (25.0, 75.0)], ids=["plain", "robust"])
def test_an_attack_through_the_gateway_is_refused_until_an_admin_unbans(recognizer, speech, noise):
    client, backend = gateway(recognizer, fingerprint_noise_db=noise)
    send = GatewayClient(client, {"attacker0": "k-eve", "bob": "k-bob"})
    tap = QueryTap(recognizer, send, refuse=GatewayReply.is_refused)
    attack = CTCAttack(steps=40, check_every=10, bound_db=-20.0)
    with pytest.raises(QueryRefused) as refused:
        attack.run(Access(tap, "white"), speech[20], "go up")
    replies = [event.verdict for event in tap.events]
    # Accepted (and transcribed) until the index matched 2 earlier queries: the third.
    assert [r.status for r in replies] == [200, 200, 403]
    assert replies[-1].error == "flagged" and refused.value.event.verdict == replies[-1]
    assert all(isinstance(r.text, str) for r in replies[:-1])
    assert backend.calls == 2
    # Banned: the attack cannot start over, and even a clean clip is refused unheard.
    with pytest.raises(QueryRefused):
        attack.run(Access(tap, "white"), speech[20], "go up")
    assert send("attacker0", speech[21]).error == "banned"
    assert backend.calls == 2
    assert send("bob", speech[22]).status == 200  # other accounts are served
    flags = client.get("/admin/flags", headers=ADMIN).json()["flags"]
    assert [(f["account"], f["detector"]) for f in flags] == [("attacker0", "index")]
    assert client.delete("/admin/bans/attacker0", headers=ADMIN).status_code == 200
    assert send("attacker0", speech[21]).status == 200


def test_the_client_needs_a_key_for_each_account(recognizer, speech):
    client, _ = gateway(recognizer)
    with pytest.raises(VoxauditError, match="api_keys"):
        GatewayClient(client, {})("mallory", speech[0])
