"""Reproduce the paper's Table 5 (random PSF frontends vs the infinite-width ceiling) and calibrate
the pre-training accuracy estimator against trained designs.

    python -m explore.experiments.table5 --systems mono poly --kernels 8 500 1000 --epochs 5
    python -m explore.experiments.table5 --calibration --epochs 2
    python -m explore.experiments.table5 --quick [--calibration]     # smoke run, a few minutes

Table 5: for each system (a preset + its dataset, `explore.systems.SYSTEMS`) and kernel count, a
hybrid whose optical layer is frozen to random non-negative PSF halves (kernel level, sensor on;
`onn.estimator.random_halves`) has its digital backend trained with the task loss (``fit(...,
parameters=model.backend_parameters())``, method none). Beside it: the estimator's design-aware
value for the same design (`onn.estimator.design_accuracy`: random frontends, the empirical NTK of
the backend) and the infinite-width ceiling (`onn.estimator.ceiling_accuracy`), which is the ∞
column. Designs with hundreds of kernels are built at kernel level with an aperture just large
enough for them; the physical checks (`Design.check`) are skipped there, because a 1000-kernel
metasurface is beyond what our physics simulates at once. Paper (Xiang et al. 2025, Table 5), MNIST:
8 / 500 / 1000 / ∞ kernels = 96.12 / 96.81 / 97.24 / 97.72 %.

Calibration: a fixed spread of designs over aperture (so kernel count), mask resolution,
wavelength set and backend depth, each estimated (`estimate_accuracy`, no ceiling) and trained with
NTKD; reports the Spearman rank correlation between estimate and trained test accuracy, a scatter
plot, and the estimator's median cost as a fraction of one trained trial of the same design.

Writes ``<out>/table5.{parquet,md}`` or ``<out>/calibration.{parquet,md,png}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import time
from pathlib import Path

import polars as pl
import torch

from explore.experiments.common import add_run_arguments, parse_and_start
from explore.systems import SYSTEMS, build_student, load_system
from onn.data import TaskData, load_dataset
from onn.design import Design
from onn.estimator import (DEFAULT_N_FRONTENDS, DEFAULT_N_TRAIN, DEFAULT_N_VAL, ceiling_accuracy,
                           design_accuracy, estimate_accuracy, random_halves, subsample)
from onn.models import HybridONN
from onn.optics.validity import InfeasibleDesign
from onn.train import TrainConfig, fit

PAPER = {"mono": {8: 96.12, 500: 96.81, 1000: 97.24, "inf": 97.72}}
KERNELS = (8, 500, 1000)


def aperture_for(design: Design, n_kernels: int) -> float:
    """`Design.aperture_for` rounded up to 0.1 mm, and never smaller than the design's own."""
    return max(design.aperture_mm, math.ceil(design.aperture_for(n_kernels) * 10 + 1e-6) / 10)


def random_frozen_hybrid(design: Design, data: TaskData, seed: int) -> HybridONN:
    """A kernel-level hybrid whose optics are frozen to random non-negative halves."""
    model = HybridONN(design, in_channels=data.channels, image_size=data.image_size, n_outputs=data.n_classes,
                      generator=torch.Generator().manual_seed(seed))
    model.optics[0].freeze_to(random_halves(design, torch.Generator().manual_seed(seed + 7919)))
    return model


