"""Fabrication errors, the robustness Monte Carlo and backend-only compensation (SPEC §4)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

import onn.robustness
import onn.train
from onn.data import load_dataset
from onn.design import Design
from dataclasses import replace

from onn.fabrication import (NO_KERNEL_ERRORS, NO_PHYSICAL_ERRORS, REALISED_KERNEL_ERROR, KernelErrors, PhysicalErrors,
                             Realisation, model_frames,
                             default_kernel_errors, fabricate, fabricate_physical, freeze_realised, perturb_halves,
                             perturb_widths, physical_halves, realise, realise_design, shift_bilinear)
from onn.models import build_hybrid
from onn.optics.inverse_design import inverse_design
from onn.optics.psf import normalised_l2_error, split_signed
from onn.robustness import (CompensationConfig, compensate, compensation_subset, draw_generator, make_draw,
                            monte_carlo)
from onn.teachers import get_teacher
from onn.train import TrainConfig, evaluate, fit

TINY = Design(aperture_mm=2.0, suboptic_mm=0.3, mask_res=128, n_kernels=4, kernel_size=3, hidden=(16,))
TINY_OPTICS = Design(aperture_mm=2.0, suboptic_mm=0.3, mask_res=128, n_kernels=2, kernel_size=3)
QUIET = dict(batch_size=32, ntk_subbatch=8, log_every_s=1e9)


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def trained(data):
    """A tiny hybrid trained for a few seconds (well above chance, so errors can cost accuracy)."""
    model = build_hybrid(TINY, in_channels=1, image_size=16, n_outputs=10, seed=0)
    fit(model, data.train, task="classify", config=TrainConfig(method="task", epochs=3, batch_size=64, lr=5e-3),
        log=None)
    return model


@pytest.fixture(scope="module")
def tiny_design():
    """Two random signed 3x3 kernels inverse-designed on a tiny grid (a rough but real design)."""
    geometry = TINY_OPTICS.geometry()
    kernels = torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    return inverse_design(kernels, geometry, steps=15, generator=torch.Generator().manual_seed(0)), geometry


# --- the error model ---------------------------------------------------------------------------

def test_zero_kernel_errors_are_the_identity_and_the_original_is_untouched(trained, data):
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    made = fabricate(trained, NO_KERNEL_ERRORS, torch.Generator().manual_seed(0))
    assert made.optics[0].frozen and not trained.optics[0].frozen
    assert torch.equal(made.optics[0].halves(), trained.optics[0].halves())
    x = data.test.tensors[0][:64]
    with torch.no_grad():
        assert torch.equal(made(x, noise=False), trained(x, noise=False))
    fabricate(trained, default_kernel_errors(1), torch.Generator().manual_seed(0))
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in before.items())


def test_errors_with_no_magnitude_only_pad_the_kernel():
    halves = torch.rand(3, 2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    errors = replace(NO_KERNEL_ERRORS, shift_px=1e-9)  # a border, no shift
    out = perturb_halves(halves, errors, torch.Generator().manual_seed(0))
    assert out.shape == (3, 2, 3, 7, 7)
    assert torch.allclose(out[..., 1:-1, 1:-1], halves, atol=1e-6) and out.sum() == pytest.approx(halves.sum())


def test_zero_physical_errors_reproduce_the_designed_kernels(tiny_design):
    design, geometry = tiny_design
    halves = physical_halves(design, geometry, NO_PHYSICAL_ERRORS, torch.Generator().manual_seed(0))
    assert halves.shape == (2, 2, 1, 3, 3) and (halves >= 0).all()
    assert torch.allclose(halves[:, 0] - halves[:, 1], design.realised_kernels, atol=1e-6)


def test_kernel_noise_has_the_requested_size():
    halves = torch.nn.functional.relu(torch.randn(8, 2, 1, 7, 7, generator=torch.Generator().manual_seed(0)))
    peak = (halves[:, 0] - halves[:, 1]).abs().flatten(1).amax(1).view(8, 1, 1, 1, 1)
    for sigma in (0.1, 0.2):
        errors = replace(NO_KERNEL_ERRORS, kernel_sigma_rel=sigma)
        out = perturb_halves(halves, errors, torch.Generator().manual_seed(1))
        rms = ((out - halves) / peak).square().mean().sqrt()
        assert sigma / 3 < rms < 3 * sigma  # the clamp at 0 shrinks it a little, nothing more
        assert (out >= 0).all()


def test_gain_and_shift_keep_the_light_within_the_gain_range():
    halves = torch.rand(6, 2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    out = perturb_halves(halves, replace(NO_KERNEL_ERRORS, gain_range=(0.8, 1.2), shift_px=1.0, gain_shared=False),
                         torch.Generator().manual_seed(2))
    ratio = out.sum((-1, -2)) / halves.sum((-1, -2))  # (n, 2, C)
    assert ((ratio >= 0.8 - 1e-5) & (ratio <= 1.2 + 1e-5)).all() and ratio.std() > 0.01
    assert torch.allclose(ratio, ratio[..., :1].expand_as(ratio), atol=1e-5)  # one gain per sub-optic


def test_a_shared_gain_scales_both_halves_of_a_kernel_alike():
    halves = torch.rand(6, 2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    gains = {}
    for shared in (False, True):
        errors = replace(NO_KERNEL_ERRORS, gain_range=(0.8, 1.2), gain_shared=shared)
        out = perturb_halves(halves, errors, torch.Generator().manual_seed(2))
        gains[shared] = (out.sum((-1, -2)) / halves.sum((-1, -2)))[..., 0]  # (n, 2)
    assert torch.allclose(gains[True][:, 0], gains[True][:, 1])
    assert not torch.allclose(gains[False][:, 0], gains[False][:, 1])
    assert torch.allclose(gains[True][:, 0], gains[False][:, 0])  # the same draw, K⁻ takes K⁺'s gain


@pytest.mark.parametrize("colours", [1, 3])
def test_the_calibrated_distortion_has_the_size_inverse_design_reaches(colours):
    """The calibrated model's smooth distortion gives every signed kernel exactly the normalised L2
    error that realised inverse designs measure for the wavelength set (benchmarks: 0.05 / 0.15)."""
    kernels = torch.randn(10, colours, 7, 7, generator=torch.Generator().manual_seed(0))
    halves = split_signed(kernels)  # (n, 2, C, 7, 7)
    calibrated = default_kernel_errors(colours)
    only_distortion = replace(NO_KERNEL_ERRORS, distortion_rel=calibrated.distortion_rel)
    out = perturb_halves(halves, only_distortion, torch.Generator().manual_seed(1))
    error = normalised_l2_error(out[:, 0] - out[:, 1], kernels)  # (n, C)
    assert calibrated.distortion_rel == REALISED_KERNEL_ERROR[colours]
    assert torch.allclose(error, torch.full_like(error, calibrated.distortion_rel), rtol=0.02)
    assert (out >= 0).all() and ((out > 0) <= (halves > 0)).all()  # no light where the design has none
    # smooth: neighbouring pixels' relative errors are correlated, unlike iid noise
    eps = (out / halves.clamp(min=1e-6) - 1)[halves > 0.3]
    assert eps.abs().max() < 1


def test_the_calibrated_gain_is_shared_by_a_kernels_halves_up_to_a_small_residual():
    halves = torch.rand(50, 2, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    errors = replace(default_kernel_errors(1), shift_px=0.0, distortion_rel=0.0)
    out = perturb_halves(halves, errors, torch.Generator().manual_seed(3))
    gains = out.sum((-1, -2, -3)) / halves.sum((-1, -2, -3))  # (n, 2)
    ratio = gains[:, 0] / gains[:, 1]
    assert gains.min() > 0.8 * 0.98 - 1e-6 and gains.max() < 1.2 * 1.02 + 1e-6 and gains.std() > 0.05
    assert (ratio - 1).abs().max() <= 1.02 / 0.98 - 1 + 1e-6 and (ratio - 1).abs().max() > 0.005
    uncalibrated = default_kernel_errors(1, "uncalibrated")
    assert not uncalibrated.gain_shared and uncalibrated.kernel_sigma_rel == 0.10 and uncalibrated.shift_px == 1.0
    with pytest.raises(ValueError, match="unknown kernel-error preset"):
        default_kernel_errors(1, "optimistic")


def test_a_sub_pixel_shift_moves_the_centroid_by_the_shift():
    image = torch.zeros(1, 2, 1, 9, 9)
    image[..., 3:6, 3:6] = torch.rand(1, 2, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    shift = torch.tensor([[[0.3, -0.7], [1.0, 0.25]]])  # (n, 2, [dy, dx]) pixels
    moved = shift_bilinear(image, shift)
    axis = torch.arange(9.0)
    centroid = lambda im: torch.stack([(im.sum(-1) * axis).sum(-1), (im.sum(-2) * axis).sum(-1)], -1) / im.sum((-1, -2))[..., None]
    assert torch.allclose(centroid(moved)[:, :, 0] - centroid(image)[:, :, 0], shift, atol=1e-5)


def test_chromatic_blur_spreads_red_and_blue_but_not_green():
    halves = torch.zeros(1, 2, 3, 3, 3)
    halves[..., 1, 1] = 1.0
    out = perturb_halves(halves, replace(NO_KERNEL_ERRORS, chromatic_blur_px=0.5), torch.Generator(),
                         (635.0, 532.0, 450.0))
    centre = out.shape[-1] // 2
    peaks = out[0, 0, :, centre, centre]
    assert peaks[1] == 1.0 and peaks[0] < 0.7 and peaks[2] < 0.7
    assert out.sum((-1, -2)).sub(1).abs().max() < 1e-3  # blur keeps the light (border wide enough)
    with pytest.raises(ValueError, match="wavelengths_nm"):
        perturb_halves(halves, KernelErrors(chromatic_blur_px=0.5), torch.Generator())


def test_larger_width_errors_change_the_psfs_more(tiny_design):
    design, geometry = tiny_design

    def change(errors):
        halves = [physical_halves(design, geometry, errors, torch.Generator().manual_seed(i)) for i in range(3)]
        return sum(float(normalised_l2_error(h[:, 0] - h[:, 1], design.realised_kernels).mean()) for h in halves) / 3

    small, large = change(PhysicalErrors(width_sigma_nm=5.0, misalignment_px=0.0)), change(
        PhysicalErrors(width_sigma_nm=20.0, misalignment_px=0.0))
    assert 0 < small < large
    assert change(PhysicalErrors(width_sigma_nm=0.0, width_bias_nm=10.0, misalignment_px=0.0)) > 0
    assert change(PhysicalErrors(width_sigma_nm=0.0, misalignment_px=0.0, phase_levels=4)) > 0
    shifted = physical_halves(design, geometry, PhysicalErrors(width_sigma_nm=0.0, misalignment_px=0.5),
                              torch.Generator().manual_seed(0))
    assert shifted.shape == (2, 2, 1, 5, 5)  # a one-pixel border on each side for the offsets


def test_widths_the_design_leaves_out_stay_out():
    widths = torch.tensor([[0.0, 0.03, 0.1, 0.2]]).expand(4, 4).reshape(1, 2, 2, 4)  # (n, 2, N, N) µm
    made = perturb_widths(widths, PhysicalErrors(width_sigma_nm=20.0, width_bias_nm=5.0),
                          torch.Generator().manual_seed(0))
    assert (made[widths < 0.06] == 0).all() and (made[widths >= 0.06] != widths[widths >= 0.06]).all()


def test_same_seed_gives_the_same_draw_in_another_process(trained, tmp_path):
    """A Ray worker on another machine must draw the same fabricated system."""
    state = tmp_path / "model.pt"
    torch.save(trained.state_dict(), state)
    widths = torch.rand(2, 2, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.24
    torch.save(widths, tmp_path / "widths.pt")
    code = f"""
