"""Landmark audio fingerprints (Wang 2003, as paper 003 uses them) and their vector form.

A clip's magnitude STFT is searched for spectral peaks: points that are the maximum of their
time-frequency neighbourhood (a 2-D maximum filter) and louder than an amplitude floor set
relative to the clip's loudest point, so the fingerprint does not depend on gain. Each peak
(anchor) is paired with the next few peaks in a target zone after it; a pair is hashed from
(anchor frequency, partner frequency, frame gap) and kept with the anchor's frame. Two clips
share audio where many of their hashes match with one and the same time offset.

The vector form (paper 003, Fig. 4) is the constellation of peaks pooled onto a fixed
time-frequency grid and scaled to unit length, so the cosine of two vectors is their dot
product and compares where in time and frequency the peaks of the two clips fall.

Paper 003's robust variant adds random noise to each query before fingerprinting (SNR drawn
from 25-75 dB): it fills a clip's silent frames with noise, and the paper found its detection
rate rose with it. ``Fingerprinter(noise_snr_db=(25, 75))`` does that.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

import numpy as np
from scipy import fft, ndimage, signal

from voxaudit.errors import VoxauditError

FREQ_BITS = 9  # 257 bins of a 512-point FFT fit in 9 bits
DT_BITS = 6


@dataclass(frozen=True)
class Fingerprint:
    """The landmarks of one clip and its unit-length peak-map vector."""

    hashes: np.ndarray  # uint32 [n]: (f1, f2, dt) packed
    times: np.ndarray  # int32 [n]: the anchor frame of each hash
    vector: np.ndarray  # float32 [dim], unit length (all zeros for a clip with no peaks)
    n_peaks: int
    duration: float  # seconds
    # A digest of the clip's 16-bit samples (0: unknown). Copies of one recording, however many
    # accounts send it, share it; every perturbed variant an attack tries has its own.
    content: int = 0

    def cosine(self, other: Fingerprint) -> float:
        """Cosine similarity of the vector forms (paper 003, Eq. 1)."""
        return float(np.dot(self.vector, other.vector))

    def matches(self, other: Fingerprint) -> int:
        """Hashes the two share at their most common time offset (Wang's histogram peak)."""
        return landmark_matches(self.hashes, self.times, other.hashes, other.times)


def content_digest(wave: np.ndarray) -> int:
    """A 63-bit digest of the clip as 16-bit PCM: the same recording decoded from any copy of
    its file (or another lossless container) gets the same value. Never 0 (0 is "unknown")."""
    pcm = np.round(np.clip(np.asarray(wave, dtype=np.float64), -1.0, 1.0) * 32767).astype("<i2")
    digest = int.from_bytes(hashlib.blake2b(pcm.tobytes(), digest_size=8).digest(), "little")
    return (digest >> 1) or 1


def add_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``wave`` plus white noise ``snr_db`` below its power."""
    power = float(np.mean(np.asarray(wave, dtype=np.float64) ** 2))
    noise = rng.standard_normal(wave.size) * np.sqrt(power / 10 ** (snr_db / 10))
    return (wave + noise).astype(np.float32)


class Fingerprinter:
    """Turns mono float waveforms at ``sample_rate`` into ``Fingerprint``s.

    ``neighborhood`` is the (frequency bins, frames) size of the maximum filter; ``floor_db``
    how far below the clip's loudest STFT point a peak may lie; ``max_peaks_per_s`` keeps the
    loudest peaks when a clip has more; only bins up to ``max_freq`` Hz are searched. Each
    anchor pairs with up to ``fan_out`` later peaks at most ``max_dt`` frames and ``max_df``
    bins away. The vector pools peaks into ``vector_pool`` (bins, frames) cells over the
    first ``vector_seconds`` of the clip. With ``noise_snr_db = (low, high)``, each clip gets
    white noise at an SNR drawn uniformly from that range first (paper 003's robust variant),
    from a generator seeded with ``seed``.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        hop: int = 256,
        neighborhood: tuple[int, int] = (15, 9),
        floor_db: float = 25.0,
        max_peaks_per_s: float = 40.0,
        fan_out: int = 6,
        max_dt: int = 2**DT_BITS - 1,
        max_df: int = 64,
        vector_pool: tuple[int, int] = (8, 4),
        vector_seconds: float = 8.0,
        max_freq: float = 4000.0,
        noise_snr_db: tuple[float, float] | None = None,
        seed: int | None = None,
    ) -> None:
        if n_fft // 2 + 1 > 2**FREQ_BITS:
            raise VoxauditError(f"n_fft: at most {2 ** (FREQ_BITS + 1) - 2}; got {n_fft}")
        if not 1 <= max_dt < 2**DT_BITS:
            raise VoxauditError(f"max_dt: between 1 and {2**DT_BITS - 1} frames; got {max_dt}")
        if fan_out < 1:
            raise VoxauditError(f"fan_out: at least 1; got {fan_out}")
        if noise_snr_db is not None and not (
            len(noise_snr_db) == 2
            and np.isfinite(noise_snr_db).all()
            and noise_snr_db[0] <= noise_snr_db[1]
        ):
            raise VoxauditError(f"noise_snr_db: (low, high) in dB, low <= high; got {noise_snr_db}")
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop = hop
        self.neighborhood = neighborhood
        self.floor_db = floor_db
        self.max_peaks_per_s = max_peaks_per_s
        self.fan_out = fan_out
        self.max_dt = max_dt
        self.max_df = max_df
        self.vector_pool = vector_pool
        self.vector_seconds = vector_seconds
        # Speech carries its landmarks below 4 kHz; the band above only costs filter time.
        bins = min(n_fft // 2 + 1, int(max_freq * n_fft / sample_rate) + 1)
        self._bins = bins
        self.max_freq = max_freq
        self.noise_snr_db = None if noise_snr_db is None else tuple(map(float, noise_snr_db))
        self._rng = np.random.default_rng(seed)
        self._rng_lock = threading.Lock()
        frames = int(np.ceil(vector_seconds * sample_rate / hop)) + 1
        self._grid = (-(-bins // vector_pool[0]), -(-frames // vector_pool[1]))
        self._window = signal.get_window("hann", n_fft)

    @property
    def vector_dim(self) -> int:
        return self._grid[0] * self._grid[1]

    def __call__(self, waveform: np.ndarray, sample_rate: int | None = None) -> Fingerprint:
        """The fingerprint of one clip."""
        wave = self._checked(waveform, sample_rate)
        content = content_digest(wave)
        if self.noise_snr_db is not None:
            # A gateway fingerprints from several threads; a numpy Generator is not
            # thread-safe, so each clip draws its SNR and its own noise seed under a lock.
            with self._rng_lock:
                snr_db = self._rng.uniform(*self.noise_snr_db)
                noise_rng = np.random.default_rng(self._rng.integers(2**63))
            wave = add_noise(wave, snr_db, noise_rng)
        peaks_f, peaks_t = self.peaks(wave)
        hashes, times = self._pairs(peaks_f, peaks_t)
        return Fingerprint(
            hashes=hashes,
            times=times,
            vector=self._vector(peaks_f, peaks_t),
            n_peaks=int(peaks_f.size),
            duration=wave.size / self.sample_rate,
            content=content,
        )

    def peaks(self, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frequency bins and frames of the spectral peaks, in time order."""
        magnitude = self.spectrogram(wave)
        # The filter runs on magnitudes (a peak of the magnitude is one of its log), and the
        # floor is a ratio to the loudest point, so the peaks do not depend on the gain.
        floor = float(magnitude.max()) * 10.0 ** (-self.floor_db / 20.0)
        local_max = ndimage.maximum_filter(magnitude, size=self.neighborhood[::-1], mode="nearest")
        is_peak = (magnitude == local_max) & (magnitude > floor)
        frames, freqs = np.nonzero(is_peak)
        limit = max(1, int(self.max_peaks_per_s * wave.size / self.sample_rate))
        if freqs.size > limit:
            loudest = np.argpartition(-magnitude[frames, freqs], limit - 1)[:limit]
            loudest.sort()  # np.nonzero gave them in time order; keep it
            frames, freqs = frames[loudest], freqs[loudest]
        return freqs.astype(np.int32), frames.astype(np.int32)

    def spectrogram(self, wave: np.ndarray) -> np.ndarray:
        """Magnitude STFT ``[frames, bins]`` up to ``max_freq``, float32.

        The frames of ``scipy.signal.stft(..., boundary=None, padded=False)`` (a test checks
        it), computed with one batched real FFT in float32 because this is the hot path.
        """
        if wave.size < self.n_fft:
            wave = np.pad(wave, (0, self.n_fft - wave.size))
        frames = np.lib.stride_tricks.sliding_window_view(wave, self.n_fft)[:: self.hop]
        spectrum = fft.rfft((frames * self._window).astype(np.float32), axis=1)
        return np.abs(spectrum[:, : self._bins])

    def _pairs(self, freqs: np.ndarray, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pair each anchor with the next ``fan_out`` peaks of its target zone; hash the pairs."""
        n = freqs.size
        # Candidates: the next few peaks in time order (a generous window, then filtered).
        step = np.arange(1, 4 * self.fan_out + 1)
        anchor = np.repeat(np.arange(n), step.size)
        partner = anchor + np.tile(step, n)
        inside = partner < n
        anchor, partner = anchor[inside], partner[inside]
        dt = frames[partner] - frames[anchor]
        df = freqs[partner] - freqs[anchor]
        keep = (dt >= 1) & (dt <= self.max_dt) & (np.abs(df) <= self.max_df)
        anchor, partner, dt = anchor[keep], partner[keep], dt[keep]
        # At most fan_out partners per anchor: rank within each anchor's run of candidates.
        first = np.searchsorted(anchor, anchor, side="left")
        rank = np.arange(anchor.size) - first
        keep = rank < self.fan_out
        anchor, partner, dt = anchor[keep], partner[keep], dt[keep]
        hashes = (
            (freqs[anchor].astype(np.uint32) << (FREQ_BITS + DT_BITS))
            | (freqs[partner].astype(np.uint32) << DT_BITS)
            | dt.astype(np.uint32)
        )
        return hashes, frames[anchor].astype(np.int32)

    def _vector(self, freqs: np.ndarray, frames: np.ndarray) -> np.ndarray:
        grid = np.zeros(self._grid, dtype=np.float32)
        rows, cols = freqs // self.vector_pool[0], frames // self.vector_pool[1]
        inside = cols < self._grid[1]
        np.add.at(grid, (rows[inside], cols[inside]), 1.0)
        vector = grid.ravel()
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 0 else vector

    def _checked(self, waveform: np.ndarray, sample_rate: int | None) -> np.ndarray:
        if sample_rate is not None and sample_rate != self.sample_rate:
            raise VoxauditError(
                f"sample_rate: the fingerprinter takes {self.sample_rate} Hz; got {sample_rate}"
            )
        wave = np.asarray(waveform, dtype=np.float64)
        if wave.ndim != 1 or wave.size == 0:
            raise VoxauditError(f"waveform: expected a non-empty 1-D array; got {wave.shape}")
        if not np.isfinite(wave).all():
            raise VoxauditError("waveform: contains NaN or infinite samples")
        return wave


def landmark_matches(
    hashes_a: np.ndarray, times_a: np.ndarray, hashes_b: np.ndarray, times_b: np.ndarray
) -> int:
    """Matching hashes of two clips at their most common time offset."""
    if hashes_a.size == 0 or hashes_b.size == 0:
        return 0
    order = np.argsort(hashes_b, kind="stable")
    sorted_b, sorted_tb = hashes_b[order], times_b[order]
    lo = np.searchsorted(sorted_b, hashes_a, side="left")
    hi = np.searchsorted(sorted_b, hashes_a, side="right")
    counts = hi - lo
    if not counts.any():
        return 0
    # Expand each hash of a to all its equal hashes in b (a hash may occur more than once).
    a_index = np.repeat(np.arange(hashes_a.size), counts)
    starts = np.cumsum(counts) - counts
    b_index = np.repeat(lo - starts, counts) + np.arange(counts.sum())
    offsets = times_a[a_index] - sorted_tb[b_index]
    return int(np.bincount(offsets - offsets.min()).max())
