"""Segmentation end to end: the seg preset builds, the nuclei splits hold out a region, the Carvana
folder loader, the Otsu baseline and the metrics, the design-aware estimate, and one tiny staged
sweep trial (no Ray) from validity to compensation."""

import dataclasses

import numpy as np
import polars as pl
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from explore.experiments.segmentation import verdict
from explore.point import base_design, design_point, scaled_groups
from explore.rows import build_row, outcome_metrics, row_schema
from explore.spec import parse_spec
from explore.context import TrialContext
from explore.trial import run_trial
from onn.data import DatasetError, load_dataset
from onn.data.segment import NUCLEI_ROWS, NUCLEI_TILE, nuclei_image
from onn.design import PRESETS
from onn.energy import get_constants
from onn.estimator import estimate_accuracy
from onn.models import build_hybrid
from onn.optics.sensor import SensorConfig
from onn.optics.validity import InfeasibleDesign
from onn.segmentation import mask_metrics, otsu_mask
from onn.teachers import build_teacher
from onn.train import evaluate

SEG = PRESETS["seg"]


pytestmark = pytest.mark.usefixtures("one_thread")  # many small ops (conftest.one_thread)


@pytest.fixture(scope="module")
def nuclei():
    return load_dataset("nuclei")


# --- the system ---------------------------------------------------------------------------------

def test_the_seg_preset_is_feasible_and_segments_every_pixel():
    report = SEG.check(image_size=32)  # each group is realised on its own: its memory must fit
    assert SEG.kernels() == 56 and report.padded_res > 0
    pixels = [g.kernel_pixel_m * 1e6 for g in SEG.geometries()]
    assert pixels == pytest.approx([11.72, 23.44, 46.88])
    model = build_hybrid(SEG, in_channels=3, image_size=32, n_outputs=1)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 1, 32, 32)
    assert 1.0e6 < sum(p.numel() for p in model.backend_parameters()) < 1.4e6  # SPEC: ~1.06 M


def test_a_decoder_without_one_width_per_group_is_infeasible():
    with pytest.raises(InfeasibleDesign) as info:
        SEG.with_(hidden=(64, 32)).check(image_size=32)
    assert info.value.quantity == "backend_depth" and "3 widths" in str(info.value)


@pytest.mark.parametrize("n, groups", [(56, (8, 16, 32)), (60, (9, 17, 34)), (24, (3, 7, 14)), (7, (1, 2, 4)),
                                       (6, (1, 2, 3)), (3, (1, 1, 1)), (4, (1, 1, 2)), (2, None)])
def test_kernel_groups_keep_the_presets_shares(n, groups):
    assert scaled_groups((8, 16, 32), n) == groups


def test_every_kernel_count_splits_into_positive_groups_that_add_up():
    for n in range(3, 300):
        groups = scaled_groups((8, 16, 32), n)
        assert sum(groups) == n and min(groups) >= 1 and list(groups) == sorted(groups)


def test_a_segmentation_sweep_point_follows_the_layout_and_the_decoder_width():
    base = base_design(channels=3, task="segment")
    point = design_point({"aperture_mm": 5.4, "backend_width": 32}, base=base, training={}, seed=0)
    assert point.design.groups == (9, 17, 34) and point.design.kernels() == 60  # 11 x 11 sub-optics
    assert point.design.hidden == (32, 16, 8) and point.design.backend == "decoder"
    fixed = design_point({"aperture_mm": 5.4, "n_kernels": 28}, base=base, training={}, seed=0).design
    assert fixed.groups == (4, 8, 16) and fixed.kernels() == 28
    tiny = design_point({"aperture_mm": 0.5}, base=base, training={}, seed=0).design  # holds no kernel pair
    with pytest.raises(InfeasibleDesign):
        tiny.check(image_size=32)


# --- data ---------------------------------------------------------------------------------------

