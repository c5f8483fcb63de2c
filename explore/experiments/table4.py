"""Reproduce the paper's fabrication experiment (Table 4): fabricated accuracy with no compensation,
task-loss fine-tuning and NTKD fine-tuning of the digital backend on 10 % of the training split.

    python -m explore.experiments.table4 --systems mono poly --draws 5 --epochs 6
    python -m explore.experiments.table4 --sweep-magnitude --draws 5 --epochs 6
    python -m explore.experiments.table4 --quick                      # smoke run, minutes

For each system (`explore.systems.SYSTEMS`) an NTKD model is trained once (cached under
``<out>/models``). Table mode: N kernel-level fabrication draws at the SPEC §4 default errors
(times ``--magnitude``); every draw is scored as made, then a copy is fine-tuned with the task
loss and another with NTKD (optics frozen, backend only). Writes ``<out>/table4.parquet`` (one row
per draw and method) and ``<out>/table4.md``.

``--sweep-magnitude``: accuracy vs error magnitude, ideal -> severe, for both systems:
kernel-level errors at ``--scales`` x the defaults, and physical pillar-width errors of
``--scales`` x ``--width-sigma-nm`` (random, per design sample) and a systematic over-etch of
``--scales`` x ``--width-bias-nm`` (every pillar) on the inverse-designed (realised) system, the same
width errors for mono and poly (paper: the polychromatic system degrades more). Writes
``<out>/table4_magnitude.parquet``, ``.md`` and a ``.png`` chart.

Paper (Xiang et al. 2025, Table 4), fabricated hardware: MNIST 89.2 / 93.2 / 95.1 %,
CIFAR-10 47.3 / 70.4 / 74.9 % (no compensation / task-loss / NTKD fine-tune).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import polars as pl
import torch
from torch.utils.data import TensorDataset

from explore.experiments.common import (COMPENSATION_LABELS, RunTable, add_run_arguments, assignments,
                                        command_line, markdown_table, mean_std, model_path, parse_and_start,
                                        recovery)
from explore.systems import SYSTEMS, build_student, load_system, system_design
from onn.cache import atomic_torch_save, safe_torch_load
from onn.data import load_dataset
from onn.fabrication import KernelPreset, PhysicalErrors, default_kernel_errors, freeze_realised, realise_design
from onn.robustness import CompensationConfig, MonteCarloResult, compensate, monte_carlo
from onn.train import TrainConfig, evaluate, fit, headline

PAPER = {"mono": (89.2, 93.2, 95.1), "poly": (47.3, 70.4, 74.9)}  # no comp. / task / NTKD, fabricated
PAPER_IDEAL = {"mono": 97.3, "poly": 75.6}  # the paper's Table 3 NTKD (simulation), the ideal they fell from


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a run depends on (one place, so the md header and the estimate agree)."""

    systems: tuple[str, ...]
    epochs: float
    train_steps: int | None  # cap on training steps (quick runs)
    draws: int
    magnitude: float
    comp_steps: int  # optimiser steps at most, stopped early on validation (onn.robustness.CompensationConfig)
    fraction: float
    scales: tuple[float, ...]
    width_sigma_nm: float
    width_bias_nm: float
    design_steps: int
    design_chunk: int
    mask_res: dict[str, int]
    retrain_epochs: float
    test_limit: int | None
    seeds: tuple[int, ...]  # table mode: one trained model per seed; the other modes use the first
    imaging: str = "window"  # physical level: "window" (each PSF in its kernel window) or "frame" (onn.optics.frame)
    models: Path | None = None  # where trained students are looked for and kept (None: <out>)
    errors: KernelPreset = "calibrated"  # the kernel-level error model (onn.fabrication.default_kernel_errors)
    comp_weights: tuple[tuple[str, Any], ...] = ()  # TrainConfig fields over the system's for the NTKD fine-tune

    @property
    def seed(self) -> int:
        return self.seeds[0]


