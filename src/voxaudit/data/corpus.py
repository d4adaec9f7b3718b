"""The one corpus model every loader produces and every audit reads."""

from __future__ import annotations

import hashlib
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from voxaudit.data.audio import AudioLimits, audio_problems, read_audio, resample


@dataclass(frozen=True)
class Problem:
    """Something wrong with one input: ``where`` names the file (and line), ``reason`` says what."""

    where: str
    reason: str
    severity: str = "error"  # "error": the item was left out; "warning": kept but suspicious

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass(frozen=True, eq=False)
class Utterance:
    """One recording: an id, its audio (a file, a segment of one, or an array), speaker and text."""

    id: str
    speaker: str
    transcript: str = ""
    path: Path | None = None
    samples: np.ndarray | None = field(default=None, repr=False)
    sample_rate: int | None = None
    duration: float | None = None
    start: float = 0.0  # segment bounds in seconds inside ``path`` (Kaldi ``segments``)
    end: float | None = None
    raw_transcript: str = ""  # the text as the corpus gave it; ``transcript`` is it normalized
    # Every column of the utterance's manifest row or field of its folder pattern, as given:
    # what a classifier labelled by anything but speaker or transcript reads.
    columns: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if (self.path is None) == (self.samples is None):
            raise ValueError(f"utterance {self.id!r}: give exactly one of path or samples")
        if self.samples is not None and not self.sample_rate:
            raise ValueError(f"utterance {self.id!r}: samples need a sample_rate")

    def load(self, sample_rate: int | None = None) -> np.ndarray:
        """Mono float32 samples, resampled to ``sample_rate`` when given."""
        if self.samples is not None:
            samples = np.asarray(self.samples, dtype=np.float32)
            assert self.sample_rate is not None
            if sample_rate and sample_rate != self.sample_rate:
                return resample(samples, self.sample_rate, sample_rate)
            return samples
        assert self.path is not None
        return read_audio(self.path, sample_rate, self.start, self.end)[0]

    @property
    def source(self) -> str:
        """Where the audio comes from, for messages."""
        if self.path is None:
            return f"<array:{self.id}>"
        if self.end is not None or self.start:
            return f"{self.path}[{self.start:.2f}-{self.end if self.end is not None else ''}]"
        return str(self.path)

    def content_key(self) -> str:
        """Cheap identity of the audio: file size and segment, or the array's bytes."""
        if self.samples is not None:
            digest = hashlib.sha1(np.ascontiguousarray(self.samples).tobytes()).hexdigest()
            return f"array:{digest}:{self.sample_rate}"
        assert self.path is not None
        size = self.path.stat().st_size if self.path.exists() else -1
        return f"file:{size}:{self.start}:{self.end}"


@dataclass(frozen=True)
class CorpusSummary:
    name: str
    layout: str
    utterances: int
    speakers: int
    hours: float
    sample_rates: dict[int, int]
    per_speaker_min: int
    per_speaker_median: float
    per_speaker_max: int
    mean_duration: float
    with_transcript: int
    problems: tuple[Problem, ...]
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k not in ("problems", "warnings")}
        data["sample_rates"] = {str(k): v for k, v in self.sample_rates.items()}
        data["problems"] = [p.__dict__ for p in self.problems]
        data["warnings"] = list(self.warnings)
        return data