def table5(systems: list[str], kernels: list[int], config: TrainConfig, *, n_train: int, n_val: int,
           n_frontends: int, seed: int, out: Path, device: str) -> pl.DataFrame:
    rows = []
    for name in systems:
        system = SYSTEMS[name]
        data = load_dataset(system.dataset)
        sample = subsample(data, n_train=n_train, n_val=min(n_val, len(data.val)), seed=seed)
        begin = time.perf_counter()
        top, _ = ceiling_accuracy(system.design, data, sample, seed=seed, device=device)
        ceiling_s = time.perf_counter() - begin
        print(f"{name}: ∞-width ceiling {100 * top.score_accuracy:.2f} % (n_train {n_train}, λ {top.ridge:g}, "
              f"{ceiling_s:.0f} s)", flush=True)
        for n in kernels:
            design = system.design.with_(n_kernels=n, aperture_mm=aperture_for(system.design, n))
            begin = time.perf_counter()
            estimates = design_accuracy(design, sample, data.n_classes, n_frontends=n_frontends, seed=seed,
                                        device=device)
            estimate_s = time.perf_counter() - begin
            model = random_frozen_hybrid(design, data, seed)
            result = fit(model, data.train, task=data.task, config=dataclasses.replace(config, method="task", seed=seed),
                         evaluate_on={"val": data.val, "test": data.test}, parameters=model.backend_parameters(),
                         device=device, label=f"{name} {n} random kernels")
            rows.append({"system": name, "dataset": system.dataset, "kernels": n,
                         "trained_test_accuracy_pct": 100 * result.test_metric,
                         "trained_val_accuracy_pct": 100 * result.val_metric,
                         "estimate_pct": 100 * statistics.fmean(r.score_accuracy for r in estimates),
                         "ceiling_pct": 100 * top.score_accuracy, "paper_pct": PAPER.get(name, {}).get(n),
                         "paper_ceiling_pct": PAPER.get(name, {}).get("inf"), "epochs": config.epochs,
                         "steps": result.steps, "train_s": result.seconds, "estimate_s": estimate_s,
                         "ceiling_s": ceiling_s, "n_train_estimator": n_train, "n_val_estimator": n_val,
                         "ceiling_ridge": top.ridge})
            print(f"{name} {n:>5} random kernels: trained {100 * result.test_metric:.2f} %, estimate "
                  f"{rows[-1]['estimate_pct']:.2f} % ({result.seconds:.0f} s train, {estimate_s:.1f} s estimate)",
                  flush=True)
            out.mkdir(parents=True, exist_ok=True)
            pl.DataFrame(rows).write_parquet(out / "table5.parquet")  # after every run: a crash keeps the rest
    return pl.DataFrame(rows)


def markdown_table5(frame: pl.DataFrame, header: str) -> str:
    lines = [header, "", "| system | data | kernels | trained backend, random PSFs % | design-aware estimate % "
                         "| ∞-width ceiling % | paper % (this / ∞) | train s |", "|---|---|---|---|---|---|---|---|"]
    for row in frame.iter_rows(named=True):
        paper = f"{row['paper_pct']} / {row['paper_ceiling_pct']}" if row["paper_pct"] else "–"
        lines.append(f"| {row['system']} | {row['dataset']} | {row['kernels']} | {row['trained_test_accuracy_pct']:.2f} | "
                     f"{row['estimate_pct']:.2f} | {row['ceiling_pct']:.2f} | {paper} | {row['train_s']:.0f} |")
    return "\n".join(lines) + "\n"


# --- calibration -----------------------------------------------------------------------------------

def calibration_designs(base: Design) -> list[Design]:
    """12 designs spread over aperture (4-24 kernels from the layout), mask resolution, wavelength
    set and backend depth; the rest of ``base`` (sub-optic size, kernel size, pool) is kept."""
    grid = [  # aperture_mm, mask_res, wavelengths, hidden
        (1.4, 192, "mono", (128,)), (2.0, 256, "mono", (128,)), (2.6, 384, "mono", (128,)),
        (3.5, 256, "mono", (128,)), (1.4, 256, "rgb", (64,)), (2.0, 192, "rgb", (128, 64)),
        (2.6, 256, "rgb", (128,)), (3.5, 192, "rgb", (64,)), (1.4, 384, "mono", (128, 64)),
        (2.0, 384, "gb", (64,)), (2.6, 192, "rg", (128, 64)), (3.5, 384, "mono", (32,)),
    ]
    return [base.with_(aperture_mm=a, mask_res=m, wavelengths=w, hidden=h, n_kernels=None) for a, m, w, h in grid]


