"""The guard gateway: a FastAPI app in front of an ASR backend.

``POST /v1/transcribe`` (header ``X-API-Key``; body: one audio file, any format libsndfile
reads, any rate and channel count) decodes it to mono at the configured rate, fingerprints
it, checks it with the configured detectors and, unless flagged, forwards it to the backend
and returns ``{"text": ...}``. A flagged account is banned until an admin lifts the ban. How
its flagged query and its later ones are answered is ``flagged_response``: ``"refuse"`` (the
default) answers 403 (``flagged``, then ``banned``, with the reason). That 403 is an oracle
for an adaptive attacker (Feng et al., CCS 2023): it says which query was caught, so the
attacker switches account and strengthens its evasion. ``"degrade"`` answers them as it does
any account (same status, keys, headers and errors), but with the transcript of a copy of the
audio with white noise at ``degrade_snr_db``: nothing in the reply says it was caught, and
the attack's search is fed noise. Both record the flag and the ban alike, and both wait
``flagged_delay_s`` first (without holding up other requests). Admin endpoints take
``X-Admin-Key``:
``GET /admin/flags``, ``GET /admin/bans``, ``DELETE /admin/bans/{account}``. ``/healthz``
answers liveness (the process answers), ``/readyz`` readiness (503 while the store is
unreachable), ``/metrics`` Prometheus text. Bad input gets a 4xx with a JSON body
``{"error": code, "detail": message}``; a failing backend gets 502, an unreachable store 503.
"""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
import sqlite3
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import numpy as np
import soundfile as sf
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from voxaudit.data.audio import resample, to_mono
from voxaudit.errors import VoxauditError
from voxaudit.guard.backends import Backend, BackendError
from voxaudit.guard.config import GuardConfig
from voxaudit.guard.detectors import Decision, Detector, IndexDetector, MemoryDetector
from voxaudit.guard.fingerprint import Fingerprinter, add_noise
from voxaudit.guard.store import GuardStore, InMemoryStore, RedisStore, SQLiteStore

log = logging.getLogger(__name__)

# Sample rates an upload may have: telephony's lowest to studio's highest, with margin.
MIN_RATE, MAX_RATE = 1000, 384_000
# Bits per sample a WAV may declare, by format tag: integer PCM and IEEE float.
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
_WAV_BITS = {_PCM: (8, 16, 24, 32), _FLOAT: (32, 64)}


