"""Segmentation on the real nuclei image: the U-Net teacher, the custom polychromatic hybrid with
no transfer / KD / NTKD, and the Otsu threshold, all on the same held-out region; then one
fabricated hybrid, as made and with its backend fine-tuned.

    python -m explore.experiments.segmentation --seeds 0 1 2 --epochs 5
    python -m explore.experiments.segmentation --quick                 # smoke run, 1-2 minutes

Data (`onn.data.segment.nuclei`): 32x32 tiles; train = augmented crops of rows 0-319, val = rows
320-383, test = the 64 tiles that cover rows 384-511 exactly, so every score below is over the same
held-out region (IoU / mIoU / Dice pooled over its pixels, `onn.train.evaluate`). The Otsu
threshold is computed on the test region itself (it needs no labels); its IoU on the full 512x512
image is reported beside it (SPEC §7: 0.717).

Hybrid: the seg preset (`onn.design.PRESETS["seg"]`: 56 RGB 3x3 kernels in groups 8 / 16 / 32 at
1x / 2x / 4x kernel pixels, up-convolution decoder) with decoder widths ``--backend-width`` /2 /4
(the preset's 256 is ~1.2 M parameters; the default here, 64, keeps NTKD within a CPU budget).
Every method trains a freshly initialised hybrid with the same seed, data order, optimiser and
steps; only the loss differs (per-pixel BCE + Dice; KD on soft masks; NTKD on 8x-pooled logits).

Fabrication: the NTKD model of the first seed, ``--draws`` kernel-level draws at the SPEC §4
default errors (RGB: kernel noise 20 % of max|k|, gain U[0.8, 1.2], shift U[-1, 1] px), each
scored as made, then fine-tuned (backend only, optics frozen) on 10 % of the training split with
the task loss and with NTKD.

Writes ``<out>/segmentation.parquet`` (one row per run or draw) and ``<out>/segmentation.md``.

Paper (Xiang et al. 2025, Carvana, mIoU %): U-Net teacher 95.4; simulation no transfer / KD / NTKD
74.3 / 86.7 / 91.5; fabricated 49.7 -> 62.7 (task-loss fine-tune) -> 81.2 (NTKD fine-tune).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

import polars as pl
import torch

from explore.experiments.common import (COMPENSATION_LABELS, RunTable, add_run_arguments, assignments,
                                        command_line, markdown_table, mean_std, ordering, parse_and_start,
                                        recovery)
from explore.systems import SYSTEMS, build_student, system_design
from onn.data import load_dataset
from onn.data.segment import NUCLEI_ROWS, nuclei_image
from onn.design import PRESETS
from onn.energy import hybrid_energy, network_energy
from onn.fabrication import default_kernel_errors
from onn.robustness import CompensationConfig, monte_carlo
from onn.segmentation import mask_metrics, otsu_mask
from onn.teachers import get_teacher
from onn.train import TrainConfig, evaluate, fit

PAPER_MIOU = {"teacher": 95.4, "task": 74.3, "kd": 86.7, "ntkd": 91.5}  # Carvana, simulation
PAPER_FABRICATED_MIOU = {"no compensation": 49.7, "task-loss fine-tune": 62.7, "NTKD fine-tune": 81.2}
METHODS = ("task", "kd", "ntkd")
METHOD_NAMES = {"task": "no transfer (task loss)", "kd": "KD", "ntkd": "NTKD"}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a run depends on (one place, so that the markdown header and the run agree)."""

    seeds: tuple[int, ...]
    methods: tuple[str, ...]
    epochs: float
    max_steps: int | None  # cap on training steps (quick runs)
    batch_size: int
    lr: float
    backend_width: int
    teacher_epochs: float | None  # None: the teacher recipe (cached, shared with sweeps)
    draws: int
    comp_steps: int  # optimiser steps at most, stopped early on validation (onn.robustness.CompensationConfig)
    fraction: float
    ntk_beta: float = SYSTEMS["seg"].transfer.get("ntk_beta", TrainConfig.ntk_beta)
    kd_alpha: float = SYSTEMS["seg"].transfer.get("kd_alpha", TrainConfig.kd_alpha)
    kd_temperature: float = SYSTEMS["seg"].transfer.get("kd_temperature", TrainConfig.kd_temperature)
    ntk_centre: bool = False  # centred, Frobenius-normalised alignment; else uncentred, trace-normalised
    ntk_subbatch: int = TrainConfig.ntk_subbatch  # the Gram's samples: the batch of 8 topped up to this many
    changes: tuple[tuple[str, Any], ...] = ()  # design changes to the hybrid (a constrained regime)

    def train_config(self, method: str, seed: int) -> TrainConfig:
        return TrainConfig(method=method, epochs=self.epochs, max_steps=self.max_steps, batch_size=self.batch_size,
                           lr=self.lr, seed=seed, ntk_beta=self.ntk_beta, kd_alpha=self.kd_alpha,
                           kd_temperature=self.kd_temperature,
                           ntk_centre=self.ntk_centre, ntk_normalise="frobenius" if self.ntk_centre else "trace",
                           ntk_subbatch=self.ntk_subbatch, log_every_s=60)

    def comp_config(self) -> CompensationConfig:
        return CompensationConfig(fraction=self.fraction, steps=self.comp_steps, batch_size=self.batch_size)