def calibration(system_name: str, designs: list[Design], config: TrainConfig, *, n_train: int, n_val: int,
                n_frontends: int, seed: int, out: Path, device: str) -> pl.DataFrame:
    system, data, teacher = load_system(system_name, device=device)
    rows = []
    for i, design in enumerate(designs):
        try:
            design.check(image_size=data.image_size)
        except InfeasibleDesign as exc:
            print(f"design {i} skipped: {exc}", flush=True)
            continue
        estimate = estimate_accuracy(design, data, n_train=n_train, n_val=n_val, n_frontends=n_frontends,
                                     seed=seed, ceiling=False, device=device)
        model = build_student(design, data, seed=seed)
        result = fit(model, data.train, task=data.task, config=dataclasses.replace(config, method="ntkd", seed=seed),
                     evaluate_on={"val": data.val, "test": data.test}, teacher=teacher, device=device,
                     label=f"calibration {i}")
        rows.append({"design": i, "aperture_mm": design.aperture_mm, "mask_res": design.mask_res,
                     "wavelengths": design.wavelengths, "hidden": "x".join(map(str, design.hidden)),
                     "n_kernels": design.kernels(), "estimate": estimate.design, "estimate_std": estimate.design_std,
                     "estimate_s": estimate.seconds_design, "trained_test_accuracy": result.test_metric,
                     "train_s": result.seconds, "cost_ratio": estimate.seconds_design / result.seconds,
                     "epochs": config.epochs, "steps": result.steps})
        print(f"design {i}: {design.kernels()} kernels {design.wavelengths} mask {design.mask_res} hidden "
              f"{design.hidden}: estimate {100 * estimate.design:.2f} % ({estimate.seconds_design:.1f} s), "
              f"trained {100 * result.test_metric:.2f} % ({result.seconds:.0f} s)", flush=True)
        out.mkdir(parents=True, exist_ok=True)
        pl.DataFrame(rows).write_parquet(out / "calibration.parquet")
    return pl.DataFrame(rows)


def rescore(trained: pl.DataFrame, system_name: str, designs: list[Design], *, n_train: int, n_val: int,
            n_frontends: int, seed: int, device: str) -> pl.DataFrame:
    """A calibration frame whose estimates (and their cost) are recomputed with the current
    estimator; the trained accuracies and training times in ``trained`` are kept. The estimator
    changes far more often than the trained designs, which cost an hour to retrain."""
    _, data, _ = load_system(system_name, device=device)
    rows = []
    for r in trained.iter_rows(named=True):
        design = designs[r["design"]]
        estimate = estimate_accuracy(design, data, n_train=n_train, n_val=n_val, n_frontends=n_frontends,
                                     seed=seed, ceiling=False, device=device)
        rows.append({**r, "estimate": estimate.design, "estimate_std": estimate.design_std,
                     "estimate_s": estimate.seconds_design, "cost_ratio": estimate.seconds_design / r["train_s"]})
        print(f"design {r['design']}: estimate {100 * estimate.design:.2f} % ({estimate.seconds_design:.1f} s), "
              f"trained {100 * r['trained_test_accuracy']:.2f} %", flush=True)
    return pl.DataFrame(rows)


