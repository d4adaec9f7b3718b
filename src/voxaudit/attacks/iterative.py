"""Targeted iterative attacks on an ASR: white-box CTC-loss (Carlini & Wagner style), its
psychoacoustically masked variant (in the spirit of IRTA, Qin et al.), black-box genetic (Taori
et al.) and black-box gradient estimation (NES).

All share one loop: perturb the carrier, keep the perturbation within an L-infinity bound set
in dB relative to the carrier's peak (C&W's dB_x(delta) <= tau), check the transcript every few
steps and, like C&W, tighten the bound by ``shrink`` after each success.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from voxaudit.attacks.masking import MaskingModel
from voxaudit.data.text import normalize_transcript
from voxaudit.errors import VoxauditError
from voxaudit.models.access import Access


@dataclass
class AttackResult:
    """What an attack achieved and what it cost."""

    adversarial: np.ndarray  # the best successful waveform, or the last one tried
    success: bool
    transcript: str
    queries: int  # waveforms sent to the model, as Access counted them
    snr_db: float  # carrier power over perturbation power
    losses: list[float] = field(default_factory=list)  # target loss at each check


def snr_db(carrier: np.ndarray, delta: np.ndarray) -> float:
    """Signal-to-perturbation ratio in dB (inf for no perturbation)."""
    noise = float(np.mean(np.asarray(delta, dtype=np.float64) ** 2))
    signal = float(np.mean(np.asarray(carrier, dtype=np.float64) ** 2))
    return float("inf") if noise == 0 else 10.0 * np.log10(signal / noise)


class _IterativeAttack(ABC):
    """The shared loop; subclasses say how to move the perturbation (``_step``)."""

    access_level = "grey"

    def __init__(
        self,
        steps: int = 200,
        bound_db: float = -20.0,
        step_fraction: float = 0.1,
        check_every: int = 10,
        shrink: float = 0.8,
        seed: int = 0,
    ) -> None:
        self.steps = steps
        self.bound_db = bound_db
        self.step_fraction = step_fraction
        self.check_every = check_every
        self.shrink = shrink
        self.seed = seed

    def run(self, access: Access, carrier: np.ndarray, target: str) -> AttackResult:
        """Attack ``carrier`` until ``access``'s model transcribes it as ``target``."""
        target = normalize_transcript(target)
        carrier = np.asarray(carrier, dtype=np.float32)
        rng = np.random.default_rng(self.seed)
        bound = float(np.abs(carrier).max()) * 10 ** (self.bound_db / 20)
        delta = np.zeros_like(carrier)
        best: np.ndarray | None = None
        losses: list[float] = []
        text = ""
        for step in range(1, self.steps + 1):
            delta = self._step(access, carrier, delta, target, bound * self.step_fraction, rng)
            delta = np.clip(delta, -bound, bound).astype(np.float32)
            if step % self.check_every == 0 or step == self.steps:
                candidate = np.clip(carrier + delta, -1.0, 1.0)
                text = access.transcribe([candidate])[0]
                losses.append(float(self._loss(access, candidate, target)))
                if text == target:
                    best = candidate
                    bound *= self.shrink  # C&W: once it works, ask for a quieter one
        adversarial = best if best is not None else np.clip(carrier + delta, -1.0, 1.0)
        return AttackResult(
            adversarial=adversarial,
            success=best is not None,
            transcript=target if best is not None else text,
            queries=access.queries,
            snr_db=snr_db(carrier, adversarial - carrier),
            losses=losses,
        )

    def _loss(self, access: Access, wave: np.ndarray, target: str) -> float:
        if access.level.value == "black":
            return float("nan")  # a black box without scores gives no loss to log
        return float(access.utterance_loss([wave], [target])[0])

    @abstractmethod
    def _step(
        self,
        access: Access,
        carrier: np.ndarray,
        delta: np.ndarray,
        target: str,
        size: float,
        rng: np.random.Generator,
    ) -> np.ndarray: ...


class CTCAttack(_IterativeAttack):
    """White box: signed gradient steps on the target's CTC loss (one gradient query each)."""

    access_level = "white"

    def _step(self, access, carrier, delta, target, size, rng):
        (gradient,) = access.input_gradients([carrier + delta], [target])
        return delta - size * np.sign(gradient)


