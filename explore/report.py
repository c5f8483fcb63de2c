"""``python -m explore.report results/<name>``: a sweep's report, readable while the sweep runs.

Writes, beside the sweep's ``trials/``:

- ``report.html``: standalone and offline (Vega, Vega-Lite and Vega-Embed inlined once, from
  vl-convert's bundle): the Pareto front, hypervolume over trials and compute, the estimator's
  calibration, robustness of the front designs, each parameter's effect, a sortable front table;
- ``report/*.png``: the same charts rendered by vl-convert (no browser);
- ``front.json`` / ``front.csv``: the non-dominated complete designs, every ``param.*`` column and
  metric, with the objectives and the hypervolume's reference point, to take a design further.

Numbers come from `explore.analysis` on every row; charts (`explore.charts`) embed a bounded
sample; the page (`explore.page`) inlines the JavaScript once.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

import polars as pl

from explore import charts, export, page
from explore.analysis import (ROLE_DOMINATED, ROLE_FRONT, ROLE_IDEAL, ROLE_INFEASIBLE, ROLE_PRUNED, ROLE_SCREENED,
                              ROLE_TEST, ROLE_UNSCORED, Analysis, gate_savings, load, spearman)
from explore.columns import METRIC_COLUMNS, split_of, test_twin

SELECTION_NOTE = ("Designs are chosen on validation: the objectives, the front, the estimator gate and everything "
                  "told to the sampler use validation scores only. Test scores are measured for the record and "
                  "shown beside them; they were never used to choose.")
from explore.charts import STAGES
from onn.data import TASKS
from onn.energy import format_energy
from explore.spec import Choice, FloatRange, IntRange

MAX_ROBUSTNESS = 60  # front designs drawn on the robustness chart (lowest energy first)
MAX_PREVIEWS = 12  # front designs whose layout preview the page shows (lowest energy first)


# --- charts: each returns (chart or None, notes for the page) ------------------------------------------


def _front(a: Analysis):
    counts = {s: a.count(s) for s in ("complete", "pruned", "infeasible", "failed", "screened")}
    plotted_roles = (ROLE_FRONT, ROLE_DOMINATED, ROLE_PRUNED, ROLE_INFEASIBLE, ROLE_SCREENED)
    points = a.rows.filter(pl.col("role").is_in(plotted_roles) & pl.col(a.x).is_not_null()
                           & pl.col("y_plotted").is_not_null())
    notes = []
    missing = a.rows.filter(pl.col("role").is_in(plotted_roles + (ROLE_UNSCORED,))).join(
        points.select("trial_id"), on="trial_id", how="anti")
    for (status,), rows in missing.group_by("status", maintain_order=True):
        y = a.y if status == "complete" or not a.y.startswith("accuracy") else "est_accuracy"
        reasons = rows["reason"].drop_nulls().value_counts(sort=True).head(3)["reason"].to_list()
        notes.append(f"{len(rows)} {status} designs are not plotted: no {a.x} or {y} value"
                     + (f" (reasons: {'; '.join(reasons)})." if any(reasons) else "."))
    ideal_column = f"accuracy_ideal_{split_of(a.y)}"
    if a.y != ideal_column:
        ideal = a.front.filter(pl.col(ideal_column).is_not_null())
        points = pl.concat([points, ideal.with_columns(role=pl.lit(ROLE_IDEAL),
                                                       y_plotted=pl.col(ideal_column))])
    test_column = test_twin(a.y)
    if test_column is not None:
        tested = a.front.filter(pl.col(test_column).is_not_null())
        points = pl.concat([points, tested.with_columns(role=pl.lit(ROLE_TEST), y_plotted=pl.col(test_column))])
    tips = ["trial_id", "status", "reason", *a.params, *METRIC_COLUMNS]
    shown = charts.display_sample(points.select(*dict.fromkeys(["role", "y_plotted", a.x, *tips])),
                                  keep=pl.col("role").is_in([ROLE_FRONT, ROLE_IDEAL, ROLE_TEST]))
    subtitle = [f"{len(a.rows)} trials of {a.spec.budget.trials} planned: {counts['complete']} complete "
                f"({len(a.front)} on the front), {counts['pruned']} pruned, {counts['infeasible']} infeasible, "
                f"{counts['failed']} failed" + (f", {counts['screened']} screened out" if counts["screened"] else "") + ".",
                "Objectives: " + ", ".join(f"{d} {m}" for m, d in zip(a.spec.metrics, a.spec.directions)) + "."
                + (" Hollow circles: the front designs' accuracy in ideal simulation."
                   if (points["role"] == ROLE_IDEAL).any() else "")
                + (" Blue diamonds: the same designs' test score, for the record (never used to choose)."
                   if (points["role"] == ROLE_TEST).any() else "")]
    if counts["pruned"] and a.y.startswith("accuracy"):
        subtitle.append("Pruned designs were never trained: they sit at the estimator's accuracy (triangles).")
    if counts["screened"] and a.y.startswith("accuracy"):
        subtitle.append("Screened-out proposals were estimated beside the one trained in their slot, never trained: "
                        "they sit at the estimator's accuracy (hollow triangles).")
    if len(shown) < len(points):
        subtitle.append(f"Showing every front design and a seeded sample: {len(shown)} of {len(points)} points.")
    if not len(points):
        return None, notes + ["No design has both coordinates yet: nothing to plot."]
    digital = a.rows["energy_all_digital_pj"].drop_nulls() if a.x == "energy_pj" else pl.Series([])
    step = len(a.spec.metrics) == 2 and set(a.spec.metrics) == {a.x, a.y}
    x_direction = dict(zip(a.spec.metrics, a.spec.directions)).get(a.x, "min")
    title = f"Pareto front: {charts.title_of(a.y)} vs {charts.title_of(a.x)}"
    if digital.len():
        notes.append(f"The dashed vertical rule is the median all-digital energy over {digital.len()} designs "
                     f"({format_energy(digital.median())}): the same network with its convolution done digitally "
                     f"(`energy_all_digital_pj`); each design's own value is in its tooltip.")
    if counts["complete"] and not len(a.front):
        notes.append("No complete design has every objective value: there is no front yet.")
    chart = charts.front_chart(shown, x=a.x, y=a.y, ideal=ideal_column, x_direction=x_direction, step=step, tips=tips,
                               digital_pj=float(digital.median()) if digital.len() else None,
                               title=title, subtitle=subtitle)
    return chart, notes


def _hypervolume(a: Analysis):
    if a.reference is None:
        return None, ["No complete trial with every objective yet: no hypervolume."]
    total_s = float(a.history["compute_s"].max())
    unit, scale = ("h", 3600.0) if total_s > 7200 else ("min", 60.0) if total_s > 600 else ("s", 1.0)
    history = a.history.with_columns((pl.col("compute_s") / scale).alias(f"compute_{unit}"))
    if len(history) > charts.MAX_POINTS:  # more improvements than Altair embeds: every k-th, and the last
        every = -(-len(history) // charts.MAX_POINTS) + 1
        history = pl.concat([history.gather_every(every), history.tail(1)]).unique("trials", maintain_order=True)
    reference = ", ".join(f"{m} = {format_energy(v) if m.endswith('_pj') else f'{v:.4g}'}"
                          for m, v in a.reference.items())
    subtitle = [f"Reference point: {reference} (nadir of the complete trials + 10% of their range).",
                f"Final hypervolume {a.hypervolume:.4g}; trials in finishing order; compute = sum of t_total_s."]
    chart = charts.hypervolume_chart(history, compute=f"compute_{unit}", units=" × ".join(a.spec.metrics),
                                     compute_title=f"cumulative trial time ({unit}, sum of t_total_s)",
                                     title="Hypervolume of the front over the sweep", subtitle=subtitle)
    return chart, [f"Hypervolume reference point: {reference}."]


def _calibration(a: Analysis):
    trained = f"accuracy_ideal_{split_of(a.y)}"
    points = a.rows.filter((pl.col("status") == "complete") & pl.col("est_accuracy").is_not_null()
                           & pl.col(trained).is_not_null())
    _, text = spearman(points["est_accuracy"].to_numpy(), points[trained].to_numpy())
    if not len(points):
        return None, [f"Estimator calibration: {text}."]
    points = points.with_columns(role=pl.when(pl.col("role") == ROLE_FRONT).then(pl.col("role"))
                                 .otherwise(pl.lit(ROLE_DOMINATED)))
    tips = ["trial_id", "est_accuracy", trained, *a.params]
    shown = charts.display_sample(points.select("role", *tips), keep=pl.col("role") == ROLE_FRONT)
    subtitle = ["Pre-training estimate vs trained accuracy (complete trials); dashed: y = x."]
    if len(shown) < len(points):
        subtitle.append(f"Showing a seeded sample of {len(shown)} of {len(points)}; ρ uses all.")
    return charts.calibration_chart(shown, trained=trained, tips=tips, title=f"Estimator calibration: {text}",
                                    subtitle=subtitle), [f"Estimator calibration: {text}."]


def _robustness(a: Analysis):
    if not len(a.front):
        return None, ["No front designs yet: no robustness chart."]
    shown = (pl.col(a.x).map_elements(format_energy, return_dtype=pl.String) if a.x.endswith("_pj")
             else pl.col(a.x).round_sig_figs(3).cast(pl.String))
    front = a.front.head(MAX_ROBUSTNESS).with_columns(  # sorted by x: designs read along the front
        design=pl.format("#{} ({})", pl.col("trial_index"), shown))
    split = split_of(a.y)
    stages = [(i, f"{stem}_{split}", name) for i, (stem, name) in enumerate(STAGES) if f"{stem}_{split}" in front.columns]
    long = pl.concat([front.select(
        "design", "trial_id", stage=pl.lit(name), stage_index=pl.lit(i), accuracy=pl.col(column).cast(pl.Float64),
        std=pl.col(f"{column}_std") if f"{column}_std" in front.columns else pl.lit(None, pl.Float64))
        for i, column, name in stages])
    long = long.filter(pl.col("accuracy").is_not_null()).sort(
        pl.col("design").cast(pl.Enum(front["design"].unique(maintain_order=True))), "stage_index")
    subtitle = ["Each front design's accuracy at each stage: ideal simulation → realised masks →",
                "fabricated (mean of draws, bar ±1 std over draws) → after compensation.",
                "A stage the sweep did not run (null) is skipped."]
    if len(a.front) > MAX_ROBUSTNESS:
        subtitle.append(f"The {MAX_ROBUSTNESS} lowest-{a.x} of {len(a.front)} front designs.")
    return charts.robustness_chart(long, title="Robustness of the front designs", subtitle=subtitle), []


def _learning(a: Analysis):
    if not len(a.front) or "train_curve" not in a.front.columns:
        return None, ["No front designs with a learning curve yet."]
    rows = []
    for row in a.front.head(MAX_ROBUSTNESS).iter_rows(named=True):
        for epoch, loss, val in json.loads(row["train_curve"] or "[]"):
            rows.append({"design": f"#{row['trial_index']}", "trial_id": row["trial_id"], "epoch": epoch,
                         "loss": loss, "val": val})
    if not rows:
        return None, ["The front designs carry no learning curve (rows written before 2026-11-30)."]
    subtitle = ["Each front design's training: validation accuracy at the end of every epoch (the curve the",
                "sweep's choice does not look at until training ends) and the mean training loss over it."]
    return charts.learning_chart(pl.DataFrame(rows), title="Learning curves of the front designs",
                                 subtitle=subtitle), []


def _parameters(a: Analysis):
    varied = [p for p in a.params if a.rows[p].drop_nulls().n_unique() > 1]
    fixed = [p for p in a.params if a.rows[p].drop_nulls().n_unique() == 1]
    notes = ["Parameters with a single value (not charted): "
             + ", ".join(f"{p.removeprefix('param.')} = {a.rows[p].drop_nulls().first()}" for p in fixed)] \
        if fixed else []
    rows = a.rows.filter(pl.col("role").is_in([ROLE_FRONT, ROLE_DOMINATED, ROLE_PRUNED])
                         & pl.any_horizontal(pl.col(m).is_not_null() for m in a.spec.metrics))
    if not varied or not len(rows):
        return None, notes + ["No varied parameter with an objective value yet: no parameter chart."]
    shown = charts.display_sample(rows.select("trial_id", "role", *varied, *a.spec.metrics),
                                  keep=pl.col("role") == ROLE_FRONT, cap=1500)
    logs = [f"param.{n}" for n, d in a.spec.space.items() if isinstance(d, (FloatRange, IntRange)) and d.log]
    ordinal = [p for p in varied if isinstance(a.spec.space.get(p.removeprefix("param.")), Choice)
               or (a.rows.schema[p].is_integer() and a.rows[p].n_unique() <= 8)]
    subtitle = ["Every trial with a value of the objective; red: Pareto front, yellow: pruned (energy only)."]
    if len(shown) < len(rows):
        subtitle.append(f"Showing a seeded sample of {len(shown)} of {len(rows)} trials (front kept).")
    return charts.parameter_chart(shown, params=varied, objectives=a.spec.metrics, log_params=logs,
                                  ordinal_params=ordinal,
                                  title="Effect of each parameter on the objectives", subtitle=subtitle), notes


SECTIONS = (("front", "Pareto front", _front), ("hypervolume", "Hypervolume", _hypervolume),
            ("calibration", "Estimator calibration", _calibration), ("robustness", "Robustness", _robustness),
            ("learning", "Learning curves", _learning),
            ("parameters", "Parameters", _parameters))


def front_columns(a: Analysis) -> list[str]:
    """Exported columns of a front design: identity, every parameter, every metric."""
    return ["trial_id", "trial_index", *a.params, *METRIC_COLUMNS, "seed", "config_hash", "code_version"]


def test_beside(a: Analysis) -> dict[str, str]:
    """Each validation objective -> its test-split twin (the score reported beside it)."""
    return {m: twin for m in a.spec.metrics if (twin := test_twin(m)) is not None}


def export_front(a: Analysis, folder: Path) -> tuple[Path, Path]:
    """``front.json`` (objectives, reference point, designs with params and metrics, each validation
    objective with its test score and the gap) and ``front.csv``."""
    twins = test_beside(a)
    designs = [{"trial_id": row["trial_id"], "trial_index": row["trial_index"],
                "params": {p.removeprefix("param."): row[p] for p in a.params},
                "objectives": {m: row[m] for m in a.spec.metrics},
                "test": {twin: {"value": row[twin], "validation": m, "gap": _gap(row[m], row[twin])}
                         for m, twin in twins.items()},
                "metrics": {m: row[m] for m in METRIC_COLUMNS},
                "train_curve": json.loads(row["train_curve"]) if row.get("train_curve") else None,
                "provenance": {k: row[k] for k in ("seed", "config_hash", "code_version")}}
               for row in a.front.iter_rows(named=True)]
    document = {"sweep": a.spec.name, "generated_unix_s": time.time(), "chosen_on": "validation",
                "selection": SELECTION_NOTE,
                "objectives": [{"metric": m, "direction": d} for m, d in zip(a.spec.metrics, a.spec.directions)],
                "reference_point": a.reference, "hypervolume": a.hypervolume,
                "reference_point_is": "in objective units: the complete trials' nadir + 10% of their range "
                                      "(explore.pareto.reference_point); the hypervolume is measured from it",
                "trials": {s: a.count(s) for s in ("complete", "pruned", "infeasible", "failed")},
                "designs": designs}
    json_path, csv_path = folder / "front.json", folder / "front.csv"
    _atomic_write(json_path, json.dumps(document, indent=1, allow_nan=False))
    gaps = [(pl.col(m) - pl.col(twin)).alias(f"gap_{m}_minus_test") for m, twin in twins.items()]
    _atomic_write(csv_path, a.front.select(*front_columns(a), *gaps).write_csv())
    return json_path, csv_path


def front_previews(a: Analysis, folder: Path) -> tuple[list[tuple[str, bytes]], list[str]]:
    """Layout previews (caption, PNG) of the front designs that kept their hand-off files, also
    written to ``report/preview-trial-<N>.png``; and the notes that go with them."""
    kept = a.front.filter(pl.col("artefacts").is_not_null()) if "artefacts" in a.front.columns else a.front.clear()
    for old in (folder / "report").glob("preview-trial-*.png"):
        old.unlink()  # a design that has left the front must not keep its picture here
    figures = []
    for row in kept.sort(a.x).head(MAX_PREVIEWS).iter_rows(named=True):
        buffer = io.BytesIO()
        try:
            export.write_preview(export.handoff_of(folder, row["trial_index"]), buffer, size=320)
        except export.ExportError:
            continue  # files lost with a node: the row says so when exported
        (folder / "report" / f"preview-trial-{row['trial_index']:05d}.png").write_bytes(buffer.getvalue())
        figures.append((f"{row['trial_id']}: whole aperture | one sub-optic (bright = wide pillar)", buffer.getvalue()))
    if not figures:
        return [], []
    notes = [f"Quantised pillar-width maps of {len(figures)} of {len(a.front)} front designs, lowest {a.x} first. "
             f"`python -m explore.export {folder} --front --out DIR` writes their GDSII layouts, design cards "
             f"and backend weights."]
    return figures, notes


def _gap(validation: float | None, test: float | None) -> float | None:
    """Validation minus test (positive: the validation score flatters the design)."""
    return None if validation is None or test is None else validation - test


def _atomic_write(path: Path, text: str) -> None:
    """A browser or script reading the file while the report refreshes never sees half of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_report(folder: str | Path, *, png: bool = True) -> Path:
    """Write ``report.html``, ``report/*.png``, ``front.json`` and ``front.csv`` into ``folder``
    (a sweep's ``results/<name>/``); returns the HTML's path."""
    folder = Path(folder)
    a = load(folder)
    built = [(key, heading, *build(a)) for key, heading, build in SECTIONS]
    images = folder / "report"
    images.mkdir(exist_ok=True)
    for key, _, chart, _ in built:
        target = images / f"{key}.png"
        if chart is not None and png:
            chart.save(target, scale_factor=2)
        else:
            target.unlink(missing_ok=True)  # an older render must not pass for the current state
    export_front(a, folder)
    failed = a.rows.filter(pl.col("status") == "failed")
    intro = [f"Sweep {a.spec.name!r} on {a.spec.task.dataset}: {len(a.rows)} trials recorded of "
             f"{a.spec.budget.trials} planned (the report reads the trial table as it is; rerun "
             f"`python -m explore.report {folder}` to refresh a running sweep). "
             f"Written {time.strftime('%Y-%m-%d %H:%M:%S')}."]
    intro.append(SELECTION_NOTE)
    if TASKS.get(a.spec.task.dataset) == "segment":
        intro.append("A segmentation task: every accuracy in this report (estimated, ideal, realised, after "
                     "fabrication) is the foreground IoU, from 0 to 1.")
    savings = gate_savings(a.rows)
    if savings is not None:
        intro.append(savings.sentence())
    if len(failed):
        listed = "; ".join(f"{r['trial_id']} ({r['reason'] or 'no reason'})"
                           for r in failed.head(20).iter_rows(named=True))
        intro.append(f"{len(failed)} failed trials (not plotted): {listed}" + (" ..." if len(failed) > 20 else ""))
    sections = [page.Section(key, heading, chart.to_dict() if chart is not None else None, tuple(notes))
                for key, heading, chart, notes in built]
    split = split_of(a.y)
    twins = test_beside(a)
    front = a.front.with_columns((pl.col(m) - pl.col(twin)).alias(f"gap {m} − test") for m, twin in twins.items())
    shown = [c for c in ["trial_id", *(c for m in a.spec.metrics for c in (m, twins.get(m), f"gap {m} − test")),
                         *(f"{s}_{split}" for s, _ in STAGES), f"accuracy_compensated_{split}_std", "compensation_steps",
                         "est_accuracy", "energy_pj", "energy_all_digital_pj", *a.params] if c in front.columns]
    table = page.table(front, list(dict.fromkeys(shown)), {p: p.removeprefix("param.") for p in a.params})
    table_notes = [f"{len(a.front)} non-dominated complete designs (on validation), sorted by {a.x}; click a header "
                   f"to sort. Beside each validation objective: its test score and the gap (validation − test). "
                   f"Every parameter and metric of each is in front.json and front.csv beside this file."]
    figures, figure_notes = front_previews(a, folder)
    path = folder / "report.html"
    _atomic_write(path, page.render(f"Sweep report: {a.spec.name}", intro, sections, table, table_notes,
                                    figures, figure_notes))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m explore.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a sweep's results folder, e.g. results/tiny")
    parser.add_argument("--no-png", action="store_true", help="skip the PNG renders (faster)")
    args = parser.parse_args(argv)
    if not (args.folder / "sweep.yaml").is_file():
        print(f"{args.folder}: no sweep.yaml; pass a sweep's results folder, e.g. results/tiny", file=sys.stderr)
        return 2
    path = write_report(args.folder, png=not args.no_png)
    print(path)
    for extra in (args.folder / "front.json", args.folder / "front.csv",
                  *sorted((args.folder / "report").glob("*.png"))):
        print(extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
