"""Benign query streams from a corpus, for calibration and evaluation.

Each utterance is sent once, by one of ``n_accounts`` accounts, in a random order at a steady
rate. Natural repeats are mixed in: with probability ``repeat_rate`` a user sends their previous
clip again, as a replay with a little noise (SNR drawn from ``replay_snr_db``), the way a user
re-sends the command they just sent because it was not understood.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from voxaudit.guard.detectors import Traffic
from voxaudit.guard.fingerprint import Fingerprinter, add_noise
from voxaudit.progress import track

#: A stream of raw queries: (account, waveform, timestamp in seconds).
Stream = list[tuple[str, np.ndarray, float]]


def benign_stream(
    waveforms: Sequence[np.ndarray],
    n_accounts: int = 20,
    repeat_rate: float = 0.02,
    replay_snr_db: tuple[float, float] = (30.0, 50.0),
    queries_per_s: float = 1.0,
    seed: int = 0,
    prefix: str = "user",
) -> Stream:
    """Every waveform once, in random order over the accounts, plus natural repeats."""
    rng = np.random.default_rng(seed)
    stream: Stream = []
    clock = 0.0
    for index in rng.permutation(len(waveforms)):
        account = f"{prefix}{rng.integers(n_accounts)}"
        wave = np.asarray(waveforms[index], dtype=np.float32)
        stream.append((account, wave, clock))
        clock += rng.exponential(1.0 / queries_per_s)
        if rng.random() < repeat_rate:
            replay = add_noise(wave, rng.uniform(*replay_snr_db), rng)
            stream.append((account, replay, clock))
            clock += rng.exponential(1.0 / queries_per_s)
    return stream


def fingerprint_stream(
    stream: Stream, fingerprinter: Fingerprinter, progress: bool = False
) -> Traffic:
    """The stream with each waveform replaced by its fingerprint."""
    return [
        (account, fingerprinter(wave), stamp)
        for account, wave, stamp in track(stream, "fingerprinting", enabled=progress)
    ]
