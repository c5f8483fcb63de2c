"""Sweep efficiency: do the search and the estimator gate find good designs for less compute?

    python benchmarks/sweep_efficiency.py                          # 3 arms, seed 0: ~45 min on 2 cores
    python benchmarks/sweep_efficiency.py --seeds 0 1              # and a second seed
    python benchmarks/sweep_efficiency.py --report-only            # re-analyse the finished arms

Every arm is a real sweep of the same reference space (`benchmarks/sweeps/efficiency.yaml`: the
`sweeps/mono.yaml` space on MNIST with a reduced training budget), run by ``python -m
explore.sweep`` with the arm's overrides and the seed, 24 trials each:

- ``random``: uniform random proposals, no gate;
- ``optuna``: our default sampler (Optuna's multi-objective TPE), no gate;
- ``gated``: the same sampler with the estimator gate (`explore.trial.gate_reason`).

(ASHA-style early stopping is not an arm: a trial reports once, at its end, so there is no
intermediate accuracy for a scheduler to stop on.)

Compute is the CPU time of every trial's worker process (the ``cpu_s`` column: pruned and
infeasible trials included), summed in finishing order. CPU time, not wall time, because this
machine is shared: other work slows a trial's wall clock but not its CPU seconds. The hypervolume
of (max accuracy after fabrication and compensation, min ``energy_pj``) uses one reference point for every arm and seed
(`explore.pareto.reference_point` of all their complete trials together) and is given as a fraction
of the box between that point and the ideal (accuracy 1, energy 0). The bar of issue 9: the
gated arm reaches 95 % of the best final hypervolume of any arm (same seed) in at most half the
compute that the ungated Optuna arm needs to reach that level.

Writes ``<out>/efficiency.md`` (tables) and ``--chart`` (hypervolume against compute, PNG); rows
stay in ``<out>/efficiency-<arm>-s<seed>/trials/``. An arm whose sweep already finished is not run
again; an interrupted one is resumed.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl

from explore.analysis import load
from explore.pareto import hypervolume_history, non_dominated, reference_point

SPEC = Path(__file__).parent / "sweeps" / "efficiency.yaml"
ARMS = {"random": ["search.sampler=random", "gate.enabled=false"], "optuna": ["gate.enabled=false"], "gated": []}
TARGET = 0.95  # of the best final hypervolume
MIN = 60.0


def run_arm(arm: str, seed: int, out: Path, trials: int | None) -> Path:
    name = f"efficiency-{arm}-s{seed}"
    folder = out / name
    command = [sys.executable, "-m", "explore.sweep", str(SPEC), *ARMS[arm], f"name={name}", f"seed={seed}",
               f"output={out}", "--no-report"] + ([f"budget.trials={trials}"] if trials else [])
    if (folder / "trials").exists() and any((folder / "trials").iterdir()):
        analysis = load(folder)
        if len(analysis.rows) >= analysis.spec.budget.trials:
            print(f"{name}: finished earlier ({len(analysis.rows)} trials), not run again", flush=True)
            return folder
        command.append("--resume")
    print("running: " + " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True)
    return folder


def curves(folders: dict[tuple[str, int], Path]) -> tuple[pl.DataFrame, dict[tuple[str, int], dict]]:
    """Hypervolume after every trial against cumulative CPU time, one shared reference point."""
    analyses = {key: load(folder) for key, folder in folders.items()}
    spec = next(iter(analyses.values())).spec
    metrics, directions = spec.metrics, spec.directions
    if directions != ["max", "min"]:
        raise ValueError(f"expected objectives (accuracy max, energy min), got {metrics} {directions}")

    def values(rows: pl.DataFrame) -> np.ndarray:
        v = rows.select(pl.col(m).cast(pl.Float64) for m in metrics).to_numpy().astype(float)
        v[(rows["status"] != "complete").to_numpy()] = np.nan
        return v

    every = np.concatenate([values(a.rows) for a in analyses.values()])
    reference = reference_point(every, directions)
    ideal_box = (1.0 + reference[0]) * reference[1]  # from the reference to (accuracy 1, energy 0)
    points, summary = [], {}
    for (arm, seed), a in analyses.items():
        rows = a.rows  # finishing order
        v = values(rows)
        cpu = rows["cpu_s"].fill_null(rows["t_total_s"]).fill_null(0.0).cum_sum().to_numpy()
        history = hypervolume_history(v, directions, reference) / ideal_box
        points += [(arm, seed, 0.0, 0.0)] + [(arm, seed, c / MIN, h) for c, h in zip(cpu, history)]
        counts = rows["status"].value_counts()
        summary[(arm, seed)] = {
            "cpu": cpu, "history": history, "front": v[non_dominated(v, directions)],
            "counts": dict(zip(counts["status"].to_list(), counts["count"].to_list())),
            "wall_min": (rows["finished_unix_s"].max() - rows["started_unix_s"].min()) / MIN,
        }
    frame = pl.DataFrame(points, schema={"arm": pl.String, "seed": pl.Int64, "cpu_min": pl.Float64,
                                         "hypervolume": pl.Float64}, orient="row")
    return frame, summary | {"reference": reference}


def compute_to_reach(cpu: np.ndarray, history: np.ndarray, level: float) -> float:
    """CPU seconds at which the hypervolume first reaches ``level`` (NaN if it never does)."""
    hit = np.flatnonzero(history >= level)
    return float(cpu[hit[0]]) if len(hit) else float("nan")


def tables(summary: dict, arms: list[str], seeds: list[int]) -> str:
    lines = ["| arm | seed | complete / pruned / infeasible / failed | CPU min | wall min | final HV | "
             f"CPU min to {TARGET:.0%} of best HV | front (accuracy, µJ) |", "|---|---|---|---|---|---|---|---|"]
    reached: dict[str, list[float]] = {arm: [] for arm in arms}
    verdicts = []
    for seed in seeds:
        best = max(summary[(arm, seed)]["history"][-1] for arm in arms)
        level = TARGET * best
        for arm in arms:
            s = summary[(arm, seed)]
            c = s["counts"]
            to_level = compute_to_reach(s["cpu"], s["history"], level)
            reached[arm].append(to_level)
            front = "; ".join(f"{a:.3f}, {e / 1e6:.2f}" for a, e in sorted(s["front"].tolist(), key=lambda p: p[1]))
            lines.append(f"| {arm} | {seed} | {c.get('complete', 0)} / {c.get('pruned', 0)} / {c.get('infeasible', 0)} "
                         f"/ {c.get('failed', 0)} | {s['cpu'][-1] / MIN:.1f} | {s['wall_min']:.1f} | "
                         f"{s['history'][-1]:.4g} | {_minutes(to_level)} | {front} |")
        if "gated" in arms and "optuna" in arms:
            gated, optuna = reached["gated"][-1], reached["optuna"][-1]
            ratio = gated / optuna if np.isfinite(gated) and np.isfinite(optuna) else float("nan")
            verdicts.append(f"seed {seed}: {TARGET:.0%} of the best final HV ({level:.4g}) reached by gated Optuna "
                            f"{_after(gated)}, by ungated Optuna {_after(optuna)}; ratio {ratio:.2f} (bar: ≤ 0.5) → "
                            f"{'met' if ratio <= 0.5 else 'NOT met'}")
    lines += ["", *verdicts]
    if len(seeds) > 1:
        lines += ["", f"| arm | CPU min to {TARGET:.0%} of best HV, mean ± std over seeds (runs that reached it) |",
                  "|---|---|"]
        for arm in arms:
            done = [v / MIN for v in reached[arm] if np.isfinite(v)]
            spread = f"{statistics.fmean(done):.1f} ± {statistics.stdev(done):.1f}" if len(done) > 1 else \
                (f"{done[0]:.1f}" if done else "–")
            lines.append(f"| {arm} | {spread} ({len(done)}/{len(seeds)} reached) |")
    return "\n".join(lines) + "\n"


def _after(seconds: float) -> str:
    return f"after {seconds / MIN:.1f} CPU min" if np.isfinite(seconds) else "never"


def _minutes(seconds: float) -> str:
    return f"{seconds / MIN:.1f}" if np.isfinite(seconds) else "never"


def chart(frame: pl.DataFrame, path: Path) -> None:
    import altair as alt
    import vl_convert as vlc

    lines = alt.Chart(frame).mark_line(interpolate="step-after", point=True).encode(
        x=alt.X("cpu_min:Q", title="cumulative trial CPU time (min)"),
        y=alt.Y("hypervolume:Q", title="hypervolume, fraction of the ideal box"),
        color=alt.Color("arm:N"), strokeDash=alt.StrokeDash("seed:N"),
    ).properties(title="Sweep efficiency on benchmarks/sweeps/efficiency.yaml", width=520, height=320)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(vlc.vegalite_to_png(lines.to_json(), scale=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--trials", type=int, help="trials per arm (default: the sweep file's 24)")
    parser.add_argument("--out", type=Path, default=Path("results/sweep_efficiency"))
    parser.add_argument("--chart", type=Path, default=Path("benchmarks/figures/sweep_efficiency.png"))
    parser.add_argument("--report-only", action="store_true", help="analyse the arms already run; run nothing")
    args = parser.parse_args()
    out = args.out.resolve()
    folders = {}
    for seed in args.seeds:
        for arm in args.arms:
            folders[(arm, seed)] = (out / f"efficiency-{arm}-s{seed}" if args.report_only
                                    else run_arm(arm, seed, out, args.trials))
    frame, summary = curves(folders)
    reference = summary.pop("reference")
    text = (f"Command: `python benchmarks/sweep_efficiency.py {' '.join(sys.argv[1:])}`. Hypervolume reference "
            f"point: accuracy {-reference[0]:.4f}, energy {reference[1]:.4g} pJ.\n\n"
            + tables(summary, args.arms, args.seeds))
    (out / "efficiency.md").write_text(text)
    chart(frame, args.chart)
    print(text + f"chart: {args.chart}")


if __name__ == "__main__":
    main()
