"""The experiment scripts' own bookkeeping: where students are kept, Table 4's recovery, the tables' cells."""

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
        TrainConfig(method="ntkd", epochs=3, seed=0, ntk_beta=1.0), TrainConfig(method="kd", epochs=6, seed=0),
        TrainConfig(method="kd", epochs=6, seed=0, kd_temperature=2.0),
        TrainConfig(method="ntkd", epochs=6, seed=0, ntk_beta=1.0, ntk_subbatch=8),
        TrainConfig(method="ntkd", epochs=6, seed=0, ntk_beta=1.0, lr=1e-3))}
    names.add(model_path(Path("out"), "mono", base, {"n_kernels": 2}).name)
    assert len(names) == 10
    # settings another method's loss reads do not change a student: a task-loss run ignores NTKD's
    task = TrainConfig(method="task", epochs=6, seed=0)
    assert model_path(Path("out"), "mono", task) == model_path(
        Path("out"), "mono", TrainConfig(method="task", epochs=6, seed=0, ntk_centre=True, ntk_normalise="frobenius"))
    # the names of students kept before these hashes existed still resolve (Table 4 loads Table 3's)
    assert model_path(Path("out"), "mono", TrainConfig(method="ntkd", epochs=6, seed=0, ntk_centre=True,
                                                       ntk_normalise="frobenius")).name == "mono-ntkd-b1-centred-s0-e6.pt"
    # log cadence and the like do not change the student: the same file
    assert model_path(Path("out"), "mono", base) == model_path(Path("out"), "mono",
                                                                TrainConfig(method="ntkd", epochs=6, seed=0,
                                                                            ntk_beta=1.0, log_every_s=1))


def test_recovery_is_the_share_of_each_draws_drop_won_back():
    rows = [("ideal", -1, 90.0), (COMPENSATION_LABELS["none"], 0, 50.0), (COMPENSATION_LABELS["task"], 0, 70.0),
            (COMPENSATION_LABELS["ntkd"], 0, 80.0), (COMPENSATION_LABELS["none"], 1, 80.0),
            (COMPENSATION_LABELS["task"], 1, 90.0), (COMPENSATION_LABELS["ntkd"], 1, 75.0)]
    no_drop = [("ideal", -1, 40.0), (COMPENSATION_LABELS["none"], 0, 40.0), (COMPENSATION_LABELS["task"], 0, 80.0)]
    frame = pl.DataFrame([{"system": "mono", "seed": 0, "method": m, "draw": d, "test_accuracy_pct": a}
                          for m, d, a in rows]
                         + [{"system": "seg", "seed": 1, "method": m, "draw": d, "test_accuracy_pct": a}
                            for m, d, a in no_drop])
    gained = recovery(frame)
    # a draw that lost nothing (a model that had nothing to lose) has no recovery share, not an infinite one
    assert gained.filter(pl.col("system") == "seg")["recovered"].to_list() == [None]
    got = {(r["method"], r["draw"]): r["recovered"]
           for r in gained.filter(pl.col("system") == "mono").iter_rows(named=True)}
    assert got == {(COMPENSATION_LABELS["task"], 0): pytest.approx(0.5),
                   (COMPENSATION_LABELS["ntkd"], 0): pytest.approx(0.75),
                   (COMPENSATION_LABELS["task"], 1): pytest.approx(1.0),
                   (COMPENSATION_LABELS["ntkd"], 1): pytest.approx(-0.5)}


def test_a_cell_reports_the_finite_values_only():
    from explore.experiments.common import mean_std

    assert mean_std([1.0, 3.0, float("nan"), float("inf"), None]) == "2.00 ± 1.41"
    assert mean_std([float("nan")]) == "–" and mean_std([5.0]) == "5.00"


def test_key_value_items_are_read_as_yaml_and_a_bare_word_is_refused():
    from explore.experiments.common import assignments

    assert assignments(["n_kernels=2", "read_noise_fs=0.05", "ntk_centre=true", "name=a=b"]) == {
        "n_kernels": 2, "read_noise_fs": 0.05, "ntk_centre": True, "name": "a=b"}
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        assignments(["n_kernels"])


