"""The sweep report: checked on the charts' data (Vega-Lite specs), not on pixels.

Synthetic trial tables with a realistic mix of statuses and nulls are written through the real
`TrialStore` beside a real resolved ``sweep.yaml``, so the report reads them as it reads a sweep.
"""

import dataclasses
import json
import re
import subprocess
import time
from pathlib import Path
from unittest import mock

import numpy as np
import polars as pl
import pytest

from explore import charts
from explore.analysis import (ROLE_DOMINATED, ROLE_FRONT, ROLE_IDEAL, ROLE_INFEASIBLE, ROLE_PRUNED, analyse,
                              front_axes, gate_savings, hypervolume_steps, load, spearman)
from explore.pareto import hypervolume_history, non_dominated, reference_point
from explore.report import SECTIONS, main, write_report
from explore.rows import row_schema
from explore.spec import load_spec, spec_to_yaml
from explore.store import TrialStore, read_trials

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")


def make_sweep(folder: Path, n: int, *, statuses=("complete", "pruned", "infeasible", "failed"),
               weights=(0.6, 0.25, 0.1, 0.05), seed: int = 0, flush_rows: int = 1000, overrides=()) -> Path:
    """``folder`` as a sweep leaves it: ``sweep.yaml`` + ``trials/`` with ``n`` synthetic rows.

    Accuracy rises with energy (more kernels cost more and see more) with noise, so the front is a
    real trade-off; realised accuracy is null for some designs (realisation off), as the schema allows.
    """
    spec = load_spec(ROOT / "sweeps" / "tiny.yaml", ["name=synthetic", *overrides])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sweep.yaml").write_text(spec_to_yaml(spec))
    store = TrialStore(folder / "trials", row_schema(spec), flush_rows=flush_rows)
    with mock.patch("os.fsync"):  # durability is the store's test; thousands of fsyncs cost ~20 s here
        _fill(store, spec.name, n, statuses, weights, seed)
    return folder


def _fill(store, name, n, statuses, weights, seed):
    rng = np.random.default_rng(seed)
    test_rng = np.random.default_rng(seed + 1)  # its own stream: the rest of the table stays as it was
    weights = np.asarray(weights[: len(statuses)], dtype=float)
    for i in range(n):
        status = statuses[rng.choice(len(statuses), p=weights / weights.sum())]
        aperture = float(rng.uniform(0.7, 2.2))
        row = {"trial_id": f"t{i:05d}", "trial_index": i, "sweep": name, "status": status,
               "reason": {"pruned": "estimate below the gate", "infeasible": "kernel does not fit",
                          "failed": "loss became NaN at step 3"}.get(status, ""),
               "seed": i, "started_unix_s": 1000.0 + i, "finished_unix_s": 1000.0 + i + rng.uniform(1, 5),
               "param.aperture_mm": aperture, "param.mask_res": int(rng.choice([96, 128, 160])),
               "param.backend_width": int(rng.choice([8, 32])), "param.suboptic_mm": 0.3,
               "param.kernel_size": 3, "param.pool": 4, "t_total_s": float(rng.uniform(1, 30))}
        if status != "infeasible":
            energy = float(10 ** rng.uniform(0, 3))  # 1 pJ .. 1 nJ: a log axis
            quality = 0.3 + 0.2 * np.log10(energy)
            row |= {"energy_pj": energy, "energy_all_digital_pj": energy * 40, "n_kernels": int(aperture * 5),
                    "macs": int(rng.integers(1_000, 100_000)),
                    "est_accuracy": float(np.clip(quality + rng.normal(0, 0.05), 0, 1))}
        if status == "complete":
            ideal = float(np.clip(quality + rng.normal(0, 0.05), 0, 1))
            raw = ideal - float(rng.uniform(0.02, 0.1))
            row["train_curve"] = json.dumps([[1.0, 0.9, ideal - 0.05], [2.0, 0.4, ideal]])
            for split, shift in (("val", 0.0), ("test", float(test_rng.normal(-0.01, 0.01)))):  # test a bit below val
                row |= {f"accuracy_ideal_{split}": ideal + shift,
                        f"accuracy_realised_{split}": None if i % 3 == 0 else ideal - 0.01 + shift,
                        f"accuracy_fabricated_{split}": raw + shift, f"accuracy_fabricated_{split}_std": 0.02,
                        f"accuracy_fabricated_{split}_p5": raw - 0.03 + shift,
                        f"accuracy_compensated_{split}": raw + 0.01 + shift,
                        f"accuracy_compensated_{split}_std": 0.01, f"accuracy_compensated_{split}_p5": raw - 0.01 + shift}
        store.append(row)


