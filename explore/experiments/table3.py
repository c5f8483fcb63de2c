"""Reproduce the paper's Table 3: no transfer vs KD vs NTKD, same architecture, same budget.

    python -m explore.experiments.table3 --systems mono poly --seeds 0 1 2 --epochs 6

For each system (a preset + its dataset + its teacher, `explore.systems.SYSTEMS`), every method
trains a freshly initialised hybrid with the same seed, data order, optimiser and number of
steps; only the loss differs. Reported: test accuracy (mean ± std over seeds) and the validation
accuracy beside it. Writes ``<out>/table3.parquet`` (one row per run) and ``<out>/table3.md``.

Paper (Xiang et al. 2025, Table 3), simulation: MNIST 91.4 / 95.9 / 97.3 %, CIFAR-10
56.4 / 72.5 / 75.6 %.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import polars as pl

from explore.experiments.common import (RunTable, add_run_arguments, assignments, command_line, markdown_table,
                                        mean_std, model_path, ordering, parse_and_start)
from explore.systems import SYSTEMS, build_student, load_system, system_design
from onn.cache import atomic_torch_save
from onn.train import TrainConfig, fit

PAPER = {"mono": {"task": 91.4, "kd": 95.9, "ntkd": 97.3}, "poly": {"task": 56.4, "kd": 72.5, "ntkd": 75.6}}
METHODS = ("task", "kd", "ntkd")


def run(systems: list[str], methods: list[str], seeds: list[int], config: TrainConfig, *, root: str | None,
        out: Path, device: str, changes: dict | None = None, weights: dict | None = None) -> pl.DataFrame:
    """``changes``: design parameters (sweep-file names, e.g. n_kernels, read_noise_fs) applied to
    every system's preset, for the same comparison under other optical constraints. Each system
    trains with its chosen KD/NTKD weights (`explore.systems.System.transfer`), then ``weights``
    (TrainConfig fields) on top. Every trained student is kept (`common.model_path`) for Table 4.

    Resumable: a run whose row is in ``<out>/table3.parquet`` and whose student is kept is not
    repeated, so an interrupted run, or one whose weights changed for one method, trains only what
    is missing. The parquet keeps every row it ever had; the frame returned (and the markdown) holds
    this call's runs only."""
    table = RunTable(out / "table3.parquet")
    if table.path.exists():
        table.rows = pl.read_parquet(table.path).to_dicts()
    done = {row.get("model") for row in table.rows if (out / "models" / str(row.get("model"))).exists()}
    planned: list[str] = []
    for name in systems:
        system, data, teacher = load_system(name, root=root, device=device)
        design = system_design(system, changes)
        tuned = dataclasses.replace(config, **{**system.transfer, **(weights or {})})
        for seed in seeds:
            for method in methods:
                run_config = dataclasses.replace(tuned, method=method, seed=seed)
                path = model_path(out, name, run_config, changes)
                planned.append(path.name)
                if path.name in done:
                    print(f"{name} {method:>4} seed {seed}: kept from an earlier run ({path.name})", flush=True)
                    continue
                model = build_student(design, data, seed=seed)
                result = fit(model, data.train, task=data.task, config=run_config,
                             evaluate_on={"val": data.val, "test": data.test}, teacher=teacher, device=device,
                             label=f"{name} s{seed}")
                atomic_torch_save({"state_dict": model.state_dict(), "train_s_per_step": result.seconds / result.steps},
                                  path)
                table.add({"system": name, "dataset": system.dataset, "changes": str(changes or {}), "method": method,
                           "seed": seed, "weights": weights_text(run_config),
                           "test_accuracy_pct": 100 * result.test_metric, "val_accuracy_pct": 100 * result.val_metric,
                           "epochs": config.epochs, "steps": result.steps, "train_s": result.seconds,
                           "n_params": result.n_params, "macs": result.macs, "model": path.name,
                           **{f"loss_{k}": v for k, v in result.loss_terms}})
                print(f"{name} {method:>4} seed {seed}: test {100 * result.test_metric:.2f} % "
                      f"({result.seconds:.0f} s)", flush=True)
    order = {model: i for i, model in enumerate(planned)}  # the plan's order; a rerun's last row wins
    frame = table.frame.filter(pl.col("model").is_in(planned)).unique("model", keep="last")
    return frame.sort(pl.col("model").replace_strict(order, return_dtype=pl.Int64))


