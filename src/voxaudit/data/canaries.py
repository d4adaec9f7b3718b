"""Canaries for a one-run privacy audit (``voxaudit.mia.one_run``): records made to be
remembered, each put into training independently with probability 1/2.

A canary is the unit the audited privacy claim protects:

* ``wrong-label`` (classifiers): a recording of the corpus with a random wrong label;
* ``random-transcript`` (speech recognizers): a recording with a transcript of random words
  from the corpus' vocabulary, as many as its own;
* ``synthetic-sentence`` (speech recognizers, stronger): a synthesized utterance of a
  random sentence by a synthetic voice, unlike anything in the corpus;
* ``synthetic-speaker`` (speaker encoders): a whole synthetic speaker, several utterances,
  all in training or none (the unit of a speaker-level claim).

The recordings a canary is made from are taken out of the corpus, so that only the canary
can be in training; what is left is the fixed training set. The inclusion draw is kept with
the canaries (:meth:`Canaries.save`), and synthesized audio is written beside it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from voxaudit.data.corpus import Corpus, Utterance
from voxaudit.errors import VoxauditError
from voxaudit.files import write_json

#: The canary kinds of each model kind (``voxaudit train`` kinds), the default first.
CANARY_KINDS: dict[str, tuple[str, ...]] = {
    "classifier": ("wrong-label",),
    "asr": ("random-transcript", "synthetic-sentence"),
    "speaker": ("synthetic-speaker",),
}
RECORD = "canaries.json"
SCHEMA = "voxaudit.canaries/1"
#: Offset of the synthesizer's seed, so canary voices and sentences are not the synthetic
#: corpus' own (made with the audit's seed).
_SYNTH_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class Canaries:
    """``m`` canaries: their utterances, which canary each belongs to, and which went in.

    ``unit_of[j]`` is the canary index of ``utterances[j]``; ``included[i]`` whether canary
    ``i`` is in the training set; ``sources[j]`` the corpus recording ``utterances[j]`` was made
    from ("" for synthesized audio).
    """

    kind: str
    utterances: tuple[Utterance, ...]
    unit_of: tuple[int, ...]
    included: np.ndarray
    sources: tuple[str, ...]
    seed: int

    @property
    def count(self) -> int:
        return int(self.included.size)

    def included_ids(self) -> list[str]:
        """The ids of the canary utterances that go into training."""
        return [
            u.id
            for u, unit in zip(self.utterances, self.unit_of, strict=True)
            if self.included[unit]
        ]

    def save(self, path: str | Path) -> None:
        """Write every canary, its target and its inclusion to ``path`` (JSON, atomically)."""
        rows = [
            {
                "id": u.id,
                "canary": unit,
                "included": bool(self.included[unit]),
                "source": source,
                "speaker": u.speaker,
                "transcript": u.transcript,
                "columns": dict(u.columns),
                "audio": str(u.path) if u.path is not None else None,
            }
            for u, unit, source in zip(self.utterances, self.unit_of, self.sources, strict=True)
        ]
        write_json(
            path,
            {
                "schema": SCHEMA,
                "kind": self.kind,
                "seed": self.seed,
                "count": self.count,
                "utterances": rows,
            },
        )


def make_canaries(
    corpus: Corpus,
    kind: str,
    count: int,
    seed: int = 0,
    *,
    label: str = "speaker",
    per_speaker: int = 4,
    audio_dir: str | Path | None = None,
    progress: bool = False,
) -> tuple[Canaries, Corpus]:
    """``count`` canaries of ``kind`` and the corpus left to train on without them.

    Parameters
    ----------
    corpus:
        The corpus the canaries are made for (and, for relabelled kinds, from).
    kind:
        One of the kinds in :data:`CANARY_KINDS`.
    count:
        How many canaries ``m`` (each included with probability 1/2).
    seed:
        Seeds which recordings become canaries, their labels or texts, and the inclusion.
    label:
        ``wrong-label`` only: what the classifier's classes are (``"speaker"``,
        ``"transcript"`` or a column; see ``voxaudit.models.classifier.label_function``).
    per_speaker:
        ``synthetic-speaker`` only: utterances per synthetic speaker.
    audio_dir:
        Where synthesized kinds write their audio (resumable); in memory when None.
    progress:
        Whether to show the synthesizer's progress.

    Returns
    -------
    tuple
        The :class:`Canaries` and the rest of ``corpus`` (the fixed training set).
    """
    known = sorted({k for kinds in CANARY_KINDS.values() for k in kinds})
    if kind not in known:
        raise VoxauditError(f"canary kind must be one of {', '.join(known)} (got {kind!r})")
    if isinstance(count, bool) or not isinstance(count, int) or count < 2:
        raise VoxauditError(f"canaries must be an integer >= 2 (got {count!r})")
    rng = np.random.default_rng([seed, *b"canaries"])
    if kind in ("wrong-label", "random-transcript"):
        utterances, sources, rest = _relabelled(corpus, kind, count, rng, label)
        unit_of = tuple(range(count))
    else:
        per = per_speaker if kind == "synthetic-speaker" else 1
        if kind == "synthetic-speaker" and (isinstance(per, bool) or per < 2):
            raise VoxauditError(f"per_speaker must be an integer >= 2 (got {per_speaker!r})")
        utterances = _synthesized(corpus, count, per, seed, audio_dir, progress)
        sources, rest = ("",) * len(utterances), corpus
        unit_of = tuple(k // per for k in range(len(utterances)))
    # Drawn last, from its own stream: the inclusion is independent of everything above.
    included = np.random.default_rng([seed, *b"inclusion"]).random(count) < 0.5
    return Canaries(kind, tuple(utterances), unit_of, included, tuple(sources), seed), rest


def canary_corpus(corpus: Corpus, canaries: Canaries) -> Corpus:
    """``corpus`` with the canary utterances added (ids cannot clash: they start "canary-")."""
    clashes = [u.id for u in canaries.utterances if u.id in corpus]
    if clashes:
        raise VoxauditError(f"corpus {corpus.name!r} already has an utterance {clashes[0]!r}")
    return Corpus([*corpus, *canaries.utterances], name=corpus.name, layout=corpus.layout)


def _relabelled(
    corpus: Corpus, kind: str, count: int, rng: np.random.Generator, label: str
) -> tuple[list[Utterance], list[str], Corpus]:
    """Canaries made from ``count`` of the corpus' recordings, which the rest leaves out."""
    if 2 * count > len(corpus):
        raise VoxauditError(
            f"canaries: {count} canaries made from recordings need at least {2 * count} in the "
            f"corpus (half stay to train on); {corpus.name!r} has {len(corpus)}"
        )
    picked = sorted(rng.choice(len(corpus), size=count, replace=False).tolist())
    taken = {corpus[i].id for i in picked}
    rest = corpus.subset(u.id for u in corpus if u.id not in taken)
    make = _wrong_label(corpus, label) if kind == "wrong-label" else _random_transcript(corpus)
    utterances = [make(replace(corpus[i], id=f"canary-{n:04d}"), rng) for n, i in enumerate(picked)]
    return utterances, [corpus[i].id for i in picked], rest


