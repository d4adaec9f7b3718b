"""The speaker-encoder family: was this person's voice used to train the speaker-recognition
model? (SLMIA-SR, paper 001), on a speaker-level split.

Member speakers keep some voices out of training, and the split's reference pool holds
imposters no model trained on. The voices each model is queried with and their embeddings
come from :mod:`voxaudit.mia.families.speaker_queries`; the attacks, fitted on shadow rows
only: SLMIA-SR's classifier on :mod:`voxaudit.mia.slmia` features (averaged over
``attack_seeds`` classifier seeds), its ablations, the baselines of
:mod:`voxaudit.mia.speaker_baselines`, with reference (base) models the base-calibrated
similarity, and SLMIA-SR again as target voices, imposters and imposter voices shrink (query
reduction). Ablation and query-reduction rows are never the
headline. Embeddings are the grey box; there is no other threat to choose.

Scoring mode (:meth:`SpeakerFamily.score`) ranks the speakers of a user's recordings on an
encoder with no membership ground truth, such as the pretrained resemblyzer encoder.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from voxaudit.compute import map_tasks
from voxaudit.data.corpus import Corpus
from voxaudit.data.splits import AuditSplit
from voxaudit.errors import VoxauditError
from voxaudit.mia.configs import SpeakerAuditConfig
from voxaudit.mia.core import (
    AuditedModel,
    AuditRun,
    Family,
    Outcome,
    check_references,
    null_control,
)
from voxaudit.mia.families.speaker_attacks import FEATURE_SETS, SlmiaAudit
from voxaudit.mia.families.speaker_queries import (
    Embeddings,
    Speaker,
    draw_ids,
    draws_for,
    embed,
    evaluated_speakers,
    imposters_of,
    voice_count,
)
from voxaudit.mia.scoring import reference_facts, score_rows

MINE = "recordings/"  # prefix of the user's recording ids in scoring mode


class SpeakerFamily(Family):
    """Speaker encoders (``voxaudit.models.base.SpeakerEncoder``)."""

    name = "speaker"
    train_kind = "speaker"
    levels = ("speaker",)
    config_type = SpeakerAuditConfig

    def check_data(
        self, corpus: Corpus, split: AuditSplit, shadow_roles: Sequence[str], config: Any
    ) -> None:
        if split.level != "speaker":
            raise VoxauditError(
                f"a speaker-level membership audit needs a speaker-level split; split of corpus "
                f"{split.corpus_name!r} is {split.level}-level (make one with "
                "`voxaudit split --level speaker`)"
            )
        if not split.pools.get("reference"):
            raise VoxauditError(
                "the split has no reference (imposter) speakers, which SLMIA-SR compares "
                "against: make it with reference_speakers > 0"
            )
        if not shadow_roles:
            raise VoxauditError("a speaker membership audit needs at least one shadow model")
        speakers = {role: evaluated_speakers(corpus, split, role, config)
                    for role in ("target", *shadow_roles)}  # fmt: skip
        ratios = {role: config.train_ratios for role in shadow_roles}
        k = voice_count(speakers, ratios | {"target": (config.mixing_ratio,)}, config)
        check_embeddings(corpus, speakers, k, config)

    def check(self, run: AuditRun) -> None:
        for model in (run.target, *run.shadows, *run.references):
            if not hasattr(model.model, "embed"):
                raise VoxauditError(
                    f"{model.source}: {type(model.model).__name__} has no embed(); the speaker "
                    "audit needs a SpeakerEncoder (voxaudit.models.base)"
                )

    def attack(self, run: AuditRun) -> Outcome:
        corpus, split, config = run.corpus, run.split, run.config
        target, shadows = run.target, run.shadows
        speakers = {m.role: evaluated_speakers(corpus, split, m.role, config)
                    for m in (target, *shadows)}  # fmt: skip
        evaluated = [s.name for s in speakers["target"]]
        check_references(run, speakers=evaluated)
        null = null_control(run, speakers=evaluated)
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
        queried = map_tasks(
            _embed_task,
            {model.role: (model, [*views_for[model.role], *imposter_ids], views_for[model.role])
             for model in (target, *shadows, null)},
            run.compute, shared={"corpus": corpus, "config": config, "out_dir": run.out_dir},
            description="embeddings", progress=run.progress,
        )  # fmt: skip
        # The base-calibrated similarity compares whole voices: the references embed no chunk.
        voices = sorted({i for ids in views_for.values() for i in ids})
        whole = replace(config, chunk_seconds=None)
        bases = [partial(embed, reference, corpus, voices, [], whole, run.out_dir, run.progress)
                 for reference in run.references]  # fmt: skip
        audit = SlmiaAudit(config, speakers, draws, imposters, queried, run.shadow_roles, bases)
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
            **({"attack_costs": audit.costs} if audit.costs else {}),
        }
        return Outcome(results, selection, setup, null)

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
        between encoders, so the scores rank speakers (by log-odds, which do not saturate);
        the attack's cross-validated AUROC on the shadows is context only. Beside them, each
        model's EER over the recordings (:meth:`recording_utility`). Returns the scores, setup
        facts and the selection.
        """
        self.check_data(corpus, split, [s.role for s in shadows], config)
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
        audit = SlmiaAudit(config, speakers, draws, imposters, queried, [s.role for s in shadows])
        attack, table = audit.reference_attack(k)
        setup = {
            "utility": self.recording_utility([target, *shadows], recordings),
            "recordings": {"name": recordings.name, "speakers": len(users), "voices_each": k},
            "reference_attack": reference_facts(
                attack, table, FEATURE_SETS[attack.selected_[1]], shadows, corpus, split
            ),
            "queries": {role: q.queries for role, q in queried.items()},
        }
        scores = score_rows(attack, table, table.speakers, table.speakers)
        return scores, setup, {"cv_results": attack.cv_results_}

    def recording_utility(
        self, models: Sequence[AuditedModel], recordings: Corpus
    ) -> dict[str, dict[str, float]] | str:
        """Each model's EER (:meth:`utility`) over the user's recordings, by role: how well it
        tells their speakers apart at all; a sentence instead when they cannot say.

        Parameters
        ----------
        models : the target and the shadows.
        recordings : the user's recordings, by speaker.
        """
        per_speaker = Counter(u.speaker for u in recordings)
        if len(per_speaker) < 2 or max(per_speaker.values()) < 2:
            return (
                "not measured: an EER needs recordings of at least two speakers, one of them "
                "with two or more"
            )
        ids = [u.id for u in recordings]
        return {m.role: {"eer": round(self.utility(m, recordings, ids)[1], 4)} for m in models}

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


