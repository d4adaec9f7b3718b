"""The privacy-utility sweep behind ``voxaudit defend sweep``: one point per defense setting.

For every setting of a sweep config, the target and the shadow models are trained under the
defense (the attacker is adaptive: its shadows copy the defense), served through the setting's
serve-time defense, and audited by the family's membership audit. Utility (ASR: CER;
classifier: accuracy; speaker encoder: EER on non-member speakers) is measured on the target's
non-members, leakage is the audit's headline attack on the target (chosen on shadow data, see
:func:`voxaudit.mia.verdicts.choose_headline`) with its interval and its null control. A
finished setting is written atomically to ``OUT/settings/NAME/result.json`` and never
recomputed. Models live in ``OUT/models/RECIPE/``,
one folder per training recipe (run config, hooks, held-out share), so settings that train
alike (every serve-time defense, and the distillation teachers) share the undefended models
instead of retraining them; trained models resume from their checkpoints. The summary
(``sweep.json``, ``pareto.png``) marks the settings on the Pareto frontier: no other setting
is both more useful and less leaky.

Config (TOML or JSON)::

    family = "classifier"            # or "asr", "speaker"
    corpus = "voxaudit-out/synthetic"  # paths relative to the config file
    split = "voxaudit-out/split-sample.json"
    shadows = 2                      # the first N shadow models of the split
    threat = "grey"
    [base.model]                     # the run config every setting starts from
    preset = "tiny"
    [base.train]
    epochs = 20
    [audit]                          # the family's audit settings (e.g. max_per_side)
    max_per_side = 200

    [[settings]]
    name = "none"
    [[settings]]
    name = "L2 1e-3"
    train = { weight_decay = 1e-3 }
    [[settings]]
    name = "DP-SGD sigma 1"
    model = { cell = "dpgru" }
    hooks = { dpsgd = { noise_multiplier = 1.0 } }
    [[settings]]
    name = "top-1"
    serve = { top_k = { k = 1 } }
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from voxaudit.compute import ComputeConfig, map_tasks
from voxaudit.config import checked, from_mapping, keyword_types, read_config_file
from voxaudit.data.corpus import Corpus
from voxaudit.data.loaders import load_corpus
from voxaudit.data.splits import AuditSplit
from voxaudit.defend import serving, training
from voxaudit.errors import VoxauditError
from voxaudit.files import claim_folder, json_key, write_json
from voxaudit.mia import families
from voxaudit.mia.core import run_audit
from voxaudit.mia.evaluation import evaluation_set
from voxaudit.mia.verdicts import choose_headline
from voxaudit.progress import track
from voxaudit.train.loop import CHECKPOINT, read_checkpoint
from voxaudit.train.run import carve_validation, read_run_config, train_model

SERVE_DEFENSES: dict[str, Callable[..., Any]] = {
    "top_k": serving.TopK,
    "rounding": serving.Rounding,
    "label_only": serving.LabelOnly,
    "posterior_noise": serving.PosteriorNoise,
    "memguard": serving.MemGuard,
}
#: Each hook's class, and how many leading arguments the sweep gives it itself (the teacher;
#: the defender's reference utterances): a setting's options are the others.
_HOOK_CLASSES: dict[str, tuple[Callable[..., Any], int]] = {
    "dpsgd": (training.DPSGD, 0),
    "distillation": (training.Distillation, 1),
    "adversarial_training": (training.AdversarialTraining, 0),
    "adversarial_regularization": (training.AdversarialRegularization, 1),
    "l2": (training.L2Penalty, 0),
}
HOOKS = tuple(_HOOK_CLASSES)


@dataclass(frozen=True)
class Setting:
    """One defense setting: overrides of the base run config, hooks and a serve-time defense."""

    name: str
    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    hooks: dict[str, dict[str, Any]] = field(default_factory=dict)
    serve: dict[str, dict[str, Any]] = field(default_factory=dict)
    threat: str | None = None  # e.g. "black": an ASR served as transcripts only

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9.=-]+", "_", self.name.lower()).strip("_") or "setting"


@dataclass(frozen=True)
class SweepConfig:
    family: str
    corpus: Path
    split: Path
    settings: tuple[Setting, ...]
    base: dict[str, Any] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)
    shadows: int = 2
    threat: str = "grey"
    device: str = "auto"
    compute: ComputeConfig = field(default_factory=ComputeConfig)  # [compute], as an audit's

    @classmethod
    def load(cls, path: str | Path) -> SweepConfig:
        """A sweep config file; every key and type is checked now, not when a setting runs,
        and errors name the file, the setting and the key."""
        where = str(path)
        root = Path(path).parent
        config = from_mapping(cls, read_config_file(path), where)
        if config.family not in families.names():
            raise VoxauditError(
                f"{where}: family {config.family!r} is not swept yet; use one of "
                + ", ".join(families.names())
            )
        kind = families.get(config.family).train_kind
        read_run_config(config.base, kind, where=where, table="base.")
        for k, setting in enumerate(config.settings):
            _check_setting(setting, config, kind, f"{where}: settings[{k}]")
        slugs = [s.slug for s in config.settings]
        if len(set(slugs)) != len(slugs):
            raise VoxauditError(f"{where}: setting names must differ (as folder names)")
        return replace(
            config,
            corpus=root / config.corpus,
            split=root / config.split,
            audit=families.audit_options(config.family, config.audit, f"{where}: [audit]"),
        )


def _check_setting(setting: Setting, config: SweepConfig, kind: str, at: str) -> None:
    """A setting's hooks, serve-time defense and run config (the base with its overrides)."""
    for hook, options in setting.hooks.items():
        if hook not in _HOOK_CLASSES:
            raise VoxauditError(f"{at}: unknown hook {hook!r}; known: {', '.join(HOOKS)}")
        hook_class, given = _HOOK_CLASSES[hook]
        types = dict(list(keyword_types(hook_class).items())[given:])
        checked(options, types, f"{at}: hooks.{hook}")
    for defense, options in setting.serve.items():
        if defense not in SERVE_DEFENSES:
            raise VoxauditError(
                f"{at}: unknown serve defense {defense!r}; known: " + ", ".join(SERVE_DEFENSES)
            )
        checked(options, keyword_types(SERVE_DEFENSES[defense]), f"{at}: serve.{defense}")
    if len(setting.serve) > 1:
        raise VoxauditError(f"{at}: serve through one defense at most, not {len(setting.serve)}")
    read_run_config(_run_config(config.base, setting, config.device), kind, where=at)