def test_nuclei_test_tiles_are_exactly_the_held_out_region(nuclei):
    image, mask = nuclei_image()
    top, bottom = NUCLEI_ROWS["test"]
    columns = image.shape[1] // NUCLEI_TILE
    x, y = nuclei.test.tensors
    rebuilt = x[:, 0].reshape(-1, columns, NUCLEI_TILE, NUCLEI_TILE).permute(0, 2, 1, 3).reshape(bottom - top, -1)
    rebuilt_mask = y[:, 0].reshape(-1, columns, NUCLEI_TILE, NUCLEI_TILE).permute(0, 2, 1, 3).reshape(bottom - top, -1)
    assert torch.equal(rebuilt, torch.from_numpy(image[top:bottom]))
    assert torch.equal(rebuilt_mask.bool(), torch.from_numpy(mask[top:bottom]))
    bands = sorted(NUCLEI_ROWS.values())
    assert all(a[1] <= b[0] for a, b in zip(bands, bands[1:]))  # train / val / test never overlap
    assert len(nuclei.train) == 1024 and torch.equal(nuclei.train.tensors[0][:, 0], nuclei.train.tensors[0][:, 2])


def _write_carvana(root, cars=6, views=2, size=(48, 40)):
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for car in range(cars):
        for view in range(views):
            stem = f"car{car:02d}_{view + 1:02d}"
            pixels = np.full((size[1], size[0], 3), 40 * car, np.uint8)  # the grey level names the car
            Image.fromarray(pixels).save(root / "images" / f"{stem}.jpg")
            mask = np.zeros((size[1], size[0]), np.uint8)
            mask[size[1] // 4: 3 * size[1] // 4, size[0] // 4: 3 * size[0] // 4] = 1  # a box: the "car"
            Image.fromarray(mask * 255).save(root / "masks" / f"{stem}_mask.gif")


def test_carvana_folder_splits_by_car_and_resizes(tmp_path):
    _write_carvana(tmp_path)
    data = load_dataset("carvana", str(tmp_path))
    assert data.task == "segment" and data.channels == 3 and data.image_size == 32
    assert (len(data.train), len(data.val), len(data.test)) == (8, 2, 2)  # 6 cars: 4 / 1 / 1, 2 views each
    x, y = data.train.tensors
    assert x.shape == (8, 3, 32, 32) and y.shape == (8, 1, 32, 32)
    assert set(torch.unique(y).tolist()) == {0.0, 1.0}
    assert y[0, 0, 16, 16] == 1 and y[0, 0, 0, 0] == 0  # the box survives resizing where it should
    cars = {split: {round(float(t.mean()) * 255 / 40) for t in getattr(data, split).tensors[0]}
            for split in ("train", "val", "test")}
    assert len(cars["train"]) == 4 and len(cars["val"]) == len(cars["test"]) == 1
    assert not (cars["train"] & cars["val"] or cars["train"] & cars["test"] or cars["val"] & cars["test"])


def test_carvana_folder_errors_say_what_is_missing(tmp_path):
    with pytest.raises(DatasetError, match="root=<folder>"):
        load_dataset("carvana")
    _write_carvana(tmp_path, cars=3)
    (tmp_path / "masks" / "car00_01_mask.gif").unlink()
    with pytest.raises(DatasetError, match="no mask for car00_01.jpg"):
        load_dataset("carvana", str(tmp_path))


# --- Otsu baseline and metrics ------------------------------------------------------------------

def test_otsu_recovers_the_mask_of_a_bimodal_image():
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    truth = ((yy - 20) ** 2 + (xx - 20) ** 2 < 100) | ((yy - 45) ** 2 + (xx - 40) ** 2 < 64)
    image = torch.where(truth, 0.7, 0.2) + 0.03 * torch.randn(64, 64, generator=g)
    predicted, threshold = otsu_mask(image)
    assert 0.3 < threshold < 0.6
    assert mask_metrics(predicted, truth) == {"iou": 1.0, "miou": 1.0, "dice": 1.0}
    assert mask_metrics(~truth, truth)["iou"] == 0.0


def test_otsu_on_the_whole_nuclei_image_scores_the_specs_iou():
    image, mask = (torch.from_numpy(a) for a in nuclei_image())
    assert mask_metrics(otsu_mask(image)[0], mask)["iou"] == pytest.approx(0.717, abs=0.002)  # SPEC §7


def test_mask_metrics_agree_with_evaluate():
    g = torch.Generator().manual_seed(1)
    truth = (torch.rand(6, 1, 8, 8, generator=g) > 0.6).float()
    guess = torch.rand(6, 1, 8, 8, generator=g) > 0.5

    class Fixed(nn.Module):  # returns the guess as logits, in dataset order
        def forward(self, x, *, generator=None, noise=True):
            return torch.where(guess[x[:, 0, 0, 0].long()], 1.0, -1.0)

    index = torch.arange(6).float().view(6, 1, 1, 1).expand(6, 1, 8, 8)
    ours = mask_metrics(guess, truth)
    theirs = evaluate(Fixed(), TensorDataset(index, truth), "segment", batch_size=4)
    assert ours == pytest.approx(theirs) and 0 < ours["iou"] < ours["miou"] < 1


# --- the design-aware estimate ------------------------------------------------------------------

def test_segmentation_estimate_is_an_iou_that_grows_with_the_kernel_count(nuclei):
    args = dict(n_train=128, n_val=32, n_frontends=2, ceiling=False)
    few = estimate_accuracy(SEG.with_(n_kernels=3, groups=(1, 1, 1)), nuclei, **args)
    many = estimate_accuracy(SEG, nuclei, **args)
    assert 0.0 <= few.design <= 1.0 and 0.0 <= many.design <= 1.0
    assert many.design > few.design + 0.15 and many.seconds_design < 30
    assert many.n_train == 128 and np.isnan(many.ceiling)


def test_segmentation_estimate_drops_with_sensor_noise_and_repeats_with_its_seed(nuclei):
    args = dict(n_train=128, n_val=32, n_frontends=1, ceiling=False)
    quiet = estimate_accuracy(SEG, nuclei, **args)
    loud = estimate_accuracy(SEG.with_(sensor=SensorConfig(read_noise_fs=0.3)), nuclei, **args)
    assert loud.design < quiet.design - 0.2
    again = estimate_accuracy(SEG, nuclei, **args)
    assert (again.design, again.lam_design) == (quiet.design, quiet.lam_design)
    assert estimate_accuracy(SEG, nuclei, **args, seed=1).design != quiet.design


def test_segmentation_estimate_refuses_what_it_does_not_cover(nuclei):
    with pytest.raises(NotImplementedError, match="ceiling is not implemented for segmentation"):
        estimate_accuracy(SEG, nuclei, n_train=16, n_val=16)
    with pytest.raises(ValueError, match="needs the decoder backend"):
        estimate_accuracy(SEG.with_(backend="mlp", groups=None), nuclei, n_train=16, n_val=16, ceiling=False)


# --- a tiny staged trial ------------------------------------------------------------------------

TINY_SEG = {
    "name": "seg_tiny", "task": {"dataset": "nuclei"},
    "fixed": {"suboptic_mm": 0.4, "kernel_size": 3, "wavelengths": "rgb", "mask_res": 200, "n_kernels": 7},
    "space": {"backend_width": {"type": "choice", "values": [8]}},
    "training": {"epochs": 1, "batch_size": 8, "lr": 0.005},
    "objectives": [{"metric": "accuracy_compensated_val", "direction": "max"},
                   {"metric": "energy_pj", "direction": "min"}],
    "gate": {"min_accuracy": 0.0, "dominated_margin": 1.0, "n_train": 32, "n_val": 16, "n_frontends": 1},
    "fabrication": {"draws": 1, "compensation": {"method": "ntkd", "fraction": 0.25, "steps": 4, "batch_size": 8}},
    "realisation": {"steps": 2},
    "budget": {"trials": 1},
}


def test_a_tiny_segmentation_trial_runs_every_stage(nuclei):
    spec = parse_spec(TINY_SEG)
    data = dataclasses.replace(nuclei, train=TensorDataset(*(t[:48] for t in nuclei.train.tensors)),
                               val=TensorDataset(*(t[:16] for t in nuclei.val.tensors)),
                               test=TensorDataset(*(t[:16] for t in nuclei.test.tensors)))
    torch.manual_seed(0)
    teacher = build_teacher("unet", data).eval()  # untrained: the trial only needs its logits and NTK
    params = {**spec.fixed, "backend_width": 8}
    point = design_point(params, base=base_design(data.channels, data.task), training=spec.training, seed=0)
    assert point.design.groups == (1, 2, 4) and point.train.method == "ntkd"
    context = TrialContext(spec=spec, data=data, teacher=teacher, energy=get_constants("default"))
    metrics = outcome_metrics(run_trial(point, context))
    assert metrics["status"] == "complete", metrics.get("reason")
    assert metrics["stage"] == "compensate" and metrics["n_kernels"] == 7 and metrics["train_steps"] == 6
    for name in ("est_accuracy", *(f"{stage}_{split}" for split in ("val", "test") for stage in (
            "accuracy_ideal", "accuracy_realised", "accuracy_fabricated", "accuracy_compensated"))):
        assert 0.0 <= metrics[name] <= 1.0, (name, metrics[name])
    assert metrics["realised_kernel_error"] > 0 and metrics["energy_pj"] > 0
    assert metrics["pixels_read"] == 2 * 3 * (1 * 32**2 + 2 * 16**2 + 4 * 8**2)  # groups 1/2/4 at 32/16/8 px
    assert metrics["energy_all_digital_pj"] > 0 and metrics["macs"] > 0
    row = build_row(spec, params, metrics)  # the Parquet row accepts every metric the trial reports
    frame = pl.DataFrame([row], schema=row_schema(spec))
    assert frame["status"][0] == "complete" and frame["param.backend_width"][0] == 8


# --- the experiment's verdict -------------------------------------------------------------------

def test_the_verdict_says_whether_ntkd_beats_otsu_and_the_other_methods():
    def frame(ntkd, none):
        rows = [{"method": m, "seed": s, "test_iou_pct": v, "test_miou_pct": v + 5}
                for m, values in (("ntkd", ntkd), ("task", none)) for s, v in enumerate(values)]
        return pl.DataFrame(rows)

    otsu = {"test_iou_pct": 78.0}
    good = verdict(frame([80.0, 81.0, 82.0], [79.0, 82.0, 80.0]), otsu)
    assert "beats it in every seed" in good[0] and "+0.67" in good[1] and "2 of 3 seeds" in good[1]
    bad = verdict(frame([77.0, 81.0, 82.0], [79.0, 82.0, 80.0]), otsu)
    assert "does NOT beat it" in bad[0]


@pytest.mark.slow
def test_the_segmentation_experiment_quick_run_writes_its_table(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "ONN_CACHE_DIR": str(tmp_path / "cache"), "ONN_NO_REEXEC": "1"}
    done = subprocess.run([sys.executable, "-m", "explore.experiments.segmentation", "--quick", "--threads", "1",
                           "--out", str(tmp_path / "out")], cwd=Path(__file__).parent.parent, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    frame = pl.read_parquet(tmp_path / "out" / "segmentation.parquet")
    assert set(frame["kind"]) == {"otsu", "teacher", "hybrid", "fabricated"}
    assert sorted(frame.filter(kind="hybrid")["method"]) == ["kd", "ntkd", "task"]
    text = (tmp_path / "out" / "segmentation.md").read_text()
    assert "Otsu on the full 512x512 image: IoU 71.66 %" in text and "| hybrid | NTKD |" in text
