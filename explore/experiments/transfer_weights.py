"""Choose KD's α and NTKD's β (and whether to centre the NTK Grams) on validation, per system.

    python -m explore.experiments.transfer_weights --systems mono poly seg --threads 1

For each system and each of ``--seeds`` (default one), a short budget: no transfer, KD at every
``--alphas`` × ``--temperatures``, NTKD at every ``--betas``, uncentred (trace-normalised, the loss
before 2026-11-30) and centred (Frobenius-normalised: 2 (1 − CKA)). Every run of a seed trains a
freshly initialised hybrid with the same seed, data order and steps; the choice is the best mean
validation score over seeds, among the arms run with the most seeds; the test score is written
beside it for the record and never read to choose. Resumable: a run already in ``<out>/transfer_weights.parquet``
is not repeated. Writes ``transfer_weights.md`` with the table and the chosen weights, which the sweep
files and Table 3 then use.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Sequence

import polars as pl

from explore.experiments.common import (RunTable, add_run_arguments, command_line, markdown_table,
                                        parse_and_start)
from explore.systems import SYSTEMS, build_student, load_system, system_design
from onn.train import TrainConfig, fit

# Budgets per system: short, the same for every arm (the ranking of weights, not the level, is the point).
BUDGETS = {"mono": dict(epochs=2.0), "poly": dict(epochs=4.0), "seg": dict(epochs=3.0, batch_size=8)}
CHANGES = {"seg": {"backend_width": 64}}  # the decoder of the segmentation experiment (CPU budget)


ALIGNMENTS = ("uncentred", "centred")


def arms(alphas: list[float], betas: list[float], temperatures: tuple[float, ...] = (TrainConfig.kd_temperature,),
         alignments: tuple[str, ...] = ALIGNMENTS) -> list[dict]:
    """Every (method, weights) to train: the knobs of `onn.train.TrainConfig` each arm sets. A KD arm
    names its temperature only where it is not the default, so arms run before the temperature grid
    keep their names (and are not rerun)."""
    out = [dict(method="task")]
    out += [dict(method="kd", kd_alpha=a, **({} if t == TrainConfig.kd_temperature else {"kd_temperature": t}))
            for t in temperatures for a in alphas]
    for centre in (a == "centred" for a in alignments):
        out += [dict(method="ntkd", ntk_beta=b, ntk_centre=centre, ntk_normalise="frobenius" if centre else "trace")
                for b in betas]
    return out


def run(systems: list[str], alphas: list[float], betas: list[float], seeds: Sequence[int], out: Path,
        device: str, ntk_subbatch: int = 32, methods: tuple[str, ...] = ("task", "kd", "ntkd"),
        temperatures: tuple[float, ...] = (TrainConfig.kd_temperature,),
        alignments: tuple[str, ...] = ALIGNMENTS) -> pl.DataFrame:
    table = RunTable(out / "transfer_weights.parquet")
    if table.path.exists():
        # rows from before the temperature grid ran KD at the default temperature
        table.rows = [{"kd_temperature": TrainConfig.kd_temperature if r["method"] == "kd" else None, **r}
                      for r in pl.read_parquet(table.path).to_dicts()]
    done = {(r["system"], r["arm"], r["seed"]) for r in table.rows}
    for name in systems:
        system, data, teacher = load_system(name, device=device)
        design = system_design(system, CHANGES.get(name))
        for seed, knobs in ((seed, k) for seed in seeds for k in arms(alphas, betas, temperatures, alignments)
                            if k["method"] in methods):
            base = TrainConfig(seed=seed, log_every_s=120, ntk_subbatch=ntk_subbatch, **BUDGETS[name])
            arm = ", ".join(f"{k}={v}" for k, v in knobs.items())
            if (name, arm, seed) in done:
                continue
            model = build_student(design, data, seed=seed)
            result = fit(model, data.train, task=data.task, config=dataclasses.replace(base, **knobs),
                         evaluate_on={"val": data.val, "test": data.test}, teacher=teacher, device=device,
                         label=f"{name} s{seed} {arm}")
            table.add({"system": name, "dataset": system.dataset, "arm": arm, "seed": seed, **{
                "method": knobs["method"], "kd_alpha": knobs.get("kd_alpha"),
                "kd_temperature": knobs.get("kd_temperature", TrainConfig.kd_temperature) if knobs["method"] == "kd" else None,
                "ntk_beta": knobs.get("ntk_beta"),
                "ntk_centre": knobs.get("ntk_centre"), "ntk_subbatch": ntk_subbatch if knobs["method"] == "ntkd" else None,
                "val_pct": 100 * result.val_metric,
                "test_pct": 100 * result.test_metric, "epochs": base.epochs, "steps": result.steps,
                "train_s": result.seconds}})
            print(f"{name} seed {seed} {arm}: val {100 * result.val_metric:.2f} % ({result.seconds:.0f} s)", flush=True)
    return table.frame


def chosen(frame: pl.DataFrame) -> dict[str, dict]:
    """Per system: the best KD arm and the best NTKD arm by mean validation score over seeds, among
    the arms of that method run with the most seeds (a one-seed arm does not compete with a mean of
    three); ties: the first. Each is the arm's first row with ``val_pct`` its mean and ``seeds`` its count."""
    out = {}
    for (name,), group in frame.group_by("system", maintain_order=True):
        best = {}
        for method in ("kd", "ntkd"):
            rows = group.filter(pl.col("method") == method)
            if not len(rows):
                continue
            means = rows.group_by("arm", maintain_order=True).agg(pl.col("val_pct").mean(), seeds=pl.len())
            means = means.filter(pl.col("seeds") == pl.col("seeds").max())
            top = means.sort("val_pct", descending=True, maintain_order=True).row(0, named=True)
            first = rows.filter(pl.col("arm") == top["arm"]).row(0, named=True)
            best[method] = {**first, "val_pct": top["val_pct"], "seeds": top["seeds"]}
        out[name] = best
    return out