#: Utility metrics where lower is better; the others (accuracy) are better higher.
LOWER_IS_BETTER = {"cer", "eer"}


# --- one setting --------------------------------------------------------------------------

#: Share of each role's training pool the defender keeps out as known non-members, for the
#: defenses that need them (adversarial regularization, MemGuard).
REFERENCE_FRACTION = 0.2
#: What every setting of a sweep folder shares, recorded there by the first run.
SWEEP_RECORD = "sweep-config.json"


def _held_out_share(setting: Setting, run_config: dict[str, Any]) -> float:
    """The share of each training pool kept out of training: the defender's known non-members
    (adversarial regularization, MemGuard) or the validation share early stopping watches."""
    needs_reference = "adversarial_regularization" in setting.hooks or "memguard" in setting.serve
    early_stopping = run_config["train"].get("early_stopping_patience") is not None
    return REFERENCE_FRACTION if needs_reference or early_stopping else 0.0


def _recipe(
    kind: str, run_config: dict[str, Any], hooks: dict[str, Any], held_out: float
) -> tuple[dict[str, Any], str]:
    """One training recipe (run config, hooks, held-out share) and its folder's name."""
    recipe = {"kind": kind, "config": run_config, "hooks": hooks, "held_out": held_out}
    text = json.dumps(recipe, sort_keys=True)
    return recipe, hashlib.sha256(text.encode()).hexdigest()[:12]


def _recipe_dir(
    out_dir: Path, kind: str, run_config: dict[str, Any], hooks: dict[str, Any], held_out: float
) -> Path:
    """The models folder of one training recipe: settings that train alike share it."""
    recipe, name = _recipe(kind, run_config, hooks, held_out)
    folder = out_dir / "models" / name
    if not (folder / "recipe.json").exists():
        write_json(folder / "recipe.json", recipe)  # for a reader of the folder
    return folder


