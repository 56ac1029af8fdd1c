"""k choice benchmark: is the chosen k stable under numerical noise, and practical at k ~ 1,000?

Run from the repository root::

    python benchmarks/bench_k.py            # (a) demo features, (b) 200,000 x 384, (c) GPU
    python benchmarks/bench_k.py --quick    # small: 300 raw digits, 2,000 x 16; seconds

Measured, each with the library's own sweep (:func:`cl_core.cluster.plan_sweep`, then
:func:`cl_core.cluster.run_sweep` and :func:`cl_core.cluster.choose_k`, the defaults of
:class:`cl_core.cluster.ClusterConfig`):

(a) **Stability.** The demo's features (the bundled digits through the bundled
    EfficientNet-Lite0, as ``cl-curriculum demo``) embedded with ``precision="fp32"`` and
    ``"bf16"`` (``--bf16-from round``: the fp32 features rounded to bf16), and 5 bootstrap draws:
    the sweep's half-sample replicates drawn and fitted from 5 other seeds (``random_state``
    1..5) on the fp32 features; k range 2..20. Goal: the same k in every case. Reported beside
    it, outside the goal: 5 resamples of the rows with replacement (duplicated rows lower the
    index at large k, so these test another data set more than the rule). ``--quick``: the
    first 300 raw 64-pixel digits (k range 2..10), rounded to bf16 and back for the bf16 case.
(b) **Scale.** 200,000 x 384 Gaussian blobs around 1,000 true centres (``bench_scale.py``'s
    generator), ``cluster_range=(100, 2000)``, on this machine's CPU (or its GPU when present).
    Goal: the sweep within 10 minutes and the chosen k within 10 % of 1,000. The load average
    is reported: the machine is shared. ``--quick``: 2,000 x 16 rows, 10 clusters, 4..30.
(c) **GPU scale.** The same at 1,280,000 rows on CUDA; ``"skipped: no CUDA"`` without one.

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np

from benchmarks.common import arguments, blob_centres, blob_rows, emit, scratch, table

SEED = 0
BOOTSTRAPS = 5
SWEEP_GOAL_S = 600.0
K_TOLERANCE = 0.10
SIZES = {
    "full": {"rows": 200_000, "dim": 384, "true_k": 1000, "k_range": (100, 2000)},
    "quick": {"rows": 2_000, "dim": 16, "true_k": 10, "k_range": (4, 30)},
}
QUICK_STABILITY_K_RANGE = (2, 10)  # --quick checks that (a) runs, in seconds
GPU_ROWS = 1_280_000
LAST_SWEEP: list[Any] = []  # the points and facts of the latest sweep (for --plot)


def save_plot(points: Any, facts: dict[str, Any], path: str) -> None:
    """The report's sweep plot (:func:`cl_core.report.plot_sweep`) of one sweep, with its band."""
    from cl_core.report import plot_sweep, save_figure

    figure = plot_sweep(
        [p.k for p in points],
        [p.davies_bouldin for p in points],
        [p.inertia for p in points],
        facts["k"],
        standard_error=[p.davies_bouldin_se for p in points],
        band=facts["band"],
    )
    save_figure(figure, Path(path))


def sweep_choice(features: Any, config: Any = None) -> dict[str, Any]:
    """The library's sweep over ``features`` (array or store): the chosen k and its facts."""
    from cl_core.cluster import ClusterConfig, plan_sweep

    config = ClusterConfig() if config is None else config
    plan = plan_sweep(features, config)
    return {**choose_on(plan.sample, plan.ks, plan.sweep_seed, config, plan.device)}