def spec_data(chart) -> tuple[dict, list[dict]]:
    """A chart's Vega-Lite spec and the rows of its (single, consolidated) points dataset."""
    spec = chart.to_dict()
    largest = max(spec["datasets"].values(), key=len)
    return spec, largest


def charts_of(analysis):
    return {key: build(analysis) for key, _, build in SECTIONS}


def built(folder):
    analysis = load(folder)
    return analysis, charts_of(analysis)


def test_front_chart_data_marks_front_dominated_and_pruned(tmp_path):
    folder = make_sweep(tmp_path / "s", 120)
    analysis, sections = built(folder)
    rows = analysis.rows
    complete = rows.filter(pl.col("status") == "complete")
    mask = non_dominated(complete.select("accuracy_compensated_val", "energy_pj").to_numpy(), ["max", "min"])
    spec, data = spec_data(sections["front"][0])
    roles = pl.DataFrame(data)["role"].value_counts()
    count = dict(zip(roles["role"], roles["count"]))
    assert count[ROLE_FRONT] == mask.sum() >= 2
    assert count[ROLE_DOMINATED] == len(complete) - mask.sum()
    assert count[ROLE_PRUNED] == (rows["status"] == "pruned").sum()
    assert count[ROLE_IDEAL] == mask.sum()  # each front design again at its ideal accuracy
    assert ROLE_INFEASIBLE not in count  # infeasible rows have no energy: in a note, not on the axes
    # pruned points sit at their estimate; front points at the objective
    frame = pl.DataFrame(data)
    pruned = frame.filter(pl.col("role") == ROLE_PRUNED)
    assert (pruned["y_plotted"] == pruned["est_accuracy"]).all()
    front = frame.filter(pl.col("role") == ROLE_FRONT)
    assert (front["y_plotted"] == front["accuracy_compensated_val"]).all()
    # the pruned style: its own shape in the shared role scale, and the legend says it is estimated
    layers = spec["layer"]
    point = next(layer for layer in layers if layer["mark"]["type"] == "point")
    shape = point["encoding"]["shape"]["scale"]
    shapes = dict(zip(shape["domain"], shape["range"]))
    assert shapes[ROLE_PRUNED] != shapes[ROLE_FRONT]
    assert "estimated" in ROLE_PRUNED
    # the front is joined as a staircase, stepping after each point along increasing energy (min)
    line = next(layer for layer in layers if layer["mark"]["type"] == "line")
    assert line["mark"]["interpolate"] == "step-after"
    # energy spans 3 decades: log axis; the all-digital reference is a rule at the median
    assert point["encoding"]["x"]["scale"]["type"] == "log"
    rules = [layer for layer in layers if layer["mark"]["type"] == "rule" and "y2" not in layer["encoding"]]
    assert len(rules) == 1
    digital = spec["datasets"][rules[0]["data"]["name"]][0]["energy_pj"]
    assert digital == pytest.approx(rows["energy_all_digital_pj"].drop_nulls().median())
    # every parameter and the objectives are in the tooltip
    titles = {t["title"] for t in point["encoding"]["tooltip"]}
    assert {"param.aperture_mm", "param.mask_res", "accuracy_compensated_val", "energy_pj", "est_accuracy"} <= titles


@pytest.mark.parametrize("objectives, axes, step", [
    ("[{metric: energy_pj, direction: min}, {metric: accuracy_compensated_val_p5, direction: max}]",
     ("energy_pj", "accuracy_compensated_val_p5"), "step-after"),
    ("[{metric: accuracy_ideal_val, direction: max}, {metric: macs, direction: min}]", ("macs", "accuracy_ideal_val"),
     "step-after"),
    ("[{metric: accuracy_ideal_val, direction: max}, {metric: accuracy_compensated_val, direction: max}]",
     ("accuracy_compensated_val", "accuracy_ideal_val"), "step-before"),  # x maximised: steps lead with the next point
])
def test_the_front_follows_the_sweeps_own_objectives(tmp_path, objectives, axes, step):
    folder = make_sweep(tmp_path / "s", 60, overrides=[f"objectives={objectives}"])
    analysis, sections = built(folder)
    assert (analysis.x, analysis.y) == axes == front_axes(analysis.spec)
    spec = analysis.spec
    complete = analysis.rows.filter(pl.col("status") == "complete")
    expected = complete.filter(pl.Series(non_dominated(complete.select(spec.metrics).to_numpy(), spec.directions)))
    chart, _ = sections["front"]
    layers = chart.to_dict()["layer"]
    assert next(layer for layer in layers if layer["mark"]["type"] == "line")["mark"]["interpolate"] == step
    data = pl.DataFrame(spec_data(chart)[1])
    assert set(data.filter(pl.col("role") == ROLE_FRONT)["trial_id"]) == set(expected["trial_id"])
    front = data.filter(pl.col("role") == ROLE_FRONT)
    assert len(front) == len(expected) >= 2 and (front["y_plotted"] == front[axes[1]]).all()


