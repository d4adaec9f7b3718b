"""Train-time defenses as training-loop hooks (``voxaudit.train.loop``), no model code changed.

Settings of the loop itself need no hook: L2 (``weight_decay``), label
smoothing (``label_smoothing``), early stopping (``early_stopping_patience``); dropout is a model
setting (``dropout``). The hooks here:

* ``L2Penalty`` (loss term): ``weight`` times the squared L2 norm, on the loss itself (unlike
  ``weight_decay``, which Adam scales per parameter).
* ``DPSGD`` (engine): Opacus DP-SGD, per-sample clipping and Gaussian noise, with the epsilon
  its accountant spends; recurrent models need Opacus' layers (classifier ``cell="dpgru"``).
* ``Distillation`` (loss term): defensive distillation from a teacher at temperature T.
* ``AdversarialTraining`` (input transform): FGSM/PGD examples in log-mel feature space.
* ``AdversarialRegularization`` (loss term): Nasr et al. (2018): a min-max game against an
  inference model that learns to tell training outputs from reference (non-member) outputs.

Distillation and adversarial regularization compare class distributions, so they take
classifier outputs (logits ``[batch, classes]``); they refuse others with a clear error.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from voxaudit.data.corpus import Utterance
from voxaudit.data.features import Batch
from voxaudit.errors import VoxauditError
from voxaudit.files import write_json
from voxaudit.train.data import UtteranceDataset, make_loader


def _class_logits(outputs: Any, hook: str) -> torch.Tensor:
    if not isinstance(outputs, torch.Tensor) or outputs.dim() != 2:
        raise VoxauditError(
            f"{hook} needs a classifier's logits [batch, classes]; this model's outputs are "
            f"{type(outputs).__name__} {tuple(getattr(outputs, 'shape', ()))}"
        )
    return outputs


@dataclass(frozen=True)
class L2Penalty:
    """``weight`` times the squared L2 norm of all trainable parameters."""

    weight: float

    def term(self, model: nn.Module, batch: Batch, outputs: Any) -> torch.Tensor:
        return self.weight * sum(p.square().sum() for p in model.parameters() if p.requires_grad)


class DPSGD:
    """Differentially private SGD with Opacus: clip each example's gradient, add noise.

    ``epsilon()`` is what the accountant has spent so far at ``delta``. Opacus samples batches
    by Poisson sampling, which its accounting assumes. The accountant's record of the steps
    taken is checkpointed with the model, so a resumed run's epsilon covers the whole run
    (``restored`` says it was resumed that way).
    """

    def __init__(
        self, noise_multiplier: float = 1.0, max_grad_norm: float = 1.0, delta: float = 1e-5
    ) -> None:
        if noise_multiplier < 0 or max_grad_norm <= 0 or not 0 < delta < 1:
            raise VoxauditError(
                "DPSGD: noise_multiplier >= 0, max_grad_norm > 0 and 0 < delta < 1 are needed"
            )
        self.noise_multiplier = noise_multiplier
        self.max_grad_norm = max_grad_norm
        self.delta = delta
        self.engine: Any = None
        self.loader: _NoiseOnEmpty | None = None  # what training iterates, once wrapped
        self.restored = False
        self._accountant_state: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        """The accountant's history of (noise, sample rate, steps), in checkpointable types."""
        if self.engine is None:
            return {"history": None}
        accountant = self.engine.accountant
        return {
            "history": [list(entry) for entry in accountant.history],
            "mechanism": accountant.mechanism(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["history"] is None:
            return
        # Applied in wrap(): the engine that holds the accountant does not exist yet.
        self._accountant_state = {
            "history": [tuple(entry) for entry in state["history"]],
            "mechanism": state["mechanism"],
        }
        self.restored = True

    def wrap(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader
    ) -> tuple[nn.Module, torch.optim.Optimizer, DataLoader]:
        try:
            from opacus import PrivacyEngine
            from opacus.validators import ModuleValidator
        except ImportError as exc:
            raise VoxauditError("DP-SGD needs Opacus: pip install 'voxaudit[dp]'") from exc
        problems = ModuleValidator.validate(model, strict=False)
        if problems:
            raise VoxauditError(
                f"{type(model).__name__} has layers Opacus cannot train privately: "
                + "; ".join(str(p) for p in problems[:3])
                + " (recurrent classifiers: use cell='dpgru' or 'dplstm')"
            )
        self.engine = PrivacyEngine()
        model, optimizer, loader = self.engine.make_private(
            module=model,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=self.max_grad_norm,
        )
        if self._accountant_state is not None:
            self.engine.accountant.load_state_dict(self._accountant_state)
        self.loader = _NoiseOnEmpty(loader, optimizer)
        return model, optimizer, self.loader

    def epsilon(self) -> float:
        """The privacy budget spent so far, at ``delta``."""
        if self.engine is None:
            raise VoxauditError("DPSGD has not trained anything yet")
        return float(self.engine.get_epsilon(self.delta))


def recorded_epsilon(hooks: Sequence[Any], run_dir: Path, fresh: bool) -> float | None:
    """The DP-SGD epsilon a model in ``run_dir`` spent, kept beside it (``dp.json``).

    Only a run whose accountant saw every step records one: trained in one go (``fresh``), or
    resumed from a checkpoint that kept the accountant. A run resumed from an older checkpoint,
    which did not, reports none rather than too few; a finished run reads its record back.
    """
    record = run_dir / "dp.json"
    dp = next((h for h in hooks if isinstance(h, DPSGD)), None)
    if dp is not None and dp.engine is not None and (fresh or dp.restored):
        write_json(record, {"epsilon": round(dp.epsilon(), 3), "delta": dp.delta})
    if dp is None or not record.exists():
        return None
    return json.loads(record.read_text("utf-8"))["epsilon"]


class _NoiseOnEmpty:
    """A DP loader that never yields an empty batch: it takes that step itself, noise only.

    Poisson sampling draws an empty batch now and then. The accountant counts a noisy step
    for it, and skipping the step would reveal that nobody was sampled. Opacus would build an
    empty batch shaped like the first one, but it knows only tensors, dicts and sequences, not
    a ``Batch``. So the loader marks the empty batch, and the step happens here: every
    parameter gets zero per-example gradients, and the DP optimizer adds its noise.
    """

    def __init__(self, loader: DataLoader, optimizer: torch.optim.Optimizer) -> None:
        collate = loader.collate_fn
        loader.collate_fn = lambda items: collate(items) if items else None
        self.loader = loader
        self.optimizer = optimizer
        self.empty_steps = 0

    def __iter__(self) -> Iterator[Batch]:
        for batch in self.loader:
            if batch is not None:
                yield batch
                continue
            self.optimizer.zero_grad(set_to_none=True)
            for group in self.optimizer.param_groups:
                for p in group["params"]:
                    if p.requires_grad:
                        p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
            self.optimizer.step()
            self.empty_steps += 1

    def __len__(self) -> int:
        return len(self.loader)


class Distillation:
    """Defensive distillation: match a teacher's temperature-``T`` class distribution.

    Adds ``weight * T^2 * KL(teacher_T || student_T)`` (the T^2 keeps gradients on the hard
    loss's scale, Hinton et al. 2015). The teacher is frozen and kept in eval mode.
    """

    def __init__(self, teacher: nn.Module, temperature: float = 4.0, weight: float = 1.0) -> None:
        if temperature <= 0:
            raise VoxauditError(f"Distillation: temperature must be > 0, not {temperature}")
        self.teacher = teacher.eval().requires_grad_(False)
        self.temperature = temperature
        self.weight = weight

    def term(self, model: nn.Module, batch: Batch, outputs: Any) -> torch.Tensor:
        student = _class_logits(outputs, "Distillation")
        self.teacher.to(student.device)
        with torch.no_grad():
            teacher = _class_logits(
                self.teacher.forward_features(batch.features, batch.lengths), "Distillation"
            )
        t = self.temperature
        kl = F.kl_div(
            F.log_softmax(student / t, dim=-1), F.log_softmax(teacher / t, dim=-1),
            reduction="batchmean", log_target=True,
        )  # fmt: skip
        return self.weight * t * t * kl


class AdversarialTraining:
    """Train on adversarial examples: FGSM (``steps=1``) or PGD in log-mel feature space.

    Features are perturbed within an L-infinity ball of radius ``eps`` (log-mel units; the
    features are per-utterance normalized, so about standard deviations), padding untouched.
    The perturbation maximizes the model's own training loss; ``mix`` of each batch's examples
    are replaced by their adversarial versions (1.0: all, as Madry et al.).
    """

    def __init__(
        self, eps: float = 0.1, steps: int = 1, step_size: float | None = None, mix: float = 1.0
    ) -> None:
        if eps <= 0 or steps < 1 or not 0 < mix <= 1:
            raise VoxauditError("AdversarialTraining: eps > 0, steps >= 1, 0 < mix <= 1 needed")
        self.eps = eps
        self.steps = steps
        self.step_size = step_size if step_size is not None else (eps if steps == 1 else eps / 4)
        self.mix = mix

    def transform(self, model: nn.Module, batch: Batch) -> Batch:
        mask = batch.mask[..., None].to(batch.features.dtype)
        clean = batch.features.detach()
        delta = torch.zeros_like(clean, requires_grad=True)
        for _ in range(self.steps):
            loss = model.training_loss(_with_features(batch, clean + delta * mask))
            (gradient,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                delta += self.step_size * gradient.sign()
                delta.clamp_(-self.eps, self.eps)
        adversarial = (clean + delta.detach() * mask).detach()
        if self.mix < 1:
            chosen = torch.rand(len(clean), device=clean.device) < self.mix
            adversarial = torch.where(chosen[:, None, None], adversarial, clean)
        return _with_features(batch, adversarial)


def _with_features(batch: Batch, features: torch.Tensor) -> Batch:
    return Batch(features, batch.lengths, batch.targets, batch.target_lengths)


class AdversarialRegularization:
    """Nasr et al. (2018): train against an inference model that spots training members.

    Before each training step the inference model ``h(softmax(f(x)), onehot(y))`` takes
    ``attack_steps`` steps to separate the batch's outputs (members) from outputs on a batch
    of ``reference`` utterances (known non-members); the model then pays
    ``weight * mean log h(member)``, so it learns to make its members look like non-members.
    ``n_classes`` left out is read from the model's first outputs, so a sweep config need not
    know how many classes each model's pool has.
    """

    def __init__(
        self,
        reference: Sequence[Utterance],
        n_classes: int | None = None,
        weight: float = 1.0,
        attack_steps: int = 1,
        hidden: int = 64,
        lr: float = 1e-3,
        batch_size: int = 16,
        seed: int = 0,
    ) -> None:
        if len(reference) == 0:
            raise VoxauditError("AdversarialRegularization needs reference (non-member) data")
        self.reference = list(reference)
        self.hidden = hidden
        self.lr = lr
        self.n_classes = n_classes
        self.weight = weight
        self.attack_steps = attack_steps
        self.batch_size = batch_size
        self.seed = seed
        self._loader: DataLoader | None = None
        self._batches: Iterator[Batch] = iter(())
        # Where the reference batches stand: the loader's RNG state when the current pass
        # over them began, and how many batches of it were drawn (what a resume replays).
        self._pass_rng: torch.Tensor | None = None
        self._drawn = 0
        self._resume_at: tuple[torch.Tensor | None, int] | None = None
        self._optimizer_state: dict[str, Any] | None = None
        if n_classes is not None:
            self._build(n_classes)

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue exactly: the inference model and its data."""
        if self.n_classes is None:
            return {"n_classes": None}
        return {
            "n_classes": self.n_classes,
            "inference": self.inference.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "reference_pass_rng": self._pass_rng,
            "reference_drawn": self._drawn,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["n_classes"] is None:
            return
        self._build(state["n_classes"])
        self.inference.load_state_dict(state["inference"])
        # Loaded once the inference model is on the training device, where Adam's state goes.
        self._optimizer_state = state["optimizer"]
        self._resume_at = (state["reference_pass_rng"], state["reference_drawn"])

    def _build(self, n_classes: int) -> None:
        # A forked RNG: built mid-training, it must not reseed the training's own stream.
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            self.inference = nn.Sequential(
                nn.Linear(2 * n_classes, self.hidden), nn.ReLU(), nn.Linear(self.hidden, 1)
            )
        self.n_classes = n_classes
        self.optimizer = torch.optim.Adam(self.inference.parameters(), lr=self.lr)

    def _next_reference(self, model: nn.Module) -> Batch:
        if self._loader is None:
            # Built on first use: the features and labels are the trained model's own.
            data = UtteranceDataset(self.reference, model.front_end, model.target)
            self._loader = make_loader(data, self.batch_size, shuffle=True, seed=self.seed)
            pass_rng, drawn = self._resume_at or (None, 0)
            self._resume_at = None  # used once, here
            if pass_rng is not None:  # replay the checkpoint's pass up to where it stood
                self._loader.generator.set_state(pass_rng)
                self._start_pass()
                for _ in range(drawn):
                    next(self._batches)
                self._drawn = drawn
        batch = next(self._batches, None)
        if batch is None:  # a pass over the reference data is over: start another
            self._start_pass()
            batch = next(self._batches)
        self._drawn += 1
        return batch

    def _start_pass(self) -> None:
        assert self._loader is not None
        self._pass_rng = self._loader.generator.get_state()
        self._batches = iter(self._loader)
        self._drawn = 0

    def _gain(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The inference model's member logit for each output."""
        onehot = F.one_hot(targets, self.n_classes).to(logits.dtype)
        return self.inference(torch.cat([logits.softmax(dim=-1), onehot], dim=-1)).squeeze(-1)

    def term(self, model: nn.Module, batch: Batch, outputs: Any) -> torch.Tensor:
        logits = _class_logits(outputs, "AdversarialRegularization")
        if self.n_classes is None:
            self._build(logits.shape[1])
        self.inference.to(logits.device)
        if self._optimizer_state is not None:
            self.optimizer.load_state_dict(self._optimizer_state)
            self._optimizer_state = None
        reference = self._next_reference(model).to(logits.device)
        with torch.no_grad():
            reference_logits = model.forward_features(reference.features, reference.lengths)
        members, targets = logits.detach(), batch.targets
        for _ in itertools.repeat(None, self.attack_steps):
            scores = torch.cat(
                [self._gain(members, targets), self._gain(reference_logits, reference.targets)]
            )
            labels = torch.cat([torch.ones(len(members)), torch.zeros(len(reference_logits))])
            loss = F.binary_cross_entropy_with_logits(scores, labels.to(scores.device))
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        # The inference model is fixed for the model's step; only the model gets gradients.
        self.inference.requires_grad_(False)
        try:
            gain = F.logsigmoid(self._gain(logits, targets)).mean()
        finally:
            self.inference.requires_grad_(True)
        return self.weight * gain
