"""The built-in synthetic multi-speaker corpus: eSpeak NG voices turned into distinct speakers.

Each speaker is an eSpeak NG accent and voice variant plus a pitch, intonation range,
speaking rate, vocal-tract length and microphone of its own. Each take adds its own tempo and
pitch wobble, a small room, background noise and a level, so two takes of one sentence by one
speaker never match. Everything is seeded: a corpus is the same for the same seed on any
number of worker processes.
"""

from __future__ import annotations

import _ctypes
import contextlib
import csv
import ctypes
import functools
import io
import json
import math
import multiprocessing
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import espeakng_loader
import numpy as np
import scipy.fft
from scipy.signal import butter, fftconvolve, lfilter, sosfilt

from voxaudit.data.audio import AudioError, audio_info, resample, write_audio
from voxaudit.data.corpus import Corpus, Utterance
from voxaudit.data.sentences import generate_sentences, spoken_form
from voxaudit.errors import VoxauditError
from voxaudit.files import write_atomically
from voxaudit.progress import track

#: Bump when the same seed would give different audio, so a resumed corpus refuses to mix.
SYNTH_VERSION = 1

#: eSpeak NG accents of English, as language voice names.
ACCENTS = (
    "en-us", "en-us-nyc", "en", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan",
    "en-gb-x-gbcwmd", "en-029",
)  # fmt: skip

#: Voice variants left out: whispered ones (no voicing: caleb, whisper, whisperf) and effect
#: voices that do not sound like a person (robots, a demon, a PA announcer, loud echoes,
#: a doubled or removed third formant).
EXCLUDED_VARIANTS = frozenset(
    {"caleb", "whisper", "whisperf", "Demonic", "UniRobot", "anikaRobot", "announcer"}
    | {"RicishayMax", "RicishayMax2", "RicishayMax3", "Tweaky", "Lee"}
    | {"robosoft", *(f"robosoft{i}" for i in range(2, 9))}
)

ESPEAK_RATE = 22050  # eSpeak NG always renders at this rate

# speak_lib.h constants.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # report a bad data path instead of exiting the process
_POS_CHARACTER = 1
_CHARS_AUTO = 0
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE = 1, 3, 4

_SPEAKER_STREAM, _UTTERANCE_STREAM = 1, 2  # keep speaker and take randomness independent


@dataclass(frozen=True)
class EqBand:
    """One biquad of a microphone response (RBJ cookbook): "peak", "lowshelf" or "highshelf"."""

    kind: str
    freq: float
    gain_db: float
    q: float


@dataclass(frozen=True)
class Channel:
    """A fixed microphone and line response: band limits plus a few EQ bands."""

    highpass_hz: float
    lowpass_hz: float
    bands: tuple[EqBand, ...]


@dataclass(frozen=True)
class SpeakerProfile:
    """Everything that makes one synthetic speaker sound like themselves."""

    id: str
    accent: str
    variant: str
    pitch: int  # eSpeak pitch, 0-100: 50 is the variant's own, one octave per 50 steps
    pitch_range: int  # eSpeak intonation range, 0-100: 50 is normal, 0 monotone
    rate: int  # words per minute
    alpha: float  # vocal-tract length factor: formants are scaled by alpha
    channel: Channel

    @property
    def voice(self) -> str:
        return f"{self.accent}+{self.variant}"

    def key(self) -> tuple[str, str, int, int, int, float]:
        """The voice settings that must differ between any two speakers."""
        return (self.accent, self.variant, self.pitch, self.pitch_range, self.rate, self.alpha)


# -- eSpeak NG through ctypes -------------------------------------------------------------

_CALLBACK_TYPE = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)
_chunks: list[np.ndarray] = []


def _collect(wav: ctypes._Pointer, count: int, _events: int) -> int:
    if wav and count > 0:
        _chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
    return 0  # 0 = continue synthesis


