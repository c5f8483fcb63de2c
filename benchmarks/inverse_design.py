"""Inverse design on this machine: the design error on the authors' reference grid, and how it
falls as the mask resolution grows.

(a) Reference geometry (SPEC §1): 1600 x 1600 samples at 586 nm pitch (0.9376 mm sub-optic),
    2.4 mm to the sensor, 11.72 µm kernel pixels, padded x2 to 3200^2. Designs a 7x7 signed kernel
    at 532 nm (mono) and a 3x7x7 signed kernel at 635/532/450 nm (RGB), and compares the design
    error with the one the authors' code reports (R 0.50 / G 0.33 / B 0.36). The time per step is
    measured first; if ``--steps`` would overrun ``--budget-min`` for both kernels together, fewer
    steps are run and the output says so.
(b) Mask-resolution sweep on a cheap sub-optic (``--suboptic-mm``, default 0.4 mm): the same
    kernels at every ``--mask-res``, fixed ``--sweep-steps``. Resolutions that `check_geometry`
    refuses are listed with its reason.

"peak RSS" is the process-wide peak so far (``ru_maxrss``); the per-kernel footprint is printed
right after each kernel's step probe, mono first.

Kernels are random smooth signed 7x7 maps with a fixed seed (a 3x3 box blur of Gaussian noise,
scaled to max |k| = 1), standing in for trained first-layer kernels; widths start from seed 0.

    MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 \\
        .venv/bin/python benchmarks/inverse_design.py [--quick] [--parts reference sweep]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F

from _timing import environment_line, median_seconds
from onn.optics import constants as C
from onn.optics.geometry import OpticalGeometry
from onn.optics.inverse_design import inverse_design
from onn.optics.psf import normalised_l2_error, sensor_intensity
from onn.optics.validity import InfeasibleDesign, check_geometry

KERNELS_NM = {"mono": (532.0,), "rgb": (635.0, 532.0, 450.0)}
AUTHORS_DESIGN_ERROR = {635.0: 0.50, 532.0: 0.33, 450.0: 0.36}  # SPEC §1, the authors' code


def smooth_signed_kernel(colours: int, seed: int, size: int = 7) -> torch.Tensor:
    """(1, colours, size, size) signed kernel: 3x3 box-blurred Gaussian noise, max |k| = 1."""
    noise = torch.randn(colours, 1, size + 2, size + 2, generator=torch.Generator().manual_seed(seed))
    kernel = F.avg_pool2d(noise, 3, stride=1)  # (colours, 1, size, size)
    return (kernel / kernel.abs().amax()).reshape(1, colours, size, size)


def seconds_per_step(geometry: OpticalGeometry, n_kernels: int = 1) -> float:
    """Median wall time of one optimisation step's work (forward, loss, backward) on this grid."""
    n = geometry.mask_res
    widths_um = torch.rand(n_kernels, 2, n, n).mul_(0.24).requires_grad_(True)  # (n, 2, N, N)
    target = torch.rand(n_kernels, 2, len(geometry.wavelengths_m), n, n)  # (n, 2, L, N, N)

    def step():
        loss = normalised_l2_error(sensor_intensity(widths_um, geometry), target).sum()
        torch.autograd.grad(loss, widths_um)

    return median_seconds({"step": step}, repeats=2, warmup=1)["step"]


def design(kernel: torch.Tensor, geometry: OpticalGeometry, steps: int):
    """Run inverse design; returns the result and the loss every 25 steps."""
    losses: list[float] = []
    result = inverse_design(kernel, geometry, steps=steps, generator=torch.Generator().manual_seed(0),
                            progress=lambda step, loss: losses.append(loss))
    return result, losses