def markdown(frame: pl.DataFrame, seconds: float, command: str) -> str:
    lines = [f"Command: `{command}` ({seconds / 60:.1f} min wall)", "",
             "One row per arm and seed; chosen by the mean validation score over seeds (among the arms run "
             "with the most seeds), the test score beside it for the record.", ""]
    rows = [[r["system"], r["arm"], r["seed"], f"{r['val_pct']:.2f}", f"{r['test_pct']:.2f}", r["steps"], f"{r['train_s']:.0f}"]
            for r in frame.iter_rows(named=True)]
    lines += markdown_table(["system", "arm", "seed", "val %", "test % (not used)", "steps", "train s"], rows)
    lines += ["", "Chosen (by validation):", ""]
    for name, best in chosen(frame).items():
        parts = [f"{label} {best[m]['arm']} (val {best[m]['val_pct']:.2f} %, {best[m]['seeds']} seed(s))"
                 for m, label in (("kd", "KD"), ("ntkd", "NTKD")) if m in best]
        lines.append(f"- {name}: " + "; ".join(p for p in parts if p))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", nargs="+", default=["mono", "poly", "seg"], choices=sorted(SYSTEMS))
    parser.add_argument("--alphas", nargs="+", type=float, default=[0.1, 0.3, 0.5, 0.7, 0.9])
    parser.add_argument("--temperatures", nargs="+", type=float, default=[TrainConfig.kd_temperature],
                        help=f"KD temperatures, each with every α (default {TrainConfig.kd_temperature:g})")
    parser.add_argument("--betas", nargs="+", type=float, default=[0.01, 0.1, 1.0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0],
                        help="seeds per arm (default 0); the choice is on the mean over seeds")
    parser.add_argument("--alignments", nargs="+", default=list(ALIGNMENTS), choices=ALIGNMENTS,
                        help="NTK alignments to try (default both)")
    parser.add_argument("--ntk-subbatch", type=int, default=32, help="samples in the NTK Gram (default 32)")
    parser.add_argument("--methods", nargs="+", default=["task", "kd", "ntkd"], choices=["task", "kd", "ntkd"],
                        help="which arms to run (default: all)")
    add_run_arguments(parser, "results/transfer_weights")
    args = parse_and_start(parser, argv)
    start = time.perf_counter()
    frame = run(args.systems, args.alphas, args.betas, args.seeds, args.out, args.device, args.ntk_subbatch,
                tuple(args.methods), tuple(args.temperatures), tuple(args.alignments))
    text = markdown(frame, time.perf_counter() - start, command_line("explore.experiments.transfer_weights"))
    (args.out / "transfer_weights.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