def seg_design(backend_width: int, changes: tuple[tuple[str, Any], ...] = ()):
    """The seg preset (56 kernels, 8 / 16 / 32) with decoder widths (w, w/2, w/4), and ``changes``
    (sweep-file parameter names, e.g. n_kernels, read_noise_fs) on top."""
    return system_design(SYSTEMS["seg"], {"n_kernels": PRESETS["seg"].kernels(), "backend_width": backend_width,
                                          **dict(changes)})


def _metric_row(metrics: dict[str, float], prefix: str = "test") -> dict[str, float]:
    return {f"{prefix}_{name}_pct": 100 * value for name, value in metrics.items()}


def otsu_rows() -> list[dict]:
    """Otsu on the held-out (test) region, and on the whole image (SPEC §7's figure)."""
    image, mask = (torch.from_numpy(a) for a in nuclei_image())
    top, bottom = NUCLEI_ROWS["test"]
    rows = []
    for scope, (region, truth) in {"test region": (image[top:bottom], mask[top:bottom]),
                                   "full image": (image, mask)}.items():
        predicted, threshold = otsu_mask(region)
        rows.append({"kind": "otsu", "method": f"Otsu threshold ({scope})", "scope": scope, "seed": -1,
                     "threshold": threshold, **_metric_row(mask_metrics(predicted, truth))})
    return rows


def run(s: Settings, out: Path, device: str) -> pl.DataFrame:
    data = load_dataset("nuclei")
    table = RunTable(out / "segmentation.parquet")
    table.extend(otsu_rows())
    rows = table.rows
    print(f"Otsu: test region IoU {rows[0]['test_iou_pct']:.2f} %, full image IoU {rows[1]['test_iou_pct']:.2f} % "
          f"(SPEC 71.7 %)", flush=True)
    teacher, info = get_teacher("nuclei", "unet", device=device, epochs=s.teacher_epochs)
    example = data.test.tensors[0][:1].to(device)
    table.add({"kind": "teacher", "method": "U-Net teacher", "scope": "test region", "seed": info.seed,
                 "train_s": info.seconds if not info.from_cache else float("nan"),
                 "n_params": sum(p.numel() for p in teacher.parameters()),
                 "energy_pj": network_energy(teacher, example).total_pj,
                 **_metric_row(evaluate(teacher, data.test, data.task, device=device)),
                 **_metric_row(evaluate(teacher, data.val, data.task, device=device), "val")})
    print(f"U-Net teacher ({'cache' if info.from_cache else 'trained'}): test IoU {rows[-1]['test_iou_pct']:.2f} %, "
          f"mIoU {rows[-1]['test_miou_pct']:.2f} %", flush=True)
    design = seg_design(s.backend_width, s.changes)
    ntkd_models = {}
    for seed in s.seeds:
        for method in s.methods:
            model = build_student(design, data, seed=seed)
            result = fit(model, data.train, task=data.task, config=s.train_config(method, seed), teacher=teacher,
                         device=device, label=f"seg s{seed}")
            test = evaluate(model, data.test, data.task, device=device)
            table.add({"kind": "hybrid", "method": method, "scope": "test region", "seed": seed,
                         "train_s": result.seconds, "steps": result.steps, "n_params": result.n_params,
                         "macs": result.macs, "energy_pj": hybrid_energy(model).total_pj,
                         **_metric_row(test), **_metric_row(evaluate(model, data.val, data.task, device=device), "val"),
                         **{f"loss_{k}": v for k, v in result.loss_terms}})
            print(f"hybrid {method:>4} seed {seed}: test IoU {100 * test['iou']:.2f} %, mIoU {100 * test['miou']:.2f} % "
                  f"({result.seconds:.0f} s, {result.steps} steps)", flush=True)
            if method == "ntkd":
                ntkd_models.setdefault(seed, model)
    for seed, model in ntkd_models.items() if s.draws else ():
        table.extend(fabrication_rows(model, seed, data, teacher, s, device))
    return table.frame


