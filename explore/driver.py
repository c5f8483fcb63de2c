"""The Ray side of a sweep: Tune + Optuna scheduling, the driver's row writer, progress, resume.

The only module that touches Ray (with `explore.faults`' test callback). Trials run
`explore.trial.run_trial` inside Ray workers and report their row once; the driver's `RowWriter`
callback turns each report (or each final error) into exactly one Parquet row.

State that survives the driver: the Parquet rows (`explore.store`) and the Optuna study, kept in a
journal file beside them (``study.journal``: `optuna.load_study` and optuna-dashboard read it).
Resuming (``--resume``, or after Tune's own loop died) reconciles the two: a trial the study saw
start but that has no row is proposed again with its own parameters and index, one that has a row
is told its result; then Tune runs exactly the trials still missing from the budget.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import polars as pl
import ray
import yaml
from ray import tune
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from explore import screening
from explore.analysis import gate_savings
from explore.columns import SCHEMA, STATUSES
from explore.context import build_context
from explore.faults import FAULT_ENV, Faults, fault_injector
from explore.pareto import FlatStop, non_dominated
from explore.point import config_hash
from explore.rows import REUSABLE_STATUSES, build_row, outcome_metrics, reused_metrics, row_schema
from explore.runtime import MALLOC_ENV, code_version
from explore.spec import RESUMABLE_CHANGES, SweepSpec, parse_spec, resume_changes, spec_to_yaml
from explore.store import StoreError, TrialStore, read_trials
from explore.trial import examine, gate_front, gate_reason, gate_shortfall, run_trial
from onn.energy import format_energy

FRONT_ACTOR = "explore-front-{name}"
ARTEFACT_ACTOR = "explore-artefacts-{name}"
STUDY_FILE = "study.journal"
# Times the driver starts Tune again after Tune's own loop died on an unexpected error (seen here:
# Ray's memory monitor killed a trial worker while Tune was starting it, and Tune raised instead of
# failing that trial); rows already written stay, none is written twice, the budget stays exact.
CONTROLLER_RESTARTS = 3
DRIVER_FAULT_MARK = ".driver-fault-injected"


# --- the Optuna side ---------------------------------------------------------------------------

def study_storage(spec: SweepSpec) -> optuna.storages.JournalStorage:
    """The journal file ``<folder>/study.journal`` that holds the sweep's Optuna study."""
    spec.folder.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(spec.folder / STUDY_FILE)))