# Module-level so the C library never calls into a garbage-collected trampoline.
_CALLBACK = _CALLBACK_TYPE(_collect)

# The Klatt voices' breath noise comes from the C library's rand(), so it is seeded too.
_LIBC = ctypes.CDLL(None) if os.name == "posix" else None


@functools.cache
def _data_path() -> Path:
    return Path(espeakng_loader.get_data_path())


def _bind(lib: ctypes.CDLL) -> None:
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK_TYPE]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_Info.argtypes = [ctypes.c_void_p]
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
        ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
    ]  # fmt: skip


@contextlib.contextmanager
def _engine(seed: int) -> Iterator[ctypes.CDLL]:
    """A freshly loaded, initialized eSpeak NG whose random generators start from ``seed``."""
    # eSpeak NG keeps synthesis state in C statics that no API call resets (the pitch flutter
    # phase, the AGC gain, the glottal cycle count), so one call's audio depends on what was
    # said before it. Loading the library afresh for each utterance (well under a millisecond)
    # makes the audio depend on its own inputs only, whatever the worker count or order (as
    # long as nothing else in the process holds the same library open).
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    try:
        _bind(lib)
        data = str(_data_path()).encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, _INITIALIZE_DONT_EXIT)
        if rate != ESPEAK_RATE:
            raise RuntimeError(f"eSpeak NG failed to initialize from {_data_path()} ({rate})")
        lib.espeak_SetSynthCallback(_CALLBACK)
        lib.espeak_ng_SetRandSeed(seed)
        if _LIBC is not None:
            _LIBC.srand(seed)
        yield lib
    finally:
        lib.espeak_Terminate()
        _unload(lib)


def _unload(lib: ctypes.CDLL) -> None:
    if os.name == "nt":
        _ctypes.FreeLibrary(lib._handle)  # type: ignore[attr-defined]
    else:
        _ctypes.dlclose(lib._handle)  # type: ignore[attr-defined]


def espeak_version() -> str:
    """The eSpeak NG version that renders the voices."""
    with _engine(0) as lib:
        return lib.espeak_Info(None).decode()


def speak(
    text: str, voice: str, rate: int, pitch: int, pitch_range: int, seed: int = 0
) -> np.ndarray:
    """Raw eSpeak NG speech at ``ESPEAK_RATE`` as float32 in [-1, 1]."""
    _chunks.clear()
    with _engine(seed) as lib:
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise VoxauditError(f"eSpeak NG has no voice {voice!r}")
        lib.espeak_SetParameter(_PARAM_RATE, int(np.clip(rate, 80, 450)), 0)
        lib.espeak_SetParameter(_PARAM_PITCH, int(np.clip(pitch, 0, 100)), 0)
        lib.espeak_SetParameter(_PARAM_RANGE, int(np.clip(pitch_range, 0, 100)), 0)
        data = text.encode() + b"\0"
        lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_AUTO, None, None)
        lib.espeak_Synchronize()
    samples = np.concatenate(_chunks) if _chunks else np.zeros(0, np.int16)
    _chunks.clear()
    return samples.astype(np.float32) / 32768.0


@functools.cache
def variants() -> tuple[str, ...]:
    """The eSpeak NG voice variants used for speakers, sorted."""
    names = os.listdir(_data_path() / "voices" / "!v")
    return tuple(sorted(n for n in names if n not in EXCLUDED_VARIANTS))


@functools.cache
def _variant_gender(variant: str) -> str:
    text = (_data_path() / "voices" / "!v" / variant).read_text("utf-8", errors="replace")
    found = re.search(r"^\s*gender\s+(\w+)", text, re.MULTILINE | re.IGNORECASE)
    return found.group(1).lower() if found else ""


# -- speakers -----------------------------------------------------------------------------


