"""What a sweep spends around its trials: Ray Tune's per-trial overhead, and the throughput of
1 against 2 concurrent trials on this machine.

    python benchmarks/sweep_overhead.py ray --trials 20            # a trivial trial, ~1 min
    python benchmarks/sweep_overhead.py throughput --trials 6      # the reference trial, ~15 min

``ray``: Tune runs a trainable that reports one number and returns, through the same local Ray set-up
and Tune options as `explore.driver` (one CPU per trial, a fresh actor per trial, no result loggers),
at concurrency 1 and 2; the wall time per trial is Ray's overhead (actor start, scheduling,
bookkeeping), the floor under any trial.

``throughput``: the reference space of `sweep_efficiency.py` (`benchmarks/sweeps/efficiency.yaml`)
with the random sampler and the gate off, so that both runs propose the same designs in the same
order, run as real sweeps at concurrency 1 and then 2: trials per hour, and the per-trial CPU and
wall time from the rows (two trials on two cores share memory bandwidth and caches, so a trial's
own time grows; the question is whether the throughput still does).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

SPEC = Path(__file__).parent / "sweeps" / "efficiency.yaml"


def ray_overhead(trials: int) -> None:
    from ray import tune

    from explore.driver import _init_ray

    def trivial(config):
        tune.report({"value": config["x"]})

    _init_ray(None)
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)  # no result files: by design
    for concurrency in (1, 2):
        with tempfile.TemporaryDirectory() as storage:
            tuner = tune.Tuner(
                tune.with_resources(trivial, {"cpu": 1}), param_space={"x": tune.uniform(0, 1)},
                tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=concurrency,
                                            reuse_actors=False),
                run_config=tune.RunConfig(name="trivial", storage_path=storage, verbose=0))
            start = time.perf_counter()
            tuner.fit()
            wall = time.perf_counter() - start
        print(f"trivial trial, concurrency {concurrency}: {trials} trials in {wall:.1f} s = "
              f"{wall / trials:.2f} s per trial", flush=True)


def throughput(trials: int, out: Path) -> None:
    results = {}
    for concurrency in (1, 2):
        name = f"throughput-c{concurrency}"
        command = [sys.executable, "-m", "explore.sweep", str(SPEC), "search.sampler=random", "gate.enabled=false",
                   f"name={name}", f"output={out}", f"budget.trials={trials}", f"budget.concurrency={concurrency}",
                   "--no-report"]
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        rows = pl.read_parquet(out / name / "trials")
        done = rows.filter(pl.col("status") == "complete")
        results[concurrency] = wall
        print(f"concurrency {concurrency}: {len(rows)} trials ({len(done)} complete) in {wall / 60:.1f} min = "
              f"{3600 * len(rows) / wall:.1f} trials/h; per complete trial: median CPU "
              f"{statistics.median(done['cpu_s'].to_list()):.0f} s, median wall {statistics.median(done['t_total_s'].to_list()):.0f} s",
              flush=True)
    print(f"throughput ratio, 2 concurrent / 1: {results[1] / results[2]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["ray", "throughput"])
    parser.add_argument("--trials", type=int, default=None, help="trials per run (ray: 20, throughput: 6)")
    parser.add_argument("--out", type=Path, default=Path("results/sweep_overhead"))
    args = parser.parse_args()
    if args.what == "ray":
        ray_overhead(args.trials or 20)
    else:
        out = args.out.resolve()
        if out.exists() and any(out.iterdir()):
            sys.exit(f"{out} holds an earlier run; remove it or pass --out")
        throughput(args.trials or 6, out)


if __name__ == "__main__":
    main()