def choose_on(sample: np.ndarray, ks: Any, seed: int, config: Any, device: str) -> dict[str, Any]:
    """Run both rounds on ``sample`` and choose k; the choice and the sweep's wall time."""
    from cl_core.cluster import describe_sweep, run_sweep

    started = time.perf_counter()
    points = run_sweep(
        sample,
        ks,
        seed,
        batch_size=config.sweep_batch_size,
        n_init=config.sweep_n_init,
        replicates=config.sweep_replicates,
        device=device,
    )
    seconds = time.perf_counter() - started
    facts = describe_sweep(points, sample.shape[0], config, device)
    LAST_SWEEP[:] = [points, facts]
    return {
        "k": facts["k"],
        "best_k": facts["best_k"],
        "band": round(facts["band"], 4),
        "in_band": len(facts["in_band"]),
        "flat": facts["flat"],
        "candidates": facts["n_candidates"],
        "sample_rows": facts["sample_rows"],
        "seconds": round(seconds, 1),
    }


def bf16_round(values: np.ndarray) -> np.ndarray:
    """``values`` rounded to bfloat16 and back to float32 (torch's rounding)."""
    import torch

    return (
        torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).bfloat16().float().numpy()
    )


def demo_features(precision: str, workdir: Path) -> np.ndarray:
    """The demo's raw features: digits through the bundled EfficientNet-Lite0 at ``precision``."""
    from cl_core.embed import EmbedConfig, embed_dataset

    config = EmbedConfig(model="tf_efficientnet_lite0", precision=precision)
    store = embed_dataset("digits", workdir / f"digits-{precision}.zarr", config)
    return np.asarray(store.features[:], dtype=np.float32)


def stability(
    quick: bool, workdir: Path, plot: str | None = None, bf16_from: str = "embed"
) -> dict[str, Any]:
    """(a): k of the fp32 and bf16 features, of 5 sweep seeds, and of 5 row resamples."""
    from cl_core.cluster import ClusterConfig, plan_sweep

    k_range = ClusterConfig().cluster_range
    if quick:
        from sklearn.datasets import load_digits

        fp32 = load_digits().data[:300].astype(np.float32)
        features = {"fp32": fp32, "bf16": bf16_round(fp32)}
        k_range = QUICK_STABILITY_K_RANGE
    elif bf16_from == "round":
        fp32 = demo_features("fp32", workdir)
        features = {"fp32": fp32, "bf16": bf16_round(fp32)}
    else:
        features = {p: demo_features(p, workdir) for p in ("fp32", "bf16")}
    config = ClusterConfig(cluster_range=k_range)
    cases = {}
    for name, rows in features.items():
        cases[name] = sweep_choice(rows, config)
        if name == "fp32" and plot:
            save_plot(*LAST_SWEEP, plot)
    for draw in range(1, BOOTSTRAPS + 1):
        seeded = ClusterConfig(cluster_range=k_range, random_state=draw)
        cases[f"bootstrap {draw}"] = sweep_choice(features["fp32"], seeded)
    plan = plan_sweep(features["fp32"], config)
    resampled = {}
    for draw in range(BOOTSTRAPS):
        rng = np.random.default_rng([SEED, 7, draw])
        rows = plan.sample[np.sort(rng.integers(0, plan.sample.shape[0], plan.sample.shape[0]))]
        name = f"rows resampled {draw}"
        resampled[name] = choose_on(rows, plan.ks, plan.sweep_seed, config, plan.device)
    ks = {case["k"] for case in cases.values()}
    return {"cases": cases, "resampled": resampled, "ks": sorted(ks), "goal_met": len(ks) == 1}


def blobs(rows: int, dim: int, true_k: int, seed: int = SEED) -> np.ndarray:
    """``rows`` Gaussian-blob rows around ``true_k`` centres (``bench_scale.py``'s generator)."""
    centres = blob_centres(true_k, dim, seed)
    out = np.empty((rows, dim), dtype=np.float32)
    step = 50_000
    for start in range(0, rows, step):
        n = min(step, rows - start)
        out[start : start + n] = blob_rows(centres, n, [seed, 2, start])
    return out