import torch
from onn.design import Design
from onn.fabrication import PhysicalErrors, default_kernel_errors, fabricate, perturb_widths
from onn.models import build_hybrid
from onn.robustness import draw_generator
model = build_hybrid(Design(aperture_mm=2.0, suboptic_mm=0.3, mask_res=128, n_kernels=4, kernel_size=3,
                            hidden=(16,)), in_channels=1, image_size=16, n_outputs=10, seed=0)
model.load_state_dict(torch.load({str(state)!r}))
made = fabricate(model, default_kernel_errors(1), draw_generator(7, 3))
widths = perturb_widths(torch.load({str(tmp_path / 'widths.pt')!r}), PhysicalErrors(), draw_generator(7, 3))
torch.save({{"halves": made.optics[0].halves(), "widths": widths}}, {str(tmp_path / 'draw.pt')!r})
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1], timeout=120)
    other = torch.load(tmp_path / "draw.pt")
    here = fabricate(trained, default_kernel_errors(1), draw_generator(7, 3)).optics[0].halves()
    assert torch.equal(other["halves"], here)
    assert torch.equal(other["widths"], perturb_widths(widths, PhysicalErrors(), draw_generator(7, 3)))
    assert not torch.equal(here, fabricate(trained, default_kernel_errors(1), draw_generator(7, 4)).optics[0].halves())


