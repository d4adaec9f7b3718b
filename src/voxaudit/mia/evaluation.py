"""Balanced member / non-member evaluation sets for each model of an audit split.

Every model an audit queries (the target, each shadow, the null control) is evaluated on a set
of utterances whose membership *for that model* is known from the split:

* sample level: members are the model's training utterances, non-members its holdout;
* speaker level: members are utterances of speakers it trained on (``evidence="unseen"``: their
  voices it never saw, so the question is the speaker, not the recording; ``"trained"``: the
  recordings it trained on), non-members are utterances of speakers it never saw.

Sets are balanced (as many members as non-members; at speaker level as many member speakers
as non-member speakers, each with the same number of utterances), so accuracy at 50% is chance.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from voxaudit.data.corpus import Corpus
from voxaudit.data.splits import AuditSplit
from voxaudit.errors import VoxauditError
from voxaudit.mia.configs import EVIDENCE


@dataclass(frozen=True)
class EvalSet:
    """Utterance ids, their speakers and whether each is a member of the model evaluated."""

    ids: tuple[str, ...]
    speakers: tuple[str, ...]
    is_member: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_members(self) -> int:
        return int(self.is_member.sum())

    @property
    def n_nonmembers(self) -> int:
        return len(self) - self.n_members


def evaluation_set(
    split: AuditSplit,
    corpus: Corpus,
    role: str,
    *,
    max_per_side: int | None = None,
    evidence: str = "unseen",
    trained: Collection[str] | None = None,
    seed: int = 0,
) -> EvalSet:
    """The balanced evaluation set of the model in ``role`` (``"target"`` or ``"shadow-K"``).

    ``max_per_side`` caps members (and so non-members) at sample level, and member speakers
    (and so non-member speakers) at speaker level. ``trained``, when given, are the utterances
    the model really trained on: training-pool utterances outside it (a validation share) are
    then no members.
    """
    if evidence not in EVIDENCE:
        raise VoxauditError(f"unknown evidence {evidence!r}; use one of: {', '.join(EVIDENCE)}")
    rng = np.random.default_rng([seed, *role.encode()])
    speaker_of = {u.id: u.speaker for u in corpus}
    train_ids = [i for i in split.train_ids(role) if trained is None or i in trained]
    if split.level == "sample":
        members, nonmembers = _balanced(train_ids, list(split.holdout_ids(role)), max_per_side, rng)
    else:
        member_ids = split.unseen_ids(role) if evidence == "unseen" else train_ids
        if not member_ids:
            raise VoxauditError(
                f"split has no unseen voices for {role}'s member speakers: make it with "
                "unseen_fraction > 0, or use evidence='trained'"
            )
        members, nonmembers = _balanced_speakers(
            _group(member_ids, speaker_of), _group(split.holdout_ids(role), speaker_of),
            max_per_side, rng,
        )  # fmt: skip
    if not members or not nonmembers:
        raise VoxauditError(
            f"{role}: the split leaves no {'members' if not members else 'non-members'} to evaluate"
        )
    ids = tuple(members + nonmembers)
    return EvalSet(
        ids,
        tuple(speaker_of[i] for i in ids),
        np.array([True] * len(members) + [False] * len(nonmembers)),
    )


def _balanced(
    members: list[str], nonmembers: list[str], cap: int | None, rng: np.random.Generator
) -> tuple[list[str], list[str]]:
    n = min(len(members), len(nonmembers), cap or len(members))
    return _pick(members, n, rng), _pick(nonmembers, n, rng)


def _balanced_speakers(
    members: Mapping[str, list[str]],
    nonmembers: Mapping[str, list[str]],
    cap: int | None,
    rng: np.random.Generator,
) -> tuple[list[str], list[str]]:
    """As many speakers on each side, every chosen speaker with the same number of utterances."""
    n = min(len(members), len(nonmembers), cap or len(members))
    chosen = [_pick(list(side), n, rng) for side in (members, nonmembers)]
    # Equal utterance counts, else the count alone would tell members from non-members.
    per_speaker = min(
        len(side[s]) for side, c in zip((members, nonmembers), chosen, strict=True) for s in c
    )
    return tuple(  # type: ignore[return-value]
        [uid for s in c for uid in _pick(side[s], per_speaker, rng)]
        for side, c in zip((members, nonmembers), chosen, strict=True)
    )


def _group(ids: Sequence[str], speaker_of: Mapping[str, str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for uid in sorted(ids):
        groups[speaker_of[uid]].append(uid)
    return dict(sorted(groups.items()))


def _pick(items: list[str], n: int, rng: np.random.Generator) -> list[str]:
    """``n`` of ``items`` at random, in their original (sorted) order."""
    items = sorted(items)
    keep = np.sort(rng.choice(len(items), size=n, replace=False)) if n < len(items) else range(n)
    return [items[i] for i in keep]
