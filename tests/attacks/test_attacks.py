"""Attacks on a tiny untrained CTC model: they lower the target's loss, stay within their
bound, and every query they send is logged and seen by the tap."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voxaudit.attacks.iterative import (
    CTCAttack,
    GeneticAttack,
    MaskedCTCAttack,
    NESAttack,
    snr_db,
)
from voxaudit.attacks.masking import MaskingModel
from voxaudit.attacks.tap import QueryRefused, QueryTap
from voxaudit.errors import VoxauditError
from voxaudit.models.access import Access, AccessDenied
from voxaudit.models.ctc import CTCModel
from voxaudit.models.recognizer import Recognizer

TARGET = "go up"


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    torch.manual_seed(0)
    model = CTCModel(encoder="gru", d_model=32, layers=1, conv_channels=8, dropout=0.0)
    return Recognizer(model)


@pytest.fixture(scope="module")
def carrier() -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(t.size)).astype(
        np.float32
    )


ATTACKS = {
    "ctc": lambda: CTCAttack(steps=12, check_every=4, bound_db=-10.0),
    "masked ctc": lambda: MaskedCTCAttack(steps=12, check_every=4, bound_db=-10.0),
    "nes": lambda: NESAttack(samples=4, steps=6, check_every=3, bound_db=-10.0),
    "genetic": lambda: GeneticAttack(population=6, elite=2, steps=6, check_every=3, bound_db=-10.0),
}
QUERIES = {
    "ctc": 12 + 2 * 3,
    "masked ctc": 12 + 2 * 3,
    "nes": 6 * 8 + 2 * 2,
    "genetic": 6 * 6 + 2 * 2,
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attacks_lower_the_target_loss_within_their_bound(name, recognizer, carrier):
    attack = ATTACKS[name]()
    log: list = []
    access = Access(recognizer, attack.access_level, query_log=log)
    before = float(recognizer.utterance_loss([carrier], [TARGET])[0])
    result = attack.run(access, carrier, TARGET)
    assert result.losses[-1] < before
    bound = float(np.abs(carrier).max()) * 10 ** (-10.0 / 20)
    assert np.abs(result.adversarial - carrier).max() <= bound + 1e-6
    assert result.snr_db == pytest.approx(snr_db(carrier, result.adversarial - carrier))
    # Every waveform sent was counted and logged: steps plus the checks (transcript + loss).
    assert result.queries == len(log) == QUERIES[name]


def test_the_masked_attack_hides_its_perturbation_under_the_threshold(recognizer, carrier):
    masking = MaskingModel()
    shares = {}
    for attack in (
        CTCAttack(steps=12, check_every=4, bound_db=-10.0),
        MaskedCTCAttack(masking, steps=12, check_every=4, bound_db=-10.0),
    ):
        result = attack.run(Access(recognizer, "white"), carrier, TARGET)
        shares[type(attack).__name__] = masking.share_above(result.adversarial - carrier, carrier)
    # The signed CTC steps are broadband, so most STFT cells exceed the threshold; the masked
    # attack's (0.06% on this tone) almost none.
    assert shares["CTCAttack"] > 0.3
    assert shares["MaskedCTCAttack"] < 0.1 * shares["CTCAttack"]


def test_the_masked_attack_refuses_a_mask_for_another_rate(recognizer, carrier):
    attack = MaskedCTCAttack(MaskingModel(sample_rate=8000), steps=1)
    with pytest.raises(VoxauditError, match="masking"):
        attack.run(Access(recognizer, "white"), carrier, TARGET)


def test_black_box_attacks_need_scores(recognizer, carrier):
    with pytest.raises(AccessDenied):
        NESAttack(steps=1).run(Access(recognizer, "black"), carrier, TARGET)


def test_the_tap_shows_fakes_noise_and_accounts(recognizer, carrier):
    seen: list[tuple[str, np.ndarray]] = []
    fake = np.full(4000, 0.1, np.float32)
    tap = QueryTap(
        recognizer,
        lambda account, wave: seen.append((account, wave)) or "ok",
        accounts=3,
        p_fake=0.5,
        fake_pool=[fake],
        noise_snr_db=20.0,
        seed=1,
    )
    access = Access(tap, "grey")
    for _ in range(40):
        access.transcribe([carrier])
    real = [e for e in tap.events if not e.fake]
    assert len(real) == 40 and access.queries == 40
    assert 0.3 < sum(e.fake for e in tap.events) / len(tap.events) < 0.7
    assert {e.account for e in tap.events} == {"attacker0", "attacker1", "attacker2"}
    noisy = [w for _, w in seen if w.size == carrier.size]
    assert snr_db(carrier, noisy[0] - carrier) == pytest.approx(20.0, abs=0.5)


def test_the_tap_refuses_fakes_without_a_pool(recognizer):
    with pytest.raises(VoxauditError, match="fake_pool"):
        QueryTap(recognizer, print, p_fake=0.3)


def test_a_refused_query_stops_the_attack(recognizer, carrier):
    verdicts = iter(["ok", "ok", "ok", "no"])
    tap = QueryTap(recognizer, lambda _a, _w: next(verdicts), refuse=lambda v: v == "no")
    with pytest.raises(QueryRefused) as refused:
        CTCAttack(steps=10, check_every=5).run(Access(tap, "white"), carrier, TARGET)
    assert [e.verdict for e in tap.events] == ["ok", "ok", "ok", "no"]
    assert refused.value.event is tap.events[-1]