def test_physical_fabrication_of_a_realised_model(data):
    model = build_hybrid(TINY_OPTICS.with_(hidden=(16,)), in_channels=1, image_size=16, n_outputs=10, seed=0)
    realisation = realise_design(model, steps=3, chunk=1, generator=torch.Generator().manual_seed(0))
    (design,) = realisation.designs
    assert design.widths_um.shape == (2, 2, 128, 128) and design.scales.shape == (2, 2, 1)
    assert realisation.geometries == (TINY_OPTICS.geometry(),)
    ideal = freeze_realised(model, realisation)
    assert torch.allclose(ideal.optics[0].signed_kernels(), design.realised_kernels, atol=1e-6)
    made = fabricate_physical(model, realisation, PhysicalErrors(), torch.Generator().manual_seed(0),
                              kernel_errors=KernelErrors(shift_px=0.0, kernel_sigma_rel=0.0))
    assert made.optics[0].halves().shape == (2, 2, 1, 5, 5) and not model.optics[0].frozen
    assert made(data.test.tensors[0][:4]).shape == (4, 10)
    with pytest.raises(ValueError, match="realisation"):
        make_draw(model, PhysicalErrors(), torch.Generator())


def test_bad_magnitudes_are_refused_naming_the_field():
    with pytest.raises(ValueError, match="gain_range"):
        KernelErrors(gain_range=(1.2, 0.8))
    with pytest.raises(ValueError, match="shift_px"):
        KernelErrors(shift_px=-1)
    with pytest.raises(ValueError, match="phase_levels"):
        PhysicalErrors(phase_levels=1)
    assert KernelErrors().scaled(0.0) == NO_KERNEL_ERRORS
    assert PhysicalErrors().scaled(2.0).width_sigma_nm == 2 * PhysicalErrors().width_sigma_nm


