"""``QueryTap``: a model wrapper that shows every query to an observer, as a gateway would.

It also plays the adaptive attacker's evasions, which change what the defender sees: noise at
an SNR added to every query (paper 003, A1), fake queries from a pool of benign clips mixed in
at a share ``p_fake`` (A2), and the queries spread round-robin over several accounts. With an
``evasion`` (e.g. ``voxaudit.attacks.adaptive.QueryEvasion``, Feng et al.'s OARS), every real
query is transformed before it is sent, and the model answers for the transformed wave: the
search goes on with noisy feedback, as it would through an API.

When the observer stands for a gateway that can refuse a query (``refuse`` says which verdicts
do), ``on_refused`` says what the attacker does: ``"stop"`` raises ``QueryRefused``, so the
attack stops there; ``"switch"`` uses the refusal as an oracle (OARS): the refused account is
replaced by a fresh one, the evasion is escalated, and the same query is sent again from the
fresh account, so the attack itself never sees the refusal, until ``max_accounts`` fresh
accounts are spent. A gateway that answers a flagged query with a degraded copy instead of a
refusal is simulated with ``answer``: it gets the verdict and the sent wave and returns the
wave the model answers for.
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
ON_REFUSED = ("stop", "switch")


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
    """``model`` with every waveform sent to it first shown to ``observe(account, waveform)``.

    Parameters
    ----------
    model:
        The victim: anything with ``sample_rate`` and some of :data:`QUERY_METHODS`.
    observe:
        Called with (account, wave) for every query sent, fakes included; returns a verdict.
    accounts:
        How many accounts the queries are spread over, round-robin (``attacker0``, ...).
    p_fake, fake_pool:
        The share of fake queries (benign clips from ``fake_pool``, never evaded) mixed in.
    noise_snr_db:
        White noise at this SNR added to every real query (after the evasion).
    seed:
        Seeds the fakes, the noise and the evasion's draws.
    account_prefix:
        The accounts' names are this and a number.
    refuse:
        ``refuse(verdict)`` true: the query was refused (e.g. a 403).
    evasion:
        ``evasion(wave, rng)`` transforms every real query before it is shown and answered.
        Gradients of a transformed wave are not the attacker's, so ``input_gradients`` raises
        a ``VoxauditError`` whenever an evasion is set (whether or not it keeps the length).
    on_refused:
        ``"stop"``: a refusal raises ``QueryRefused``. ``"switch"``: a fresh account replaces
        the refused one, the evasion is escalated (when it has ``escalated``) and a refused
        real query is sent again from the fresh account; a refused fake is not re-sent.
    max_accounts:
        With ``"switch"``: how many fresh accounts the attacker has; the refusal after the
        last one raises ``QueryRefused``.
    escalation:
        The factor passed to ``evasion.escalated`` on each refusal.
    answer:
        ``answer(verdict, sent)``: the wave the model answers for (default: the sent one).
    """

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
        evasion: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
        on_refused: str = "stop",
        max_accounts: int = 10,
        escalation: float = 1.5,
        answer: Callable[[Any, np.ndarray], np.ndarray] | None = None,
    ) -> None:
        if not 0.0 <= p_fake < 1.0:
            raise VoxauditError(f"p_fake: in [0, 1); got {p_fake}")
        if p_fake > 0 and not fake_pool:
            raise VoxauditError("fake_pool: fake queries need benign clips to send")
        if accounts < 1:
            raise VoxauditError(f"accounts: at least 1; got {accounts}")
        if on_refused not in ON_REFUSED:
            raise VoxauditError(f"on_refused: one of {', '.join(ON_REFUSED)}; got {on_refused!r}")
        if max_accounts < 0:
            raise VoxauditError(f"max_accounts: at least 0; got {max_accounts}")
        rate = getattr(evasion, "sample_rate", model.sample_rate)
        if rate != model.sample_rate:
            raise VoxauditError(
                f"evasion: built for {rate} Hz; the model takes {model.sample_rate}"
            )
        self._model = model
        self._observe = observe
        self.accounts = [f"{account_prefix}{i}" for i in range(accounts)]
        self.p_fake = p_fake
        self.fake_pool = list(fake_pool)
        self.noise_snr_db = noise_snr_db
        self.refuse = refuse
        self.evasion = evasion
        self.on_refused = on_refused
        self.max_accounts = max_accounts
        self.escalation = escalation
        self.answer = answer
        self.sample_rate = model.sample_rate
        self.events: list[TapEvent] = []
        self.refusals = 0
        #: Every account the attack has used, the fresh ones after the round-robin ones.
        self.accounts_used = list(self.accounts)
        self._prefix = account_prefix
        self._rng = np.random.default_rng(seed)
        self._sent = 0

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in QUERY_METHODS or not hasattr(self._model, name):
            raise AttributeError(name)
        method = getattr(self._model, name)

        def call(waveforms: Sequence[np.ndarray], *args: Any, **kwargs: Any) -> Any:
            if name == "input_gradients" and self.evasion is not None:
                raise VoxauditError(
                    "input_gradients: an evaded query's gradient is not the attacker's "
                    "waveform's; use a black-box attack with an evasion"
                )
            return method([self._send(w) for w in waveforms], *args, **kwargs)

        return call

    def _send(self, waveform: np.ndarray) -> np.ndarray:
        """Show the fakes and the query to the observer; the wave the model answers for."""
        # Fakes before each real query: a geometric number, so their share is p_fake.
        while self._rng.random() < self.p_fake:
            fake = self.fake_pool[self._rng.integers(len(self.fake_pool))]
            event = self._show(self._next_account(), fake, fake=True)
            if self._refused(event):
                self._switch(event)  # a fake needs no answer: it is not sent again
        original = np.asarray(waveform, dtype=np.float32)
        account = self._next_account()
        while True:
            # Drawn afresh on each try: a re-send after a switch goes through the escalated
            # evasion, not as the copy that was caught.
            wave = original if self.evasion is None else self.evasion(original, self._rng)
            if self.noise_snr_db is not None:
                wave = add_noise(wave, self.noise_snr_db, self._rng)
            event = self._show(account, wave, fake=False)
            if not self._refused(event):
                break
            account = self._switch(event)
        return wave if self.answer is None else self.answer(event.verdict, wave)

    def _next_account(self) -> str:
        account = self.accounts[self._sent % len(self.accounts)]
        self._sent += 1
        return account

    def _show(self, account: str, wave: np.ndarray, fake: bool) -> TapEvent:
        event = TapEvent(account, fake, self._observe(account, wave))
        self.events.append(event)
        return event

    def _refused(self, event: TapEvent) -> bool:
        if self.refuse is None or not self.refuse(event.verdict):
            return False
        self.refusals += 1
        return True

    def _switch(self, event: TapEvent) -> str:
        """The fresh account that replaces the refused one; ``QueryRefused`` when the
        attacker stops, or has no fresh account left."""
        fresh = len(self.accounts_used) - len(self.accounts)
        if self.on_refused == "stop" or fresh >= self.max_accounts:
            raise QueryRefused(event)
        # OARS: the attacker learns that this query was caught; it drops the account and
        # makes its later queries harder to match.
        new = f"{self._prefix}{len(self.accounts_used)}"
        self.accounts[self.accounts.index(event.account)] = new
        self.accounts_used.append(new)
        if hasattr(self.evasion, "escalated"):
            self.evasion = self.evasion.escalated(self.escalation)
        return new
