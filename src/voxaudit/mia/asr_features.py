"""Per-utterance membership features of an ASR model, as far as the threat model lets one see.

``AsrFeatures(...).extract(model, waveforms, transcripts, ids, speakers)`` queries a recognizer
(anything behaving like a ``SpeechRecognizer``, usually wrapped in
``voxaudit.models.access.Access``) and returns a ``FeatureTable``. What it extracts follows from
the methods the model exposes (``hasattr``), so the access level decides:

=================================  =============  ==============================================
exposed                            family         columns
=================================  =============  ==============================================
``transcribe`` (black box)         transcript     ``wer``, ``cer``, ``length_ratio``
                                   noise          ``noise_snr{S}_wer_delta``, ``_cer_delta``
``scores`` (black box with         score          ``score_{field}`` per numeric field of the
scores=True, grey, white)                         model's scores (``score`` for a bare number)
``utterance_loss`` and             loss           ``loss``, ``loss_per_char``
``log_probs``, or ``analyze``      confidence     ``max_prob_mean``, ``max_prob_min``,
(grey box)                                        ``entropy_mean``, ``entropy_std``
                                   noise          ``noise_snr{S}_loss_mean``, ``_std``,
                                                  ``_min``, ``_max``, ``noise_snr{S}_kl_mean``
``input_gradients`` (white box)    adversarial    ``{fgsm,pgd}_eps{E}_loss_delta``, ``_kl``,
                                                  ``_wer_delta``
=================================  =============  ==============================================

``loss`` is -log p(transcript) summed over the transcript, ``loss_per_char`` that over its
normalized characters. Noise columns summarize ``draws`` noisy copies per SNR: the loss's
statistics, the mean KL and the mean change of WER and CER (noisy minus clean). Adversarial
columns are changes from the clean input too.

Perturbations. Gaussian noise at S dB SNR has variance ``P / 10^(S/10)``, ``P`` being the
utterance's own mean power. An utterance's draws come from a generator seeded by (``seed``, its
id), so its features depend on neither batching nor order; the same draws are scaled to every
SNR (common random numbers), so one utterance's SNRs differ in noise level, not in luck.
Adversarial budgets are L-infinity radii relative to the utterance's peak amplitude
(``eps * max|x|``), for the reason SNRs are relative: corpora are normalized differently, and an
absolute budget would be loud on a quiet recording and negligible on a loud one. FGSM takes one
step of the whole budget along the sign of the gradient of the reference transcript's loss; PGD
takes ``pgd_steps`` steps of a quarter of it from the clean input, each projected back into the
budget (and not clipped to [-1, 1]: models take float waveforms).

KL is KL(clean || perturbed) of the output distributions, averaged over steps. CTC frames line up
because perturbations keep the length; attention models are compared under teacher forcing on
the reference (``analyze``). A model with only ``log_probs`` is compared over the steps both
outputs have, which is exact only where the steps line up.

Speed. Utterances go in chunks of ``batch_size``: a chunk is one query of its clean utterances and
one of all its perturbed copies (``batch_size * (1 + len(snrs_db) * draws + 2 *
len(adversarial_eps))`` waveforms, all held in memory), plus ``pgd_steps`` gradient queries at
white box. A model with ``analyze`` (``Recognizer``) answers a query with one forward pass per
batch and computes the KL on its own device; otherwise the protocol methods are called one by one.

Cache. With ``cache_dir`` each finished chunk is saved as a feature table (atomically), and
``manifest.json`` records the settings, the access extracted at, the ids and a digest of the data;
a rerun reuses every cached row and refuses a directory made with other settings or data. The
batch size is no setting (features do not depend on it), and the model is not recorded: use one
directory per model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import entr, rel_entr

from voxaudit.data.text import normalize_transcript
from voxaudit.errors import VoxauditError
from voxaudit.mia.feature_cache import data_digest, extract_chunks, utterance_rng
from voxaudit.mia.table import FAMILIES, FeatureTable
from voxaudit.models.recognizer import cer, wer

CACHE_FORMAT = "voxaudit.asr-features-cache/1"

Column = tuple[str, str, np.ndarray]  # name, family, one value per utterance


@dataclass(frozen=True)
class Capabilities:
    """What a recognizer lets the extractor query, told by ``hasattr`` (so ``Access`` decides)."""

    scores: bool
    losses: bool
    distributions: bool
    gradients: bool
    analyze: bool  # losses, distributions and transcripts in one pass

    @classmethod
    def of(cls, model: Any) -> Capabilities:
        """What ``model`` exposes; a model without ``transcribe`` is an error."""
        if not hasattr(model, "transcribe"):
            raise VoxauditError(
                f"{type(model).__name__} has no transcribe: ASR features need a speech recognizer"
            )
        analyze = hasattr(model, "analyze")
        return cls(
            scores=hasattr(model, "scores"),
            losses=analyze or hasattr(model, "utterance_loss"),
            distributions=analyze or hasattr(model, "log_probs"),
            gradients=hasattr(model, "input_gradients"),
            analyze=analyze,
        )

    @property
    def threat(self) -> str:
        """The least access level that shows all of this (scores aside)."""
        if self.gradients:
            return "white"
        return "grey" if self.losses or self.distributions else "black"

    def names(self) -> list[str]:
        """The capabilities present, as the cache manifest records them."""
        return [name for name, present in asdict(self).items() if present]


@dataclass
class _Outputs:
    """A model's answers for a list of waveforms; None where the access does not show them."""

    transcripts: list[str]
    losses: np.ndarray | None = None
    log_probs: list[np.ndarray] | None = None
    kl: np.ndarray | None = None  # mean KL(compare_to || output) over steps


