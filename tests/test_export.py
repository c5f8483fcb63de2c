"""From front to foundry: the layout read back equals the saved widths, the rebuilt system scores
what the sweep recorded, and bad requests say what to do."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from explore.context import TrialContext
from explore.driver import write_artefacts
from explore.export import ExportError, blocks, export, handoff_of, main
from explore.report import write_report
from explore.rows import build_row, outcome_metrics, row_schema
from explore.spec import load_spec, spec_to_yaml
from explore.store import TrialStore
from explore.trial import run_trial
from onn.data import load_dataset
from onn.energy import get_constants
from onn.handoff import HandOff, rebuild, width_table_nm
from onn.teachers import build_teacher
from onn.train import evaluate, headline

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sweep_folder(tmp_path_factory):
    """A results folder as a sweep leaves it: sweep.yaml, rows, and one complete trial's artefacts."""
    folder = tmp_path_factory.mktemp("export") / "tiny"
    spec = load_spec(ROOT / "sweeps" / "tiny.yaml", ["realisation.steps=3", "gate.enabled=false",
                                                     "fabrication.draws=1", "training.epochs=1"])
    data = load_dataset("digits")
    teacher = build_teacher("lenet5", data).eval()
    context = TrialContext(spec=spec, data=data, teacher=teacher, energy=get_constants("default"))
    point = context.point({**spec.fixed, "aperture_mm": 1.0, "mask_res": 128, "backend_width": 8})  # 2 kernels
    outcome = run_trial(point, context, trial_index=0)
    assert outcome.status == "complete", outcome.reason
    folder.mkdir(parents=True)
    (folder / "sweep.yaml").write_text(spec_to_yaml(spec))
    store = TrialStore(folder / "trials", row_schema(spec), flush_rows=1)
    kept = write_artefacts(folder, 0, outcome.realised.handoff.files())
    metrics = {**outcome_metrics(outcome), "trial_id": "t0", "trial_index": 0,
               "artefacts": str(kept.relative_to(folder))}
    store.append(build_row(spec, dict(point.params), metrics))
    store.append(build_row(spec, dict(point.params), {"trial_id": "t1", "trial_index": 1, "status": "pruned",
                                                     "reason": "estimated accuracy 0.1 < gate.min_accuracy 0.15"}))
    return folder, outcome, data


def test_the_layout_read_back_is_the_saved_width_map(sweep_folder, tmp_path):
    import gdstk

    folder, outcome, _ = sweep_folder
    sizes = export(folder, 0, tmp_path, oasis=True)
    target = tmp_path / "trial-00000"
    assert {p.name for p in target.iterdir()} >= {"metasurface.gds", "metasurface.oas", "card.json", "widths.npz",
                                                  "model.pt", "preview.png"}
    assert sizes["gds_mb"] > 0 and sizes["oas_mb"] > 0
    card = json.loads((target / "card.json").read_text())
    handoff = HandOff.from_files({n: (target / n).read_bytes() for n in ("card.json", "widths.npz", "model.pt")})
    library = gdstk.read_gds(str(target / "metasurface.gds"))
    cells = {cell.name: cell for cell in library.cells}
    top = cells["METASURFACE"]
    assert len(top.references) == len(card["suboptics"]) == 4  # 2 kernels x K+/K-
    labels = sorted(label.text for label in top.labels)
    assert labels == ["k0+", "k0-", "k1+", "k1-"]
    outline = [p for p in top.polygons if p.layer == 2]
    assert len(outline) == 1 and np.allclose(outline[0].bounding_box()[1], [card["aperture_mm"] * 500] * 2)
    # one sub-optic, flattened: every pillar at a lattice site, with the width of the sample it lies in
    entry = card["suboptics"][1]  # kernel 0, K-
    saved = handoff.widths[0][0, 1]  # (N, N) indices
    flat = cells[entry["cell"]].copy("FLAT").flatten()
    boxes = np.array([p.bounding_box() for p in flat.polygons])  # (P, 2, 2)
    period, pitch, mask_res = card["lattice_period_um"], card["pitch_um"], card["mask_res"]
    sites, sample_of = blocks(mask_res, pitch, period)
    centres = boxes.mean(1)  # (P, 2) (x, y)
    site = np.rint((centres + sites * period / 2) / period - 0.5).astype(int)  # (P, 2) lattice site
    assert np.allclose(site * period + period / 2 - sites * period / 2, centres, atol=1e-3)  # on the lattice
    width_nm = np.rint((boxes[:, 1, 0] - boxes[:, 0, 0]) * 1e3)
    table = width_table_nm()
    rows, columns = sample_of[site[:, 1]], sample_of[site[:, 0]]
    assert np.array_equal(width_nm, table[saved[rows, columns]])  # positions and widths: the saved map
    counts = np.bincount(sample_of, minlength=mask_res)  # sites per sample along one side
    expected = int((counts[:, None] * counts[None, :])[saved > 0].sum())
    assert len(flat.polygons) == expected  # one pillar per site of every non-empty sample
    hist_saved = np.bincount(saved[saved > 0], weights=(counts[:, None] * counts[None, :])[saved > 0], minlength=len(table))
    assert np.array_equal(np.bincount(np.searchsorted(table, width_nm), minlength=len(table)), hist_saved)


