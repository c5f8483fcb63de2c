"""Stage timings of one full `sweeps/mono.yaml` trial, and before/after them across two checkouts.

    python benchmarks/trial_profile.py                        # one trial, per-stage seconds
    python benchmarks/trial_profile.py --epochs 0.25 --profile         # + cProfile of the trial
    git worktree add --detach /tmp/onn_before HEAD
    python benchmarks/trial_profile.py --before /tmp/onn_before --repeats 2

The trial is one fixed mid-size design point of `mono.yaml` (aperture 2.0 mm, sub-optic 0.45 mm,
mask_res 256, one hidden layer of 128, ntk_beta 1.0), built the way a sweep worker builds it
(`explore.context.build_context`: the dataset, the cached teacher; then `explore.trial.run_trial`),
with no gate front and trial index 0. ``--epochs`` overrides the sweep's training epochs (2).

With ``--before DIR`` (a `git worktree` of the older code) the same trial runs in a subprocess per
tree, PYTHONPATH and cwd set to that tree, alternating before / after ``--repeats`` times so that
drift in the machine's load hits both alike; prints the median seconds per stage and the ratio
after / before. Every subprocess runs with one torch thread and the malloc env.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import MALLOC_VARS, environment_line  # noqa: E402

HERE = Path(__file__).resolve()
STAGES = ("validity", "estimate", "gate", "train", "realise", "fabricate", "compensate", "total")
POINT = {"aperture_mm": 2.0, "suboptic_mm": 0.45, "mask_res": 256, "backend_depth": 1, "backend_width": 128,
         "train.ntk_beta": 1.0}


def run_one(epochs: float | None, profile: bool, top: int) -> dict[str, float]:
    """Run the trial in this process; returns {stage: seconds} (and prints a profile if asked)."""
    from explore.context import build_context
    from explore.rows import outcome_metrics
    from explore.spec import load_spec
    from explore.trial import run_trial

    overrides = [] if epochs is None else [f"training.epochs={epochs}"]
    spec = load_spec("sweeps/mono.yaml", overrides)
    context = build_context(spec)
    point = context.point({**spec.fixed, **POINT})
    profiler = cProfile.Profile()
    outcome = profiler.runcall(run_trial, point, context) if profile else run_trial(point, context)
    if profile:
        print(f"cProfile of the whole trial (top {top} by cumulative time):", file=sys.stderr)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(top)
    metrics = outcome_metrics(outcome)
    print(f"status {metrics['status']}, " + ", ".join(f"{k} {metrics.get(k)}" for k in (
        "accuracy_ideal_test", "accuracy_realised_test", "accuracy_fabricated_test", "accuracy_compensated_test")),
        file=sys.stderr)
    return {stage: metrics[f"t_{stage}_s"] for stage in STAGES if f"t_{stage}_s" in metrics}


def run_in(tree: Path, epochs: float | None, extra_env: dict[str, str] | None = None) -> dict[str, float]:
    """Run the trial in a subprocess on the code of ``tree``; returns {stage: seconds}."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1",
           **{var: os.environ.get(var) or "17179869184" for var in MALLOC_VARS}, **(extra_env or {})}
    command = [sys.executable, str(HERE), "--json"] + ([] if epochs is None else ["--epochs", str(epochs)])
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"trial in {tree} failed:\n{done.stderr[-4000:]}")
    print(f"  [{tree}] {done.stderr.strip().splitlines()[-1]}", flush=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(before: Path, after: Path, epochs: float | None, repeats: int, compiled: bool) -> None:
    variants = {"before": (before, None), "after": (after, None)}
    if compiled:
        variants["after, ONN_COMPILE=1"] = (after, {"ONN_COMPILE": "1"})
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for repeat in range(repeats):
        for name, (tree, env) in variants.items():
            start = time.perf_counter()
            samples[name].append(run_in(tree, epochs, env))
            print(f"  repeat {repeat + 1}/{repeats} {name}: {time.perf_counter() - start:.0f} s, "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
    median = {name: {stage: statistics.median(run[stage] for run in runs) for stage in runs[0]}
              for name, runs in samples.items()}
    others = [name for name in variants if name != "before"]
    print(f"\nmedian of {repeats} per variant; before = {before}, after = {after}")
    print("| stage | before s | " + " | ".join(f"{n} s | {n} / before" for n in others) + " |")
    print("|---|---:|" + "---:|---:|" * len(others))
    for stage in STAGES:
        if all(stage in median[n] for n in variants):
            b = median["before"][stage]
            cells = [f"{median[n][stage]:.2f} | " + (f"{median[n][stage] / b:.2f}" if b > 0 else "-") for n in others]
            print(f"| {stage} | {b:.2f} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=float, default=None, help="training epochs (default: mono.yaml's)")
    parser.add_argument("--before", type=Path, default=None, help="checkout of the older code to compare with")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="cProfile the trial")
    parser.add_argument("--top", type=int, default=30, help="profile entries to print")
    parser.add_argument("--json", action="store_true", help="print the stage times as one JSON line")
    parser.add_argument("--compiled", action="store_true", help="with --before: also the new tree with ONN_COMPILE=1")
    args = parser.parse_args()
    if args.before is not None:
        print(f"load average {os.getloadavg()[0]:.1f}; trials run with 1 torch thread, malloc env ON", flush=True)
        compare(args.before.resolve(), HERE.parents[1], args.epochs, args.repeats, args.compiled)
        return
    torch.set_num_threads(1)
    if not args.json:
        print(environment_line())
    seconds = run_one(args.epochs, args.profile, args.top)
    if args.json:
        print(json.dumps(seconds))
        return
    for stage, value in seconds.items():
        print(f"  {stage:>10}: {value:8.2f} s")


if __name__ == "__main__":
    main()