@dataclass(frozen=True)
class AsrFeatures:
    """Extracts per-utterance ASR membership features (see the module docstring)."""

    snrs_db: tuple[float, ...] = (30.0, 20.0, 10.0)
    draws: int = 8
    adversarial_eps: tuple[float, ...] = (0.002, 0.01)
    pgd_steps: int = 5
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "snrs_db", tuple(float(s) for s in self.snrs_db))
        object.__setattr__(self, "adversarial_eps", tuple(float(e) for e in self.adversarial_eps))
        for name in ("draws", "pgd_steps", "batch_size"):
            if getattr(self, name) < 1:
                raise VoxauditError(f"ASR features: {name} must be at least 1")
        if self.seed < 0:
            raise VoxauditError(f"ASR features: seed must be non-negative; got {self.seed}")
        if any(eps <= 0 for eps in self.adversarial_eps):
            raise VoxauditError(
                f"ASR features: adversarial_eps must be positive; got {self.adversarial_eps}"
            )
        for name in ("snrs_db", "adversarial_eps"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise VoxauditError(f"ASR features: {name} {values} repeats a value")

    def extract(
        self,
        model: Any,
        waveforms: Sequence[np.ndarray],
        transcripts: Sequence[str],
        ids: Sequence[str],
        speakers: Sequence[str],
        cache_dir: str | Path | None = None,
        progress: bool = True,
        model_id: str | None = None,
    ) -> FeatureTable:
        """One row per utterance, in the given order, with the columns ``model`` allows.

        ``model_id`` (e.g. :func:`~voxaudit.mia.feature_cache.model_digest`) is recorded in the
        cache, which then refuses to serve another model's features.
        """
        waves = _checked_inputs(waveforms, transcripts, ids, speakers)
        transcripts, ids, speakers = list(transcripts), list(ids), list(speakers)
        capabilities = Capabilities.of(model)
        manifest = {
            "format": CACHE_FORMAT,
            "threat": capabilities.threat,
            "capabilities": capabilities.names(),
            "settings": self._settings(capabilities),
            "ids": ids,
            "model": model_id,
            "data": data_digest(waves, transcripts, ids, speakers),
        }

        def compute(chunk: list[int]) -> FeatureTable:
            return self._chunk(
                model,
                capabilities,
                [waves[k] for k in chunk],
                [transcripts[k] for k in chunk],
                [ids[k] for k in chunk],
                [speakers[k] for k in chunk],
            )

        tables = extract_chunks(
            compute, ids, self.batch_size, cache_dir=cache_dir, manifest=manifest,
            what="ASR features", progress=progress,
        )  # fmt: skip
        return _stacked(tables).rows(ids)

    def _settings(self, capabilities: Capabilities) -> dict[str, Any]:
        """The settings that shape the features at this access."""
        settings: dict[str, Any] = {
            "snrs_db": list(self.snrs_db),
            "draws": self.draws,
            "seed": self.seed,
        }
        if capabilities.gradients:
            settings |= {"adversarial_eps": list(self.adversarial_eps), "pgd_steps": self.pgd_steps}
        return settings

    def _chunk(
        self,
        model: Any,
        capabilities: Capabilities,
        waves: list[np.ndarray],
        texts: list[str],
        ids: list[str],
        speakers: list[str],
    ) -> FeatureTable:
        """The feature table of one chunk of utterances."""
        clean = _query(model, capabilities, waves, texts, keep_log_probs=True)
        columns = _clean_columns(texts, clean)
        if capabilities.scores:
            columns += [(n, "score", v) for n, v in _score_values(model.scores(waves)).items()]
        copies = self._noisy(waves, ids)
        if capabilities.gradients:
            copies += self._adversarial(model, waves, texts)
        if copies:
            repeats = len(copies) // len(waves)
            compare_to = None if clean.log_probs is None else clean.log_probs * repeats
            perturbed = _query(model, capabilities, copies, texts * repeats, compare_to)
            columns += self._perturbed_columns(texts, clean, perturbed)
        order = sorted(range(len(columns)), key=lambda j: FAMILIES.index(columns[j][1]))
        return FeatureTable(
            ids,
            speakers,
            [columns[j][0] for j in order],
            [columns[j][1] for j in order],
            np.column_stack([columns[j][2] for j in order]),
        )

    def _noisy(self, waves: list[np.ndarray], ids: list[str]) -> list[np.ndarray]:
        """Copies with Gaussian noise, ordered ``[snr][draw][utterance]``."""
        if not self.snrs_db:
            return []
        # numpy draws and adds without the GIL, and each utterance has its own generator: the
        # threads torch may use share the work without changing the result.
        with ThreadPoolExecutor(torch.get_num_threads()) as pool:
            per_utterance = list(pool.map(self._noisy_copies, waves, ids))
        return [copies[j] for j in range(len(per_utterance[0])) for copies in per_utterance]

    def _noisy_copies(self, wave: np.ndarray, utterance_id: str) -> list[np.ndarray]:
        """One utterance's copies with Gaussian noise, ordered ``[snr][draw]``."""
        noise = utterance_rng(self.seed, utterance_id).standard_normal(
            (self.draws, len(wave)), dtype=np.float32
        )
        power = float(np.mean(np.square(wave, dtype=np.float64)))
        return [
            wave + np.float32(math.sqrt(power / 10 ** (snr / 10))) * noise[draw]
            for snr in self.snrs_db
            for draw in range(self.draws)
        ]

    def _adversarial(
        self, model: Any, waves: list[np.ndarray], texts: list[str]
    ) -> list[np.ndarray]:
        """FGSM copies ordered ``[eps][utterance]``, then PGD copies in the same order."""
        if not self.adversarial_eps:
            return []
        budgets = len(self.adversarial_eps)
        origins = waves * budgets
        radii = [np.float32(eps * np.abs(w).max()) for eps in self.adversarial_eps for w in waves]
        signs = _gradient_signs(model, waves, texts) * budgets
        fgsm = [x + r * s for x, r, s in zip(origins, radii, signs, strict=True)]
        pgd = origins
        for step in range(self.pgd_steps):
            if step:  # the first step starts from the clean input, whose gradient FGSM took
                signs = _gradient_signs(model, pgd, texts * budgets)
            pgd = [
                x + np.clip(a + r / 4 * s - x, -r, r)
                for x, a, r, s in zip(origins, pgd, radii, signs, strict=True)
            ]
        return fgsm + pgd

    def _perturbed_columns(
        self, texts: list[str], clean: _Outputs, perturbed: _Outputs
    ) -> list[Column]:
        """Noise columns, then adversarial ones, from the answers for all copies of a chunk."""
        n = len(texts)
        clean_wer, clean_cer = _error_rates(texts, clean.transcripts)
        copies_wer, copies_cer = _error_rates(
            texts * (len(perturbed.transcripts) // n), perturbed.transcripts
        )
        noisy = len(self.snrs_db) * self.draws * n

        def noise_grid(values: np.ndarray) -> np.ndarray:  # [snr, draw, utterance]
            return values[:noisy].reshape(len(self.snrs_db), self.draws, n)

        def attack_grid(values: np.ndarray) -> np.ndarray:  # [attack, eps, utterance]
            return values[noisy:].reshape(2, len(self.adversarial_eps), n)

        columns: list[Column] = []
        for s, snr in enumerate(self.snrs_db):
            prefix = f"noise_snr{snr:g}"
            if perturbed.losses is not None:
                losses = noise_grid(perturbed.losses)[s]
                for stat in ("mean", "std", "min", "max"):
                    columns.append(
                        (f"{prefix}_loss_{stat}", "noise", getattr(losses, stat)(axis=0))
                    )
            if perturbed.kl is not None:
                columns.append(
                    (f"{prefix}_kl_mean", "noise", noise_grid(perturbed.kl)[s].mean(axis=0))
                )
            for name, copies, base in (
                ("wer", copies_wer, clean_wer),
                ("cer", copies_cer, clean_cer),
            ):
                delta = (noise_grid(copies)[s] - base).mean(axis=0)
                columns.append((f"{prefix}_{name}_delta", "noise", delta))
        if len(perturbed.transcripts) == noisy:
            return columns
        for a, attack in enumerate(("fgsm", "pgd")):
            for e, eps in enumerate(self.adversarial_eps):
                prefix = f"{attack}_eps{eps:g}"
                if perturbed.losses is not None and clean.losses is not None:
                    delta = attack_grid(perturbed.losses)[a, e] - clean.losses
                    columns.append((f"{prefix}_loss_delta", "adversarial", delta))
                if perturbed.kl is not None:
                    columns.append((f"{prefix}_kl", "adversarial", attack_grid(perturbed.kl)[a, e]))
                delta = attack_grid(copies_wer)[a, e] - clean_wer
                columns.append((f"{prefix}_wer_delta", "adversarial", delta))
        return columns


def _query(
    model: Any,
    capabilities: Capabilities,
    waves: list[np.ndarray],
    texts: list[str],
    compare_to: list[np.ndarray] | None = None,
    keep_log_probs: bool = False,
) -> _Outputs:
    """Everything the access shows about ``waves``: in one ``analyze`` call when there is one."""
    if capabilities.analyze:
        results = model.analyze(waves, texts, compare_to=compare_to, keep_log_probs=keep_log_probs)
        return _Outputs(
            [r.transcript for r in results],
            np.array([r.loss for r in results], dtype=np.float64),
            [r.log_probs for r in results] if keep_log_probs else None,
            None if compare_to is None else np.array([r.kl for r in results], dtype=np.float64),
        )
    outputs = _Outputs(list(model.transcribe(waves)))
    if capabilities.losses:
        outputs.losses = np.asarray(model.utterance_loss(waves, texts), dtype=np.float64)
    if capabilities.distributions:
        log_probs = list(model.log_probs(waves))
        if compare_to is not None:
            outputs.kl = np.array(
                [_mean_kl(c, lp) for c, lp in zip(compare_to, log_probs, strict=True)]
            )
        if keep_log_probs:
            outputs.log_probs = log_probs
    return outputs


def _clean_columns(texts: list[str], clean: _Outputs) -> list[Column]:
    """Transcript, loss and confidence columns of the clean utterances."""
    references = [len(normalize_transcript(t)) for t in texts]
    hypotheses = [len(normalize_transcript(t)) for t in clean.transcripts]
    wers, cers = _error_rates(texts, clean.transcripts)
    columns: list[Column] = [
        ("wer", "transcript", wers),
        ("cer", "transcript", cers),
        ("length_ratio", "transcript", np.divide(hypotheses, references)),
    ]
    if clean.losses is not None:
        columns += [
            ("loss", "loss", clean.losses),
            ("loss_per_char", "loss", clean.losses / np.asarray(references)),
        ]
    if clean.log_probs is not None:
        stats = np.array([_confidence(lp) for lp in clean.log_probs])
        names = ("max_prob_mean", "max_prob_min", "entropy_mean", "entropy_std")
        columns += [(name, "confidence", stats[:, j]) for j, name in enumerate(names)]
    return columns


def _gradient_signs(model: Any, waves: list[np.ndarray], texts: list[str]) -> list[np.ndarray]:
    return [np.sign(np.asarray(g, dtype=np.float32)) for g in model.input_gradients(waves, texts)]


def _error_rates(
    references: Sequence[str], hypotheses: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-utterance WER and CER, each pair scored once: noisy copies often share a hypothesis."""
    pairs = list(zip(references, hypotheses, strict=True))
    rates = {pair: (wer([pair[0]], [pair[1]]), cer([pair[0]], [pair[1]])) for pair in set(pairs)}
    both = np.array([rates[pair] for pair in pairs], dtype=np.float64).reshape(-1, 2)
    return both[:, 0], both[:, 1]


def _confidence(log_probs: np.ndarray) -> tuple[float, float, float, float]:
    """Max posterior (mean, min) and entropy (mean, std) over the steps of one output."""
    probs = np.exp(np.asarray(log_probs, dtype=np.float64))
    top = probs.max(axis=1)
    entropy = entr(probs).sum(axis=1)
    return top.mean(), top.min(), entropy.mean(), entropy.std()


def _mean_kl(reference: np.ndarray, log_probs: np.ndarray) -> float:
    """Mean over the steps both have of KL(reference || log_probs), both log-probabilities."""
    steps = min(len(reference), len(log_probs))
    p = np.exp(np.asarray(reference[:steps], dtype=np.float64))
    q = np.exp(np.asarray(log_probs[:steps], dtype=np.float64))
    return float(rel_entr(p, q).sum(axis=1).mean()) if steps else 0.0


def _score_values(scores: Sequence[Any]) -> dict[str, np.ndarray]:
    """``score_{field}`` for each numeric field of the utterances' scores (``score``: a number).

    A field some utterances lack is NaN there.
    """
    columns: dict[str, np.ndarray] = {}
    for i, record in enumerate(scores):
        fields = record.items() if isinstance(record, Mapping) else [("", record)]
        for field, value in fields:
            if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
                name = f"score_{field}" if field else "score"
                columns.setdefault(name, np.full(len(scores), np.nan))[i] = float(value)
    return dict(sorted(columns.items()))


def _checked_inputs(
    waveforms: Sequence[np.ndarray],
    transcripts: Sequence[str],
    ids: Sequence[str],
    speakers: Sequence[str],
) -> list[np.ndarray]:
    """The waveforms as float32 arrays, after checking that the inputs fit together."""
    counts = {
        "waveforms": len(waveforms),
        "transcripts": len(transcripts),
        "ids": len(ids),
        "speakers": len(speakers),
    }
    if len(set(counts.values())) > 1:
        raise VoxauditError(
            "ASR features need one transcript, id and speaker per waveform; got "
            + ", ".join(f"{count} {name}" for name, count in counts.items())
        )
    if not waveforms:
        raise VoxauditError("ASR features: no utterances given")
    seen: set[str] = set()
    for row in ids:
        if row in seen:
            raise VoxauditError(f"ASR features: utterance id {row!r} appears twice")
        seen.add(row)
    waves = []
    for wave, text, row in zip(waveforms, transcripts, ids, strict=True):
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1 or wave.size == 0:
            raise VoxauditError(
                f"utterance {row!r}: expected a non-empty mono waveform, got shape {wave.shape}"
            )
        if not normalize_transcript(text):
            raise VoxauditError(f"utterance {row!r} has an empty transcript; WER and loss need one")
        waves.append(wave)
    return waves


def _stacked(tables: list[FeatureTable]) -> FeatureTable:
    """Chunk tables stacked; a score field that some chunks lack is NaN in their rows."""
    families: dict[str, str] = {}
    for table in tables:
        families.update(zip(table.columns, table.families, strict=True))
    # Family order, first-seen order within a family but score fields by name.
    columns = sorted(
        families,
        key=lambda c: (FAMILIES.index(families[c]), c if families[c] == "score" else ""),
    )
    aligned = []
    for table in tables:
        values = np.full((len(table), len(columns)), np.nan)
        for j, column in enumerate(table.columns):
            values[:, columns.index(column)] = table.values[:, j]
        aligned.append(
            FeatureTable(table.ids, table.speakers, columns, [families[c] for c in columns], values)
        )
    return FeatureTable.concat_rows(aligned)
