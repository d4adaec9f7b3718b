"""Result rows, verdict rules and the files that let anyone check a report."""

import copy
import csv
import json
import re
from collections import defaultdict

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from voxaudit.errors import VoxauditError
from voxaudit.mia import results as mia_results
from voxaudit.mia.metrics import roc_curve as full_roc_curve
from voxaudit.mia.results import (
    EXAMPLE_COLUMNS,
    EXAMPLES_CSV,
    REPORT_JSON,
    SCHEMA,
    downsample_roc,
    load_results,
    new_report,
    read_report,
    result_entry,
    save_results,
    without_examples,
)
from voxaudit.mia.schema import validate_report
from voxaudit.mia.verdicts import (
    SHADOW_CHOICE,
    choose_headline,
    failed_null_controls,
    null_control,
    risk_level,
    risk_summary,
    units_for_half_width,
)

SETUP = {
    "model family": "ctc",
    "target": "runs/target",
    "shadows": 4,
    "level": "sample",
    "threat": "grey",
    "counts": {"members": 300, "nonmembers": 300},
}


def scored(shift: float, seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """n members scoring ``shift`` higher on average than n non-members."""
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(shift, 1, n), rng.normal(0, 1, n)])
    return scores, np.repeat([True, False], n)


def ids(n: int = 300) -> list[str]:
    return [f"utt-{i}" for i in range(2 * n)]


def entry(
    model: str, shift: float, seed: int, name: str = "shadow attack", n: int = 300, **kwargs
) -> dict:
    scores, is_member = scored(shift, seed, n)
    kwargs.setdefault("predictions", scores > 0.3)
    return result_entry(
        name, "loss+noise", model, scores, is_member, ids=ids(n),
        speakers=[f"spk-{i % 7}" for i in range(2 * n)], n_bootstrap=100, **kwargs,
    )  # fmt: skip


@pytest.fixture(scope="module")
def verdicts() -> dict:
    results = [
        entry("target", 0.8, 1, feature_importances={"loss": 0.7, "noise_wer_10db": 0.3}),
        entry("null", 0.0, 2),
        entry("target", 0.3, 3, name="LiRA <online>", notes="64 shadow models & more"),
        entry("null", 0.0, 11, name="LiRA <online>", predictions=None),
    ]
    return new_report(SETUP, results=results, selection={"features": "loss+noise", "cv_auroc": 0.7})


def broken(report: dict, change) -> dict:
    report = copy.deepcopy(report)
    change(report)
    return report


# --- rows -----------------------------------------------------------------------------------


def test_result_entry_holds_metrics_roc_and_examples():
    result = entry("target", 0.8, 1, shadow_auroc=0.71, headline_candidate=False)
    assert (result["n_members"], result["n_nonmembers"]) == (300, 300)
    assert set(result["metrics"]) == {
        "auroc",
        "advantage",
        "tpr_at_0.1%_fpr",
        "tpr_at_1%_fpr",
        "accuracy",
        "precision",
        "recall",
    }
    auroc = result["metrics"]["auroc"]
    assert 0.6 < auroc["low"] < auroc["value"] < auroc["high"] < 0.8
    # 300 non-members cannot resolve 0.1% FPR: null, not a number.
    assert result["metrics"]["tpr_at_0.1%_fpr"] == {"value": None, "low": None, "high": None}
    assert result["roc"]["fpr"][0] == 0 and result["roc"]["tpr"][-1] == 1
    assert (result["shadow_auroc"], result["headline_candidate"]) == (0.71, False)
    examples = result["examples"]
    scores, is_member = scored(0.8, 1)
    assert examples["id"] == ids() and examples["speaker"][:2] == ["spk-0", "spk-1"]
    assert examples["score"] == scores.tolist() and examples["is_member"] == is_member.tolist()
    assert examples["prediction"] == (scores > 0.3).tolist()
    json.dumps(examples)  # plain JSON data, no numpy types