def open_study(spec: SweepSpec, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """The sweep's study (created on first use), with the objectives' names set, so
    `optuna.load_study` and optuna-dashboard show them."""
    study = optuna.create_study(storage=storage, study_name=spec.name, load_if_exists=True,
                                directions=["maximize" if d == "max" else "minimize" for d in spec.directions])
    if study.metric_names is None:
        study.set_metric_names(spec.metrics)
    return study


def optuna_sampler(spec: SweepSpec, resumed_trials: int = 0):
    """The sweep file's ``search.sampler``. Seeded with the sweep's seed, mixed with the number of
    trials already in the study on a resume (a sampler seeded as at the start would propose the
    start's random designs again). TPE, GP and NSGA-II read each told trial's constraint
    (`_set_outcome_attrs`)."""
    seed = spec.seed if not resumed_trials else int(np.random.SeedSequence([spec.seed, resumed_trials])
                                                      .generate_state(1)[0])
    search = spec.search
    match search.sampler:
        case "random":
            return optuna.samplers.RandomSampler(seed=seed)
        case "grid":  # its order is the sweep's seed's on every resume: it never repeats a point
            return DesignGrid(grid_space(spec), seed=spec.seed)
        case "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=search.startup_trials)
        case "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=search.population)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=search.startup_trials)


class DesignGrid(optuna.samplers.BaseSampler):
    """Every point of a discrete grid once, in an order shuffled by ``seed``.

    A point is taken once any trial of the study has its parameters (finished, running, or
    interrupted and waiting to be rerun). Optuna's `GridSampler` instead numbers its points in a
    seeded shuffle and records the number: a resume that seeds it differently, or a study rebuilt
    from rows, maps those numbers to other points, and the grid repeats some designs and never
    reaches others (a table sweep did: 6 of its first 35 trials were repeats). Once every point is
    taken, a taken one is proposed again (the design cache then reuses its row)."""

    def __init__(self, grid: dict[str, list], seed: int = 0):
        self._names = list(grid)
        self._points = [dict(zip(self._names, values)) for values in itertools.product(*grid.values())]
        np.random.default_rng(seed).shuffle(self._points)
        self._rng = np.random.default_rng(seed + 1)

    def _key(self, params: dict) -> tuple:
        return tuple(params.get(name) for name in self._names)

    def _point(self, trial: optuna.trial.FrozenTrial) -> dict | None:
        """The point a trial holds: its parameters once it has them all (or all fixed by
        `Study.enqueue_trial`), else the one it was given."""
        for params in (trial.params, trial.system_attrs.get("fixed_params", {})):
            if all(name in params for name in self._names):
                return {name: params[name] for name in self._names}
        return trial.system_attrs.get("design_grid")

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        # Optuna calls this again whenever a Trial object is built for the trial, as when the driver
        # reruns an interrupted proposal: that keeps the point it already holds
        if (own := self._point(trial)) is not None:
            study._storage.set_trial_system_attr(trial._trial_id, "design_grid", own)
            return
        taken = {self._key(point) for t in study.get_trials(deepcopy=False) if (point := self._point(t)) is not None}
        free = [p for p in self._points if self._key(p) not in taken]
        point = free[0] if free else self._points[int(self._rng.integers(len(self._points)))]
        study._storage.set_trial_system_attr(trial._trial_id, "design_grid", point)

    def infer_relative_search_space(self, study, trial) -> dict:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict:
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        point = trial.system_attrs["design_grid"]
        if param_name not in point:
            raise ValueError(f"parameter {param_name!r} is not on the grid ({', '.join(self._names)})")
        return point[param_name]


def grid_space(spec: SweepSpec) -> dict[str, list]:
    """The grid sampler's points: every value of a choice or an int range, ``search.grid_points``
    evenly spaced values of a float range."""
    return {name: domain.grid(spec.search.grid_points) for name, domain in spec.space.items()}


def tell_row(study: optuna.Study, trial: optuna.Trial, row: dict | None, spec: SweepSpec) -> None:
    """Tell the study the outcome ``row`` records (None: the trial errored and left no row of its own).

    COMPLETE with the objectives for a complete row; PRUNED for a pruned or infeasible one (its
    ``violation`` is the constraint TPE, GP and NSGA-II rank it by) or one missing an objective;
    FAIL, which samplers ignore, for a failed trial; a screened proposal as ``search.screened_tell``
    says (its predicted accuracy as if trained, PRUNED, or FAIL)."""
    _set_outcome_attrs(trial, row or {"status": "failed", "stage": "error"})
    state = optuna.trial.TrialState
    status = row["status"] if row else "failed"
    values = [row.get(m) for m in spec.metrics] if row else []
    if status == "screened" and spec.search.screened_tell == "estimate":
        values = [row.get("predicted_accuracy") if m.startswith("accuracy_") else row.get(m) for m in spec.metrics]
    elif status == "screened":
        study.tell(trial, state=state.FAIL if spec.search.screened_tell == "fail" else state.PRUNED)
        return
    if status in ("complete", "screened") and not any(_missing(v) for v in values):
        study.tell(trial, values)
    else:
        study.tell(trial, state=state.FAIL if status == "failed" else state.PRUNED)


def _set_outcome_attrs(trial: optuna.Trial, row: dict) -> None:
    """A told trial's status, reason and stage (user attributes), and its constraint ``violation``
    (> 0: violated): how far an infeasible or gated design is from feasible, recorded by the trial
    (`explore.trial.TrialOutcome.violation`), so TPE, GP and NSGA-II rank bad regions by how bad
    they are instead of lumping them together. Every told trial has one (NSGA-II requires it)."""
    for key in ("status", "reason", "stage"):
        if row.get(key) is not None:
            trial.set_user_attr(key, row[key])
    violation = row.get("violation")
    trial.set_constraint("violation", 0.0 if _missing(violation) else float(violation))


class SweepSearch(OptunaSearch):
    """`OptunaSearch` over the sweep's space on its persistent study. Each Tune trial is a slot of
    one proposal, or of ``search.screen`` proposals of which the trial trains one
    (`explore.screening`); every proposal is an Optuna trial with its own trial index and row. It:

    - gives every proposal a trial index (in its config and as the Optuna trial's user attribute
      ``trial_index``), so rows, the study and Tune agree on which trial is which;
    - hands out ``requeue`` first, in their slots: proposals the study saw start but that left no
      row, with their own parameters and index (a resume runs them again instead of proposing new ones);
    - proposes exactly ``rows_left`` more (the last slot may hold fewer than ``search.screen``);
    - tells each proposal its row's outcome (`tell_row`);
    - keeps a design cache: a proposal whose design point (`explore.point.config_hash`) already
      finished in this sweep carries that result (``reuse`` in its config) and is not trained
      again; Optuna is told the same values. A design screened out before carries its estimate
      (``screened_before``: not estimated again unless chosen); a repeat within one slot is that
      proposal's twin (``twin_of``);
    - stops proposing (``FINISHED``) once ``flat`` says the hypervolume has stopped rising.
    """

    def __init__(self, spec: SweepSpec, storage: optuna.storages.BaseStorage, *, first_index: int,
                 requeue: list[tuple[int, int, int]], rows_left: int, sampler, known: dict[str, dict] | None = None,
                 screened: dict[str, dict] | None = None, flat: FlatStop | None = None):
        space = {name: domain.distribution() for name, domain in spec.space.items()}
        super().__init__(space=space, metric=spec.metrics, mode=spec.directions, sampler=sampler,
                         study_name=spec.name, storage=storage)
        self._spec = spec
        self._next_index = first_index
        self._requeue = requeue_slots(requeue)
        self._rows_left = rows_left - len(requeue)  # new proposals still to make
        self._slots: dict[str, list[tuple[optuna.Trial, int]]] = {}
        self._known = dict(known or {})  # config hash -> what a twin reuses (`explore.rows.reused_metrics`)
        self._screened = dict(screened or {})  # config hash -> a screened-out row (its estimate)
        self._flat = flat

    def suggest(self, trial_id: str) -> dict | None:
        if trial_id not in self._slots:
            if self._requeue:
                slot = [(optuna.Trial(self._ot_study, storage_id), index) for storage_id, index in self._requeue.pop(0)]
            elif self._rows_left <= 0 or (self._flat is not None and self._flat.flat):
                return Searcher.FINISHED
            else:
                slot, lead = [], self._next_index
                for _ in range(min(self._spec.search.screen, self._rows_left)):
                    trial = self._ot_study.ask(fixed_distributions=self._space)
                    trial.set_user_attr("trial_index", self._next_index)
                    trial.set_user_attr("slot", lead)
                    slot.append((trial, self._next_index))
                    self._next_index += 1
                self._rows_left -= len(slot)
            self._slots[trial_id] = slot
            self._ot_trials[trial_id] = slot[0][0]  # the base class's bookkeeping
        candidates, first_of = [], {}
        for trial, index in self._slots[trial_id]:
            config = {**trial.params, "trial_index": index}
            key = config_hash(_params(self._spec, config))
            if key in self._known:
                config["reuse"] = self._known[key]
            elif key in first_of:
                config["twin_of"] = first_of[key]
            elif key in self._screened:
                config["screened_before"] = self._screened[key]
            first_of.setdefault(key, index)
            candidates.append(config)
        return candidates[0] if len(candidates) == 1 else {**candidates[0], "candidates": candidates}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id not in self._slots or trial_id in self._completed_trials:
            return
        rows = {r["trial_index"]: r for r in slot_rows(result)}
        for trial, index in self._slots[trial_id]:
            row = rows.get(index)
            tell_row(self._ot_study, trial, row, self._spec)
            if row and row.get("status") in REUSABLE_STATUSES and row.get("reuses_trial") is None:
                self._known.setdefault(row["config_hash"], reused_metrics(row))
            elif row and row.get("status") == "screened" and row.get("reuses_trial") is None:
                self._screened.setdefault(row["config_hash"], reused_metrics(row))
            if self._flat is not None and not (row and row.get("status") == "screened"):
                self._flat.add(flat_values(self._spec, row))  # a screened proposal spent no training
        self._completed_trials.add(trial_id)


def slot_rows(result: dict | None) -> list[dict]:
    """The rows a slot's report carries: its lead proposal's and the others' (``slot_rows``)."""
    if not result or "status" not in result:
        return []
    return [{k: v for k, v in result.items() if k != "slot_rows"}, *result.get("slot_rows", ())]


def requeue_slots(requeue: list[tuple[int, int, int]]) -> list[list[tuple[int, int]]]:
    """Interrupted proposals grouped back into their slots: [(storage trial id, trial index), ...] each."""
    slots: dict[int, list[tuple[int, int]]] = {}
    for storage_id, index, slot in sorted(requeue, key=lambda item: item[1]):
        slots.setdefault(slot, []).append((storage_id, index))
    return list(slots.values())


def flat_values(spec: SweepSpec, row: dict | None) -> list[float]:
    """A finished proposal's objectives for `FlatStop` (NaN unless trained to the end)."""
    complete = bool(row) and row["status"] == "complete"
    return [row[m] if complete and not _missing(row.get(m)) else math.nan for m in spec.metrics]


def design_cache(rows: pl.DataFrame, statuses: tuple[str, ...] = REUSABLE_STATUSES) -> dict[str, dict]:
    """config hash -> what a twin reuses, from the rows so far of these ``statuses`` (each design
    where it ran; ``("screened",)``: the designs screened out, for their estimates)."""
    finished = rows.filter(pl.col("status").is_in(statuses) & pl.col("reuses_trial").is_null()
                           & pl.col("config_hash").is_not_null())
    return {row["config_hash"]: reused_metrics(row) for row in finished.iter_rows(named=True)}


def flat_stop(spec: SweepSpec, rows: pl.DataFrame) -> FlatStop | None:
    """``budget.stop_when_flat``'s stopper, fed the rows so far in finishing order (None: off)."""
    settings = spec.budget.stop_when_flat
    if settings is None:
        return None
    stop = FlatStop(spec.directions, **settings.model_dump())
    for row in rows.sort(["finished_unix_s", "trial_index"], nulls_last=True).iter_rows(named=True):
        if row["status"] != "screened":  # a screened proposal spent no training
            stop.add(flat_values(spec, row))
    return stop


def saved_sweep(path: Path) -> dict:
    """A results folder's sweep.yaml as a dict. Files written before ``realisation.imaging``
    existed imaged with the kernel window: say so, so a resume compares like with like."""
    raw = yaml.safe_load(path.read_text())
    if isinstance(raw, dict) and isinstance(raw.get("realisation"), dict):
        raw["realisation"].setdefault("imaging", "window")
    return raw


def reconcile(study: optuna.Study, rows: pl.DataFrame,
              spec: SweepSpec) -> tuple[int, list[tuple[int, int, int]]]:
    """Bring the study in line with the rows after an interruption: a RUNNING trial with a row is
    told the row's outcome; one without is returned for a rerun. Returns (the next new trial index,
    [(storage trial id, trial index, slot)] to rerun; the slot is its first proposal's index)."""
    by_index = {r["trial_index"]: r for r in rows.to_dicts() if r.get("trial_index") is not None}
    requeue = []
    indices = set(by_index)
    for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        index = frozen.user_attrs.get("trial_index")
        if index is None:
            continue
        indices.add(index)
        if index in by_index:  # the row was written, the tell was lost
            tell_row(study, optuna.Trial(study, frozen._trial_id), by_index[index], spec)
        else:
            requeue.append((frozen._trial_id, index, frozen.user_attrs.get("slot", index)))
    indices |= {t.user_attrs.get("trial_index", -1) for t in study.get_trials(deepcopy=False)}
    return max(indices, default=-1) + 1, sorted(requeue, key=lambda item: item[1])


# --- the Tune side -----------------------------------------------------------------------------

@ray.remote(num_cpus=0)
class FrontBoard:
    """What trials need to know of the designs trained so far: the trained front's (estimate,
    energy), for the gate (`explore.trial.gate_front`), and every trained design's (estimate,
    accuracy, cost), for screening (`explore.screening.choose`)."""

    def __init__(self):
        self.board: dict[str, list] = {"front": [], "trained": []}

    def set(self, board: dict[str, list]) -> None:
        self.board = board

    def get(self) -> dict[str, list]:
        return self.board


def publish_front(spec: SweepSpec, rows: pl.DataFrame) -> None:
    """Send the trained designs' view to the board (no board: the gate checks the bar only and
    screening sees nothing trained)."""
    accuracy = next((m for m in spec.metrics if m.startswith("accuracy")), None)
    if accuracy is None or accuracy not in rows.columns:
        return
    trained = rows.filter((pl.col("status") == "complete") & pl.col("reuses_trial").is_null())
    board = {"front": gate_front(trained.to_dicts(), accuracy), "trained": []}
    cost = next((m for m in spec.metrics if m != accuracy), None)
    if cost is not None:
        points = trained.select(pl.col("est_accuracy", accuracy, cost).cast(pl.Float64))
        board["trained"] = points.filter(pl.all_horizontal(pl.all().is_finite())).rows()
    try:
        ray.get_actor(FRONT_ACTOR.format(name=spec.name)).set.remote(board)
    except ValueError:
        pass


@ray.remote(num_cpus=0)
class ArtefactSink:
    """Writes trials' hand-off files on the driver's node (no shared filesystem: they travel here
    through Ray, not through Tune's results, which Tune keeps in its experiment state)."""

    def __init__(self, folder: str):
        self.folder = Path(folder)

    def write(self, trial_index: int, files: dict[str, bytes]) -> str:
        return str(write_artefacts(self.folder, trial_index, files).relative_to(self.folder))


def _send_artefacts(spec: SweepSpec, trial_index: int, files: dict[str, bytes]) -> str:
    """Hand a trial's files to the driver's sink; the folder they landed in (relative to the
    sweep's), or "" if the sink is gone (a lost driver node: the row still says the trial finished)."""
    try:
        return ray.get(ray.get_actor(ARTEFACT_ACTOR.format(name=spec.name)).write.remote(trial_index, files))
    except (ValueError, ray.exceptions.RayActorError):
        return ""


class RowWriter(tune.Callback):
    """Writes one row per trial (on its report, or on its final error) and prints progress."""

    def __init__(self, spec: SweepSpec, code: str, every_s: float = 15.0):
        self.spec, self.code, self.every_s = spec, code, every_s
        self.folder = spec.folder / "trials"
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

    failure: StoreError | None = None  # set when a row could not be written: the sweep stops

    def append(self, row: dict) -> None:
        try:
            self.store.append(row)
        except StoreError as exc:
            self.failure = exc
            raise

    def on_trial_result(self, iteration, trials, trial, result, **info):
        configs = {c["trial_index"]: c for c in _candidates(trial.config)}
        rows = slot_rows(result)
        for row in rows:
            metrics = {k: row[k] for k in SCHEMA if k in row}
            metrics.update(trial_id=_row_id(trial, row["trial_index"]), attempts=trial.num_failures + 1,
                           code_version=self.code, seed=self.spec.seed)
            self.append(build_row(self.spec, _params(self.spec, configs[row["trial_index"]]), metrics))
        if any(row["status"] == "complete" for row in rows):
            publish_front(self.spec, self.store.read())

    def on_trial_error(self, iteration, trials, trial, **info):
        reason = _error_text(trial)
        for config in _candidates(trial.config):
            self.append(build_row(self.spec, _params(self.spec, config), {
                "trial_id": _row_id(trial, config["trial_index"]), "trial_index": config["trial_index"],
                "status": "failed", "reason": reason, "attempts": trial.num_failures, "code_version": self.code,
                "seed": self.spec.seed}))
            print(f"[sweep] trial {config['trial_index']} failed after {trial.num_failures} attempt(s): {reason}",
                  flush=True)

    def on_step_end(self, iteration, trials, **info):
        now = time.time()
        if now - self._last_print < self.every_s:
            return
        self._last_print = now
        print(progress_line(self.spec, self.store.read(), sum(t.status == "RUNNING" for t in trials),
                            now - self._start), flush=True)

    def on_experiment_end(self, trials, **info):
        if self.failure is None:
            self.store.flush()


def write_artefacts(folder: Path, trial_index: int, files: dict[str, bytes]) -> Path:
    """A trial's hand-off files, written to ``<folder>/artefacts/trial-<index>/`` atomically (a
    temporary folder renamed into place); returns the folder."""
    target = folder / "artefacts" / f"trial-{trial_index:05d}"
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    staging.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (staging / name).write_bytes(content)
    if target.exists():  # a retried trial: its latest files win
        shutil.rmtree(target)
    os.replace(staging, target)
    return target


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
        shown = lambda metric, v: format_energy(v) if metric.endswith("_pj") else f"{v:.3g}"  # noqa: E731
        best = (f" front ({', '.join(spec.metrics)}): "
                + "; ".join(", ".join(shown(m, v) for m, v in zip(spec.metrics, p)) for p in front[:4]))
    return (f"[sweep {spec.name}] {done}/{spec.budget.trials} done ({counts['complete']} complete, "
            f"{counts['pruned']} pruned, {counts['infeasible']} infeasible, {counts['failed']} failed"
            + (f", {counts['screened']} screened out" if counts["screened"] else "")
            + f"), {running} running, {elapsed_s / 60:.1f} min elapsed, {eta}.{best}")


def run_sweep(spec: SweepSpec, *, resume: bool, address: str | None, report: bool = True,
              num_gpus: int | None = None) -> int:
    """Start (or ``resume``) the sweep and run it to its budget; the exit status (0, 1: the
    results folder failed, 2: refused before starting, 130: interrupted)."""
    refused = _prepare_folder(spec, resume)
    if refused is not None:
        print(refused, file=sys.stderr)
        return 2
    folder = spec.folder
    _init_ray(address, num_gpus, compile_sensor=spec.budget.compile)
    from onn.teachers import get_teacher

    teacher, info = get_teacher(spec.task.dataset, spec.task.teacher, seed=0, root=spec.task.root)
    print(f"teacher {info.name} on {info.dataset}: {info.test_metric:.4f} ({'cache' if info.from_cache else 'trained'})",
          flush=True)
    # The board lives on the driver's node: on a worker node it would die with that node, and
    # every later trial's gate would fail to read it.
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    board = FrontBoard.options(name=FRONT_ACTOR.format(name=spec.name), get_if_exists=True,
                               scheduling_strategy=here).remote()
    sink = ArtefactSink.options(name=ARTEFACT_ACTOR.format(name=spec.name), get_if_exists=True,
                                scheduling_strategy=here).remote(str(folder))
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, spec=spec, teacher_state=teacher.state_dict(), teacher_name=info.name),
        trial_resources(spec))
    # Tune's result grid reads per-trial result files, which this driver turns off (the rows are in
    # the Parquet store); without this it warns "Could not fetch metrics" for every trial at the end.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    start = time.time()
    try:
        _run_tune_restarting(spec, trainable, start)
    except KeyboardInterrupt:
        print("\ninterrupted; continue with the same command and --resume", file=sys.stderr)
        return 130
    except StoreError as exc:
        rows = len(read_trials(folder / "trials", row_schema(spec)))
        print(f"[sweep {spec.name}] stopped: {exc}. The {rows} rows written before stay readable "
              f"(explore.store.read_trials('{folder / 'trials'}')); fix the folder (permissions, free space) and "
              f"continue with the same command and --resume", file=sys.stderr)
        return 1
    finally:
        del board, sink
    return _finish(spec, start, report=report)