class Corpus(Sequence[Utterance]):
    """An ordered, id-unique collection of utterances plus the problems met while loading it.

    ``problems`` are about single files (left out, or kept but suspicious); ``warnings`` are
    one-line remarks about the corpus as a whole, each naming its path (folders that look like
    labels rather than speakers, no transcripts at all), for a reader to act on.
    """

    def __init__(
        self,
        utterances: Iterable[Utterance],
        name: str = "corpus",
        layout: str = "memory",
        problems: Iterable[Problem] = (),
        warnings: Iterable[str] = (),
    ) -> None:
        self.utterances: tuple[Utterance, ...] = tuple(utterances)
        self.name = name
        self.layout = layout
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.warnings: tuple[str, ...] = tuple(warnings)
        self._index = {u.id: i for i, u in enumerate(self.utterances)}
        if len(self._index) != len(self.utterances):
            dupes = [k for k, n in Counter(u.id for u in self.utterances).items() if n > 1]
            raise ValueError(f"corpus {name!r}: duplicate utterance ids, e.g. {dupes[:3]}")

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            try:
                return self.utterances[self._index[key]]
            except KeyError:
                raise KeyError(f"corpus {self.name!r} has no utterance {key!r}") from None
        if isinstance(key, slice):
            return self._derive(self.utterances[key])
        return self.utterances[key]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, Utterance):
            key = key.id
        return key in self._index

    def __repr__(self) -> str:
        return f"Corpus({self.name!r}, {len(self)} utterances, {len(self.speakers)} speakers)"

    @property
    def ids(self) -> list[str]:
        return [u.id for u in self.utterances]

    @property
    def speakers(self) -> list[str]:
        """Speaker ids, sorted."""
        return sorted({u.speaker for u in self.utterances})

    def filter(
        self,
        predicate: Callable[[Utterance], bool] | None = None,
        *,
        speakers: Iterable[str] | None = None,
        min_duration: float | None = None,
        max_duration: float | None = None,
    ) -> Corpus:
        """A new corpus with the utterances that pass every given condition."""
        wanted = set(speakers) if speakers is not None else None

        def keep(u: Utterance) -> bool:
            if wanted is not None and u.speaker not in wanted:
                return False
            if min_duration is not None and (u.duration or 0.0) < min_duration:
                return False
            if max_duration is not None and (u.duration or 0.0) > max_duration:
                return False
            return predicate is None or predicate(u)

        return self._derive(u for u in self.utterances if keep(u))

    def subset(self, ids: Iterable[str]) -> Corpus:
        """The utterances with these ids, in the order given; an unknown id is a KeyError."""
        return self._derive(self[i] for i in ids)

    def by_speaker(self) -> dict[str, Corpus]:
        groups: dict[str, list[Utterance]] = {}
        for u in self.utterances:
            groups.setdefault(u.speaker, []).append(u)
        return {spk: self._derive(groups[spk]) for spk in sorted(groups)}

    def fingerprint(self) -> str:
        """Hash of ids, speakers and audio sizes: a split saved for one corpus refuses another."""
        h = hashlib.sha256()
        for u in sorted(self.utterances, key=lambda u: u.id):
            h.update(f"{u.id}\t{u.speaker}\t{u.content_key()}\n".encode())
        return h.hexdigest()

    def validate(self, limits: AudioLimits = AudioLimits(), progress: bool = False) -> Corpus:
        """Decode every utterance and drop those with errors; problems accumulate on the result."""
        from voxaudit.progress import track

        kept: list[Utterance] = []
        problems = list(self.problems)
        for u in track(self.utterances, "checking audio", enabled=progress):
            try:
                samples = u.load()
            except Exception as exc:
                problems.append(Problem(u.source, str(exc).removeprefix(f"{u.path}: ")))
                continue
            rate = u.sample_rate or 0
            found = audio_problems(samples, rate, limits)
            problems.extend(Problem(u.source, reason, sev) for sev, reason in found)
            if all(sev != "error" for sev, _ in found):
                kept.append(u)
        return Corpus(kept, self.name, self.layout, problems, self.warnings)

    def summary(self) -> CorpusSummary:
        counts = Counter(u.speaker for u in self.utterances)
        per_speaker = sorted(counts.values()) or [0]
        durations = [u.duration or 0.0 for u in self.utterances]
        return CorpusSummary(
            name=self.name,
            layout=self.layout,
            utterances=len(self),
            speakers=len(counts),
            hours=sum(durations) / 3600.0,
            sample_rates=dict(Counter(u.sample_rate or 0 for u in self.utterances)),
            per_speaker_min=per_speaker[0],
            per_speaker_median=float(statistics.median(per_speaker)),
            per_speaker_max=per_speaker[-1],
            mean_duration=statistics.fmean(durations) if durations else 0.0,
            with_transcript=sum(bool(u.transcript) for u in self.utterances),
            problems=self.problems,
            warnings=self.warnings,
        )

    def _derive(self, utterances: Iterable[Utterance]) -> Corpus:
        return Corpus(utterances, self.name, self.layout, self.problems, self.warnings)


def with_duration(u: Utterance, duration: float, sample_rate: int) -> Utterance:
    """A copy of ``u`` with its measured duration and native rate filled in."""
    return replace(u, duration=duration, sample_rate=sample_rate)