def test_result_entry_leaves_out_what_it_was_not_given():
    result = entry("null", 0.0, 2, predictions=None)
    assert set(result["examples"]) == {"id", "speaker", "score", "is_member"}
    assert "advantage" not in result["metrics"] and result["shadow_auroc"] is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ids": ["a", "b"]}, "2 ids for 4 scores"),
        ({"ids": ["a", "b", "a", "c"]}, "id 'a' is scored twice"),
        ({"ids": list("abcd"), "speakers": ["x"]}, "1 speakers for 4 ids"),
        ({"ids": list("abcd"), "shadow_auroc": 1.5}, r"shadow AUROC 1.5 not in \[0, 1\]"),
    ],
)
def test_result_entry_refuses_rows_that_do_not_line_up(kwargs, message):
    with pytest.raises(VoxauditError, match=message):
        result_entry("a", "f", "target", [0.1, 0.2, 0.3, 0.4], [1, 0, 1, 0], **kwargs)


def test_roc_is_downsampled_keeping_low_fpr_points():
    scores, is_member = scored(0.5, 5, n=3000)
    fpr, tpr = full_roc_curve(scores, is_member)
    small_fpr, small_tpr = downsample_roc(fpr, tpr)
    assert len(fpr) > 1000 and len(small_fpr) <= 200
    assert (small_fpr[0], small_tpr[0], small_fpr[-1], small_tpr[-1]) == (0, 0, 1, 1)
    points = set(zip(fpr, tpr, strict=True))
    assert all(p in points for p in zip(small_fpr, small_tpr, strict=True))
    # The lowest positive FPR (one false positive) keeps its best TPR.
    lowest = fpr[fpr > 0].min()
    assert tpr[fpr <= lowest].max() in small_tpr[small_fpr == lowest]
    # Dense at low FPR: every one of the first 15 false-positive counts is still there.
    assert set(np.arange(16) / 3000) <= set(small_fpr)
    assert np.all(np.diff(small_fpr) >= 0) and np.all(np.diff(small_tpr) >= 0)


def test_short_roc_is_kept_whole():
    fpr, tpr = np.array([0, 0.5, 1]), np.array([0, 0.8, 1])
    assert downsample_roc(fpr, tpr) == (fpr, tpr)


# --- the report -----------------------------------------------------------------------------


def test_new_report_fills_the_envelope_and_the_verdict(verdicts):
    assert verdicts["kind"] == "verdicts" and verdicts["schema"] == SCHEMA
    assert SCHEMA == "voxaudit.mia-report/2"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", verdicts["created"])
    assert verdicts["voxaudit_version"]
    assert verdicts["headline"]["name"] == "shadow attack"  # AUROC 0.71 beats 0.58
    assert verdicts["null_control"]["valid"] and len(verdicts["null_control"]["rows"]) == 2
    assert verdicts["warnings"] == [
        "TPR at 0.1% FPR needs at least 1,000 non-members; this audit has 300"
    ]
    with pytest.raises(VoxauditError, match="either results"):
        new_report(SETUP)


def test_caller_warnings_come_first_and_only_once():
    report = new_report(
        SETUP,
        results=[entry("target", 0.8, 1), entry("null", 0.0, 2)],
        warnings=["the target records no trained ids", "the target records no trained ids"],
    )
    assert report["warnings"][0] == "the target records no trained ids"
    assert len(report["warnings"]) == 2