def _prepare_folder(spec: SweepSpec, resume: bool) -> str | None:
    """Check the results folder fits the request and save the resolved file into it; None, or
    why the sweep cannot start."""
    folder = spec.folder
    saved = folder / "sweep.yaml"
    has_rows = (folder / "trials").exists() and any((folder / "trials").iterdir())
    if resume:
        if not saved.exists():
            return f"nothing to resume in {folder}; run without --resume to start"
        allowed, refused = resume_changes(parse_spec(saved_sweep(saved), str(saved)), spec)
        if refused:
            return (f"{spec.name}: the sweep file differs from the one this sweep started with ({saved}) in "
                    f"{', '.join(refused)}; resume with the same file (and overrides; only "
                    f"{', '.join(f'budget.{k}' for k in RESUMABLE_CHANGES)} may change), or give the new sweep "
                    f"another name")
        if allowed:
            print(f"[sweep {spec.name}] resuming with new {', '.join(allowed)}", flush=True)
    elif has_rows or (folder / STUDY_FILE).exists():
        return f"{folder} already holds a sweep; use --resume to continue it, or another name/output"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        saved.write_text(spec_to_yaml(spec))
        (folder / "trials").mkdir(exist_ok=True)
        probe = folder / "trials" / ".writable"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return (f"cannot write the sweep's results to {folder}: {exc.strerror or exc}; choose another output "
                f"(--output DIR) or fix its permissions / free space")
    return None