def _wrong_label(corpus: Corpus, label: str):
    from voxaudit.models.classifier import label_function

    label_of = label_function(label)
    classes = sorted({label_of(u) for u in corpus})
    if len(classes) < 2:
        raise VoxauditError(
            f"wrong-label canaries need at least 2 classes of {label!r}; {corpus.name!r} has "
            f"{len(classes)}"
        )

    def make(utterance: Utterance, rng: np.random.Generator) -> Utterance:
        others = [c for c in classes if c != label_of(utterance)]
        wrong = others[int(rng.integers(len(others)))]
        if label == "speaker":
            return replace(utterance, speaker=wrong)
        if label == "transcript":
            return replace(utterance, transcript=wrong, raw_transcript=wrong)
        return replace(utterance, columns={**utterance.columns, label: wrong})

    return make


def _random_transcript(corpus: Corpus):
    vocabulary = sorted({word for u in corpus for word in u.transcript.split()})
    if len(vocabulary) < 2:
        raise VoxauditError(
            f"random-transcript canaries need transcripts of at least 2 distinct words; "
            f"{corpus.name!r} has {len(vocabulary)}"
        )

    def make(utterance: Utterance, rng: np.random.Generator) -> Utterance:
        words = max(1, len(utterance.transcript.split()))
        while True:
            text = " ".join(vocabulary[int(k)] for k in rng.integers(len(vocabulary), size=words))
            if text != utterance.transcript:
                return replace(utterance, transcript=text, raw_transcript=text)

    return make


def _synthesized(
    corpus: Corpus,
    count: int,
    per_speaker: int,
    seed: int,
    audio_dir: str | Path | None,
    progress: bool,
) -> list[Utterance]:
    """``count`` synthetic voices saying ``per_speaker`` random sentences each, at the
    corpus' most common sample rate, renamed as canaries."""
    from voxaudit.data.synth import synthesize_corpus, synthesize_corpus_in_memory

    rates = Counter(u.sample_rate for u in corpus if u.sample_rate)
    rate = rates.most_common(1)[0][0] if rates else 16000
    options = {
        "n_speakers": count,
        "per_speaker": per_speaker,
        "seed": seed + _SYNTH_SEED_OFFSET,
        "sample_rate": rate,
    }
    if audio_dir is None:
        made = synthesize_corpus_in_memory(**options, progress=progress)
    else:
        made = synthesize_corpus(audio_dir, **options, progress=progress)
    renamed = []
    for k, utterance in enumerate(made):
        speaker = f"canary-{k // per_speaker:04d}"
        name = speaker if per_speaker == 1 else f"{speaker}-{k % per_speaker}"
        renamed.append(replace(utterance, id=name, speaker=speaker))
    return renamed


def canary_units(canaries: Canaries) -> Sequence[list[Utterance]]:
    """The utterances of each canary, in canary order."""
    units: list[list[Utterance]] = [[] for _ in range(canaries.count)]
    for utterance, unit in zip(canaries.utterances, canaries.unit_of, strict=True):
        units[unit].append(utterance)
    return units