def test_the_weight_grid_names_a_kd_temperature_only_where_it_is_not_the_default():
    """Arms run before the temperature grid keep their names, so a resumed grid does not rerun them."""
    from explore.experiments.transfer_weights import arms

    before = arms([0.1, 0.5], [1.0])
    after = arms([0.1, 0.5], [1.0], (TrainConfig.kd_temperature, 2.0))
    assert [a for a in after if a.get("kd_temperature") is None] == before
    assert [a["kd_alpha"] for a in after if a.get("kd_temperature") == 2.0] == [0.1, 0.5]


def test_table3_resumes_training_only_the_runs_it_lacks(tmp_path, monkeypatch):
    """A rerun trains nothing; a changed KD weight retrains KD alone, and the table shows the new KD
    row beside the kept no-transfer row while the parquet keeps both KD rows."""
    from explore.experiments import table3
    from explore.systems import SYSTEMS, System
    from onn.train import fit

    monkeypatch.setitem(SYSTEMS, "tiny", System("mono", "digits", "lenet5", dict(kd_alpha=0.1)))
    trained = []

    def counting_fit(model, *args, config, **kwargs):
        trained.append((config.method, config.kd_alpha))
        return fit(model, *args, config=config, **kwargs)

    monkeypatch.setattr(table3, "fit", counting_fit)
    config = TrainConfig(epochs=1, max_steps=2, log_every_s=0)

    def run(**weights):
        return table3.run(["tiny"], ["task", "kd"], [0], config, root=None, out=tmp_path, device="cpu",
                          weights=weights)

    first = run()
    assert [(m, a) for m, a in trained if m == "kd"] == [("kd", 0.1)] and len(trained) == 2 and len(first) == 2
    assert run().equals(first) and len(trained) == 2  # nothing retrained
    changed = run(kd_alpha=0.3)
    assert trained[2:] == [("kd", 0.3)]
    assert changed["method"].to_list() == ["task", "kd"]
    assert changed.filter(pl.col("method") == "kd")["weights"].to_list() == ["T 4, α 0.3"]
    assert len(pl.read_parquet(tmp_path / "table3.parquet")) == 3


def test_the_weight_grid_chooses_on_the_mean_over_seeds_among_the_arms_with_the_most_seeds():
    from explore.experiments.transfer_weights import chosen

    rows = [("a", 0, 80.0), ("a", 1, 60.0), ("a", 2, 61.0),  # best single seed, worst mean
            ("b", 0, 70.0), ("b", 1, 70.0), ("b", 2, 70.0),
            ("c", 0, 99.0)]  # one seed only: does not compete with means of three
    frame = pl.DataFrame([{"system": "seg", "method": "kd", "arm": arm, "seed": seed, "val_pct": val, "kd_alpha": 0.1}
                          for arm, seed, val in rows])
    best = chosen(frame)["seg"]["kd"]
    assert (best["arm"], best["seeds"]) == ("b", 3) and best["val_pct"] == pytest.approx(70.0)
    assert chosen(frame.filter(pl.col("seed") == 0))["seg"]["kd"]["arm"] == "c"  # one seed: the best row


def test_table4_table_mode_runs_end_to_end_and_writes_its_table(tmp_path, monkeypatch):
    """The table mode through `main`, as its README command runs it (a tiny system, --quick): rows,
    the Markdown table with the share of the drop won back, and the curves chart."""
    from explore.experiments import table4
    from explore.systems import SYSTEMS, System

    monkeypatch.setenv("ONN_NO_REEXEC", "1")
    monkeypatch.setitem(SYSTEMS, "tiny", System("mono", "digits", "lenet5", dict(ntk_beta=0.1)))
    table4.main(["--systems", "tiny", "--quick", "--draws", "1", "--out", str(tmp_path), "--threads", "1"])
    frame = pl.read_parquet(tmp_path / "table4.parquet")
    assert set(frame["method"]) == {"ideal", *(COMPENSATION_LABELS[m] for m in ("none", "task", "ntkd"))}
    text = (tmp_path / "table4.md").read_text()
    assert "| tiny | digits |" in text and "drop recovered % (mean ± std)" in text
    assert (tmp_path / "table4_curves.png").stat().st_size > 0
