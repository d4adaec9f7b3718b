"""Scoring mode's shared arithmetic: scores on a scale that ranks, and the checks that say when
they mean nothing.

Scoring mode (:func:`voxaudit.mia.core.run_scoring`) applies a reference attack fitted on
shadow models to a target with no membership ground truth. Its member probability saturates
when the target's features lie far from the shadows' (every pretrained encoder has its own
scale), so each scored row also gets the attack's log-odds, computed on the classifier's own
scale (:func:`voxaudit.mia.attacks.member_log_odds`), and a percentile: the share of the
shadows' non-member rows (scored out of fold) that the row outranks, ties counting half. A
percentile says how member-like a row looks next to the shadows' non-members, not that it was
a member.

The scores carry no meaning when the target does not handle the user's recordings at all
(WER at or above 1, EER at or above 0.4), and the reference attack transfers badly when the
shadows fail on them too or when the target's features there fall outside the range the attack
was fitted on: :func:`scoring_warnings` says so on the report's first screen, from the facts
that :func:`reference_facts` and the families' utility measurements put in the setup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import percentileofscore

from voxaudit.data.corpus import Corpus
from voxaudit.data.splits import AuditSplit
from voxaudit.mia.attacks import ShadowAttack, fitted_data
from voxaudit.mia.table import FeatureTable

#: Per utility metric: the value at or beyond which a model fails on the scored recordings, and
#: what failing means.
FAILURE = {
    "wer": (1.0, "it does not transcribe this speech"),
    "eer": (0.4, "it barely tells these speakers apart"),
}
#: Warn when more than this share of the scored rows lies outside a column's fitted range.
OUTSIDE_RANGE_SHARE = 0.2
#: Below this shadow cross-validated AUROC the reference attack is warned about as near chance.
WEAK_REFERENCE_AUROC = 0.6
#: Columns named in the out-of-range warning.
WORST_COLUMNS = 3


def score_rows(
    attack: ShadowAttack, table: FeatureTable, ids: Sequence[str], speakers: Sequence[str]
) -> list[dict[str, Any]]:
    """The report's ``scores``: per scored row its member probability, log-odds and percentile.

    Parameters
    ----------
    attack : ShadowAttack
        The reference attack, fitted on the shadows' rows.
    table : FeatureTable
        The target's features of the scored rows.
    ids, speakers : sequence of str
        Each row's id (a recording, or a speaker at speaker level) and speaker.
    """
    probability = attack.score(table)
    log_odds = attack.log_odds(table)
    reference = attack.out_of_fold_log_odds_[~attack.is_member_]
    percentile = percentiles(log_odds, reference)
    return [
        {"id": i, "speaker": s, "score": float(p), "log_odds": float(z), "percentile": float(q)}
        for i, s, p, z, q in zip(ids, speakers, probability, log_odds, percentile, strict=True)
    ]


def percentiles(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """For each of ``values``, the share (in percent, 0 to 100) of ``reference`` below it, ties
    counting half: a row level with every reference value sits at 50, not at 0.

    Parameters
    ----------
    values : ndarray
        The scored rows' log-odds.
    reference : ndarray
        The shadows' non-member log-odds, out of fold; at least one.
    """
    return np.asarray(
        percentileofscore(np.asarray(reference, np.float64), np.asarray(values, np.float64),
                          kind="mean"),
        dtype=np.float64,
    )  # fmt: skip


def outside_range(attack: ShadowAttack, table: FeatureTable) -> dict[str, float]:
    """Per column of the reference attack, the share of ``table``'s rows outside the range
    (lowest to highest value) of the rows it was fitted on, highest share first.

    Parameters
    ----------
    attack : ShadowAttack
        The fitted reference attack.
    table : FeatureTable
        The target's features of the scored rows.
    """
    data = fitted_data(attack, table).table
    low, high = attack.column_range_
    shares = {}
    for j, column in enumerate(attack.columns_):
        values = data.column(column)
        shares[column] = float(np.mean((values < low[j]) | (values > high[j])))
    return dict(sorted(shares.items(), key=lambda item: -item[1]))


def reference_facts(
    attack: ShadowAttack,
    table: FeatureTable,
    features: Sequence[str],
    shadows: Sequence[Any],
    corpus: Corpus,
    split: AuditSplit,
) -> dict[str, Any]:
    """The setup's ``reference_attack``: what it was fitted on, how well it separates the
    shadows' own members (context, not an accuracy on the target), and how much of the target's
    features lies outside what it was fitted on.

    Parameters
    ----------
    attack : ShadowAttack
        The fitted reference attack.
    table : FeatureTable
        The target's features of the scored rows.
    features : sequence of str
        The feature families the attack uses.
    shadows : sequence of AuditedModel
        The shadow models it was fitted on.
    corpus, split : Corpus, AuditSplit
        The shadows' corpus and split, named in the report.
    """
    best = max(attack.cv_results_, key=lambda row: row["auroc_mean"])
    return {
        "features": list(features),
        "columns": list(attack.columns_),
        "classifier": attack.selected_[0],
        "shadows": [s.source for s in shadows],
        "shadow_cv_auroc": round(best["auroc_mean"], 4),
        "shadow_corpus": {"name": corpus.name, "fingerprint": split.corpus_fingerprint},
        "shadow_nonmember_rows": int((~attack.is_member_).sum()),
        "outside_fitted_range": {c: round(v, 4) for c, v in outside_range(attack, table).items()},
    }


def scoring_warnings(setup: Mapping[str, Any], n_rows: int) -> list[str]:
    """The first-screen warnings of a scoring-mode report, from its setup: the target or the
    shadows fail on the scored recordings, or the target's features there lie outside the
    range the reference attack was fitted on.

    Parameters
    ----------
    setup : mapping
        A scoring report's setup: ``utility`` (by role, each metric's value, or a sentence
        saying why it was not measured), ``reference_attack.outside_fitted_range`` and
        ``level`` (what a scored row is).
    n_rows : int
        How many rows were scored.
    """
    messages = []
    utility = setup.get("utility")
    if isinstance(utility, Mapping):
        failing = {role: _failures(values) for role, values in utility.items()}
        if failing.get("target"):
            messages.append(
                f"The target fails on the scored recordings ({_figures(failing['target'])}): "
                f"{failing['target'][0][2]}, so its membership scores carry no meaning."
            )
        shadows = {role: found for role, found in failing.items() if role != "target" and found}
        if shadows:
            listed = "; ".join(f"{role} {_figures(found)}" for role, found in shadows.items())
            messages.append(
                f"The shadow models fail on the scored recordings ({listed}): the reference "
                "attack learned membership from models that do not handle this speech, so its "
                "scores of the target's features on it may carry no meaning."
            )
    reference = setup.get("reference_attack", {})
    auroc = reference.get("shadow_cv_auroc")
    if auroc is not None and auroc < WEAK_REFERENCE_AUROC:
        messages.append(
            f"The reference attack tells the shadows' own members apart barely better than "
            f"chance (cross-validated AUROC {auroc:.3f}, below {WEAK_REFERENCE_AUROC:g}): its "
            "ranking of the target's recordings is close to arbitrary."
        )
    shares = reference.get("outside_fitted_range", {})
    worst = [(column, share) for column, share in shares.items() if share > OUTSIDE_RANGE_SHARE]
    if worst:
        listed = ", ".join(f"{c} for {share:.0%}" for c, share in worst[:WORST_COLUMNS])
        more = len(worst) - WORST_COLUMNS
        messages.append(
            f"The target's features on the scored {scored_unit(setup)} fall outside the range "
            "the reference attack was fitted on (the shadows' lowest to highest value): "
            f"{listed} of the {n_rows} {scored_unit(setup)}"
            + (f", and {more} more column(s)" if more > 0 else "")
            + "; the attack extrapolates there, so the ranking rests on no shadow data."
        )
    return messages


def scored_unit(setup: Mapping[str, Any]) -> str:
    """What a scored row is: a speaker (speaker level) or a recording.

    Parameters
    ----------
    setup : mapping
        A scoring report's setup.
    """
    return "speakers" if setup.get("level") == "speaker" else "recordings"


def _failures(values: Any) -> list[tuple[str, float, str]]:
    """The metrics of one model's utility at or beyond their failure threshold."""
    if not isinstance(values, Mapping):
        return []
    return [
        (metric, float(value), FAILURE[metric][1])
        for metric, value in values.items()
        if metric in FAILURE and value is not None and value >= FAILURE[metric][0]
    ]


def _figures(failures: Sequence[tuple[str, float, str]]) -> str:
    return ", ".join(
        f"{metric.upper()} {value:.2f}, at or above {FAILURE[metric][0]:g}"
        for metric, value, _ in failures
    )


def ranked(scores: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Scored rows, most member-like first: by log-odds, which keeps the order where the
    probability saturates (by score in reports written before log-odds were recorded).

    Parameters
    ----------
    scores : sequence of mapping
        A scoring report's ``scores``.
    """
    return sorted(scores, key=lambda item: (-item.get("log_odds", item["score"]), item["id"]))


def utility_words(setup: Mapping[str, Any]) -> str:
    """The models' utility on the scored recordings in one sentence, for the first screen.

    Parameters
    ----------
    setup : mapping
        A scoring report's setup (one written before utility was measured has none).
    """
    utility = setup.get("utility")
    if utility is None:
        return "Utility on the scored recordings: not recorded."
    if not isinstance(utility, Mapping):
        return f"Utility on the scored recordings: {utility}."
    parts = [
        f"{role} " + ", ".join(f"{metric.upper()} {value:.3f}" for metric, value in values.items())
        for role, values in utility.items()
    ]
    return "Utility on the scored recordings: " + "; ".join(parts) + "."
