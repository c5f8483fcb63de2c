"""``python -m explore.sweep SPEC [key.path=value ...]``: run a design-space sweep.

Ray Tune schedules trials, Optuna (Ray's `OptunaSearch`, multi-objective TPE) proposes design
points, `explore.trial` runs each one's stages, and the driver writes one Parquet row per trial to
``<output>/<name>/trials/``. Local Ray by default (bound to 127.0.0.1); ``--address`` or
``RAY_ADDRESS`` runs the same file on a cluster. Nothing assumes a shared filesystem: the teacher's
weights travel through Ray's object store and rows come back to the driver in the trial results.

Ctrl-C stops cleanly; ``--resume`` continues the same sweep from its rows and its Optuna study
(rows already written are kept, none is written twice, the budget stays exact: `explore.driver`).
"""

from __future__ import annotations

import argparse
import os
import sys

from explore.columns import BY_NAME
from explore.feasibility import feasibility
from explore.parameters import PARAMETERS
from explore.runtime import ensure_malloc_env
from explore.spec import SpecError, SweepSpec, load_spec
from onn.data import DatasetError


def planned(spec: SweepSpec) -> str:
    lines = [f"sweep {spec.name!r}: {spec.budget.trials} trials, {spec.budget.concurrency} at a time, "
             f"{spec.budget.cpus_per_trial:g} CPU each, seed {spec.seed}",
             f"task: {spec.task.dataset} (teacher {spec.task.teacher or 'default'})",
             "objectives: " + ", ".join(f"{o.direction} {o.metric} ({BY_NAME[o.metric].doc})" for o in spec.objectives),
             "space:"]
    for name, domain in spec.space.items():
        lines.append(f"  {name:22s} {domain.model_dump(exclude={'type'})}  # {PARAMETERS[name].doc}")
    if spec.fixed:
        lines.append("fixed: " + ", ".join(f"{k}={v}" for k, v in spec.fixed.items()))
    search = spec.search
    lines.append(f"search: {search.sampler}"
                 + (f" ({search.startup_trials} random start-up trials)" if search.sampler in ("tpe", "gp") else "")
                 + (f" (population {search.population})" if search.sampler == "nsga2" else "")
                 + (f"; screening: {search.screen} proposals estimated per design trained, the sampler told "
                    f"'{search.screened_tell}' of the others" if search.screen > 1 else ""))
    gate = spec.gate
    lines.append(f"gate: {'on' if gate.enabled else 'off'} (estimate >= {gate.min_accuracy}, dominated margin "
                 f"{gate.dominated_margin}, estimator on {gate.n_train} samples)")
    fab = spec.fabrication
    comp = fab.compensation
    lines.append(f"fabrication: {'on' if fab.enabled else 'off'} ({fab.draws} draws, {fab.level} level, compensation "
                 f"{comp.method}: <= {comp.steps} steps on {comp.fraction:.0%} of train, stopped on validation)")
    lines.append("selection: objectives, gate and sampler see validation scores only; test scores are recorded "
                 "beside them for the report")
    lines.append(f"output: {spec.folder}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m explore.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", help="sweep file, e.g. sweeps/poly.yaml")
    parser.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. budget.trials=4")
    parser.add_argument("--num-samples", type=int, help="trials to run (overrides budget.trials)")
    parser.add_argument("--concurrency", type=int, help="trials at a time (overrides budget.concurrency)")
    parser.add_argument("--output", help="results root (overrides output)")
    parser.add_argument("--dry-run", action="store_true", help="validate, print the plan and exit")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted sweep of the same file")
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                        help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray on 127.0.0.1)")
    parser.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    parser.add_argument("--num-gpus", type=int, default=None,
                        help="GPUs a local Ray offers (default: Ray's own detection); with budget.gpus_per_trial")
    args = parser.parse_intermixed_args(argv)  # overrides may come before or after the flags
    overrides = list(args.overrides)
    for flag, key in ((args.num_samples, "budget.trials"), (args.concurrency, "budget.concurrency"),
                      (args.output, "output")):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    try:
        spec = load_spec(args.spec, overrides)
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(planned(spec), flush=True)
    try:
        report = feasibility(spec)
    except DatasetError as exc:
        print(f"{args.spec}: task.dataset: {exc}", file=sys.stderr)
        return 2
    print(report.summary(), flush=True)
    if report.infeasible == report.samples:
        print(f"{args.spec}: every sampled design is infeasible; change the space (see the reasons above) "
              f"before spending a sweep on it", file=sys.stderr)
        return 2
    if args.dry_run:
        return 0
    ensure_malloc_env()
    from explore.driver import run_sweep  # Ray is imported only when a sweep really runs

    return run_sweep(spec, resume=args.resume, address=args.address, report=not args.no_report,
                     num_gpus=args.num_gpus)


if __name__ == "__main__":
    sys.exit(main())
