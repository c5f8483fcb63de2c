"""Screening's choice (`explore.screening`) and how interrupted screening slots are regrouped."""

import numpy as np

from explore.driver import requeue_slots
from explore.screening import choose, gain, predicted_accuracy

TRAINED = np.array([(0.90, 0.90, 10.0), (0.95, 0.94, 40.0), (0.85, 0.86, 5.0)])  # estimate, accuracy, cost


def test_the_candidate_that_extends_the_front_most_is_trained():
    candidates = [(0.80, 30.0),   # dominated: a trained design is better and cheaper
                  (0.97, 60.0),   # more accurate than anything trained, dearer
                  (0.93, 12.0)]   # between two trained designs: fills a gap
    choice = choose(candidates, TRAINED)
    assert choice.gains[0] < 0 < choice.gains[1] and choice.gains[2] > 0
    assert choice.index == int(np.argmax(choice.gains))
    # the line through the trained designs maps estimates onto accuracy: 0.97 -> above every trained one
    assert choice.predicted[1] > TRAINED[:, 1].max()


def test_when_nothing_improves_the_closest_to_improving_is_trained():
    candidates = [(0.70, 50.0), (0.89, 41.0)]
    choice = choose(candidates, TRAINED)
    assert all(g < 0 for g in choice.gains) and choice.index == 1


def test_a_gain_is_a_hypervolume_difference():
    trained = np.array([(0.9, 0.9, 10.0)])  # dominates accuracy 0-0.9 from cost 10 to the reference 30
    assert np.isclose(gain(0.95, 20.0, trained, reference_cost=30.0), 0.05 * 10)  # the strip above it, 20-30
    assert np.isclose(gain(0.85, 20.0, trained, reference_cost=30.0), -0.05)  # dominated: 0.05 short


def test_a_falling_or_missing_line_leaves_the_estimates_as_they_are():
    estimates = [0.7, 0.95]
    assert np.allclose(predicted_accuracy(estimates, TRAINED[:2]), estimates)  # fewer than three trained
    falling = np.array([(0.9, 0.70, 1.0), (0.8, 0.75, 2.0), (0.95, 0.65, 3.0)])
    assert np.allclose(predicted_accuracy(estimates, falling), estimates)  # would reverse the ranking
    rising = np.array([(0.5, 0.2, 1.0), (0.6, 0.6, 2.0), (0.7, 1.0, 3.0)])
    assert predicted_accuracy([0.9], rising)[0] == 1.0  # clipped to an accuracy


def test_interrupted_proposals_go_back_into_their_slots():
    requeue = [(17, 9, 8), (11, 4, 4), (16, 8, 8), (12, 5, 4), (20, 12, 12)]  # storage id, trial index, slot
    assert requeue_slots(requeue) == [[(11, 4), (12, 5)], [(16, 8), (17, 9)], [(20, 12)]]