# --- the Monte Carlo ---------------------------------------------------------------------------

def test_monte_carlo_is_consistent_and_reproducible(trained, data):
    errors = default_kernel_errors(1).scaled(2.0)
    a = monte_carlo(trained, errors, draws=4, seed=5, task="classify", score_on={"test": data.test})
    b = monte_carlo(trained, errors, draws=4, seed=5, task="classify", score_on={"test": data.test})
    per_draw = [d.made["test"]["accuracy"] for d in a.draws]
    assert per_draw == [d.made["test"]["accuracy"] for d in b.draws]
    spread = a.made("test")
    assert len(per_draw) == 4 and min(per_draw) <= spread.p5 <= spread.mean <= max(per_draw)  # p5 <= mean: <= 20 draws
    assert spread.std > 0 and a.seconds_made > 0 and all(not d.compensated for d in a.draws)
    ideal = evaluate(trained, data.test, "classify")["accuracy"]
    assert ideal > 0.3 and ideal - spread.mean > 0  # (chance is 0.1) twice the default errors cost accuracy
    fewer = monte_carlo(trained, errors, draws=2, seed=5, task="classify", score_on={"test": data.test})
    assert [d.made["test"]["accuracy"] for d in fewer.draws] == per_draw[:2]
    none = monte_carlo(trained, NO_KERNEL_ERRORS, draws=2, seed=5, task="classify", score_on={"test": data.test})
    assert none.made("test").mean == pytest.approx(ideal)