def _run_tune_restarting(spec: SweepSpec, trainable, start: float) -> None:
    """`_run_tune`, started again (up to `CONTROLLER_RESTARTS` times) when Tune's own loop dies."""
    for restart in range(CONTROLLER_RESTARTS + 1):
        try:
            return _run_tune(spec, trainable, start)
        except (KeyboardInterrupt, StoreError):
            raise
        except Exception as exc:
            if restart == CONTROLLER_RESTARTS:
                raise
            lines = [line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
            print(f"[sweep {spec.name}] Tune stopped on an unexpected error ({lines[-1][:200]}); "
                  f"starting it again on the trials still to run ({restart + 1} of {CONTROLLER_RESTARTS})",
                  file=sys.stderr, flush=True)


def _finish(spec: SweepSpec, start: float, *, report: bool) -> int:
    """The closing summary; 130 when Tune returned short of the budget (Ctrl-C), else the report and 0."""
    folder = spec.folder
    frame = read_trials(folder / "trials", row_schema(spec))
    print(progress_line(spec, frame, 0, time.time() - start))
    savings = gate_savings(frame)
    if savings is not None:
        print(savings.sentence())
    print(f"rows: {folder / 'trials'} ({len(frame)} trials); study: {folder / STUDY_FILE}")
    out_of_time = spec.budget.time_limit_s is not None and time.time() - start >= spec.budget.time_limit_s
    flat = flat_stop(spec, frame)
    if flat is not None and flat.flat:
        print(f"[sweep {spec.name}] stopped early after {len(frame)} of at most {spec.budget.trials} trials: "
              f"{flat.reason()}")
    elif len(frame) < spec.budget.trials and not out_of_time:  # Tune returns normally on Ctrl-C
        print(f"stopped with {len(frame)}/{spec.budget.trials} trials; continue with the same command and --resume",
              file=sys.stderr)
        return 130
    if report:
        from explore.report import write_report  # here: Altair is slow to import

        print(f"report: {write_report(folder)}")
    return 0


def _run_tune(spec: SweepSpec, trainable, start: float) -> None:
    """One Tune run over the trials still missing from the budget (reconciled with the study first)."""
    folder = spec.folder
    rows = read_trials(folder / "trials", row_schema(spec))
    remaining = spec.budget.trials - len(rows)
    flat = flat_stop(spec, rows)
    if remaining <= 0 or (flat is not None and flat.flat):
        return
    storage = study_storage(spec)
    study = open_study(spec, storage)
    first_index, requeue = reconcile(study, rows, spec)
    for storage_id, _, _ in requeue[remaining:]:  # budget.trials lowered on resume: these never run
        study.tell(optuna.Trial(study, storage_id), state=optuna.trial.TrialState.FAIL)
    requeue = requeue[:remaining]
    if len(rows):
        publish_front(spec, rows)
        print(f"[sweep {spec.name}] {len(rows)} trials already recorded; running {remaining} more "
              f"({len(requeue)} of them interrupted earlier, rerun with their own parameters)", flush=True)
    searcher = SweepSearch(spec, storage, first_index=first_index, requeue=requeue, rows_left=remaining,
                           sampler=optuna_sampler(spec, resumed_trials=len(study.trials)), known=design_cache(rows),
                           screened=design_cache(rows, ("screened",)), flat=flat)
    slots = len(requeue_slots(requeue)) + math.ceil(max(0, remaining - len(requeue)) / spec.search.screen)
    writer = RowWriter(spec, code_version())
    callbacks = [writer]
    faults = Faults.from_environment()
    if faults is not None:
        callbacks.append(fault_injector(faults, folder / DRIVER_FAULT_MARK))
    time_left = None
    if spec.budget.time_limit_s is not None:
        time_left = max(1.0, spec.budget.time_limit_s - (time.time() - start))
    runs = folder / "tune"
    tuner = tune.Tuner(
        trainable, param_space={},
        tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, spec.budget.concurrency),
                                    num_samples=slots, time_budget_s=time_left, reuse_actors=False),
        run_config=tune.RunConfig(name=f"run-{len(list(runs.glob('run-*'))) if runs.exists() else 0}",
                                  storage_path=str(runs), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=spec.budget.max_retries),
                                  callbacks=callbacks))
    try:
        tuner.fit()
    except Exception:
        if writer.failure is not None:  # Tune may wrap it; the store's own error says what to do
            raise writer.failure from None
        raise
    if writer.failure is not None:
        raise writer.failure


