"""From utterances to training batches: a feature dataset, a seeded loader, a speaker sampler."""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from voxaudit.data.corpus import Utterance
from voxaudit.data.features import Batch, FeatureCache, LogMel, collate
from voxaudit.errors import VoxauditError

Item = tuple[torch.Tensor, Any]
TargetFn = Callable[[Utterance], Any]


class UtteranceDataset(Dataset[Item]):
    """Items ``(features [T, F] float32, target)``: log-mel features of each utterance, computed
    once (kept in ``cache_dir`` when given, else in memory) and the target ``target_fn`` gives.
    """

    def __init__(
        self,
        utterances: Sequence[Utterance],
        extractor: LogMel,
        target_fn: TargetFn,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.utterances = list(utterances)
        self.ids = [u.id for u in self.utterances]
        self.target_fn = target_fn
        # A CPU copy: the model's own front-end may move to a GPU with the model.
        self.extractor = copy.deepcopy(extractor).cpu()
        self._cache = None if cache_dir is None else FeatureCache(cache_dir, self.extractor)
        self._memory: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> Item:
        return self.features(index), self.target_fn(self.utterances[index])

    def features(self, index: int) -> torch.Tensor:
        """Features ``[T, F]`` of utterance ``index``."""
        utterance = self.utterances[index]
        if self._cache is not None:
            return self._cache.get(utterance)
        if index not in self._memory:
            samples = torch.from_numpy(utterance.load(self.extractor.sample_rate))
            with torch.no_grad():
                self._memory[index] = self.extractor(samples).float()
        return self._memory[index]

    def targets(self) -> list[Any]:
        """The target of every item, in order, without touching the audio."""
        return [self.target_fn(u) for u in self.utterances]


def collate_items(items: Sequence[Item]) -> Batch:
    """Pad a list of dataset items into one Batch."""
    return collate([f for f, _ in items], [t for _, t in items])


def make_loader(
    dataset: Dataset[Item],
    batch_size: int = 16,
    *,
    shuffle: bool = False,
    seed: int = 0,
    batch_sampler: Sampler[list[int]] | None = None,
) -> DataLoader[Item]:
    """A DataLoader of Batches whose order follows ``loader.generator``, seeded with ``seed``.

    With ``batch_sampler`` (e.g. :class:`SpeakerBatchSampler`) it decides the batches instead
    of ``batch_size`` and ``shuffle``.
    """
    generator = torch.Generator().manual_seed(seed)
    if batch_sampler is not None:
        return DataLoader(
            dataset, batch_sampler=batch_sampler, collate_fn=collate_items, generator=generator
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=collate_items,
        generator=generator,
    )


class SpeakerBatchSampler(Sampler[list[int]]):
    """Batches of ``speakers_per_batch`` distinct speakers x ``utterances_per_speaker`` each (GE2E).

    Each epoch deals every speaker's utterances into groups of M (leftovers wait for a later
    epoch), then fills batches with N distinct speakers, drawn in proportion to the groups they
    have left so that talkative speakers are not starved. The plan depends only on ``seed`` and
    the epoch: iterating advances the epoch, and ``set_epoch`` (which the trainer calls) pins it,
    so a resumed run sees the same batches. Speakers with fewer than M utterances are skipped.
    """

    def __init__(
        self,
        labels: Sequence[Hashable],
        speakers_per_batch: int,
        utterances_per_speaker: int,
        seed: int = 0,
    ) -> None:
        if speakers_per_batch < 1 or utterances_per_speaker < 1:
            raise VoxauditError("speakers_per_batch and utterances_per_speaker must be >= 1")
        by_speaker: dict[Hashable, list[int]] = {}
        for index, label in enumerate(labels):
            by_speaker.setdefault(label, []).append(index)
        self.groups = [
            ids
            for _, ids in sorted(by_speaker.items(), key=lambda kv: str(kv[0]))
            if len(ids) >= utterances_per_speaker
        ]
        if len(self.groups) < speakers_per_batch:
            raise VoxauditError(
                f"{len(self.groups)} speakers have at least {utterances_per_speaker} utterances; "
                f"batches of {speakers_per_batch} speakers need at least {speakers_per_batch}"
            )
        self.speakers_per_batch = speakers_per_batch
        self.utterances_per_speaker = utterances_per_speaker
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the batches of this epoch next."""
        self.epoch = epoch

    def __len__(self) -> int:
        """Batches of the epoch to come."""
        return len(self._plan(self.epoch))

    def __iter__(self) -> Iterator[list[int]]:
        plan = self._plan(self.epoch)
        self.epoch += 1
        return iter(plan)

    def _plan(self, epoch: int) -> list[list[int]]:
        """The batches of one epoch, a pure function of the seed and the epoch."""
        rng = np.random.default_rng(np.random.SeedSequence((self.seed, epoch)))
        m = self.utterances_per_speaker
        chunks = []
        for ids in self.groups:
            shuffled = [ids[i] for i in rng.permutation(len(ids))]
            chunks.append([shuffled[k : k + m] for k in range(0, len(shuffled) - m + 1, m)])
        batches = []
        left = np.array([len(c) for c in chunks], dtype=float)
        while np.count_nonzero(left) >= self.speakers_per_batch:
            picked = rng.choice(
                len(chunks), self.speakers_per_batch, replace=False, p=left / left.sum()
            )
            batches.append([i for s in picked for i in chunks[s][int(left[s]) - 1]])
            left[picked] -= 1
        return batches