def make_speakers(n: int, seed: int = 0) -> list[SpeakerProfile]:
    """``n`` distinct speakers; the first k are the same for any n >= k."""
    combos = [(accent, variant) for accent in ACCENTS for variant in variants()]
    order = np.random.default_rng([seed, _SPEAKER_STREAM]).permutation(len(combos))
    speakers: list[SpeakerProfile] = []
    seen: set[tuple] = set()
    for i in range(n):
        # Accent and variant come round-robin from one shuffle, so every accent and variant is
        # used about equally and no single setting tells speakers apart.
        accent, variant = combos[order[i % len(combos)]]
        rng = np.random.default_rng([seed, _SPEAKER_STREAM, i])
        profile = _draw_speaker(f"spk{i + 1:04d}", accent, variant, rng)
        while profile.key() in seen:
            profile = _draw_speaker(profile.id, accent, variant, rng)
        seen.add(profile.key())
        speakers.append(profile)
    return speakers


def _draw_speaker(
    speaker_id: str, accent: str, variant: str, rng: np.random.Generator
) -> SpeakerProfile:
    # Female variants get shorter vocal tracts on average, male ones longer, as in people.
    low, high = {"female": (0.95, 1.18), "male": (0.85, 1.08)}.get(
        _variant_gender(variant), (0.88, 1.12)
    )
    return SpeakerProfile(
        id=speaker_id,
        accent=accent,
        variant=variant,
        pitch=int(np.clip(round(rng.normal(50, 9)), 30, 70)),
        pitch_range=int(rng.integers(25, 86)),
        rate=int(rng.integers(135, 196)),
        alpha=round(float(rng.uniform(low, high)), 3),
        channel=_draw_channel(rng),
    )


def _draw_channel(rng: np.random.Generator) -> Channel:
    telephone = rng.random() < 0.2
    lowpass = rng.uniform(3400, 4500) if telephone else rng.uniform(5500, 8000)
    kinds = rng.choice(["peak", "peak", "lowshelf", "highshelf"], size=int(rng.integers(2, 4)))
    spans = {"peak": (200, 5000), "lowshelf": (100, 400), "highshelf": (2000, 6000)}
    bands = tuple(
        EqBand(
            kind=str(kind),
            freq=round(math.exp(rng.uniform(*np.log(spans[kind])))),
            gain_db=round(float(rng.uniform(-8, 8)), 1),
            q=round(float(rng.uniform(0.7, 2.5)), 2) if kind == "peak" else 0.71,
        )
        for kind in kinds
    )
    highpass = round(math.exp(rng.uniform(math.log(50), math.log(250))))
    return Channel(highpass_hz=highpass, lowpass_hz=round(lowpass), bands=bands)


# -- one utterance ------------------------------------------------------------------------


def synthesize(
    text: str, speaker: SpeakerProfile, seed: int | np.random.SeedSequence, sample_rate: int = 16000
) -> np.ndarray:
    """One take of ``text`` by ``speaker`` as float32 mono at ``sample_rate``."""
    rng = np.random.default_rng(seed)
    tempo = rng.uniform(0.94, 1.06)
    pitch = speaker.pitch + rng.uniform(-3, 3)
    pitch_range = speaker.pitch_range + int(rng.integers(-5, 6))
    # Vocal-tract warp without a vocoder: read eSpeak's 22050 Hz buffer as if it had been
    # sampled at 22050 * alpha and resample that to the output rate. Every frequency (formants
    # and pitch) scales by alpha and the duration by 1 / alpha. Asking eSpeak beforehand for
    # pitch, intonation range and rate divided by alpha (pitch has 50 steps per octave) cancels
    # the tempo change and all but about 3% of the pitch change, so mainly the formants move:
    # a shorter or longer vocal tract, the same voice otherwise.
    raw = speak(
        text,
        speaker.voice,
        rate=round(speaker.rate * tempo / speaker.alpha),
        pitch=round(pitch - 50 * math.log2(speaker.alpha)),
        pitch_range=round(pitch_range / speaker.alpha),
        seed=int(rng.integers(2**31)),
    )
    trimmed = _trim(raw, ESPEAK_RATE)
    if trimmed.size == 0:
        raise VoxauditError(f"eSpeak NG produced no audio for {text!r}")
    speech = resample(trimmed, round(ESPEAK_RATE * speaker.alpha), sample_rate)
    lead, tail = (int(rng.uniform(0.1, 0.35) * sample_rate) for _ in range(2))
    speech = np.pad(speech, (lead, tail))
    room = fftconvolve(speech, _room_response(rng, sample_rate))[: speech.size]
    snr_db = rng.uniform(15, 40)
    noise = _noise(rng, room.size) * math.sqrt(
        _speech_power(room, sample_rate) / 10 ** (snr_db / 10)
    )
    heard = sosfilt(_channel_filter(speaker.channel, sample_rate), room + noise)
    peak = rng.uniform(0.3, 0.9)
    return (heard * (peak / np.abs(heard).max())).astype(np.float32)