def _init_ray(address: str | None, num_gpus: int | None = None, *, compile_sensor: bool = True) -> None:
    env = {**MALLOC_ENV, "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "ONN_COMPILE": "1" if compile_sensor else "0"}
    if os.environ.get(FAULT_ENV):  # the fault-tolerance tests' hooks reach the workers
        env[FAULT_ENV] = os.environ[FAULT_ENV]
    job = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if job:  # inside `ray job submit`: the job's own environment variables win (Ray refuses a clash)
        job_env = (json.loads(job).get("runtime_env") or {}).get("env_vars") or {}
        env = {key: value for key, value in env.items() if key not in job_env}
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=True)
    else:
        # Keep a local Ray on loopback (ENVIRONMENT.md): it otherwise binds the external interface.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        # address="local": always a new local instance; a bare ray.init() would attach to any cluster
        # `ray start` left recorded on this machine (even a dead one, and then hang).
        ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False, num_gpus=num_gpus,
                 runtime_env={"env_vars": env}, log_to_driver=True)


def trial_resources(spec: SweepSpec) -> dict[str, float]:
    """What Ray reserves for one trial: its CPUs, and its share of a GPU when the sweep asks for one."""
    resources = {"cpu": spec.budget.cpus_per_trial}
    if spec.budget.gpus_per_trial:
        resources["gpu"] = spec.budget.gpus_per_trial
    return resources