def training_config(name: str, s: Settings) -> TrainConfig:
    """NTKD with the system's chosen weights (`explore.systems.System.transfer`): the model's
    training, and the base of its NTKD compensation."""
    return TrainConfig(method="ntkd", epochs=s.epochs, max_steps=s.train_steps, seed=s.seed, log_every_s=60,
                       **(SYSTEMS[name].transfer if name in SYSTEMS else {}))


def trained_model(name: str, s: Settings, out: Path, device: str):
    """The system's data and teacher, and its NTKD-trained model: from ``<models or out>/models`` if there
    (a Table 3 run of the same settings and seed keeps it there), else trained and kept."""
    system, data, teacher = load_system(name, device=device)
    model = build_student(system_design(system), data, seed=s.seed)
    config = training_config(name, s)
    path = model_path(s.models or out, name, config)  # Table 3's NTKD student of this seed, if it ran
    if not path.exists():
        result = fit(model, data.train, task=data.task, config=config, teacher=teacher, device=device,
                     label=f"{name} ntkd")
        atomic_torch_save({"state_dict": model.state_dict(), "train_s_per_step": result.seconds / result.steps}, path)
    payload = safe_torch_load(path)
    model.load_state_dict(payload["state_dict"])
    test = scored_split(data.test, s.test_limit, s.seed)
    start = time.perf_counter()
    evaluate(model, test, data.task, device=device)
    timing = {"train_s_per_step": payload["train_s_per_step"],
              "eval_s_per_image": (time.perf_counter() - start) / len(test)}
    return system, data, teacher, model, test, timing


def scored_split(test: TensorDataset, limit: int | None, seed: int) -> TensorDataset:
    """The test split, or a fixed random ``limit`` images of it (splits may be sorted by class)."""
    if limit is None or limit >= len(test):
        return test
    index = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:limit]
    return TensorDataset(*(t[index] for t in test.tensors))


def comp_config(s: Settings) -> CompensationConfig:
    """Fine-tuning of a fabricated backend: at most ``comp_steps`` steps on ``fraction`` of the
    training split, stopped on validation seen through the same optics (never on test)."""
    return CompensationConfig(fraction=s.fraction, steps=s.comp_steps)


def _epoch_steps(epochs: float, n: int, batch_size: int = CompensationConfig.batch_size) -> int:
    return max(1, math.ceil(epochs * math.ceil(n / batch_size)))


def run_table(s: Settings, out: Path, device: str, timings: dict) -> pl.DataFrame:
    """Every system and seed (each seed its own trained model and draws): ideal, as made, and each
    fine-tune with the validation curve it was stopped on. A row is on disk as soon as it exists."""
    table = RunTable(out / "table4.parquet")
    for name in s.systems:
        for seed in s.seeds:
            _seed_rows(table, name, dataclasses.replace(s, seeds=(seed,)), out, device, timings)
    return table.frame


def _seed_rows(table: RunTable, name: str, s: Settings, out: Path, device: str, timings: dict) -> None:
    system, data, teacher, model, test, timing = trained_model(name, s, out, device)
    errors = default_kernel_errors(system.design.colours, s.errors).scaled(s.magnitude)
    ideal = headline(evaluate(model, test, data.task, device=device))
    base = dict(system=name, dataset=data.name, seed=s.seed, gain_low=errors.gain_range[0],
                gain_high=errors.gain_range[1], shift_px=errors.shift_px, kernel_sigma_rel=errors.kernel_sigma_rel,
                gain_shared=errors.gain_shared, gain_residual=errors.gain_residual,
                distortion_rel=errors.distortion_rel, chromatic_blur_px=errors.chromatic_blur_px,
                fraction=s.fraction, n_test=len(test))
    table.add({**base, "draw": -1, "method": "ideal", "test_accuracy_pct": 100 * ideal, "steps": 0})
    result = monte_carlo(model, errors, draws=s.draws, seed=s.seed, task=data.task, score_on={"test": test},
                         compensations=("task", "ntkd"), train=data.train, val=data.val, teacher=teacher,
                         compensation=comp_config(s), base=dataclasses.replace(training_config(name, s),
                                                                                 **dict(s.comp_weights)),
                         device=device)
    for draw in result.draws:
        table.add({**base, "draw": draw.index, "method": COMPENSATION_LABELS["none"],
                   "test_accuracy_pct": 100 * headline(draw.made["test"]), "steps": 0})
        for method, run in draw.fine_tuned.items():
            table.add({**base, "draw": draw.index, "method": COMPENSATION_LABELS[method],
                       "test_accuracy_pct": 100 * headline(draw.compensated[method]["test"]), "steps": run.steps,
                       "best_step": run.best_step, "seconds": run.seconds,
                       "val_curve": json.dumps([[step, round(100 * score, 3)] for step, score in run.curve])})
            timing[f"comp_s_per_step_{method}"] = run.seconds / max(run.steps, 1)
        print(f"{name} seed {s.seed} draw {draw.index}: as made {100 * headline(draw.made['test']):.2f} % -> "
              + ", ".join(f"{COMPENSATION_LABELS[m]} {100 * headline(draw.compensated[m]['test']):.2f} %"
                          for m in draw.compensated), flush=True)
    timings[name] = timing