def test_monte_carlo_builds_each_draw_once_and_compensates_copies_of_it(trained, data, monkeypatch):
    built = []
    real = onn.robustness.make_draw
    monkeypatch.setattr(onn.robustness, "make_draw", lambda *a, **k: built.append(1) or real(*a, **k))
    result = monte_carlo(trained, default_kernel_errors(1), draws=2, seed=0, task="classify",
                         score_on={"val": data.val, "test": data.test}, compensations=("none", "task", "ntkd"),
                         train=data.train, teacher=get_teacher("digits", log=None, epochs=2)[0],
                         compensation=CompensationConfig(steps=3, batch_size=32), base=TrainConfig(**QUIET))
    assert len(built) == 2  # one fabricated system per draw, whatever the compensations
    for draw in result.draws:
        assert draw.made.keys() == {"val", "test"} and draw.compensated.keys() == {"task", "ntkd"}
        assert draw.fine_tuned["task"].steps == draw.fine_tuned["ntkd"].steps == 3  # no val: the whole budget
    assert result.steps("ntkd") == 3 and 0 <= result.compensated("task", "val").mean <= 1
    with pytest.raises(ValueError, match="training split"):
        monte_carlo(trained, default_kernel_errors(1), draws=1, seed=0, task="classify",
                    score_on={"test": data.test}, compensations=("task",))


# --- compensation ------------------------------------------------------------------------------

def test_compensation_stops_on_validation_and_keeps_the_best_backend(trained, data, monkeypatch):
    made = fabricate(trained, default_kernel_errors(1).scaled(2.0), draw_generator(0, 2))
    scored = []
    real = onn.train.evaluate
    monkeypatch.setattr(onn.train, "evaluate", lambda model, split, *a, **k: scored.append(split) or
                        real(model, split, *a, **k))
    config = CompensationConfig(steps=200, lr=5e-3, batch_size=32, eval_every=5, patience=2, val_samples=150)
    result = compensate(made, data.train, "classify", method="task", config=config, base=TrainConfig(**QUIET),
                        seed=0, val=data.val)
    steps, scores = zip(*result.curve)
    assert steps[0] == 0 and all(b - a == 5 for a, b in zip(steps, steps[1:]))
    assert result.steps < 200  # stopped: two checks without improvement
    assert result.best_step == steps[scores.index(max(scores))]  # the best check's backend was kept
    checked = {len(split) for split in scored}
    assert checked == {150} and all(split is not data.test for split in scored)  # never the test split
    kept = evaluate(made, scored[0], "classify")["accuracy"]
    assert kept == pytest.approx(max(scores)) and max(scores) >= scores[0]



def test_compensation_trains_only_the_backend(trained, data):
    teacher, _ = get_teacher("digits", log=None, epochs=2)
    made = fabricate(trained, default_kernel_errors(1).scaled(2.0), draw_generator(0, 0))
    optics = {k: v.clone() for k, v in made.optics.state_dict().items()}  # fixed_halves and weight
    backend = [p.clone() for p in made.backend_parameters()]
    result = compensate(made, data.train, "classify", teacher=teacher, method="ntkd",
                        config=CompensationConfig(steps=8, lr=5e-3, batch_size=32), base=TrainConfig(**QUIET), seed=0)
    assert set(optics) == {"0.weight", "0.fixed_halves"}
    assert all(torch.equal(v, made.optics.state_dict()[k]) for k, v in optics.items())
    assert any(not torch.equal(p, q) for p, q in zip(backend, made.backend_parameters()))
    assert result.method == "ntkd" and result.steps == result.best_step == 8 and result.curve == ()
    assert dict(result.loss_terms)["ntk"] > 0  # the student's Gram, w.r.t. the backend only, is live
    with pytest.raises(ValueError, match="freeze the optics"):
        compensate(trained, data.train, "classify", method="task")
    with pytest.raises(ValueError, match="compensation method"):
        compensate(made, data.train, "classify", method="none")