def trial_device() -> str:
    """The device of the trial running in this worker: the GPU Ray assigned it (Ray sets
    CUDA_VISIBLE_DEVICES to it, so it is ``cuda``), else the CPU."""
    import torch

    return "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"


def _gpu_ids() -> str:
    return ",".join(map(str, ray.get_gpu_ids()))


def _trainable(config: dict, spec: SweepSpec, teacher_state: dict, teacher_name: str) -> None:
    """One slot inside a Ray worker: its proposals' rows, reported once. A twin takes its earlier
    result; of several fresh proposals (screening) the gate prunes what it rules out, the one
    `explore.screening.choose` picks of the rest is trained and the others are recorded as screened."""
    import torch

    torch.set_num_threads(max(1, int(spec.budget.cpus_per_trial)))
    started, cpu_started = time.time(), time.process_time()
    candidates = _candidates(config)
    rows = {c["trial_index"]: {**c["reuse"], "t_total_s": 0.0, "cpu_s": 0.0} for c in candidates if c.get("reuse")}
    fresh = [c for c in candidates if not c.get("reuse") and "twin_of" not in c]
    device, lead = trial_device(), candidates[0]["trial_index"]
    if fresh:
        context = build_context(spec, teacher_state=teacher_state, teacher_name=teacher_name, device=device,
                                faults=Faults.from_environment())
        board = _board(spec)
        context = context.with_front(np.array(board["front"], dtype=float).reshape(-1, 2) if board else None)
        trained = np.array(board["trained"] if board else [], dtype=float).reshape(-1, 3)
        points = {c["trial_index"]: context.point(_params(spec, c)) for c in fresh}
        estimated = {c["trial_index"]: c["screened_before"] for c in fresh if c.get("screened_before")}
        slot, chosen = _run_slot(spec, points, context, trained, estimated)
        rows |= slot
        lead = chosen if chosen is not None else fresh[0]["trial_index"]
        if rows[lead].get("status") == "complete" and "handoff" in rows[lead]:
            rows[lead]["artefacts"] = _send_artefacts(spec, lead, rows[lead]["handoff"].files())
    for c in candidates:
        if "twin_of" in c:  # the same design twice in one slot: one row of work, the other its twin
            rows[c["trial_index"]] = {**reused_metrics({**rows[c["twin_of"]], "trial_index": c["twin_of"]}),
                                      "t_total_s": 0.0, "cpu_s": 0.0}
    others_cpu = sum(r["cpu_s"] for i, r in rows.items() if i != lead)
    for c in candidates:
        row = rows[c["trial_index"]]
        row.pop("handoff", None)
        row.update(trial_index=c["trial_index"], config_hash=config_hash(_params(spec, c)), host=socket.gethostname(),
                   node_ip=ray.util.get_node_ip_address(), pid=os.getpid(), started_unix_s=started,
                   finished_unix_s=time.time(), device=device, ray_gpu_ids=_gpu_ids())
    rows[lead]["cpu_s"] = time.process_time() - cpu_started - others_cpu  # the slot's set-up goes to the lead
    _report(spec, {**rows[lead], "slot_rows": [_with_objectives(spec, r) for i, r in rows.items() if i != lead]})