def curves_chart(frame: pl.DataFrame, path: Path) -> None:
    """The validation curve every fine-tune was stopped on: one line per seed and draw."""
    import altair as alt

    points = [{"system": r["system"], "method": r["method"], "run": f"s{r['seed']} d{r['draw']}", "step": step,
               "val_pct": score}
              for r in frame.filter(pl.col("val_curve").is_not_null()).iter_rows(named=True)
              for step, score in json.loads(r["val_curve"])]
    if not points:
        return
    chart = alt.Chart(pl.DataFrame(points).to_pandas()).mark_line(point=True, opacity=0.8).encode(
        x=alt.X("step:Q", title="fine-tuning step"),
        y=alt.Y("val_pct:Q", title="validation % (fabricated optics)", scale=alt.Scale(zero=False)),
        color=alt.Color("run:N", title="seed, draw"), tooltip=["system", "method", "run", "step", "val_pct"])
    chart.properties(width=260, height=200).facet(column=alt.Column("method:N", title=None),
                                                  row=alt.Row("system:N", title=None)).properties(
        title="Compensation: validation through the fabricated optics, per seed and draw").save(str(path))


def table_markdown(frame: pl.DataFrame, s: Settings, seconds: float, command: str) -> str:
    lines = [f"Command: `{command}` ({seconds / 60:.1f} min wall on this machine)", "",
             f"Model: NTKD, {s.epochs:g} epochs{f' (capped at {s.train_steps} steps)' if s.train_steps else ''}. "
             f"Compensation: backend only, {s.fraction:.0%} of the training split, at most {s.comp_steps} AdamW steps "
             f"{f'(NTKD fine-tune with {dict(s.comp_weights)} over the training weights) ' if s.comp_weights else ''}"
             f"(lr 1e-3), stopped early on validation seen through the same fabricated optics. "
             f"Per system: seeds {', '.join(map(str, s.seeds))}, each its own trained model and {s.draws} kernel-level "
             "fabrication draws; mean ± std over every seed and draw (the ideal row: over seeds).", ""]
    for name, group in frame.group_by("system", maintain_order=True):
        row = group.row(0, named=True)
        gain = (f"per signed kernel with ±{100 * row['gain_residual']:.0f} % per half" if row["gain_shared"]
                else "per sub-optic")
        lines.append(f"- {name[0]} errors ({s.errors} model, x {s.magnitude:g}): gain U[{row['gain_low']:.2f}, {row['gain_high']:.2f}] {gain}, shift "
                     f"U[±{row['shift_px']:.2f}] kernel px per sub-optic, smooth distortion "
                     f"{100 * row['distortion_rel']:.0f} % signed-kernel error, kernel noise σ = "
                     f"{100 * row['kernel_sigma_rel']:.0f} % of max|k|, chromatic blur {row['chromatic_blur_px']:.2f} px "
                     f"(R, B); scored on {row['n_test']} test images")
    methods = ["ideal", *(COMPENSATION_LABELS[m] for m in ("none", "task", "ntkd"))]
    rows = []
    for (name,), group in frame.group_by("system", maintain_order=True):
        cell = lambda method: mean_std(group.filter(pl.col("method") == method)["test_accuracy_pct"].to_list())
        paper = " / ".join(f"{v:g}" for v in PAPER[name]) if name in PAPER else "–"
        rows.append([name, group["dataset"][0], *map(cell, methods), paper])
    lines += ["", *markdown_table(["system", "data", *(f"{m} %" for m in methods), "paper (fabricated)"], rows)]
    gained = recovery(frame)
    rows = []
    for (name, method), group in gained.group_by(["system", "method"], maintain_order=True):
        capped = int((group["steps"] >= s.comp_steps).sum())
        rows.append([name, method, mean_std((100 * group["recovered"]).to_list()),
                     f"{group['best_step'].median():g}", f"{capped} of {len(group)}"])
    paper = {k: f"{(v[1] - v[0]) / (PAPER_IDEAL[k] - v[0]):.0%} / {(v[2] - v[0]) / (PAPER_IDEAL[k] - v[0]):.0%}"
             for k, v in PAPER.items()}
    lines += ["", "Share of the fabrication drop won back, (fine-tuned − as made) / (ideal − as made), per seed and "
              "draw; the step whose backend was kept; how many fine-tunes ran to the step cap (not stopped by "
              "validation). Paper (task-loss / NTKD): " + "; ".join(f"{k} {v}" for k, v in paper.items()) + ".", "",
              *markdown_table(["system", "fine-tune", "drop recovered % (mean ± std)", "kept step (median)",
                               "ran to the cap"], rows)]
    return "\n".join(lines) + "\n"


