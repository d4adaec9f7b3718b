import numpy as np
import pytest
import torch

from voxaudit.data.corpus import Utterance
from voxaudit.data.features import (
    Batch,
    FeatureCache,
    LogMel,
    collate,
    hz_to_mel,
    mel_filterbank,
    mel_to_hz,
)

RATE = 16000


def _sine(freq: float, seconds: float = 0.5, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _centres(n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    return mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))[1:-1]


def test_htk_mel_scale():
    assert hz_to_mel(0.0) == 0.0
    assert hz_to_mel(1000.0) == pytest.approx(1000.0, abs=0.1)  # the scale's anchor point
    hz = np.array([20.0, 440.0, 7999.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(hz)), hz)


def test_filterbank_matches_the_triangle_formula():
    n_freqs, n_mels, f_min, f_max = 33, 5, 100.0, 7000.0
    fb = mel_filterbank(n_freqs, RATE, n_mels, f_min, f_max).numpy()
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        for k in range(n_freqs):
            f = k * RATE / 2 / (n_freqs - 1)
            if f <= lo or f >= hi:
                want = 0.0
            else:
                want = (f - lo) / (mid - lo) if f <= mid else (hi - f) / (hi - mid)
            assert fb[k, m] == pytest.approx(want, abs=1e-6)


