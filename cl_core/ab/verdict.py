"""The A/B summary: per-arm statistics over seeds, paired comparisons, the verdict, its table
and plot (computed from the logged curves only; scipy and matplotlib imported where used)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cl_core.ab.config import ARMS
from cl_core.ab.objectives import RECIPES
from cl_core.ab.train import ArmRun

ARM_COLOURS = {
    "easy": "tab:green",
    "uniform": "tab:blue",
    "hard": "tab:red",
    "shuffled": "tab:gray",
}


@dataclass(frozen=True)
class ArmSummary:
    """Per-arm statistics over seeds, all computed from the logged curves.

    ``auc`` is the area under the accuracy-vs-steps curve (trapezoid over the evaluation steps)
    divided by the step budget: the mean held-out accuracy over the run. ``steps_to_target`` is
    the first evaluation step at which the arm's mean curve reaches ``target`` (uniform's mean
    final accuracy), None when it never does.
    """

    arm: str
    seeds: tuple[int, ...]
    eval_steps: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    final_mean: float
    final_std: float
    auc_mean: float
    auc_std: float
    steps_to_target: int | None
    target: float | None
    probe_mean: float | None = None  # mae: the final linear probe, over seeds
    probe_std: float | None = None


@dataclass(frozen=True)
class Comparison:
    """Paired (same seed) difference of one metric between two arms."""

    metric: str
    arm: str
    baseline: str
    arm_mean: float
    baseline_mean: float
    difference: float
    half_width: float | None  # 95% t interval of the mean paired difference; None for 1 seed
    n_seeds: int

    @property
    def exceeds_spread(self) -> bool:
        """The difference is larger than the seed-to-seed spread (its 95% interval excludes 0)."""
        return self.half_width is not None and abs(self.difference) > self.half_width


@dataclass(frozen=True)
class ABSummary:
    """The A/B result: per-arm statistics, comparisons and the verdict."""

    arms: dict[str, ArmSummary]
    eval_steps: tuple[int, ...]
    comparisons: tuple[Comparison, ...]
    verdict: str
    outcome: str  # helps | hurts | mixed | no clear difference | undetermined
    notes: tuple[str, ...]
    objective: str = "supervised"
    metric: str = "held-out accuracy"
    # mae: {"raw pixels" | "random init": {"knn" | "probe": (mean, std over seeds)}}
    floors: dict[str, dict[str, tuple[float, float]]] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        document = {
            "arms": {name: dataclasses.asdict(s) for name, s in self.arms.items()},
            "eval_steps": list(self.eval_steps),
            "comparisons": [
                dataclasses.asdict(c) | {"exceeds_spread": c.exceeds_spread}
                for c in self.comparisons
            ],
            "verdict": self.verdict,
            "outcome": self.outcome,
            "notes": list(self.notes),
        }
        if self.objective != "supervised":
            document |= {
                "objective": self.objective,
                "metric": self.metric,
                "floors": {
                    name: {key: list(value) for key, value in readings.items()}
                    for name, readings in self.floors.items()
                },
            }
        return document

    def table_rows(self) -> list[dict[str, Any]]:
        """One row per arm, then one per floor (for a Prefect table artifact)."""
        final, auc, probe = _COLUMNS[self.objective]
        rows = []
        for name, arm in self.arms.items():
            row = {
                "arm": name,
                "seeds": len(arm.seeds),
                final: f"{arm.final_mean:.4f} ± {arm.final_std:.4f}",
                auc: f"{arm.auc_mean:.4f} ± {arm.auc_std:.4f}",
                "steps to uniform's final": _steps_text(arm),
            }
            if probe:
                row[probe] = _mean_std(arm.probe_mean, arm.probe_std)
            rows.append(row)
        for name, readings in self.floors.items():
            seeds = 1 if name == "raw pixels" else max(len(a.seeds) for a in self.arms.values())
            knn = readings.get("knn")
            row = {
                "arm": f"floor: {name}",
                "seeds": seeds,
                final: _mean_std(*knn) if knn else "n/a",
                auc: "n/a",
                "steps to uniform's final": "n/a",
            }
            if probe:
                row[probe] = _mean_std(*readings["probe"]) if "probe" in readings else "n/a"
            rows.append(row)
        return rows

    def curve_rows(self) -> list[dict[str, Any]]:
        """One row per evaluation step: mean ± std of each arm."""
        rows = []
        for position, step in enumerate(self.eval_steps):
            row: dict[str, Any] = {"step": step}
            for name, arm in self.arms.items():
                row[name] = f"{arm.mean[position]:.4f} ± {arm.std[position]:.4f}"
            rows.append(row)
        return rows


# Table columns per objective: final reading, AUC, final linear probe (None: no column).
_COLUMNS = {
    "supervised": ("final accuracy", "AUC (mean accuracy)", None),
    "mae": ("final kNN accuracy", "AUC (mean kNN accuracy)", "linear probe"),
}
# Verdict wording per objective and metric.
_LABELS = {
    "supervised": {"final": "final accuracy", "auc": "mean accuracy over the run (AUC)"},
    "mae": {
        "final": "final kNN accuracy",
        "auc": "mean kNN accuracy over the run (AUC)",
        "probe": "linear probe",
    },
}


def _mean_std(mean: float | None, std: float | None) -> str:
    return "n/a" if mean is None else f"{mean:.4f} ± {0.0 if std is None else std:.4f}"


def _steps_text(arm: ArmSummary) -> str:
    if arm.target is None:
        return "n/a"
    return "not reached" if arm.steps_to_target is None else str(arm.steps_to_target)


def _t_critical(n: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1))


def _curves(runs: Sequence[ArmRun], arm: str) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    chosen = sorted((r for r in runs if r.arm == arm), key=lambda r: r.seed)
    steps = {r.eval_steps for r in chosen}
    if len(steps) != 1:
        raise ValueError(f"the {arm!r} runs were evaluated at different steps; rerun them alike")
    return (
        tuple(r.seed for r in chosen),
        np.array([r.accuracy for r in chosen], dtype=np.float64),
        np.array(next(iter(steps)), dtype=np.float64),
    )


def _auc(accuracy: np.ndarray, steps: np.ndarray) -> np.ndarray:
    span = steps[-1] - steps[0]
    if span <= 0:
        return accuracy[..., -1]
    widths = np.diff(steps)
    return ((accuracy[..., 1:] + accuracy[..., :-1]) / 2 * widths).sum(axis=-1) / span


def _std(values: np.ndarray, axis: int = 0) -> np.ndarray:
    return (
        values.std(axis=axis, ddof=1)
        if values.shape[axis] > 1
        else np.zeros_like(values.mean(axis))
    )


def _compare(
    metric: str, arm: str, baseline: str, per_seed: Mapping[str, dict[int, float]]
) -> Comparison | None:
    common = sorted(set(per_seed[arm]) & set(per_seed[baseline]))
    if not common:
        return None
    a = np.array([per_seed[arm][s] for s in common])
    b = np.array([per_seed[baseline][s] for s in common])
    diff = a - b
    n = len(common)
    half = None if n < 2 else _t_critical(n) * float(diff.std(ddof=1)) / math.sqrt(n)
    return Comparison(
        metric, arm, baseline, float(a.mean()), float(b.mean()), float(diff.mean()), half, n
    )


def _pp(value: float) -> str:
    return f"{100 * value:+.1f} pp"


def _clause(c: Comparison, objective: str = "supervised") -> str:
    label = _LABELS[objective][c.metric]
    if c.half_width is None:
        spread = "one seed: no spread to compare with"
    else:
        verdict = "exceeds" if c.exceeds_spread else "within"
        spread = f"±{100 * c.half_width:.1f} pp over {c.n_seeds} seeds: {verdict} the seed-to-seed spread"
    return f"{label} {c.arm_mean:.3f} vs {c.baseline_mean:.3f} ({_pp(c.difference)}, {spread})"


def summarize(runs: Sequence[ArmRun | Mapping[str, Any]]) -> ABSummary:
    """Statistics, comparisons and the verdict, computed from the logged curves only.

    Parameters
    ----------
    runs : sequence of ArmRun (or their JSON documents)
        At least one run; every arm evaluated at the same steps.

    Returns
    -------
    ABSummary
        The verdict compares ``easy`` with ``uniform`` on final accuracy and AUC, pairing runs by
        seed: a difference *exceeds the seed-to-seed spread* when its 95% t interval over the
        paired seeds excludes zero. ``outcome`` is ``helps`` / ``hurts`` when at least one metric
        differs beyond the spread in that direction and none in the other, ``mixed`` when they
        disagree, ``no clear difference`` otherwise, ``undetermined`` with fewer than 2 paired
        seeds or without both arms.
    """
    parsed = [r if isinstance(r, ArmRun) else ArmRun.from_json(r) for r in runs]
    if not parsed:
        raise ValueError("runs is empty; train at least one arm with one seed")
    objectives = {r.objective for r in parsed}
    if len(objectives) != 1:
        raise ValueError(
            f"the runs mix objectives {sorted(objectives)}; summarise one objective at a time"
        )
    objective = objectives.pop()
    arms = [a for a in ARMS if any(r.arm == a for r in parsed)]
    curves = {arm: _curves(parsed, arm) for arm in arms}
    all_steps = {tuple(int(x) for x in c[2]) for c in curves.values()}
    if len(all_steps) != 1:
        raise ValueError("the arms were evaluated at different steps; run them with one config")
    eval_steps = next(iter(all_steps))
    target = float(curves["uniform"][1][:, -1].mean()) if "uniform" in curves else None
    summaries: dict[str, ArmSummary] = {}
    per_seed: dict[str, dict[str, dict[int, float]]] = {"final": {}, "auc": {}, "probe": {}}
    for arm in arms:
        seeds, accuracy, steps = curves[arm]
        probes = _probes(parsed, arm)
        mean = accuracy.mean(axis=0)
        auc = _auc(accuracy, steps)
        reached = None
        if target is not None:
            hits = np.flatnonzero(mean >= target - 1e-12)
            reached = int(steps[hits[0]]) if hits.size else None
        summaries[arm] = ArmSummary(
            arm=arm,
            seeds=seeds,
            eval_steps=eval_steps,
            mean=tuple(float(x) for x in mean),
            std=tuple(float(x) for x in _std(accuracy)),
            final_mean=float(mean[-1]),
            final_std=float(_std(accuracy[:, -1])),
            auc_mean=float(auc.mean()),
            auc_std=float(_std(auc)),
            steps_to_target=reached,
            target=target,
            probe_mean=None if probes is None else float(probes.mean()),
            probe_std=None if probes is None else float(_std(probes)),
        )
        per_seed["final"][arm] = dict(zip(seeds, accuracy[:, -1].tolist(), strict=True))
        per_seed["auc"][arm] = dict(zip(seeds, auc.tolist(), strict=True))
        if probes is not None:
            per_seed["probe"][arm] = dict(zip(seeds, probes.tolist(), strict=True))
    comparisons = []
    for arm, baseline in (("easy", "uniform"), ("easy", "shuffled"), ("hard", "uniform")):
        if arm in summaries and baseline in summaries:
            for metric in ("final", "auc", "probe"):
                if arm not in per_seed[metric] or baseline not in per_seed[metric]:
                    continue
                found = _compare(metric, arm, baseline, per_seed[metric])
                if found is not None:
                    comparisons.append(found)
    verdict, outcome = _verdict(comparisons, objective)
    notes = tuple(_notes(comparisons, objective))
    return ABSummary(
        summaries,
        eval_steps,
        tuple(comparisons),
        verdict,
        outcome,
        notes,
        objective=objective,
        metric=RECIPES[objective].metric,
        floors=_floors(parsed),
    )


def _probes(runs: Sequence[ArmRun], arm: str) -> np.ndarray | None:
    """The arm's final linear-probe accuracy per seed (seed order), None if a run has none."""
    chosen = sorted((r for r in runs if r.arm == arm), key=lambda r: r.seed)
    if any(r.probe is None for r in chosen):
        return None
    return np.array([r.probe for r in chosen], dtype=np.float64)