def _run_slot(spec: SweepSpec, points: dict[int, Any], context, trained: np.ndarray,
              estimated: dict[int, dict]) -> tuple[dict[int, dict], int | None]:
    """Rows of a slot's fresh proposals (trial index -> metrics, the trained one with its
    ``handoff``) and the index of the one trained (None: none was). ``estimated``: proposals
    screened out before, with their rows (their estimates are not computed again unless chosen)."""
    if len(points) == 1 and not estimated:
        (index, point), = points.items()
        return {index: _outcome_row(run_trial(point, context, trial_index=index))}, index
    examined = {i: examine(point, context) for i, point in points.items() if i not in estimated}
    rows = {}
    for i, e in examined.items():
        outcome = e.infeasible or e.gate(context)  # the gate first: screening chooses among what it passes
        if outcome is not None:
            rows[i] = _outcome_row(outcome)
    for i, row in estimated.items():
        reason = gate_reason(row["est_accuracy"], row["energy_pj"], spec.gate, context.front)
        if reason:
            rows[i] = {**row, "status": "pruned", "reason": reason, "t_total_s": 0.0, "cpu_s": 0.0,
                       "violation": gate_shortfall(row["est_accuracy"], row["energy_pj"], spec.gate, context.front)}
    open_ = [i for i in points if i not in rows]
    if not open_:
        return rows, None
    accuracy = next(m for m in spec.metrics if m.startswith("accuracy_"))
    cost = next(m for m in spec.metrics if m != accuracy)
    known = {i: estimated[i] if i in estimated else outcome_metrics(examined[i].screened("", 0.0)) for i in open_}
    choice = screening.choose([(known[i]["est_accuracy"], known[i][cost]) for i in open_], trained)
    chosen = open_[choice.index]
    for j, i in enumerate(open_):
        if i == chosen:
            continue
        reason = (f"screened: of {len(points)} proposals, trial {chosen} was trained (predicted accuracy "
                  f"{choice.predicted[choice.index]:.3f} for {cost} {known[chosen][cost]:.4g}); this one: "
                  f"{choice.predicted[j]:.3f} for {known[i][cost]:.4g}")
        violation = max(0.0, -choice.gains[j])
        if i in estimated:  # its estimate was kept: nothing computed again
            rows[i] = {**estimated[i], "reason": reason, "violation": violation, "t_total_s": 0.0, "cpu_s": 0.0}
        else:
            rows[i] = _outcome_row(examined[i].screened(reason, violation))
        rows[i]["predicted_accuracy"] = choice.predicted[j]
    outcome = run_trial(points[chosen], context, trial_index=chosen, examined=examined.get(chosen))
    rows[chosen] = {**_outcome_row(outcome), "predicted_accuracy": choice.predicted[choice.index],
                    "t_total_s": sum(v for k, v in outcome.seconds.items() if k != "total")}  # its own stages only
    rows[chosen].pop("reuses_trial", None)
    return rows, chosen


