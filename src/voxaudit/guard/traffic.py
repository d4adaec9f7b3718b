"""Benign query streams from a corpus, for calibration and evaluation.

Each utterance is sent once, by one of ``n_accounts`` accounts, in a random order at a steady
rate. Natural repeats are mixed in: with probability ``repeat_rate`` a user sends their previous
clip again, as a replay with a little noise (SNR drawn from ``replay_snr_db``), the way a user
re-sends the command they just sent because it was not understood.

Shared recordings, as real traffic has them: with probability ``share_rate`` a user also sends
one of ``popular`` popular clips (a clip that went around, a prompt a kiosk plays), as an exact
copy of its file; with probability ``rerecord_rate`` instead a re-recording of one, with noise
(SNR drawn from ``rerecord_snr_db``), as when a clip is played to a microphone.
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
    share_rate: float = 0.0,
    rerecord_rate: float = 0.0,
    popular: int = 5,
    rerecord_snr_db: tuple[float, float] = (15.0, 35.0),
) -> Stream:
    """Every waveform once, in random order over the accounts, plus natural repeats and
    shared recordings (see the module docstring)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(waveforms))
    hits = [np.asarray(waveforms[i], dtype=np.float32) for i in order[: max(1, popular)]]
    stream: Stream = []
    clock = 0.0

    def send(account: str, wave: np.ndarray) -> None:
        nonlocal clock
        stream.append((account, wave, clock))
        clock += rng.exponential(1.0 / queries_per_s)

    for index in order:
        account = f"{prefix}{rng.integers(n_accounts)}"
        wave = np.asarray(waveforms[index], dtype=np.float32)
        send(account, wave)
        if rng.random() < repeat_rate:
            send(account, add_noise(wave, rng.uniform(*replay_snr_db), rng))
        if share_rate + rerecord_rate <= 0:
            continue  # no draws: the stream is exactly the one without shared recordings
        # Popular clips are not equally popular: the first is sent most (Zipf-like).
        hit = hits[min(int(rng.zipf(2.0)) - 1, len(hits) - 1)]
        draw = rng.random()
        if draw < share_rate:
            send(account, hit)
        elif draw < share_rate + rerecord_rate:
            send(account, add_noise(hit, rng.uniform(*rerecord_snr_db), rng))
    return stream


def fingerprint_stream(
    stream: Stream, fingerprinter: Fingerprinter, progress: bool = False
) -> Traffic:
    """The stream with each waveform replaced by its fingerprint."""
    return [
        (account, fingerprinter(wave), stamp)
        for account, wave, stamp in track(stream, "fingerprinting", enabled=progress)
    ]
