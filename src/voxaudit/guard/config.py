"""Gateway settings: defaults, then a ``.toml``/``.json`` file, then ``VOXAUDIT_GUARD_*`` env vars.

File keys and environment variables share the field names (``admin_key`` in the file,
``VOXAUDIT_GUARD_ADMIN_KEY`` in the environment). ``api_keys`` maps each key to its account;
in the environment it is ``key1=account1,key2=account2``. ``detectors`` is a list in the file
and ``index,memory`` in the environment. Thresholds come from ``voxaudit guard calibrate``.
``fingerprint_noise_db`` (``[25, 75]`` in the file, ``25,75`` in the environment) turns on
paper 003's robust variant: noise at an SNR drawn from that range is added to each query
before it is fingerprinted; calibrate with the same setting. File values must have the field's
type (``k = 75``, not ``k = "75"``; ``"none"`` for an unset threshold) and the error names the
file and the key; environment values are text, read as the field's type. ``store`` is
``"sqlite"`` (the default: one file at ``store_path``, kept across restarts), ``"memory"``
(lost when the process ends) or ``"redis"`` (``redis_url``, shared by replicas).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

from voxaudit.config import checked, field_types, read_config_file
from voxaudit.errors import VoxauditError
from voxaudit.files import write_atomically

ENV_PREFIX = "VOXAUDIT_GUARD_"
DETECTORS = ("index", "memory")
STORES = ("sqlite", "memory", "redis")
FLAGGED_RESPONSES = ("refuse", "degrade")


@dataclass(frozen=True)
class GuardConfig:
    """Everything ``voxaudit guard serve`` needs; see the module docstring for the sources."""

    api_keys: dict[str, str] = field(default_factory=dict)
    admin_key: str = ""
    backend: str = "pocketsphinx"  # a run folder, "pocketsphinx", or an http(s) URL
    backend_timeout_s: float = 30.0
    # In-process models are loaded this many times, so that many requests decode at once (a
    # decoder serves one request at a time: requests never share one mid-utterance).
    backend_workers: int = 2
    detectors: tuple[str, ...] = ("index", "memory")
    index_threshold: float | None = None
    memory_threshold: float | None = None
    k: int = 75
    window_s: float = 24 * 3600.0
    fingerprint_noise_db: tuple[float, float] | None = None  # paper 003's robust variant
    # Also ban the accounts whose own variants a flagged query matched (a Sybil attack's other
    # accounts); opt-in. A recording several accounts sent is never held against them.
    ban_related: bool = False
    # How a flagged query, and every later query of a banned account, is answered. "refuse": a
    # 403 ("flagged", then "banned"). But a 403 tells an adaptive attacker (Feng et al., CCS
    # 2023) which query was caught, so it switches account and strengthens its evasion.
    # "degrade": a 200 like any other answer, of a copy of the audio with white noise at
    # degrade_snr_db: the attacker cannot tell it was caught, and its search gets bad feedback.
    # Either way the flag and the ban are recorded for the admin endpoints.
    flagged_response: str = "refuse"
    degrade_snr_db: float = 0.0  # 0 dB: noise as loud as the speech
    # Seconds a flagged or banned account waits for its answer, in either mode: it slows an
    # attack down. Under "degrade" a wait longer than the backend's usual jitter is itself a
    # sign an attacker can time, so keep it small there.
    flagged_delay_s: float = 0.0
    store: str = "sqlite"  # state that survives a restart; "memory" forgets it, "redis" shares it
    store_path: str = "voxaudit-guard.sqlite"  # the SQLite store's file, relative to the cwd
    redis_url: str = "redis://localhost:6379/0"
    redis_prefix: str = "voxaudit:guard"
    sample_rate: int = 16000
    max_bytes: int = 4 * 1024 * 1024
    max_seconds: float = 30.0
    min_seconds: float = 0.1

    def __post_init__(self) -> None:
        unknown = set(self.detectors) - set(DETECTORS)
        if unknown or not self.detectors:
            raise VoxauditError(f"detectors: choose from {', '.join(DETECTORS)}; got {unknown}")
        if self.store not in STORES:
            raise VoxauditError(f"store: one of {', '.join(STORES)}; got {self.store!r}")
        if self.store == "sqlite" and not self.store_path:
            raise VoxauditError("store_path: the SQLite store needs a file; got ''")
        for name in ("max_bytes", "max_seconds", "sample_rate", "k", "backend_workers"):
            if getattr(self, name) <= 0:
                raise VoxauditError(f"{name}: must be positive; got {getattr(self, name)}")
        if self.flagged_response not in FLAGGED_RESPONSES:
            raise VoxauditError(
                f"flagged_response: one of {', '.join(FLAGGED_RESPONSES)}; "
                f"got {self.flagged_response!r}"
            )
        if not math.isfinite(self.degrade_snr_db):
            raise VoxauditError(f"degrade_snr_db: must be finite; got {self.degrade_snr_db}")
        if not 0 <= self.flagged_delay_s < math.inf:  # NaN fails too
            raise VoxauditError(
                f"flagged_delay_s: must be finite and >= 0; got {self.flagged_delay_s}"
            )
        noise = self.fingerprint_noise_db
        if noise is not None and not (len(noise) == 2 and noise[0] <= noise[1]):
            raise VoxauditError(f"fingerprint_noise_db: [low, high] dB, low <= high; got {noise}")


def load_config(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> GuardConfig:
    """Defaults, overridden by the file at ``path`` (if any), overridden by the environment."""
    values: dict[str, Any] = {}
    if path is not None:
        values.update(checked(read_config_file(path), field_types(GuardConfig), str(path)))
    environ = os.environ if environ is None else environ
    for known in fields(GuardConfig):
        raw = environ.get(ENV_PREFIX + known.name.upper())
        if raw is not None:
            values[known.name] = _typed(known.name, _from_env(known.name, raw), known.type)
    return GuardConfig(**values)


def save_thresholds(
    path: str | Path, thresholds: Mapping[str, float], settings: Mapping[str, Any] | None = None
) -> None:
    """Write ``{detector}_threshold`` settings, and any other ``settings`` they were calibrated
    with, into the TOML file at ``path``, keeping the rest."""
    path = Path(path)
    if path.suffix != ".toml":
        raise VoxauditError(f"{path}: calibrate writes a .toml config file")
    values = read_config_file(path) if path.exists() else {}
    values.update({f"{name}_threshold": float(value) for name, value in thresholds.items()})
    values.update(settings or {})
    write_atomically(path, tomli_w.dumps(values))


def _from_env(name: str, raw: str) -> Any:
    if name == "api_keys":
        pairs = [item.split("=", 1) for item in raw.split(",") if item.strip()]
        if any(len(p) != 2 for p in pairs):
            raise VoxauditError(f"{ENV_PREFIX}API_KEYS: expected key=account pairs; got {raw!r}")
        return {k.strip(): v.strip() for k, v in pairs}
    if name == "detectors":
        return [item.strip() for item in raw.split(",") if item.strip()]
    if name == "fingerprint_noise_db":
        return [item.strip() for item in raw.split(",")] if raw.strip() else None
    return raw


def _typed(name: str, value: Any, annotation: Any) -> Any:
    """``value`` (from the environment: text, or as ``_from_env`` split it) converted to the
    field's type, or an error naming the field."""
    kind = str(annotation)
    try:
        if kind == "bool":
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("1", "true", "yes")
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "float | None":
            return None if value in (None, "", "none") else float(value)
        if kind == "tuple[str, ...]":
            return tuple(value)
        if kind == "tuple[float, float] | None":
            if value in (None, "", "none"):
                return None
            pair = tuple(float(v) for v in value)
            if len(pair) != 2:
                raise ValueError(value)
            return pair
        if kind == "dict[str, str]":
            if not isinstance(value, Mapping):
                raise ValueError(value)
            return {str(k): str(v) for k, v in value.items()}
        return str(value)
    except (TypeError, ValueError) as exc:
        raise VoxauditError(f"{name}: cannot read {value!r} as {kind}") from exc