# --- accuracy vs error magnitude ----------------------------------------------------------------

def run_sweep(s: Settings, out: Path, device: str, physical: bool, timings: dict) -> pl.DataFrame:
    table = RunTable(out / "table4_magnitude.parquet")
    for name in s.systems:
        system, data, teacher, model, test, timing = trained_model(name, s, out, device)
        ideal = headline(evaluate(model, test, data.task, device=device))
        base_errors = default_kernel_errors(system.design.colours, s.errors)
        for scale in s.scales:
            check = monte_carlo(model, base_errors.scaled(scale), draws=s.draws, seed=s.seed, task=data.task,
                                score_on={"test": test}, device=device)
            table.add(_sweep_row(name, data.name, "kernel", scale, scale, ideal, check))
            print(f"{name} kernel x{scale:g}: {_spread_text(check)}", flush=True)
        if physical:
            table.extend(physical_curve(name, system, data, teacher, model, test, s, device, timing))
        timings[name] = {**timings.get(name, {}), **timing}
    return table.frame


def error_terms(s: Settings, out: Path, device: str) -> pl.DataFrame:
    """Which kernel-level error costs the accuracy: every SPEC §4 default term alone (x
    ``s.magnitude``), the gain also shared by a kernel's two halves, against all terms together."""
    table = RunTable(out / "table4_terms.parquet")
    for name in s.systems:
        system, data, _, model, test, _ = trained_model(name, s, out, device)
        ideal = headline(evaluate(model, test, data.task, device=device))
        full = default_kernel_errors(system.design.colours, s.errors).scaled(s.magnitude)
        none = dict(gain_range=(1.0, 1.0), shift_px=0.0, kernel_sigma_rel=0.0)
        terms = {"all terms": full,
                 "all terms, gain shared by K⁺/K⁻": dataclasses.replace(full, gain_shared=True),
                 "gain only": dataclasses.replace(full, **{**none, "gain_range": full.gain_range}),
                 "gain only, shared by K⁺/K⁻": dataclasses.replace(full, **{**none, "gain_range": full.gain_range},
                                                                   gain_shared=True),
                 "shift only": dataclasses.replace(full, **{**none, "shift_px": full.shift_px}),
                 "kernel noise only": dataclasses.replace(full, **{**none, "kernel_sigma_rel": full.kernel_sigma_rel})}
        for term, errors in terms.items():
            check = monte_carlo(model, errors, draws=s.draws, seed=s.seed, task=data.task, score_on={"test": test},
                                device=device)
            table.add({**_sweep_row(name, data.name, "kernel", s.magnitude, s.magnitude, ideal, check), "error": term})
            print(f"{name} {term}: {_spread_text(check)}", flush=True)
    return table.frame


