"""Screening: of several proposed designs, train the one whose estimate promises the most.

A design's cost objective (energy, MACs, pixels read) is exact before training and its accuracy can
be estimated for a few percent of a trial (`onn.estimator`). Screening turns each training slot into
k proposals: all are estimated, one is trained, the others are recorded as ``screened``. The one
trained has the largest estimated hypervolume improvement over the designs trained so far; when
none improves (every estimate lies under the trained front), the one closest to improving.

The estimator ranks designs well but its level is not the trained accuracy after fabrication, so
estimates are first mapped onto trained accuracy by a least-squares line through the designs
trained so far (the estimate itself until three of them exist with distinct estimates). Pure
functions of arrays; used by the live sweep (`explore.driver`) and the replay benchmark
(`benchmarks/search_replay.py`) alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from explore.pareto import hypervolume

DIRECTIONS = ["max", "min"]  # (accuracy, cost)
MIN_FIT = 3  # trained designs with distinct estimates before the line replaces the raw estimate


@dataclass(frozen=True)
class Choice:
    index: int  # the candidate to train
    predicted: tuple[float, ...]  # every candidate's estimate mapped onto trained accuracy
    gains: tuple[float, ...]  # estimated hypervolume gain (> 0), or minus the accuracy short of the front


def predicted_accuracy(estimates: Sequence[float], trained: np.ndarray) -> np.ndarray:
    """``estimates`` mapped onto trained accuracy, in [0, 1]; ``trained`` is (n, 3): estimate,
    accuracy, cost. The raw estimates until `MIN_FIT` trained designs with distinct estimates
    exist, and whenever the line would not rise (a few noisy points must not reverse the ranking)."""
    estimates = np.asarray(estimates, dtype=float)
    if len(trained) < MIN_FIT or np.ptp(trained[:, 0]) == 0:
        return estimates
    slope, intercept = np.polyfit(trained[:, 0], trained[:, 1], 1)
    return np.clip(slope * estimates + intercept, 0.0, 1.0) if slope > 0 else estimates


def gain(accuracy: float, cost: float, trained: np.ndarray, reference_cost: float) -> float:
    """The hypervolume (accuracy, cost) would add to the trained designs' (> 0), or, when it adds
    nothing, minus the accuracy it lacks to beat the best trained design of no more cost."""
    rivals = trained[trained[:, 2] <= cost, 1]
    best = rivals.max() if len(rivals) else -np.inf
    if accuracy <= best:
        return float(accuracy - best)
    reference = np.array([0.0, reference_cost])  # loss space: accuracy 0 (negated), the largest cost seen
    points = trained[:, 1:3]
    before = hypervolume(points, DIRECTIONS, reference) if len(points) else 0.0
    return hypervolume(np.vstack([points, [accuracy, cost]]), DIRECTIONS, reference) - before


def choose(candidates: Sequence[tuple[float, float]], trained: np.ndarray) -> Choice:
    """Which of ``candidates`` ((estimate, cost) each, finite) to train, given the designs trained
    so far (``trained``: (n, 3) estimate, accuracy, cost; may be empty)."""
    if not len(candidates):
        raise ValueError("nothing to choose from")
    trained = np.asarray(trained, dtype=float).reshape(-1, 3)
    estimates, costs = np.asarray(candidates, dtype=float).T
    predicted = predicted_accuracy(estimates, trained)
    reference_cost = 1.1 * max(costs.max(), trained[:, 2].max() if len(trained) else 0.0)
    gains = [gain(a, c, trained, reference_cost) for a, c in zip(predicted, costs)]
    return Choice(int(np.argmax(gains)), tuple(map(float, predicted)), tuple(map(float, gains)))