def _train_hooks(
    setting: Setting, corpus: Corpus, reference: Sequence[str], teacher: Path | None
) -> list[Any]:
    from voxaudit.defend.training import L2Penalty
    from voxaudit.models.checkpoints import load_model

    hooks: list[Any] = []
    for name, options in setting.hooks.items():
        if name == "dpsgd":
            hooks.append(training.DPSGD(**options))
        elif name == "l2":
            hooks.append(L2Penalty(**options))
        elif name == "adversarial_training":
            hooks.append(training.AdversarialTraining(**options))
        elif name == "distillation":
            assert teacher is not None
            hooks.append(training.Distillation(load_model(teacher), **options))
        else:  # adversarial_regularization
            hooks.append(
                training.AdversarialRegularization([corpus[i] for i in reference], **options)
            )
    return hooks


def _run_config(base: dict[str, Any], setting: Setting, device: str) -> dict[str, Any]:
    config = {section: dict(values) for section, values in base.items()}
    config.setdefault("model", {}).update(setting.model)
    config.setdefault("train", {}).update(setting.train)
    config["train"].setdefault("device", device)
    return config


def _serve(model: Any, setting: Setting, corpus: Corpus, trained: Sequence[str], reference):
    """``model`` (an AuditedModel) behind the setting's serve-time defense, if any."""
    if not setting.serve:
        return model
    ((name, options),) = setting.serve.items()
    defense = SERVE_DEFENSES[name](**options)
    inner = model.model
    if isinstance(defense, serving.MemGuard):
        waves = [corpus[i].load(inner.sample_rate) for i in [*trained, *reference]]
        defense.fit(
            inner.predict_proba(waves),
            np.r_[np.ones(len(trained), bool), np.zeros(len(reference), bool)],
        )
    return replace(model, model=serving.defended(inner, defense))


def run_setting(
    config: SweepConfig,
    setting: Setting,
    out_dir: Path,
    progress: bool = True,
    corpus: Corpus | None = None,
) -> dict[str, Any]:
    """Train, serve, measure and audit one setting; its result (cached in ``result.json``).

    ``corpus`` is ``config.corpus`` already loaded (a sweep reads it once for all settings);
    read here when not given."""
    setting_dir = out_dir / "settings" / setting.slug
    done = setting_dir / "result.json"
    definition = asdict(setting)
    if done.exists():
        result = json.loads(done.read_text("utf-8"))
        if json_key(result.get("definition", definition)) != json_key(definition):
            raise VoxauditError(
                f"{done}: setting {setting.name!r} was run with another definition; rename the "
                "setting, or delete its folder to run it again"
            )
        return result
    started = time.time()
    family = families.get(config.family)
    corpus = load_corpus(config.corpus) if corpus is None else corpus
    split = AuditSplit.load(config.split)
    split.check(corpus)
    roles = split.roles[: 1 + config.shadows]
    if len(roles) < 2:
        raise VoxauditError(f"{config.split}: a sweep needs at least one shadow model")
    threat = setting.threat or config.threat
    # Built first, so that bad audit settings fail before any training.
    audit_config = family.config(threat=threat, **config.audit)
    run_config = _run_config(config.base, setting, config.device)
    held_out = _held_out_share(setting, run_config)
    recipe = _recipe_dir(out_dir, family.train_kind, run_config, setting.hooks, held_out)
    models: dict[str, Any] = {}
    epsilons: dict[str, float] = {}
    for role in track(roles, f"{setting.name}: training", enabled=progress):
        teacher = None
        if "distillation" in setting.hooks:
            # The teacher: the same recipe without the defense, on the same pool, i.e. the
            # undefended model, shared with the settings that train without a defense.
            teacher_config = _run_config(config.base, Setting("teacher"), config.device)
            teacher = train_model(
                family.train_kind, corpus, config.split, role, teacher_config,
                _recipe_dir(out_dir, family.train_kind, teacher_config, {}, 0.0) / role,
                progress=False,
            )  # fmt: skip
        seed = int(run_config["train"].get("seed", 0))
        _, reference = carve_validation(split.train_ids(role), held_out, seed)
        hooks = _train_hooks(setting, corpus, reference, teacher)
        run_dir = recipe / role
        fresh = not (run_dir / CHECKPOINT).exists()
        train_model(
            family.train_kind, corpus, config.split, role, run_config, run_dir,
            progress=False, val_fraction=held_out, hooks=hooks,
        )  # fmt: skip
        epsilon = training.recorded_epsilon(hooks, run_dir, fresh)
        if epsilon is not None:
            epsilons[role] = epsilon
        model = family.load(run_dir, role, config.device)
        trained = (read_checkpoint(run_dir).get("data") or {}).get("train_ids") or []
        models[role] = _serve(model, setting, corpus, trained, reference)
    target = models["target"]
    nonmembers = _nonmembers(config, split, corpus, target.trained_ids)
    metric, utility = family.utility(target, corpus, nonmembers)
    report = run_audit(
        family, corpus, split, target, [models[r] for r in roles[1:]], setting_dir / "audit",
        config=audit_config, progress=progress,
    )  # fmt: skip
    result = {
        "setting": setting.name,
        "definition": definition,
        "threat": threat,
        "utility": {"metric": metric, "value": round(utility, 4)},
        "leakage": _leakage(report["results"]),
        "epsilon": epsilons or None,
        "seconds": round(time.time() - started, 1),
    }
    write_json(done, result)
    return result


