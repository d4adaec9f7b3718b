"""Speaker-level membership audit of a speaker encoder: the API behind ``voxaudit mia speaker``.

"Was this person's voice used to train the speaker-recognition model?" (SLMIA-SR, paper 001),
on a speaker-level split (``voxaudit split --level speaker``): whole speakers are members or
not, member speakers keep some voices out of training, and the reference pool holds imposters
that no model trained on. One run:

1. draws, for every evaluated speaker of each model (target, shadows), the voices to query:
   a target member speaker's queried voices hold ``mixing_ratio`` non-training voices; a shadow
   member speaker gives one row per ratio of ``train_ratios`` (mixing-ratio training);
2. embeds those voices, their fixed-length chunks (voice chunk splitting), the imposters' voices
   and, for EncoderMI, augmented views, through grey-box ``Access`` (cached, so a stopped run
   resumes; the number of queries is reported);
3. fits the attacks on shadow rows only: SLMIA-SR's classifier on :mod:`voxaudit.mia.slmia`
   features (averaged over ``attack_seeds`` seeds of the classifier), its ablations, the
   baselines of :mod:`voxaudit.mia.speaker_baselines`, and SLMIA-SR again as target voices,
   imposters and imposter voices shrink (query reduction);
4. scores the target and the null control (a model that never saw the evaluated speakers) with
   every attack, each metric with a bootstrap 95% interval, and writes the report.

Scoring mode (:func:`score_speaker`) ranks the speakers of a user's recordings on an encoder
with no membership ground truth, such as the pretrained resemblyzer encoder.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voxaudit.data.corpus import Corpus
from voxaudit.data.splits import AuditSplit
from voxaudit.errors import VoxauditError
from voxaudit.files import write_atomically
from voxaudit.mia.attack_data import AttackData
from voxaudit.mia.attacks import (
    CLASSIFIERS,
    SeedAveraged,
    ShadowAttack,
    ThresholdAttack,
    parse_decision,
)
from voxaudit.mia.audit_common import (
    checkpoint_role,
    grouped_folds,
    null_from_shadows,
    prefixed,
)
from voxaudit.mia.feature_cache import model_digest
from voxaudit.mia.slmia import MEASURES, SlmiaFeatures, voice_chunks
from voxaudit.mia.speaker_baselines import (
    AugmentedViewSimilarity,
    CentroidLoss,
    PairwiseSimilarity,
    ProbeReferenceSimilarity,
    augmented_views,
)
from voxaudit.mia.table import FeatureTable
from voxaudit.models.access import Access
from voxaudit.progress import track
from voxaudit.report.mia import new_report, result_entry, write_report


@dataclass(frozen=True)
class SpeakerAuditConfig:
    """What a speaker-level audit queries, which attacks it fits and how it evaluates."""

    voices: int = 10  # voices queried per evaluated speaker (fewer when the split has fewer)
    voice_counts: tuple[int, ...] = tuple(range(1, 11))  # query reduction: target voices
    imposter_counts: tuple[int, ...] = (1, 5, 10, 20)  # query reduction: imposters
    imposter_voices: tuple[int, ...] = (1, 2, 5)  # query reduction: voices per imposter
    mixing_ratio: float = 0.0  # share of non-training voices of a target member speaker
    train_ratios: tuple[float, ...] = (0.0, 0.5)  # mixing-ratio training on shadow members
    chunk_seconds: float | None = 1.6  # voice chunk splitting; None: whole voices only
    # Keep chunk splitting only where it wins on shadow cross-validation (never on the target):
    # it adds noise for encoders that trained on whole utterances.
    select_chunking: bool = True
    # Choose SLMIA-SR's feature set (intra + inter, intra, inter) with the classifier on shadow
    # cross-validation, for targets where one family carries the leak. Off, as in paper 001:
    # on the GE2E targets of docs/results-speaker.md it gave no reliable gain.
    select_features: bool = False
    chunk_overlap: float = 0.5
    measures: tuple[str, ...] = MEASURES
    views: int = 4  # EncoderMI: augmented views per voice
    classifiers: tuple[str, ...] = CLASSIFIERS
    curve_classifiers: tuple[str, ...] = ("mlp",)  # ablations and query-reduction curves
    attack_seeds: int = 10  # seeds of the attack classifier, averaged
    max_speakers: int | None = 500  # member (and as many non-member) speakers per model
    cv: int = 5
    decision: str = "accuracy"  # attacks' operating point on shadow rows: recall=R, fpr=F
    batch_size: int = 32
    n_bootstrap: int = 1000
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        parse_decision(self.decision)
        ratios = (self.mixing_ratio, *self.train_ratios)
        rules = [
            (self.voices >= 1, "voices must be at least 1"),
            (all(0 <= r <= 1 for r in ratios), "mixing_ratio and train_ratios must lie in [0, 1]"),
            (bool(self.train_ratios), "train_ratios needs at least one ratio"),
            (self.attack_seeds >= 1, "attack_seeds must be at least 1"),
            (self.views >= 2, "views must be at least 2 (EncoderMI compares views)"),
            (self.chunk_seconds is None or self.chunk_seconds > 0, "chunk_seconds must be > 0"),
        ]
        for ok, message in rules:
            if not ok:
                raise VoxauditError(f"speaker audit config: {message}")


@dataclass
class AuditEncoder:
    """A speaker encoder the audit queries: its role, where it came from, and the encoder."""

    role: str  # "target", "shadow-K" or "null"
    source: str
    encoder: Any  # anything with ``embed(waveforms)`` and ``sample_rate``


MINE = "recordings/"  # prefix of the user's recording ids in scoring mode


@dataclass(frozen=True)
class _Speaker:
    """An evaluated speaker of one model: training voices, non-training voices, membership."""

    name: str
    trained: tuple[str, ...]  # empty for a non-member
    unseen: tuple[str, ...]  # a member's voices kept out of training; a non-member's voices
    member: bool


def audit_speaker(
    corpus: Corpus,
    split: AuditSplit,
    target: AuditEncoder,
    shadows: Sequence[AuditEncoder],
    out_dir: str | Path,
    null: AuditEncoder | None = None,
    config: SpeakerAuditConfig | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the audit, write ``report.json`` and ``report.html`` to ``out_dir``; the report."""
    config = config or SpeakerAuditConfig()
    out_dir = Path(out_dir)
    started = time.time()
    _check_split(corpus, split, shadows)
    speakers = {m.role: _speakers(corpus, split, m.role, config) for m in (target, *shadows)}
    if null is None:
        evaluated = [s.name for s in speakers["target"]]
        shadow = null_from_shadows(corpus, split, shadows, speakers=evaluated)
        null = AuditEncoder("null", f"{shadow.source} (as null control)", shadow.encoder)
    speakers["null"] = speakers["target"]
    ratios = {m.role: config.train_ratios for m in shadows}
    ratios["target"] = ratios["null"] = (config.mixing_ratio,)
    k = _voices(speakers, ratios, config)
    draws = {role: _draws(speakers[role], ratios[role], role, config) for role in speakers}
    draws["null"] = draws["target"]  # the null control hears exactly the target's voices
    imposters = _imposters(corpus, split, config)
    views_for = {role: _ids(draws[role], k) for role in draws}
    queried = {}
    for model in (target, *shadows, null):
        queried[model.role] = _embed(
            model,
            corpus,
            [*views_for[model.role], *(i for v in imposters.values() for i in v)],
            views_for[model.role],
            config,
            out_dir,
            progress,
        )
    audit = _Audit(config, speakers, draws, imposters, queried, [s.role for s in shadows])
    results, selection = audit.run(k)
    setup = {
        "family": "speaker",
        "model_class": type(getattr(target.encoder, "model", target.encoder)).__name__,
        "target": target.source,
        "shadows": [s.source for s in shadows],
        "null_control": null.source,
        "level": "speaker",
        "threat": "grey",
        "corpus": {"name": corpus.name, "fingerprint": split.corpus_fingerprint},
        "split": split.summary(),
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
        **_common_setup(config, started, target),
    }
    report = new_report(setup, results=results, selection=selection)
    write_report(out_dir, report)
    return report