def test_rows_without_examples_cannot_make_a_verdict(verdicts):
    rows = without_examples(verdicts)["results"]
    with pytest.raises(VoxauditError, match=r"shadow attack \(loss\+noise\) has no per-example"):
        new_report(SETUP, results=rows)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.update(schema="voxaudit.mia-report/1"), "schema"),
        (lambda r: r.pop("created"), "created"),
        (lambda r: r.update(created="yesterday"), "created"),
        (lambda r: r.update(kind="guesses"), "kind"),
        (lambda r: r.update(setup=[]), "setup"),
        (lambda r: r.update(results=[]), "results"),
        (lambda r: r.update(scores=[]), "scores"),
        (lambda r: r.update(extra=1), "extra"),
        (lambda r: r.update(warnings="few"), "warnings"),
        (lambda r: r.pop("headline"), "headline"),
        (lambda r: r["headline"].update(name="other"), "headline.name"),
        (lambda r: r["headline"].pop("chosen_by"), "headline.chosen_by"),
        (
            lambda r: r["headline"]["top_examples"][0].update(score="high"),
            r"headline.top_examples\[0\].score",
        ),
        (lambda r: r["null_control"].update(valid="yes"), "null_control.valid"),
        (lambda r: r["null_control"].update(valid=False), "null_control.valid"),
        (lambda r: r["null_control"]["rows"][0].update(p=2.0), r"null_control.rows\[0\].p"),
        (
            lambda r: r["results"][2]["metrics"]["auroc"].pop("low"),
            r"results\[2\].metrics.auroc.low",
        ),
        (
            lambda r: r["results"][2]["metrics"]["auroc"].update(low="0.5"),
            r"results\[2\].metrics.auroc.low",
        ),
        (
            lambda r: r["results"][0]["metrics"]["recall"].update(high=float("nan")),
            r"results\[0\].metrics.recall.high",
        ),
        (lambda r: r["results"][1].update(n_members="300"), r"results\[1\].n_members"),
        (lambda r: r["results"][1].update(n_members=True), r"results\[1\].n_members"),
        (lambda r: r["results"][1].update(model="shadow"), r"results\[1\].model"),
        (lambda r: r["results"][1].update(shadow_auroc=2), r"results\[1\].shadow_auroc"),
        (lambda r: r["results"][1].pop("headline_candidate"), r"results\[1\].headline_candidate"),
        (lambda r: r["results"][3].pop("roc"), r"results\[3\].roc"),
        (lambda r: r["results"][3]["roc"]["tpr"].pop(), r"results\[3\].roc.tpr"),
        (lambda r: r["results"][3]["roc"]["fpr"].append(1.5), r"results\[3\].roc.fpr"),
        (lambda r: r["results"][3]["examples"]["score"].pop(), r"results\[3\].examples.score"),
        (
            lambda r: r["results"][3]["examples"]["is_member"].__setitem__(0, False),
            r"results\[3\].examples.is_member",
        ),
        (
            lambda r: r["results"][0]["feature_importances"].update(loss=None),
            r"results\[0\].feature_importances.loss",
        ),
        (lambda r: r["results"][2].update(notes=3), r"results\[2\].notes"),
        (lambda r: r["results"][0].update(speaker="x"), r"results\[0\].speaker"),
        (
            lambda r: r["results"].append(copy.deepcopy(r["results"][0])),
            r"results\[4\]: shadow attack \(loss\+noise\) on the target model twice",
        ),
        (lambda r: [x.update(model="null") for x in r["results"]], "results: no result for the"),
    ],
)
def test_validation_names_the_offending_field(verdicts, change, field):
    with pytest.raises(VoxauditError, match=rf"report field {field}\b"):
        validate_report(broken(verdicts, change))


def test_module_constants_match_the_schema():
    from voxaudit.mia import schema, verdicts

    assert mia_results.ROC_POINTS == 200 and verdicts.ALPHA == 0.05
    assert schema.KINDS == ("verdicts", "scores") and verdicts.MODELS == ("target", "null")


def test_risk_summary_levels():
    assert risk_summary(entry("target", 0.0, 2)).startswith("No measurable leakage")
    assert risk_summary(entry("target", 2.5, 7)).startswith("High risk")
    assert risk_summary(entry("target", 0.45, 8)).startswith("Moderate risk")
    assert "worse than guessing" in risk_summary(entry("target", -0.8, 9))


# --- the headline ---------------------------------------------------------------------------


def test_the_headline_is_chosen_on_shadow_data_not_on_the_target():
    # A did better on the shadows, B does better on the target: the headline must be A.
    a = entry("target", 0.3, 1, name="A", shadow_auroc=0.80)
    b = entry("target", 1.0, 2, name="B", shadow_auroc=0.60)
    assert b["metrics"]["auroc"]["value"] > a["metrics"]["auroc"]["value"]
    report = new_report(SETUP, results=[a, b, entry("null", 0, 3, name="A")])
    headline = report["headline"]
    assert (headline["name"], headline["chosen_by"]) == ("A", SHADOW_CHOICE)
    assert headline["metrics"] == a["metrics"]  # its own intervals: the choice saw no target
    assert headline["shadow_auroc"] == 0.80 and headline["n_candidates"] == 2
    assert risk_level(headline) == risk_level(a)