def _floors(runs: Sequence[ArmRun]) -> dict[str, dict[str, tuple[float, float]]]:
    """Mean and std of each floor reading over the seeds (one run per seed: the floors are the
    same for every arm of a seed)."""
    by_seed: dict[int, dict[str, dict[str, float]]] = {}
    for run in sorted(runs, key=lambda r: (r.seed, r.arm)):
        if run.floors and run.seed not in by_seed:
            by_seed[run.seed] = run.floors
    floors: dict[str, dict[str, tuple[float, float]]] = {}
    for name in ("raw pixels", "random init"):
        for key in ("knn", "probe"):
            values = [
                f[name][key] for f in by_seed.values() if f.get(name, {}).get(key) is not None
            ]
            if values:
                array = np.array(values, dtype=np.float64)
                floors.setdefault(name, {})[key] = (float(array.mean()), float(_std(array)))
    return floors


def _verdict(comparisons: Sequence[Comparison], objective: str = "supervised") -> tuple[str, str]:
    main = [c for c in comparisons if c.arm == "easy" and c.baseline == "uniform"]
    if not main:
        return "no verdict: needs both the easy and the uniform arm", "undetermined"
    n = main[0].n_seeds
    clauses = "; ".join(_clause(c, objective) for c in main)
    if n < 2:
        return (
            f"easy vs uniform (1 seed): {clauses} -> undetermined (run >= 3 seeds)",
            "undetermined",
        )
    up = [c for c in main if c.exceeds_spread and c.difference > 0]
    down = [c for c in main if c.exceeds_spread and c.difference < 0]
    if up and not down:
        outcome = "helps"
        tail = f"the curriculum helps ({_how(up, 'learns faster', 'ends higher', 'probes higher')})"
    elif down and not up:
        outcome = "hurts"
        tail = f"the curriculum hurts ({_how(down, 'learns slower', 'ends lower', 'probes lower')})"
    elif up and down:
        outcome = "mixed"
        tail = "mixed: faster early but lower at the end" if up[0].metric == "auc" else "mixed"
    else:
        outcome = "no clear difference"
        tail = "no difference beyond the seed-to-seed spread"
    return f"easy vs uniform ({n} seeds): {clauses} -> {tail}", outcome


