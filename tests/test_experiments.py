"""The experiment scripts' own bookkeeping: where students are kept, and Table 4's recovery."""

from pathlib import Path

import polars as pl
import pytest

from explore.experiments.common import COMPENSATION_LABELS, model_path, recovery
from onn.train import TrainConfig


def test_a_student_is_named_by_everything_its_training_depends_on():
    base = TrainConfig(method="ntkd", epochs=6, seed=0, ntk_beta=1.0)
    names = {model_path(Path("out"), "mono", config).name for config in (
        base, TrainConfig(method="ntkd", epochs=6, seed=1, ntk_beta=1.0),
        TrainConfig(method="ntkd", epochs=6, seed=0, ntk_beta=0.01),
        TrainConfig(method="ntkd", epochs=6, seed=0, ntk_beta=1.0, ntk_centre=True, ntk_normalise="frobenius"),
        TrainConfig(method="ntkd", epochs=3, seed=0, ntk_beta=1.0), TrainConfig(method="kd", epochs=6, seed=0))}
    names.add(model_path(Path("out"), "mono", base, {"n_kernels": 2}).name)
    assert len(names) == 7
    # log cadence and the like do not change the student: the same file
    assert model_path(Path("out"), "mono", base) == model_path(Path("out"), "mono",
                                                                TrainConfig(method="ntkd", epochs=6, seed=0,
                                                                            ntk_beta=1.0, log_every_s=1))


def test_recovery_is_the_share_of_each_draws_drop_won_back():
    rows = [("ideal", -1, 90.0), (COMPENSATION_LABELS["none"], 0, 50.0), (COMPENSATION_LABELS["task"], 0, 70.0),
            (COMPENSATION_LABELS["ntkd"], 0, 80.0), (COMPENSATION_LABELS["none"], 1, 80.0),
            (COMPENSATION_LABELS["task"], 1, 90.0), (COMPENSATION_LABELS["ntkd"], 1, 75.0)]
    frame = pl.DataFrame([{"system": "mono", "seed": 0, "method": m, "draw": d, "test_accuracy_pct": a}
                          for m, d, a in rows])
    got = {(r["method"], r["draw"]): r["recovered"] for r in recovery(frame).iter_rows(named=True)}
    assert got == {(COMPENSATION_LABELS["task"], 0): pytest.approx(0.5),
                   (COMPENSATION_LABELS["ntkd"], 0): pytest.approx(0.75),
                   (COMPENSATION_LABELS["task"], 1): pytest.approx(1.0),
                   (COMPENSATION_LABELS["ntkd"], 1): pytest.approx(-0.5)}