def fabrication_rows(model, seed: int, data, teacher, s: Settings, device: str) -> list[dict]:
    """Kernel-level draws of one trained design: as made, task-loss and NTKD backend fine-tune."""
    errors = default_kernel_errors(model.design.colours)
    base = {"kind": "fabricated", "scope": "test region", "seed": seed, "kernel_sigma_rel": errors.kernel_sigma_rel,
            "fraction": s.fraction}
    rows = [{**base, "method": "ideal", "draw": -1, **_metric_row(evaluate(model, data.test, data.task, device=device))}]
    result = monte_carlo(model, errors, draws=s.draws, seed=seed, task=data.task, score_on={"test": data.test},
                         compensations=("task", "ntkd"), train=data.train, val=data.val, teacher=teacher,
                         compensation=s.comp_config(), base=s.train_config("ntkd", seed), device=device)
    for draw in result.draws:
        rows.append({**base, "method": COMPENSATION_LABELS["none"], "draw": draw.index, **_metric_row(draw.made["test"])})
        line = f"fabricated draw {draw.index}: as made mIoU {100 * draw.made['test']['miou']:.2f} %"
        for method, run in draw.fine_tuned.items():
            after = draw.compensated[method]["test"]
            rows.append({**base, "method": COMPENSATION_LABELS[method], "draw": draw.index, "steps": run.steps,
                         "train_s": run.seconds, **_metric_row(after)})
            line += f" -> {COMPENSATION_LABELS[method]} {100 * after['miou']:.2f} %"
        print(line, flush=True)
    return rows


