"""Fingerprint-breaking transforms for an adaptive attacker (Feng et al., CCS 2023, OARS).

A stateful defense remembers what it was asked and flags a query that matches earlier ones.
Feng et al.'s adaptive attacker applies a random transform to every query before sending it:
for audio, one that a listener (and the ASR) barely notices but that moves the landmarks a
Shazam-style fingerprint hashes. ``QueryEvasion`` composes five of them, each drawn afresh
per query:

- a pitch shift of a few percent (duration kept): the peaks' frequency bins move, so the
  (f1, f2) of every hash above ~1 kHz changes;
- a tempo change of a few percent (pitch kept): the frame gaps (dt) between peaks change;
- cropping at both ends and a leading offset of tens of milliseconds: the STFT frames fall at
  other points of the signal, so which peaks win their neighbourhood changes;
- a gain: changes nothing for a gain-invariant fingerprint, but it costs nothing either and
  defeats a defense that compares raw samples;
- a few pure tones at random frequencies below the clip's level: fake peaks that take part of
  the fingerprint's peak budget and pair with the real peaks into hashes no other query has.

``QueryTap(evasion=QueryEvasion())`` sends every real query of an attack through it, and with
``on_refused="switch"`` escalates it (``escalated``) each time the defense refuses a query.
Pitch shift and tempo change use librosa (``pip install 'voxaudit[adaptive]'``), imported only
when one of them is on; its first call in a fresh environment JIT-compiles (numba) for a while.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from voxaudit.errors import VoxauditError

#: librosa's STFT size for the pitch and tempo transforms: 32 ms at 16 kHz, a speech frame.
N_FFT = 512
#: Pitch and tempo changes are capped here, however far a strength escalates them.
MAX_CHANGE = 0.5


@dataclass(frozen=True)
class EvasionDraw:
    """The random parameters of one evaded query (``QueryEvasion.draw``).

    Parameters
    ----------
    pitch:
        Signed relative frequency change (0.02: every frequency 2% higher; 0: none).
    tempo:
        Signed relative speed change (0.03: 3% faster, so ~3% shorter; 0: none).
    crop_start_s, crop_end_s:
        Seconds cut from the start and from the end.
    offset_s:
        Seconds of silence put in front.
    gain_db:
        Gain applied last, in dB.
    tone_hz, tone_phase, tone_onset:
        Per added tone: its frequency, its starting phase (radians) and, for bursts, where it
        starts as a share of the clip's length.
    tone_amplitude:
        Each tone's peak amplitude relative to the clip's RMS (0: no tones).
    """

    pitch: float = 0.0
    tempo: float = 0.0
    crop_start_s: float = 0.0
    crop_end_s: float = 0.0
    offset_s: float = 0.0
    gain_db: float = 0.0
    tone_hz: tuple[float, ...] = ()
    tone_phase: tuple[float, ...] = ()
    tone_onset: tuple[float, ...] = ()
    tone_amplitude: float = 0.0


@dataclass(frozen=True)
class QueryEvasion:
    """A random, fingerprint-breaking transform of each query: ``evasion(wave, rng)``.

    Every transform has one parameter; ``None`` (or 0) turns it off. Each magnitude is
    multiplied by ``strength``, so ``strength=0`` sends the query unchanged and
    ``escalated(2)`` is twice as aggressive. The output is float32 mono at ``sample_rate``,
    clipped to [-1, 1] (what a 16-bit upload could carry).

    Parameters
    ----------
    sample_rate:
        The rate of the waves it gets and returns, in Hz.
    pitch_shift:
        ``(low, high)``: the pitch moves up or down (at random) by a share drawn from this
        range; duration is kept. Default 1-3%: about a quarter to half a semitone, which
        keeps the words but moves the peaks above 1 kHz by one or more 31 Hz STFT bins.
    tempo_change:
        ``(low, high)``: faster or slower by a share drawn from this range; pitch is kept.
        Default 1-4%: the gaps between far landmarks change by one frame or more.
    crop_s:
        Up to this many seconds cut from each end (default 50 ms; at most a quarter of the
        clip per end).
    offset_s:
        Up to this many seconds of leading silence (default 100 ms): the STFT frames shift
        by a random, non-whole number of hops.
    gain_db:
        A gain drawn from ``[-gain_db, +gain_db]`` (default 6 dB).
    tones:
        How many pure tones to add (default 3).
    tone_db:
        Each tone's RMS relative to the clip's RMS, in dB (default -20 dB: under the speech,
        yet a steady tone's energy sits in one bin, so it is among the louder STFT points).
    tone_band:
        The tones' frequencies are drawn uniformly from this range in Hz (default 300-3500,
        where speech and the fingerprint's peaks are).
    tone_burst_s:
        ``None`` (default): each tone lasts the whole clip. A length in seconds: each tone is
        one burst of that length (Hann-shaped, so it does not click) at a random time.
    strength:
        The multiplier of every magnitude above (the tones' amplitude included).
    """

    sample_rate: int = 16000
    pitch_shift: tuple[float, float] | None = (0.01, 0.03)
    tempo_change: tuple[float, float] | None = (0.01, 0.04)
    crop_s: float | None = 0.05
    offset_s: float | None = 0.1
    gain_db: float | None = 6.0
    tones: int = 3
    tone_db: float = -20.0
    tone_band: tuple[float, float] = (300.0, 3500.0)
    tone_burst_s: float | None = None
    strength: float = 1.0

    def __post_init__(self) -> None:
        for name in ("pitch_shift", "tempo_change"):
            span = getattr(self, name)
            if span is not None and not (len(span) == 2 and 0.0 <= span[0] <= span[1] < 1.0):
                raise VoxauditError(f"{name}: (low, high) shares with 0 <= low <= high < 1")
        for name in ("crop_s", "offset_s", "gain_db", "tone_burst_s"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise VoxauditError(f"{name}: a finite value >= 0 or None; got {value!r}")
        if self.tones < 0:
            raise VoxauditError(f"tones: at least 0; got {self.tones}")
        low, high = self.tone_band
        if not 0 < low <= high < self.sample_rate / 2:
            raise VoxauditError(
                f"tone_band: (low, high) Hz within (0, {self.sample_rate / 2:g}); got "
                f"{self.tone_band}"
            )
        if not (math.isfinite(self.strength) and self.strength >= 0):
            raise VoxauditError(f"strength: a finite value >= 0; got {self.strength!r}")

    @property
    def enabled(self) -> bool:
        """Whether it changes anything at all (some transform on, strength above 0)."""
        on = (
            self.pitch_shift is not None and self.pitch_shift[1] > 0,
            self.tempo_change is not None and self.tempo_change[1] > 0,
            bool(self.crop_s),
            bool(self.offset_s),
            bool(self.gain_db),
            self.tones > 0,
        )
        return self.strength > 0 and any(on)

    def escalated(self, factor: float = 2.0) -> QueryEvasion:
        """A copy with ``strength`` multiplied by ``factor``.

        Parameters
        ----------
        factor:
            How much stronger (> 0). An attacker told that its query was detected sends the
            next ones through a stronger transform (OARS adapts the same way).
        """
        if not (math.isfinite(factor) and factor > 0):
            raise VoxauditError(f"factor: a finite value > 0; got {factor!r}")
        return replace(self, strength=self.strength * factor)

    def draw(self, rng: np.random.Generator) -> EvasionDraw:
        """The random parameters of one query, scaled by ``strength``.

        Parameters
        ----------
        rng:
            The generator every draw comes from, so a seed repeats the query exactly.
        """
        s = self.strength
        if not self.enabled:
            return EvasionDraw()

        def signed(span: tuple[float, float] | None) -> float:
            if span is None:
                return 0.0
            size = min(MAX_CHANGE, rng.uniform(*span) * s)
            return size if rng.random() < 0.5 else -size

        n = self.tones
        return EvasionDraw(
            pitch=signed(self.pitch_shift),
            tempo=signed(self.tempo_change),
            crop_start_s=rng.uniform(0.0, (self.crop_s or 0.0) * s),
            crop_end_s=rng.uniform(0.0, (self.crop_s or 0.0) * s),
            offset_s=rng.uniform(0.0, (self.offset_s or 0.0) * s),
            gain_db=rng.uniform(-1.0, 1.0) * (self.gain_db or 0.0) * s,
            tone_hz=tuple(rng.uniform(*self.tone_band, size=n).tolist()),
            tone_phase=tuple(rng.uniform(0.0, 2 * np.pi, size=n).tolist()),
            tone_onset=tuple(rng.random(n).tolist()),
            # A sine's RMS is its amplitude over sqrt(2).
            tone_amplitude=math.sqrt(2) * 10 ** (self.tone_db / 20) * s if n else 0.0,
        )

    def apply(self, wave: np.ndarray, draw: EvasionDraw) -> np.ndarray:
        """``wave`` transformed with the parameters ``draw``.

        Parameters
        ----------
        wave:
            A mono waveform at ``sample_rate`` (1-D, finite).
        draw:
            The parameters, from ``draw`` (``EvasionDraw()`` changes nothing).
        """
        out = _checked(wave)
        if draw == EvasionDraw():
            return out  # nothing drawn: the query goes out as it is, unclipped
        rate = self.sample_rate
        # Too short for one STFT frame: there is no pitch or tempo to move.
        if out.size >= N_FFT and (draw.pitch or draw.tempo):
            librosa = _librosa()
            if draw.tempo:
                out = librosa.effects.time_stretch(out, rate=1.0 + draw.tempo, n_fft=N_FFT)
            if draw.pitch:
                steps = 12.0 * math.log2(1.0 + draw.pitch)
                out = librosa.effects.pitch_shift(out, sr=rate, n_steps=steps, n_fft=N_FFT)
        quarter = out.size // 4  # cropping keeps at least half of the clip
        start = min(quarter, round(draw.crop_start_s * rate))
        end = min(quarter, round(draw.crop_end_s * rate))
        out = out[start : out.size - end]
        out = np.concatenate([np.zeros(round(draw.offset_s * rate), np.float32), out])
        if draw.tone_hz and draw.tone_amplitude > 0:
            out = out + self._tones(out, draw)
        out = out * np.float32(10 ** (draw.gain_db / 20))
        return np.clip(out, -1.0, 1.0).astype(np.float32)

    def __call__(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``wave`` with freshly drawn transforms (``apply(wave, draw(rng))``).

        Parameters
        ----------
        wave:
            A mono waveform at ``sample_rate`` (1-D, finite).
        rng:
            The generator the transforms are drawn from.
        """
        return self.apply(wave, self.draw(rng))

    def _tones(self, wave: np.ndarray, draw: EvasionDraw) -> np.ndarray:
        """The added tones, at ``draw.tone_amplitude`` times the RMS of ``wave``."""
        rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) if wave.size else 0.0
        t = np.arange(wave.size) / self.sample_rate
        tones = np.zeros(wave.size)
        burst = None if self.tone_burst_s is None else round(self.tone_burst_s * self.sample_rate)
        for hz, phase, onset in zip(draw.tone_hz, draw.tone_phase, draw.tone_onset, strict=True):
            tone = np.sin(2 * np.pi * hz * t + phase)
            if burst is not None:
                length = max(1, min(burst, wave.size))
                first = round(onset * (wave.size - length))
                envelope = np.zeros(wave.size)
                envelope[first : first + length] = np.hanning(length)
                tone *= envelope
            tones += tone
        return (rms * draw.tone_amplitude * tones).astype(np.float32)


def _checked(wave: np.ndarray) -> np.ndarray:
    """``wave`` as a float32 copy, when it is a 1-D finite waveform."""
    out = np.array(wave, dtype=np.float32)
    if out.ndim != 1:
        raise VoxauditError(f"wave: expected a 1-D (mono) array; got shape {out.shape}")
    if not np.isfinite(out).all():
        raise VoxauditError("wave: contains NaN or infinite samples")
    return out


def _librosa() -> Any:
    """librosa, imported on first use: it is an optional dependency and slow to import."""
    try:
        import librosa
    except ImportError as exc:
        raise VoxauditError(
            "pitch_shift and tempo_change need librosa: pip install 'voxaudit[adaptive]'"
        ) from exc
    return librosa
