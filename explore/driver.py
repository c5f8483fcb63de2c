"""The Ray side of a sweep: Tune + Optuna scheduling, the driver's row writer, progress, resume.

The only module (with `explore.sweep`'s lazy import) that touches Ray. Trials run
`explore.trial.run_trial` inside Ray workers and report their row once; the driver's `RowWriter`
callback turns each report (or each final error) into exactly one Parquet row.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray import tune
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from explore.analysis import gate_savings
from explore.pareto import non_dominated
from explore.point import base_design, design_point
from explore.rows import STATUSES, build_row, row_schema
from explore.runtime import MALLOC_ENV
from explore.spec import SweepSpec, spec_to_yaml
from explore.store import TrialStore, read_trials
from explore.sweep import code_version, results_dir, tune_space
from explore.trial import FAULT_ENV, TrialContext, gate_front, injected_fault, run_trial

FRONT_ACTOR = "explore-front-{name}"
# Times the driver restores Tune from its saved state after Tune's own loop died on an unexpected error
# (seen here: Ray's memory monitor killed a trial worker while Tune was starting it, and Tune raised
# instead of failing that trial); trials that already ran keep their rows, none is written twice.
CONTROLLER_RESTARTS = 3
DRIVER_FAULT_MARK = ".driver-fault-injected"


class StagedOptunaSearch(OptunaSearch):
    """`OptunaSearch` that tells Optuna PRUNED for a trial that did not finish (pruned, infeasible
    or diverged) or has a NaN objective, instead of COMPLETE with partial values (a pruned design
    has an energy but no trained accuracy). TPE counts pruned trials among the bad examples, so
    the sampler learns to avoid those regions, while only finished trials' values are told."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if result and (result.get("status") != "complete" or any(_missing(result.get(m)) for m in self.metric)):
            result = None  # OptunaSearch tells PRUNED for no result without an error
        super().on_trial_complete(trial_id, result, error)


@ray.remote(num_cpus=0)
class FrontBoard:
    """The trained front's (estimated accuracy, energy) so far, for the gate (`explore.trial.gate_front`)."""

    def __init__(self):
        self.points: list[tuple[float, float]] = []

    def set(self, points: list[tuple[float, float]]) -> None:
        self.points = points

    def get(self) -> list[tuple[float, float]]:
        return self.points


class RowWriter(tune.Callback):
    """Writes one row per trial (on its report, or on its final error) and prints progress."""

    def __init__(self, spec: SweepSpec, code: str, every_s: float = 15.0):
        self.spec, self.code, self.every_s = spec, code, every_s
        self.folder = results_dir(spec) / "trials"
        self.schema = row_schema(spec)
        self._store: TrialStore | None = None
        self._last_print = 0.0
        self._start = time.time()

    @property
    def store(self) -> TrialStore:
        if self._store is None:  # opened lazily: the callback is pickled with the experiment state
            self._store = TrialStore(self.folder, self.schema, flush_rows=50, flush_s=60)
        return self._store

    def __getstate__(self):
        return {**self.__dict__, "_store": None}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "status" not in result:
            return
        metrics = {k: result[k] for k in self.schema if k in result and not k.startswith("param.")}
        metrics.update(trial_id=trial.trial_id, trial_index=_index(trial), attempts=trial.num_failures + 1,
                       code_version=self.code, seed=self.spec.seed)
        self.store.append(build_row(self.spec, _params(self.spec, trial.config), metrics))
        if result["status"] == "complete":
            self._publish_front()
        mark = self.folder.parent / DRIVER_FAULT_MARK
        if injected_fault(_index(trial)) == "driver" and not mark.exists():
            mark.touch()
            raise RuntimeError(f"{FAULT_ENV}: injected failure of Tune's controller on trial {_index(trial)}")

    def on_trial_error(self, iteration, trials, trial, **info):
        reason = _error_text(trial)
        self.store.append(build_row(self.spec, _params(self.spec, trial.config), {
            "trial_id": trial.trial_id, "trial_index": _index(trial), "status": "failed", "reason": reason,
            "attempts": trial.num_failures, "code_version": self.code, "seed": self.spec.seed}))
        print(f"[sweep] trial {_index(trial)} failed after {trial.num_failures} attempt(s): {reason}", flush=True)

    def on_step_end(self, iteration, trials, **info):
        now = time.time()
        if now - self._last_print < self.every_s:
            return
        self._last_print = now
        print(progress_line(self.spec, self.store.read(), sum(t.status == "RUNNING" for t in trials),
                            now - self._start), flush=True)

    def on_experiment_end(self, trials, **info):
        self.store.flush()

    def _publish_front(self):
        front = gate_front(self.store.read().filter(status="complete").to_dicts())
        if front:
            try:
                ray.get_actor(FRONT_ACTOR.format(name=self.spec.name)).set.remote(front)
            except ValueError:
                pass  # no board (e.g. after a restore before it was recreated): the gate checks the bar only