def _nonmembers(
    config: SweepConfig, split: AuditSplit, corpus: Corpus, trained: Collection[str] | None
) -> list[str]:
    """The target's non-members that utility is measured on (``trained``: its training ids).

    At sample level, those the audit evaluates. At speaker level, every voice of every
    non-member speaker (as bench/mia_speaker.py): the audit's balanced set keeps only as many
    voices per speaker as a member keeps out of training, too few for verification trials.
    """
    if split.level == "speaker":
        return list(split.holdout_ids("target"))
    target_set = evaluation_set(
        split, corpus, "target", max_per_side=config.audit.get("max_per_side"), trained=trained
    )
    return [i for i, m in zip(target_set.ids, target_set.is_member, strict=True) if not m]


def _claim(config: SweepConfig, out_dir: Path) -> None:
    """Record what every setting in ``out_dir`` shares, or refuse a folder made by another
    config: its finished settings and trained models would not match this one's."""
    record = {
        # The split's bytes name the corpus too (its fingerprint is in the split).
        "split_sha256": hashlib.sha256(config.split.read_bytes()).hexdigest(),
        "family": config.family,
        "base": config.base,
        "audit": config.audit,
        "shadows": config.shadows,
        "threat": config.threat,
        "device": config.device,
    }
    claim_folder(out_dir, SWEEP_RECORD, record, "a sweep")