def _outcome_row(outcome) -> dict[str, Any]:
    """A proposal's metrics, its CPU seconds, and its hand-off (taken out before reporting)."""
    row = {**outcome_metrics(outcome), "cpu_s": outcome.cpu_seconds["total"]}
    if outcome.status == "complete" and outcome.realised is not None:
        row["handoff"] = outcome.realised.handoff
    return row


def _board(spec: SweepSpec) -> dict[str, list] | None:
    try:
        return ray.get(ray.get_actor(FRONT_ACTOR.format(name=spec.name)).get.remote())
    except (ValueError, ray.exceptions.RayActorError):
        return None  # no board (or it was lost with a node): the gate checks the accuracy bar only


def _report(spec: SweepSpec, metrics: dict[str, Any]) -> None:
    """Report a slot's rows once (Tune checks the objectives are present)."""
    tune.report(_with_objectives(spec, metrics))


def _with_objectives(spec: SweepSpec, metrics: dict[str, Any]) -> dict[str, Any]:
    """Every objective key present, NaN where the proposal has none (a pruned design keeps its
    energy, which the report plots)."""
    return {**metrics, **{m: float("nan") for m in spec.metrics if metrics.get(m) is None}}


def _row_id(trial, index: int) -> str:
    """A row's ``trial_id``: Tune's, with ``#<trial index>`` for each proposal of a screening slot."""
    return trial.trial_id if "candidates" not in trial.config else f"{trial.trial_id}#{index}"


def _candidates(config: dict) -> list[dict]:
    """The proposals of a slot's config (one, unless screening)."""
    return config.get("candidates") or [config]


def _params(spec: SweepSpec, config: dict) -> dict[str, Any]:
    return {**spec.fixed, **{k: v for k, v in config.items() if k in spec.space}}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _error_text(trial) -> str:
    try:
        lines = [line for line in Path(trial.error_file).read_text().splitlines() if line.strip()]
        return lines[-1][:500] if lines else "unknown error"
    except (OSError, TypeError):
        return "worker died or the trial raised (no error file)"
