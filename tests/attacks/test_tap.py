"""The tap's adaptive attacker: evaded queries (shown and answered as evaded), the refusal
used as an oracle (switch account, escalate, re-send) and a degraded answer."""

from __future__ import annotations

import numpy as np
import pytest

from voxaudit.attacks.adaptive import QueryEvasion
from voxaudit.attacks.iterative import NESAttack
from voxaudit.attacks.tap import QueryRefused, QueryTap
from voxaudit.errors import VoxauditError
from voxaudit.models.access import Access

CARRIER = (0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)).astype(np.float32)
FAKE = np.full(4000, 0.1, np.float32)


class FakeModel:
    """A recognizer stand-in that records every wave it answers for."""

    sample_rate = 16000

    def __init__(self) -> None:
        self.inputs: list[np.ndarray] = []

    def transcribe(self, waveforms):
        self.inputs += list(waveforms)
        return ["x"] * len(waveforms)

    def utterance_loss(self, waveforms, targets):
        self.inputs += list(waveforms)
        return np.asarray([float(np.mean(np.abs(w))) for w in waveforms])

    def input_gradients(self, waveforms, targets):
        self.inputs += list(waveforms)
        return [np.zeros_like(w) for w in waveforms]


def halve(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return wave * np.float32(0.5)


class Observer:
    """Records what it is shown; refuses (verdict "no") the accounts in ``refused``, or all."""

    def __init__(self, refused: set[str] | None = None) -> None:
        self.refused = refused
        self.seen: list[tuple[str, np.ndarray]] = []

    def __call__(self, account: str, wave: np.ndarray) -> str:
        self.seen.append((account, wave))
        return "no" if self.refused is None or account in self.refused else "ok"


def no(verdict: str) -> bool:
    return verdict == "no"


def test_the_evasion_is_what_the_observer_sees_and_the_model_answers():
    model, observer = FakeModel(), Observer(refused=set())
    tap = QueryTap(model, observer, evasion=halve)
    tap.transcribe([CARRIER])
    tap.utterance_loss([CARRIER, CARRIER], ["a", "a"])
    assert len(observer.seen) == len(model.inputs) == 3
    for (_, seen), answered in zip(observer.seen, model.inputs, strict=True):
        np.testing.assert_array_equal(seen, 0.5 * CARRIER)
        np.testing.assert_array_equal(answered, 0.5 * CARRIER)


def test_a_query_evasion_changes_each_query_afresh():
    model, observer = FakeModel(), Observer(refused=set())
    tap = QueryTap(model, observer, evasion=QueryEvasion(pitch_shift=None, tempo_change=None))
    tap.transcribe([CARRIER, CARRIER])
    first, second = model.inputs
    assert first.size != second.size or not np.array_equal(first, second)
    assert all(np.array_equal(w, m) for (_, w), m in zip(observer.seen, model.inputs, strict=True))


def test_fakes_are_not_evaded():
    model, observer = FakeModel(), Observer(refused=set())
    tap = QueryTap(model, observer, p_fake=0.5, fake_pool=[FAKE], evasion=halve, seed=3)
    tap.transcribe([CARRIER] * 20)
    fakes = [wave for event, (_, wave) in zip(tap.events, observer.seen, strict=True) if event.fake]
    assert fakes and all(np.array_equal(wave, FAKE) for wave in fakes)
    assert len(model.inputs) == 20


def test_switch_moves_to_a_fresh_account_escalates_and_resends():
    model, observer = FakeModel(), Observer(refused={"attacker0"})
    tap = QueryTap(
        model, observer, accounts=2, refuse=no, evasion=QueryEvasion(), on_refused="switch"
    )
    tap.transcribe([CARRIER])
    # The first try from attacker0 was refused; the attack only saw the re-send's answer.
    assert [(e.account, e.verdict) for e in tap.events] == [
        ("attacker0", "no"),
        ("attacker2", "ok"),
    ]
    assert len(model.inputs) == 1
    np.testing.assert_array_equal(model.inputs[0], observer.seen[1][1])
    assert tap.refusals == 1
    assert tap.accounts == ["attacker2", "attacker1"]
    assert tap.accounts_used == ["attacker0", "attacker1", "attacker2"]
    assert tap.evasion.strength == pytest.approx(1.5)
    tap.transcribe([CARRIER, CARRIER])  # the round-robin goes on over the fresh account
    assert [e.account for e in tap.events[2:]] == ["attacker1", "attacker2"]


def test_switch_stops_when_the_fresh_accounts_are_spent():
    model, observer = FakeModel(), Observer()  # refuses everything
    tap = QueryTap(model, observer, refuse=no, on_refused="switch", max_accounts=2)
    with pytest.raises(QueryRefused) as refused:
        tap.transcribe([CARRIER])
    assert [e.account for e in tap.events] == ["attacker0", "attacker1", "attacker2"]
    assert refused.value.event is tap.events[-1]
    assert tap.refusals == 3 and tap.accounts_used == ["attacker0", "attacker1", "attacker2"]
    assert model.inputs == []


def test_a_refused_fake_switches_the_account_but_is_not_sent_again():
    model = FakeModel()

    def observe(account: str, wave: np.ndarray) -> str:
        return "no" if wave.size == FAKE.size and account == "attacker0" else "ok"

    tap = QueryTap(
        model, observe, p_fake=0.9, fake_pool=[FAKE], refuse=no, on_refused="switch", seed=0
    )
    tap.transcribe([CARRIER])
    assert tap.refusals == 1 and tap.events[0].fake and tap.events[0].account == "attacker0"
    assert all(e.account == "attacker1" for e in tap.events[1:])
    assert sum(not e.fake for e in tap.events) == 1


def test_stop_is_the_default_and_raises_at_the_first_refusal():
    tap = QueryTap(FakeModel(), Observer(), refuse=no, evasion=QueryEvasion())
    with pytest.raises(QueryRefused):
        tap.transcribe([CARRIER])
    assert tap.refusals == 1 and tap.accounts_used == ["attacker0"]
    assert tap.evasion.strength == 1.0


def test_answer_replaces_the_wave_the_model_gets():
    model, observer = FakeModel(), Observer(refused={"attacker1"})
    silence = np.zeros_like(CARRIER)

    def degrade(verdict: str, wave: np.ndarray) -> np.ndarray:
        return silence if verdict == "no" else wave

    tap = QueryTap(model, observer, accounts=2, answer=degrade)  # no refuse: it answers
    tap.transcribe([CARRIER, CARRIER])
    np.testing.assert_array_equal(model.inputs[0], CARRIER)
    assert model.inputs[1] is silence
    assert [e.verdict for e in tap.events] == ["ok", "no"]


def test_gradients_of_evaded_queries_are_refused():
    model, observer = FakeModel(), Observer(refused=set())
    tap = QueryTap(model, observer, evasion=halve)
    with pytest.raises(VoxauditError, match="input_gradients"):
        tap.input_gradients([CARRIER], ["a"])
    assert observer.seen == [] and model.inputs == []
    # Without an evasion, gradients go through as before.
    assert len(QueryTap(model, observer).input_gradients([CARRIER], ["a"])) == 1


def test_a_black_box_attack_runs_through_an_evading_switching_tap():
    model = FakeModel()
    refused = {"attacker0"}
    tap = QueryTap(model, Observer(refused), refuse=no, evasion=QueryEvasion(), on_refused="switch")
    attack = NESAttack(samples=2, steps=2, check_every=2, bound_db=-10.0)
    result = attack.run(Access(tap, attack.access_level), CARRIER, "go")
    assert result.queries == 2 * 4 + 2 == len(model.inputs)
    assert tap.refusals == 1 and len(tap.events) == result.queries + 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"on_refused": "retry"}, "on_refused"),
        ({"max_accounts": -1}, "max_accounts"),
        ({"evasion": QueryEvasion(sample_rate=8000)}, "evasion"),
    ],
)
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(VoxauditError, match=match):
        QueryTap(FakeModel(), Observer(), **kwargs)