def weights_text(config: TrainConfig) -> str:
    """The loss weights a method trained with, as the table shows them."""
    if config.method == "kd":
        return f"T {config.kd_temperature:g}, α {config.kd_alpha:g}"
    if config.method == "ntkd":
        return f"α {config.ntk_alpha:g}, β {config.ntk_beta:g}, {'centred' if config.ntk_centre else 'uncentred'}"
    return "–"


def markdown(frame: pl.DataFrame, config: TrainConfig, seconds: float, command: str) -> str:
    changes = frame["changes"][0] if "changes" in frame.columns else "{}"
    lines = [f"Command: `{command}` ({seconds / 60:.1f} min wall on this machine)", "",
             *([f"Design changes to the presets: {changes}", ""] if changes != "{}" else []),
             f"Budget per run: {config.epochs:g} epochs, batch {config.batch_size}, AdamW lr {config.lr:g} one-cycle; "
             f"NTKD: {config.ntk_mode} Gram ({config.ntk_probes} probes) on {config.ntk_subbatch} samples. "
             "Weights per system chosen on validation (explore.experiments.transfer_weights).", "",
             ]
    rows = []
    for (system, method), group in frame.group_by(["system", "method"], maintain_order=True):
        paper = PAPER.get(system, {}).get(method)
        rows.append([system, group["dataset"][0], method, group["weights"][0] if "weights" in group.columns else "–",
                     mean_std(group["test_accuracy_pct"].to_list()), mean_std(group["val_accuracy_pct"].to_list()),
                     len(group), paper or "–", f"{group['train_s'].mean():.0f}"])
    lines += markdown_table(["system", "data", "method", "weights", "test acc. % (mean ± std)",
                             "val acc. % (mean ± std)", "seeds", "paper %", "train s/run"], rows)
    for (system,), group in frame.group_by("system", maintain_order=True):
        for split in ("test", "val"):
            lines += ["", f"{system}, {split} accuracy:", "",
                      *(f"- {line}" for line in ordering(group, f"{split}_accuracy_pct"))]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", nargs="+", default=["mono", "poly"], choices=sorted(SYSTEMS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=float, default=6.0, help="training epochs per run (default 6)")
    parser.add_argument("--ntk-beta", type=float, default=None,
                        help="weight of the NTK term (default: the system's, explore.systems)")
    parser.add_argument("--ntk-mode", default=TrainConfig.ntk_mode, choices=["probe", "exact", "last_layer"])
    parser.add_argument("--ntk-alignment", choices=["centred", "uncentred"], default=None,
                        help="centred, Frobenius-normalised NTK alignment (2 (1 - CKA)) or uncentred, "
                             "trace-normalised (default: the system's)")
    parser.add_argument("--kd-alpha", type=float, default=None,
                        help="weight of the soft targets in KD (default: the system's)")
    parser.add_argument("--kd-temperature", type=float, default=None, help="KD's temperature (default: the system's)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="design changes to every preset, e.g. n_kernels=2 read_noise_fs=0.05")
    parser.add_argument("--root", default=None, help="local dataset folder (e.g. for cifar10)")
    add_run_arguments(parser, "results/table3")
    args = parse_and_start(parser, argv)
    config = TrainConfig(epochs=args.epochs, ntk_mode=args.ntk_mode, log_every_s=60)
    weights = {k: v for k, v in (("ntk_beta", args.ntk_beta), ("kd_alpha", args.kd_alpha),
                                 ("kd_temperature", args.kd_temperature)) if v is not None}
    if args.ntk_alignment:
        centred = args.ntk_alignment == "centred"
        weights.update(ntk_centre=centred, ntk_normalise="frobenius" if centred else "trace")
    start = time.perf_counter()
    changes = assignments(args.set)
    frame = run(args.systems, args.methods, args.seeds, config, root=args.root, out=args.out, device=args.device,
                changes=changes, weights=weights)
    text = markdown(frame, config, time.perf_counter() - start, command_line("explore.experiments.table3"))
    (args.out / "table3.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