def test_the_rebuilt_system_scores_what_the_sweep_recorded(sweep_folder):
    folder, outcome, data = sweep_folder
    rebuilt = rebuild(handoff_of(folder, 0))
    for split in ("val", "test"):
        assert headline(evaluate(rebuilt, getattr(data, split), data.task)) == outcome.realised.scores[split]
    state = torch.load(folder / "artefacts" / "trial-00000" / "model.pt", weights_only=True)  # loads safely
    assert all(not k.startswith("optics.") for k in state) and any(k.startswith("backend.") for k in state)


def test_bad_requests_say_what_to_do(sweep_folder, tmp_path, capsys):
    folder, _, _ = sweep_folder
    with pytest.raises(ExportError, match="no trial 7; the sweep has trials"):
        handoff_of(folder, 7)
    with pytest.raises(ExportError, match="trial 1 did not complete .pruned"):
        handoff_of(folder, 1)
    old = tmp_path / "old"
    old.mkdir()
    for name in ("sweep.yaml", "trials"):
        (old / name).symlink_to(folder / name)
    with pytest.raises(ExportError, match="written before trials kept their designs"):
        handoff_of(old, 0)
    assert main([str(folder), "--trial", "1", "--out", str(tmp_path / "x")]) == 2
    assert "cannot export: trial 1 did not complete" in capsys.readouterr().err
    assert main([str(tmp_path / "nowhere"), "--front", "--out", str(tmp_path / "x")]) == 2


def test_the_report_shows_each_front_design_s_layout(sweep_folder):
    folder, _, _ = sweep_folder
    page = write_report(folder, png=False).read_text()
    assert "Front layouts" in page and page.count('src="data:image/png;base64,') == 1
    preview = folder / "report" / "preview-trial-00000.png"
    assert Image.open(preview).size == (2 * 320 + 16, 320)


def test_a_realised_trial_records_where_its_light_went(sweep_folder):
    """The row's light budget (full-frame imaging, tiny.yaml's default) closes and counts crosstalk."""
    _, outcome, _ = sweep_folder
    light = outcome.realised.light
    assert outcome.realised.handoff.card["imaging"] == {"model": "frame", "baffle": False}
    parts = ("light_in_window", "light_own_subimage", "light_crosstalk", "light_unread", "light_lost")
    assert sum(light[p] for p in parts) == pytest.approx(1.0, abs=1e-3), light
    assert 0 < light["light_in_window"] < 1 and light["light_crosstalk"] > 0 and light["crosstalk_ratio"] > 0
