"""Search strategies replayed against the tabulated benchmark (issue 20), over many seeds, in minutes.

    python benchmarks/search_replay.py --export results/table      # the built table -> benchmarks/tables/
    python benchmarks/search_replay.py --seeds 20                  # every strategy, 20 seeds each

The table (`benchmarks/tables/mnist_mono.parquet`, built by ``python -m explore.sweep
benchmarks/sweeps/table.yaml``) holds every design of a discrete space run once through the
sweep's own trial, with its validation accuracy after fabrication and compensation, exact energy,
design-aware estimate and the CPU seconds its estimate and the rest of its trial took. A strategy
asks Optuna (the sweep's own samplers, `explore.driver.optuna_sampler`) for designs and, instead of
training them, looks them up, and is charged their measured CPU:

- ``plain``: every proposal is trained (its trial without the estimate: plain Optuna);
- ``gate``: every proposal is estimated, then trained unless the sweep's gate rule
  (`explore.trial.gate_reason`: below ``min_accuracy``, or a trained-front design estimated
  ``dominated_margin`` higher at no more energy) prunes it; Optuna is told PRUNED with its shortfall
  as a constraint violation, as in a live sweep;
- ``screen<k>``: each training slot asks for k proposals, estimates them all (each design once) and
  trains the one `explore.screening.choose` picks (the live sweep's rule: the largest estimated
  hypervolume gain over the designs trained so far). What Optuna is told of the others is the
  variant: ``-est`` their predicted values as if trained, ``-pruned`` PRUNED with their shortfall as
  a constraint violation, ``-fail`` nothing it learns from (FAIL).

Every strategy keeps the design cache (a design proposed again costs nothing). The hypervolume of
the trained designs is measured on the table's true values against one reference point (the
nadir of every complete design + 10 %) and given as a fraction of the whole table's. Each run stops
when it reaches the target fraction (``--target``; with ``--to-front``, when it has found the whole
front), has spent ``--cap`` times the CPU of training every design, or has asked ``--max-asks``
proposals. Stopping at the target keeps the Gaussian-process runs affordable (an ask costs more with
every trial told); the curves are then exact up to the target and lower bounds above it.

A live sweep over the same space (``python -m explore.sweep benchmarks/sweeps/table.yaml
search.sampler=... name=...``) is scored on the same scale with ``--live FOLDER...``: its
hypervolume against the CPU its rows record, from its own measured accuracies and from the table's
values of the designs it trained (the second separates the search from training noise).

Writes ``benchmarks/search_replay.md`` (the table of figures) and ``benchmarks/figures/search_replay.png``
(median and interquartile hypervolume against CPU per sampler); for another ``--target`` than 95 %,
``search_replay_t<percent>.md`` and ``.png``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explore import screening  # noqa: E402
from explore.analysis import spearman  # noqa: E402
from explore.driver import optuna_sampler  # noqa: E402
from explore.pareto import hypervolume, hypervolume_history, non_dominated, reference_point  # noqa: E402
from explore.spec import Gate, SweepSpec, load_spec  # noqa: E402
from explore.trial import gate_reason, gate_shortfall  # noqa: E402

TABLE = ROOT / "benchmarks" / "tables" / "mnist_mono.parquet"
SWEEP = ROOT / "benchmarks" / "sweeps" / "table.yaml"
ACCURACY, ENERGY = "accuracy_compensated_val", "energy_pj"
DIRECTIONS = ["max", "min"]
KEPT = ["trial_index", "status", "reason", "violation", ACCURACY, "accuracy_compensated_test", ENERGY, "est_accuracy",
        "n_kernels", "cpu_s", "cpu_estimate_s", "t_total_s", "t_estimate_s", "t_train_s"]
optuna.logging.set_verbosity(optuna.logging.WARNING)


# --- the table ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    status: str
    accuracy: float  # validation accuracy after fabrication and compensation (NaN unless complete)
    energy: float  # pJ, exact before training (NaN for an infeasible design)
    estimate: float
    cpu_estimate: float  # s: the estimate stage
    cpu_rest: float  # s: the rest of the trial (what plain Optuna pays to train it)
    violation: float


@dataclass
class Table:
    params: list[str]
    entries: dict[tuple, Entry]
    reference: np.ndarray = field(init=False)
    full: float = field(init=False)  # hypervolume of every complete design
    front: set[tuple] = field(init=False)  # the true front's designs

    def __post_init__(self):
        keys = [k for k, e in self.entries.items() if e.status == "complete"]
        values = np.array([(self.entries[k].accuracy, self.entries[k].energy) for k in keys])
        self.reference = reference_point(values, DIRECTIONS)
        self.full = hypervolume(values, DIRECTIONS, self.reference)
        self.front = {k for k, on in zip(keys, non_dominated(values, DIRECTIONS)) if on}

    def key(self, params: dict) -> tuple:
        return tuple(params[p] for p in self.params)

    def hv(self, keys) -> float:
        values = np.array([(self.entries[k].accuracy, self.entries[k].energy) for k in keys
                           if self.entries[k].status == "complete"]).reshape(-1, 2)
        return hypervolume(values, DIRECTIONS, self.reference) / self.full if len(values) else 0.0

    @property
    def train_all_cpu(self) -> float:
        return sum(e.cpu_rest for e in self.entries.values())


def export_table(folder: Path, out: Path = TABLE) -> None:
    """Keep the columns the replay needs from a built table sweep (one row per design)."""
    from explore.analysis import load

    rows = load(folder).rows
    if "reuses_trial" in rows.columns:  # a twin's row repeats an earlier trial's result at no cost
        rows = rows.filter(pl.col("reuses_trial").is_null())
    params = [c for c in rows.columns if c.startswith("param.") and rows[c].n_unique() > 1]
    kept = rows.select(*params, *[c for c in KEPT if c in rows.columns]).sort("trial_index")
    duplicates = len(kept) - kept.select(params).n_unique()
    if duplicates:
        raise SystemExit(f"{folder}: {duplicates} designs appear twice; a table holds each design once")
    out.parent.mkdir(parents=True, exist_ok=True)
    kept.write_parquet(out)
    print(f"{out}: {len(kept)} designs, {out.stat().st_size / 1e3:.0f} kB")


def read_table(path: Path, spec: SweepSpec) -> Table:
    frame = pl.read_parquet(path)
    params = list(spec.space)
    nan = float("nan")
    entries = {}
    for row in frame.iter_rows(named=True):
        key = tuple(row[f"param.{p}"] for p in params)
        cpu_estimate = row["cpu_estimate_s"] or 0.0
        entries[key] = Entry(row["status"], row[ACCURACY] if row[ACCURACY] is not None else nan,
                             row[ENERGY] if row[ENERGY] is not None else nan,
                             row["est_accuracy"] if row["est_accuracy"] is not None else nan,
                             cpu_estimate, max(0.0, (row["cpu_s"] or 0.0) - cpu_estimate), row["violation"] or 0.0)
    return Table(params, entries)


# --- a strategy's run --------------------------------------------------------------------------

@dataclass(frozen=True)
class Strategy:
    sampler: str
    mode: str  # plain | gate | screen
    k: int = 1
    tell: str = ""  # screen: est | pruned | fail

    @property
    def name(self) -> str:
        return {"plain": self.sampler, "gate": f"{self.sampler}+gate"}.get(
            self.mode, f"{self.sampler}+screen{self.k}-{self.tell}")


@dataclass
class Run:
    cpu: list[float]  # after each event
    hv: list[float]  # fraction of the table's hypervolume
    trained: int = 0
    asks: int = 0
    discarded_front: int = 0  # true-front designs screened out and never trained in this run

    def cpu_to(self, target: float) -> float:
        hit = np.flatnonzero(np.asarray(self.hv) >= target - 1e-12)
        return self.cpu[hit[0]] if len(hit) else math.inf


class Replay:
    """One strategy, one seed, against the table."""

    def __init__(self, table: Table, spec: SweepSpec, strategy: Strategy, seed: int, *, gate: Gate, cap_cpu: float,
                 max_asks: int, target: float = 1.0):
        self.table, self.spec, self.strategy = table, spec, strategy
        self.gate = gate
        search = spec.search.model_copy(update={"sampler": strategy.sampler})
        seeded = spec.model_copy(update={"search": search, "seed": seed})
        self.study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna_sampler(seeded))
        self.space = {name: domain.distribution() for name, domain in spec.space.items()}
        self.cap_cpu, self.max_asks, self.target = cap_cpu, max_asks, target
        self.cpu = 0.0
        self.trained: set[tuple] = set()
        self.estimated: set[tuple] = set()
        self.discarded: set[tuple] = set()
        self.pruned: dict[tuple, float] = {}  # gated designs -> their shortfall
        self.run = Run([0.0], [0.0])

    # what each step costs and teaches
    def _estimate(self, key: tuple) -> None:
        if key not in self.estimated:
            self.estimated.add(key)
            self.cpu += self.table.entries[key].cpu_estimate

    def _train(self, key: tuple) -> None:
        if key not in self.trained:
            self.trained.add(key)
            self.cpu += self.table.entries[key].cpu_rest
            self.run.trained += 1

    def _tell(self, trial: optuna.Trial, key: tuple, *, values=None, violation: float = 0.0,
              state=optuna.trial.TrialState.PRUNED) -> None:
        entry = self.table.entries[key]
        if values is None and key in self.trained and entry.status == "complete":
            values = (entry.accuracy, entry.energy)
        if entry.status == "failed":
            state = optuna.trial.TrialState.FAIL
        if entry.status == "infeasible":
            violation = entry.violation
        trial.set_constraint("violation", float(violation))  # as the live sweep (explore.driver.tell_row)
        if values is not None:
            self.study.tell(trial, list(values))
        else:
            self.study.tell(trial, state=state)

    def _front_estimates(self) -> np.ndarray:
        """(estimate, energy) of the trained front's designs: the gate's like-with-like view."""
        keys = [k for k in self.trained if self.table.entries[k].status == "complete"]
        if not keys:
            return np.zeros((0, 2))
        values = np.array([(self.table.entries[k].accuracy, self.table.entries[k].energy) for k in keys])
        on = non_dominated(values, DIRECTIONS)
        return np.array([(self.table.entries[k].estimate, self.table.entries[k].energy)
                         for k, keep in zip(keys, on) if keep])

    def _trained_points(self) -> np.ndarray:
        """(estimate, accuracy, energy) of the complete designs trained so far."""
        entries = [self.table.entries[k] for k in self.trained if self.table.entries[k].status == "complete"]
        return np.array([(e.estimate, e.accuracy, e.energy) for e in entries]).reshape(-1, 3)

    def step(self) -> None:
        s = self.strategy
        if s.mode == "screen":
            self._screen_step()
        else:
            trial = self.study.ask(self.space)
            self.run.asks += 1
            key = self.table.key(trial.params)
            entry = self.table.entries[key]
            if entry.status == "infeasible" or key in self.trained:
                self._tell(trial, key)
            elif key in self.pruned:  # the live sweep's design cache reuses the pruned row
                self._tell(trial, key, violation=self.pruned[key])
            elif s.mode == "gate":
                self._estimate(key)
                front = self._front_estimates()
                if gate_reason(entry.estimate, entry.energy, self.gate, front):
                    self.pruned[key] = gate_shortfall(entry.estimate, entry.energy, self.gate, front)
                    self._tell(trial, key, violation=self.pruned[key])
                else:
                    self._train(key)
                    self._tell(trial, key)
            else:
                self._train(key)
                self._tell(trial, key)
        self.run.cpu.append(self.cpu)
        self.run.hv.append(self.table.hv(self.trained))

    def _screen_step(self) -> None:
        s = self.strategy
        trials = [self.study.ask(self.space) for _ in range(s.k)]
        self.run.asks += s.k
        keys = [self.table.key(t.params) for t in trials]
        open_ = list(dict.fromkeys(k for k in keys if self.table.entries[k].status != "infeasible"
                                   and k not in self.trained))  # each design once
        fresh = {k for k in open_ if k not in self.estimated}
        for key in open_:
            self._estimate(key)  # each design once: the live sweep keeps a screened design's estimate
        choice = screening.choose([(self.table.entries[k].estimate, self.table.entries[k].energy) for k in open_],
                                  self._trained_points()) if open_ else None
        verdict = {}
        if choice is not None:
            if open_[choice.index] not in fresh:  # screened before: the live trial estimates it again
                self.cpu += self.table.entries[open_[choice.index]].cpu_estimate
            self._train(open_[choice.index])
            verdict = {k: (p, g) for k, p, g in zip(open_, choice.predicted, choice.gains)}
        for trial, key in zip(trials, keys):
            if key in self.trained or key not in verdict:  # trained (now or before), or infeasible
                self._tell(trial, key)
                continue
            if key in self.table.front:
                self.discarded.add(key)
            predicted, gain = verdict[key]
            if s.tell == "est":
                self._tell(trial, key, values=(predicted, self.table.entries[key].energy), violation=max(0.0, -gain))
            elif s.tell == "pruned":
                self._tell(trial, key, violation=max(0.0, -gain))
            else:
                self._tell(trial, key, state=optuna.trial.TrialState.FAIL)

    def play(self) -> Run:
        feasible = sum(e.status == "complete" for e in self.table.entries.values())
        while (self.cpu < self.cap_cpu and self.run.asks < self.max_asks and self.run.hv[-1] < self.target - 1e-12
               and len(self.trained) < feasible):
            self.step()
        self.run.discarded_front = len(self.discarded - self.trained)
        return self.run


def score_live(folder: Path, table: Table, target: float) -> dict:
    """A live sweep of the table's space on the replay's scale: CPU to the target hypervolume fraction,
    from the sweep's own accuracies and from the table's values of the designs it trained."""
    from explore.analysis import load

    rows = load(folder).rows.sort("finished_unix_s")
    cpu = rows["cpu_s"].fill_null(0.0).cum_sum().to_numpy()
    twin = rows["reuses_trial"].is_not_null() if "reuses_trial" in rows.columns else pl.repeat(False, len(rows), eager=True)
    trained = ((rows["status"] == "complete") & ~twin).to_numpy()
    own = rows.select(pl.col(ACCURACY, ENERGY).cast(pl.Float64)).to_numpy()  # (rows, 2)
    own[~trained] = np.nan  # a row that trained nothing adds nothing
    looked_up = np.full_like(own, np.nan)
    for i, row in enumerate(rows.iter_rows(named=True)):
        if trained[i]:
            entry = table.entries[table.key({p: row[f"param.{p}"] for p in table.params})]
            looked_up[i] = entry.accuracy, entry.energy
    own_run, table_run = (Run(list(cpu), list(hypervolume_history(v, DIRECTIONS, table.reference) / table.full))
                          for v in (own, looked_up))
    return {"sweep": folder.name, "rows": len(rows), "trained": int(trained.sum()), "cpu_h": cpu[-1] / 3600,
            "hv_own": own_run.hv[-1], "hv_table": table_run.hv[-1], "cpu_to_target_own_h": own_run.cpu_to(target) / 3600,
            "cpu_to_target_table_h": table_run.cpu_to(target) / 3600}


# --- many seeds, figures, chart ----------------------------------------------------------------

STRATEGIES = [Strategy(sampler, mode, k, tell)
              for sampler in ("random", "tpe", "gp", "nsga2")
              for mode, k, tell in (("plain", 1, ""), ("gate", 1, ""), ("screen", 4, "est"), ("screen", 4, "pruned"),
                                    ("screen", 4, "fail"))]


def replay_one(table: Table, spec: SweepSpec, strategy: Strategy, seed: int, options: dict) -> Run:
    return Replay(table, spec, strategy, seed, **options).play()


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # Optuna's GP sampler runs on torch: one thread per process shares the cores evenly


def replay_all(table: Table, spec: SweepSpec, strategies: list[Strategy], seeds: int, options: dict, jobs: int,
               target: float) -> dict[str, list[Run]]:
    """Every strategy over seeds 0..seeds-1, on ``jobs`` processes (1: in this one); prints each
    strategy's median as it completes."""
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    start = time.perf_counter()
    pool = (ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_one_thread)
            if jobs > 1 else None)
    pending = {(strategy, seed): pool.submit(replay_one, table, spec, strategy, seed, options)
               for strategy in strategies for seed in range(seeds)} if pool else {}
    runs: dict[str, list[Run]] = {}
    for strategy in strategies:
        runs[strategy.name] = [pending[(strategy, seed)].result() if pool else
                               replay_one(table, spec, strategy, seed, options) for seed in range(seeds)]
        needed = np.percentile([r.cpu_to(target) for r in runs[strategy.name]], 50, method="inverted_cdf")
        print(f"{strategy.name:28s} median CPU to {target:.0%}: {needed / 3600:6.2f} h "
              f"({time.perf_counter() - start:.0f} s since the replay began)", flush=True)
    if pool:
        pool.shutdown()
    return runs