def markdown(frame: pl.DataFrame, s: Settings, seconds: float, command: str) -> str:
    design = seg_design(s.backend_width, s.changes)
    hybrids = frame.filter(kind="hybrid")
    lines = [f"Command: `{command}` ({seconds / 60:.1f} min wall on this machine)", "",
             f"Task: nuclei, 32x32 tiles; every row is scored on the same held-out region (rows 384-511 of the "
             f"512x512 image, the 64 test tiles). Hybrid: seg preset, {design.kernels()} RGB {design.kernel_size}x"
             f"{design.kernel_size} kernels in groups {'/'.join(map(str, design.groups))}, decoder widths "
             f"{'/'.join(map(str, design.hidden))}"
             + (f" ({int(hybrids['n_params'][0]):,} parameters, {int(hybrids['macs'][0]) / 1e6:.1f} M MACs)" if len(hybrids) else "")
             + (f", design changes {dict(s.changes)}" if s.changes else "")
             + f". Budget per run: {s.epochs:g} epochs{f' (capped at {s.max_steps} steps)' if s.max_steps else ''}, "
             f"batch {s.batch_size}, AdamW lr {s.lr:g} one-cycle; defaults of `onn.train.TrainConfig` otherwise "
             f"(KD T={s.kd_temperature:g} α={s.kd_alpha:g}; NTKD α=1 β={s.ntk_beta:g}, probe Gram on {s.ntk_subbatch} tiles of logits pooled 8x, "
             f"{'centred, Frobenius' if s.ntk_centre else 'trace'}-normalised). Teacher: "
             f"{'the cached recipe' if s.teacher_epochs is None else f'{s.teacher_epochs:g} epochs'}.", "",
             "| system | method | test mIoU % | test IoU % | test Dice % | val IoU % | seeds | paper mIoU % (Carvana) | train s/run |",
             "|---|---|---|---|---|---|---|---|---|"]
    teacher = frame.filter(kind="teacher")
    for row in teacher.iter_rows(named=True):
        lines.append(f"| U-Net (electronic) | teacher | {row['test_miou_pct']:.2f} | {row['test_iou_pct']:.2f} | "
                     f"{row['test_dice_pct']:.2f} | {row['val_iou_pct']:.2f} | 1 | {PAPER_MIOU['teacher']} | – |")
    for method in s.methods:
        group = hybrids.filter(method=method)
        if not len(group):
            continue
        cell = lambda column: mean_std(group[column].to_list())
        lines.append(f"| hybrid | {METHOD_NAMES[method]} | {cell('test_miou_pct')} | {cell('test_iou_pct')} | "
                     f"{cell('test_dice_pct')} | {cell('val_iou_pct')} | {len(group)} | {PAPER_MIOU[method]} | "
                     f"{group['train_s'].mean():.0f} |")
    otsu = {row["scope"]: row for row in frame.filter(kind="otsu").iter_rows(named=True)}
    region = otsu["test region"]
    lines.append(f"| classical | Otsu threshold (on the test region) | {region['test_miou_pct']:.2f} | "
                 f"{region['test_iou_pct']:.2f} | {region['test_dice_pct']:.2f} | – | – | – | – |")
    full = otsu["full image"]
    lines += ["", f"Otsu on the full 512x512 image: IoU {full['test_iou_pct']:.2f} %, mIoU {full['test_miou_pct']:.2f} % "
                  f"(SPEC §7: IoU 71.7 %); threshold {full['threshold']:.4f} (test region: {region['threshold']:.4f})."]
    lines += ["", *verdict(hybrids, region)]
    energies = [(name, group["energy_pj"].drop_nulls()) for name, group in (("teacher", teacher), ("hybrid", hybrids))]
    if all(len(e) for _, e in energies):
        lines += ["", "Energy per 32x32 inference (default constants, `onn.energy`): "
                  + ", ".join(f"{name} {float(e[0]) / 1e6:.3g} µJ" for name, e in energies) + "."]
    fabricated = frame.filter(kind="fabricated")
    if len(fabricated):
        lines += fabrication_markdown(fabricated, s)
    return "\n".join(lines) + "\n"


def verdict(hybrids: pl.DataFrame, otsu: dict) -> list[str]:
    """What the numbers say about the bar (NTKD beats Otsu) and NTKD against the other methods."""
    if not len(hybrids.filter(method="ntkd")):
        return []
    ntkd = hybrids.filter(method="ntkd")
    iou = ntkd["test_iou_pct"].to_list()
    worst = min(iou)
    out = [f"- NTKD vs Otsu on the held-out region: IoU {statistics.fmean(iou):.2f} % (worst seed {worst:.2f} %) vs "
           f"{otsu['test_iou_pct']:.2f} %: {'beats it in every seed' if worst > otsu['test_iou_pct'] else 'does NOT beat it in every seed'}."]
    return out + [f"- test mIoU, {line}" for line in ordering(hybrids, "test_miou_pct")]