def physical_curve(name, system, data, teacher, model, test, s: Settings, device: str, timing: dict) -> list[dict]:
    """Realise the trained kernels by inverse design, retrain the backend on the realised PSFs,
    then Monte Carlo over pillar-width errors: random ``scales x width_sigma_nm`` per design
    sample, and a systematic ``scales x width_bias_nm`` on every pillar (no misalignment: the width
    error alone)."""
    design = model.design.with_(mask_res=s.mask_res.get(name, model.design.mask_res))
    design.check(image_size=data.image_size)  # InfeasibleDesign says which mask_res would do
    model = copy.deepcopy(model)
    model.design = design  # the same trained network, realised at this mask resolution
    start = time.perf_counter()
    realisation = realise_design(model, steps=s.design_steps, chunk=s.design_chunk,
                                 generator=torch.Generator().manual_seed(s.seed), frame=s.imaging == "frame")
    timing["design_s_per_step"] = (time.perf_counter() - start) / s.design_steps
    timing["padded_res"] = design.geometry().padded_res
    realised = freeze_realised(model, realisation, chunk=s.design_chunk)
    as_designed = headline(evaluate(realised, test, data.task, device=device))
    if s.retrain_epochs > 0:  # the whole training split, stopped on validation through the realised optics
        retrain = CompensationConfig(fraction=1.0, steps=_epoch_steps(s.retrain_epochs, len(data.train)), eval_every=50)
        compensate(realised, data.train, data.task, teacher=teacher, method="ntkd", config=retrain, val=data.val,
                   base=training_config(name, s), seed=s.seed, device=device)
    ideal = headline(evaluate(realised, test, data.task, device=device))
    kernel_error = realisation.mean("kernel_error")
    print(f"{name} realised at mask_res {design.mask_res}: kernel error {kernel_error:.3f}, accuracy "
          f"{100 * as_designed:.2f} % as designed, after backend retraining {100 * ideal:.2f} %", flush=True)
    kinds = {"width σ": lambda scale: PhysicalErrors(width_sigma_nm=scale * s.width_sigma_nm, misalignment_px=0.0),
             "width bias": lambda scale: PhysicalErrors(width_sigma_nm=0.0, width_bias_nm=scale * s.width_bias_nm,
                                                        misalignment_px=0.0)}
    rows = []
    for kind, make in kinds.items():
        for scale in s.scales:
            errors = make(scale)
            check = monte_carlo(realised, errors, draws=s.draws, seed=s.seed, task=data.task, score_on={"test": test},
                                realisation=realisation, chunk=s.design_chunk, device=device)
            magnitude = errors.width_sigma_nm if kind == "width σ" else errors.width_bias_nm
            rows.append({**_sweep_row(name, data.name, "physical", scale, magnitude, ideal, check), "error": kind,
                         "mask_res": design.mask_res, "kernel_error": kernel_error,
                         "accuracy_as_designed_pct": 100 * as_designed})
            timing["physical_draw_s"] = check.seconds_made / s.draws
            print(f"{name} {kind} {magnitude:g} nm: {_spread_text(check)} (ideal {100 * ideal:.2f} %)", flush=True)
    return rows


def _spread_text(check: MonteCarloResult) -> str:
    spread = check.made("test")
    return f"{100 * spread.mean:.2f} ± {100 * spread.std:.2f} % ({check.seconds_made:.0f} s)"


def _sweep_row(name, dataset, level, scale, magnitude, ideal: float, check: MonteCarloResult) -> dict:
    spread = check.made("test")
    return {"system": name, "dataset": dataset, "level": level, "error": "x defaults", "scale": scale,
            "magnitude": magnitude, "ideal_pct": 100 * ideal, "mean_pct": 100 * spread.mean,
            "std_pct": 100 * spread.std, "p5_pct": 100 * spread.p5, "drop_pct": 100 * (ideal - spread.mean),
            "draws": len(check.draws), "seconds": check.seconds_made}


