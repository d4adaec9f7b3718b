"""The Python API: the README snippet, verdicts for a user's own torch module, membership files."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

import voxaudit
from voxaudit.data.loaders import load_corpus
from voxaudit.errors import VoxauditError

README = Path(__file__).parents[1] / "README.md"
RATE = 8000
SPEAKERS = 8
PER_SPEAKER = 12


def readme_snippet() -> str:
    """The Python block under the README's 'Audit your own model' heading."""
    text = README.read_text("utf-8")
    section = text[text.index("## Audit your own model") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    """Tones with noise, one pitch per speaker, as {speaker}/{take}.wav, and membership files:
    even takes are members (listed by path), odd takes non-members (listed by id)."""
    root = tmp_path_factory.mktemp("api")
    rng = np.random.default_rng(0)
    t = np.arange(RATE // 2) / RATE
    members, nonmembers = [], []
    for s in range(SPEAKERS):
        (root / "recordings" / f"s{s}").mkdir(parents=True)
        for k in range(PER_SPEAKER):
            wave = 0.3 * np.sin(2 * np.pi * (200 + 40 * s) * t) + 0.1 * rng.standard_normal(t.size)
            name = f"recordings/s{s}/take{k:02d}.wav"
            sf.write(root / name, wave.astype(np.float32), RATE, subtype="FLOAT")
            if k % 2 == 0:
                members.append(name)
            else:
                nonmembers.append(f"s{s}/take{k:02d}")
    (root / "members.txt").write_text("\n".join(members) + "\n")
    (root / "nonmembers.txt").write_text("# one id per line\n" + "\n".join(nonmembers) + "\n")
    return root


def _key(samples: torch.Tensor | np.ndarray) -> float:
    return round(float(np.asarray(samples, dtype=np.float64)[:400].sum()), 3)


class Memorizer(nn.Module):
    """Confidently right on the recordings it stores (its training set), unsure elsewhere: a
    model that memorized its members. With nothing stored it is the null model."""

    def __init__(self, stored: dict[float, int], n_classes: int) -> None:
        super().__init__()
        self.stored = stored
        self.bias = nn.Parameter(torch.zeros(n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.bias + 0.0 * x.mean()
        label = self.stored.get(_key(x[0].detach().cpu().numpy()))
        if label is None:
            # Unsure: a little noise from the waveform itself, so scores are not all tied.
            return logits[None] + 0.5 * torch.tanh(x[0, : logits.numel()])[None]
        return logits[None] + 6.0 * nn.functional.one_hot(torch.tensor(label), logits.numel())


def memorizer(root: Path, classes: list[str], members: bool = True) -> Memorizer:
    corpus = load_corpus(root / "recordings")
    listed = {line for line in (root / "members.txt").read_text().split()}
    stored = {
        _key(u.load(RATE)): classes.index(u.speaker)
        for u in corpus
        if members and f"recordings/{u.id}.wav" in listed
    }
    return Memorizer(stored, len(classes))


def run_snippet(root: Path, net: nn.Module, classes: list[str], monkeypatch) -> dict:
    monkeypatch.chdir(root)
    namespace = {"net": net, "classes": classes}
    exec(compile(readme_snippet(), "README.md", "exec"), namespace)
    return namespace


def test_the_readme_snippet_is_short_and_finds_a_memorizing_model(recordings, monkeypatch, capsys):
    assert len(readme_snippet().strip().splitlines()) <= 10
    classes = [f"s{s}" for s in range(SPEAKERS)]
    namespace = run_snippet(recordings, memorizer(recordings, classes), classes, monkeypatch)
    result = namespace["result"]
    printed = capsys.readouterr().out
    assert re.search(r"AUROC \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", printed)  # with its interval
    assert result.risk == "high" and result.valid
    assert result.headline["metrics"]["auroc"]["low"] > 0.8
    assert (recordings / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert "records no training ids" in " ".join(result.warnings)


def test_a_null_model_is_found_not_to_leak(recordings, monkeypatch):
    classes = [f"s{s}" for s in range(SPEAKERS)]
    null = memorizer(recordings, classes, members=False)
    result = run_snippet(recordings, null, classes, monkeypatch)["result"]
    assert result.risk in ("none", "low") and result.valid
    low, high = (result.headline["metrics"]["auroc"][b] for b in ("low", "high"))
    assert low <= 0.5 <= high


def test_per_example_scores_recompute_the_reported_auroc(recordings, monkeypatch):
    classes = [f"s{s}" for s in range(SPEAKERS)]
    result = run_snippet(recordings, memorizer(recordings, classes), classes, monkeypatch)["result"]
    rows = result.examples()
    for entry in result.report["results"]:
        mine = [r for r in rows if (r["attack"], r["features"], r["model"]) ==
                (entry["name"], entry["features"], entry["model"])]  # fmt: skip
        auroc = roc_auc_score([int(r["is_member"]) for r in mine],
                              [float(r["score"]) for r in mine])  # fmt: skip
        assert auroc == pytest.approx(entry["metrics"]["auroc"]["value"], abs=1e-12)
    stored = json.loads(result.to_json())
    assert "examples" not in stored["results"][0]


def test_members_file_with_an_unknown_line_names_the_line(recordings, tmp_path):
    bad = tmp_path / "members.txt"
    bad.write_text("s0/take00\nnot-a-recording\n")
    model = voxaudit.TorchClassifier(nn.Linear(1, 2), ["a", "b"], RATE)
    with pytest.raises(VoxauditError, match=r"members.txt:2: 'not-a-recording'"):
        voxaudit.audit(model, recordings / "recordings", members=bad, nonmembers=["s0/take01"])


def test_overlapping_membership_is_refused(recordings):
    model = voxaudit.TorchClassifier(nn.Linear(1, 2), ["a", "b"], RATE)
    with pytest.raises(VoxauditError, match="both a member and a non-member"):
        voxaudit.audit(model, recordings / "recordings", members=["s0/take00"],
                       nonmembers=["s0/take00", "s0/take01"])  # fmt: skip


def test_a_model_no_family_knows_is_refused(recordings):
    with pytest.raises(VoxauditError, match="no speech model voxaudit knows"):
        voxaudit.audit(object(), recordings / "recordings", members=["s0/take00"],
                       nonmembers=["s0/take01"])  # fmt: skip


def test_examples_csv_is_written_beside_the_report(recordings, tmp_path):
    classes = [f"s{s}" for s in range(SPEAKERS)]
    model = voxaudit.TorchClassifier(memorizer(recordings, classes), classes, RATE)
    ids = [line for line in (recordings / "nonmembers.txt").read_text().split() if "/" in line]
    members = [p.removeprefix("recordings/").removesuffix(".wav")
               for p in (recordings / "members.txt").read_text().split()]  # fmt: skip
    voxaudit.audit(model, recordings / "recordings", members=members, nonmembers=ids,
                   out_dir=tmp_path / "out", threat="black", draws=1)  # fmt: skip
    with open(tmp_path / "out" / "examples.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header[:3] == ["attack", "features", "model"]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["setup"]["threat"] == "black"


def test_the_package_exports_the_api_lazily():
    import subprocess
    import sys

    for name in voxaudit.__all__:
        assert getattr(voxaudit, name) is not None
    with pytest.raises(AttributeError):
        voxaudit.not_a_name  # noqa: B018
    # `import voxaudit` (and so the CLI's --help) does not import torch.
    code = "import sys, voxaudit.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_a_users_own_training_loop_gets_a_one_run_epsilon_bound():
    """Canaries from voxaudit, training the user's way, the bound from voxaudit again."""
    import torch
    from torch import nn

    rng = np.random.default_rng(0)
    words = ["yes", "no", "maybe"]
    corpus = voxaudit.Corpus([
        voxaudit.Utterance(f"u{i}", "spk", transcript=words[i % 3],
                           samples=rng.standard_normal(400).astype(np.float32), sample_rate=8000)
        for i in range(200)
    ])  # fmt: skip
    canaries, rest = voxaudit.make_canaries(corpus, "wrong-label", 60, label="transcript")
    trained = list(rest) + [u for u in canaries.utterances if u.id in canaries.included_ids()]
    module = nn.Linear(400, 3)
    inputs = torch.tensor(np.stack([u.load() for u in trained]))
    targets = torch.tensor([words.index(u.transcript) for u in trained])
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    for _ in range(300):  # the user's loop: fits every training clip, canaries included
        optimizer.zero_grad()
        nn.functional.cross_entropy(module(inputs), targets).backward()
        optimizer.step()
    model = voxaudit.TorchClassifier(module, words, sample_rate=8000)
    units = [[u] for u in canaries.utterances]
    scores = voxaudit.canary_scores(model, units, label="transcript")
    result = voxaudit.audit_canaries(scores, canaries.included)
    assert result["epsilon"] > 1.0, result


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")
def test_a_users_torch_module_is_audited_on_ray_with_the_same_scores(recordings):
    classes = [f"s{s}" for s in range(SPEAKERS)]
    model = voxaudit.TorchClassifier(memorizer(recordings, classes), classes, RATE)
    lists = {"members": recordings / "members.txt", "nonmembers": recordings / "nonmembers.txt"}
    here = voxaudit.audit(model, recordings / "recordings", **lists, draws=1)
    on_ray = voxaudit.audit(model, recordings / "recordings", **lists, draws=1,
                            compute=voxaudit.ComputeConfig(engine="ray", cpus=2))  # fmt: skip
    assert on_ray.examples() == here.examples() and on_ray.risk == "high"