def test_ties_go_to_the_first_row_and_non_candidates_never_head():
    rows = [
        entry("target", 2.0, 1, name="ablation", shadow_auroc=0.99, headline_candidate=False),
        entry("target", 0.3, 2, name="first", shadow_auroc=0.7),
        entry("target", 0.9, 3, name="second", shadow_auroc=0.7),
        entry("target", 2.0, 4, name="no shadow AUROC"),
    ]
    headline = choose_headline(rows)
    assert headline["name"] == "first" and headline["n_candidates"] == 2
    assert headline["not_considered"] == ["no shadow AUROC (loss+noise)"]
    with pytest.raises(VoxauditError, match="no target row is a headline candidate"):
        choose_headline(rows[:1])


def test_without_shadow_aurocs_the_maximum_gets_an_interval_for_the_maximum():
    rows = [entry("target", 0.1 * k, k, name=f"attack {k}") for k in range(6)]
    headline = choose_headline(rows, n_bootstrap=300)
    best = max(rows, key=lambda r: r["metrics"]["auroc"]["value"])
    assert headline["name"] == best["name"]
    assert headline["chosen_by"].startswith(
        "maximum over 6 target rows; interval by joint bootstrap of the maximum"
    )
    own, joint = best["metrics"]["auroc"], headline["metrics"]["auroc"]
    assert joint["value"] == own["value"]
    # Accounting for the choice among six rows widens the interval.
    assert joint["high"] - joint["low"] > own["high"] - own["low"]
    assert headline["metrics"]["tpr_at_1%_fpr"] == best["metrics"]["tpr_at_1%_fpr"]


def test_the_interval_of_a_maximum_over_null_rows_still_covers_chance():
    # Ten correlated attacks with no signal: the largest AUROC is biased above 0.5, its own
    # interval often misses 0.5, the interval of the maximum should not.
    missed_own = missed_joint = 0
    for seed in range(12):
        rng = np.random.default_rng(seed)
        common = rng.normal(size=400)
        is_member = np.repeat([True, False], 200)
        rows = [
            result_entry(
                f"attack {k}", "f", "target", 0.5 * common + rng.normal(size=400), is_member,
                ids=ids(200), n_bootstrap=200, seed=seed,
            )
            for k in range(10)
        ]  # fmt: skip
        headline = choose_headline(rows, n_bootstrap=200, seed=seed)
        best = next(r for r in rows if r["name"] == headline["name"])
        missed_own += not best["metrics"]["auroc"]["low"] <= 0.5
        missed_joint += not headline["metrics"]["auroc"]["low"] <= 0.5
    assert missed_joint <= 1 and missed_own > missed_joint


def test_rows_on_other_examples_fall_back_to_bonferroni():
    a = entry("target", 0.5, 1, name="A")
    b = entry("target", 0.2, 2, name="B", n=200)  # other examples: no joint resampling
    headline = choose_headline([a, b], n_bootstrap=300)
    assert headline["name"] == "A" and "Bonferroni" in headline["chosen_by"]
    own, wide = a["metrics"]["auroc"], headline["metrics"]["auroc"]
    assert wide["low"] < own["low"] and wide["high"] > own["high"]


def test_the_headline_lists_its_highest_scoring_examples():
    report = new_report(SETUP, results=[entry("target", 0.8, 1), entry("null", 0.0, 2)])
    top = report["headline"]["top_examples"]
    scores, is_member = scored(0.8, 1)
    order = np.argsort(-scores)[:10]
    assert [item["id"] for item in top] == [ids()[i] for i in order]
    assert [item["is_member"] for item in top] == is_member[order].tolist()
    assert top[0]["speaker"] == f"spk-{order[0] % 7}"


# --- the null control -----------------------------------------------------------------------


