"""Pareto analysis as pure functions on ``(n_trials, n_objectives)`` arrays with directions.

Every objective is first turned into "lower is better" (`as_losses`); rows with a NaN objective
are not candidates (a trial that did not finish never sits on the front). Non-dominated sorting and
the hypervolume come from moocore (`moocore.is_nondominated`, `moocore.hypervolume`: a maintained
library of multi-objective quality indicators), against an explicit reference point that callers
record.
"""

from __future__ import annotations

from typing import Sequence

import moocore
import numpy as np


def as_losses(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """(n, m) objective values -> (n, m) losses: maximised objectives are negated."""
    values = np.asarray(values, dtype=float).reshape(len(values), len(directions))
    signs = np.array([{"min": 1.0, "max": -1.0}[d] for d in directions])
    return values * signs


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """Loss vector ``a`` dominates ``b``: no worse in every objective, better in one."""
    return bool(np.all(a <= b) and np.any(a < b))


def non_dominated(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """(n,) bool mask of the Pareto front. Rows with NaN are never on it; duplicates of a front
    point are all on it (neither dominates the other)."""
    losses = as_losses(values, directions)
    valid = ~np.isnan(losses).any(axis=1)
    mask = np.zeros(len(losses), dtype=bool)
    if valid.any():
        mask[valid] = moocore.is_nondominated(losses[valid], keep_weakly=True)
    return mask


def reference_point(values: np.ndarray, directions: Sequence[str], margin: float = 0.1) -> np.ndarray:
    """A reference point in loss space just worse than every finite value (nadir + margin·range)."""
    losses = as_losses(values, directions)
    finite = losses[np.isfinite(losses).all(axis=1)]
    if len(finite) == 0:
        raise ValueError("no finite objective values to place a reference point")
    worst, best = finite.max(axis=0), finite.min(axis=0)
    span = np.where(worst > best, worst - best, np.maximum(np.abs(worst), 1.0))
    return worst + margin * span


def hypervolume(values: np.ndarray, directions: Sequence[str], reference: np.ndarray) -> float:
    """Hypervolume dominated by the valid rows, bounded by ``reference`` (in loss space)."""
    losses = as_losses(values, directions)
    keep = np.isfinite(losses).all(axis=1) & (losses < reference).all(axis=1)
    if not keep.any():
        return 0.0
    return float(moocore.hypervolume(losses[keep], ref=np.asarray(reference, dtype=float)))


def hypervolume_history(values: np.ndarray, directions: Sequence[str], reference: np.ndarray) -> np.ndarray:
    """(n,) hypervolume after each row, in row order (rows sorted by finishing time by the caller)."""
    return np.array([hypervolume(values[: i + 1], directions, reference) for i in range(len(values))])


class FlatStop:
    """When to stop a search whose hypervolume has stopped rising (``budget.stop_when_flat``).

    Fed every finished trial's objective values in finishing order (NaN for a trial that did not
    finish training: it spent budget without moving the front). After ``min_trials`` trials the
    reference point is frozen (`reference_point` of the finite values so far), so later values
    cannot move the yardstick; from then on the search is flat once ``patience`` trials in a row
    have not raised the hypervolume by more than ``rel_tol`` of its best value.
    """

    def __init__(self, directions: Sequence[str], *, patience: int, min_trials: int, rel_tol: float):
        self.directions, self.patience, self.min_trials, self.rel_tol = list(directions), patience, min_trials, rel_tol
        self.values: list[np.ndarray] = []
        self.reference: np.ndarray | None = None
        self.best = 0.0
        self.best_at = 0  # trials seen when the best hypervolume was reached

    def add(self, values: Sequence[float]) -> None:
        self.values.append(np.asarray(values, dtype=float))
        if len(self.values) < self.min_trials:
            return
        stacked = np.stack(self.values)
        if self.reference is None:
            if not np.isfinite(stacked).all(axis=1).any():
                return  # nothing has finished yet: the clock starts with the first finished design
            self.reference = reference_point(stacked, self.directions)
            self.best_at = len(self.values)
        volume = hypervolume(stacked, self.directions, self.reference)
        if volume > self.best * (1 + self.rel_tol):
            self.best, self.best_at = volume, len(self.values)

    @property
    def flat(self) -> bool:
        return self.reference is not None and len(self.values) - self.best_at >= self.patience

    def reason(self) -> str:
        return (f"the hypervolume has not risen by more than {self.rel_tol:.0%} for {len(self.values) - self.best_at} "
                f"trials (budget.stop_when_flat: patience {self.patience})")
