"""Contract: every adapter, and a minimal user class written only from ``voxaudit.models.base``,
goes through every audit that applies to it, at every threat level, to a verdict."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import voxaudit
from tests.model_fixtures import tiny_wav2vec2
from voxaudit.data.corpus import Corpus, Utterance
from voxaudit.mia.schema import validate_report

RATE = 16000
LETTERS = "abcdefghijklmnopqrstuvwxyz '"
FAST = {
    "classifiers": ("logistic",),
    "cv": 2,
    "n_bootstrap": 50,
    "batch_size": 8,
}
TABULAR = {**FAST, "draws": 1, "snrs_db": (20.0,), "population": 8}
ASR = {**TABULAR, "pgd_steps": 1, "adversarial_eps": (0.01,)}
SPEAKER = {
    **FAST,
    "voices": 2,
    "voice_counts": (2,),
    "imposter_counts": (1,),
    "imposter_voices": (1,),
    "chunk_seconds": None,
    "views": 2,
    "attack_seeds": 1,
    "curve_classifiers": ("logistic",),
}


def clip(speaker: int, take: int, seconds: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng([speaker, take])
    t = np.arange(int(seconds * RATE)) / RATE
    wave = 0.3 * np.sin(2 * np.pi * (150 + 30 * speaker) * t) + 0.05 * rng.standard_normal(t.size)
    return wave.astype(np.float32)


def corpus(speakers: int, takes: int) -> Corpus:
    return Corpus(
        [
            Utterance(
                f"s{s:02d}_{k}",
                f"s{s:02d}",
                ("yes", "no")[k % 2],
                samples=clip(s, k),
                sample_rate=RATE,
            )
            for s in range(speakers)
            for k in range(takes)
        ],
        name="contract",
    )


# --- minimal user classes, from the protocol docs only ------------------------------------------


class UserClassifier:
    """An ``UtteranceClassifier``: ``sample_rate``, ``classes``, ``predict_proba``,
    ``utterance_loss``."""

    sample_rate = RATE
    classes: ClassVar[list[str]] = ["yes", "no"]

    def predict_proba(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        energy = np.array([float(np.mean(np.abs(w))) for w in waveforms])
        p = 1 / (1 + np.exp(-40 * (energy - 0.2)))
        return np.stack([p, 1 - p], axis=1)

    def utterance_loss(self, waveforms: Sequence[np.ndarray], labels: Sequence[str]) -> np.ndarray:
        p = self.predict_proba(waveforms)
        return -np.log(
            np.maximum(p[np.arange(len(labels)), [self.classes.index(x) for x in labels]], 1e-12)
        )


class UserRecognizer:
    """A ``SpeechRecognizer``: transcripts, log-probabilities, losses and input gradients."""

    sample_rate = RATE

    def transcribe(self, waveforms: Sequence[np.ndarray]) -> list[str]:
        return ["yes" if np.mean(np.abs(w)) > 0.2 else "no" for w in waveforms]

    def log_probs(self, waveforms: Sequence[np.ndarray]) -> list[np.ndarray]:
        out = []
        for w in waveforms:
            frames = w[: len(w) // 160 * 160].reshape(-1, 160)
            logits = np.stack(
                [frames.std(axis=1), np.abs(frames).mean(axis=1), frames.mean(axis=1)], 1
            )
            out.append(logits - np.log(np.exp(logits).sum(axis=1, keepdims=True)))
        return out

    def utterance_loss(
        self, waveforms: Sequence[np.ndarray], transcripts: Sequence[str]
    ) -> np.ndarray:
        return np.array(
            [
                float(np.mean(w**2)) * len(t) + 0.1
                for w, t in zip(waveforms, transcripts, strict=True)
            ]
        )

    def input_gradients(
        self, waveforms: Sequence[np.ndarray], transcripts: Sequence[str]
    ) -> list[np.ndarray]:
        return [2 * w * len(t) / len(w) for w, t in zip(waveforms, transcripts, strict=True)]


class UserEncoder:
    """A ``SpeakerEncoder``: ``sample_rate`` and L2-normalized ``embed``."""

    sample_rate = RATE

    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        rows = []
        for w in waveforms:
            spectrum = np.abs(np.fft.rfft(w, n=512))[:64]
            rows.append(spectrum / np.linalg.norm(spectrum))
        return np.stack(rows)


# --- torch modules for the generic adapters ---------------------------------------------------


class Frames(nn.Module):
    """[1, samples] -> [frames, dim] log-energy features, differentiable."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x[0, : x.shape[1] // 160 * 160].reshape(-1, 160)
        return torch.stack([frames.std(dim=1), frames.abs().mean(dim=1), frames.mean(dim=1)], 1)


class TinyClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.frames, self.out = Frames(), nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.frames(x).mean(dim=0, keepdim=True) * 10)