def optuna_sampler(spec: SweepSpec):
    """The sweep file's ``search.sampler``, seeded with the sweep's seed."""
    import optuna

    if spec.search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    return optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=spec.search.startup_trials)


def progress_line(spec: SweepSpec, frame, running: int, elapsed_s: float) -> str:
    counts = dict.fromkeys(STATUSES, 0)
    for status in frame["status"].to_list():
        counts[status] = counts.get(status, 0) + 1
    done = sum(counts.values())
    eta = f"eta {elapsed_s / done * (spec.budget.trials - done) / 60:.1f} min" if done else "eta after the first trial"
    best = ""
    complete = frame.filter(status="complete")
    if len(complete) and all(m in complete.columns for m in spec.metrics):
        values = complete.select(spec.metrics).to_numpy()
        front = values[non_dominated(values, spec.directions)]
        best = " front: " + "; ".join(", ".join(f"{v:.3g}" for v in p) for p in front[:4])
    return (f"[sweep {spec.name}] {done}/{spec.budget.trials} done ({counts['complete']} complete, "
            f"{counts['pruned']} pruned, {counts['infeasible']} infeasible, {counts['failed']} failed), "
            f"{running} running, {elapsed_s / 60:.1f} min elapsed, {eta}.{best}")


def run_sweep(spec: SweepSpec, *, resume: bool, address: str | None, report: bool = True) -> int:
    folder = results_dir(spec)
    tune_dir = folder / "tune"
    saved = folder / "sweep.yaml"
    if resume:
        if not tune.Tuner.can_restore(str(tune_dir)):
            print(f"nothing to resume in {folder}; run without --resume to start", file=sys.stderr)
            return 2
        if saved.exists() and saved.read_text() != spec_to_yaml(spec):
            print(f"{spec.name}: the sweep file differs from the one this sweep started with ({saved}); "
                  f"resume with the same file (and overrides), or give the new sweep another name", file=sys.stderr)
            return 2
    elif (folder / "trials").exists() and any((folder / "trials").iterdir()):
        print(f"{folder} already holds a sweep; use --resume to continue it, or another name/output",
              file=sys.stderr)
        return 2
    folder.mkdir(parents=True, exist_ok=True)
    saved.write_text(spec_to_yaml(spec))

    _init_ray(address)
    from onn.teachers import get_teacher

    teacher, info = get_teacher(spec.task.dataset, spec.task.teacher, seed=0, root=spec.task.root)
    print(f"teacher {info.name} on {info.dataset}: {info.test_metric:.4f} ({'cache' if info.from_cache else 'trained'})",
          flush=True)
    # The board lives on the driver's node: on a worker node it would die with that node, and
    # every later trial's gate would fail to read it.
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    board = FrontBoard.options(name=FRONT_ACTOR.format(name=spec.name), get_if_exists=True,
                               scheduling_strategy=here).remote()
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, spec=spec, teacher_state=teacher.state_dict(), teacher_name=info.name),
        {"cpu": spec.budget.cpus_per_trial})
    if resume:
        tuner = tune.Tuner.restore(str(tune_dir), trainable, resume_unfinished=True, resume_errored=False,
                                   restart_errored=False)
    else:
        searcher = StagedOptunaSearch(metric=spec.metrics, mode=spec.directions, sampler=optuna_sampler(spec))
        tuner = tune.Tuner(
            trainable, param_space=tune_space(spec),
            tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, spec.budget.concurrency),
                                        num_samples=spec.budget.trials, time_budget_s=spec.budget.time_limit_s,
                                        reuse_actors=False),
            run_config=tune.RunConfig(name="tune", storage_path=str(folder), verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=spec.budget.max_retries),
                                      callbacks=[RowWriter(spec, code_version())]))
    # Tune's result grid reads per-trial result files, which this driver turns off (the rows are in
    # the Parquet store); without this it warns "Could not fetch metrics" for every trial at the end.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    start = time.time()
    try:
        for restart in range(CONTROLLER_RESTARTS + 1):
            try:
                tuner.fit()
                break
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                if restart == CONTROLLER_RESTARTS or not tune.Tuner.can_restore(str(tune_dir)):
                    raise
                lines = [line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
                print(f"[sweep {spec.name}] Tune stopped on an unexpected error ({lines[-1][:200]}); "
                      f"restoring its saved state and going on ({restart + 1} of {CONTROLLER_RESTARTS})",
                      file=sys.stderr, flush=True)
                tuner = tune.Tuner.restore(str(tune_dir), trainable, resume_unfinished=True, resume_errored=False,
                                           restart_errored=False)
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with: python -m explore.sweep {spec.name} ... --resume", file=sys.stderr)
        return 130
    finally:
        del board
    frame = read_trials(folder / "trials", row_schema(spec))
    print(progress_line(spec, frame, 0, time.time() - start))
    savings = gate_savings(frame)
    if savings is not None:
        print(savings.sentence())
    print(f"rows: {folder / 'trials'} ({len(frame)} trials)")
    out_of_time = spec.budget.time_limit_s is not None and time.time() - start >= spec.budget.time_limit_s
    if len(frame) < spec.budget.trials and not out_of_time:  # Tune returns normally on Ctrl-C
        print(f"stopped with {len(frame)}/{spec.budget.trials} trials; continue with the same command and --resume",
              file=sys.stderr)
        return 130
    if report:
        from explore.report import write_report  # here: Altair is slow to import

        print(f"report: {write_report(folder)}")
    return 0


def _init_ray(address: str | None) -> None:
    env = {**MALLOC_ENV, "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
    if os.environ.get(FAULT_ENV):
        env[FAULT_ENV] = os.environ[FAULT_ENV]
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=True)
    else:
        # Keep a local Ray on loopback (ENVIRONMENT.md): it otherwise binds the external interface.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        # address="local": always a new local instance; a bare ray.init() would attach to any cluster
        # `ray start` left recorded on this machine (even a dead one, and then hang).
        ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
                 runtime_env={"env_vars": env}, log_to_driver=True)


