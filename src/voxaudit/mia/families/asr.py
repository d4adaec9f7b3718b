"""The ASR family: was this recording (sample level) or this voice (speaker level) in the
recognizer's training set?

Features (``voxaudit.mia.asr_features``): WER/CER of the transcript (black box), decoder
scores, loss and posterior confidence (grey box), their change under Gaussian noise, and the
loss increase under FGSM/PGD (white box). Attacks, as in paper 000's table: a shadow attack per
feature ablation (WER only; + loss; + noise; + adversarial), thresholds on WER and the
length-normalized loss, and (grey box) LiRA and RMIA on the loss per character. At speaker
level, features are aggregated per speaker as the utterances per speaker grow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from voxaudit.data.corpus import Corpus, Utterance
from voxaudit.data.splits import AuditSplit
from voxaudit.data.text import normalize_transcript
from voxaudit.errors import VoxauditError
from voxaudit.mia.asr_features import AsrFeatures
from voxaudit.mia.attacks import ShadowAttack
from voxaudit.mia.configs import AsrAuditConfig
from voxaudit.mia.core import AuditedModel, AuditRun
from voxaudit.mia.evaluation import EvalSet, evaluation_set
from voxaudit.mia.families.tabular import Fitted, Measure, TabularFamily
from voxaudit.mia.fitting import grouped_folds
from voxaudit.mia.scoring import reference_facts, score_rows
from voxaudit.mia.table import FeatureTable
from voxaudit.models.access import Access
from voxaudit.models.recognizer import wer


class AsrFamily(TabularFamily):
    """Speech recognizers (``voxaudit.models.base.SpeechRecognizer``)."""

    name = "asr"
    train_kind = "asr"
    levels = ("sample", "speaker")
    config_type = AsrAuditConfig
    statistic_name = "loss_per_char"
    thresholds: ClassVar[Mapping[str, str]] = {"wer": "black", "loss_per_char": "grey"}
    feature_sets: ClassVar[Mapping[str, tuple[tuple[str, ...], str]]] = {
        "WER only": (("transcript",), "black"),
        "WER + noise": (("transcript", "noise"), "black"),
        "loss": (("transcript", "score", "loss", "confidence"), "grey"),
        "loss + noise": (("transcript", "score", "loss", "confidence", "noise"), "grey"),
        "loss + noise + adversarial": (
            ("transcript", "score", "loss", "confidence", "noise", "adversarial"),
            "white",
        ),
    }

    def feature_sets_for(
        self, config: AsrAuditConfig, table: FeatureTable
    ) -> dict[str, tuple[str, ...]]:
        sets = super().feature_sets_for(config, table)
        # "WER + noise" only adds over "WER only" when no loss is available.
        if config.allows("grey"):
            sets.pop("WER + noise", None)
        return sets

    def label_of(self, model: AuditedModel) -> Callable[[Utterance], str]:
        return lambda u: u.transcript

    def extractor(self, config: AsrAuditConfig) -> AsrFeatures:
        return AsrFeatures(
            snrs_db=config.snrs_db,
            draws=config.draws,
            adversarial_eps=config.adversarial_eps,
            pgd_steps=config.pgd_steps,
            batch_size=config.batch_size,
            seed=config.seed,
        )

    def loss(self, access: Access, waves: list[np.ndarray], labels: list[str]) -> np.ndarray:
        """The loss per character of the normalized transcript, as the loss_per_char feature:
        only the protocol's ``utterance_loss``, so that any recognizer can be audited."""
        total = np.asarray(access.utterance_loss(waves, labels), dtype=np.float64)
        characters = np.array([max(1, len(normalize_transcript(t))) for t in labels])
        return np.maximum(total / characters, 0.0)

    def black_measure(self) -> tuple[str, Measure]:
        """Each utterance's WER: all a black box shows, so that the base can calibrate a
        transcript-only audit."""
        return "wer", self._utterance_wers

    @staticmethod
    def _utterance_wers(access: Access, waves: list[np.ndarray], labels: list[str]) -> np.ndarray:
        """Each utterance's WER of its transcript (normalized, as the ``wer`` feature)."""
        hypotheses = access.transcribe(waves)
        return np.array(
            [wer([label], [hyp]) for label, hyp in zip(labels, hypotheses, strict=True)]
        )

    # The calibrated and base-calibrated attacks stay at utterance level: the SpeechRecognizer
    # protocol gives one loss per utterance, a CTC loss sums over alignments and so has no
    # per-token terms, and no recognizer exposes its per-token cross-entropy to an audit.

    def context(self, utterances: Sequence[Utterance], labels: Sequence[str]) -> dict[str, Any]:
        """The transcript's length: longer transcripts hold more characters to get right."""
        return {"transcript_chars": [len(normalize_transcript(t)) for t in labels]}

    def setup_extra(
        self, run: AuditRun, tables: dict[str, FeatureTable], sets: dict[str, EvalSet]
    ) -> dict[str, Any]:
        """Per model with a known alphabet, the characters of its evaluation transcripts that
        it has no token for: left out of the scored references, so the report says so."""
        from voxaudit.models.recognizer import unseen_characters

        unseen = {}
        for model in (run.target, *run.shadows):
            if model.role in tables:
                label_of = self.label_of(model)
                texts = [label_of(run.corpus[i]) for i in sets[model.role].ids]
                counts = unseen_characters(model.model, texts)
                if counts is not None:
                    unseen[model.role] = counts
        return {"unseen_characters": unseen} if unseen else {}

    def check(self, run: AuditRun) -> None:
        for model in (run.target, *run.shadows, *run.references):
            if not hasattr(model.model, "transcribe"):
                raise VoxauditError(
                    f"{model.source}: {type(model.model).__name__} has no transcribe(); the "
                    "ASR audit needs a speech recognizer (voxaudit.models.base.SpeechRecognizer)"
                )

    def load(self, path: str | Path, role: str | None = None, device: str = "auto") -> AuditedModel:
        from voxaudit.models.checkpoints import checkpoint_role, load_model, resolve_device
        from voxaudit.models.recognizer import ASRModel, Recognizer

        role, train_ids = checkpoint_role(path, role)
        model = load_model(path, resolve_device(device), expected=ASRModel.__args__)  # type: ignore[attr-defined]
        return AuditedModel(role, str(path), Recognizer(model), train_ids)

    def utility(self, model: AuditedModel, corpus: Corpus, ids: Sequence[str]) -> tuple[str, float]:
        return "cer", error_rates(model, [corpus[i] for i in ids])["cer"]

    def score(
        self,
        recordings: Corpus,
        target: AuditedModel,
        corpus: Corpus,
        split: AuditSplit,
        shadows: Sequence[AuditedModel],
        out_dir: Path,
        config: AsrAuditConfig,
        progress: bool,
    ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
        """Scoring mode: a reference attack fitted on the shadows' black-box features over
        ``SCORING_FAMILIES`` (what means the same for any recognizer: error rates and their
        change under noise, unlike a decoder's own scores), applied to the target's features
        on the user's transcribed ``recordings``; beside it the WER and CER of the target and
        of each shadow on those recordings (:func:`error_rates`). Returns the scores, setup
        facts and the selection."""
        config = replace(config, threat="black")
        if split.level != "sample":
            raise VoxauditError("scoring mode needs a sample-level split for its shadow models")
        untranscribed = [u.id for u in recordings if not u.transcript.strip()]
        if untranscribed:
            raise VoxauditError(
                f"corpus {recordings.name!r}: {len(untranscribed)} recording(s) without a "
                f"transcript (first: {untranscribed[0]}); transcript features need the text"
            )
        run = AuditRun(corpus, split, target, list(shadows), None, config, out_dir, progress)
        sets = {
            s.role: evaluation_set(split, corpus, s.role, max_per_side=config.max_per_side,
                                   trained=s.trained_ids, seed=config.seed)
            for s in shadows
        }  # fmt: skip
        tables = self.feature_tables(run, {s.role: s for s in shadows}, sets)
        shadow = Fitted(run, tables, sets, [s.role for s in shadows]).shadow_view()
        assert shadow is not None
        missing = sorted(set(SCORING_FAMILIES) - set(shadow.data.table.families))
        if missing:
            raise VoxauditError(f"scoring features: no columns of families {missing} at black box")
        attack = ShadowAttack(
            classifiers=config.classifiers,
            feature_sets={"reference": SCORING_FAMILIES},
            cv=grouped_folds(config.cv, shadow.labels, shadow.data.groups),
            random_state=config.seed,
            decision=config.decision,
        ).fit(shadow.data, shadow.labels)
        everything = EvalSet(
            tuple(u.id for u in recordings),
            tuple(u.speaker for u in recordings),
            np.zeros(len(recordings), dtype=bool),
        )
        scored = self.features(replace(run, corpus=recordings), target, everything)
        setup = {
            "utility": {
                model.role: {
                    metric: round(value, 4)
                    for metric, value in error_rates(model, recordings, config.batch_size).items()
                }
                for model in (target, *shadows)
            },
            "threat": config.threat,
            "recordings": {"name": recordings.name, "count": len(recordings)},
            "reference_attack": reference_facts(
                attack, scored, SCORING_FAMILIES, shadows, corpus, split
            ),
        }
        scores = score_rows(attack, scored, scored.ids, scored.speakers)
        return scores, setup, {"selected": list(attack.selected_),
                               "cv_results": attack.cv_results_}  # fmt: skip


def error_rates(
    model: AuditedModel, recordings: Sequence[Utterance], batch_size: int = 32
) -> dict[str, float]:
    """The model's corpus WER and CER on ``recordings`` (normalized transcripts, as
    :func:`voxaudit.models.recognizer.wer`): how well it recognizes this speech at all. The
    audit's utility (CER on the holdout) and scoring mode's (both, on the user's recordings).

    Parameters
    ----------
    model : AuditedModel
        A speech recognizer.
    recordings : sequence of Utterance
        Transcribed recordings.
    batch_size : int
        Recordings transcribed per call.
    """
    from voxaudit.models.recognizer import cer, wer

    recognizer = model.model
    utterances = list(recordings)
    hypotheses = [
        text
        for start in range(0, len(utterances), batch_size)
        for text in recognizer.transcribe(
            [u.load(recognizer.sample_rate) for u in utterances[start : start + batch_size]]
        )
    ]
    references = [u.transcript for u in utterances]
    return {"wer": wer(references, hypotheses), "cer": cer(references, hypotheses)}


#: Scoring mode's features: what means the same for any recognizer.
SCORING_FAMILIES = ("transcript", "noise")