class TinyCTC(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.frames, self.out = Frames(), nn.Linear(3, len(LETTERS) + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.out(self.frames(x) * 10), dim=-1)  # [frames, blank + letters]


def ctc_loss(module: nn.Module, x: torch.Tensor, text: str) -> torch.Tensor:
    log_probs = module(x)
    target = torch.tensor([LETTERS.index(c) + 1 for c in text.lower() if c in LETTERS])
    return F.ctc_loss(log_probs[:, None], target[None], torch.tensor([len(log_probs)]),
                      torch.tensor([len(target)]), reduction="sum")  # fmt: skip


def greedy(module: nn.Module, x: torch.Tensor) -> str:
    best = module(x).argmax(dim=-1).tolist()
    kept = [k for i, k in enumerate(best) if k and (i == 0 or k != best[i - 1])]
    return "".join(LETTERS[k - 1] for k in kept)


class TinyEncoder(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.frames, self.out = Frames(), nn.Linear(3, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.frames(x) * 10).mean(dim=0, keepdim=True)


def hf_ctc(tmp_path, seed: int = 0):
    from voxaudit.models.adapters.huggingface import HFCTCRecognizer

    return HFCTCRecognizer(
        tiny_wav2vec2(tmp_path / f"w2v-{seed}", "abcdefghijklmnopqrstuvwxyz'", seed)
    )


def builtin_ctc(tmp_path, seed: int = 0):
    from voxaudit.models.ctc import CTCModel
    from voxaudit.models.recognizer import Recognizer

    torch.manual_seed(seed)
    return Recognizer(CTCModel.from_preset("tiny"))


has_transformers = importlib.util.find_spec("transformers") is not None
ADAPTERS: dict[str, dict[str, Callable]] = {
    "classifier": {
        "TorchClassifier": lambda tmp, seed=0: voxaudit.TorchClassifier(
            TinyClassifier(), ["yes", "no"], RATE
        ),
        "user class": lambda tmp, seed=0: UserClassifier(),
    },
    "asr": {
        "TorchRecognizer": lambda tmp, seed=0: voxaudit.TorchRecognizer(
            TinyCTC(), ctc_loss, greedy, RATE
        ),
        "user class": lambda tmp, seed=0: UserRecognizer(),
        "built-in CTC": builtin_ctc,
        **({"HFCTCRecognizer": hf_ctc} if has_transformers else {}),
    },
    "speaker": {
        "TorchSpeakerEncoder": lambda tmp, seed=0: voxaudit.TorchSpeakerEncoder(
            TinyEncoder(seed), RATE
        ),
        "user class": lambda tmp, seed=0: UserEncoder(),
    },
}
THREATS = {"classifier": ("black", "grey", "white"), "asr": ("black", "grey", "white"),
           "speaker": ("grey",)}  # fmt: skip
CASES = [
    pytest.param(family, name, threat, id=f"{family}-{name}-{threat}")
    for family, adapters in ADAPTERS.items()
    for name in adapters
    for threat in THREATS[family]
]


def sample_membership(ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """Takes 0, 1, 4, 5, ... are members, 2, 3, 6, 7, ... not: both sides hold "yes" and "no"
    (take parity is the transcript), so no model tells them apart by the words alone."""
    member = [(int(i.rsplit("_", 1)[1]) // 2) % 2 == 0 for i in ids]
    return [i for i, m in zip(ids, member, strict=True) if m], [
        i for i, m in zip(ids, member, strict=True) if not m
    ]


@pytest.mark.parametrize(("family", "name", "threat"), CASES)
def test_every_adapter_gets_a_verdict_at_every_threat(family, name, threat, tmp_path):
    make = ADAPTERS[family][name]
    if family == "speaker":
        data = corpus(16, 4)
        by = {s: [u.id for u in data if u.speaker == f"s{s:02d}"] for s in range(16)}
        pick = lambda speakers: [i for s in speakers for i in by[s]]  # noqa: E731
        result = voxaudit.audit(
            make(tmp_path), data,
            members=[i for s in range(4) for i in by[s][:2]],
            unseen=[i for s in range(4) for i in by[s][2:]],
            nonmembers=pick(range(4, 8)), reference=pick(range(12, 16)), level="speaker",
            shadows=[(make(tmp_path, 1), pick(range(8, 12)), pick(range(4, 8)))],
            threat=threat, **SPEAKER,
        )  # fmt: skip
    else:
        data = corpus(8, 6)
        members, nonmembers = sample_membership(data.ids)
        options = ASR if family == "asr" else {**TABULAR, "top_k": 2}
        result = voxaudit.audit(make(tmp_path), data, members=members, nonmembers=nonmembers,
                                threat=threat, **options)  # fmt: skip
    report = result.report
    validate_report(report)
    assert report["setup"]["threat"] == threat and report["setup"]["family"] == family
    targets = [r for r in report["results"] if r["model"] == "target"]
    assert targets and len(targets) == len(report["results"]) / 2  # every attack has its null
    for row in report["results"]:
        assert len(row["examples"]["score"]) == row["n_members"] + row["n_nonmembers"]
    features = " ".join(r["features"] for r in targets)
    if family == "asr":
        assert ("loss" in features) == (threat != "black")
        assert ("adversarial" in features) == (threat == "white")
    if family == "classifier":
        assert ("probabilities" in features) == (threat != "black")
    assert result.risk in ("high", "moderate", "low", "none", "unknown")


@pytest.mark.skipif(not has_transformers, reason="transformers is not installed")
def test_a_hugging_face_ctc_folder_gets_a_grey_box_verdict_with_lira_and_rmia(tmp_path):
    data = corpus(8, 8)
    ids = data.ids
    target = [i for i in ids if int(i[-1]) < 4]  # takes 0-3: the target's pools
    shadow_side = [i for i in ids if int(i[-1]) >= 4]
    members, nonmembers = sample_membership(target)
    halves = sample_membership(shadow_side)
    shadows = [(hf_ctc(tmp_path, seed), halves[k], halves[1 - k]) for k, seed in enumerate((1, 2))]
    result = voxaudit.audit(hf_ctc(tmp_path), data, members=members, nonmembers=nonmembers,
                            shadows=shadows, threat="grey", **ASR)  # fmt: skip
    names = {r["name"] for r in result.report["results"]}
    assert "LiRA offline, fixed variance" in names and "RMIA" in names
    assert result.report["setup"]["attacks_fitted_on"] == "shadow models"
    # Untrained models memorize nothing: the headline sits at chance, the null too.
    assert result.valid