def summarise(table: Table, runs: dict[str, list[Run]], target: float) -> pl.DataFrame:
    hours = 3600.0
    rows = []
    for name, seeds in runs.items():
        needed = np.array([r.cpu_to(target) for r in seeds])
        q25, median, q75 = np.percentile(needed, [25, 50, 75], method="inverted_cdf")  # inf: not reached
        rows.append({"strategy": name, "seeds": len(seeds), "reached": int(np.isfinite(needed).sum()),
                     "median_cpu_h": median / hours, "q25_cpu_h": q25 / hours, "q75_cpu_h": q75 / hours,
                     "median_trained": float(np.median([r.trained for r in seeds])),
                     "median_asks": float(np.median([r.asks for r in seeds])),
                     "runs_discarding_front": int(sum(r.discarded_front > 0 for r in seeds)),
                     "front_designs_discarded": int(sum(r.discarded_front for r in seeds))})
    return pl.DataFrame(rows)


def curves(runs: dict[str, list[Run]], grid: np.ndarray) -> pl.DataFrame:
    """Median and interquartile hypervolume fraction at each CPU grid point, per strategy."""
    frames = []
    for name, seeds in runs.items():
        at = np.array([[r.hv[np.searchsorted(r.cpu, g, side="right") - 1] for g in grid] for r in seeds])
        q25, median, q75 = np.percentile(at, [25, 50, 75], axis=0)
        frames.append(pl.DataFrame({"strategy": name, "cpu_h": grid / 3600, "median": median, "q25": q25, "q75": q75}))
    return pl.concat(frames)