def _trim(samples: np.ndarray, rate: int, floor_db: float = -45.0) -> np.ndarray:
    """Cut the silence eSpeak leaves before and after speech, keeping 20-30 ms margins."""
    frame = rate // 100
    frames = samples[: samples.size // frame * frame].reshape(-1, frame)
    if frames.size == 0:
        return samples[:0]
    energy = (frames**2).mean(axis=1)
    if energy.max() == 0:
        return samples[:0]
    loud = np.flatnonzero(energy > energy.max() * 10 ** (floor_db / 10))
    return samples[max(0, (loud[0] - 2) * frame) : (loud[-1] + 3) * frame]


def _room_response(rng: np.random.Generator, rate: int) -> np.ndarray:
    """A small room: the direct path plus exponentially decaying noise (RT60 0.1-0.4 s)."""
    # Hand-written because no measured room responses ship offline and pyroomacoustics would be
    # a heavy dependency for what a decaying noise tail models well enough at these sizes.
    rt60 = rng.uniform(0.1, 0.4)
    t = np.arange(int(rt60 * rate)) / rate
    tail = rng.standard_normal(t.size) * np.exp(-math.log(1000) * t / rt60)  # -60 dB at rt60
    damping = rng.uniform(0.2, 0.6)  # walls absorb high frequencies first: darken the tail
    tail = lfilter([1 - damping], [1, -damping], tail)
    tail[: int(rng.uniform(0.002, 0.012) * rate)] = 0.0  # first reflections arrive late
    direct_to_reverb = 10 ** (rng.uniform(3, 15) / 10)
    tail *= math.sqrt(1.0 / (direct_to_reverb * float(np.sum(tail**2))))
    tail[0] = 1.0
    return tail


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-power background noise: a random mix of white, pink and brown."""
    size = scipy.fft.next_fast_len(n, real=True)  # odd lengths make the FFT many times slower
    spectrum = scipy.fft.rfft(rng.standard_normal(size))
    bins = np.arange(1, spectrum.size + 1, dtype=np.float64)  # from 1: no division by zero at DC
    shapes = [bins ** (-slope / 2) for slope in range(3)]  # power ~ 1, 1/f, 1/f^2
    weights = rng.dirichlet(np.ones(3))
    gain = sum(w * s / np.sqrt(np.mean(s**2)) for w, s in zip(weights, shapes, strict=True))
    noise = scipy.fft.irfft(spectrum * gain, size)[:n]
    return noise / np.sqrt(np.mean(noise**2))


def _speech_power(samples: np.ndarray, rate: int) -> float:
    """Mean power of the 10 ms frames within 30 dB of the loudest: speech, not the pauses."""
    frame = rate // 100
    energy = (samples[: samples.size // frame * frame].reshape(-1, frame) ** 2).mean(axis=1)
    return float(energy[energy > energy.max() * 1e-3].mean())


@functools.lru_cache(maxsize=4096)
def _channel_filter(channel: Channel, rate: int) -> np.ndarray:
    """Second-order sections of a speaker's microphone at ``rate``."""
    usable = 0.45 * rate  # leave out limits and bands that the output rate cannot carry
    sections = [butter(2, channel.highpass_hz, "highpass", fs=rate, output="sos")]
    if channel.lowpass_hz < usable:
        sections.append(butter(4, channel.lowpass_hz, "lowpass", fs=rate, output="sos"))
    sections += [_biquad(band, rate) for band in channel.bands if band.freq < usable]
    return np.vstack(sections)


def _biquad(band: EqBand, rate: int) -> np.ndarray:
    """One RBJ-cookbook peaking or shelving section, normalized, shape (1, 6)."""
    a = 10 ** (band.gain_db / 40)
    w0 = 2 * math.pi * band.freq / rate
    cos, alpha = math.cos(w0), math.sin(w0) / (2 * band.q)
    if band.kind == "peak":
        b = [1 + alpha * a, -2 * cos, 1 - alpha * a]
        den = [1 + alpha / a, -2 * cos, 1 - alpha / a]
    else:
        sign = 1 if band.kind == "lowshelf" else -1
        root = 2 * math.sqrt(a) * alpha
        b = [
            a * ((a + 1) - sign * (a - 1) * cos + root),
            sign * 2 * a * ((a - 1) - sign * (a + 1) * cos),
            a * ((a + 1) - sign * (a - 1) * cos - root),
        ]
        den = [
            (a + 1) + sign * (a - 1) * cos + root,
            -sign * 2 * ((a - 1) + sign * (a + 1) * cos),
            (a + 1) + sign * (a - 1) * cos - root,
        ]
    return np.array([[*b, *den]]) / den[0]


# -- corpora ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    """One utterance to render; ``path`` is where to write it, None to keep it in memory."""

    utterance_id: str
    speaker: SpeakerProfile
    text: str
    entropy: tuple[int, ...]
    sample_rate: int
    path: Path | None


def _plan(
    speakers: list[SpeakerProfile],
    per_speaker: int,
    seed: int,
    sample_rate: int,
    wav_dir: Path | None,
) -> list[_Job]:
    # All sentences are distinct, so no two takes (by one speaker or two) share a text.
    sentences = generate_sentences(len(speakers) * per_speaker, seed)
    jobs = []
    for s, speaker in enumerate(speakers):
        for take in range(per_speaker):
            utterance_id = f"{speaker.id}-{take:04d}"
            path = None if wav_dir is None else wav_dir / speaker.id / f"{utterance_id}.wav"
            text = sentences[s * per_speaker + take]
            entropy = (seed, _UTTERANCE_STREAM, s, take)
            jobs.append(_Job(utterance_id, speaker, text, entropy, sample_rate, path))
    return jobs


def _render(job: _Job) -> tuple[np.ndarray | None, float]:
    """Synthesize one job; write it when it has a path. Returns (samples or None, seconds)."""
    seed = np.random.SeedSequence(job.entropy)
    samples = synthesize(spoken_form(job.text), job.speaker, seed, job.sample_rate)
    duration = samples.size / job.sample_rate
    if job.path is None:
        return samples, duration
    write_audio(job.path, samples, job.sample_rate)
    return None, duration


def _written_duration(job: _Job) -> float | None:
    """Duration of a take a previous run already wrote, or None if it must be (re)made."""
    if job.path is None or not job.path.exists():
        return None
    try:
        info = audio_info(job.path)
    except AudioError:
        return None
    # write_audio renames a finished file into place, so a readable one is complete.
    return info.duration if info.sample_rate == job.sample_rate and info.frames else None


def _map(jobs: Sequence[_Job], workers: int) -> Iterator[tuple[np.ndarray | None, float]]:
    if workers <= 1 or len(jobs) <= 1:
        yield from map(_render, jobs)
        return
    # Spawned workers start clean on every platform; each loads eSpeak NG on its first job.
    with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
        yield from pool.imap(_render, jobs, chunksize=max(1, len(jobs) // (workers * 8)))


def _synthesize(jobs: list[_Job], name: str, workers: int | None, progress: bool) -> Corpus:
    """The one path behind both corpus functions: render what is missing, in plan order."""
    results: dict[str, tuple[np.ndarray | None, float]] = {}
    todo = []
    for job in jobs:
        duration = _written_duration(job)
        if duration is None:
            todo.append(job)
        else:
            results[job.utterance_id] = (None, duration)
    rendered = track(
        _map(todo, workers or os.cpu_count() or 1), "synthesizing speech", len(todo), progress
    )
    results.update(zip((job.utterance_id for job in todo), rendered, strict=True))
    utterances = [
        Utterance(
            id=job.utterance_id,
            speaker=job.speaker.id,
            transcript=job.text,
            path=job.path,
            samples=results[job.utterance_id][0],
            sample_rate=job.sample_rate,
            duration=results[job.utterance_id][1],
        )
        for job in jobs
    ]
    return Corpus(utterances, name=name, layout="synthetic")


def synthesize_corpus(
    out_dir: str | Path,
    n_speakers: int = 200,
    per_speaker: int = 10,
    seed: int = 0,
    sample_rate: int = 16000,
    workers: int | None = None,
    progress: bool = True,
) -> Corpus:
    """Write a synthetic corpus to ``out_dir`` (wavs/, manifest.csv, speakers.json); resumable."""
    out_dir = Path(out_dir)
    speakers = make_speakers(n_speakers, seed)
    settings = {
        "version": SYNTH_VERSION,
        "espeak_ng": espeak_version(),
        "seed": seed,
        "n_speakers": n_speakers,
        "per_speaker": per_speaker,
        "sample_rate": sample_rate,
        "speakers": [asdict(s) for s in speakers],
    }
    _claim(out_dir, settings)
    for speaker in speakers:
        (out_dir / "wavs" / speaker.id).mkdir(parents=True, exist_ok=True)
    jobs = _plan(speakers, per_speaker, seed, sample_rate, out_dir / "wavs")
    corpus = _synthesize(jobs, out_dir.name or "synthetic", workers, progress)
    _write_manifest(out_dir, corpus)
    return corpus


def synthesize_corpus_in_memory(
    n_speakers: int = 10,
    per_speaker: int = 5,
    seed: int = 0,
    sample_rate: int = 16000,
    workers: int | None = 1,
    progress: bool = False,
) -> Corpus:
    """A synthetic corpus whose utterances hold their samples; nothing touches the disk."""
    jobs = _plan(make_speakers(n_speakers, seed), per_speaker, seed, sample_rate, None)
    return _synthesize(jobs, "synthetic", workers, progress)


def _claim(out_dir: Path, settings: dict) -> None:
    """Record the settings in speakers.json, refusing a directory made with other settings."""
    path = out_dir / "speakers.json"
    text = json.dumps(settings, indent=1) + "\n"
    if path.exists():
        if json.loads(path.read_text("utf-8")) != json.loads(text):
            raise VoxauditError(
                f"{out_dir} holds a synthetic corpus made with other settings; "
                "use another directory or delete it"
            )
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(path, text)


def _write_manifest(out_dir: Path, corpus: Corpus) -> None:
    rows = [
        [u.id, u.path.relative_to(out_dir).as_posix(), u.transcript, u.speaker, f"{u.duration:.4f}"]
        for u in corpus
        if u.path is not None and u.duration is not None
    ]
    sink = io.StringIO()
    writer = csv.writer(sink, lineterminator="\n")
    writer.writerow(["id", "path", "text", "speaker", "duration"])
    writer.writerows(rows)
    write_atomically(out_dir / "manifest.csv", sink.getvalue())
