"""`python -m explore.sweep` end to end on the tiny sweep: rows, statuses, faults, resume.

Each test runs the real command in a subprocess (a real local Ray on 127.0.0.1), with its own
results folder and cache, and reads the Parquet it wrote.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from explore.analysis import analyse
from explore.context import TrialContext
from explore.rows import outcome_metrics, row_schema
from explore.point import base_design, design_point
from explore.spec import load_spec, parse_spec
from explore.store import read_trials
from explore.trial import gate_front, gate_reason, run_trial
from onn.data import load_dataset
from onn.energy import get_constants
from onn.teachers import build_teacher

ROOT = Path(__file__).parent.parent
TINY = ROOT / "sweeps" / "tiny.yaml"


def sweep(tmp_path, *args, env=None, timeout=1800, wait=True):
    command = [sys.executable, "-m", "explore.sweep", str(TINY), f"output={tmp_path}", *args]
    full_env = {**os.environ, "ONN_CACHE_DIR": str(tmp_path / "cache"), "RAY_USAGE_STATS_ENABLED": "0",
                "PYTHONUNBUFFERED": "1", **(env or {})}
    if not wait:
        return subprocess.Popen(command, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
    done = subprocess.run(command, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr


def rows(tmp_path, overrides=()) -> pl.DataFrame:
    spec = load_spec(TINY, [f"output={tmp_path}", *overrides])
    return read_trials(tmp_path / "tiny" / "trials", row_schema(spec))


def test_dry_run_prints_the_plan_without_starting_ray(tmp_path):
    code, out = sweep(tmp_path, "--dry-run", "budget.trials=3")
    assert code == 0, out
    assert "3 trials" in out and "aperture_mm" in out and "max accuracy_compensated_val" in out
    assert not (tmp_path / "tiny").exists()


def test_a_malformed_override_is_refused_before_ray(tmp_path):
    code, out = sweep(tmp_path, "budget.trials=-1")
    assert code == 2 and "budget.trials" in out and "greater than or equal to 1" in out


def test_tiny_sweep_end_to_end_with_a_raising_and_a_diverging_trial_and_a_dying_controller(tmp_path):
    # gate off: the faulty trials must reach training, where the faults are injected (and the
    # random sampler, which the resume test's TPE does not cover); Tune's own loop dies once, on
    # trial 3's result, and the driver restores it
    overrides = ["gate.enabled=false", "search.sampler=random"]
    code, out = sweep(tmp_path, *overrides, env={"EXPLORE_INJECT_FAULT": "raise:1,nan:2,driver:3"})
    assert code == 0, out
    assert "search: random" in out
    assert "injected failure of Tune's controller on trial 3); starting it again" in out, out
    frame = rows(tmp_path, overrides)
    # exactly one row per planned trial, Tune's restart included
    assert len(frame) == 6 and frame["trial_id"].n_unique() == 6, frame
    assert set(frame["status"]) <= {"complete", "pruned", "infeasible", "failed"}
    assert sorted(frame["trial_index"].to_list()) == list(range(6))
    by_index = {r["trial_index"]: r for r in frame.iter_rows(named=True)}
    raised, diverged = by_index[1], by_index[2]
    assert raised["status"] == "failed" and diverged["status"] == "failed", (raised, diverged)
    assert "injected failure" in raised["reason"] and raised["attempts"] == 2  # retried once (max_retries 1)
    assert "loss term" in diverged["reason"] and "step" in diverged["reason"]
    complete = frame.filter(status="complete")
    assert len(complete) >= 1, frame.select("trial_index", "status", "reason")
    assert complete["accuracy_compensated_val"].is_not_null().all() and complete["energy_pj"].is_not_null().all()
    assert (complete["t_total_s"] > 0).all() and complete["host"].is_not_null().all()
    assert (complete["cpu_s"] > 0).all()
    for kept in complete["artefacts"]:  # every complete design came back to the driver as files
        assert {p.name for p in (tmp_path / "tiny" / kept).iterdir()} == {"card.json", "widths.npz", "model.pt"}
    unfinished = frame.filter(pl.col("status") != "complete")
    assert unfinished["accuracy_compensated_val"].is_null().all()  # never on a front as if trained
    pruned = frame.filter(status="pruned")  # but a pruned design keeps its estimate and energy for the report
    assert pruned["energy_pj"].is_not_null().all() and pruned["est_accuracy"].is_not_null().all()
    assert (tmp_path / "tiny" / "sweep.yaml").exists()


def test_interrupted_sweep_resumes_without_losing_or_duplicating_rows(tmp_path):
    overrides = ["budget.trials=5", "budget.concurrency=1"]
    process = sweep(tmp_path, *overrides, wait=False)
    trials = tmp_path / "tiny" / "trials"
    deadline = time.time() + 300
    while time.time() < deadline and not (trials.exists() and len(rows(tmp_path, overrides)) >= 2):
        time.sleep(1)
    os.killpg(process.pid, signal.SIGINT)
    out, _ = process.communicate(timeout=120)
    before = rows(tmp_path, overrides)
    assert process.returncode == 130 and 2 <= len(before) < 5, out  # stopped mid-sweep, rows kept
    code, out = sweep(tmp_path, *overrides, "--resume")
    assert code == 0, out
    after = rows(tmp_path, overrides)
    assert len(after) == 5 and after["trial_id"].n_unique() == 5, after.select("trial_id", "trial_index", "status")
    assert set(before["trial_id"]) <= set(after["trial_id"])
    assert sorted(after["trial_index"].to_list()) == list(range(5))
    # the Optuna study persists beside the rows: one finished Optuna trial per row, none left RUNNING
    import optuna

    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "tiny" / "study.journal")))
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert study.metric_names == ["accuracy_compensated_val", "energy_pj"]
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 5 and not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    by_index = {r["trial_index"]: r for r in after.iter_rows(named=True)}
    for trial in trials:
        row = by_index[trial.user_attrs["trial_index"]]
        assert trial.user_attrs["status"] == row["status"] and trial.user_attrs["stage"] == row["stage"]
        if row["status"] == "complete":
            assert trial.values == pytest.approx([row["accuracy_compensated_val"], row["energy_pj"]])


def test_the_gate_compares_estimates_with_the_front_designs_estimates():
    rows = [  # complete trials: the first two are on the trained (accuracy, energy) front
        {"acc": 0.95, "energy_pj": 2e6, "est_accuracy": 0.60},
        {"acc": 0.90, "energy_pj": 1e6, "est_accuracy": 0.55},
        {"acc": 0.85, "energy_pj": 3e6, "est_accuracy": 0.99},  # dominated: not a rival
        {"acc": None, "energy_pj": 1e5, "est_accuracy": 0.99},  # no objective: ignored
    ]
    front = gate_front(rows, "acc")
    assert sorted(front) == [(0.55, 1e6), (0.60, 2e6)]
    spec = load_spec(ROOT / "sweeps" / "tiny.yaml", ["gate.min_accuracy=0.1", "gate.dominated_margin=0.02"])
    points = np.array(front)
    assert gate_reason(0.50, 3e6, spec.gate, points).startswith("dominated")
    assert gate_reason(0.59, 3e6, spec.gate, points) == ""  # within the margin
    assert gate_reason(0.50, 5e5, spec.gate, points) == ""  # cheaper than the front
    assert "min_accuracy" in gate_reason(0.05, 5e5, spec.gate, points)


@pytest.mark.parametrize("wavelengths", ["gb", "rg"])
def test_a_two_colour_design_on_colour_scenes_runs_every_stage(wavelengths):
    spec = parse_spec({
        "name": "two_colour", "task": {"dataset": "photo_tiny"},
        "fixed": {"wavelengths": wavelengths, "aperture_mm": 1.4, "mask_res": 224, "kernel_size": 5, "pool": 4},
        "space": {"backend_width": {"type": "choice", "values": [16]}},
        "training": {"epochs": 1, "batch_size": 32},
        "objectives": [{"metric": "accuracy_compensated_val", "direction": "max"},
                       {"metric": "energy_pj", "direction": "min"}],
        "gate": {"n_train": 40, "n_val": 20, "n_frontends": 1},
        "fabrication": {"draws": 1, "compensation": {"fraction": 0.2, "steps": 3}},
        "realisation": {"steps": 2},
        "budget": {"trials": 1}})
    data = load_dataset("photo_tiny")
    teacher = build_teacher("alexnet", data).eval()  # untrained: the trial only needs its logits and NTK
    params = {**spec.fixed, "backend_width": 16}
    point = design_point(params, base=base_design(data.channels, data.task), training=spec.training, seed=0)
    metrics = outcome_metrics(run_trial(point, TrialContext(spec=spec, data=data, teacher=teacher,
                                                            energy=get_constants("default"))))
    assert metrics["status"] == "complete", metrics.get("reason")
    assert metrics["colours"] == 2 and metrics["energy_pj"] > 0


def test_physical_fabrication_errors_run_through_the_realised_metasurface():
    spec = load_spec(ROOT / "sweeps" / "tiny.yaml", [
        "fabrication.level=physical", "fabrication.errors.width_sigma_nm=40", "fabrication.errors.misalignment_px=0.5",
        "realisation.steps=2", "gate.n_train=60", "gate.n_val=30"])
    data = load_dataset("digits")
    teacher = build_teacher("lenet5", data).eval()  # untrained: the trial only needs its logits and NTK
    params = {**spec.fixed, "aperture_mm": 1.3, "mask_res": 128, "backend_width": 8}
    point = design_point(params, base=base_design(data.channels, data.task), training=spec.training, seed=0)
    metrics = outcome_metrics(run_trial(point, TrialContext(spec=spec, data=data, teacher=teacher,
                                                            energy=get_constants("default"))))
    assert metrics["status"] == "complete", metrics.get("reason")
    # 40 nm width errors and half-pixel misalignment move the accuracy away from the realised system's
    assert metrics["accuracy_fabricated_test"] != metrics["accuracy_realised_test"]
    assert metrics["t_fabricate_s"] > 0 and 0 <= metrics["accuracy_compensated_val"] <= 1


def test_the_test_split_cannot_steer_a_sweep(tmp_path):
    """The tiny sweep twice at the same seed, the second time with the test labels permuted: the
    same designs, the same gate decisions, identical validation metrics and the same front; only
    the test columns differ."""
    overrides = ["budget.concurrency=1"]  # one trial at a time: the proposals are deterministic
    runs = {}
    for name, env in (("honest", None), ("permuted", {"EXPLORE_INJECT_FAULT": "permute_test_labels"})):
        code, out = sweep(tmp_path / name, *overrides, "--no-report", env=env)
        assert code == 0, out
        runs[name] = rows(tmp_path / name, overrides).sort("trial_index")
    honest, permuted = runs["honest"], runs["permuted"]
    assert len(honest) == len(permuted) == 6
    chosen_by = [c for c in honest.columns if c.startswith("param.") or c.endswith("_val")
                 or c.endswith("_val_std") or c.endswith("_val_p5")]
    chosen_by += ["trial_index", "status", "reason", "est_accuracy", "energy_pj", "compensation_steps"]
    for column in chosen_by:
        assert honest[column].to_list() == permuted[column].to_list(), column
    test_columns = [c for c in honest.columns if "_test" in c]
    assert any(honest[c].to_list() != permuted[c].to_list() for c in test_columns)
    complete = honest.filter(status="complete")
    assert len(complete) >= 2 and complete["accuracy_compensated_test"].is_not_null().all()
    spec = load_spec(TINY, [f"output={tmp_path / 'honest'}", *overrides])
    fronts = [set(analyse(spec, frame).front["trial_index"].to_list()) for frame in (honest, permuted)]
    assert fronts[0] == fronts[1] and fronts[0]


def test_a_gpu_request_reaches_rays_resources_and_the_trials_device(tmp_path, monkeypatch):
    import ray
    import torch

    from explore import driver

    spec = load_spec(TINY, ["budget.gpus_per_trial=0.5"])
    assert driver.trial_resources(spec) == {"cpu": 1.0, "gpu": 0.5}
    assert driver.trial_resources(load_spec(TINY)) == {"cpu": 1.0}  # the CPU path stays the default
    # the device-selection boundary: a GPU assigned by Ray and visible to torch -> cuda, else cpu
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [0])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert driver.trial_device() == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert driver.trial_device() == "cpu"
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [])
    assert driver.trial_device() == "cpu"
    monkeypatch.undo()
    # end to end on a local Ray that offers one (declared) GPU: Ray schedules each trial on half of it
    overrides = ["budget.trials=2", "budget.gpus_per_trial=0.5", "budget.concurrency=2"]
    code, out = sweep(tmp_path, *overrides, "--num-gpus", "1", "--no-report")
    assert code == 0, out
    frame = rows(tmp_path, overrides)
    assert len(frame) == 2 and set(frame["ray_gpu_ids"]) == {"0"}, frame.select("trial_index", "ray_gpu_ids", "device")
    assert set(frame["device"]) == {"cuda" if torch.cuda.is_available() else "cpu"}


def test_an_unwritable_results_folder_is_refused_before_ray(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, out = sweep(blocker, "budget.trials=1")  # output=<a file>: its sweep folder cannot be made
    assert code == 2 and "cannot write the sweep's results to" in out and "Started a local Ray" not in out


ONE_DESIGN = ["space={backend_width: {type: choice, values: [8]}}", "fixed.aperture_mm=1.0", "fixed.mask_res=96",
              "search.sampler=random", "budget.concurrency=1"]


def test_twins_are_not_retrained_and_a_flat_front_stops_the_sweep(tmp_path):
    # every proposal is the same design: the first is trained, the others reuse it; the front
    # cannot rise, so the stopper ends the sweep once patience trials have passed after min_trials
    overrides = [*ONE_DESIGN, "gate.enabled=false", "budget.stop_when_flat={patience: 2, min_trials: 2, rel_tol: 0.0}"]
    code, out = sweep(tmp_path, *overrides)
    assert code == 0, out
    assert "stopped early after 4 of at most 6 trials" in out, out
    frame = rows(tmp_path, overrides).sort("trial_index")
    assert frame["trial_index"].to_list() == [0, 1, 2, 3]
    assert frame["status"].to_list() == ["complete"] * 4, frame.select("status", "reason")
    assert frame["reuses_trial"].to_list() == [None, 0, 0, 0]
    assert frame["config_hash"].n_unique() == 1
    first, twins = frame.row(0, named=True), frame.filter(pl.col("reuses_trial").is_not_null())
    assert (twins["accuracy_compensated_val"] == first["accuracy_compensated_val"]).all()
    assert twins["t_train_s"].is_null().all() and (twins["cpu_s"] < first["cpu_s"] / 10).all()  # nothing ran
    assert (twins["artefacts"] == first["artefacts"]).all()
    a = analyse(load_spec(TINY, [f"output={tmp_path}", *overrides]), frame)
    assert len(a.front) == 1 and a.front["trial_index"][0] == 0  # a twin is counted once, where it ran
    # resuming a sweep that stopped flat does nothing more
    code, out = sweep(tmp_path, *overrides, "--resume")
    assert code == 0 and len(rows(tmp_path, overrides)) == 4, out


def test_gated_designs_reach_the_study_as_constraints(tmp_path):
    import optuna

    overrides = [*ONE_DESIGN, "gate.min_accuracy=0.99", "budget.trials=2", "search.sampler=tpe"]
    code, out = sweep(tmp_path, *overrides, "--no-report")
    assert code == 0, out
    frame = rows(tmp_path, overrides).sort("trial_index")
    assert frame["status"].to_list() == ["pruned", "pruned"] and frame["reuses_trial"].to_list() == [None, 0]
    assert (frame["violation"] > 0).all()
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(tmp_path / "tiny" / "study.journal")))
    trials = optuna.load_study(study_name="tiny", storage=storage).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.PRUNED] * 2
    # what TPE, GP and NSGA-II read: the recorded shortfall, not a tied "pruned" bucket
    assert [t.constraints for t in trials] == [{"violation": v} for v in frame["violation"].to_list()]


def test_screening_trains_one_proposal_per_slot_and_never_puts_the_others_on_the_front(tmp_path):
    import optuna

    overrides = ["gate.enabled=false", "search.sampler=random", "search.screen=3", "budget.trials=6",
                 "budget.concurrency=1"]
    code, out = sweep(tmp_path, *overrides)
    assert code == 0, out
    frame = rows(tmp_path, overrides).sort("trial_index")
    assert frame["trial_index"].to_list() == list(range(6))  # exactly the budget: two slots of three
    screened = frame.filter(status="screened")
    trained = frame.filter(pl.col("status").is_in(["complete", "pruned", "failed"]))
    assert len(trained) + len(screened) + len(frame.filter(status="infeasible")) == 6
    assert len(trained) <= 2 and len(screened) >= 2, frame.select("trial_index", "status", "reason")
    # a screened proposal was estimated, never trained, and says which one was
    assert screened["est_accuracy"].is_not_null().all() and screened["energy_pj"].is_not_null().all()
    assert screened["accuracy_ideal_val"].is_null().all() and screened["accuracy_compensated_val"].is_null().all()
    assert screened["t_train_s"].is_null().all() and screened["predicted_accuracy"].is_not_null().all()
    assert screened["reason"].str.contains("was trained").all()
    a = analyse(load_spec(TINY, [f"output={tmp_path}", *overrides]), frame)
    assert not set(a.front["trial_index"]) & set(screened["trial_index"])
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(tmp_path / "tiny" / "study.journal")))
    states = {t.user_attrs["trial_index"]: t.state for t in optuna.load_study(study_name="tiny", storage=storage).trials}
    assert all(states[i] == optuna.trial.TrialState.FAIL for i in screened["trial_index"])  # screened_tell: fail
    report = (tmp_path / "tiny" / "report.html").read_text()
    assert "screened out" in report