class RequestError(VoxauditError):
    """A request the gateway refuses: an HTTP status, a short code and a message."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code


def make_store(config: GuardConfig) -> GuardStore:
    """The store ``config.store`` names."""
    if config.store == "redis":
        return RedisStore(config.redis_url, prefix=config.redis_prefix, ttl_s=config.window_s)
    if config.store == "sqlite":
        return SQLiteStore(config.store_path)
    return InMemoryStore()


def make_detectors(config: GuardConfig, store: GuardStore) -> list[Detector]:
    """The detectors ``config.detectors`` names, with their calibrated thresholds."""
    made: dict[str, Detector] = {
        "index": IndexDetector(store, threshold=config.index_threshold, window_s=config.window_s),
        "memory": MemoryDetector(store, k=config.k, threshold=config.memory_threshold),
    }
    return [made[name] for name in config.detectors]


class Gateway:
    """Decode, fingerprint, check, forward: what the app does, without HTTP."""

    def __init__(
        self,
        config: GuardConfig,
        backend: Backend,
        store: GuardStore | None = None,
        fingerprinter: Fingerprinter | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.store = store if store is not None else make_store(config)
        self.fingerprinter = fingerprinter or Fingerprinter(
            sample_rate=config.sample_rate, noise_snr_db=config.fingerprint_noise_db
        )
        self.detectors = make_detectors(config, self.store)
        # Seeded from the OS: an attacker who could predict the noise could subtract it.
        self._degrade_rng = np.random.default_rng(secrets.randbits(128))
        # The detectors read then write shared state; one query at a time keeps that atomic.
        self._lock = threading.Lock()
        for detector in self.detectors:
            if detector.threshold is None:
                log.warning(
                    "%s detector has no threshold: it scores but never flags; run "
                    "`voxaudit guard calibrate`",
                    detector.name,
                )

    def account_for(self, api_key: str | None) -> str:
        """The account an API key belongs to, or a 401."""
        if api_key:
            for key, account in self.config.api_keys.items():
                if secrets.compare_digest(key.encode(), api_key.encode()):
                    return account
        raise RequestError(401, "unauthorized", "X-API-Key: missing or unknown API key")

    def check_admin(self, admin_key: str | None) -> None:
        expected = self.config.admin_key
        if (
            not expected
            or not admin_key
            or not secrets.compare_digest(expected.encode(), admin_key.encode())
        ):
            raise RequestError(401, "unauthorized", "X-Admin-Key: missing or wrong admin key")

    async def refuse_banned(self, account: str) -> RequestError | None:
        """The refusal a banned ``account`` has earned, or None if it is not banned. Under
        ``refuse`` it is answered here, before the upload is read; under ``degrade`` the caller
        hands it on, to be answered once the upload has passed the checks every account's
        does: an error or a wait that only banned accounts got would be an oracle too."""
        ban = self.store.ban_of(account)
        if ban is None:
            return None
        refusal = RequestError(403, "banned", f"account {account} is banned: {ban['reason']}")
        if self.config.flagged_response == "refuse":
            await self.answer_flagged(refusal)  # raises it
        return refusal

    async def answer_flagged(self, refusal: RequestError) -> None:
        """The response policy for a query of a flagged or banned account: wait
        ``flagged_delay_s`` (on the event loop, so other requests go on meanwhile), then raise
        ``refusal`` (``refuse``) or return, and the caller answers from ``degrade`` of the
        query (``degrade``)."""
        if self.config.flagged_delay_s > 0:
            await asyncio.sleep(self.config.flagged_delay_s)
        if self.config.flagged_response == "refuse":
            raise refusal

    def degrade(self, wave: np.ndarray) -> np.ndarray:
        """The copy of a flagged or banned account's query that the backend hears."""
        return add_noise(wave, self.config.degrade_snr_db, self._degrade_rng)

    def decode(self, body: bytes) -> np.ndarray:
        """Mono float32 samples of an uploaded file at ``config.sample_rate``, or a RequestError
        saying what is wrong. Any channel count is averaged to mono and any rate resampled."""
        config = self.config
        if not body:
            raise RequestError(400, "empty", "body: no audio (0 bytes)")
        if len(body) > config.max_bytes:
            raise RequestError(413, "too_large", f"body: over {config.max_bytes} bytes")
        problem = _wav_header_problem(body)
        if problem is not None:
            raise RequestError(400, "bad_header", f"body: {problem}")
        if _truncated_wav(body):
            raise RequestError(400, "truncated", "body: the WAV data chunk is cut short")
        try:
            with sf.SoundFile(io.BytesIO(body)) as f:
                rate, frames = int(f.samplerate), f.frames
                if not MIN_RATE <= rate <= MAX_RATE:
                    raise RequestError(
                        422,
                        "wrong_rate",
                        f"sample_rate: {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz",
                    )
                # By the header's frame count (what read() returns at most): nothing too long
                # is read or resampled.
                if frames / rate > config.max_seconds:
                    raise RequestError(
                        413,
                        "too_long",
                        f"duration: {frames / rate:.1f} s is over {config.max_seconds} s",
                    )
                samples = f.read(dtype="float32", always_2d=True)
        except RequestError:
            raise
        except Exception as exc:  # libsndfile raises several types for unreadable input
            raise RequestError(
                415, "not_audio", f"body: not readable audio ({_plain(exc)})"
            ) from exc
        wave = to_mono(samples)
        if wave.size == 0:
            raise RequestError(400, "empty", "body: the audio has no samples")
        seconds = wave.size / rate
        if seconds < config.min_seconds:
            raise RequestError(
                400, "too_short", f"duration: {seconds:.3f} s is under {config.min_seconds} s"
            )
        # Before resampling: the filter would smear one bad sample over its neighbours.
        if not np.isfinite(wave).all():
            raise RequestError(422, "not_finite", "samples: NaN or infinite values")
        return resample(wave, rate, config.sample_rate)

    def check(self, account: str, wave: np.ndarray) -> list[Decision]:
        """Every detector's decision on the query; bans and records the flagged ones."""
        fingerprint = self.fingerprinter(wave, self.config.sample_rate)
        stamp = time.time()
        with self._lock:
            decisions = [d.check(account, fingerprint, stamp) for d in self.detectors]
            for decision in decisions:
                if decision.flagged:
                    self._ban(account, decision, stamp)
        return decisions

    def _ban(self, account: str, decision: Decision, stamp: float) -> None:
        record = {"account": account, "time": stamp, **asdict(decision)}
        record["related"] = list(decision.related)
        self.store.add_flag(record)
        self.store.ban(account, {"reason": decision.reason, "time": stamp})
        if self.config.ban_related:
            for other in decision.related:
                reason = f"its queries matched a flagged query of {account}: {decision.reason}"
                self.store.ban(other, {"reason": reason, "time": stamp})