def chart(data: pl.DataFrame, target: float, path: Path, *, to_front: bool = False) -> None:
    import altair as alt

    data = data.with_columns(sampler=pl.col("strategy").str.split("+").list.first(),
                             variant=pl.col("strategy").str.split("+").list.get(1, null_on_oob=True).fill_null("plain"))
    base = alt.Chart().encode(x=alt.X("cpu_h:Q", title="CPU charged (h)"),
                                              color=alt.Color("variant:N", title="variant"))
    band = base.mark_area(opacity=0.18).encode(
        y=alt.Y("q25:Q", title="hypervolume / table's", scale=alt.Scale(domain=[0.6, 1.0], clamp=True)), y2="q75:Q")
    line = base.mark_line().encode(y="median:Q")
    rule = base.mark_rule(strokeDash=[4, 3], color="black").encode(y=alt.datum(target), x=alt.value(0), x2=alt.value(260),
                                                                   color=alt.value("black"))
    layered = alt.layer(band, line, rule, data=data.to_pandas()).properties(width=260, height=190)
    layered.facet(facet=alt.Facet("sampler:N", title=None), columns=2).properties(
        title="Median and interquartile hypervolume against CPU, replayed on the table"
              + ("" if to_front else f" (runs end at {target:.0%}: exact up to it)")).save(path, scale_factor=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=Path, help="write the table from a built table sweep's folder and exit")
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--live", type=Path, nargs="+", help="score live sweeps of the table's space and exit")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--only", nargs="*", help="strategy names to run (default: all)")
    parser.add_argument("--gate", type=float, nargs=2, default=(0.80, 0.02), metavar=("MIN_ACCURACY", "MARGIN"),
                        help="the gate strategies' gate.min_accuracy and gate.dominated_margin (default: mono.yaml's)")
    parser.add_argument("--target", type=float, default=0.95, help="hypervolume fraction to reach")
    parser.add_argument("--to-front", action="store_true", help="run on past the target until the whole front is found")
    parser.add_argument("--jobs", type=int, default=1, help="processes replaying seeds side by side")
    parser.add_argument("--cap", type=float, default=1.0, help="CPU cap, as a multiple of training every design")
    parser.add_argument("--max-asks", type=int, default=0, help="proposals per run (default 3x the table)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks")
    args = parser.parse_args(argv)
    args.command = " ".join(["python benchmarks/search_replay.py", *(sys.argv[1:] if argv is None else argv)])
    if args.export:
        export_table(args.export)
        return 0
    spec = load_spec(SWEEP)
    table = read_table(args.table, spec)
    complete = [e for e in table.entries.values() if e.status == "complete"]
    rho, rho_text = spearman(np.array([e.estimate for e in complete]), np.array([e.accuracy for e in complete]))
    print(f"table: {len(table.entries)} designs ({len(complete)} complete), true front {len(table.front)} designs, "
          f"training them all: {table.train_all_cpu / 3600:.2f} CPU h; estimator vs trained: {rho_text}", flush=True)
    if args.live:
        scores = pl.DataFrame([score_live(folder, table, args.target) for folder in args.live])
        with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200):
            print(scores)
        return 0
    max_asks = args.max_asks or 3 * len(table.entries)
    gate = Gate(enabled=True, min_accuracy=args.gate[0], dominated_margin=args.gate[1])
    strategies = [s for s in STRATEGIES if not args.only or s.name in args.only]
    if args.only and len(strategies) < len(args.only):
        unknown = sorted(set(args.only) - {s.name for s in strategies})
        raise SystemExit(f"unknown strategies {unknown}; known: {[s.name for s in STRATEGIES]}")
    options = {"gate": gate, "cap_cpu": args.cap * table.train_all_cpu, "max_asks": max_asks,
               "target": 1.0 if args.to_front else args.target}
    runs = replay_all(table, spec, strategies, args.seeds, options, args.jobs, args.target)
    summary = summarise(table, runs, args.target)
    (args.out / "figures").mkdir(parents=True, exist_ok=True)
    stem = "search_replay" if math.isclose(args.target, 0.95) else f"search_replay_t{args.target * 100:g}"
    markdown, figure = args.out / f"{stem}.md", args.out / "figures" / f"{stem}.png"
    write_markdown(summary, runs, table, rho, args, markdown)
    grid = np.linspace(0, max(r.cpu[-1] for seeds in runs.values() for r in seeds), 120)  # to where the last run ended
    chart(curves(runs, grid), args.target, figure, to_front=args.to_front)
    print(f"wrote {markdown} and {figure}")
    return 0