def test_filters_peak_at_their_centres_and_tile_the_range():
    n_mels, f_min, f_max = 40, 20.0, 8000.0
    fb = mel_filterbank(RATE // 2 + 1, RATE, n_mels, f_min, f_max).numpy()  # 1 Hz bins
    centres = _centres(n_mels, f_min, f_max)
    np.testing.assert_allclose(fb.argmax(axis=0), centres, atol=1.0)
    np.testing.assert_allclose(fb.max(axis=0), 1.0, atol=0.01)
    between = slice(int(np.ceil(centres[0])), int(centres[-1]))
    np.testing.assert_allclose(fb[between].sum(axis=1), 1.0, atol=1e-5)  # neighbours sum to 1
    assert ((fb[between] > 0).sum(axis=1) <= 2).all()
    assert fb[: int(f_min)].sum() == 0


def test_slaney_norm_gives_unit_area():
    fb = mel_filterbank(RATE // 2 + 1, RATE, 40, 20.0, 8000.0, slaney_norm=True).numpy()
    np.testing.assert_allclose(fb.sum(axis=0), 1.0, rtol=0.02)  # 1 Hz bins: sum = integral


def test_bad_filterbank_settings_are_refused():
    with pytest.raises(ValueError, match="cover no FFT bin"):
        LogMel(n_fft=64, win_length=64, n_mels=80)
    with pytest.raises(ValueError, match="f_min < f_max"):
        LogMel(f_max=9000.0)
    with pytest.raises(ValueError, match="win_length"):
        LogMel(win_length=800)


@pytest.mark.parametrize("freq", [150.0, 440.0, 1000.0, 3100.0, 6500.0])
def test_a_tone_lands_in_the_band_that_holds_its_frequency(freq):
    logmel = LogMel()
    band = int(logmel(torch.from_numpy(_sine(freq))).mean(axis=0).argmax())
    nearest = int(np.abs(_centres(80, 20.0, 8000.0) - freq).argmin())
    assert abs(band - nearest) <= 1


def _reference_logmel(samples: np.ndarray, logmel: LogMel) -> np.ndarray:
    """Straight numpy framing: zero-pad n_fft/2 each side, periodic Hann window, rfft."""
    n_fft, hop = logmel.n_fft, logmel.hop_length
    padded = np.pad(samples.astype(np.float64), n_fft // 2)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    starts = range(0, len(padded) - n_fft + 1, hop)
    power = np.stack([np.abs(np.fft.rfft(padded[s : s + n_fft] * window)) ** 2 for s in starts])
    return np.log(np.maximum(power @ logmel.fbank.numpy().astype(np.float64), logmel.log_floor))


def test_logmel_matches_a_numpy_reference():
    logmel = LogMel()
    samples = np.random.default_rng(0).standard_normal(4000).astype(np.float32) * 0.1
    got = logmel(torch.from_numpy(samples)).numpy()
    np.testing.assert_allclose(got, _reference_logmel(samples, logmel), atol=1e-3)


@pytest.mark.parametrize("n", [1, 100, 159, 160, 399, 401, 16000])
def test_frame_lengths_match_the_output(n):
    logmel = LogMel()
    assert logmel(torch.zeros(n)).shape == (logmel.frame_lengths(n), 80)
    assert logmel.frame_lengths(torch.tensor([n, 2 * n])).tolist() == [
        logmel.frame_lengths(n),
        logmel.frame_lengths(2 * n),
    ]


def test_batches_equal_single_clips_and_silence_hits_the_floor():
    logmel = LogMel()
    clips = torch.from_numpy(np.stack([_sine(300.0), _sine(2000.0)]))
    batch = logmel(clips)
    assert batch.shape == (2, 51, 80)
    torch.testing.assert_close(batch[1], logmel(clips[1]))
    torch.testing.assert_close(logmel(clips.double()), batch)
    assert torch.all(logmel(torch.zeros(800)) == np.log(np.float32(1e-6)))
    with pytest.raises(ValueError, match="waveform"):
        logmel(torch.zeros(1, 2, 3))


def test_logmel_has_no_state_to_save_and_lists_its_params():
    logmel = LogMel(n_mels=40)
    assert logmel.state_dict() == {}
    params = logmel.params()
    assert params["n_mels"] == 40 and params["f_max"] == 8000.0 and params["version"] >= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_logmel_on_cuda_matches_cpu():
    logmel = LogMel()
    wave = torch.from_numpy(_sine(440.0, 1.0))
    cpu = logmel(wave)
    gpu = logmel.to("cuda")(wave.to("cuda")).cpu()
    torch.testing.assert_close(gpu, cpu, atol=1e-3, rtol=1e-4)


class _Counting:
    """Counts forward calls of a module (cache misses)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls = 0
        module.register_forward_hook(self._hook)

    def _hook(self, *_) -> None:
        self.calls += 1


def _utt(uid: str, samples: np.ndarray, rate: int = RATE) -> Utterance:
    return Utterance(uid, "spk", samples=samples, sample_rate=rate)


def test_cache_computes_once_and_keys_by_audio_content(tmp_path):
    logmel = LogMel()
    counter = _Counting(logmel)
    cache = FeatureCache(tmp_path, logmel)
    utt = _utt("a", _sine(440.0))
    first = cache.get(utt)
    assert counter.calls == 1 and first.shape == (51, 80) and first.dtype == torch.float32
    torch.testing.assert_close(cache.get(utt), first)
    torch.testing.assert_close(cache.get(_utt("copy", _sine(440.0))), first)  # same audio
    assert counter.calls == 1
    key = cache.key(utt.load(RATE))
    assert (tmp_path / key[:2] / f"{key}.npy").is_file()
    cache.get(_utt("a", _sine(441.0)))
    assert counter.calls == 2
    assert not list(tmp_path.rglob("*.tmp"))


def test_cache_resamples_and_separates_parameters(tmp_path):
    slow = _utt("slow", _sine(440.0, rate=8000), rate=8000)
    cache = FeatureCache(tmp_path, LogMel())
    assert cache.get(slow).shape == (51, 80)  # 0.5 s at 16 kHz, hop 160
    other = FeatureCache(tmp_path, LogMel(n_mels=40))
    samples = slow.load(RATE)
    assert cache.key(samples) != other.key(samples)
    assert other.get(slow).shape == (51, 40)
    assert len(list(tmp_path.rglob("*.npy"))) == 2


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(b"not an npy file"),
        lambda p: p.write_bytes(p.read_bytes()[:100]),
        lambda p: np.save(p, np.zeros(3)),
    ],
    ids=["garbage", "truncated", "wrong-shape"],
)
def test_damaged_cache_files_are_recomputed(tmp_path, damage):
    logmel = LogMel()
    counter = _Counting(logmel)
    cache = FeatureCache(tmp_path, logmel)
    utt = _utt("a", _sine(440.0))
    good = cache.get(utt)
    path = cache.path(cache.key(utt.load(RATE)))
    damage(path)
    torch.testing.assert_close(cache.get(utt), good)
    assert counter.calls == 2
    torch.testing.assert_close(torch.from_numpy(np.load(path)), good)


def test_get_many_keeps_order(tmp_path):
    cache = FeatureCache(tmp_path, LogMel())
    utts = [_utt(f"u{i}", _sine(200.0 * (i + 1), 0.1 * (i + 1))) for i in range(3)]
    features = cache.get_many(utts)
    assert [f.shape[0] for f in features] == [11, 21, 31]


def test_collate_pads_with_zeros_and_keeps_lengths():
    feats = [torch.ones(3, 2), torch.full((5, 2), 2.0), torch.full((1, 2), 3.0)]
    batch = collate(feats)
    assert batch.features.shape == (3, 5, 2)
    assert batch.lengths.tolist() == [3, 5, 1] and batch.lengths.dtype == torch.long
    assert batch.features[0, 3:].abs().sum() == 0 and batch.features[2, 1:].abs().sum() == 0
    torch.testing.assert_close(batch.features[1], feats[1])
    assert batch.mask.tolist()[2] == [True, False, False, False, False]
    assert batch.targets is None and batch.target_lengths is None


def test_collate_targets():
    feats = [torch.ones(3, 2), torch.ones(4, 2)]
    labels = collate(feats, [1, 0])
    assert labels.targets.tolist() == [1, 0] and labels.target_lengths is None
    sequences = collate(feats, [[5, 6, 7], torch.tensor([8])])
    assert sequences.targets.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert sequences.target_lengths.tolist() == [3, 1]
    moved = sequences.to("cpu")
    assert isinstance(moved, Batch) and moved.target_lengths.tolist() == [3, 1]
    with pytest.raises(ValueError, match="2 feature arrays but 1 targets"):
        collate(feats, [1])
    with pytest.raises(ValueError, match="empty"):
        collate([])
