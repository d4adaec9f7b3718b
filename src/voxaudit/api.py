"""The Python API: audit any speech model with known membership in one call.

>>> result = voxaudit.audit(TorchClassifier(net, classes, 16000), corpus,
...                         members=train_ids, nonmembers=test_ids)
>>> print(result)            # the verdict, with 95% intervals
>>> result.to_html("report.html")

The CLI (``voxaudit mia ...``, ``voxaudit audit``) runs the same audit core
(:func:`voxaudit.mia.core.run_audit`).
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxaudit.compute import ComputeConfig
from voxaudit.data.corpus import Corpus
from voxaudit.data.splits import AuditSplit, IdList, read_ids
from voxaudit.errors import VoxauditError
from voxaudit.mia import families
from voxaudit.mia.configs import AuditConfig
from voxaudit.mia.core import AuditedModel, run_audit
from voxaudit.mia.results import examples_csv, without_examples
from voxaudit.mia.verdicts import interval_text, risk_level, risk_summary

#: A shadow (reference) model with the ids it trained on and ids it never saw.
Shadow = tuple[Any, IdList, IdList]


@dataclass(frozen=True)
class AuditResult:
    """What :func:`audit` found: verdict, estimates with intervals, per-example scores.

    ``report`` is the full report (``voxaudit.mia.results``); the properties read it.
    """

    report: dict[str, Any]

    @property
    def headline(self) -> dict[str, Any]:
        """The attack the verdict rests on: name, features, how it was chosen (on shadow data
        when possible) and its metrics (with an interval that accounts for the choice when it
        is a maximum over target rows)."""
        return dict(self.report["headline"])

    @property
    def risk(self) -> str:
        """``high``, ``moderate``, ``low``, ``none`` or ``unknown``."""
        return risk_level(self.headline)

    @property
    def verdict(self) -> str:
        """The plain-language reading of the headline attack."""
        return risk_summary(self.headline)

    @property
    def valid(self) -> bool:
        """Whether the null control sits at chance (multiple comparisons accounted for)."""
        return bool(self.report["null_control"]["valid"])

    @property
    def warnings(self) -> list[str]:
        """What the first screen warns of (too few units, unrecorded training ids, ...)."""
        return list(self.report.get("warnings", []))

    def estimates(self, model: str = "target") -> list[dict[str, Any]]:
        """One dict per attack on ``model`` (``"target"`` or ``"null"``): name, features and
        each metric as ``{"value", "low", "high"}``."""
        return [
            {"name": r["name"], "features": r["features"], **r["metrics"]}
            for r in self.report["results"]
            if r["model"] == model
        ]

    def examples(self) -> list[dict[str, str]]:
        """Per-example scores of every attack row (target and null), as the rows of
        ``examples.csv``: attack, features, model, id, speaker, score, is_member, prediction."""
        return list(csv.DictReader(io.StringIO(examples_csv(self.report["results"]))))

    def to_json(self, path: str | Path | None = None) -> str:
        """``report.json``'s text (per-example scores left to ``examples.csv``); written to
        ``path`` when given."""
        text = json.dumps(without_examples(self.report), indent=1, allow_nan=False) + "\n"
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def to_html(self, path: str | Path | None = None) -> str:
        """The HTML report; written to ``path`` when given."""
        from voxaudit.report.mia import render_html

        page = render_html(self.report)
        if path is not None:
            Path(path).write_text(page, encoding="utf-8")
        return page

    def __str__(self) -> str:
        auroc = interval_text(self.headline["metrics"]["auroc"])
        lines = [self.verdict, f"headline: {self.headline['name']} "
                 f"({self.headline['features']}), AUROC {auroc}"]  # fmt: skip
        if not self.valid:
            lines.append("NOT VALID: the null control is not at chance (see the report)")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def audit(
    model: Any,
    corpus: Corpus | str | Path,
    members: IdList,
    nonmembers: IdList,
    *,
    family: str | None = None,
    label: str = "speaker",
    level: str = "sample",
    shadows: Sequence[Shadow] = (),
    null: Any = None,
    reference_model: Any = None,
    reference: IdList = (),
    unseen: IdList = (),
    threat: str = "grey",
    out_dir: str | Path | None = None,
    config: AuditConfig | None = None,
    progress: bool = False,
    compute: ComputeConfig | None = None,
    **options: Any,
) -> AuditResult:
    """Audit ``model`` for membership leakage of ``members`` against ``nonmembers``.

    Parameters
    ----------
    model : the audited model: any ``SpeechRecognizer``, ``UtteranceClassifier`` or
        ``SpeakerEncoder`` (e.g. ``voxaudit.models.adapters.torch.TorchClassifier`` around a
        torch module), an :class:`~voxaudit.mia.core.AuditedModel`, or a spec string
        (:func:`voxaudit.mia.families.resolve_model`: a run folder, a Hugging Face folder,
        ``pocketsphinx``, ``resemblyzer`` or ``module.path:factory``; then give ``family``).
    corpus : the recordings (a :class:`~voxaudit.data.corpus.Corpus`, or a folder any loader
        reads).
    members, nonmembers : utterance ids the model trained on and never saw (lists, or a text
        file of one id or audio path per line).
    family : ``"asr"``, ``"classifier"`` or ``"speaker"``; told from the model when None.
    label : classifiers: what the classes are (``"speaker"`` or ``"transcript"``).
    level : ``"sample"`` (was this recording used?) or ``"speaker"`` (this voice?).
    shadows : optional ``(model, members, nonmembers)`` reference models (models or specs)
        trained like the target; attacks are fitted on them. Without any, attacks are
        cross-fitted on halves of the target's own known membership (no calibrated attacks).
    null : optional model that never saw the evaluated recordings (the null control); without
        one, a shadow that did not, or the same attacks with permuted labels.
    reference_model : optional reference (base) model, or a list of them, that trained on none
        of the evaluated recordings: typically the public checkpoint the model was fine-tuned
        from (models or specs, as ``model``). The base-calibrated attacks compare the model's
        loss (or, for speaker encoders, its similarities) on each recording with theirs, with
        no shadow training. Refused when its recorded training ids include evaluated
        recordings; flagged as unverified when it records none.
    reference : speaker level: imposter recordings no model trained on (SLMIA-SR compares
        against them).
    unseen : speaker level: recordings of member speakers that the model did not train on
        (the evidence the speaker audit queries).
    threat : ``"black"``, ``"grey"`` or ``"white"``: what the attacker sees.
    out_dir : where ``report.json``, ``examples.csv``, ``report.html`` and the feature caches
        go (a temporary folder, removed afterwards, when None).
    progress : show progress bars.
    config : the family's audit config, instead of ``threat`` and ``options``.
    compute : where each model's features are extracted (:class:`~voxaudit.ComputeConfig`):
        one model after another here (the default), or one Ray task per model
        (``ComputeConfig(engine="ray")``); the models must then pickle.
    **options : fields of the family's audit config (e.g. ``max_per_side``, ``draws``).

    Returns
    -------
    AuditResult
    """
    if not isinstance(corpus, Corpus):
        from voxaudit.data.loaders import load_corpus

        corpus = load_corpus(Path(corpus), progress=progress)
    if family is None:
        family = infer_family(model)
    chosen = families.get(family)
    if config is None:
        config = chosen.config(threat=threat, **options)
    elif options or threat != "grey":
        raise VoxauditError("give either config or threat and config options, not both")

    def audited(given: Any, role: str, trained: Sequence[str] | None = None) -> AuditedModel:
        if isinstance(given, str | Path):
            given = families.resolve_model(family, given, role, label=label)
        ids = None if trained is None else frozenset(trained)
        if isinstance(given, AuditedModel):
            return AuditedModel(role, given.source, given.model,
                                ids if ids is not None else given.trained_ids,
                                given.label or label)  # fmt: skip
        return AuditedModel(role, _source(given), given, ids, label)

    lists = [(read_ids(i, corpus, f"shadow {k} members"),
              read_ids(o, corpus, f"shadow {k} non-members"))
             for k, (_, i, o) in enumerate(shadows)]  # fmt: skip
    split = AuditSplit.from_membership(
        corpus,
        read_ids(members, corpus, "members"),
        read_ids(nonmembers, corpus, "non-members"),
        level=level,
        shadows=lists,
        reference=read_ids(reference, corpus, "reference"),
        unseen=read_ids(unseen, corpus, "unseen"),
    )
    target = audited(model, "target")
    shadow_models = [audited(m, f"shadow-{k}", lists[k][0]) for k, (m, _, _) in enumerate(shadows)]
    null_model = None if null is None else audited(null, "null")
    given = reference_model if isinstance(reference_model, list | tuple) else [reference_model]
    references = [audited(m, f"reference-{k}") for k, m in enumerate(given) if m is not None]
    with tempfile.TemporaryDirectory(prefix="voxaudit-") as scratch:
        folder = Path(out_dir) if out_dir is not None else Path(scratch)
        report = run_audit(chosen, corpus, split, target, shadow_models, folder, null=null_model,
                           config=config, progress=progress, references=references,
                           compute=compute)  # fmt: skip
        if out_dir is not None:
            from voxaudit.report.mia import write_html

            write_html(folder, report)
    return AuditResult(report)


def infer_family(model: Any) -> str:
    """The audit family a model's methods say it belongs to."""
    if isinstance(model, str | Path):
        raise VoxauditError(f"{model}: give family= for a model given by name or path")
    inner = _inner(model)
    for method, name in (("predict_proba", "classifier"), ("embed", "speaker"),
                         ("transcribe", "asr")):  # fmt: skip
        if hasattr(inner, method):
            return name
    raise VoxauditError(
        f"{type(inner).__name__} is no speech model voxaudit knows: give it predict_proba "
        "(classifier), embed (speaker encoder) or transcribe (ASR), or wrap a torch module in "
        "voxaudit.models.adapters.torch"
    )


def _inner(model: Any) -> Any:
    return model.model if isinstance(model, AuditedModel) else model


def _source(model: Any) -> str:
    if isinstance(model, AuditedModel):
        return model.source
    inner = getattr(model, "model", None)
    name = type(model).__name__
    return f"{name}({type(inner).__name__})" if inner is not None else name