def test_infeasible_designs_with_coordinates_get_their_own_style(tmp_path):
    folder = make_sweep(tmp_path / "s", 40)
    analysis = load(folder)
    rows = analysis.rows.drop("role", "y_plotted").with_columns(  # as if the energy were known for them
        energy_pj=pl.col("energy_pj").fill_null(5.0), est_accuracy=pl.col("est_accuracy").fill_null(0.4))
    chart, _ = charts_of(analyse(analysis.spec, rows))["front"]
    spec, data = spec_data(chart)
    infeasible = [r for r in data if r["role"] == ROLE_INFEASIBLE]
    assert len(infeasible) == (rows["status"] == "infeasible").sum() > 0
    assert all(r["y_plotted"] == 0.4 for r in infeasible)
    point = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "point")
    shapes = dict(zip(point["encoding"]["shape"]["scale"]["domain"], point["encoding"]["shape"]["scale"]["range"]))
    assert shapes[ROLE_INFEASIBLE] not in (shapes[ROLE_FRONT], shapes[ROLE_PRUNED])


def test_front_json_lists_exactly_the_non_dominated_complete_designs(tmp_path):
    folder = make_sweep(tmp_path / "s", 80, seed=1)
    write_report(folder, png=False)
    document = json.loads((folder / "front.json").read_text())
    rows = read_trials(folder / "trials", row_schema(load_spec(folder / "sweep.yaml")))
    complete = rows.filter(pl.col("status") == "complete")
    values = complete.select("accuracy_compensated_val", "energy_pj").to_numpy()
    expected = set(complete.filter(pl.Series(non_dominated(values, ["max", "min"])))["trial_id"])
    assert {d["trial_id"] for d in document["designs"]} == expected
    design = document["designs"][0]
    assert set(design["params"]) == {"aperture_mm", "mask_res", "backend_width", "suboptic_mm", "kernel_size", "pool"}
    assert {"accuracy_compensated_val", "energy_pj", "accuracy_ideal_val"} <= set(design["metrics"])
    reference = reference_point(values, ["max", "min"])
    assert document["reference_point"] == pytest.approx({"accuracy_compensated_val": -reference[0],
                                                         "energy_pj": reference[1]})
    assert document["objectives"] == [{"metric": "accuracy_compensated_val", "direction": "max"},
                                      {"metric": "energy_pj", "direction": "min"}]
    csv = pl.read_csv(folder / "front.csv")
    assert set(csv["trial_id"]) == expected and "param.aperture_mm" in csv.columns
    # chosen on validation; each front design's test score and the gap beside it, never used to choose
    assert document["chosen_on"] == "validation" and "never used to choose" in document["selection"]
    by_id = {r["trial_id"]: r for r in complete.iter_rows(named=True)}
    for design in document["designs"]:
        row, test = by_id[design["trial_id"]], design["test"]["accuracy_compensated_test"]
        assert test["value"] == row["accuracy_compensated_test"] and test["validation"] == "accuracy_compensated_val"
        assert test["gap"] == pytest.approx(row["accuracy_compensated_val"] - row["accuracy_compensated_test"])
    assert "gap_accuracy_compensated_val_minus_test" in csv.columns and "accuracy_compensated_test" in csv.columns


def test_hypervolume_steps_match_the_per_row_history():
    rng = np.random.default_rng(3)
    values = np.c_[rng.uniform(0, 1, 60), 10 ** rng.uniform(0, 3, 60)]
    values[rng.choice(60, 10, replace=False)] = np.nan  # unfinished trials
    directions = ["max", "min"]
    reference = reference_point(values[~np.isnan(values).any(axis=1)], directions)
    history = hypervolume_history(values, directions, reference)
    steps = hypervolume_steps(values, directions, reference)
    filled = np.zeros(len(values))
    for index, value in steps:
        filled[index:] = value
    np.testing.assert_allclose(filled, history)
    assert len(steps) < 30  # evaluations only where the front improves