def fabrication_markdown(frame: pl.DataFrame, s: Settings) -> list[str]:
    row = frame.row(0, named=True)
    seeds = ", ".join(str(seed) for seed in frame["seed"].unique(maintain_order=True))
    lines = ["", f"Fabrication (the NTKD model of each seed: {seeds}): {s.draws} kernel-level draws each at the calibrated "
                 f"defaults (`onn.fabrication.default_kernel_errors`: gain U[0.8, 1.2] per signed kernel, ±0.25 px "
                 f"shift, smooth distortion; kernel noise {100 * row['kernel_sigma_rel']:.0f} % of max|k|); compensation: backend only, {s.fraction:.0%} of the training split, at most "
                 f"{s.comp_steps} AdamW steps (lr 1e-3), stopped early on validation seen through the same optics.", "",
             ]
    methods = ("ideal", *(COMPENSATION_LABELS[m] for m in ("none", "task", "ntkd")))
    rows = [[metric, *(mean_std(frame.filter(method=m)[column].to_list()) for m in methods)]
            for metric, column in (("mIoU %", "test_miou_pct"), ("IoU %", "test_iou_pct"))]
    rows.append(["paper mIoU % (Carvana, hardware)", "–", *PAPER_FABRICATED_MIOU.values()])
    gained = recovery(frame, "test_miou_pct", keys=("seed",))
    rows.append(["mIoU drop recovered % (per seed and draw)", "–", "–",
                 *(mean_std((100 * gained.filter(method=COMPENSATION_LABELS[m])["recovered"]).to_list())
                   for m in ("task", "ntkd"))])
    return lines + markdown_table(["metric", *methods], rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--epochs", type=float, default=5.0, help="training epochs per run (default 5)")
    parser.add_argument("--batch-size", type=int, default=8, help="SPEC §2: 8 for segmentation")
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument("--backend-width", type=int, default=64, help="decoder widths w, w/2, w/4 (preset: 256)")
    parser.add_argument("--ntk-beta", type=float, default=Settings.ntk_beta,
                        help=f"weight of the NTK term (default {Settings.ntk_beta:g}: the system's)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="design changes to the hybrid, e.g. n_kernels=14 read_noise_fs=0.05")
    parser.add_argument("--ntk-centre", action="store_true",
                        help="centred, Frobenius-normalised NTK alignment (2 (1 - CKA)) instead of trace-normalised")
    parser.add_argument("--ntk-subbatch", type=int, default=TrainConfig.ntk_subbatch,
                        help=f"samples in the NTK Gram (default {TrainConfig.ntk_subbatch}: the batch topped up)")
    parser.add_argument("--kd-alpha", type=float, default=Settings.kd_alpha,
                        help=f"weight of the soft targets in KD (default {Settings.kd_alpha:g}: the system's)")
    parser.add_argument("--kd-temperature", type=float, default=Settings.kd_temperature,
                        help=f"KD's temperature (default {Settings.kd_temperature:g}: the system's)")
    parser.add_argument("--teacher-epochs", type=float, default=None, help="default: the cached teacher recipe")
    parser.add_argument("--draws", type=int, default=3, help="fabrication draws (0: no fabrication section)")
    parser.add_argument("--comp-steps", type=int, default=CompensationConfig.steps,
                        help="fine-tuning: at most this many optimiser steps, stopped early on validation "
                             f"(default {CompensationConfig.steps})")
    parser.add_argument("--fraction", type=float, default=0.10, help="fraction of the training split for fine-tuning")
    parser.add_argument("--quick", action="store_true", help="smoke run: one seed, a few steps, 1-2 minutes")
    add_run_arguments(parser, "results/segmentation")
    args = parse_and_start(parser, argv)
    settings = Settings(tuple(args.seeds), tuple(args.methods), args.epochs, None, args.batch_size, args.lr,
                        args.backend_width, args.teacher_epochs, args.draws, args.comp_steps, args.fraction,
                        ntk_beta=args.ntk_beta, kd_alpha=args.kd_alpha, kd_temperature=args.kd_temperature,
                        ntk_centre=args.ntk_centre, ntk_subbatch=args.ntk_subbatch,
                        changes=tuple(assignments(args.set).items()))
    if args.quick:  # a short teacher of its own (cached separately), so a smoke run never waits for the real one
        settings = dataclasses.replace(settings, seeds=settings.seeds[:1], max_steps=20, draws=min(args.draws, 1),
                                       comp_steps=5, teacher_epochs=args.teacher_epochs or 2.0)
    start = time.perf_counter()
    frame = run(settings, args.out, args.device)
    text = markdown(frame, settings, time.perf_counter() - start, command_line("explore.experiments.segmentation"))
    (args.out / "segmentation.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