class MaskedCTCAttack(CTCAttack):
    """White box, IRTA-like (Qin et al. 2019): the CTC loss plus a psychoacoustic penalty.

    Each step descends the target's CTC loss plus ``masking_weight`` times the mean dB by
    which the perturbation's power spectrum exceeds the carrier's masking threshold
    (``MaskingModel``, a simplified psychoacoustic model 1; see its module). The penalty
    needs only the carrier and the perturbation, so it costs no query: the queries are the
    parent's, one gradient per step plus the checks.

    Unlike the parent's signed step, the step follows the two gradients (each scaled to unit
    RMS, so the weight is a ratio) with its largest sample moved by the step size over
    sqrt(step): a sign() would spread every step's energy over all frequencies, which is
    what the mask forbids, and a step that does not shrink keeps crossing the threshold.
    Qin et al. run two stages (C&W first, then the masking loss with a weight adapted per
    frame, with Adam); this is one stage with one fixed weight.
    """

    def __init__(
        self, masking: MaskingModel | None = None, masking_weight: float = 1.0, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.masking = masking or MaskingModel()
        self.masking_weight = masking_weight
        self._threshold: tuple[np.ndarray, float] | None = None
        self._taken = 0

    def run(self, access: Access, carrier: np.ndarray, target: str) -> AttackResult:
        if self.masking.sample_rate != access.sample_rate:
            raise VoxauditError(
                f"masking: built for {self.masking.sample_rate} Hz; the model takes "
                f"{access.sample_rate}"
            )
        # The threshold depends on the carrier only: once per run, not per step.
        self._threshold = self.masking.threshold(np.asarray(carrier, dtype=np.float32))
        self._taken = 0
        return super().run(access, carrier, target)

    def _step(self, access, carrier, delta, target, size, rng):
        (gradient,) = access.input_gradients([carrier + delta], [target])
        masking = self.masking.penalty_gradient(delta, *self._threshold)
        direction = _unit_rms(gradient) + self.masking_weight * _unit_rms(masking)
        self._taken += 1
        peak = float(np.abs(direction).max())
        if peak == 0.0:
            return delta
        return delta - size / np.sqrt(self._taken) * direction / peak


def _unit_rms(values: np.ndarray) -> np.ndarray:
    """``values`` scaled to unit RMS (zeros stay zeros)."""
    rms = float(np.sqrt(np.mean(np.square(values, dtype=np.float64))))
    return values / rms if rms > 0 else values


class NESAttack(_IterativeAttack):
    """Black box with scores: the loss gradient estimated from ``samples`` antithetic pairs of
    Gaussian probes at scale ``sigma`` (times the bound), then a signed step."""

    def __init__(self, samples: int = 10, sigma: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.samples = samples
        self.sigma = sigma

    def _step(self, access, carrier, delta, target, size, rng):
        scale = self.sigma * size / self.step_fraction
        probes = rng.standard_normal((self.samples, carrier.size)).astype(np.float32)
        base = carrier + delta
        waves = [base + scale * p for p in probes] + [base - scale * p for p in probes]
        losses = access.utterance_loss(waves, [target] * len(waves))
        differences = losses[: self.samples] - losses[self.samples :]
        gradient = (differences[:, None] * probes).sum(axis=0)
        return delta - size * np.sign(gradient)


class GeneticAttack(_IterativeAttack):
    """Black box with scores (Taori et al.): a population of perturbations scored by the
    target's loss; the elite survive, children cross over and mutate (noise of the step size
    on a ``mutation_rate`` share of samples)."""

    def __init__(
        self, population: int = 10, elite: int = 3, mutation_rate: float = 0.05, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.population = population
        self.elite = elite
        self.mutation_rate = mutation_rate
        self._pool: np.ndarray | None = None

    def run(self, access, carrier, target):
        self._pool = None  # a fresh population for each carrier
        return super().run(access, carrier, target)

    def _step(self, access, carrier, delta, target, size, rng):
        if self._pool is None:
            self._pool = np.repeat(delta[None], self.population, axis=0)
        pool = self._pool
        mask = rng.random(pool.shape) < self.mutation_rate
        pool = pool + mask * rng.normal(0.0, size, pool.shape).astype(np.float32)
        limit = size / self.step_fraction
        pool = np.clip(pool, -limit, limit)
        losses = access.utterance_loss([carrier + p for p in pool], [target] * len(pool))
        order = np.argsort(losses)
        elite = pool[order[: self.elite]]
        # Children: uniform crossover of two elite parents, chosen by fitness.
        weights = np.exp(-(losses[order[: self.elite]] - losses[order[0]]))
        weights /= weights.sum()
        parents = rng.choice(self.elite, size=(self.population - self.elite, 2), p=weights)
        take_first = rng.random((len(parents), carrier.size)) < 0.5
        children = np.where(take_first, elite[parents[:, 0]], elite[parents[:, 1]])
        self._pool = np.concatenate([elite, children]).astype(np.float32)
        return elite[0]
