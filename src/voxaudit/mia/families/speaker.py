"""The speaker-encoder family: was this person's voice used to train the speaker-recognition
model? (SLMIA-SR, paper 001), on a speaker-level split.

Member speakers keep some voices out of training, and the split's reference pool holds
imposters no model trained on. The voices each model is queried with and their embeddings
come from :mod:`voxaudit.mia.families.speaker_queries`; the attacks, fitted on shadow rows
only: SLMIA-SR's classifier on :mod:`voxaudit.mia.slmia` features (averaged over
``attack_seeds`` classifier seeds), its ablations, the baselines of
:mod:`voxaudit.mia.speaker_baselines`, and SLMIA-SR again as target voices, imposters and
imposter voices shrink (query reduction). Ablation and query-reduction rows are never the
headline. Embeddings are the grey box; there is no other threat to choose.

Scoring mode (:meth:`SpeakerFamily.score`) ranks the speakers of a user's recordings on an
encoder with no membership ground truth, such as the pretrained resemblyzer encoder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from voxaudit.data.corpus import Corpus
from voxaudit.data.splits import AuditSplit
from voxaudit.errors import VoxauditError
from voxaudit.mia.attack_data import AttackData
from voxaudit.mia.attacks import CLASSIFIERS, ShadowAttack, ThresholdAttack
from voxaudit.mia.composite_attacks import SeedAveraged
from voxaudit.mia.core import (
    AuditConfig,
    AuditedModel,
    AuditRun,
    Family,
    Outcome,
    Scored,
    entries,
    grouped_folds,
    null_control,
)
from voxaudit.mia.families.speaker_queries import (
    Draw,
    Embeddings,
    Speaker,
    draw_ids,
    draws_for,
    embed,
    evaluated_speakers,
    imposters_of,
    queried_voices,
    voice_count,
)
from voxaudit.mia.families.tabular import prefixed
from voxaudit.mia.slmia import MEASURES, SlmiaFeatures
from voxaudit.mia.speaker_baselines import (
    AugmentedViewSimilarity,
    CentroidLoss,
    PairwiseSimilarity,
    ProbeReferenceSimilarity,
)
from voxaudit.mia.table import FeatureTable

MINE = "recordings/"  # prefix of the user's recording ids in scoring mode


@dataclass(frozen=True)
class SpeakerAuditConfig(AuditConfig):
    """What a speaker-level audit queries, which attacks it fits and how it evaluates (and
    :class:`AuditConfig`'s fields; ``max_per_side`` counts speakers here).

    Parameters
    ----------
    voices : voices queried per evaluated speaker (fewer when the split has fewer).
    voice_counts, imposter_counts, imposter_voices : query reduction: target voices,
        imposters, voices per imposter.
    mixing_ratio : share of non-training voices among a target member speaker's queries.
    train_ratios : mixing-ratio training on shadow member speakers.
    chunk_seconds : voice chunk splitting (chunk length); None (``"none"`` in a config): whole
        voices only.
    select_chunking : keep chunk splitting only where it wins on shadow cross-validation
        (never on the target): it adds noise for encoders trained on whole utterances.
    select_features : choose SLMIA-SR's feature set (intra + inter, intra, inter) on shadow
        cross-validation. Off, as in paper 001: on the GE2E targets of
        docs/results-speaker.md it gave no reliable gain.
    chunk_overlap : overlap of consecutive chunks.
    measures : SLMIA-SR's similarity measures.
    views : EncoderMI: augmented views per voice.
    curve_classifiers : classifiers of the ablations and query-reduction curves.
    attack_seeds : seeds of the attack classifier, averaged.
    """

    voices: int = 10
    voice_counts: tuple[int, ...] = tuple(range(1, 11))
    imposter_counts: tuple[int, ...] = (1, 5, 10, 20)
    imposter_voices: tuple[int, ...] = (1, 2, 5)
    mixing_ratio: float = 0.0
    train_ratios: tuple[float, ...] = (0.0, 0.5)
    chunk_seconds: float | None = 1.6
    select_chunking: bool = True
    select_features: bool = False
    chunk_overlap: float = 0.5
    measures: tuple[str, ...] = MEASURES
    views: int = 4
    curve_classifiers: tuple[str, ...] = ("mlp",)
    attack_seeds: int = 10
    classifiers: tuple[str, ...] = CLASSIFIERS

    def __post_init__(self) -> None:
        super().__post_init__()
        ratios = (self.mixing_ratio, *self.train_ratios)
        rules = [
            (self.threat == "grey", f"the speaker audit is grey-box only (embeddings), "
                                    f"not {self.threat!r}"),
            (self.voices >= 1, "voices must be at least 1"),
            (all(0 <= r <= 1 for r in ratios), "mixing_ratio and train_ratios must lie in [0, 1]"),
            (bool(self.train_ratios), "train_ratios needs at least one ratio"),
            (self.attack_seeds >= 1, "attack_seeds must be at least 1"),
            (self.views >= 2, "views must be at least 2 (EncoderMI compares views)"),
            (self.chunk_seconds is None or self.chunk_seconds > 0, "chunk_seconds must be > 0"),
        ]  # fmt: skip
        for ok, message in rules:
            if not ok:
                raise VoxauditError(f"speaker audit config: {message}")


#: The feature sets ``select_features`` chooses among, by table family.
FEATURE_SETS = {"intra + inter": ("intra", "inter"), "intra": ("intra",), "inter": ("inter",)}


class SpeakerFamily(Family):
    """Speaker encoders (``voxaudit.models.base.SpeakerEncoder``)."""

    name = "speaker"
    train_kind = "speaker"
    levels = ("speaker",)
    config_type = SpeakerAuditConfig

    def check(self, run: AuditRun) -> None:
        check_split(run.split, run.shadows)
        for model in (run.target, *run.shadows):
            if not hasattr(model.model, "embed"):
                raise VoxauditError(
                    f"{model.source}: {type(model.model).__name__} has no embed(); the speaker "
                    "audit needs a SpeakerEncoder (voxaudit.models.base)"
                )
        c = run.config
        speakers = {m.role: evaluated_speakers(run.corpus, run.split, m.role, c)
                    for m in (run.target, *run.shadows)}  # fmt: skip
        ratios = {m.role: c.train_ratios for m in run.shadows} | {"target": (c.mixing_ratio,)}
        k = voice_count(speakers, ratios, c)
        check_embeddings(run.corpus, speakers, k, c)

    def attack(self, run: AuditRun) -> Outcome:
        corpus, split, config = run.corpus, run.split, run.config
        target, shadows = run.target, run.shadows
        speakers = {m.role: evaluated_speakers(corpus, split, m.role, config)
                    for m in (target, *shadows)}  # fmt: skip
        null = null_control(run, speakers=[s.name for s in speakers["target"]])
        assert null is not None  # a speaker audit has shadows
        speakers["null"] = speakers["target"]
        ratios = {m.role: config.train_ratios for m in shadows}
        ratios["target"] = ratios["null"] = (config.mixing_ratio,)
        k = voice_count(speakers, ratios, config)
        draws = {role: draws_for(speakers[role], ratios[role], role, config) for role in speakers}
        draws["null"] = draws["target"]  # the null control hears exactly the target's voices
        imposters = imposters_of(corpus, split, config)
        views_for = {role: draw_ids(draws[role], k) for role in draws}
        imposter_ids = [i for v in imposters.values() for i in v]
        queried = {
            model.role: embed(model, corpus, [*views_for[model.role], *imposter_ids],
                              views_for[model.role], config, run.out_dir, run.progress)
            for model in (target, *shadows, null)
        }  # fmt: skip
        audit = _Audit(config, speakers, draws, imposters, queried, run.shadow_roles)
        results, selection = audit.run(k)
        setup = {
            "evaluated": {
                role: {
                    "member_speakers": sum(s.member for s in group),
                    "nonmember_speakers": sum(not s.member for s in group),
                }
                for role, group in speakers.items()
            },
            "voices_per_speaker": k,
            "imposters": {"speakers": len(imposters), "voices": sum(map(len, imposters.values()))},
            "queries": {role: q.queries for role, q in queried.items()},
        }
        return Outcome(results, selection, setup, null, [])

    def score(
        self,
        recordings: Corpus,
        target: AuditedModel,
        corpus: Corpus,
        split: AuditSplit,
        shadows: Sequence[AuditedModel],
        out_dir: Path,
        config: SpeakerAuditConfig,
        progress: bool,
    ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
        """Scoring mode: a reference SLMIA-SR attack fitted on the shadow encoders, applied to
        the target's features of each speaker in ``recordings`` (with the split's imposters).

        Features are similarities between a model's own embeddings, whose scale differs
        between encoders, so the scores rank speakers; the attack's cross-validated AUROC on
        the shadows is context only. Returns the scores, setup facts and the selection.
        """
        check_split(split, shadows)
        by_speaker: dict[str, list[str]] = {}
        for u in recordings:
            by_speaker.setdefault(u.speaker, []).append(u.id)
        if not by_speaker:
            raise VoxauditError(f"corpus {recordings.name!r}: no recordings to score")
        users = {
            name: Speaker(name, (), tuple(sorted(ids)), False) for name, ids in by_speaker.items()
        }
        k = min(config.voices, *(len(s.unseen) for s in users.values()))
        speakers = {s.role: evaluated_speakers(corpus, split, s.role, config) for s in shadows}
        ratios = {s.role: config.train_ratios for s in shadows}
        k = voice_count(speakers, ratios, replace(config, voices=k))
        draws = {role: draws_for(speakers[role], ratios[role], role, config) for role in speakers}
        imposters = imposters_of(corpus, split, config)
        imposter_ids = [i for v in imposters.values() for i in v]
        queried = {
            s.role: embed(s, corpus, [*draw_ids(draws[s.role], k), *imposter_ids], [], config,
                          out_dir, progress)
            for s in shadows
        }  # fmt: skip
        # The scored encoder embeds the user's recordings and the corpus' imposters; the
        # recordings' ids are prefixed, as two corpora may use the same ids.
        mine = embed(
            target.as_role("recordings"),
            recordings,
            [i for s in users.values() for i in s.unseen],
            [],
            config,
            out_dir,
            progress,
        )
        theirs = embed(target.as_role("scored-imposters"), corpus, imposter_ids, [], config,
                       out_dir, progress)  # fmt: skip
        queried["target"] = Embeddings(
            {**theirs.whole, **{f"{MINE}{i}": v for i, v in mine.whole.items()}},
            {**theirs.chunks, **{f"{MINE}{i}": v for i, v in mine.chunks.items()}},
            {},
            mine.queries + theirs.queries,
        )
        users = {
            n: replace(s, unseen=tuple(f"{MINE}{i}" for i in s.unseen)) for n, s in users.items()
        }
        draws["target"] = [{name: (list(s.unseen[:k]), []) for name, s in users.items()}]
        speakers["target"] = list(users.values())
        audit = _Audit(config, speakers, draws, imposters, queried, [s.role for s in shadows])
        attack, table = audit.reference_attack(k)
        membership = attack.score(table)
        scores = [
            {"id": name, "speaker": name, "score": float(value)}
            for name, value in zip(table.speakers, membership, strict=True)
        ]
        best = max(attack.cv_results_, key=lambda row: row["auroc_mean"])
        setup = {
            "recordings": {"name": recordings.name, "speakers": len(users), "voices_each": k},
            "reference_attack": {
                "features": list(FEATURE_SETS[attack.selected_[1]]),
                "columns": list(attack.columns_),
                "classifier": attack.selected_[0],
                "shadows": [s.source for s in shadows],
                "shadow_cv_auroc": round(best["auroc_mean"], 4),
                "shadow_corpus": {"name": corpus.name, "fingerprint": split.corpus_fingerprint},
            },
            "queries": {role: q.queries for role, q in queried.items()},
        }
        return scores, setup, {"cv_results": attack.cv_results_}

    def load(self, path: str | Path, role: str | None = None, device: str = "auto") -> AuditedModel:
        from voxaudit.models.checkpoints import checkpoint_role, resolve_device
        from voxaudit.models.speaker import Encoder

        role, train_ids = checkpoint_role(path, role)
        return AuditedModel(role, str(path), Encoder.load(path, resolve_device(device)), train_ids)

    def utility(self, model: AuditedModel, corpus: Corpus, ids: Sequence[str]) -> tuple[str, float]:
        from voxaudit.models.speaker import equal_error_rate, verification_trials

        encoder = model.model
        utterances = [corpus[i] for i in ids]
        embeddings = encoder.embed([u.load(encoder.sample_rate) for u in utterances])
        speakers = [u.speaker for u in utterances]
        scores, labels = verification_trials(embeddings, speakers, EER_TRIALS)
        return "eer", equal_error_rate(scores, labels)[0]


#: Verification trials the speaker family's EER is computed from (as bench/mia_speaker.py).
EER_TRIALS = 20000


def check_embeddings(
    corpus: Corpus, speakers: Mapping[str, Sequence[Speaker]], k: int, config: SpeakerAuditConfig
) -> None:
    """SLMIA-SR compares a speaker's embeddings with each other: with one voice per speaker it
    needs chunks, i.e. clips at least ``chunk_seconds`` long. Checked before any query."""
    if k >= 2:
        return
    shortest = min(
        corpus[i].load().size / (corpus[i].sample_rate or 1) if corpus[i].duration is None
        else corpus[i].duration
        for group in speakers.values() for s in group for i in (*s.unseen, *s.trained)[:1]
    )  # fmt: skip
    if config.chunk_seconds is None or shortest < config.chunk_seconds:
        have = (
            "no chunk splitting"
            if config.chunk_seconds is None
            else (f"chunk_seconds = {config.chunk_seconds:g} but some clip lasts {shortest:.2f} s")
        )
        raise VoxauditError(
            "SLMIA-SR needs at least 2 embeddings per speaker, and the split leaves 1 voice "
            f"per speaker with {have}: set [audit] chunk_seconds below the shortest clip "
            "(e.g. 0.5), or give the member speakers more voices"
        )  # fmt: skip


def check_split(split: AuditSplit, shadows: Sequence[AuditedModel]) -> None:
    """A speaker-level split with imposters, and at least one shadow model."""
    if split.level != "speaker":
        raise VoxauditError(
            f"a speaker-level membership audit needs a speaker-level split; split of corpus "
            f"{split.corpus_name!r} is {split.level}-level (make one with "
            "`voxaudit split --level speaker`)"
        )
    if not split.pools.get("reference"):
        raise VoxauditError(
            "the split has no reference (imposter) speakers, which SLMIA-SR compares against: "
            "make it with reference_speakers > 0"
        )
    if not shadows:
        raise VoxauditError("a speaker membership audit needs at least one shadow model")


#: The feature sets ``select_features`` chooses among, by table family.
FEATURE_SETS = {"intra + inter": ("intra", "inter"), "intra": ("intra",), "inter": ("inter",)}


class _Audit:
    """Feature tables of every model at a query budget, and the attacks fitted on them."""

    def __init__(
        self,
        config: SpeakerAuditConfig,
        speakers: Mapping[str, Sequence[Speaker]],
        draws: Mapping[str, Sequence[Draw]],
        imposters: Mapping[str, Sequence[str]],
        queried: Mapping[str, Embeddings],
        shadow_roles: Sequence[str],
    ) -> None:
        self.config = config
        self.speakers = speakers
        self.draws = draws
        self.imposters = imposters
        self.queried = queried
        self.shadow_roles = list(shadow_roles)
        self.results: list[dict[str, Any]] = []
        self.selection: dict[str, Any] = {"groups": "speaker"}

    def _ratios(self, role: str, mixing: bool) -> list[tuple[int, float]]:
        """(draw index, ratio) of each row a speaker of ``role`` gives."""
        if role in self.shadow_roles and mixing:
            return list(enumerate(self.config.train_ratios))
        return [(0, self.config.mixing_ratio)]

    def _imposter_embeddings(
        self, role: str, count: int | None, voices: int | None, chunks: bool
    ) -> list[np.ndarray]:
        names = list(self.imposters)[:count]
        return [self.queried[role].voices(self.imposters[n][:voices], chunks) for n in names]

    def tables(
        self,
        transformer: Any,
        k: int,
        chunks: bool = True,
        mixing: bool = True,
        imposters: tuple[int | None, int | None] = (None, None),
        views: bool = False,
    ) -> tuple[dict[str, FeatureTable], dict[str, np.ndarray], np.ndarray]:
        """Each model's table (the shadows' stacked as ``"shadow"``), labels, shadow CV groups.

        Rows are speakers at ``k`` voices ([+ chunks], or their augmented ``views``); a shadow
        speaker gives one row per training ratio (``mixing``), grouped by speaker for CV.
        """
        tables, labels, shadow_parts = {}, {}, []
        for role in [*self.shadow_roles, "target", "null"]:
            if role not in self.queried:
                continue
            e = self.queried[role]
            transformer.fit(self._imposter_embeddings(role, *imposters, chunks=chunks))
            parts = []
            for index, ratio in self._ratios(role, mixing):
                draw = self.draws[role][index]
                voices = {
                    s.name: queried_voices(draw, s.name, k, ratio) for s in self.speakers[role]
                }
                embeddings = {
                    name: np.stack([e.views[i] for i in ids]) if views else e.voices(ids, chunks)
                    for name, ids in voices.items()
                }
                parts.append(prefixed(transformer.transform(embeddings), f"{role}/{ratio:g}"))
            stacked = FeatureTable.concat_rows(parts)
            member = {s.name: s.member for s in self.speakers[role]}
            is_member = np.array([member[s] for s in stacked.speakers])
            if role in self.shadow_roles:
                shadow_parts.append((stacked, is_member, [f"{role}/{s}" for s in stacked.speakers]))
            else:
                tables[role], labels[role] = stacked, is_member
        tables["shadow"] = FeatureTable.concat_rows([p[0] for p in shadow_parts])
        labels["shadow"] = np.concatenate([p[1] for p in shadow_parts])
        return tables, labels, np.array([g for p in shadow_parts for g in p[2]])

    def _evaluate(
        self,
        name: str,
        features: str,
        attack: Any,
        tables: dict,
        labels: dict,
        notes: bool,
        headline_candidate: bool = True,
    ) -> None:
        roles = [role for role in ("target", "null") if role in tables]
        scored = {
            role: Scored(
                np.asarray(attack.score(tables[role]), dtype=np.float64),
                np.asarray(attack.predict(tables[role]), dtype=bool),
                attack.shadow_auroc_,
            )
            for role in roles
        }
        self.results += entries(
            name, features, scored, labels,
            {role: tables[role].speakers for role in roles},
            {role: tables[role].speakers for role in roles},
            self.config,
            notes={role: attack.notes(tables[role], labels[role]) for role in roles}
            if notes else None,
            headline_candidate=headline_candidate,
        )  # fmt: skip

    def _shadow_attack(
        self,
        name: str,
        features: str,
        tables: dict,
        labels: dict,
        groups: np.ndarray,
        classifiers: Sequence[str],
        seeds: int,
        feature_sets: Mapping[str, Sequence[str]] | None = None,
        headline_candidate: bool = True,
    ) -> SeedAveraged:
        attack = SeedAveraged(
            ShadowAttack(
                classifiers=tuple(classifiers),
                feature_sets=feature_sets,
                cv=grouped_folds(self.config.cv, labels["shadow"], groups),
                random_state=self.config.seed,
                decision=self.config.decision,
            ),
            n_seeds=seeds,
        ).fit(AttackData(tables["shadow"], groups=groups), labels["shadow"])
        self._evaluate(name, features, attack, tables, labels, True, headline_candidate)
        self.selection[f"{name} ({features})"] = attack.selection()
        return attack

    def _threshold(self, name: str, features: str, column: str, tables, labels) -> None:
        attack = ThresholdAttack(column, decision=self.config.decision)
        attack.fit(tables["shadow"], labels["shadow"])
        self._evaluate(name, features, attack, tables, labels, notes=False)
        self.selection[f"{name} ({features})"] = {
            "member_if": attack.member_if_,
            "threshold": attack.threshold_,
            "shadow_auroc": attack.shadow_auroc_,
        }

    def reference_attack(self, k: int) -> tuple[ShadowAttack, FeatureTable]:
        """Scoring mode: one SLMIA-SR attack fitted on the shadows, and the target's table."""
        by_chunking = self._slmia_tables(k, SlmiaFeatures(self.config.measures))
        tables, labels, groups = by_chunking[self._choose_chunking(by_chunking)]
        tables.pop("null", None)
        return self._cv_attack(tables, labels, groups), tables["target"]

    def _cv_attack(self, tables: dict, labels: dict, groups: np.ndarray) -> ShadowAttack:
        """One SLMIA-SR attack, chosen and fitted on the shadow rows by grouped CV."""
        return ShadowAttack(
            classifiers=self.config.classifiers,
            feature_sets=self._feature_sets(),
            cv=grouped_folds(self.config.cv, labels["shadow"], groups),
            random_state=self.config.seed,
        ).fit(tables["shadow"], labels["shadow"], groups=groups)

    def _feature_sets(self) -> Mapping[str, Sequence[str]]:
        """SLMIA-SR's candidate feature sets: both families, or (``select_features``) a choice."""
        if self.config.select_features:
            return FEATURE_SETS
        return {"intra + inter": FEATURE_SETS["intra + inter"]}

    def _slmia_tables(self, k: int, slmia: SlmiaFeatures) -> dict[bool, tuple]:
        """SLMIA-SR tables at ``k`` voices, with and (if configured) without chunk splitting."""
        options = (True, False) if self.config.chunk_seconds is not None else (False,)
        return {chunks: self.tables(slmia, k, chunks) for chunks in options}

    def _choose_chunking(self, by_chunking: Mapping[bool, tuple]) -> bool:
        """Chunk splitting on or off: as configured, or (``select_chunking``) whichever gives the
        higher cross-validated AUROC on shadow rows; the choice never looks at the target."""
        if len(by_chunking) == 1 or not self.config.select_chunking:
            return max(by_chunking)  # chunks whenever configured
        shadow_auroc = {
            chunks: max(r["auroc_mean"] for r in self._cv_attack(*tables).cv_results_)
            for chunks, tables in by_chunking.items()
        }
        chosen = shadow_auroc[True] >= shadow_auroc[False]
        self.selection["chunk splitting"] = {
            "shadow_cv_auroc": {"with": shadow_auroc[True], "without": shadow_auroc[False]},
            "chosen": chosen,
        }
        return chosen

    def run(self, k: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Every attack at ``k`` voices per speaker, then the query-reduction curves."""
        c = self.config
        slmia = SlmiaFeatures(c.measures)
        voices = f"{k} voice{'s' if k > 1 else ''}/speaker"
        by_chunking = self._slmia_tables(k, slmia)
        chunks = self._choose_chunking(by_chunking)
        configured = c.chunk_seconds is not None
        chosen = " (chosen on shadows)" if configured and c.select_chunking else ""
        enhancements = (
            ", ".join(
                [
                    *([f"chunk splitting{chosen}"] if chunks else []),
                    *([f"whole voices{chosen}"] if configured and not chunks else []),
                    *(["mixing-ratio training"] if len(c.train_ratios) > 1 else []),
                ]
            )
            or "no enhancement"
        )
        main = by_chunking[chunks]
        feature_set = "feature set chosen on shadows" if c.select_features else "intra + inter"
        self._shadow_attack(
            "SLMIA-SR",
            f"{feature_set}, {voices}, {enhancements}",
            *main,
            c.classifiers,
            c.attack_seeds,
            self._feature_sets(),
        )
        for label, families in (("intra only", ("intra",)), ("inter only", ("inter",))):
            tables, labels, groups = main
            sub = {role: t.select(families) for role, t in tables.items()}
            self._shadow_attack(
                "SLMIA-SR ablation",
                label,
                sub,
                labels,
                groups,
                c.curve_classifiers,
                1,
                headline_candidate=False,
            )
        if configured:
            self._shadow_attack(
                "SLMIA-SR ablation",
                "with chunk splitting" if not chunks else "without chunk splitting",
                *by_chunking[not chunks],
                c.curve_classifiers,
                1,
                headline_candidate=False,
            )
        if len(c.train_ratios) > 1:
            self._shadow_attack(
                "SLMIA-SR ablation",
                "without mixing-ratio training",
                *self.tables(slmia, k, chunks, mixing=False),
                c.curve_classifiers,
                1,
                headline_candidate=False,
            )
        self._baselines(k, voices)
        self._query_reduction(k, slmia, chunks)
        return self.results, self.selection

    def _baselines(self, k: int, voices: str) -> None:
        """The baselines on whole voices (they know nothing of chunks), same draws as SLMIA-SR."""
        c = self.config
        for name, transformer in (
            ("LRL-MIA", PairwiseSimilarity()),
            ("GE2E loss threshold", CentroidLoss()),
        ):
            tables, labels, _ = self.tables(transformer, k, chunks=False)
            self._threshold(
                name, f"{transformer.column}, {voices}", transformer.column, tables, labels
            )
        views = AugmentedViewSimilarity()
        tables, labels, groups = self.tables(views, k, chunks=False, views=True)
        self._threshold(
            "EncoderMI-T", f"{views.column}, {c.views} views", views.column, tables, labels
        )
        self._shadow_attack(
            "EncoderMI-V",
            f"sorted view similarities, {c.views} views",
            tables,
            labels,
            groups,
            c.classifiers,
            c.attack_seeds,
        )
        if k >= 2:
            self._shadow_attack(
                "FaceAuditor-S",
                f"probe-reference similarities, {voices}",
                *self.tables(ProbeReferenceSimilarity(), k, chunks=False),
                c.classifiers,
                c.attack_seeds,
            )

    def _query_reduction(self, k: int, slmia: SlmiaFeatures, chunks: bool) -> None:
        c = self.config
        counts = sorted({n for n in c.voice_counts if n <= k and (chunks or n >= 2)})
        for n in counts:
            self._shadow_attack(
                "SLMIA-SR query reduction",
                f"{n} target voice{'s' if n > 1 else ''}/speaker",
                *self.tables(slmia, n, chunks),
                c.curve_classifiers,
                1,
                headline_candidate=False,
            )
        for n in sorted({n for n in c.imposter_counts if n < len(self.imposters)}):
            self._shadow_attack(
                "SLMIA-SR query reduction",
                f"{n} imposter(s)",
                *self.tables(slmia, k, chunks, imposters=(n, None)),
                c.curve_classifiers,
                1,
                headline_candidate=False,
            )
        fewest = min(len(v) for v in self.imposters.values())
        for n in sorted({n for n in c.imposter_voices if n < fewest}):
            self._shadow_attack(
                "SLMIA-SR query reduction",
                f"{n} voice(s)/imposter",
                *self.tables(slmia, k, chunks, imposters=(None, n)),
                c.curve_classifiers,
                1,
                headline_candidate=False,
            )