def calibration_report(frame: pl.DataFrame, out: Path, header: str) -> str:
    from scipy.stats import spearmanr

    rho, p_value = spearmanr(frame["estimate"].to_list(), frame["trained_test_accuracy"].to_list())
    ratio = statistics.median(frame["cost_ratio"].to_list())
    scatter_png(frame, out / "calibration.png", rho)
    lines = [header, "", f"Spearman ρ(estimate, trained) = {rho:.3f} (p = {p_value:.3g}, {len(frame)} designs); "
                         f"estimator median cost = {100 * ratio:.2f} % of one trained trial.", "",
             "| design | kernels | aperture mm | mask | λ set | hidden | estimate % | trained % | est. s | train s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in frame.iter_rows(named=True):
        lines.append(f"| {r['design']} | {r['n_kernels']} | {r['aperture_mm']} | {r['mask_res']} | {r['wavelengths']} | "
                     f"{r['hidden']} | {100 * r['estimate']:.2f} | {100 * r['trained_test_accuracy']:.2f} | "
                     f"{r['estimate_s']:.1f} | {r['train_s']:.0f} |")
    return "\n".join(lines) + "\n"


def scatter_png(frame: pl.DataFrame, path: Path, rho: float) -> None:
    import altair as alt
    import vl_convert as vlc

    chart = alt.Chart(frame).mark_circle(size=90).encode(
        x=alt.X("estimate:Q", title="design-aware estimate (accuracy)", scale=alt.Scale(zero=False)),
        y=alt.Y("trained_test_accuracy:Q", title="trained test accuracy (NTKD)", scale=alt.Scale(zero=False)),
        color=alt.Color("wavelengths:N"), size=alt.Size("n_kernels:Q"),
        tooltip=["design", "n_kernels", "aperture_mm", "mask_res", "wavelengths", "hidden", "estimate",
                 "trained_test_accuracy"],
    ).properties(title=f"Estimator calibration: Spearman ρ = {rho:.2f}", width=420, height=320)
    path.write_bytes(vlc.vegalite_to_png(chart.to_json(), scale=2))


# --- cost of the full runs, measured on a few steps ---------------------------------------------

def seconds_per_step(model: HybridONN, data: TaskData, config: TrainConfig, teacher=None, parameters=None,
                     steps: int = 2, probe_batch: int = 16) -> float:
    """Seconds per training step of ``model`` at ``config.batch_size``, timed on ``steps`` steps of
    ``probe_batch`` samples after one warm-up step and scaled linearly (keeps the probe's memory low)."""
    probe = dataclasses.replace(config, batch_size=probe_batch, max_steps=1)
    fit(model, data.train, task=data.task, config=probe, teacher=teacher, parameters=parameters, log=None)
    result = fit(model, data.train, task=data.task, config=dataclasses.replace(probe, max_steps=steps),
                 teacher=teacher, parameters=parameters, log=None)
    return result.seconds / steps * config.batch_size / probe_batch


def full_run_estimate(systems: list[str], kernels: list[int], epochs: float, calibration_epochs: float,
                      device: str) -> list[str]:
    """Projected single-thread wall time of the full Table 5 and calibration runs, from timed steps."""
    lines, total = [], 0.0
    for name in systems:
        system, data = SYSTEMS[name], load_dataset(SYSTEMS[name].dataset)  # no teacher: Table 5 trains with the task loss
        steps = math.ceil(epochs * math.ceil(len(data.train) / TrainConfig.batch_size))
        for n in kernels:
            design = system.design.with_(n_kernels=n, aperture_mm=aperture_for(system.design, n))
            model = random_frozen_hybrid(design, data, 0)
            per_step = seconds_per_step(model, data, TrainConfig(method="task"), parameters=model.backend_parameters(),
                                        probe_batch=TrainConfig.batch_size if n <= 64 else 16)
            seconds = per_step * steps * 1.15  # + evaluation of val and test (~15 % of an epoch's steps)
            total += seconds
            lines.append(f"table5 {name} {n} kernels: ~{per_step:.2f} s/step x {steps} steps -> ~{seconds / 60:.0f} min")
    system, data, teacher = load_system("mono", device=device)
    steps = math.ceil(calibration_epochs * math.ceil(len(data.train) / TrainConfig.batch_size))
    per_step = seconds_per_step(build_student(system.design, data, 0), data, TrainConfig(method="ntkd"), teacher=teacher,
                                probe_batch=TrainConfig.batch_size)
    calib = per_step * steps * 1.15 * len(calibration_designs(system.design))
    lines.append(f"table5 total: ~{total / 3600:.1f} h, plus the ceilings (see the estimator's cost)")
    lines.append(f"calibration (12 mono-family designs, NTKD {calibration_epochs:g} epochs): ~{per_step:.2f} s/step "
                 f"(mono preset) x {steps} steps x 12 -> ~{calib / 60:.0f} min (designs with more kernels cost more)")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", nargs="+", default=["mono", "poly"], choices=sorted(SYSTEMS))
    parser.add_argument("--kernels", nargs="+", type=int, default=list(KERNELS))
    parser.add_argument("--epochs", type=float, default=5.0, help="backend training epochs (Table 5; default 5)")
    parser.add_argument("--calibration", action="store_true", help="rank-correlation run instead of Table 5")
    parser.add_argument("--calibration-system", default="mono", choices=sorted(SYSTEMS))
    parser.add_argument("--calibration-epochs", type=float, default=2.0, help="NTKD epochs per design (default 2)")
    parser.add_argument("--rescore", type=Path, metavar="PARQUET",
                        help="with --calibration: re-estimate the designs of an earlier calibration.parquet with "
                             "the current estimator, keeping its trained accuracies (no training)")
    parser.add_argument("--n-train", type=int, default=DEFAULT_N_TRAIN,
                        help=f"estimator train subsample (default {DEFAULT_N_TRAIN})")
    parser.add_argument("--n-val", type=int, default=DEFAULT_N_VAL,
                        help=f"estimator validation subsample, half to choose λ, half to score (default {DEFAULT_N_VAL})")
    parser.add_argument("--n-frontends", type=int, default=DEFAULT_N_FRONTENDS)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 8/32 kernels, 0.02 epochs, 300-sample estimator, 4 calibration designs; "
                             "then time a few steps of the full runs and print their projected wall time")
    parser.add_argument("--seed", type=int, default=0)
    add_run_arguments(parser, "results/table5")
    args = parse_and_start(parser, argv)
    kernels, n_train, n_val = args.kernels, args.n_train, args.n_val
    epochs, calibration_epochs = args.epochs, args.calibration_epochs
    if args.quick:
        kernels, n_train, n_val, epochs, calibration_epochs = [8, 32], 300, 200, 0.02, 0.02
    command = "python -m explore.experiments.table5 " + " ".join(sys.argv[1:])
    start = time.perf_counter()
    if args.calibration:
        every = calibration_designs(SYSTEMS[args.calibration_system].design)
        designs = every[::3] if args.quick else every
        sizes = dict(n_train=n_train, n_val=n_val, n_frontends=args.n_frontends, seed=args.seed, device=args.device)
        if args.rescore:
            trained = pl.read_parquet(args.rescore)
            frame = rescore(trained, args.calibration_system, every, **sizes)
            args.out.mkdir(parents=True, exist_ok=True)
            frame.write_parquet(args.out / "calibration.parquet")
            trained_how = f"trained accuracies from {args.rescore} (NTKD {trained['epochs'][0]:g} epochs per design)"
        else:
            frame = calibration(args.calibration_system, designs, TrainConfig(epochs=calibration_epochs, log_every_s=60),
                                out=args.out, **sizes)
            trained_how = f"NTKD {calibration_epochs:g} epochs per design"
        text = calibration_report(frame, args.out, f"Command: `{command}` ({(time.perf_counter() - start) / 60:.1f} "
                                                   f"min wall); {trained_how}; estimator on {n_train} train / "
                                                   f"{n_val} validation samples (λ on half, scored on the other half), {args.n_frontends} frontends.")
        (args.out / "calibration.md").write_text(text)
    else:
        frame = table5(args.systems, kernels, TrainConfig(epochs=epochs, log_every_s=60), n_train=n_train,
                       n_val=n_val, n_frontends=args.n_frontends, seed=args.seed, out=args.out, device=args.device)
        text = markdown_table5(frame, f"Command: `{command}` ({(time.perf_counter() - start) / 60:.1f} min wall); "
                                      f"backend trained {epochs:g} epochs (task loss, optics frozen); estimator on "
                                      f"{n_train} train / {n_val} validation samples (λ on half, scored on the other half).")
        (args.out / "table5.md").write_text(text)
    print(text)
    if args.quick:
        for line in full_run_estimate(args.systems, list(KERNELS), args.epochs, args.calibration_epochs, args.device):
            print(line, flush=True)


if __name__ == "__main__":
    main()