def _leakage(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The headline attack on the target, with its null-control AUROC: chosen on shadow data
    where the rows say how they did there, else the maximum target AUROC with an interval that
    accounts for the choice (:func:`voxaudit.mia.verdicts.choose_headline`)."""
    best = choose_headline(results)
    null = next(
        r for r in results
        if r["model"] == "null" and (r["name"], r["features"]) == (best["name"], best["features"])
    )  # fmt: skip
    return {
        "attack": best["name"],
        "features": best["features"],
        "auroc": best["metrics"]["auroc"],
        "tpr_at_1%_fpr": best["metrics"].get("tpr_at_1%_fpr"),
        "null_auroc": null["metrics"]["auroc"],
        "chosen_by": best["chosen_by"],
    }


# --- the sweep ------------------------------------------------------------------------------


def pareto_front(
    points: Sequence[tuple[float, float]], higher_utility_is_better: bool
) -> list[bool]:
    """For (utility, leakage) points: True where no other point is at least as good in both
    and better in one (more utility, less leakage)."""
    sign = 1.0 if higher_utility_is_better else -1.0
    scored = [(sign * u, -leak) for u, leak in points]
    return [
        not any(o[0] >= p[0] and o[1] >= p[1] and (o[0] > p[0] or o[1] > p[1]) for o in scored)
        for p in scored
    ]


def run_sweep(
    config: SweepConfig,
    out_dir: str | Path,
    progress: bool = True,
    compute: ComputeConfig | None = None,
) -> dict[str, Any]:
    """Every setting (finished ones are read back), the Pareto frontier and its plot.

    Parameters
    ----------
    config : the sweep (:meth:`SweepConfig.load`).
    out_dir : settings, models and the summary go there; a rerun resumes.
    progress : show progress.
    compute : where the settings run (``config.compute`` when None). Settings that train
        into one models folder (:func:`setting_groups`) run one after another in one task.
    """
    out_dir = Path(out_dir)
    _claim(config, out_dir)
    corpus = load_corpus(config.corpus)
    groups = setting_groups(config)
    done = map_tasks(
        _run_group, {" + ".join(s.name for s in group): (group,) for group in groups},
        compute or config.compute, shared={"config": config, "out_dir": out_dir, "corpus": corpus},
        description="defense settings", progress=progress,
    )  # fmt: skip
    by_name = {r["setting"]: r for results in done.values() for r in results}
    results = [by_name[s.name] for s in config.settings]
    metric = results[0]["utility"]["metric"]
    points = [(r["utility"]["value"], r["leakage"]["auroc"]["value"]) for r in results]
    front = pareto_front(points, higher_utility_is_better=metric not in LOWER_IS_BETTER)
    for result, on_front in zip(results, front, strict=True):
        result["pareto"] = on_front
    summary = {
        "schema": "voxaudit.defense-sweep/1",
        "family": config.family,
        "threat": config.threat,
        "utility_metric": metric,
        "settings": results,
    }
    write_json(out_dir / "sweep.json", summary)
    _plot(summary, out_dir / "pareto.png")
    return summary


def setting_groups(config: SweepConfig) -> list[list[Setting]]:
    """The settings in groups that share no models folder with another group, in config
    order: settings that train alike (serve-time defenses, distillation's teacher) train into
    one folder, which two tasks must not write at once."""
    kind = families.get(config.family).train_kind
    groups: list[tuple[set[str], list[Setting]]] = []
    for setting in config.settings:
        run_config = _run_config(config.base, setting, config.device)
        folders = {
            _recipe(kind, run_config, setting.hooks, _held_out_share(setting, run_config))[1]
        }
        if "distillation" in setting.hooks:
            teacher = _run_config(config.base, Setting("teacher"), config.device)
            folders.add(_recipe(kind, teacher, {}, 0.0)[1])
        # The setting joins (and so merges) every group it shares a folder with.
        sharing = [g for g in groups if g[0] & folders]
        merged = (folders.union(*(g[0] for g in sharing)), [s for g in sharing for s in g[1]])
        groups = [g for g in groups if not g[0] & folders] + [(merged[0], [*merged[1], setting])]
    order = {s.name: k for k, s in enumerate(config.settings)}
    return sorted((sorted(g[1], key=lambda s: order[s.name]) for g in groups),
                  key=lambda g: order[g[0].name])  # fmt: skip


def _run_group(
    settings: Sequence[Setting],
    *,
    config: SweepConfig,
    out_dir: Path,
    corpus: Corpus,
    progress: bool,
) -> list[dict[str, Any]]:
    """Settings that share models, one after another: a task of :func:`run_sweep`."""
    return [run_setting(config, s, out_dir, progress, corpus) for s in settings]


def _plot(summary: dict[str, Any], path: Path) -> None:
    """Utility against leakage, one numbered point per setting; the key beside the axes.

    Numbers rather than names at the points: settings of equal utility (every serve-time
    defense that keeps the label) sit on one vertical line, where names overprint.
    """
    figure = Figure(figsize=(9, 4.8))
    axes = figure.add_axes((0.09, 0.11, 0.55, 0.8))
    key = []
    for number, result in enumerate(summary["settings"], 1):
        auroc = result["leakage"]["auroc"]
        x, y = result["utility"]["value"], auroc["value"]
        color = "C3" if result["pareto"] else "C0"
        axes.errorbar(
            x, y, yerr=[[y - auroc["low"]], [auroc["high"] - y]],
            fmt="o" if result["pareto"] else "x", color=color, capsize=3, alpha=0.8,
        )  # fmt: skip
        axes.annotate(str(number), (x, y), fontsize=7, color=color, xytext=(4, 2),
                      textcoords="offset points")  # fmt: skip
        mark = " *" if result["pareto"] else ""
        key.append(f"{number:>2}  {result['setting']}{mark}  ({x:.3f}, {y:.3f})")
    axes.axhline(0.5, color="grey", linestyle=":", label="chance")
    axes.axhline(0.55, color="grey", linestyle="--", linewidth=0.8, label="AUROC 0.55")
    metric = summary["utility_metric"]
    better = "lower is better" if metric in LOWER_IS_BETTER else "higher is better"
    axes.set_xlabel(f"{metric} on non-members ({better})")
    axes.set_ylabel("headline attack AUROC (95% CI)")
    axes.set_title(f"{summary['family']}, {summary['threat']} box: privacy against utility")
    axes.legend(loc="best", fontsize=8)
    heading = f"setting  ({metric}, AUROC)\n* on the Pareto frontier\n\n"
    figure.text(0.67, 0.91, heading + "\n".join(key), fontsize=7.5, family="monospace",
                verticalalignment="top")  # fmt: skip
    FigureCanvasAgg(figure).print_png(str(path))
