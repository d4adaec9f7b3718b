"""The report schema: what a valid ``report.json`` holds, checked field by field."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from voxaudit.errors import VoxauditError
from voxaudit.mia.verdicts import ALPHA, MODELS, row_label

SCHEMA = "voxaudit.mia-report/2"
KINDS = ("verdicts", "scores")
_TOP_FIELDS = {
    "schema",
    "kind",
    "created",
    "voxaudit_version",
    "setup",
    "results",
    "scores",
    "selection",
    "headline",
    "null_control",
    "warnings",
    "examples_file",
}
_VERDICT_FIELDS = ("headline", "null_control")
_RESULT_FIELDS = {
    "name",
    "features",
    "model",
    "n_members",
    "n_nonmembers",
    "metrics",
    "roc",
    "shadow_auroc",
    "headline_candidate",
}
_OPTIONAL_RESULT_FIELDS = {"feature_importances", "notes", "examples"}
_EXAMPLE_FIELDS = {"id", "speaker", "score", "is_member", "prediction"}
_SCORE_FIELDS = {"id", "speaker", "score", "log_odds", "percentile"}
_HEADLINE_FIELDS = {
    "name",
    "features",
    "chosen_by",
    "n_candidates",
    "not_considered",
    "n_members",
    "n_nonmembers",
    "shadow_auroc",
    "metrics",
    "top_examples",
}


def validate_report(report: Any) -> None:
    """Raise :class:`VoxauditError` naming the first field that breaks the schema.

    Parameters
    ----------
    report:
        The report, in memory (rows may hold ``examples``) or as read from ``report.json``.
    """
    _expect(isinstance(report, dict), "", "an object", report)
    if report.get("schema") != SCHEMA:
        raise VoxauditError(
            f"report field schema: expected {SCHEMA!r}, got {report.get('schema')!r}"
        )
    _no_unknown(report, _TOP_FIELDS, "")
    kind = _field(report, "kind", "", lambda v: v in KINDS, f"one of {', '.join(KINDS)}")
    _field(report, "created", "", _is_iso_time, "an ISO-8601 time")
    _field(report, "voxaudit_version", "", _is_str, "a string")
    _field(report, "setup", "", _is_object, "an object")
    if "selection" in report:
        _field(report, "selection", "", _is_object, "an object")
    _field(report, "warnings", "", _is_str_list, "a list of strings")
    if "examples_file" in report:
        _field(report, "examples_file", "", _is_str, "a string")
    items, other = ("results", "scores") if kind == "verdicts" else ("scores", "results")
    for field in (other, *(_VERDICT_FIELDS if kind == "scores" else ())):
        if field in report:
            raise VoxauditError(f"report field {field}: not allowed in a {kind!r} report")
    entries = _field(
        report, items, "", lambda v: isinstance(v, list) and bool(v), "a non-empty list"
    )
    check = _check_result if kind == "verdicts" else _check_score
    for i, entry in enumerate(entries):
        check(entry, f"{items}[{i}]")
    if kind == "verdicts":
        if not any(r["model"] == "target" for r in entries):
            raise VoxauditError("report field results: no result for the target model")
        seen: set[tuple[str, str, str]] = set()
        for i, r in enumerate(entries):
            key = (r["name"], r["features"], r["model"])
            if key in seen:
                raise VoxauditError(
                    f"report field results[{i}]: {row_label(r)} on the {r['model']} model twice"
                )
            seen.add(key)
        _check_headline(report, entries)
        _check_null_control(report)


def _check_result(result: Any, where: str) -> None:
    _expect(isinstance(result, dict), where, "an object", result)
    _no_unknown(result, _RESULT_FIELDS | _OPTIONAL_RESULT_FIELDS, where)
    _field(result, "name", where, _is_str, "a string")
    _field(result, "features", where, _is_str, "a string")
    _field(result, "model", where, lambda v: v in MODELS, f"one of {', '.join(MODELS)}")
    for count in ("n_members", "n_nonmembers"):
        _field(result, count, where, lambda v: _is_int(v) and v > 0, "a positive integer")
    _check_metrics(_field(result, "metrics", where, _is_object, "an object"), f"{where}.metrics")
    roc = _field(result, "roc", where, _is_object, "an object")
    _no_unknown(roc, {"fpr", "tpr"}, f"{where}.roc")
    in_unit = "a list of at least 2 numbers in [0, 1]"
    fpr = _field(roc, "fpr", f"{where}.roc", _is_unit_list, in_unit)
    tpr = _field(roc, "tpr", f"{where}.roc", _is_unit_list, in_unit)
    _expect(len(fpr) == len(tpr), f"{where}.roc.tpr", f"{len(fpr)} values like fpr", tpr)
    _field(result, "shadow_auroc", where, _is_unit_or_null, "a number in [0, 1] or null")
    _field(result, "headline_candidate", where, _is_bool, "true or false")
    if "feature_importances" in result:
        importances = _field(result, "feature_importances", where, _is_object, "an object")
        for column, value in importances.items():
            _expect(_is_number(value), f"{where}.feature_importances.{column}", "a number", value)
    if "notes" in result:
        _field(result, "notes", where, _is_str, "a string")
    if "examples" in result:
        _check_examples(result, where)


def _check_examples(result: dict[str, Any], where: str) -> None:
    at = f"{where}.examples"
    examples = _field(result, "examples", where, _is_object, "an object")
    _no_unknown(examples, _EXAMPLE_FIELDS, at)
    n = result["n_members"] + result["n_nonmembers"]
    sized = f"a list of {n} "
    _field(examples, "id", at, lambda v: _is_list_of(v, n, _is_str), sized + "strings")
    if "speaker" in examples:
        _field(examples, "speaker", at, lambda v: _is_list_of(v, n, _is_str), sized + "strings")
    _field(examples, "score", at, lambda v: _is_list_of(v, n, _is_number), sized + "numbers")
    labels = _field(
        examples, "is_member", at, lambda v: _is_list_of(v, n, _is_bool), sized + "booleans"
    )
    _expect(
        sum(labels) == result["n_members"],
        f"{at}.is_member",
        f"{result['n_members']} members",
        sum(labels),
    )
    if "prediction" in examples:
        _field(
            examples, "prediction", at, lambda v: _is_list_of(v, n, _is_bool), sized + "booleans"
        )


def _check_metrics(metrics: dict[str, Any], where: str) -> None:
    for key, estimate in metrics.items():
        at = f"{where}.{key}"
        _expect(isinstance(estimate, dict), at, "an object", estimate)
        _no_unknown(estimate, {"value", "low", "high"}, at)
        for bound in ("value", "low", "high"):
            _field(estimate, bound, at, lambda v: v is None or _is_number(v), "a number or null")


def _check_headline(report: dict[str, Any], results: list[dict[str, Any]]) -> None:
    headline = _field(report, "headline", "", _is_object, "an object")
    _no_unknown(headline, _HEADLINE_FIELDS, "headline")
    for name in ("name", "features", "chosen_by"):
        _field(headline, name, "headline", _is_str, "a string")
    for count in ("n_candidates", "n_members", "n_nonmembers"):
        _field(headline, count, "headline", lambda v: _is_int(v) and v > 0, "a positive integer")
    _field(headline, "not_considered", "headline", _is_str_list, "a list of strings")
    _field(headline, "shadow_auroc", "headline", _is_unit_or_null, "a number in [0, 1] or null")
    metrics = _field(
        headline, "metrics", "headline", lambda v: _is_object(v) and "auroc" in v, "metrics"
    )
    _check_metrics(metrics, "headline.metrics")
    top = _field(headline, "top_examples", "headline", lambda v: isinstance(v, list), "a list")
    for i, item in enumerate(top):
        at = f"headline.top_examples[{i}]"
        _expect(isinstance(item, dict), at, "an object", item)
        _no_unknown(item, {"id", "speaker", "score", "is_member"}, at)
        _field(item, "id", at, _is_str, "a string")
        _field(item, "speaker", at, lambda v: v is None or _is_str(v), "a string or null")
        _field(item, "score", at, _is_number, "a number")
        _field(item, "is_member", at, _is_bool, "true or false")
    named = (headline["name"], headline["features"], "target")
    if not any((r["name"], r["features"], r["model"]) == named for r in results):
        raise VoxauditError(
            f"report field headline.name: no target result {row_label(headline)} in results"
        )


def _check_null_control(report: dict[str, Any]) -> None:
    null = _field(report, "null_control", "", _is_object, "an object")
    _no_unknown(null, {"method", "rows", "valid"}, "null_control")
    _field(null, "method", "null_control", _is_str, "a string")
    _field(null, "valid", "null_control", _is_bool, "true or false")
    rows = _field(null, "rows", "null_control", lambda v: isinstance(v, list), "a list")
    for i, row in enumerate(rows):
        at = f"null_control.rows[{i}]"
        _expect(isinstance(row, dict), at, "an object", row)
        _no_unknown(row, {"name", "features", "auroc", "p", "p_adjusted"}, at)
        _field(row, "name", at, _is_str, "a string")
        _field(row, "features", at, _is_str, "a string")
        for number in ("auroc", "p", "p_adjusted"):
            _field(row, number, at, is_unit, "a number in [0, 1]")
    holds = all(row["p_adjusted"] >= ALPHA for row in rows)
    _expect(null["valid"] == holds, "null_control.valid", f"{holds} from the rows", null["valid"])


def _check_score(item: Any, where: str) -> None:
    _expect(isinstance(item, dict), where, "an object", item)
    _no_unknown(item, _SCORE_FIELDS, where)
    _field(item, "id", where, _is_str, "a string")
    _field(item, "speaker", where, _is_str, "a string")
    _field(item, "score", where, _is_number, "a number")
    # Reports written before scores had a log-odds and a percentile lack both.
    if "log_odds" in item:
        _field(item, "log_odds", where, _is_number, "a finite number")
    if "percentile" in item:
        _field(item, "percentile", where, lambda v: _is_number(v) and 0 <= v <= 100,
               "a number in [0, 100]")  # fmt: skip


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_list_of(value: Any, n: int, valid: Callable[[Any], bool]) -> bool:
    return isinstance(value, list) and len(value) == n and all(valid(v) for v in value)


def _is_iso_time(value: Any) -> bool:
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return True


def _is_object(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(key, str) for key in value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_unit(value: Any) -> bool:
    return _is_number(value) and 0 <= value <= 1


def _is_unit_or_null(value: Any) -> bool:
    return value is None or is_unit(value)


def _is_unit_list(value: Any) -> bool:
    return isinstance(value, list) and len(value) >= 2 and all(is_unit(v) for v in value)


def _field(
    obj: dict[str, Any],
    name: str,
    where: str,
    valid: Callable[[Any], bool],
    expected: str,
) -> Any:
    """``obj[name]``, which must exist and pass ``valid``."""
    at = f"{where}.{name}" if where else name
    if name not in obj:
        raise VoxauditError(f"report field {at}: missing")
    _expect(valid(obj[name]), at, expected, obj[name])
    return obj[name]


def _expect(ok: bool, at: str, expected: str, got: Any) -> None:
    if not ok:
        shown = repr(got) if len(repr(got)) <= 60 else repr(got)[:57] + "..."
        raise VoxauditError(
            f"report field {at or '(top level)'}: expected {expected}, "
            f"got {shown} ({type(got).__name__})"
        )


def _no_unknown(obj: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(obj) - known)
    if unknown:
        at = f"{where}.{unknown[0]}" if where else unknown[0]
        raise VoxauditError(f"report field {at}: unknown field")