def _trainable(config: dict, spec: SweepSpec, teacher_state: dict, teacher_name: str) -> None:
    """One trial inside a Ray worker: build the context, run the stages, report the row once."""
    import torch

    from onn.data import load_dataset
    from onn.energy import EnergyConstants
    from onn.teachers import build_teacher

    torch.set_num_threads(max(1, int(spec.budget.cpus_per_trial)))
    started, cpu_started = time.time(), time.process_time()
    data = load_dataset(spec.task.dataset, spec.task.root)  # per trial: each trial is a fresh actor (0.3 s for MNIST)
    teacher = build_teacher(teacher_name, data)
    teacher.load_state_dict(teacher_state)
    teacher.eval()
    try:
        front = np.array(ray.get(ray.get_actor(FRONT_ACTOR.format(name=spec.name)).get.remote()), dtype=float)
    except (ValueError, ray.exceptions.RayActorError):
        front = None  # no board (or it was lost with a node): the gate checks the accuracy bar only
    context = TrialContext(spec=spec, data=data, teacher=teacher, front=front,
                           energy=EnergyConstants.from_overrides(spec.energy.overrides, base=spec.energy.constants))
    params = _params(spec, config)
    point = design_point(params, base=base_design(data.channels, data.task), training=spec.training, seed=spec.seed)
    index = _worker_trial_index()
    metrics = run_trial(point, context, trial_index=index)
    metrics.update(config_hash=point.config_hash, host=socket.gethostname(), node_ip=ray.util.get_node_ip_address(),
                   pid=os.getpid(), started_unix_s=started, finished_unix_s=time.time(),
                   cpu_s=time.process_time() - cpu_started)
    for metric in spec.metrics:  # every objective key present (Tune checks); a pruned design keeps its
        if metrics.get(metric) is None:  # energy, which the report plots; Optuna sees only complete ones
            metrics[metric] = float("nan")
    tune.report(metrics)


def _params(spec: SweepSpec, config: dict) -> dict[str, Any]:
    return {**spec.fixed, **{k: v for k, v in config.items() if k in spec.space}}


def _index(trial) -> int:
    """0-based trial index: Tune's experiment tag starts with a 1-based counter ("3_aperture_mm=...")."""
    return _tag_index(trial.experiment_tag)


def _tag_index(tag: str) -> int:
    head = tag.split("_", 1)[0]
    return int(head) - 1 if head.isdigit() else -1


def _worker_trial_index() -> int:
    """The same index inside the worker: the trial folder is ``<trainable>_<trial id>_<tag>_<date>``."""
    context = tune.get_context()
    name = Path(context.get_trial_dir()).name
    return _tag_index(name.split(f"{context.get_trial_id()}_", 1)[-1])


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _error_text(trial) -> str:
    try:
        lines = [line for line in Path(trial.error_file).read_text().splitlines() if line.strip()]
        return lines[-1][:500] if lines else "unknown error"
    except (OSError, TypeError):
        return "worker died or the trial raised (no error file)"
