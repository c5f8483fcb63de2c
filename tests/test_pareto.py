"""Pareto front and hypervolume: written-out dominance tables and a property test."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from explore.pareto import (FlatStop, as_losses, dominates, hypervolume, hypervolume_history, non_dominated,
                            reference_point)

INF, NAN = float("inf"), float("nan")

# (accuracy max, energy min) -> on the front?
TABLE_2D = [
    ((0.9, 10.0), True),   # best accuracy
    ((0.8, 5.0), True),    # a trade-off
    ((0.8, 5.0), True),    # a tie with a front point: neither dominates, both stay
    ((0.7, 1.0), True),    # cheapest
    ((0.7, 6.0), False),   # dominated by (0.8, 5.0)
    ((0.9, 12.0), False),  # same accuracy as the best, dearer
    ((NAN, 0.1), False),   # an unfinished trial is never on the front
    ((0.5, INF), False),   # infinitely dear: dominated by everything finite at >= 0.5
    ((-INF, 0.5), True),   # cheapest of all, worthless accuracy: still non-dominated
]

TABLE_3D = [  # (accuracy max, energy min, p5 accuracy max)
    ((0.9, 10.0, 0.80), True),
    ((0.9, 10.0, 0.85), True),   # same first two, better third: dominates the row above? no: see below
    ((0.8, 5.0, 0.70), True),
    ((0.8, 6.0, 0.70), False),
    ((0.7, 7.0, 0.90), True),    # worse in two, best in the third
]


def test_dominance_table_2d():
    values = np.array([v for v, _ in TABLE_2D])
    assert non_dominated(values, ["max", "min"]).tolist() == [on for _, on in TABLE_2D]


def test_dominance_table_3d():
    values = np.array([v for v, _ in TABLE_3D])
    expected = [on for _, on in TABLE_3D]
    expected[0] = False  # (0.9, 10, 0.80) is dominated by (0.9, 10, 0.85)
    assert non_dominated(values, ["max", "min", "max"]).tolist() == expected


def test_dominates_is_strict():
    a, b = as_losses(np.array([[0.9, 1.0], [0.9, 1.0]]), ["max", "min"])
    assert not dominates(a, b) and not dominates(b, a)
    assert dominates(*as_losses(np.array([[0.9, 1.0], [0.8, 1.0]]), ["max", "min"]))


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 25), st.integers(2, 3)),
              elements=st.one_of(st.floats(-5, 5), st.just(NAN))))
def test_front_property(values):
    directions = ["max", "min", "max"][: values.shape[1]]
    mask = non_dominated(values, directions)
    losses = as_losses(values, directions)
    valid = ~np.isnan(losses).any(axis=1)
    for i in np.flatnonzero(mask):  # no front point is dominated by any valid point
        assert not any(dominates(losses[j], losses[i]) for j in np.flatnonzero(valid))
    for i in np.flatnonzero(valid & ~mask):  # every valid non-front point is dominated by a front point
        assert any(dominates(losses[j], losses[i]) for j in np.flatnonzero(mask))


def test_hypervolume_of_a_known_staircase():
    # losses (minimise both): (1, 3), (2, 2), (3, 1) with reference (4, 4): 3 + 2 + 1 = 6;
    # the reference point lives in loss space, so a maximised column enters negated.
    values = np.array([[-1.0, 3.0], [-2.0, 2.0], [-3.0, 1.0]])
    assert hypervolume(values, ["max", "min"], np.array([4.0, 4.0])) == pytest.approx(6.0)
    losses_values = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert hypervolume(losses_values, ["min", "min"], np.array([4.0, 4.0])) == pytest.approx(6.0)
    history = hypervolume_history(losses_values, ["min", "min"], np.array([4.0, 4.0]))
    assert history.tolist() == pytest.approx([3.0, 5.0, 6.0])


def test_hypervolume_ignores_nan_and_points_beyond_the_reference():
    values = np.array([[1.0, 1.0], [NAN, 0.0], [5.0, 0.5]])
    assert hypervolume(values, ["min", "min"], np.array([2.0, 2.0])) == pytest.approx(1.0)


def test_reference_point_is_worse_than_every_point():
    values = np.array([[0.9, 10.0], [0.5, 1.0], [NAN, 0.1]])
    ref = reference_point(values, ["max", "min"])
    assert (as_losses(values[:2], ["max", "min"]) < ref).all()


def _fed(history, **settings):
    stop = FlatStop(["max", "min"], **{"patience": 3, "min_trials": 4, "rel_tol": 0.01, **settings})
    flat_at = None
    for i, values in enumerate(history):
        stop.add(values)
        if stop.flat and flat_at is None:
            flat_at = i + 1
    return stop, flat_at


def test_the_stopper_stops_on_a_flat_history():
    rng = np.random.default_rng(0)
    history = [(0.5 + 0.1 * i, 10.0 - i) for i in range(4)]  # a rising start, then nothing better
    history += [(0.5 + 0.2 * rng.random(), 8.0 + 2 * rng.random()) for _ in range(6)]
    history.insert(5, (NAN, NAN))  # a pruned trial counts as a trial without a gain
    stop, flat_at = _fed(history)
    assert flat_at == 4 + 3  # the reference is frozen at trial 4; three trials without a gain follow
    assert "patience 3" in stop.reason()


def test_the_stopper_does_not_stop_while_the_front_rises():
    rising = [(0.5 + 0.04 * i, 10.0 - 0.3 * i) for i in range(20)]
    _, flat_at = _fed(rising)
    assert flat_at is None
    _, flat_at = _fed(rising[:8] + [(0.1, 20.0)] * 2 + rising[8:])  # two poor trials: short of patience
    assert flat_at is None


def test_the_stopper_waits_for_a_first_finished_design():
    stop, flat_at = _fed([(NAN, NAN)] * 10)
    assert flat_at is None and stop.reference is None


def test_gains_below_the_tolerance_are_flat():
    small = [(0.9, 10.0)] * 4 + [(0.9, 10.0 - 0.001 * i) for i in range(1, 6)]
    assert _fed(small, rel_tol=0.01)[1] == 7
    assert _fed(small, rel_tol=0.0)[1] is None
