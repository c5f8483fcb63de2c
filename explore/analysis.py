"""A sweep's trial table, analysed: each row's role, the Pareto front, the hypervolume history.

Pure functions of the rows and the resolved sweep file, on every row (the charts sample; these
never do). The front uses the sweep's own objectives (`SweepSpec.metrics`/`directions`) over
complete trials only, through `explore.pareto`; the hypervolume's reference point is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import polars.selectors as cs

from explore.pareto import as_losses, hypervolume, non_dominated, reference_point
from explore.columns import METRIC_COLUMNS
from explore.rows import row_schema
from explore.spec import SweepSpec, load_spec
from explore.store import read_trials

# A row's role in the report; the labels are what the front chart's legend says.
ROLE_FRONT = "Pareto front (trained)"
ROLE_IDEAL = "front design, ideal-simulation accuracy"  # a front design repeated at its ideal accuracy
ROLE_TEST = "front design, test accuracy (for the record)"  # a front design repeated at its test score
ROLE_DOMINATED = "dominated (trained)"
ROLE_PRUNED = "pruned: estimated accuracy, not trained"
ROLE_INFEASIBLE = "infeasible: estimated accuracy"
ROLE_SCREENED = "screened out: estimated accuracy, not trained"
ROLE_FAILED, ROLE_UNSCORED = "failed", "complete, objective missing"
ROLE_TWIN = "twin: reuses an earlier trial's result"  # the design cache: counted once, where it was trained
@dataclass(frozen=True)
class Analysis:
    """Every row of a sweep with its role, and what the report computes from all of them."""

    spec: SweepSpec
    rows: pl.DataFrame  # every trial in finishing order, plus ``role`` and ``y_plotted``
    params: tuple[str, ...]  # the ``param.*`` columns
    x: str  # front chart axes: x the cost-like objective (energy), y the accuracy-like one
    y: str
    front: pl.DataFrame  # non-dominated complete designs, sorted by x
    reference: dict[str, float] | None  # hypervolume reference point, objective units
    hypervolume: float | None
    history: pl.DataFrame  # trials, compute_s, hypervolume, trial_id: one row per improvement

    def count(self, status: str) -> int:
        return int((self.rows["status"] == status).sum())


def front_axes(spec: SweepSpec) -> tuple[str, str]:
    """(x, y) of the front chart: (energy_pj, first accuracy objective) when the sweep optimises
    both; else the first two objectives (y the first); a single objective is drawn against energy
    (or the validation accuracy as made when it is energy)."""
    metrics = spec.metrics
    accuracy = [m for m in metrics if m.startswith("accuracy")]
    if "energy_pj" in metrics and accuracy:
        return "energy_pj", accuracy[0]
    if len(metrics) >= 2:
        return metrics[1], metrics[0]
    return ("accuracy_fabricated_val", metrics[0]) if metrics[0] == "energy_pj" else ("energy_pj", metrics[0])


def hypervolume_steps(values: np.ndarray, directions: list[str], reference: np.ndarray) -> list[tuple[int, float]]:
    """(row index, hypervolume after it) at every row that changes the hypervolume, in row order.

    Equal to `explore.pareto.hypervolume_history` at those rows (a test checks it), with one
    hypervolume per improvement instead of one per row: a row weakly dominated by the running front
    adds nothing, so thousands of trials cost a few dozen evaluations.
    """
    losses = as_losses(values, directions)
    front: list[int] = []
    steps = []
    for i, point in enumerate(losses):
        if not np.isfinite(point).all() or any((losses[j] <= point).all() for j in front):
            continue
        front = [j for j in front if not (point <= losses[j]).all()] + [i]
        steps.append((i, hypervolume(values[front], directions, reference)))
    return steps


def analyse(spec: SweepSpec, rows: pl.DataFrame) -> Analysis:
    rows = rows.sort(["finished_unix_s", "trial_index"], nulls_last=True).with_columns(
        cs.float().fill_nan(None))  # NaN is not JSON; a missing value is null everywhere
    metrics, directions = spec.metrics, spec.directions
    complete = (rows["status"] == "complete").to_numpy()
    values = rows.select(pl.col(m).cast(pl.Float64) for m in metrics).to_numpy().astype(float)
    twin = (rows["reuses_trial"].is_not_null().to_numpy() if "reuses_trial" in rows.columns
            else np.zeros(len(rows), dtype=bool))
    values[~complete | twin] = np.nan  # only a finished trial can sit on the front, and only once
    on_front = non_dominated(values, directions) if len(rows) else np.zeros(0, dtype=bool)
    scored = complete & np.isfinite(values).all(axis=1)
    x, y = front_axes(spec)
    status = rows["status"].to_numpy()
    role = np.select([twin, on_front, complete & ~scored, complete, status == "pruned", status == "infeasible",
                      status == "screened"],
                     [ROLE_TWIN, ROLE_FRONT, ROLE_UNSCORED, ROLE_DOMINATED, ROLE_PRUNED, ROLE_INFEASIBLE, ROLE_SCREENED],
                     ROLE_FAILED)
    # a design stopped before training has no trained accuracy: it is drawn at its estimate
    estimated = pl.col("est_accuracy") if y.startswith("accuracy") else pl.col(y)
    rows = rows.with_columns(role=pl.Series(role, dtype=pl.String), y_plotted=pl.when(pl.col("status") == "complete")
                             .then(pl.col(y)).otherwise(estimated).cast(pl.Float64))
    reference = total = None
    steps: list[tuple[int, float]] = []
    if scored.any():
        ref_loss = reference_point(values[scored], directions)
        reference = dict(zip(metrics, (as_losses(ref_loss[None], directions)[0]).tolist()))  # back to units
        total = hypervolume(values, directions, ref_loss)
        steps = hypervolume_steps(values, directions, ref_loss)
    compute_s = rows["t_total_s"].fill_null(0.0).cum_sum().to_numpy() if len(rows) else np.zeros(0)
    points = [(0, 0.0, 0.0, None)] + [(i + 1, float(compute_s[i]), hv, rows["trial_id"][i]) for i, hv in steps]
    if steps and steps[-1][0] != len(rows) - 1:
        points.append((len(rows), float(compute_s[-1]), steps[-1][1], None))
    history = pl.DataFrame(points, schema={"trials": pl.Int64, "compute_s": pl.Float64,
                                           "hypervolume": pl.Float64, "trial_id": pl.String}, orient="row")
    params = tuple(c for c in rows.columns if c.startswith("param."))
    front = rows.filter(pl.col("role") == ROLE_FRONT).sort(x, nulls_last=True)
    return Analysis(spec, rows, params, x, y, front, reference, total, history)


@dataclass(frozen=True)
class GateSavings:
    """What the estimator gate saved, from the stage timings of the rows."""

    pruned: int
    complete: int
    spent_s: float  # compute of every recorded trial (t_total_s), pruned ones included
    pruned_s: float  # of which on the pruned trials (validity + estimate + gate)
    avoided_s: float  # the pruned trials' cost had they been trained: n_pruned x median complete trial

    @property
    def saved_s(self) -> float:
        return self.avoided_s - self.pruned_s

    @property
    def saved_fraction(self) -> float:
        """Saved compute as a share of what the sweep would have cost with every design trained."""
        without_gate = self.spent_s + self.saved_s
        return self.saved_s / without_gate if without_gate > 0 else 0.0

    def sentence(self) -> str:
        if not self.pruned:
            return f"The estimator gate pruned no design ({self.complete} trained): it saved no compute here."
        designs = "design" if self.pruned == 1 else "designs"
        return (f"The estimator gate pruned {self.pruned} {designs} in {self.pruned_s:.0f} s; training them like the "
                f"{self.complete} complete trials (median {self.avoided_s / self.pruned:.0f} s each) would have cost "
                f"{self.saved_s / 60:.1f} min more: {100 * self.saved_fraction:.0f} % of the compute without the gate.")


def gate_savings(rows: pl.DataFrame) -> GateSavings | None:
    """None until a trial has completed (no trained trial to price a pruned one by)."""
    complete = rows.filter(pl.col("status") == "complete")["t_total_s"].drop_nulls()
    if not len(complete):
        return None
    pruned = rows.filter(pl.col("status") == "pruned")["t_total_s"].fill_null(0.0)
    return GateSavings(pruned=len(pruned), complete=len(complete), spent_s=float(rows["t_total_s"].fill_null(0.0).sum()),
                       pruned_s=float(pruned.sum()), avoided_s=len(pruned) * float(complete.median()))


def load(folder: str | Path) -> Analysis:
    """Read ``<folder>/sweep.yaml`` and ``<folder>/trials/`` (safe while the sweep writes)."""
    folder = Path(folder)
    spec = load_spec(folder / "sweep.yaml")
    return analyse(spec, read_trials(folder / "trials", row_schema(spec)))


def spearman(a: np.ndarray, b: np.ndarray) -> tuple[float | None, str]:
    """Spearman rank correlation and a sentence saying what it is (or why there is none)."""
    from scipy.stats import spearmanr

    if len(a) < 3:
        return None, f"n = {len(a)}: too few complete trials for a rank correlation"
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None, f"n = {len(a)}: one variable is constant, no rank correlation"
    rho = float(spearmanr(a, b).statistic)
    return rho, f"Spearman ρ = {rho:.2f} (n = {len(a)})"