def _nulls(seed: int, signal: float = 0.0) -> list[dict]:
    rows = [entry("target", 0.5, seed)]
    for k in range(5):
        shift = signal if k == 4 else 0.0
        rows.append(entry("null", shift, 1000 * seed + k, name=f"attack {k}", predictions=None))
    return rows


def test_genuine_null_rows_are_valid_in_almost_every_run():
    valid = sum(null_control(_nulls(seed))["valid"] for seed in range(12))
    assert valid >= 11


def test_a_null_row_with_a_real_signal_makes_the_audit_invalid():
    report = new_report(SETUP, results=_nulls(3, signal=0.5))
    null = report["null_control"]
    assert not null["valid"]
    assert null["method"] == (
        "Holm–Bonferroni over 5 null rows, family-wise alpha 0.05, Mann–Whitney U p-values"
    )
    (failed,) = failed_null_controls(report)
    assert failed["name"] == "attack 4" and failed["p_adjusted"] < 0.05
    assert all(row["p_adjusted"] >= row["p"] for row in null["rows"])


def test_without_null_rows_there_is_nothing_to_check_and_a_warning():
    report = new_report(SETUP, results=[entry("target", 0.8, 1)])
    assert report["null_control"]["rows"] == [] and report["null_control"]["valid"]
    assert any("No null control was run" in w for w in report["warnings"])


# --- warnings -------------------------------------------------------------------------------


def test_hanley_mcneil_sizes_the_audit_for_a_half_width():
    n = units_for_half_width(0.05)
    half = [1.96 * np.sqrt((2 * m + 1) / (12 * m**2)) for m in (n - 1, n)]
    assert half[0] > 0.05 >= half[1] and n == 257


def test_too_few_units_are_warned_of_in_the_units_of_the_level():
    rows = [entry("target", 0.5, 1, n=12), entry("null", 0.0, 2, n=12)]
    sample = new_report(SETUP, results=rows)["warnings"]
    assert "TPR at 1% FPR needs at least 100 non-members; this audit has 12" in sample
    assert "TPR at 0.1% FPR needs at least 1,000 non-members; this audit has 12" in sample
    (few,) = [w for w in sample if w.startswith("Too few evaluation units")]
    assert "12 member and 12 non-member examples" in few and "about 257 examples per side" in few
    speaker = new_report(SETUP | {"level": "speaker"}, results=rows)["warnings"]
    assert "TPR at 1% FPR needs at least 100 non-member speakers; this audit has 12" in speaker
    assert any("about 257 speakers per side" in w for w in speaker)


def test_enough_units_raise_no_warning():
    rows = [entry("target", 0.5, 1, n=1000), entry("null", 0.0, 2, n=1000)]
    assert new_report(SETUP, results=rows)["warnings"] == []


# --- files ----------------------------------------------------------------------------------


def test_results_round_trip_through_report_json_and_examples_csv(tmp_path, verdicts):
    written = save_results(tmp_path / "audit", verdicts)
    assert set(written) == {REPORT_JSON, EXAMPLES_CSV}
    stored = json.loads(written[REPORT_JSON].read_text())
    assert stored["examples_file"] == EXAMPLES_CSV
    assert all("examples" not in r for r in stored["results"])
    assert read_report(tmp_path / "audit") == stored
    assert load_results(tmp_path / "audit") == verdicts | {"examples_file": EXAMPLES_CSV}
    assert load_results(written[REPORT_JSON]) == verdicts | {"examples_file": EXAMPLES_CSV}
    header = written[EXAMPLES_CSV].read_text().splitlines()[0]
    assert tuple(header.split(",")) == EXAMPLE_COLUMNS


