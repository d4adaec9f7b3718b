"""``QueryTap``: a model wrapper that shows every query to an observer, as a gateway would.

It also plays the adaptive attacker's evasions, which change what the defender sees: noise at
an SNR added to every query (paper 003, A1), fake queries from a pool of benign clips mixed in
at a share ``p_fake`` (A2), and the queries spread round-robin over several accounts. When the
observer stands for a gateway that can refuse a query (``refuse`` says which verdicts do), the
tap raises ``QueryRefused`` instead of answering, so the attack stops there as it would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from voxaudit.errors import VoxauditError
from voxaudit.guard.fingerprint import add_noise

#: Model methods whose first argument is a batch of waveforms (the queries).
QUERY_METHODS = (
    "transcribe",
    "scores",
    "log_probs",
    "utterance_loss",
    "analyze",
    "input_gradients",
)


@dataclass(frozen=True)
class TapEvent:
    """One query the observer saw."""

    account: str
    fake: bool
    verdict: Any  # what the observer returned, e.g. a guard Decision


class QueryRefused(VoxauditError):
    """The observer refused a query (e.g. the gateway answered 403): the attack cannot go on."""

    def __init__(self, event: TapEvent) -> None:
        super().__init__(f"a query from {event.account} was refused: {event.verdict}")
        self.event = event


class QueryTap:
    """``model`` with every waveform sent to it first shown to ``observe(account, waveform)``;
    a verdict for which ``refuse(verdict)`` is true raises ``QueryRefused``."""

    def __init__(
        self,
        model: Any,
        observe: Callable[[str, np.ndarray], Any],
        accounts: int = 1,
        p_fake: float = 0.0,
        fake_pool: Sequence[np.ndarray] = (),
        noise_snr_db: float | None = None,
        seed: int = 0,
        account_prefix: str = "attacker",
        refuse: Callable[[Any], bool] | None = None,
    ) -> None:
        if not 0.0 <= p_fake < 1.0:
            raise VoxauditError(f"p_fake: in [0, 1); got {p_fake}")
        if p_fake > 0 and not fake_pool:
            raise VoxauditError("fake_pool: fake queries need benign clips to send")
        if accounts < 1:
            raise VoxauditError(f"accounts: at least 1; got {accounts}")
        self._model = model
        self._observe = observe
        self.accounts = [f"{account_prefix}{i}" for i in range(accounts)]
        self.p_fake = p_fake
        self.fake_pool = list(fake_pool)
        self.noise_snr_db = noise_snr_db
        self.refuse = refuse
        self.sample_rate = model.sample_rate
        self.events: list[TapEvent] = []
        self._rng = np.random.default_rng(seed)
        self._sent = 0

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in QUERY_METHODS or not hasattr(self._model, name):
            raise AttributeError(name)
        method = getattr(self._model, name)

        def call(waveforms: Sequence[np.ndarray], *args: Any, **kwargs: Any) -> Any:
            return method([self._send(w) for w in waveforms], *args, **kwargs)

        return call

    def _send(self, waveform: np.ndarray) -> np.ndarray:
        # Fakes before each real query: a geometric number, so their share is p_fake.
        while self._rng.random() < self.p_fake:
            fake = self.fake_pool[self._rng.integers(len(self.fake_pool))]
            self._show(fake, fake=True)
        wave = np.asarray(waveform, dtype=np.float32)
        if self.noise_snr_db is not None:
            wave = add_noise(wave, self.noise_snr_db, self._rng)
        self._show(wave, fake=False)
        return wave

    def _show(self, wave: np.ndarray, fake: bool) -> None:
        account = self.accounts[self._sent % len(self.accounts)]
        self._sent += 1
        event = TapEvent(account, fake, self._observe(account, wave))
        self.events.append(event)
        if self.refuse is not None and self.refuse(event.verdict):
            raise QueryRefused(event)
