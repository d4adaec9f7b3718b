"""Audit splits: disjoint member / non-member pools for the target and shadow models, as JSON.

Two levels. At sample level the same speakers sit on both sides of member / non-member, so an
attack must tell utterances apart, not voices. At speaker level whole speakers are members or
not (the SLMIA-SR setting), and each member speaker keeps some voices out of training
("unseen") to ask whether the speaker, not the recording, was trained on.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voxaudit.data.corpus import Corpus
from voxaudit.errors import VoxauditError
from voxaudit.files import write_json

SCHEMA = "voxaudit.split/1"
#: Bumped whenever the dealing changes, because the same seed then gives a different split.
ALGORITHM_VERSION = 1
LEVELS = ("sample", "speaker")
SHADOW_MODES = ("disjoint", "halves")
#: Whose units random halves deal: the shadow pools (offline LiRA, RMIA), shadow and target
#: pools, or the target pools only (online LiRA with references drawn like the target).
HALVES_POPULATIONS = ("shadow", "all", "target")
SAMPLE_POOLS = ("target_train", "target_holdout", "shadow_train", "shadow_holdout")
SPEAKER_POOLS = (
    "target_train",
    "target_member_unseen",
    "target_holdout",
    "shadow_train",
    "shadow_member_unseen",
    "shadow_holdout",
    "reference",
)
SPEAKER_SETS = (
    "target_member",
    "target_nonmember",
    "shadow_member",
    "shadow_nonmember",
    "reference",
)

Ids = tuple[str, ...]
Groups = list[tuple[str, list[str]]]  # (speaker, its utterance ids), both in dealing order
IdTable = dict[str, list[str]]  # pool, speaker set or speaker -> utterance or speaker ids
Models = list[tuple[list[str], list[str], list[str]]]  # per shadow model: train, holdout, unseen
Dealt = tuple[IdTable, IdTable, Models]  # pools, speaker sets, shadow models


class SplitMismatchError(VoxauditError):
    """A saved split was applied to a corpus other than the one it was made from."""


class SplitFormatError(VoxauditError):
    """A split file is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class AuditSplit:
    """Which utterances each model of an audit trains on, which it never sees, and why."""

    level: str
    seed: int
    corpus_fingerprint: str
    corpus_name: str
    pools: dict[str, Ids]
    speakers: dict[str, Ids]
    shadow_train: tuple[Ids, ...]
    shadow_holdout: tuple[Ids, ...]
    shadow_unseen: tuple[Ids, ...]
    params: dict[str, Any] = field(default_factory=dict)
    version: int = ALGORITHM_VERSION
    #: The file it was loaded from, for error messages; not part of the split.
    origin: str | None = field(default=None, compare=False, repr=False)

    @property
    def n_shadow(self) -> int:
        """How many shadow models the split provides for."""
        return len(self.shadow_train)

    @property
    def roles(self) -> tuple[str, ...]:
        """Model roles: ``"target"``, then ``"shadow-0"``, ``"shadow-1"``, ..."""
        return ("target", *(f"shadow-{k}" for k in range(self.n_shadow)))

    def train_ids(self, role: str = "target") -> Ids:
        """Utterances the model in ``role`` trains on (its members)."""
        return self._pick(role, "target_train", self.shadow_train)

    def holdout_ids(self, role: str = "target") -> Ids:
        """Utterances the model in ``role`` never sees (at speaker level, of unseen speakers)."""
        return self._pick(role, "target_holdout", self.shadow_holdout)

    def unseen_ids(self, role: str = "target") -> Ids:
        """Untrained voices of the speakers the model in ``role`` trains on (speaker level)."""
        return self._pick(role, "target_member_unseen", self.shadow_unseen)

    def _pick(self, role: str, target_pool: str, per_model: tuple[Ids, ...]) -> Ids:
        if role not in self.roles:
            raise VoxauditError(
                f"{self._at}unknown model role {role!r}; valid roles: {', '.join(self.roles)}"
            )
        if role == "target":
            return self.pools.get(target_pool, ())
        return per_model[int(role.removeprefix("shadow-"))]

    def membership_matrix(self) -> tuple[Ids, np.ndarray]:
        """Candidate utterances and a bool ``[n_shadow, n_units]`` array of shadow membership.

        True where shadow model m trained on the utterance (sample level) or on its speaker
        (speaker level, so unseen voices of trained speakers count as members).
        Reference (imposter) utterances are no candidates and are left out.
        """
        units = tuple(
            sorted({i for name, ids in self.pools.items() if name != "reference" for i in ids})
        )
        column = {uid: j for j, uid in enumerate(units)}
        matrix = np.zeros((self.n_shadow, len(units)), dtype=bool)
        for m, (train, unseen) in enumerate(
            zip(self.shadow_train, self.shadow_unseen, strict=True)
        ):
            matrix[m, [column[uid] for uid in (*train, *unseen)]] = True
        return units, matrix

    def check(self, corpus: Corpus) -> None:
        """Raise SplitMismatchError unless ``corpus`` is the corpus this split was made from."""
        found = corpus.fingerprint()
        if found != self.corpus_fingerprint:
            raise SplitMismatchError(
                f"{self._at}this split was made for corpus {self.corpus_name!r} (fingerprint "
                f"{self.corpus_fingerprint[:16]}) but corpus {corpus.name!r} has fingerprint "
                f"{found[:16]}: its utterances, speakers or audio changed since; "
                "re-run `voxaudit split` to make a split for it"
            )

    @property
    def _at(self) -> str:
        """The prefix naming the split's file in errors (none for a split made in memory)."""
        return f"{self.origin}: " if self.origin else ""

    def summary(self) -> dict[str, Any]:
        """Pool sizes, speaker-set sizes and per-shadow-model sizes, for reports."""
        return {
            "level": self.level,
            "corpus": self.corpus_name,
            "seed": self.seed,
            "utterances": {name: len(ids) for name, ids in self.pools.items()},
            "speakers": {name: len(ids) for name, ids in self.speakers.items()},
            "shadow_mode": self.params.get("shadow_mode"),
            "shadow_models": [
                {"train": len(t), "holdout": len(h), "unseen": len(u)}
                for t, h, u in zip(
                    self.shadow_train, self.shadow_holdout, self.shadow_unseen, strict=True
                )
            ],
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON document ``save`` writes."""
        return {
            "schema": SCHEMA,
            "version": self.version,
            "level": self.level,
            "seed": self.seed,
            "corpus_name": self.corpus_name,
            "corpus_fingerprint": self.corpus_fingerprint,
            "params": self.params,
            "speakers": {k: list(v) for k, v in self.speakers.items()},
            "pools": {k: list(v) for k, v in self.pools.items()},
            "shadow_train": [list(ids) for ids in self.shadow_train],
            "shadow_holdout": [list(ids) for ids in self.shadow_holdout],
            "shadow_unseen": [list(ids) for ids in self.shadow_unseen],
        }

    def save(self, path: str | Path) -> Path:
        """Write the split as JSON atomically (a reader never sees half a file)."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> AuditSplit:
        """Read a split saved by ``save``; SplitFormatError names the file and the bad field."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SplitFormatError(f"{path}: not a split file (invalid JSON: {exc})") from exc
        return _from_dict(data, path)

    @classmethod
    def from_membership(
        cls,
        corpus: Corpus,
        members: Iterable[str],
        nonmembers: Iterable[str],
        *,
        level: str = "sample",
        shadows: Sequence[tuple[Iterable[str], Iterable[str]]] = (),
        reference: Iterable[str] = (),
        unseen: Iterable[str] = (),
    ) -> AuditSplit:
        """The split of a model trained elsewhere, from what it is known to have trained on.

        An id outside the corpus, a member that is also a non-member, or (at speaker level) a
        speaker on both sides is an error naming the first culprit.

        Parameters
        ----------
        corpus : the corpus every id belongs to.
        members : utterance ids the target trained on.
        nonmembers : utterance ids it never saw (at speaker level: of speakers it never saw).
        level : ``"sample"`` (was this recording used?) or ``"speaker"`` (this voice?).
        shadows : for each shadow or reference model, its (members, non-members).
        reference : speaker level: imposter utterances no model trained on.
        unseen : speaker level: voices of member speakers the target did not train on.
        """
        if level not in LEVELS:
            raise VoxauditError(f"unknown level {level!r}; use one of: {', '.join(LEVELS)}")
        known = set(corpus.ids)
        speaker_of = {u.id: u.speaker for u in corpus}

        def ids(values: Iterable[str], what: str) -> tuple[str, ...]:
            chosen = tuple(sorted(dict.fromkeys(str(v) for v in values)))
            missing = [i for i in chosen if i not in known]
            if missing:
                raise VoxauditError(
                    f"{what}: {len(missing)} id(s) not in corpus {corpus.name!r} "
                    f"(first: {missing[0]!r})"
                )
            return chosen

        def disjoint(inside: tuple[str, ...], outside: tuple[str, ...], what: str) -> None:
            both = sorted(set(inside) & set(outside))
            if both:
                raise VoxauditError(f"{what}: {both[0]!r} is both a member and a non-member")
            if level == "speaker":
                voices = {speaker_of[i] for i in inside} & {speaker_of[i] for i in outside}
                if voices:
                    raise VoxauditError(
                        f"{what}: speaker {sorted(voices)[0]!r} has members and non-members; "
                        "at speaker level a voice is on one side"
                    )

        target = (ids(members, "members"), ids(nonmembers, "non-members"))
        if not target[0] or not target[1]:
            raise VoxauditError("an audit needs at least one member and one non-member")
        disjoint(*target, "target")
        models = []
        for k, (inside, outside) in enumerate(shadows):
            pair = (ids(inside, f"shadow {k} members"), ids(outside, f"shadow {k} non-members"))
            disjoint(*pair, f"shadow {k}")
            models.append(pair)
        shadow_sides = [
            tuple(sorted({i for m in models for i in m[side]} - set(target[0]) - set(target[1])))
            for side in (0, 1)
        ]
        found = {
            "target_train": target[0],
            "target_holdout": target[1],
            "target_member_unseen": ids(unseen, "unseen"),
            "shadow_train": shadow_sides[0],
            "shadow_member_unseen": (),
            "shadow_holdout": shadow_sides[1],
            "reference": ids(reference, "reference"),
        }
        required = SAMPLE_POOLS if level == "sample" else SPEAKER_POOLS
        pools = {name: found[name] for name in required}
        return cls(
            level=level,
            seed=0,
            corpus_fingerprint=corpus.fingerprint(),
            corpus_name=corpus.name,
            pools=pools,
            speakers={
                name: tuple(sorted({speaker_of[i] for i in pool})) for name, pool in pools.items()
            },
            shadow_train=tuple(m[0] for m in models),
            shadow_holdout=tuple(m[1] for m in models),
            shadow_unseen=tuple(() for _ in models),
            params={"from": "membership lists"},
        )


def _from_dict(data: Any, path: Path) -> AuditSplit:
    """Validate a parsed split document field by field."""
    if not isinstance(data, dict):
        raise SplitFormatError(f"{path}: not a split file (expected a JSON object)")
    if data.get("schema") != SCHEMA:
        raise SplitFormatError(
            f"{path}: field 'schema' is {data.get('schema')!r}, expected {SCHEMA!r}"
        )

    def get(name: str, valid: Callable[[Any], bool], expected: str) -> Any:
        if name not in data:
            raise SplitFormatError(f"{path}: missing field {name!r}")
        if not valid(data[name]):
            found = repr(data[name])
            found = found if len(found) <= 40 else found[:37] + "..."
            raise SplitFormatError(f"{path}: field {name!r} is {found}; expected {expected}")
        return data[name]

    level = get("level", lambda v: v in LEVELS, f"one of {', '.join(LEVELS)}")
    pools = get("pools", _is_id_map, "an object of string lists")
    required = SAMPLE_POOLS if level == "sample" else SPEAKER_POOLS
    missing = [name for name in required if name not in pools]
    if missing:
        raise SplitFormatError(f"{path}: field 'pools' lacks {missing[0]!r} for a {level} split")
    per_model = {
        name: get(name, lambda v: isinstance(v, list) and all(map(_is_ids, v)), "a list of lists")
        for name in ("shadow_train", "shadow_holdout", "shadow_unseen")
    }
    # No shadow model is a valid split: a target with known membership audited cross-fitted.
    if len({len(v) for v in per_model.values()}) != 1:
        raise SplitFormatError(f"{path}: fields 'shadow_*' should list the same models")
    return AuditSplit(
        level=level,
        seed=get("seed", lambda v: isinstance(v, int), "an integer"),
        corpus_fingerprint=get("corpus_fingerprint", lambda v: isinstance(v, str), "a string"),
        corpus_name=get("corpus_name", lambda v: isinstance(v, str), "a string"),
        pools={k: tuple(v) for k, v in pools.items()},
        speakers={k: tuple(v) for k, v in get("speakers", _is_id_map, "an object").items()},
        shadow_train=tuple(tuple(ids) for ids in per_model["shadow_train"]),
        shadow_holdout=tuple(tuple(ids) for ids in per_model["shadow_holdout"]),
        shadow_unseen=tuple(tuple(ids) for ids in per_model["shadow_unseen"]),
        params=get("params", lambda v: isinstance(v, dict), "an object"),
        version=get("version", lambda v: isinstance(v, int), "an integer"),
        origin=str(path),
    )


def _is_ids(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_id_map(value: Any) -> bool:
    return isinstance(value, dict) and all(map(_is_ids, value.values()))


def make_split(
    corpus: Corpus,
    level: str = "sample",
    *,
    seed: int = 0,
    target_fraction: float = 0.5,
    n_shadow: int = 1,
    shadow_mode: str = "disjoint",
    halves_population: str = "shadow",
    reference_speakers: int | float = 0.2,
    unseen_fraction: float = 0.2,
    max_per_speaker: int | None = None,
    stratify_labels: bool = False,
    paired_halves: bool = False,
) -> AuditSplit:
    """Deal ``corpus`` into disjoint audit pools; the same ids and seed always give the same split.

    ``shadow_mode="disjoint"`` gives each shadow model its own slice of the shadow pools
    (Shokri et al.); ``"halves"`` puts every unit of ``halves_population`` (an utterance, or a
    speaker at speaker level) in the training set of half the models (LiRA / RMIA): the shadow
    pools (``"shadow"``), shadow and target pools (``"all"``), or the target pools alone
    (``"target"``). The last two let references train on the target's candidates (online
    LiRA); ``"target"`` draws each reference exactly as the target was drawn (a random half of
    the target pools), so references and target train on as much data.

    A sample-level split balances every pool by speaker; ``stratify_labels`` balances it by
    speaker and transcript (the label of a digit or command corpus) together. Without it,
    members and non-members can differ in which words they hold, and a model that never saw
    either side then tells them apart through how hard each word is: the null control shows
    it, and the audit's leakage includes it.

    ``paired_halves`` deals random halves in pairs of models (0 and 1, 2 and 3, ...): each
    unit is IN for exactly one model of every pair, so the first K models, for every even K,
    still hold each unit IN for half of them. An audit can then use fewer shadows than were
    trained (to measure what more shadows buy) and every unit keeps IN and OUT references.
    """
    params: dict[str, Any] = {
        "target_fraction": target_fraction,
        "n_shadow": n_shadow,
        "shadow_mode": shadow_mode,
        "halves_population": halves_population,
        "reference_speakers": reference_speakers,
        "unseen_fraction": unseen_fraction,
        "max_per_speaker": max_per_speaker,
    }
    # Recorded only when set, so earlier split files stay equal.
    if stratify_labels:
        params["stratify_labels"] = True
    if paired_halves:
        params["paired_halves"] = True
    _check_options(level, seed, params)
    if len(corpus) == 0:
        raise VoxauditError(f"corpus {corpus.name!r} is empty: there is nothing to split")
    # Separate streams, so the shadow options never change the target pools.
    base, shadow = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    groups = _shuffled_groups(corpus, base, max_per_speaker)
    if level == "sample":
        labels = _labels(corpus) if stratify_labels else None
        pools, speakers, models = _sample_level(corpus.name, groups, shadow, params, labels)
    else:
        pools, speakers, models = _speaker_level(corpus.name, groups, shadow, params)
    return AuditSplit(
        level=level,
        seed=int(seed),
        corpus_fingerprint=corpus.fingerprint(),
        corpus_name=corpus.name,
        pools={name: tuple(sorted(ids)) for name, ids in pools.items()},
        speakers={name: tuple(sorted(spk)) for name, spk in speakers.items()},
        shadow_train=tuple(tuple(sorted(m[0])) for m in models),
        shadow_holdout=tuple(tuple(sorted(m[1])) for m in models),
        shadow_unseen=tuple(tuple(sorted(m[2])) for m in models),
        params=params,
    )


BASE_POOLS = ("speakers", "recordings")


def base_pool(
    corpus: Corpus, fraction: float, *, by: str = "speakers", seed: int = 0
) -> tuple[list[str], list[str]]:
    """Set aside the pretraining pool P of a base model: (P's ids, the other ids), both sorted.

    ``by="speakers"`` takes ``fraction`` of the speakers, whole (the base heard other people,
    as a public checkpoint did); ``"recordings"`` takes ``fraction`` of every speaker's
    recordings (the base knows the same voices: a speaker classifier fine-tuned from it keeps
    its classes). The rest is what the audit splits into members, non-members and shadow
    pools, so the base never trained on an audited recording.
    """
    if by not in BASE_POOLS:
        raise VoxauditError(f"base pool by must be one of {', '.join(BASE_POOLS)}, got {by!r}")
    if not 0 < fraction < 1:
        raise VoxauditError(f"base pool fraction must lie strictly between 0 and 1, got {fraction}")
    groups = _shuffled_groups(corpus, np.random.default_rng([seed, *b"base pool"]), None)
    if by == "speakers":
        n = _round(fraction * len(groups))
        if not 1 <= n < len(groups):
            raise VoxauditError(
                f"corpus {corpus.name!r} has {len(groups)} speakers: a base pool of "
                f"{fraction:g} of them leaves {'no' if n < 1 else 'every'} speaker to it"
            )
        pool = [uid for _, ids in groups[:n] for uid in ids]
    else:
        carry = _Carry(fraction)
        pool = [uid for _, ids in groups for uid in ids[: carry.take(len(ids))]]
        if not pool or len(pool) == len(corpus):
            raise VoxauditError(
                f"corpus {corpus.name!r} has {len(corpus)} recordings: a base pool of "
                f"{fraction:g} of them leaves {'none' if not pool else 'all'} to it"
            )
    taken = set(pool)
    return sorted(pool), sorted(u.id for u in corpus if u.id not in taken)


def _check_options(level: str, seed: int, p: dict[str, Any]) -> None:
    """Refuse option values that cannot make a split, naming the option."""
    if level not in LEVELS:
        raise VoxauditError(f"unknown split level {level!r}; use one of: {', '.join(LEVELS)}")
    if p["shadow_mode"] not in SHADOW_MODES:
        raise VoxauditError(
            f"unknown shadow_mode {p['shadow_mode']!r}; use one of: {', '.join(SHADOW_MODES)}"
        )
    rules = [
        (isinstance(seed, (int, np.integer)) and seed >= 0, "seed must be an integer >= 0"),
        (0 < p["target_fraction"] < 1, "target_fraction must lie strictly between 0 and 1"),
        (isinstance(p["n_shadow"], int) and p["n_shadow"] >= 1, "n_shadow must be >= 1"),
        (
            p["shadow_mode"] != "halves" or p["n_shadow"] >= 2,
            "shadow_mode='halves' needs n_shadow >= 2 (each unit is in half the models)",
        ),
        (
            p["halves_population"] in HALVES_POPULATIONS,
            f"halves_population must be one of {', '.join(HALVES_POPULATIONS)}",
        ),
        (
            p["halves_population"] == "shadow" or p["shadow_mode"] == "halves",
            "halves_population applies to shadow_mode='halves'",
        ),
        (
            not p.get("paired_halves") or (p["shadow_mode"] == "halves" and p["n_shadow"] % 2 == 0),
            "paired_halves applies to shadow_mode='halves' with an even n_shadow",
        ),
        (0 <= p["unseen_fraction"] < 1, "unseen_fraction must lie in [0, 1)"),
        (
            p["max_per_speaker"] is None or p["max_per_speaker"] >= 1,
            "max_per_speaker must be None or >= 1",
        ),
        (
            level == "sample" or not p.get("stratify_labels"),
            "stratify_labels applies to sample-level splits (speaker level deals whole speakers)",
        ),
        (
            (isinstance(p["reference_speakers"], float) and 0 <= p["reference_speakers"] < 1)
            or (isinstance(p["reference_speakers"], int) and p["reference_speakers"] >= 0),
            "reference_speakers must be a count >= 0 or a fraction in [0, 1)",
        ),
    ]
    for ok, message in rules:
        if not ok:
            raise VoxauditError(message)


def _shuffled_groups(corpus: Corpus, rng: np.random.Generator, cap: int | None) -> Groups:
    """Speakers in random order, each with its utterance ids in random order (capped)."""
    by_speaker: dict[str, list[str]] = {}
    for u in corpus:
        by_speaker.setdefault(u.speaker, []).append(u.id)
    names = sorted(by_speaker)  # sorting first makes the split independent of corpus order
    order = rng.permutation(len(names))
    shuffled = {name: _permuted(sorted(by_speaker[name]), rng)[:cap] for name in names}
    return [(names[i], shuffled[names[i]]) for i in order]


def _permuted(items: list[str], rng: np.random.Generator) -> list[str]:
    return [items[i] for i in rng.permutation(len(items))]


class _Carry:
    """Takes ``fraction`` of each group, carrying the remainder so the total rounds only once."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction
        self.seen = 0
        self.taken = 0

    def take(self, n: int) -> int:
        """How many of the next ``n`` items to take."""
        self.seen += n
        due = _round(self.fraction * self.seen) - self.taken
        self.taken += due
        return due


def _round(x: float) -> int:
    """Round half up (Python's round() goes to even, which would bias the dealing)."""
    return math.floor(x + 0.5)


def _round_robin(items: Sequence[Any], n: int) -> list[list[Any]]:
    """Deal items into ``n`` hands in turn, so hand sizes differ by at most one."""
    return [list(items[k::n]) for k in range(n)]


def _smallest(fits: Callable[[int], bool]) -> int:
    """The smallest count for which ``fits`` holds (how much data a split needs)."""
    n = 1
    while not fits(n):
        n += 1
    return n


def _sides_fit(total: int, fraction: float, shadow_parts: int) -> bool:
    """Whether ``total`` units give the target side 2 and the shadow side ``shadow_parts``."""
    target = _round(fraction * total)
    return target >= 2 and total - target >= shadow_parts


def _sample_level(
    name: str,
    groups: Groups,
    rng: np.random.Generator,
    p: dict[str, Any],
    labels: dict[str, str] | None = None,
) -> Dealt:
    """Deal each speaker's utterances over all four pools, alternating train and holdout;
    with ``labels`` (id -> transcript), balanced by speaker and by label at once."""
    total = sum(len(ids) for _, ids in groups)
    disjoint = p["shadow_mode"] == "disjoint"
    parts = 2 * p["n_shadow"] if disjoint else 2
    if not _sides_fit(total, p["target_fraction"], parts):
        need = _smallest(lambda n: _sides_fit(n, p["target_fraction"], parts))
        raise VoxauditError(
            f"corpus {name!r} is too small for a sample-level split: every pool needs an "
            f"utterance, so with target_fraction={p['target_fraction']} and {p['n_shadow']} "
            f"{p['shadow_mode']} shadow model(s) it needs at least {need} utterances; "
            f"it has {total}" + (" after max_per_speaker" if p["max_per_speaker"] else "")
        )
    speakers = {"all": [spk for spk, _ in groups]}
    if labels is not None:
        groups = _cut_by_label(groups, labels)
    carry = _Carry(p["target_fraction"])
    sides: dict[str, Groups] = {"target": [], "shadow": []}
    for speaker, ids in groups:
        k = carry.take(len(ids))
        sides["target"].append((speaker, ids[:k]))
        sides["shadow"].append((speaker, ids[k:]))
    pools: dict[str, list[str]] = {pool: [] for pool in SAMPLE_POOLS}
    for side, side_groups in sides.items():
        if labels is None:
            # A global toggle (not per speaker) keeps train and holdout within one overall.
            firsts = itertools.cycle(["train", "holdout"])
            for _, part in side_groups:
                for uid in part:
                    pools[f"{side}_{next(firsts)}"].append(uid)
            continue
        odd = [i for i, (_, part) in enumerate(side_groups) if len(part) % 2]
        cells = [(side_groups[i][0], labels[side_groups[i][1][0]]) for i in odd]
        extra_in_train = dict(zip(odd, _balanced_orientation(cells), strict=True))
        for i, (_, part) in enumerate(side_groups):
            # An even part splits evenly whichever pool it starts with.
            first, second = ("train", "holdout") if extra_in_train.get(i, True) else (
                "holdout", "train")  # fmt: skip
            for j, uid in enumerate(part):
                pools[f"{side}_{second if j % 2 else first}"].append(uid)
    if disjoint:
        # Dealing in speaker order keeps each model's slice stratified by speaker.
        trains = _round_robin(pools["shadow_train"], p["n_shadow"])
        holdouts = _round_robin(pools["shadow_holdout"], p["n_shadow"])
        return pools, speakers, [(t, h, []) for t, h in zip(trains, holdouts, strict=True)]
    units = _halves_units(
        pools["shadow_train"] + pools["shadow_holdout"],
        pools["target_train"] + pools["target_holdout"],
        p["halves_population"],
    )
    models: Models = [
        (ins, outs, [])
        for ins, outs in shadow_halves(
            units, p["n_shadow"], rng, paired=p.get("paired_halves", False)
        )
    ]
    return pools, speakers, models


def _labels(corpus: Corpus) -> dict[str, str]:
    """Each utterance's transcript, the label a sample-level split can stratify by."""
    if not any(u.transcript for u in corpus):
        raise VoxauditError(
            f"stratify_labels: corpus {corpus.name!r} has no transcripts to stratify by"
        )
    return {u.id: u.transcript or "" for u in corpus}


def _cut_by_label(groups: Groups, labels: dict[str, str]) -> Groups:
    """Each speaker's group cut into one group per label, in their shuffled order."""
    finer: Groups = []
    for speaker, ids in groups:
        by_label: dict[str, list[str]] = {}
        for uid in ids:
            by_label.setdefault(labels[uid], []).append(uid)
        finer += [(speaker, same) for same in by_label.values()]
    return finer


def _balanced_orientation(cells: Sequence[tuple[str, str]]) -> list[bool]:
    """For (speaker, label) cells of odd size, which give their extra item to train, so that
    every speaker, every label and the whole side get within one as many extras in train as
    in holdout.

    Hand-written because no library does this small case of matrix rounding: the cells are
    the edges of a bipartite multigraph (speakers, labels). Odd-degree speakers are joined to
    one extra vertex and odd-degree labels to another (and the two to each other when both
    are odd), so that every degree is even; closed walks then orient each edge so that every
    vertex has as many edges out (extra in train) as in. The speakers' extra vertex being
    balanced too is what keeps the whole side within one.
    """
    rows = [("speaker", speaker) for speaker, _ in cells]
    cols = [("label", label) for _, label in cells]
    edges = list(zip(rows, cols, strict=True))
    degree = Counter(rows + cols)
    for kind in ("speaker", "label"):
        edges += [(v, ("extra", kind)) for v, d in degree.items() if v[0] == kind and d % 2]
    if sum(1 for _, b in edges if b == ("extra", "speaker")) % 2:
        edges.append((("extra", "speaker"), ("extra", "label")))
    incident: dict[tuple[str, str], list[int]] = {}
    for e, (a, b) in enumerate(edges):
        incident.setdefault(a, []).append(e)
        incident.setdefault(b, []).append(e)
    forward = [False] * len(edges)  # traversed from its first vertex to its second
    used = [False] * len(edges)
    nxt = dict.fromkeys(incident, 0)
    for vertex in incident:
        # Walk along unused edges until stuck. On an all-even graph a walk can only get stuck
        # where it started, so each walk is closed, and a vertex's walks leave it as often as
        # they enter it; walks starting elsewhere that pass a vertex are closed as well.
        while True:
            here = incident[vertex]
            while nxt[vertex] < len(here) and used[here[nxt[vertex]]]:
                nxt[vertex] += 1
            if nxt[vertex] == len(here):
                break
            e = here[nxt[vertex]]
            used[e] = True
            a, b = edges[e]
            forward[e] = vertex == a
            vertex = b if vertex == a else a
    return forward[: len(cells)]


def _reference_count(reference: int | float, n_speakers: int) -> int:
    """Reference speakers to set aside: a count, or a fraction (at least one when positive)."""
    if isinstance(reference, float):
        return max(1, _round(reference * n_speakers)) if reference > 0 else 0
    return reference


def _speakers_fit(n: int, p: dict[str, Any], parts: int) -> bool:
    """Whether ``n`` speakers fill every speaker set of a speaker-level split."""
    rest = n - _reference_count(p["reference_speakers"], n)
    return rest > 0 and _sides_fit(rest, p["target_fraction"], parts)


def _speaker_level(name: str, groups: Groups, rng: np.random.Generator, p: dict[str, Any]) -> Dealt:
    """Deal whole speakers into disjoint sets; member speakers keep some voices unseen."""
    disjoint = p["shadow_mode"] == "disjoint"
    parts = 2 * p["n_shadow"] if disjoint else 2
    if not _speakers_fit(len(groups), p, parts):
        need = _smallest(lambda n: _speakers_fit(n, p, parts))
        raise VoxauditError(
            f"corpus {name!r} has {len(groups)} speakers; a speaker-level split with "
            f"target_fraction={p['target_fraction']}, reference_speakers="
            f"{p['reference_speakers']} and {p['n_shadow']} {p['shadow_mode']} shadow model(s) "
            f"needs at least {need} (a member and a non-member speaker per model, plus the "
            "reference speakers)"
        )
    n_ref = _reference_count(p["reference_speakers"], len(groups))
    reference, rest = groups[:n_ref], groups[n_ref:]
    every = dict(rest)
    trained, unseen = _voices(rest, p["unseen_fraction"])
    k = _round(p["target_fraction"] * len(rest))
    t_member, t_non = _round_robin([spk for spk, _ in rest[:k]], 2)
    s_member, s_non = _round_robin([spk for spk, _ in rest[k:]], 2)
    speakers = {
        "target_member": t_member,
        "target_nonmember": t_non,
        "shadow_member": s_member,
        "shadow_nonmember": s_non,
        "reference": [spk for spk, _ in reference],
    }
    pools = {
        "target_train": _gather(t_member, trained),
        "target_member_unseen": _gather(t_member, unseen),
        "target_holdout": _gather(t_non, every),
        "shadow_train": _gather(s_member, trained),
        "shadow_member_unseen": _gather(s_member, unseen),
        "shadow_holdout": _gather(s_non, every),
        "reference": [uid for _, ids in reference for uid in ids],
    }
    for pool in ("target_member_unseen", "shadow_member_unseen"):
        if p["unseen_fraction"] > 0 and not pools[pool]:
            raise VoxauditError(
                f"corpus {name!r}: pool {pool!r} would be empty; member speakers need at least "
                "2 utterances each to keep an unseen voice (or pass unseen_fraction=0)"
            )
    if disjoint:
        members = _round_robin(s_member, p["n_shadow"])
        others = _round_robin(s_non, p["n_shadow"])
    else:
        units = _halves_units(s_member + s_non, t_member + t_non, p["halves_population"])
        members, others = zip(
            *shadow_halves(units, p["n_shadow"], rng, paired=p.get("paired_halves", False)),
            strict=True,
        )
    models = [
        (_gather(m, trained), _gather(o, every), _gather(m, unseen))
        for m, o in zip(members, others, strict=True)
    ]
    return pools, speakers, models


def _gather(speakers: list[str], table: dict[str, list[str]]) -> list[str]:
    """The utterance ids ``table`` lists for each of ``speakers``."""
    return [uid for spk in speakers for uid in table[spk]]


def _voices(groups: Groups, unseen_fraction: float) -> tuple[IdTable, IdTable]:
    """Each speaker's training and unseen voices.

    Counted per speaker, not carried over: every speaker keeps a training voice and, when it
    has two or more and ``unseen_fraction`` > 0, an unseen one to query the attack with.
    """
    trained: IdTable = {}
    unseen: IdTable = {}
    for spk, ids in groups:
        k = min(max(_round(unseen_fraction * len(ids)), 1), len(ids) - 1) if unseen_fraction else 0
        trained[spk], unseen[spk] = ids[k:], ids[:k]
    return trained, unseen


def _halves_units(shadow: list[str], target: list[str], population: str) -> list[str]:
    """The units random halves deal, by ``halves_population``."""
    return {"shadow": shadow, "all": shadow + target, "target": target}[population]


def shadow_halves(
    units: list[str], n_models: int, rng: np.random.Generator, *, paired: bool = False
) -> list[tuple[list[str], list[str]]]:
    """Per shadow model, the units it trains on and the rest, each unit IN for half the models
    (random halves, balanced: LiRA's and RMIA's reference models).

    Parameters
    ----------
    units : the utterance or speaker ids to deal.
    n_models : how many models; even when ``paired``.
    rng : the random stream the halves are drawn from.
    paired : deal each pair of models (0 and 1, 2 and 3, ...) complementary halves, so every
        even-sized prefix of the models is balanced too.
    """
    if paired and n_models % 2:
        raise VoxauditError(f"paired halves need an even number of models, got {n_models}")
    order = _permuted(sorted(units), rng)
    keep = _balanced_halves(len(order), n_models, rng, paired)
    return [
        (
            [u for u, k in zip(order, row, strict=True) if k],
            [u for u, k in zip(order, row, strict=True) if not k],
        )
        for row in keep
    ]


def _balanced_halves(
    n_units: int, n_models: int, rng: np.random.Generator, paired: bool
) -> np.ndarray:
    """A bool ``[n_models, n_units]`` IN matrix: each unit IN for half the models.

    LiRA's construction: each unit ranks the models at random and the first half are IN, so
    memberships are independent across units (odd ``n_models`` alternate floor and ceil).
    Paired, a coin per unit and pair of models says which of the two has it IN. Model sizes
    vary binomially; a draw that leaves a model with no training or no holdout unit (only
    likely on tiny populations) is redrawn.
    """
    need = n_models // 2 + (np.arange(n_units) % 2 if n_models % 2 else 0)
    for _ in range(1000):
        if paired:
            first = rng.random((n_models // 2, n_units)) < 0.5
            keep = np.stack([first, ~first], axis=1).reshape(n_models, n_units)
        else:
            ranks = rng.random((n_models, n_units)).argsort(axis=0).argsort(axis=0)
            keep = ranks < need
        sizes = keep.sum(axis=1)
        if n_units < 2 or ((sizes > 0) & (sizes < n_units)).all():
            return keep
    raise VoxauditError(
        f"{n_units} shadow units are too few for {n_models} random-halves shadow models "
        "(some model would train on nothing); add data or use fewer shadow models"
    )


#: Utterance ids: a list, or a text file of one id or audio path per line.
IdList = Iterable[str] | str | Path


def read_ids(values: IdList, corpus: Corpus, what: str) -> list[str]:
    """Utterance ids from a list, or from a file of one id or audio path per line (``#``
    comments and blank lines skipped; paths relative to the file); an unknown line is an
    error naming the file and line."""
    if isinstance(values, str | Path):
        path = Path(values)
        if not path.is_file():
            raise VoxauditError(f"{what}: {path} is not a file of ids")
        lines = [line.strip() for line in path.read_text("utf-8").splitlines()]
        by_path = {str(u.path.resolve()): u.id for u in corpus if u.path is not None}
        out = []
        for number, line in enumerate(lines, 1):
            if not line or line.startswith("#"):
                continue
            if line in corpus:
                out.append(line)
                continue
            resolved = str((path.parent / line).resolve())
            if resolved not in by_path:
                raise VoxauditError(
                    f"{path}:{number}: {line!r} is neither an utterance id nor an audio file "
                    f"of corpus {corpus.name!r}"
                )
            out.append(by_path[resolved])
        return out
    return [str(v) for v in values]