def fmt(values, wavelengths_nm) -> str:
    """'R 0.41 / G 0.33 / B 0.36' (or 'G 0.33' for mono)."""
    names = {635.0: "R", 532.0: "G", 450.0: "B"}
    return " / ".join(f"{names[w]} {v:.3f}" for w, v in zip(wavelengths_nm, values))


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def reference(steps: int, budget_min: float) -> None:
    kernels = {"mono": smooth_signed_kernel(1, seed=1), "rgb": smooth_signed_kernel(3, seed=2)}
    geometries = {name: OpticalGeometry.from_design(suboptic_mm=C.REFERENCE_MASK_RES * C.DESIGN_PITCH_UM * 1e-3,
                                                    mask_res=C.REFERENCE_MASK_RES, wavelengths_nm=nm)
                  for name, nm in KERNELS_NM.items()}
    reports = {}
    for name, geometry in geometries.items():
        try:  # default memory limit: n_fields = 2 sub-optics (K⁺, K⁻) of one kernel
            reports[name] = check_geometry(geometry, n_fields=2)
        except InfeasibleDesign as refusal:
            print(f"- {name}: refused by check_geometry: {refusal}")
    baseline_gib, per_step_s, probe_rss_gib = peak_rss_gib(), {}, {}
    for name in reports:  # mono first: the process peak right after its probe is its own footprint
        per_step_s[name] = seconds_per_step(geometries[name])
        probe_rss_gib[name] = peak_rss_gib()
    planned_s = steps * sum(per_step_s.values())
    print("Measured seconds per step: " + ", ".join(f"{k} {v:.2f} s" for k, v in per_step_s.items())
          + f" -> {steps} steps for both would take ~{planned_s / 60:.1f} min (budget {budget_min:g} min).")
    print(f"Process peak RSS: {baseline_gib:.2f} GiB before any design, "
          + ", ".join(f"{v:.2f} GiB after the {k} step probe" for k, v in probe_rss_gib.items()) + ".")
    if planned_s > budget_min * 60:
        steps = max(1, int(budget_min * 60 / sum(per_step_s.values())))
        print(f"**Steps reduced to {steps}** to fit the budget (the authors use 300-500).")
    print("\n| kernel | mask_res -> padded | pitch µm | steps | design_error | authors | kernel_error | "
          "light in window | s/step | total s | grid GiB (check) | peak RSS GiB |\n"
          "|---|---|---:|---:|---|---|---|---:|---:|---:|---:|---:|")
    curves = []
    for name, report in reports.items():
        geometry = geometries[name]
        result, losses = design(kernels[name], geometry, steps)
        nm = geometry.wavelengths_nm
        print(f"| {name} 7x7 | {geometry.mask_res} -> {report.padded_res} | {report.pitch_um:.3f} | {steps} | "
              f"{fmt(result.design_error, nm)} | {fmt([AUTHORS_DESIGN_ERROR[w] for w in nm], nm)} | "
              f"{fmt(result.kernel_error, nm)} | {result.efficiency:.3f} | {per_step_s[name]:.2f} | "
              f"{result.seconds:.0f} | {report.grid_bytes / 2**30:.2f} | {peak_rss_gib():.2f} |")
        curves.append(f"- {name} loss (sum over colours and halves) every 25 steps: "
                      + " ".join(f"{v:.3f}" for v in losses))
    print("\n" + "\n".join(curves))


def sweep(suboptic_mm: float, mask_res_list: list[int], steps: int) -> None:
    kernels = {"mono": smooth_signed_kernel(1, seed=1), "rgb": smooth_signed_kernel(3, seed=2)}
    print(f"Sub-optic {suboptic_mm} mm, distance {C.DISTANCE_MM} mm, kernel pixel {C.KERNEL_PIXEL_UM} µm, "
          f"{steps} steps each.\n")
    print("| mask_res | padded | pitch µm | mono design_error | mono kernel_error | mono s | RGB design_error | "
          "RGB kernel_error | RGB s |\n|---:|---:|---:|---|---|---:|---|---|---:|")
    refusals = []
    for mask_res in mask_res_list:
        cells = []
        for name, nm in KERNELS_NM.items():
            geometry = OpticalGeometry.from_design(suboptic_mm=suboptic_mm, mask_res=mask_res, wavelengths_nm=nm)
            try:
                check_geometry(geometry, n_fields=2)
            except InfeasibleDesign as refusal:
                refusals.append(f"- mask_res {mask_res}, {name}: {refusal}")
                cells += ["refused", "", ""]
                continue
            result, _ = design(kernels[name], geometry, steps)
            cells += [fmt(result.design_error, nm), fmt(result.kernel_error, nm), f"{result.seconds:.1f}"]
        print(f"| {mask_res} | {geometry.padded_res} | {geometry.pitch_m * 1e6:.3f} | " + " | ".join(cells) + " |")
    print("\n" + "\n".join(refusals))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="optimisation steps on the reference grid")
    parser.add_argument("--budget-min", type=float, default=15.0,
                        help="wall-minute budget for both reference designs; steps are reduced to fit")
    parser.add_argument("--mask-res", type=int, nargs="+", default=[96, 128, 160, 192, 256, 384, 512, 682])
    parser.add_argument("--sweep-steps", type=int, default=200, help="optimisation steps per sweep design")
    parser.add_argument("--suboptic-mm", type=float, default=0.4, help="sub-optic side for the sweep")
    parser.add_argument("--parts", nargs="+", choices=["reference", "sweep"], default=["reference", "sweep"])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 reference steps, tiny sweep")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.sweep_steps, args.mask_res = 2, 10, [128, 192, 256]
    torch.set_num_threads(1)
    print(f"{environment_line()}; {time.strftime('%Y-%m-%d %H:%M')}")
    if "reference" in args.parts:
        print("\n#### Reference geometry (SPEC §1)\n")
        reference(args.steps, args.budget_min)
    if "sweep" in args.parts:
        print("\n#### Design error vs mask resolution\n")
        sweep(args.suboptic_mm, args.mask_res, args.sweep_steps)


if __name__ == "__main__":
    main()