def sweep_chart(frame: pl.DataFrame, path: Path) -> None:
    import altair as alt

    data = frame.with_columns(lo=pl.col("mean_pct") - pl.col("std_pct"), hi=pl.col("mean_pct") + pl.col("std_pct"))
    panels = []
    for level, title in (("kernel", "kernel-level errors (x the calibrated defaults)"),
                         ("physical", "pillar-width error (nm), realised system: dashed random σ, solid systematic bias")):
        part = data.filter(pl.col("level") == level).to_pandas()
        if not len(part):
            continue
        base = alt.Chart(part).encode(x=alt.X("magnitude:Q", title=title), color=alt.Color("system:N"))
        band = base.mark_area(opacity=0.15).encode(y="lo:Q", y2="hi:Q", detail="error:N")
        line = base.mark_line(point=True).encode(
            y=alt.Y("mean_pct:Q", title="test accuracy % (mean ± std)", scale=alt.Scale(domain=[0, 100])),
            strokeDash=alt.StrokeDash("error:N", title="error", legend=None,
                                        scale=alt.Scale(domain=["x defaults", "width σ", "width bias"],
                                                        range=[[1, 0], [6, 3], [1, 0]])),
            tooltip=list(part.columns))
        panels.append((band + line).properties(width=320, height=240))
    alt.hconcat(*panels).properties(title="Accuracy vs fabrication error").save(str(path))