def test_hypervolume_chart_records_the_reference_point(tmp_path):
    folder = make_sweep(tmp_path / "s", 60)
    analysis, sections = built(folder)
    spec, data = spec_data(sections["hypervolume"][0])
    assert data[0]["trials"] == 0 and data[-1]["trials"] == len(analysis.rows)
    hv = [row["hypervolume"] for row in data]
    assert hv == sorted(hv) and hv[-1] == pytest.approx(analysis.hypervolume)
    compute = [row[next(k for k in row if k.startswith("compute_") and k != "compute_s")] for row in data]
    assert compute == sorted(compute)
    assert "Reference point: accuracy_compensated_val" in json.dumps(spec["title"])


def test_calibration_title_has_spearman_or_says_too_few(tmp_path):
    analysis, sections = built(make_sweep(tmp_path / "s", 60))
    spec, data = spec_data(sections["calibration"][0])
    assert re.search(r"Spearman ρ = -?\d\.\d\d \(n = \d+\)", spec["title"]["text"])
    assert len(data) == (analysis.rows["status"] == "complete").sum()
    assert spearman(np.array([0.1, 0.2]), np.array([0.3, 0.1]))[1].startswith("n = 2: too few")
    assert spearman(np.arange(5.0), np.arange(5.0))[0] == pytest.approx(1.0)


def test_robustness_chart_connects_each_front_designs_stages(tmp_path):
    analysis, sections = built(make_sweep(tmp_path / "s", 80))
    _, data = spec_data(sections["robustness"][0])
    frame = pl.DataFrame(data)
    assert frame["trial_id"].n_unique() == len(analysis.front)
    realised_null = analysis.front["accuracy_realised_val"].null_count()
    assert len(frame) == 4 * len(analysis.front) - realised_null  # null stages are skipped, not zeros
    assert frame.filter(pl.col("stage") == "fabricated, as made")["std"].drop_nulls().len() == len(analysis.front)


def test_parameter_chart_has_one_panel_per_varied_parameter_and_objective(tmp_path):
    analysis, sections = built(make_sweep(tmp_path / "s", 60))
    chart, notes = sections["parameters"]
    spec = chart.to_dict()
    panels = [p for column in spec["concat"] for p in column["vconcat"]]
    assert len(panels) == 3 * 2  # aperture_mm, mask_res, backend_width x 2 objectives
    assert len(spec["datasets"]) == 1  # the panels share one dataset
    assert any("suboptic_mm = 0.3" in note for note in notes)


def test_report_writes_offline_html_pngs_and_the_cli_prints_paths(tmp_path, capsys):
    folder = make_sweep(tmp_path / "s", 50, flush_rows=20)  # rows in part files and in the journal
    assert main([str(folder)]) == 0
    printed = capsys.readouterr().out.split()
    html = (folder / "report.html").read_text()
    assert printed[0] == str(folder / "report.html")
    assert not re.search(r"<script[^>]+src=", html)  # nothing fetched: the bundle is inline
    assert not re.search(r"<link[^>]+href=[\"']https?:", html)
    assert html.count("vegaEmbed(") >= 1 and "const specs" in html
    for name in ("front", "hypervolume", "calibration", "robustness", "learning", "parameters"):
        png = folder / "report" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(png) in printed
    table = html[html.index('<table class="sortable">'):]
    assert table.count("<tr>") == len(json.loads((folder / "front.json").read_text())["designs"]) + 1


def test_energies_are_shown_in_auto_scaled_units(tmp_path):
    folder = make_sweep(tmp_path / "s", 60)  # energies from 1 pJ to 1 nJ
    analysis, sections = built(folder)
    spec, _ = spec_data(sections["front"][0])
    point = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "point")
    x = point["encoding"]["x"]
    assert "µJ" in x["axis"]["labelExpr"] and "nJ" in x["axis"]["labelExpr"] and "(pJ)" not in x["title"]
    write_report(folder, png=False)
    html = (folder / "report.html").read_text()
    table = html[html.index('<table class="sortable">'):]
    assert re.search(r'<td data-v="[0-9.e+-]+">[0-9.]+ (pJ|nJ)</td>', table)  # sorted by the raw pJ, shown scaled