def scale(rows: int, dim: int, true_k: int, k_range: tuple[int, int]) -> dict[str, Any]:
    """(b)/(c): the sweep over ``k_range`` on blobs of ``true_k`` clusters; time and k."""
    from cl_core.cluster import ClusterConfig

    data = blobs(rows, dim, true_k)
    choice = sweep_choice(data, ClusterConfig(cluster_range=k_range))
    error = abs(choice["k"] - true_k) / true_k
    return {
        **choice,
        "rows": rows,
        "dim": dim,
        "true_k": true_k,
        "k_range": list(k_range),
        "k_error": round(error, 3),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "goal_met": bool(choice["seconds"] <= SWEEP_GOAL_S and error <= K_TOLERANCE),
    }


def gpu(quick: bool) -> dict[str, Any] | str:
    """(c): the scale measurement at 1,280,000 rows on CUDA, or why it was skipped."""
    import torch

    if not torch.cuda.is_available():
        return "skipped: no CUDA"
    size = SIZES["quick" if quick else "full"]
    rows = size["rows"] * 2 if quick else GPU_ROWS
    return scale(rows, size["dim"], size["true_k"], size["k_range"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = arguments(__doc__ or "", "small sizes: 300 raw digits, 2,000 x 16")
    parser.add_argument("--plot", help="save the fp32 demo sweep's plot (band shaded) here")
    parser.add_argument("--skip-scale", action="store_true", help="measure (a) only")
    parser.add_argument("--workdir", help="keep the demo's embedding stores here (reused)")
    parser.add_argument(
        "--bf16-from",
        choices=("embed", "round"),
        default="embed",
        help="bf16 features: embedded at bf16 (default), or the fp32 features rounded to bf16 "
        "(for CPUs without bf16 units, where bf16 inference is emulated and slow)",
    )
    args = parser.parse_args(argv)
    size = SIZES["quick" if args.quick else "full"]
    with scratch(args.workdir, "bench-k-") as directory:
        stable = stability(args.quick, directory, args.plot, args.bf16_from)
    if args.skip_scale:
        scaled: dict[str, Any] = {"k": "", "best_k": "", "in_band": "", "flat": "",
                                  "seconds": None, "goal_met": False,
                                  "load_average": [round(v, 2) for v in os.getloadavg()]}  # fmt: skip
        on_gpu: dict[str, Any] | str = "skipped: --skip-scale"
    else:
        scaled = scale(size["rows"], size["dim"], size["true_k"], size["k_range"])
        on_gpu = gpu(args.quick)
    rows: list[tuple[object, ...]] = [("case", "k", "best k", "in band", "flat", "sweep s")]
    for name, case in stable["cases"].items():
        rows.append((f"(a) {name}", case["k"], case["best_k"], case["in_band"], case["flat"],
                     case["seconds"]))  # fmt: skip
    for name, case in stable["resampled"].items():
        rows.append((f"(a, not in goal) {name}", case["k"], case["best_k"], case["in_band"],
                     case["flat"], case["seconds"]))  # fmt: skip
    rows.append((f"(b) {size['rows']:,} x {size['dim']}, true k {size['true_k']}",
                 scaled["k"], scaled["best_k"], scaled["in_band"], scaled["flat"],
                 scaled["seconds"]))  # fmt: skip
    if isinstance(on_gpu, dict):
        rows.append(("(c) GPU", on_gpu["k"], on_gpu["best_k"], on_gpu["in_band"],
                     on_gpu["flat"], on_gpu["seconds"]))  # fmt: skip
    else:
        rows.append(("(c) GPU", on_gpu, "", "", "", ""))
    print(table(rows))
    print(f"load average: {scaled['load_average']}")
    goal_met = bool(stable["goal_met"] and scaled["goal_met"])
    return emit(
        {
            "benchmark": "bench_k",
            "quick": bool(args.quick),
            "stability": {
                "ks": stable["ks"],
                "cases": stable["cases"],
                "rows_resampled": {name: case["k"] for name, case in stable["resampled"].items()},
            },
            "scale": scaled,
            "gpu": on_gpu,
            "ratio": None if scaled["seconds"] is None else SWEEP_GOAL_S / scaled["seconds"],
            "goal": "(a) one k in every case; (b) sweep <= 600 s, k within 10 % of the truth",
            "goal_met": goal_met,
        }
    )


if __name__ == "__main__":
    main()