class Metrics:
    """The gateway's Prometheus metrics, in a registry of its own."""

    def __init__(self, gateway: Gateway) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "voxaudit_guard_requests",
            "Transcription requests by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.flags = Counter(
            "voxaudit_guard_flags",
            "Queries flagged, by detector",
            ["detector"],
            registry=self.registry,
        )
        self.degraded = Counter(
            "voxaudit_guard_degraded",
            "Queries answered from a degraded copy, by why (flagged, banned)",
            ["reason"],
            registry=self.registry,
        )
        self.check_seconds = Histogram(
            "voxaudit_guard_check_seconds",
            "Fingerprint and detector time per query",
            registry=self.registry,
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
        )
        bans = Gauge("voxaudit_guard_bans", "Accounts banned now", registry=self.registry)
        bans.set_function(lambda: len(gateway.store.bans()))

    def text(self) -> bytes:
        return generate_latest(self.registry)


def create_app(gateway: Gateway) -> FastAPI:
    """The HTTP layer over ``gateway``."""
    app = FastAPI(title="voxaudit guard", version="1")
    metrics = Metrics(gateway)
    app.state.gateway = gateway
    app.state.metrics = metrics

    @app.exception_handler(RequestError)
    async def refused(_: Request, exc: RequestError) -> JSONResponse:
        metrics.requests.labels(exc.code).inc()
        return JSONResponse({"error": exc.code, "detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(BackendError)
    async def backend_failed(_: Request, exc: BackendError) -> JSONResponse:
        metrics.requests.labels("backend_error").inc()
        return JSONResponse({"error": "backend_error", "detail": str(exc)}, status_code=502)

    async def store_down(_: Request, exc: Exception) -> JSONResponse:
        metrics.requests.labels("store_unavailable").inc()
        detail = f"store: the guard's state is unreachable ({type(exc).__name__})"
        return JSONResponse({"error": "store_unavailable", "detail": detail}, status_code=503)

    # A locked, full or unreadable SQLite file is the store failing, not the request.
    app.add_exception_handler(sqlite3.Error, store_down)
    try:
        from redis.exceptions import RedisError
    except ImportError:  # without the redis client there is no Redis store to fail
        pass
    else:
        app.add_exception_handler(RedisError, store_down)

    async def guarded(account: str, body: bytes, refusal: RequestError | None) -> tuple[str, float]:
        """Decode, check and transcribe one upload of ``account``: its transcript and length in
        seconds, or a RequestError. ``refusal`` is the ban ``refuse_banned`` handed on; such
        a query is not checked again (under ``refuse`` it never gets here), and a flagged or
        banned one is answered as ``Gateway.answer_flagged`` decides."""
        # Decoding and resampling take CPU time: off the event loop, like the checks.
        wave = await run_in_threadpool(gateway.decode, body)
        if refusal is None:
            started = time.perf_counter()
            decisions = await run_in_threadpool(gateway.check, account, wave)
            metrics.check_seconds.observe(time.perf_counter() - started)
            flagged = [d for d in decisions if d.flagged]
            for decision in flagged:
                metrics.flags.labels(decision.detector).inc()
            if flagged:
                refusal = RequestError(403, "flagged", flagged[0].reason)
        if refusal is not None:
            await gateway.answer_flagged(refusal)  # under refuse, raises it
            wave = await run_in_threadpool(gateway.degrade, wave)
            metrics.degraded.labels(refusal.code).inc()
        text = await run_in_threadpool(gateway.backend.transcribe, wave, gateway.config.sample_rate)
        # Outcomes as under refuse: "flagged" and "banned" count the same in either mode.
        metrics.requests.labels("ok" if refusal is None else refusal.code).inc()
        return text, len(wave) / gateway.config.sample_rate

    @app.post("/v1/transcribe")
    async def transcribe(request: Request) -> dict[str, Any]:
        account = gateway.account_for(request.headers.get("x-api-key"))
        refusal = await gateway.refuse_banned(account)
        body = await _read_limited(request, gateway.config.max_bytes)
        text, _ = await guarded(account, body, refusal)
        return {"text": text}

    @app.post("/v1/audio/transcriptions", response_model=None)
    async def openai_transcriptions(request: Request) -> dict[str, Any] | PlainTextResponse:
        """OpenAI's transcription API, so the gateway drops in front of Whisper-style servers
        and their clients: multipart ``file`` (any rate and channel count), ``model``
        (recorded, not chosen: the gateway has one backend), ``response_format`` (``json``,
        ``text`` or ``verbose_json``); the key as ``Authorization: Bearer`` or ``X-API-Key``."""
        account = gateway.account_for(_api_key(request))
        refusal = await gateway.refuse_banned(account)
        declared = int(request.headers.get("content-length") or 0)
        if declared > gateway.config.max_bytes + MULTIPART_SLACK:
            raise RequestError(413, "too_large", f"upload over {gateway.config.max_bytes} bytes")
        form = await _form(request)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise RequestError(400, "bad_request", "multipart field 'file' (the audio) is missing")
        body = await upload.read(gateway.config.max_bytes + 1)
        if len(body) > gateway.config.max_bytes:
            raise RequestError(413, "too_large", f"upload over {gateway.config.max_bytes} bytes")
        response_format = str(form.get("response_format") or "json")
        if response_format not in OPENAI_FORMATS:
            raise RequestError(
                400, "bad_request",
                f"response_format {response_format!r}: use one of {', '.join(OPENAI_FORMATS)}",
            )  # fmt: skip
        text, seconds = await guarded(account, body, refusal)
        if response_format == "text":
            return PlainTextResponse(text)
        if response_format == "verbose_json":
            return {"task": "transcribe", "duration": round(seconds, 3), "text": text}
        return {"text": text}

    @app.get("/admin/flags")
    def admin_flags(request: Request) -> dict[str, Any]:
        gateway.check_admin(request.headers.get("x-admin-key"))
        return {"flags": gateway.store.flags()}

    @app.get("/admin/bans")
    def admin_bans(request: Request) -> dict[str, Any]:
        gateway.check_admin(request.headers.get("x-admin-key"))
        return {"bans": gateway.store.bans()}

    @app.delete("/admin/bans/{account}")
    def admin_unban(account: str, request: Request) -> dict[str, Any]:
        gateway.check_admin(request.headers.get("x-admin-key"))
        if not gateway.store.unban(account):
            raise RequestError(404, "not_banned", f"account: {account} is not banned")
        # A lifted ban starts from a clean memory, or the next query would flag again.
        gateway.store.memory_clear(account)
        return {"unbanned": account}

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        """Liveness: the process answers, whatever the state of its store."""
        return {"status": "ok", "detectors": [d.name for d in gateway.detectors]}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        """Readiness: 200 when the store answers, 503 while it does not (e.g. Redis down)."""
        try:
            reachable = gateway.store.ping()
            problem = "" if reachable else "the store did not answer"
        except Exception as exc:  # any failure to reach the store means "not ready"
            reachable, problem = False, f"{type(exc).__name__}: {exc}"
        if not reachable:
            detail = f"store: the guard's state is unreachable ({problem})"
            return JSONResponse({"status": "unavailable", "detail": detail}, status_code=503)
        return JSONResponse({"status": "ready", "store": type(gateway.store).__name__})

    @app.get("/metrics")
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.text(), media_type=CONTENT_TYPE_LATEST)

    return app


async def _read_limited(request: Request, limit: int) -> bytes:
    """The request body, refusing it (413) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, "too_large", f"body: over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, "too_large", f"body: over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _riff_chunks(body: bytes) -> Iterator[tuple[bytes, int, int]]:
    """``(id, offset of its data, declared size)`` of each chunk of a RIFF/WAVE body, in order;
    nothing for a body that is no RIFF/WAVE file."""
    if len(body) < 12 or body[:4] != b"RIFF" or body[8:12] != b"WAVE":
        return
    position = 12
    while position + 8 <= len(body):
        chunk_id = body[position : position + 4]
        (size,) = struct.unpack("<I", body[position + 4 : position + 8])
        yield chunk_id, position + 8, size
        position += 8 + size + (size & 1)  # chunks are padded to an even length


def _wav_header_problem(body: bytes) -> str | None:
    """What is wrong with a WAV body's ``fmt`` chunk, or None. libsndfile accepts some invalid
    headers silently: 7 bits per sample, for one, is read as 8."""
    for chunk_id, start, size in _riff_chunks(body):
        if chunk_id != b"fmt ":
            continue
        if size < 16 or start + 16 > len(body):
            return "the WAV fmt chunk is too short"
        tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[start : start + 16])
        if tag == _EXTENSIBLE and size >= 40 and start + 40 <= len(body):
            # The real format is the first two bytes of the sub-format GUID.
            (tag,) = struct.unpack("<H", body[start + 24 : start + 26])
        if channels == 0:
            return "the WAV header declares 0 channels"
        if rate == 0:
            return "the WAV header declares a sample rate of 0 Hz"
        allowed = _WAV_BITS.get(tag)
        if allowed is not None and bits not in allowed:
            listed = "/".join(str(b) for b in allowed)
            return f"the WAV header declares {bits} bits per sample; {listed} expected"
        return None
    return None


def _truncated_wav(body: bytes) -> bool:
    """Whether a RIFF/WAVE body declares more data than it holds (libsndfile reads what there
    is and says nothing). Streamed WAVs that declare no size are not judged."""
    for chunk_id, start, size in _riff_chunks(body):
        if chunk_id == b"data":
            return size not in (0, 0xFFFFFFFF) and start + size > len(body)
    return False


def _plain(exc: Exception) -> str:
    """An exception as text a client may see: libsndfile's own message where there is one
    (its ``str`` names the Python file object it read, address and all), else the type."""
    message = getattr(exc, "error_string", None)
    return str(message) if message else type(exc).__name__


#: What ``/v1/audio/transcriptions`` answers in (OpenAI's names; subtitles are not offered).
OPENAI_FORMATS = ("json", "text", "verbose_json")
#: Room for the multipart envelope and form fields around an upload of ``max_bytes``.
MULTIPART_SLACK = 64 * 1024


def _api_key(request: Request) -> str | None:
    """The API key of a request: ``X-API-Key``, or OpenAI clients' ``Authorization: Bearer``."""
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


async def _form(request: Request) -> Any:
    """The multipart form of a request; a malformed one is a 400, never a 500."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise RequestError(415, "unsupported_media_type", "send multipart/form-data with a file")
    try:
        return await request.form(max_files=1, max_fields=16)
    except Exception as exc:  # starlette raises its own MultiPartException / HTTPException
        raise RequestError(
            400, "bad_request", f"malformed multipart body ({type(exc).__name__})"
        ) from exc