def _how(significant: Sequence[Comparison], speed: str, level: str, probe: str) -> str:
    metrics = {c.metric for c in significant}
    return " and ".join(
        text
        for metric, text in (("auc", speed), ("final", level), ("probe", probe))
        if metric in metrics
    )


def _notes(comparisons: Sequence[Comparison], objective: str = "supervised") -> Iterator[str]:
    for arm, baseline, meaning in (
        ("easy", "shuffled", "ordering information (easy vs shuffled)"),
        ("hard", "uniform", "hard-first vs uniform"),
    ):
        found = [c for c in comparisons if c.arm == arm and c.baseline == baseline]
        if found:
            yield f"{meaning}: " + "; ".join(_clause(c, objective) for c in found)


def format_table(summary: ABSummary, *, curve: bool = True) -> str:
    """Markdown tables: per arm (final, AUC, steps to uniform's final), then accuracy per step."""
    from cl_core.report import markdown_table

    parts = [markdown_table(summary.table_rows())]
    if curve:
        parts.append(markdown_table(summary.curve_rows()))
    return "\n\n".join(parts)


def plot_curves(summary: ABSummary, title: str = "", warmup: int | None = None) -> Any:
    """The reading (held-out accuracy; kNN accuracy for ``mae``) vs steps per arm: mean line,
    ± 1 std band (matplotlib ``Figure``).

    A dotted horizontal line marks uniform's final reading; ``warmup`` (the curricula's last
    non-uniform step) a dashed vertical one; the floors (``mae``: raw pixels, random init) are
    grey dash-dotted lines.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 4.5), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    for name, arm in summary.arms.items():
        steps = np.asarray(arm.eval_steps)
        mean, std = np.asarray(arm.mean), np.asarray(arm.std)
        colour = ARM_COLOURS.get(name)
        axes.plot(steps, mean, label=f"{name} (n={len(arm.seeds)})", color=colour, linewidth=1.8)
        axes.fill_between(steps, mean - std, mean + std, color=colour, alpha=0.18, linewidth=0)
    uniform = summary.arms.get("uniform")
    if uniform is not None:
        axes.axhline(uniform.final_mean, color="tab:blue", linestyle=":", linewidth=1)
    if warmup is not None and 0 < warmup < max(summary.eval_steps):
        axes.axvline(warmup, color="black", linestyle="--", linewidth=0.8, alpha=0.6)
        axes.annotate(
            " uniform from here", (warmup, 0.02), xycoords=("data", "axes fraction"), fontsize=8
        )
    floor_values = []
    for (name, readings), style in zip(summary.floors.items(), ("-.", ":"), strict=False):
        if "knn" in readings:
            value = readings["knn"][0]
            floor_values.append(value)
            axes.axhline(value, color="dimgray", linestyle=style, linewidth=1)
            axes.annotate(
                f" floor: {name}",
                (0.0, value),
                xycoords=("axes fraction", "data"),
                fontsize=8,
                color="dimgray",
                va="bottom",
            )
    axes.set_xlabel("training step")
    axes.set_ylabel(summary.metric)
    low = min(min(np.asarray(a.mean) - np.asarray(a.std)) for a in summary.arms.values())
    low = min([low, *floor_values])
    axes.set_ylim(max(0.0, low - 0.02), 1.0)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    axes.set_title(title or f"A/B: {summary.outcome}", fontsize=10)
    return figure