def test_front_designs_learning_curves_are_drawn(tmp_path):
    analysis, sections = built(make_sweep(tmp_path / "s", 40))
    _, data = spec_data(sections["learning"][0])
    frame = pl.DataFrame(data)
    assert set(frame["trial_id"]) == set(analysis.front["trial_id"]) and set(frame["epoch"]) == {1.0, 2.0}


def test_thousands_of_rows_render_within_the_row_limit(tmp_path):
    folder = make_sweep(tmp_path / "s", 6000, weights=(0.75, 0.2, 0.03, 0.02))  # > 5 000 points to draw
    start = time.perf_counter()
    write_report(folder)
    seconds = time.perf_counter() - start
    analysis, sections = built(folder)
    _, data = spec_data(sections["front"][0])
    assert len(data) == charts.MAX_POINTS
    assert sum(r["role"] == ROLE_FRONT for r in data) == len(analysis.front)  # the front is never sampled out
    plotted = analysis.rows.filter(pl.col("energy_pj").is_not_null() & pl.col("y_plotted").is_not_null()
                                   & pl.col("status").is_in(["complete", "pruned"]))
    assert len(plotted) > 5000  # Altair alone would refuse this table
    assert seconds < 30, f"report of 6 000 rows took {seconds:.1f} s"
    print(f"6 000-row report: {seconds:.1f} s")


def test_a_sweep_without_complete_trials_renders_with_notes(tmp_path):
    folder = make_sweep(tmp_path / "s", 12, statuses=("pruned", "failed"), weights=(0.7, 0.3))
    write_report(folder)
    html = (folder / "report.html").read_text()
    assert "No complete trial with every objective yet: no hypervolume." in html
    assert "failed trials (not plotted)" in html
    assert (folder / "report" / "front.png").exists()  # pruned designs still have a place
    assert not (folder / "report" / "hypervolume.png").exists()
    assert json.loads((folder / "front.json").read_text())["designs"] == []


def test_an_empty_sweep_renders(tmp_path):
    folder = make_sweep(tmp_path / "s", 0)
    write_report(folder)
    assert "0 trials recorded" in (folder / "report.html").read_text()


@pytest.mark.browser
def test_report_renders_in_headless_chromium(tmp_path):
    """Every chart div gets Vega's SVG, the console has no error, and clicking a header sorts the table."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    folder = make_sweep(tmp_path / "s", 60)
    html = write_report(folder, png=False).read_text()
    # the front table is sorted by energy (accuracy rising along it); two clicks sort accuracy descending
    clicks = "<script>const th = document.querySelectorAll('table.sortable th')[1]; th.click(); th.click();</script>"
    page = tmp_path / "clicked.html"
    head, end, tail = html.rpartition("</body>")  # the last one: the inlined bundle holds the string too
    page.write_text(head + clicks + end + tail)
    flags = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=5000"]
    done = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=60)
    dom = done.stdout
    for key, _, _ in SECTIONS:  # vega drew into every chart's div
        match = re.search(rf'<div class="chart[^"]*" id="chart-{key}"(.*?)</div>\s*(<h2|<p|$)', dom, re.S)
        assert match and "<svg" in match.group(1), f"chart {key} did not render"
    assert not re.search(r'id="chart-\w+">chart error', dom)
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not [line for line in console if "Uncaught" in line or "rror" in line], console
    table = dom[dom.index('<table class="sortable">'):]
    assert '<th title="accuracy_compensated_val" data-dir="down">' in table
    accuracy = [float(v) for v in re.findall(r'<tr><td>t\d+</td><td data-v="([^"]+)"', table)]
    assert len(accuracy) >= 2 and accuracy == sorted(accuracy, reverse=True)


def test_gate_savings_prices_pruned_designs_at_the_median_trained_trial():
    rows = pl.DataFrame({"status": ["complete", "complete", "complete", "pruned", "pruned", "infeasible"],
                         "t_total_s": [100.0, 200.0, 400.0, 5.0, 3.0, 0.1]})
    savings = gate_savings(rows)
    assert (savings.pruned, savings.complete) == (2, 3)
    assert savings.avoided_s == 400.0 and savings.pruned_s == 8.0 and savings.saved_s == 392.0
    assert abs(savings.saved_fraction - 392.0 / (708.1 + 392.0)) < 1e-12
    assert "pruned 2 designs" in savings.sentence() and "pruned 1 design " in dataclasses.replace(savings, pruned=1).sentence()
    assert gate_savings(rows.filter(pl.col("status") != "complete")) is None
    assert "no design" in gate_savings(rows.filter(pl.col("status") != "pruned")).sentence()