def _embed_task(
    model: AuditedModel,
    ids: Sequence[str],
    view_ids: Sequence[str],
    *,
    corpus: Corpus,
    config: SpeakerAuditConfig,
    out_dir: Path,
    progress: bool,
) -> Embeddings:
    """One model's embeddings (:func:`embed`): a task of the compute engine."""
    return embed(model, corpus, ids, view_ids, config, out_dir, progress)


def check_embeddings(
    corpus: Corpus, speakers: Mapping[str, Sequence[Speaker]], k: int, config: SpeakerAuditConfig
) -> None:
    """SLMIA-SR compares a speaker's embeddings with each other: with one voice per speaker it
    needs chunks, i.e. clips at least ``chunk_seconds`` long. Checked before any training or
    query, from the clips' lengths (read from their headers when the loader has them)."""
    if k >= 2:
        return
    ids = {i for group in speakers.values() for s in group for i in (*s.unseen, *s.trained)}
    shortest = min(_seconds(corpus[i]) for i in ids)
    if config.chunk_seconds is not None and shortest >= config.chunk_seconds:
        return
    have = (
        "no chunk splitting"
        if config.chunk_seconds is None
        else f"chunk_seconds = {config.chunk_seconds:g} but some clip lasts {shortest:.2f} s"
    )
    raise VoxauditError(
        "SLMIA-SR needs at least 2 embeddings per speaker, and the split leaves 1 voice per "
        f"speaker with {have}: set [audit] chunk_seconds below the shortest clip (e.g. "
        f"{max(0.1, round(shortest / 2, 1)):g}), or give the member speakers more voices"
    )


def _seconds(utterance: Any) -> float:
    if utterance.duration is not None:
        return float(utterance.duration)
    return utterance.load().size / float(utterance.sample_rate or 16000)
