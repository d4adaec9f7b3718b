"""One training loop for every model: seeded, resumable, atomically checkpointed, with hooks.

Defenses plug in as hooks rather than model code. A hook is any object with one or more of:

* ``term(model, batch, outputs) -> Tensor``: a :class:`LossTerm` added to the loss
  (regularizers, distillation from a teacher, adversarial regularization);
* ``transform(model, batch) -> Batch``: an :class:`InputTransform` applied to each training
  batch before the loss (adversarial training);
* ``wrap(model, optimizer, loader) -> (model, optimizer, loader)``: an :class:`Engine` called
  once before training (e.g. Opacus' ``PrivacyEngine.make_private`` for DP-SGD).
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from rich.progress import Progress
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from voxaudit.config import read_config_file
from voxaudit.data.features import Batch
from voxaudit.errors import VoxauditError
from voxaudit.files import json_key, write_atomically
from voxaudit.models.base import Trainable
from voxaudit.models.checkpoints import (
    CHECKPOINT,
    FORMAT,
    class_path,
    read_checkpoint,
    resolve_device,
)
from voxaudit.progress import make_progress
from voxaudit.train.data import make_loader

HISTORY = "history.json"
OPTIMIZERS = ("adam", "adamw", "sgd")
DEVICES = ("auto", "cpu", "cuda")
#: Settings a resumed run may change: train longer, or carry on on another machine.
RESUMABLE_CHANGES = ("epochs", "device")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimizer, schedule, precision, device, seed, stopping and checkpoints."""

    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    warmup_steps: int = 0  # linear learning-rate warm-up over the first optimizer steps
    decay_steps: int | None = None  # cosine decay to min_lr over these steps after warm-up
    min_lr: float = 0.0
    weight_decay: float = 0.0
    optimizer: str = "adam"
    momentum: float = 0.9  # SGD only
    grad_clip: float | None = None  # max global gradient norm
    label_smoothing: float = 0.0  # set on models with a ``label_smoothing`` attribute
    amp: bool = True  # mixed precision, on CUDA only
    device: str = "auto"  # "auto", "cpu", "cuda" or "cuda:N"
    seed: int = 0
    early_stopping_patience: int | None = None  # epochs without a lower validation loss
    checkpoint_every_epochs: int = 1
    max_steps: int | None = None  # stop after this many optimizer steps in all

    def __post_init__(self) -> None:
        device_ok = isinstance(self.device, str) and (
            self.device in DEVICES
            or (self.device.startswith("cuda:") and self.device[5:].isdigit())
        )
        rules = [
            (_is_int(self.epochs) and self.epochs >= 1, "epochs must be an integer >= 1"),
            (
                _is_int(self.batch_size) and self.batch_size >= 1,
                "batch_size must be an integer >= 1",
            ),
            (_is_number(self.lr) and self.lr >= 0, "lr must be a number >= 0"),
            (
                _is_int(self.warmup_steps) and self.warmup_steps >= 0,
                "warmup_steps must be an integer >= 0",
            ),
            (
                self.decay_steps is None or (_is_int(self.decay_steps) and self.decay_steps >= 1),
                "decay_steps must be an integer >= 1, or absent",
            ),
            (
                _is_number(self.min_lr) and 0 <= self.min_lr <= self.lr,
                "min_lr must be a number in [0, lr]",
            ),
            (
                _is_number(self.weight_decay) and self.weight_decay >= 0,
                "weight_decay must be a number >= 0",
            ),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of: {', '.join(OPTIMIZERS)}"),
            (_is_number(self.momentum) and 0 <= self.momentum < 1, "momentum must lie in [0, 1)"),
            (
                self.grad_clip is None or (_is_number(self.grad_clip) and self.grad_clip > 0),
                "grad_clip must be a number > 0, or absent",
            ),
            (
                _is_number(self.label_smoothing) and 0 <= self.label_smoothing < 1,
                "label_smoothing must lie in [0, 1)",
            ),
            (isinstance(self.amp, bool), "amp must be true or false"),
            (device_ok, "device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
            (_is_int(self.seed) and self.seed >= 0, "seed must be an integer >= 0"),
            (
                self.early_stopping_patience is None
                or (_is_int(self.early_stopping_patience) and self.early_stopping_patience >= 1),
                "early_stopping_patience must be an integer >= 1, or absent",
            ),
            (
                _is_int(self.checkpoint_every_epochs) and self.checkpoint_every_epochs >= 1,
                "checkpoint_every_epochs must be an integer >= 1",
            ),
            (
                self.max_steps is None or (_is_int(self.max_steps) and self.max_steps >= 1),
                "max_steps must be an integer >= 1, or absent",
            ),
        ]
        for ok, message in rules:
            if not ok:
                raise VoxauditError(f"train config: {message}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a mapping, refusing unknown keys by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise VoxauditError(
                f"train config: unknown setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        """Load from TOML or JSON: its ``[train]`` table if it has one, else the whole file."""
        data = read_config_file(path)
        section = data.get("train", data)
        if not isinstance(section, dict):
            raise VoxauditError(f"{path}: 'train' must be a table of settings")
        return cls.from_dict(section)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able settings."""
        return asdict(self)

    def learning_rate(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based): warm-up, then cosine decay.

        A function of the step counter alone, which checkpoints hold, so resumes stay exact.
        """
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.decay_steps is None:
            return self.lr
        progress = min(1.0, (step - self.warmup_steps) / self.decay_steps)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch did: mean losses per utterance, wall time and training throughput."""

    epoch: int
    steps: int
    train_loss: float  # the optimized objective, hook terms included
    val_loss: float | None
    seconds: float
    utterances_per_s: float


@dataclass
class History:
    """Per-epoch records; ``stopped`` says why training ended before ``epochs``, if it did."""

    epochs: list[EpochRecord] = field(default_factory=list)
    stopped: str | None = None  # "early_stopping" or "max_steps"

    @property
    def train_loss(self) -> list[float]:
        return [r.train_loss for r in self.epochs]

    @property
    def val_loss(self) -> list[float | None]:
        return [r.val_loss for r in self.epochs]

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": [asdict(r) for r in self.epochs], "stopped": self.stopped}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        return cls([EpochRecord(**r) for r in data["epochs"]], data["stopped"])


# -- hooks -----------------------------------------------------------------------------------


@runtime_checkable
class LossTerm(Protocol):
    """Adds ``term(...)``, a 0-d tensor, to the training loss of each batch."""

    def term(self, model: nn.Module, batch: Batch, outputs: Any) -> torch.Tensor: ...


@runtime_checkable
class InputTransform(Protocol):
    """Replaces each training batch (on the device) before the loss is computed."""

    def transform(self, model: nn.Module, batch: Batch) -> Batch: ...


@runtime_checkable
class Engine(Protocol):
    """Wraps model, optimizer and loader once before training; checkpoints keep the unwrapped.

    The returned model computes the losses if it still has ``training_loss``; otherwise (a
    wrapper that hooks the layers in place, like Opacus' GradSampleModule) the original does.
    """

    def wrap(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader
    ) -> tuple[nn.Module, torch.optim.Optimizer, DataLoader]: ...


Hook = LossTerm | InputTransform | Engine


@runtime_checkable
class StatefulHook(Protocol):
    """A hook that learns while the model trains: checkpoints keep its state, resumes restore it."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class OutputLoss(Protocol):
    """A model that scores outputs it already computed, so loss terms cost no second forward."""

    def loss_from_outputs(self, outputs: Any, batch: Batch) -> torch.Tensor: ...


@runtime_checkable
class SmoothsLabels(Protocol):
    """A model whose loss takes label smoothing; the trainer sets it from the config."""

    label_smoothing: float


# -- devices, seeds, files -------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic kernels on the CPU, restoring the caller's setting afterwards."""
    if device.type != "cpu":
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random stream training draws from, in types ``torch.load(weights_only=True)`` reads."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = numpy_state["state"]["key"].tolist()
    return {
        "python": random.getstate(),
        "numpy": numpy_state,
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generator": generator.get_state(),
    }


def _set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    numpy_state["state"]["key"] = np.asarray(numpy_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator.set_state(state["generator"])


def freeze_parameters(model: nn.Module, prefixes: Sequence[str], where: str = "freeze") -> int:
    """Stop training the parameters under each name prefix; return how many tensors that is.

    A prefix is a dotted name (``"encoder"``, ``"wav2vec2.feature_extractor"``) and covers
    what lies under it, not other names that merely start alike (``"encoder"`` is not
    ``"encoder_norm"``). Frozen parameters get ``requires_grad=False``, which keeps them out
    of :func:`make_optimizer` and so unchanged. A prefix may name a module without parameters
    (a fixed front-end); one that names nothing in the model is an error.

    Parameters
    ----------
    model:
        The model to freeze parts of.
    prefixes:
        Parameter or module names.
    where:
        What errors name as the setting, e.g. ``"run.toml: [finetune]"``.
    """

    def under(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    modules = [name for name, _ in model.named_modules() if name]
    parameters = dict(model.named_parameters())
    for prefix in prefixes:
        if not any(under(name, prefix) for name in [*modules, *parameters]):
            top = [name for name, _ in model.named_children()]
            top += [name for name, _ in model.named_parameters(recurse=False)]
            raise VoxauditError(
                f"{where}: {prefix!r} names no part of {type(model).__name__}; "
                f"its top-level names: {', '.join(top)}"
            )
    frozen = [p for name, p in parameters.items() if any(under(name, x) for x in prefixes)]
    if len(frozen) == len(parameters):
        raise VoxauditError(f"{where}: {', '.join(prefixes)} leave nothing to train")
    for parameter in frozen:
        parameter.requires_grad_(False)
    return len(frozen)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The configured optimizer over the model's trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    optimizer = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return optimizer(params, lr=config.lr, weight_decay=config.weight_decay)


# -- the trainer -----------------------------------------------------------------------------


class Trainer:
    """Fits any :class:`~voxaudit.models.base.Trainable` with the given hooks."""

    def __init__(
        self, config: TrainConfig, hooks: Sequence[Hook] = (), *, progress: bool = True
    ) -> None:
        for hook in hooks:
            if not isinstance(hook, LossTerm | InputTransform | Engine):
                raise TypeError(f"hook {hook!r} has none of the methods term, transform or wrap")
        self.config = config
        self.hooks = list(hooks)
        self.progress = progress

    def fit(
        self,
        model: nn.Module,
        train_set: Dataset,
        val_set: Dataset | None = None,
        out_dir: str | Path | None = None,
        *,
        batch_sampler: Sampler[list[int]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> History:
        """Train ``model``, continuing from ``out_dir/checkpoint.pt`` when there is one.

        Datasets yield ``(features, target)`` items (see ``voxaudit.train.data``); their ``ids``
        attribute, when present, is recorded in the checkpoint as what the model trained on.
        ``metadata`` (JSON-able) is stored too, and a resumed run must pass the same.
        """
        if not isinstance(model, Trainable):
            raise VoxauditError(
                f"{type(model).__name__} cannot be trained: it lacks training_loss, "
                "forward_features or config"
            )
        if len(train_set) == 0:  # type: ignore[arg-type]
            raise VoxauditError("the training set is empty")
        if self.config.early_stopping_patience is not None and val_set is None:
            raise VoxauditError(
                "early stopping watches the validation loss: give a validation set "
                "or leave early_stopping_patience unset"
            )
        if isinstance(model, SmoothsLabels):
            model.label_smoothing = self.config.label_smoothing
        elif self.config.label_smoothing:
            raise VoxauditError(
                f"label_smoothing is set but {type(model).__name__} has no label_smoothing "
                "attribute: its loss does not support it"
            )
        device = resolve_device(self.config.device)
        with _deterministic(device):
            seed_everything(self.config.seed)
            run = _Run(self, model, device, train_set, val_set, batch_sampler, metadata)
            if out_dir is not None:
                run.attach(Path(out_dir))
            return run.train()


class _Run:
    """The state of one ``fit``: model, optimizer, data, counters and history."""

    def __init__(
        self,
        trainer: Trainer,
        model: nn.Module,
        device: torch.device,
        train_set: Dataset,
        val_set: Dataset | None,
        batch_sampler: Sampler[list[int]] | None,
        metadata: dict[str, Any] | None,
    ) -> None:
        config = trainer.config
        self.config = config
        self.hooks = trainer.hooks
        self.progress = trainer.progress
        self.device = device
        self.model = model.to(device)
        self.optimizer = make_optimizer(model, config)
        self.amp = config.amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if self.amp else None
        self.loader = make_loader(
            train_set,
            config.batch_size,
            shuffle=True,
            seed=config.seed,
            batch_sampler=batch_sampler,
        )
        self.val_loader = None if val_set is None else make_loader(val_set, config.batch_size)
        self.data = {
            "train_ids": getattr(train_set, "ids", None),
            "val_ids": getattr(val_set, "ids", None),
        }
        self.metadata = metadata
        self.loss_terms = [h for h in self.hooks if isinstance(h, LossTerm)]
        self.transforms = [h for h in self.hooks if isinstance(h, InputTransform)]
        self.history = History()
        self.step = 0
        self.best_val: float | None = None
        self.bad_epochs = 0
        self.out_dir: Path | None = None

    @property
    def generator(self) -> torch.Generator:
        return self.loader.generator

    def attach(self, out_dir: Path) -> None:
        """Checkpoint into ``out_dir``, first resuming from the checkpoint already there."""
        out_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir = out_dir
        if (out_dir / CHECKPOINT).exists():
            self._restore(read_checkpoint(out_dir / CHECKPOINT), out_dir / CHECKPOINT)

    def train(self) -> History:
        """Run the remaining epochs; return the full history."""
        if self._finished():
            return self.history
        model, optimizer, loader = self.model, self.optimizer, self.loader
        for hook in self.hooks:
            if isinstance(hook, Engine):
                model, optimizer, loader = hook.wrap(model, optimizer, loader)
        # A wrapper that hooks the layers in place (Opacus' GradSampleModule) hides the
        # model's methods; the original then computes losses, and the hooks still fire.
        if not isinstance(model, Trainable):
            model = self.model
        model.train()
        bar = make_progress() if self.progress else None
        with bar if bar is not None else contextlib.nullcontext():
            while not self._finished():
                self._epoch(model, optimizer, loader, bar)
                done = len(self.history.epochs)
                if self.out_dir is not None and (
                    done % self.config.checkpoint_every_epochs == 0 or self._finished()
                ):
                    self._save()
        return self.history

    def _finished(self) -> bool:
        return self.history.stopped is not None or len(self.history.epochs) >= self.config.epochs

    def _epoch(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loader: DataLoader,
        bar: Progress | None,
    ) -> None:
        epoch = len(self.history.epochs)
        set_epoch = getattr(self.loader.batch_sampler, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
        name = f"epoch {epoch + 1}/{self.config.epochs}"
        # An engine's loader (e.g. Poisson sampling) may not know its length in advance.
        size = len(loader) if hasattr(loader, "__len__") else None
        task = None if bar is None else bar.add_task(name, total=size)
        start = time.perf_counter()
        total, count, steps = 0.0, 0, 0
        for batch in loader:
            loss = self._train_step(model, optimizer, batch)
            size = len(batch.lengths)
            total, count, steps = total + loss * size, count + size, steps + 1
            self.step += 1
            if bar is not None and task is not None:
                bar.update(task, advance=1, description=f"{name} loss {total / count:.4f}")
            if self.config.max_steps is not None and self.step >= self.config.max_steps:
                self.history.stopped = "max_steps"
                break
        train_seconds = time.perf_counter() - start
        val_loss = None if self.val_loader is None else self._evaluate()
        self.history.epochs.append(
            EpochRecord(
                epoch=epoch + 1,
                steps=steps,
                train_loss=total / max(count, 1),
                val_loss=val_loss,
                seconds=time.perf_counter() - start,
                utterances_per_s=count / max(train_seconds, 1e-9),
            )
        )
        if val_loss is not None:
            self._watch(val_loss)

    def _train_step(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch
    ) -> float:
        batch = batch.to(self.device)
        for transform in self.transforms:
            batch = transform.transform(model, batch)
        # After the transforms: an adversarial transform may leave gradients of its own.
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, enabled=self.amp):
            loss = self._objective(model, batch)
        if not torch.isfinite(loss):
            raise VoxauditError(
                f"the training loss became {loss.item()} at step {self.step + 1}: "
                "lower lr or set grad_clip"
            )
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(optimizer)  # so grad_clip sees true gradient norms
        else:
            loss.backward()
        if self.config.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), self.config.grad_clip)
        if self.config.warmup_steps or self.config.decay_steps is not None:
            for group in optimizer.param_groups:
                group["lr"] = self.config.learning_rate(self.step)
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        return float(loss.detach())

    def _objective(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The model's loss plus every loss term, sharing one forward pass when possible."""
        if not self.loss_terms:
            return model.training_loss(batch)
        outputs = model.forward_features(batch.features, batch.lengths)
        if isinstance(model, OutputLoss):
            loss = model.loss_from_outputs(outputs, batch)
        else:
            loss = model.training_loss(batch)
        for term in self.loss_terms:
            loss = loss + term.term(model, batch, outputs)
        return loss

    def _evaluate(self) -> float:
        """Mean validation loss per utterance, in eval mode, without hooks."""
        assert self.val_loader is not None
        self.model.eval()
        total, count = 0.0, 0
        with torch.no_grad(), torch.autocast(self.device.type, enabled=self.amp):
            for batch in self.val_loader:
                size = len(batch.lengths)
                total += float(self.model.training_loss(batch.to(self.device))) * size
                count += size
        self.model.train()
        return total / max(count, 1)

    def _watch(self, val_loss: float) -> None:
        """Early stopping: count epochs since the validation loss last fell."""
        if self.best_val is None or val_loss < self.best_val:
            self.best_val, self.bad_epochs = val_loss, 0
            return
        self.bad_epochs += 1
        patience = self.config.early_stopping_patience
        if patience is not None and self.bad_epochs >= patience:
            self.history.stopped = "early_stopping"

    def _state(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "model_class": class_path(self.model),
            "model_config": self.model.config(),
            "model_state": self.model.state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "scaler_state": None if self.scaler is None else self.scaler.state_dict(),
            "train_config": self.config.to_dict(),
            "rng": _rng_state(self.generator),
            "progress": {
                "step": self.step,
                "best_val": self.best_val,
                "bad_epochs": self.bad_epochs,
            },
            "history": self.history.to_dict(),
            "data": self.data,
            "metadata": self.metadata,
            "hooks": [repr(h) for h in self.hooks],
            "hook_states": [
                {"class": class_path(h), "state": h.state_dict()}
                for h in self.hooks
                if isinstance(h, StatefulHook)
            ],
        }

    def _save(self) -> None:
        assert self.out_dir is not None
        state = self._state()
        write_atomically(self.out_dir / CHECKPOINT, lambda f: torch.save(state, f))
        text = json.dumps(self.history.to_dict(), indent=1) + "\n"
        write_atomically(self.out_dir / HISTORY, text)

    def _restore(self, state: dict[str, Any], path: Path) -> None:
        """Continue exactly where the checkpoint left off, refusing one from another run."""
        saved = TrainConfig.from_dict(state["train_config"]).to_dict()
        changed = [
            k
            for k, v in self.config.to_dict().items()
            if k not in RESUMABLE_CHANGES and saved[k] != v
        ]
        # Hooks that learn alongside the model resume with it. Checkpoints older than
        # "hook_states" did not keep them: their hooks start afresh, as they always did.
        stateful = [h for h in self.hooks if isinstance(h, StatefulHook)]
        saved_hooks = state.get("hook_states")
        mismatches = [
            (state["model_class"] != class_path(self.model), "another model class"),
            (
                json_key(state["model_config"]) != json_key(self.model.config()),
                "another model config",
            ),
            (bool(changed), f"other training settings ({', '.join(changed)})"),
            (json_key(state["data"]) != json_key(self.data), "other training data"),
            (json_key(state["metadata"]) != json_key(self.metadata), "other run metadata"),
            (
                saved_hooks is not None
                and [class_path(h) for h in stateful] != [h["class"] for h in saved_hooks],
                "other learning hooks (e.g. adversarial regularization)",
            ),
        ]
        for differs, what in mismatches:
            if differs:
                raise VoxauditError(
                    f"{path} holds a checkpoint made with {what}: use another output "
                    "directory, or delete it to start over"
                )
        self.model.load_state_dict(state["model_state"])
        self.optimizer.load_state_dict(state["optimizer_state"])
        if self.scaler is not None and state["scaler_state"] is not None:
            self.scaler.load_state_dict(state["scaler_state"])
        _set_rng_state(state["rng"], self.generator)
        for hook, saved in zip(stateful, saved_hooks or [], strict=False):
            hook.load_state_dict(saved["state"])
        self.history = History.from_dict(state["history"])
        self.step = state["progress"]["step"]
        self.best_val = state["progress"]["best_val"]
        self.bad_epochs = state["progress"]["bad_epochs"]