def ratio_interval(screened: list[Run], unscreened: list[Run], target: float, *, draws: int = 2000,
                   level: float = 0.9, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval (over seeds, each arm resampled) of the ratio of median CPU to the target."""
    rng = np.random.default_rng(seed)
    a = np.array([r.cpu_to(target) for r in screened])
    b = np.array([r.cpu_to(target) for r in unscreened])
    ratios = [np.percentile(rng.choice(a, len(a)), 50, method="inverted_cdf")
              / np.percentile(rng.choice(b, len(b)), 50, method="inverted_cdf") for _ in range(draws)]
    low, high = np.nanpercentile(ratios, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def write_markdown(summary: pl.DataFrame, runs: dict[str, list[Run]], table: Table, rho: float | None, args,
                   path: Path) -> None:
    unscreened = summary.filter(~pl.col("strategy").str.contains("screen"))
    screened = summary.filter(pl.col("strategy").str.contains("screen"))
    best_plain = unscreened.sort("median_cpu_h").row(0, named=True)
    best_screen = screened.sort("median_cpu_h").row(0, named=True) if len(screened) else None
    lines = [f"Command: `{args.command}`", "",
             f"Table: {len(table.entries)} designs, true front {len(table.front)} designs; training every design "
             f"costs {table.train_all_cpu / 3600:.2f} CPU h. Estimator Spearman ρ (estimate vs trained validation "
             f"accuracy after fabrication, complete designs): {rho:.3f}." if rho is not None else "", "",
             f"| strategy | reached {args.target:.0%} | median CPU h | IQR | trained (median) | proposals (median) | "
             f"runs that screened out a true-front design and never trained it | such designs, all runs |",
             "|---|---|---|---|---|---|---|---|"]
    for r in summary.sort("median_cpu_h").iter_rows(named=True):
        lines.append(f"| {r['strategy']} | {r['reached']}/{r['seeds']} | {r['median_cpu_h']:.2f} | "
                     f"{r['q25_cpu_h']:.2f}–{r['q75_cpu_h']:.2f} | {r['median_trained']:.0f} | {r['median_asks']:.0f} | "
                     f"{r['runs_discarding_front']} | {r['front_designs_discarded']} |")
    if best_screen is not None:
        low, high = ratio_interval(runs[best_screen["strategy"]], runs[best_plain["strategy"]], args.target)
        lines += ["", f"Best screened: {best_screen['strategy']} ({best_screen['median_cpu_h']:.2f} h); best "
                  f"unscreened: {best_plain['strategy']} ({best_plain['median_cpu_h']:.2f} h); ratio "
                  f"{best_screen['median_cpu_h'] / best_plain['median_cpu_h']:.2f}× (goal ≤ 0.5×; 90 % bootstrap "
                  f"interval over seeds {low:.2f}–{high:.2f}×; picking the best of each group on the same seeds "
                  f"flatters both)."]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
