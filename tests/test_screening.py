"""Screening's choice (`explore.screening`) and how interrupted screening slots are regrouped."""

import math

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


def test_the_replay_charges_what_it_trains_and_reaches_a_synthetic_front(tmp_path):
    """`benchmarks/search_replay.py` on a made-up table of the reference space: every strategy is
    charged only for what it estimated and trained, its hypervolume comes from trained designs only,
    and it writes its table and chart."""
    import itertools
    import sys
    from pathlib import Path

    import polars as pl

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    import search_replay

    rng = np.random.default_rng(0)
    rows = []
    space = itertools.product([2, 3, 4, 6, 8, 12, 16, 24], [0.4, 0.5], [1.0, 1.5], [1, 2], [32, 128])
    for i, (k, s, o, d, w) in enumerate(space):
        accuracy = 0.97 - 0.5 / k - 0.01 * (w == 32) + rng.normal(0, 0.005)
        rows.append({"param.n_kernels": k, "param.suboptic_mm": s, "param.oversampling": o, "param.backend_depth": d,
                     "param.backend_width": w, "trial_index": i, "status": "complete", "reason": None,
                     "violation": 0.0, "accuracy_compensated_val": accuracy, "energy_pj": 1e5 * k * (1 + 0.1 * d),
                     "est_accuracy": accuracy + rng.normal(0, 0.01), "cpu_s": 50.0 + 10 * k, "cpu_estimate_s": 10.0})
    pl.DataFrame(rows).write_parquet(tmp_path / "table.parquet")
    spec = search_replay.load_spec(search_replay.SWEEP)
    table = search_replay.read_table(tmp_path / "table.parquet", spec)
    assert len(table.entries) == 128 and table.train_all_cpu == sum(40.0 + 10 * r["param.n_kernels"] for r in rows)
    for strategy in (search_replay.Strategy("random", "plain"), search_replay.Strategy("tpe", "screen", 4, "est")):
        replay = search_replay.Replay(table, spec, strategy, 0, gate=search_replay.Gate(enabled=True),
                                      cap_cpu=table.train_all_cpu, max_asks=384)
        run = replay.play()
        charged = sum(table.entries[k].cpu_rest for k in replay.trained) + sum(
            table.entries[k].cpu_estimate for k in replay.estimated)
        assert run.cpu[-1] >= charged - 1e-9 and run.trained == len(replay.trained)
        assert run.hv[-1] == table.hv(replay.trained) and max(run.hv) <= 1.0 + 1e-12 and run.cpu_to(0.95) < math.inf
        assert strategy.mode != "plain" or not replay.estimated  # plain Optuna pays for no estimate
    assert search_replay.main(["--table", str(tmp_path / "table.parquet"), "--seeds", "2", "--only", "random",
                               "tpe+screen4-est", "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "search_replay.md").read_text()
    assert "| random |" in text and "| tpe+screen4-est |" in text
    assert (tmp_path / "out" / "figures" / "search_replay.png").stat().st_size > 0


def test_the_design_grid_visits_every_point_once_across_resumes():
    """`sampler: grid` proposes every grid point once even when the sweep is resumed (a fresh sampler,
    seeded differently for the other samplers) with trials finished, failed and still running."""
    import optuna

    from explore.driver import optuna_sampler
    from explore.spec import parse_spec

    spec = parse_spec({"name": "g", "task": {"dataset": "digits"}, "search": {"sampler": "grid"},
                       "space": {"n_kernels": {"type": "choice", "values": [2, 4, 8]},
                                 "backend_depth": {"type": "int", "low": 1, "high": 3},
                                 "oversampling": {"type": "choice", "values": [1.0, 1.5]}},
                       "objectives": [{"metric": "accuracy_compensated_val", "direction": "max"}],
                       "budget": {"trials": 18}})
    space = {name: domain.distribution() for name, domain in spec.space.items()}
    storage = optuna.storages.InMemoryStorage()
    seen = []
    for run, asks in enumerate((7, 5, 8)):  # three runs of the sweep, each with a new sampler
        study = optuna.create_study(storage=storage, study_name="g", load_if_exists=True,
                                    sampler=optuna_sampler(spec, resumed_trials=len(seen)))
        for i in range(asks):
            trial = study.ask(fixed_distributions=space)
            seen.append(tuple(sorted(trial.params.items())))
            if i % 3 == 0:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            elif i % 3 == 1:
                study.tell(trial, 0.5)  # the third stays running, as an interrupted trial does
    assert len(seen) == 20 and len(set(seen[:18])) == 18  # the grid holds 18 points: each once, then repeats
    assert set(seen[18:]) <= set(seen[:18])


def test_a_rerun_proposal_keeps_its_grid_point_and_takes_no_other():
    """The driver reruns an interrupted proposal by building a new `optuna.Trial` for it, and Optuna
    calls the sampler's `before_trial` again then: the grid must not hand that trial a second point
    (it did: three points of the table sweep were marked taken by reruns and never run). Also for a
    trial started under another sampler, and one whose parameters were fixed by `enqueue_trial`."""
    import optuna

    from explore.driver import DesignGrid

    grid = {"a": [1, 2, 3], "b": [0.5, 1.5]}
    space = {"a": optuna.distributions.CategoricalDistribution([1, 2, 3]),
             "b": optuna.distributions.CategoricalDistribution([0.5, 1.5])}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    foreign = study.ask(space)  # started under another sampler, interrupted
    study.sampler = DesignGrid(grid, seed=0)
    own = study.ask(space)  # started under the grid, interrupted
    study.enqueue_trial({"a": 3, "b": 0.5})
    fixed = study.ask(space)
    held = [tuple(t.params.values()) for t in (foreign, own, fixed)]
    for old in (foreign, own, fixed):  # the reruns
        rerun = optuna.Trial(study, old._trial_id)
        assert tuple(rerun.suggest_categorical(n, d.choices) for n, d in space.items()) == tuple(old.params.values())
        study.tell(rerun, 0.0)
    rest = []
    for _ in range(6 - len(set(held))):
        trial = study.ask(space)
        rest.append(tuple(trial.params.values()))
        study.tell(trial, 0.0)
    assert sorted(set(held) | set(rest)) == sorted((a, b) for a in grid["a"] for b in grid["b"])