def test_compensation_sees_a_tenth_of_the_training_split_and_no_test_data(trained, data, monkeypatch):
    seen = []
    monkeypatch.setattr(onn.robustness, "fit", lambda model, train, **kw: seen.append(train) or fit(model, train, **kw))
    made = fabricate(trained, default_kernel_errors(1), draw_generator(0, 1))
    result = compensate(made, data.train, "classify", method="task", config=CompensationConfig(steps=2),
                        base=TrainConfig(**QUIET), seed=3, val=data.val)
    (subset,) = seen
    train_rows = {tuple(x.flatten().tolist()) for x in data.train.tensors[0]}
    test_rows = {tuple(x.flatten().tolist()) for x in data.test.tensors[0]}
    rows = [tuple(x.flatten().tolist()) for x in subset.tensors[0]]
    assert all(r in train_rows for r in rows) and not any(r in test_rows for r in rows)
    assert len(subset) == result.n_samples == 120 == round(0.1 * len(data.train))
    assert torch.equal(compensation_subset(1200, 0.1, seed=3), compensation_subset(1200, 0.1, seed=3))
    assert not torch.equal(compensation_subset(1200, 0.1, seed=3), compensation_subset(1200, 0.1, seed=4))


def test_table4_physical_curve_realises_retrains_on_validation_and_draws(data, monkeypatch):
    """The Table 4 script's physical level end to end on a tiny system: realised full-frame, the
    backend retrained on the realised optics with early stopping on validation (never test), one
    width-error draw per point."""
    import types

    from explore.experiments import table4

    stopped_on = []
    real = table4.compensate
    monkeypatch.setattr(table4, "compensate", lambda *a, **kw: stopped_on.append(kw["val"]) or real(*a, **kw))
    design = TINY_OPTICS.with_(hidden=(16,))
    model = build_hybrid(design, in_channels=1, image_size=16, n_outputs=10, seed=0)
    settings = table4.Settings(("tiny",), 1.0, None, 1, 1.0, 5, 0.1, (0.0, 1.0), 10.0, 10.0, 3, 2, {}, 0.05, None, (0,),
                               imaging="frame")
    teacher, _ = get_teacher("digits", log=None, epochs=2)
    timing = {}
    rows = table4.physical_curve("tiny", types.SimpleNamespace(design=design), data, teacher, model, data.test,
                                 settings, "cpu", timing)
    assert [(r["error"], r["scale"]) for r in rows] == [("width σ", 0.0), ("width σ", 1.0), ("width bias", 0.0),
                                                         ("width bias", 1.0)]
    assert all(r["draws"] == 1 and 0 <= r["mean_pct"] <= 100 for r in rows)
    assert stopped_on == [data.val] and timing["design_s_per_step"] > 0
    assert table4.comp_config(settings).steps == 5


def test_full_frame_halves_carry_the_stray_light_so_the_kernel_level_haze_is_dropped():
    model = build_hybrid(TINY_OPTICS.with_(hidden=(16,), haze=2.0), in_channels=1, image_size=16, n_outputs=10, seed=0)
    assert model.optics[0].haze == 2.0
    window = realise_design(model, steps=2, chunk=2, generator=torch.Generator().manual_seed(0))
    frame = Realisation(window.designs, window.geometries, model_frames(model))
    assert freeze_realised(model, window).optics[0].haze == 2.0  # the window model keeps the kernel-level haze
    made = freeze_realised(model, frame).optics[0]
    assert made.haze == 0.0 and made.halves().shape[-1] == 2 * 16 - 1 and model.optics[0].haze == 2.0