def sweep_markdown(frame: pl.DataFrame, s: Settings, seconds: float, command: str) -> str:
    lines = [f"Command: `{command}` ({seconds / 60:.1f} min wall on this machine)", "",
             f"{s.draws} draws per point, seed {s.seed}. Kernel level: scale x the calibrated kernel-level errors "
             f"(`onn.fabrication.default_kernel_errors`: gain U[0.8, 1.2] per signed kernel with ±2 % per half, "
             f"shift ±0.25 kernel px, a smooth distortion of 5 % (mono) / 15 % (RGB) signed-kernel error). Physical: "
             f"pillar-width error, no misalignment, on the inverse-designed system ({s.design_steps} design steps) "
             f"after backend retraining, imaged {'full-frame (onn.optics.frame)' if s.imaging == 'frame' else 'in the kernel-window model'}: "
             f"random width σ per design sample, or a systematic width bias on every pillar.", "",
             "| system | level | error | magnitude | ideal % | mean ± std % | p5 % | drop (pp) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in frame.iter_rows(named=True):
        unit = "x" if row["level"] == "kernel" else " nm"
        lines.append(f"| {row['system']} | {row['level']} | {row['error']} | {row['magnitude']:g}{unit} | "
                     f"{row['ideal_pct']:.2f} | "
                     f"{row['mean_pct']:.2f} ± {row['std_pct']:.2f} | {row['p5_pct']:.2f} | {row['drop_pct']:.2f} |")
    return "\n".join(lines) + "\n"


def terms_markdown(frame: pl.DataFrame, s: Settings, seconds: float, command: str) -> str:
    lines = [f"Command: `{command}` ({seconds / 60:.1f} min wall on this machine)", "",
             f"{s.draws} draws per row, seed {s.seed}, SPEC §4 default kernel-level errors x {s.magnitude:g}, "
             f"no compensation.", "", "| system | errors | ideal % | mean ± std % | drop (pp) |", "|---|---|---|---|---|"]
    for row in frame.iter_rows(named=True):
        lines.append(f"| {row['system']} | {row['error']} | {row['ideal_pct']:.2f} | {row['mean_pct']:.2f} ± "
                     f"{row['std_pct']:.2f} | {row['drop_pct']:.2f} |")
    return "\n".join(lines) + "\n"


def merge_sweeps(folders: list[Path], out: Path, s: Settings, command: str) -> None:
    """One chart and one table from several finished ``--sweep-magnitude`` runs (their Parquet rows)."""
    missing = [f for f in folders if not (f / "table4_magnitude.parquet").exists()]
    if missing:
        raise SystemExit(f"no table4_magnitude.parquet in {', '.join(map(str, missing))}; run --sweep-magnitude there first")
    frame = pl.concat([pl.read_parquet(f / "table4_magnitude.parquet") for f in folders], how="diagonal_relaxed")
    sweep_chart(frame, out / "table4_magnitude.png")
    sources = ", ".join(str(f) for f in folders)
    (out / "table4_magnitude.md").write_text(sweep_markdown(frame, s, 0.0, command).replace(
        " (0.0 min wall on this machine)", f" (merged from {sources})"))
    print(f"wrote {out / 'table4_magnitude.png'} and {out / 'table4_magnitude.md'} from {len(frame)} rows")


# --- wall-time estimate ------------------------------------------------------------------------

def estimate_full(timings: dict, measured: Settings, full: Settings, sweep: bool) -> str:
    """Extrapolate the measured per-step / per-image costs to ``full`` settings (rough: linear in
    steps, images and draws; inverse design and physical draws scale with padded_res² x kernels)."""
    lines = []
    for name, t in timings.items():
        system = SYSTEMS[name]
        data = load_dataset(system.dataset)
        steps = _epoch_steps
        eval_s = t["eval_s_per_image"] * (len(data.test) if full.test_limit is None else full.test_limit)
        train = t["train_s_per_step"] * steps(full.epochs, len(data.train))
        comp_steps = full.comp_steps
        total = train
        if not sweep:
            comp = sum(t.get(f"comp_s_per_step_{m}", 0.0) for m in ("task", "ntkd")) * comp_steps
            total += full.draws * (5 * eval_s + comp)  # as made, then before + after each fine-tune
        else:
            total += len(full.scales) * (full.draws + 1) * eval_s
            if "design_s_per_step" in t:
                design = system_design(system)
                full_design = design.with_(mask_res=full.mask_res.get(name, design.mask_res))
                grow = (full_design.geometry().padded_res / t["padded_res"]) ** 2
                total += t["design_s_per_step"] * grow * full.design_steps
                total += len(full.scales) * (full.draws * t["physical_draw_s"] * grow + (full.draws + 1) * eval_s)
                total += t["train_s_per_step"] * steps(full.retrain_epochs, len(data.train))  # backend-only: an upper bound
        lines.append(f"  {name}: ~{total / 60:.0f} min (training ~{train / 60:.0f} min)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", nargs="+", default=["mono", "poly"], choices=sorted(SYSTEMS))
    parser.add_argument("--epochs", type=float, default=6.0, help="NTKD training epochs (default 6)")
    parser.add_argument("--draws", type=int, default=5, help="fabrication draws per point (>= 3 for a spread)")
    parser.add_argument("--magnitude", type=float, default=1.0, help="table mode: x the SPEC §4 default errors")
    parser.add_argument("--comp-steps", type=int, default=CompensationConfig.steps,
                        help="fine-tuning: at most this many optimiser steps, stopped early on validation "
                             f"(default {CompensationConfig.steps})")
    parser.add_argument("--fraction", type=float, default=0.10, help="fraction of the training split for fine-tuning")
    parser.add_argument("--sweep-magnitude", action="store_true", help="accuracy vs error magnitude curves + chart")
    parser.add_argument("--scales", nargs="+", type=float, default=[0.0, 0.5, 1.0, 2.0, 4.0])
    parser.add_argument("--no-physical", action="store_true", help="sweep: skip the inverse-designed width-error curve")
    parser.add_argument("--width-sigma-nm", type=float, default=10.0, help="random width error at scale 1 (nm)")
    parser.add_argument("--width-bias-nm", type=float, default=10.0, help="systematic width error at scale 1 (nm)")
    parser.add_argument("--design-steps", type=int, default=300, help="inverse-design steps per kernel chunk")
    parser.add_argument("--design-chunk", type=int, default=4, help="kernels designed together (bounds memory)")
    parser.add_argument("--mask-res", nargs="*", default=[], metavar="SYSTEM=RES",
                        help="override a preset's mask_res, e.g. mono=152 poly=224 (the smallest valid)")
    parser.add_argument("--retrain-epochs", type=float, default=1.0,
                        help="NTKD epochs retraining the backend on the realised PSFs, stopped early on "
                             "validation (0: none)")
    parser.add_argument("--test-limit", type=int, default=None, help="score on the first N test images only")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny budgets everywhere, minutes")
    parser.add_argument("--terms", action="store_true",
                        help="which kernel-level error term costs the accuracy: each alone, at --magnitude")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="DIR",
                        help="no run: draw one chart (and table) into --out from the table4_magnitude.parquet of "
                             "earlier --sweep-magnitude runs in these folders (e.g. one per system)")
    parser.add_argument("--errors", choices=["calibrated", "uncalibrated"], default="calibrated",
                        help="kernel-level error model: calibrated (the default) or the SPEC §4 first guess "
                             "(onn.fabrication.default_kernel_errors)")
    parser.add_argument("--comp-weights", nargs="*", default=[], metavar="KEY=VALUE",
                        help="the NTKD fine-tune's loss weights (onn.train.TrainConfig fields) instead of the "
                             "training's, e.g. ntk_beta=1 ntk_centre=true ntk_normalise=frobenius")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0],
                        help="table mode: one trained model (and its draws) per seed; the other modes use the first")
    parser.add_argument("--models", type=Path, default=None,
                        help="folder whose models/ holds trained students to start from, e.g. a Table 3 run's --out "
                             "(default: --out); a missing one is trained there")
    parser.add_argument("--imaging", choices=["window", "frame"], default="window",
                        help="physical level: each PSF in its kernel window (the figures before 2026-11-30) or the "
                             "full sensor frame with crosstalk (onn.optics.frame)")
    add_run_arguments(parser, "results/table4")
    args = parse_and_start(parser, argv)
    try:
        mask_res = {k: int(v) for k, v in (item.split("=") for item in args.mask_res)}
    except ValueError:
        parser.error(f"--mask-res takes SYSTEM=RES pairs like mono=152, got {args.mask_res}")
    full = Settings(tuple(args.systems), args.epochs, None, args.draws, args.magnitude, args.comp_steps,
                    args.fraction, tuple(args.scales), args.width_sigma_nm, args.width_bias_nm, args.design_steps, args.design_chunk,
                    mask_res, args.retrain_epochs, args.test_limit, tuple(args.seeds), args.imaging, args.models,
                    args.errors, tuple(assignments(args.comp_weights, "--comp-weights").items()))
    settings = full
    if args.quick:
        settings = dataclasses.replace(full, epochs=1.0, train_steps=30, draws=min(args.draws, 3), comp_steps=5,
                                       design_steps=min(args.design_steps, 5), retrain_epochs=min(args.retrain_epochs, 0.02),
                                       mask_res={"mono": 152, "poly": 224, **mask_res}, test_limit=args.test_limit or 500)
    args.out.mkdir(parents=True, exist_ok=True)
    command = command_line("explore.experiments.table4")
    if args.merge:
        merge_sweeps(args.merge, args.out, settings, command)
        return
    start = time.perf_counter()
    timings: dict[str, dict] = {}
    if args.terms:
        frame = error_terms(settings, args.out, args.device)
        text = terms_markdown(frame, settings, time.perf_counter() - start, command)
        (args.out / "table4_terms.md").write_text(text)
    elif args.sweep_magnitude:
        frame = run_sweep(settings, args.out, args.device, not args.no_physical, timings)
        text = sweep_markdown(frame, settings, time.perf_counter() - start, command)
        (args.out / "table4_magnitude.md").write_text(text)
        sweep_chart(frame, args.out / "table4_magnitude.png")
    else:
        frame = run_table(settings, args.out, args.device, timings)
        text = table_markdown(frame, settings, time.perf_counter() - start, command)
        (args.out / "table4.md").write_text(text)
        curves_chart(frame, args.out / "table4_curves.png")
    print(text)
    if args.quick:
        print("Estimated wall time of the same command without --quick, on this machine:")
        print(estimate_full(timings, settings, full, args.sweep_magnitude))


if __name__ == "__main__":
    main()