def score_speaker(
    recordings: Corpus,
    target: AuditEncoder,
    corpus: Corpus,
    split: AuditSplit,
    shadows: Sequence[AuditEncoder],
    out_dir: str | Path,
    config: SpeakerAuditConfig | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Membership *scores* for the speakers of ``recordings`` on an encoder with no ground truth.

    A reference SLMIA-SR attack is fitted on the shadow encoders (trained on ``corpus`` under the
    speaker-level ``split``) and applied to the target's features of each speaker in
    ``recordings``, with the split's imposters. Features are similarities between a model's own
    embeddings, whose scale differs between encoders, so the report (kind ``scores``) ranks the
    speakers and records the attack's cross-validated AUROC on the shadows as context only.
    """
    config = config or SpeakerAuditConfig()
    out_dir = Path(out_dir)
    started = time.time()
    _check_split(corpus, split, shadows)
    by_speaker: dict[str, list[str]] = {}
    for u in recordings:
        by_speaker.setdefault(u.speaker, []).append(u.id)
    if not by_speaker:
        raise VoxauditError(f"corpus {recordings.name!r}: no recordings to score")
    users = {
        name: _Speaker(name, (), tuple(sorted(ids)), False) for name, ids in by_speaker.items()
    }
    k = min(config.voices, *(len(s.unseen) for s in users.values()))
    speakers = {s.role: _speakers(corpus, split, s.role, config) for s in shadows}
    ratios = {s.role: config.train_ratios for s in shadows}
    k = _voices(speakers, ratios, replace(config, voices=k))
    draws = {role: _draws(speakers[role], ratios[role], role, config) for role in speakers}
    imposters = _imposters(corpus, split, config)
    imposter_ids = [i for v in imposters.values() for i in v]
    queried = {
        s.role: _embed(
            s, corpus, [*_ids(draws[s.role], k), *imposter_ids], [], config, out_dir, progress
        )
        for s in shadows
    }
    # The scored encoder embeds the user's recordings and the corpus' imposters; the
    # recordings' ids are prefixed, as two corpora may use the same ids.
    mine = _embed(
        replace(target, role="recordings"),
        recordings,
        [i for s in users.values() for i in s.unseen],
        [],
        config,
        out_dir,
        progress,
    )
    theirs = _embed(
        replace(target, role="scored-imposters"),
        corpus,
        imposter_ids,
        [],
        config,
        out_dir,
        progress,
    )
    queried["target"] = _Embeddings(
        {**theirs.whole, **{f"{MINE}{i}": v for i, v in mine.whole.items()}},
        {**theirs.chunks, **{f"{MINE}{i}": v for i, v in mine.chunks.items()}},
        {},
        mine.queries + theirs.queries,
    )
    users = {n: replace(s, unseen=tuple(f"{MINE}{i}" for i in s.unseen)) for n, s in users.items()}
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
        "family": "speaker",
        "mode": "scoring (no membership ground truth)",
        "model_class": type(getattr(target.encoder, "model", target.encoder)).__name__,
        "target": target.source,
        "recordings": {"name": recordings.name, "speakers": len(users), "voices_each": k},
        "reference_attack": {
            "features": list(FEATURE_SETS[attack.selected_[1]]),
            "columns": list(attack.columns_),
            "classifier": attack.selected_[0],
            "shadows": [s.source for s in shadows],
            "shadow_cv_auroc": round(best["auroc_mean"], 4),
            "shadow_corpus": {"name": corpus.name, "fingerprint": split.corpus_fingerprint},
        },
        "threat": "grey",
        "queries": {role: q.queries for role, q in queried.items()},
        **_common_setup(config, started, target),
    }
    report = new_report(setup, scores=scores, selection={"cv_results": attack.cv_results_})
    write_report(out_dir, report)
    return report


def load_speaker_model(
    path: str | Path, role: str | None = None, device: str = "auto"
) -> AuditEncoder:
    """A built-in speaker encoder from its ``voxaudit train`` run folder (or checkpoint file).

    The role comes from the checkpoint's metadata; ``role`` overrides it (e.g. ``"null"``) and
    must agree with it when both are known, except for the null control.
    """
    from voxaudit.models.speaker import Encoder
    from voxaudit.train.loop import resolve_device

    role, _ = checkpoint_role(path, role)
    return AuditEncoder(role, str(path), Encoder.load(path, resolve_device(device)))


def load_scored_encoder(spec: str, device: str = "auto") -> AuditEncoder:
    """The encoder a scoring run queries: ``resemblyzer`` or a ``voxaudit train`` run folder."""
    if spec == "resemblyzer":
        from voxaudit.models.adapters.resemblyzer import ResemblyzerEncoder

        return AuditEncoder("target", "resemblyzer (pretrained GE2E)", ResemblyzerEncoder())
    if not Path(spec).exists():
        raise VoxauditError(f"{spec}: no such model folder (or use `resemblyzer`)")
    return replace(load_speaker_model(spec, "null", device), role="target")


# --- speakers and voices --------------------------------------------------------------------


def _check_split(corpus: Corpus, split: AuditSplit, shadows: Sequence[AuditEncoder]) -> None:
    split.check(corpus)
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
    roles = [s.role for s in shadows]
    if len(set(roles)) != len(roles) or not set(roles) <= set(split.roles[1:]):
        raise VoxauditError(
            f"shadow roles {roles} must be distinct shadow roles of the split: "
            + ", ".join(split.roles[1:])
        )


def _group(ids: Sequence[str], corpus: Corpus) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for uid in sorted(ids):
        groups.setdefault(corpus[uid].speaker, []).append(uid)
    return groups


def _speakers(
    corpus: Corpus, split: AuditSplit, role: str, config: SpeakerAuditConfig
) -> list[_Speaker]:
    """As many member as non-member speakers of ``role`` (at most ``max_speakers`` each)."""
    trained = _group(split.train_ids(role), corpus)
    unseen = _group(split.unseen_ids(role), corpus)
    others = _group(split.holdout_ids(role), corpus)
    n = min(len(trained), len(others), config.max_speakers or len(trained))
    if n == 0:
        raise VoxauditError(f"{role}: the split leaves no member or no non-member speaker")
    rng = np.random.default_rng([config.seed, *role.encode()])
    pick = [sorted(rng.choice(sorted(side), n, replace=False)) for side in (trained, others)]
    return [
        *(_Speaker(s, tuple(trained[s]), tuple(unseen.get(s, ())), True) for s in pick[0]),
        *(_Speaker(s, (), tuple(others[s]), False) for s in pick[1]),
    ]


def _unseen_count(member: bool, available: int, k: int, ratio: float) -> int:
    """How many non-training voices a speaker's ``k`` queried voices hold at ``ratio``.

    A member with fewer non-training voices than the ratio asks gives all it has, and training
    voices for the rest; a non-member's voices are all non-training voices.
    """
    return min(int(np.floor(ratio * k + 0.5)), available) if member else k


def _feasible(speaker: _Speaker, k: int, ratio: float) -> bool:
    n_unseen = _unseen_count(speaker.member, len(speaker.unseen), k, ratio)
    return n_unseen <= len(speaker.unseen) and k - n_unseen <= len(speaker.trained)


def _voices(
    speakers: Mapping[str, Sequence[_Speaker]],
    ratios: Mapping[str, Sequence[float]],
    config: SpeakerAuditConfig,
) -> int:
    """The most voices, up to ``config.voices``, that every speaker can give at every ratio."""
    for k in range(config.voices, 0, -1):
        if all(
            _feasible(s, k, r)
            for role, group in speakers.items()
            for s in group
            for r in ratios[role]
        ):
            return k
    raise VoxauditError("some evaluated speaker has no voice to query")


Draw = dict[str, tuple[list[str], list[str]]]  # speaker -> (unseen order, trained order)


def _draws(
    speakers: Sequence[_Speaker], ratios: Sequence[float], role: str, config: SpeakerAuditConfig
) -> list[Draw]:
    """Per ratio, each speaker's voices in random order: queries take a prefix of each list.

    One order per speaker and ratio, so that fewer voices are a subset of more voices.
    """
    draws = []
    for index, _ in enumerate(ratios):
        draw = {}
        for s in speakers:
            rng = np.random.default_rng([config.seed, index, *f"{role}/{s.name}".encode()])
            draw[s.name] = (
                [s.unseen[i] for i in rng.permutation(len(s.unseen))],
                [s.trained[i] for i in rng.permutation(len(s.trained))],
            )
        draws.append(draw)
    return draws


def _queried(draw: Draw, speaker: str, k: int, ratio: float) -> list[str]:
    """The ``k`` voices a speaker is queried with at ``ratio``: prefixes of its draw."""
    unseen, trained = draw[speaker]
    n_unseen = _unseen_count(bool(trained), len(unseen), k, ratio)
    return [*unseen[:n_unseen], *trained[: k - n_unseen]]


def _ids(draws: Sequence[Draw], k: int) -> list[str]:
    """Every voice a model may be queried with: each ratio's draw at the most voices, any mix."""
    ids = set()
    for draw in draws:
        for unseen, trained in draw.values():
            ids.update(unseen[:k], trained[:k])
    return sorted(ids)


def _imposters(
    corpus: Corpus, split: AuditSplit, config: SpeakerAuditConfig
) -> dict[str, list[str]]:
    """Imposters in random order, each with its voices in random order (prefixes are nested)."""
    groups = _group(split.pools["reference"], corpus)
    rng = np.random.default_rng([config.seed, *b"imposters"])
    order = sorted(groups)
    return {
        order[i]: [groups[order[i]][j] for j in rng.permutation(len(groups[order[i]]))]
        for i in rng.permutation(len(order))
    }


# --- queries --------------------------------------------------------------------------------


@dataclass
class _Embeddings:
    """One model's embeddings of each queried voice, of its chunks and of its augmented views."""

    whole: dict[str, np.ndarray]
    chunks: dict[str, np.ndarray]  # [chunks, dim], possibly no rows
    views: dict[str, np.ndarray]  # [views, dim], for the voices EncoderMI queries
    queries: int

    def voices(self, ids: Sequence[str], chunks: bool) -> np.ndarray:
        rows = [self.whole[i][None] for i in ids]
        if chunks:
            rows += [self.chunks[i] for i in ids]
        return np.concatenate(rows)


def _embed(
    model: AuditEncoder,
    corpus: Any,
    ids: Sequence[str],
    view_ids: Sequence[str],
    config: SpeakerAuditConfig,
    out_dir: Path,
    progress: bool,
) -> _Embeddings:
    """Embeddings of ``ids`` (whole and chunked) and of views of ``view_ids``, cached on disk
    under a key of the model's weights, the ids, their audio and the settings."""
    ids = sorted(set(ids))
    audio = hashlib.sha256("\n".join(corpus[i].content_key() for i in ids).encode()).hexdigest()
    settings = [
        model_digest(model.encoder, model.source),
        ids,
        audio,
        sorted(view_ids),
        config.chunk_seconds,
        config.chunk_overlap,
        config.views,
        config.seed,
    ]
    key = hashlib.sha1(json.dumps(settings).encode()).hexdigest()[:16]
    path = out_dir / "embeddings" / f"{model.role}-{key}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            return _unpack(data)
    access = Access(model.encoder, "grey")
    rate = access.sample_rate
    whole, chunks, views = {}, {}, {}
    viewed_ids = set(view_ids)
    for start in track(
        range(0, len(ids), config.batch_size), f"embedding ({model.role})", enabled=progress
    ):
        batch = ids[start : start + config.batch_size]
        waves = {uid: corpus[uid].load(rate) for uid in batch}
        pieces = {
            uid: voice_chunks(w, rate, config.chunk_seconds, config.chunk_overlap)
            if config.chunk_seconds
            else []
            for uid, w in waves.items()
        }
        viewed = {
            uid: augmented_views(w, rate, config.views, [config.seed, *uid.encode()])
            for uid, w in waves.items()
            if uid in viewed_ids
        }
        flat = [
            *waves.values(),
            *(c for p in pieces.values() for c in p),
            *(v for vs in viewed.values() for v in vs),
        ]
        embedded = np.asarray(access.embed(flat), dtype=np.float64)
        at = len(batch)
        whole |= dict(zip(batch, embedded[:at], strict=True))
        for uid, p in pieces.items():
            chunks[uid] = embedded[at : at + len(p)].reshape(len(p), embedded.shape[1])
            at += len(p)
        for uid, vs in viewed.items():
            views[uid] = embedded[at : at + len(vs)]
            at += len(vs)
    result = _Embeddings(whole, chunks, views, access.queries)
    _pack(path, result)
    return result


def _pack(path: Path, e: _Embeddings) -> None:
    """Save atomically: each table as its ids, row counts and stacked rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"queries": np.array(e.queries)}
    for name, table in (("whole", e.whole), ("chunks", e.chunks), ("views", e.views)):
        ids = sorted(table)
        rows = [np.atleast_2d(table[i]) if name != "whole" else table[i][None] for i in ids]
        arrays[f"{name}_ids"] = np.array(ids, dtype=str)
        arrays[f"{name}_counts"] = np.array([len(r) for r in rows], dtype=np.int64)
        arrays[f"{name}_rows"] = np.concatenate(rows) if rows else np.zeros((0, 0))
    write_atomically(path, lambda f: np.savez(f, **arrays))


def _unpack(data: Any) -> _Embeddings:
    tables = []
    for name in ("whole", "chunks", "views"):
        ids, counts, rows = data[f"{name}_ids"], data[f"{name}_counts"], data[f"{name}_rows"]
        parts = np.split(rows, np.cumsum(counts)[:-1]) if len(ids) else []
        table = {str(i): p for i, p in zip(ids, parts, strict=True)}
        if name == "whole":
            table = {i: p[0] for i, p in table.items()}
        tables.append(table)
    return _Embeddings(*tables, int(data["queries"]))


# --- attacks --------------------------------------------------------------------------------


#: The feature sets ``select_features`` chooses among, by table family.
FEATURE_SETS = {"intra + inter": ("intra", "inter"), "intra": ("intra",), "inter": ("inter",)}


class _Audit:
    """Feature tables of every model at a query budget, and the attacks fitted on them."""

    def __init__(
        self,
        config: SpeakerAuditConfig,
        speakers: Mapping[str, Sequence[_Speaker]],
        draws: Mapping[str, Sequence[Draw]],
        imposters: Mapping[str, Sequence[str]],
        queried: Mapping[str, _Embeddings],
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
                voices = {s.name: _queried(draw, s.name, k, ratio) for s in self.speakers[role]}
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
        self, name: str, features: str, attack: Any, tables: dict, labels: dict, notes: bool
    ) -> None:
        for role in ("target", "null"):
            if role not in tables:
                continue
            self.results.append(
                result_entry(
                    name,
                    features,
                    role,
                    attack.score(tables[role]),
                    labels[role],
                    predictions=attack.predict(tables[role]),
                    n_bootstrap=self.config.n_bootstrap,
                    seed=self.config.seed,
                    notes=attack.notes(tables[role], labels[role]) if notes else None,
                )
            )

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
        self._evaluate(name, features, attack, tables, labels, notes=True)
        self.selection[f"{name} ({features})"] = attack.selection()
        return attack

    def _threshold(self, name: str, features: str, column: str, tables, labels) -> None:
        attack = ThresholdAttack(column, decision=self.config.decision)
        attack.fit(tables["shadow"], labels["shadow"])
        self._evaluate(name, features, attack, tables, labels, notes=False)
        self.selection[f"{name} ({features})"] = {
            "member_if": attack.member_if_,
            "threshold": attack.threshold_,
            "shadow_auroc": attack.auroc_,
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
                "SLMIA-SR ablation", label, sub, labels, groups, c.curve_classifiers, 1
            )
        if configured:
            self._shadow_attack(
                "SLMIA-SR ablation",
                "with chunk splitting" if not chunks else "without chunk splitting",
                *by_chunking[not chunks],
                c.curve_classifiers,
                1,
            )
        if len(c.train_ratios) > 1:
            self._shadow_attack(
                "SLMIA-SR ablation",
                "without mixing-ratio training",
                *self.tables(slmia, k, chunks, mixing=False),
                c.curve_classifiers,
                1,
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
            )
        for n in sorted({n for n in c.imposter_counts if n < len(self.imposters)}):
            self._shadow_attack(
                "SLMIA-SR query reduction",
                f"{n} imposter(s)",
                *self.tables(slmia, k, chunks, imposters=(n, None)),
                c.curve_classifiers,
                1,
            )
        fewest = min(len(v) for v in self.imposters.values())
        for n in sorted({n for n in c.imposter_voices if n < fewest}):
            self._shadow_attack(
                "SLMIA-SR query reduction",
                f"{n} voice(s)/imposter",
                *self.tables(slmia, k, chunks, imposters=(None, n)),
                c.curve_classifiers,
                1,
            )


def _common_setup(config: SpeakerAuditConfig, started: float, target: AuditEncoder) -> dict:
    return {
        "config": {k: v for k, v in asdict(config).items() if k != "extra"},
        "seconds": round(time.time() - started, 1),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "device": str(getattr(target.encoder, "device", "cpu")),
        },
    }