def test_every_metric_is_recomputed_from_examples_csv(tmp_path, verdicts):
    save_results(tmp_path, verdicts)
    report = json.loads((tmp_path / REPORT_JSON).read_text())
    rows = defaultdict(list)
    with (tmp_path / report["examples_file"]).open(newline="") as stream:
        for row in csv.DictReader(stream):
            rows[row["attack"], row["features"], row["model"]].append(row)
    assert len(rows) == len(report["results"])
    for result in report["results"]:
        table = rows[result["name"], result["features"], result["model"]]
        scores = np.array([float(row["score"]) for row in table])
        is_member = np.array([row["is_member"] == "1" for row in table])
        assert roc_auc_score(is_member, scores) == result["metrics"]["auroc"]["value"]
        fpr, tpr, _ = roc_curve(is_member, scores, drop_intermediate=False)
        assert tpr[fpr <= 0.01].max() == result["metrics"]["tpr_at_1%_fpr"]["value"]
        assert (is_member.sum(), (~is_member).sum()) == (
            result["n_members"],
            result["n_nonmembers"],
        )
        if table[0]["prediction"]:
            predicted = np.array([row["prediction"] == "1" for row in table])
            recall = predicted[is_member].mean()
            assert recall == pytest.approx(result["metrics"]["recall"]["value"], abs=0)
            assert recall - predicted[~is_member].mean() == pytest.approx(
                result["metrics"]["advantage"]["value"], abs=1e-15
            )


def test_a_report_read_without_examples_is_not_saved_again(tmp_path, verdicts):
    save_results(tmp_path, verdicts)
    with pytest.raises(VoxauditError, match="no per-example scores to write"):
        save_results(tmp_path / "again", read_report(tmp_path))


def test_an_examples_table_that_does_not_match_is_refused(tmp_path, verdicts):
    save_results(tmp_path, verdicts)
    path = tmp_path / EXAMPLES_CSV
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")  # one example of the last row lost
    with pytest.raises(VoxauditError, match=r"examples.csv: report field results\[3\].examples"):
        load_results(tmp_path)
    path.write_text("\n".join([*lines, lines[-1].replace("LiRA <online>", "other", 1)]) + "\n")
    with pytest.raises(VoxauditError, match=r"rows of other \(loss\+noise\) on the null model"):
        load_results(tmp_path)


def test_read_report_names_the_file_and_field(tmp_path, verdicts):
    path = tmp_path / REPORT_JSON
    stored = without_examples(verdicts)
    path.write_text(json.dumps(broken(stored, lambda r: r["results"][0].pop("name"))))
    with pytest.raises(
        VoxauditError, match=r"report\.json: report field results\[0\].name: missing"
    ):
        read_report(path)
    path.write_text("{not json")
    with pytest.raises(VoxauditError, match=r"report\.json: not a readable report"):
        read_report(path)


def test_scores_reports_have_no_verdict_and_no_examples_file(tmp_path):
    scores = [{"id": "utt-1", "speaker": "alice", "score": 0.25}]
    report = new_report({"target": "api"}, scores=scores, warnings=["no trained ids"])
    assert report["warnings"] == ["no trained ids"] and "headline" not in report
    assert set(save_results(tmp_path, report)) == {REPORT_JSON}
    assert load_results(tmp_path) == report
    with pytest.raises(VoxauditError, match="report field headline: not allowed"):
        validate_report(report | {"headline": {}})


def test_scores_rows_may_hold_a_finite_log_odds_and_a_percentile_in_0_to_100(tmp_path):
    row = {"id": "utt-1", "speaker": "alice", "score": 0.0, "log_odds": -41.5, "percentile": 0.0}
    report = new_report({"target": "api"}, scores=[row])
    save_results(tmp_path, report)
    assert load_results(tmp_path)["scores"] == [row]
    for field, value in (("log_odds", float("-inf")), ("percentile", 100.5)):
        with pytest.raises(VoxauditError, match=rf"report field scores\[0\].{field}: expected"):
            new_report({"target": "api"}, scores=[row | {field: value}])
    with pytest.raises(VoxauditError, match=r"scores\[0\].rank: unknown field"):
        new_report({"target": "api"}, scores=[row | {"rank": 1}])


def test_a_report_that_is_not_json_is_not_written(tmp_path, verdicts):
    report = broken(verdicts, lambda r: r["setup"].update(machine=object()))
    with pytest.raises(VoxauditError, match="not JSON data"):
        save_results(tmp_path, report)
    assert list(tmp_path.iterdir()) == []
