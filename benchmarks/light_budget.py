"""Where the light goes (issue 18): the full-frame model against the kernel-window model.

Parts (each prints a Markdown table; together they are the "Where the light goes" section of
benchmarks/README.md):

- ``budget``: the light budget of inverse-designed sub-optics (random signed 7x7 kernels, 2 kernels
  = a 2 x 2 array, 60 design steps) against sub-optic size and mask oversampling, mono and RGB;
- ``padding``: the effective kernels at FFT padding x1.25 ... x3 against x4 on the reference camera,
  and the incoherent-sum idealisation against a coherent whole-metasurface propagation;
- ``stray``: inverse design with a penalty on light outside the kernel window: kernel error
  against in-window light and crosstalk;
- ``cost``: realising a design as a trial's realise stage does, before (inverse design, window
  imaging) and now (inverse design, full-frame imaging, the light budget), alternated in one run;
- ``haze``: the kernel-level stray-light term (`onn.layers.OpticalConv` ``haze``) against the
  full-frame model: the stray ratio each design measures, a power law fitted to them
  (`onn.optics.frame.fitted_haze`), and how far the window model, with and without the haze,
  reads the scenes from what the full frame reads.

    python benchmarks/light_budget.py --parts budget padding stray cost haze
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from onn.optics.frame import Frame, coherent_frame_intensity, frame_halves, light_budget, _region
from onn.optics.geometry import OpticalGeometry
from onn.optics.inverse_design import inverse_design
from onn.optics.layout import suboptic_layout
from onn.optics.psf import integrate_to_kernel, psf_to_kernel, sensor_intensity
from onn.optics.validity import min_mask_res

PARTS = ["budget", "padding", "stray", "cost", "haze"]
WAVELENGTHS = {"mono": (532.0,), "rgb": (635.0, 532.0, 450.0)}
IMAGE = {"mono": 28, "rgb": 32}  # MNIST, photo patches / CIFAR-10


def designed(colours: str, suboptic_mm: float, oversampling: float, *, steps: int, seed: int = 0, multiple: int = 1,
             stray_weight: float = 0.0):
    """Two random signed kernels inverse-designed on a 2 x 2 array; (widths (4, N, N), geometry,
    frame, result). ``multiple``: round mask_res up to a multiple of it."""
    base = OpticalGeometry.from_design(suboptic_mm=suboptic_mm, mask_res=16, wavelengths_nm=WAVELENGTHS[colours])
    mask_res = multiple * math.ceil(oversampling * min_mask_res(base) / multiple)
    geometry = OpticalGeometry.from_design(suboptic_mm=suboptic_mm, wavelengths_nm=WAVELENGTHS[colours], mask_res=mask_res)
    generator = torch.Generator().manual_seed(seed)
    kernels = torch.randn(2, len(WAVELENGTHS[colours]), 7, 7, generator=generator)
    result = inverse_design(kernels, geometry, steps=steps, generator=generator, stray_weight=stray_weight)
    layout = suboptic_layout(2 * suboptic_mm + 0.1, suboptic_mm)
    return result.widths_um.reshape(4, *result.widths_um.shape[-2:]), geometry, Frame.of(layout, 4, IMAGE[colours]), result


def part_budget(steps: int) -> None:
    print("| light | sub-optic (mm) | oversampling | mask_res | in kernel window | rest of own sub-image | other sub-images "
          "| unread | lost | crosstalk ratio | baffled: in window / other |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for colours in ("mono", "rgb"):
        for suboptic_mm in (0.3, 0.4, 0.5):
            for oversampling in (1.0, 1.5, 2.0):
                widths, geometry, frame, _ = designed(colours, suboptic_mm, oversampling, steps=steps)
                b = light_budget(widths, geometry, frame).means()
                baffled = light_budget(widths, geometry, Frame(frame.centres_m, frame.image_size, frame.cell_m,
                                                               baffle=True)).means()
                print(f"| {colours} | {suboptic_mm} | {oversampling} | {geometry.mask_res} | {b['in_window']:.3f} | "
                      f"{b['own_subimage']:.3f} | {b['other_subimages']:.3f} | {b['unread']:.3f} | "
                      f"{b['lost'] + b['beyond']:.4f} | {b['crosstalk_ratio']:.3f} | "
                      f"{baffled['in_window']:.3f} / {baffled['other_subimages']:.1e} |", flush=True)


def part_padding(steps: int) -> None:
    # mask_res a multiple of 8: the brute force needs the 0.25 mm sub-optic offsets on its sample grid
    widths, geometry, frame, _ = designed("mono", 0.4, 1.0, steps=steps, multiple=8)
    maps, scales = widths.view(2, 2, *widths.shape[-2:]), torch.ones(2, 2, 1)
    reference = frame_halves(maps, scales, geometry, frame, pad=4.0)
    print(f"reference camera: 0.4 mm sub-optics, mask_res {geometry.mask_res}, 2.4 mm, 532 nm, 28x28 sub-images")
    print("| FFT padding | max error of the effective kernels vs x4 (of their peak) |\n|---|---|")
    for pad in (1.25, 1.5, 2.0, 3.0):
        halves = frame_halves(maps, scales, geometry, frame, pad=pad)
        print(f"| x{pad} | {float((halves - reference).abs().max() / reference.max()):.1e} |", flush=True)
    window = integrate_to_kernel(sensor_intensity(maps, geometry), geometry)  # the window model, its x2 padding
    padded = OpticalGeometry(**{**geometry.__dict__, "pad_factor": 6.0})
    window6 = integrate_to_kernel(sensor_intensity(maps, padded), padded)
    print(f"window model's own kernel at x2 vs x6 padding: {float((window - window6).abs().max() / window6.max()):.1e}")
    coherent, incoherent = coherent_frame_intensity(widths, geometry, frame, pad=2.0)
    size = 2 * frame.image_size - 1
    gaps = []
    for centre in frame.centres_m:
        a = _region(coherent.double(), geometry.pitch_m, size, geometry.kernel_pixel_m, centre)
        b = _region(incoherent.double(), geometry.pitch_m, size, geometry.kernel_pixel_m, centre)
        gaps.append(float((a - b).abs().max() / b.max()))
    print(f"coherent whole metasurface vs the incoherent sum (the model), pixel-integrated: max "
          f"{max(gaps):.1e} of the peak (mean over sub-images {statistics.fmean(gaps):.1e})")


def part_stray(steps: int) -> None:
    print("| light | stray_weight | kernel error | in kernel window | other sub-images | crosstalk ratio |\n|---|---|---|---|---|---|")
    for colours in ("mono", "rgb"):
        for weight in (0.0, 0.3, 1.0, 3.0):
            widths, geometry, frame, result = designed(colours, 0.4, 1.0, steps=steps, stray_weight=weight)
            b = light_budget(widths, geometry, frame).means()
            print(f"| {colours} | {weight} | {statistics.fmean(result.kernel_error):.3f} | {b['in_window']:.3f} | "
                  f"{b['other_subimages']:.3f} | {b['crosstalk_ratio']:.3f} |", flush=True)


def part_cost(steps: int, repeats: int, kernels: int) -> None:
    from onn.design import PRESETS
    from onn.fabrication import freeze_realised, realise_design
    from onn.models import build_hybrid

    design = PRESETS["mono"].with_(n_kernels=kernels, aperture_mm=PRESETS["mono"].aperture_for(kernels), mask_res=192)
    model = build_hybrid(design, in_channels=1, image_size=28, n_outputs=10)
    times = {"window": [], "frame": []}
    for _ in range(repeats):
        for kind in ("window", "frame"):
            start = time.perf_counter()
            realisation = realise_design(model, steps=steps, generator=torch.Generator().manual_seed(0),
                                         frame=kind == "frame")
            freeze_realised(model, realisation)
            if kind == "frame":  # a trial now also logs the light budget
                widths = realisation.designs[0].widths_um
                light_budget(widths.reshape(-1, *widths.shape[-2:]), realisation.geometries[0], realisation.frames[0])
            times[kind].append(time.perf_counter() - start)
    window, frame = statistics.median(times["window"]), statistics.median(times["frame"])
    print(f"realising {kernels} mono kernels at mask_res 192 ({steps} design steps), median of {repeats}: window {window:.1f} s, "
          f"full frame + light budget {frame:.1f} s: x{frame / window:.2f}")


def part_haze(steps: int) -> None:
    from onn.data import load_dataset
    from onn.layers import Camera, OpticalConv
    from onn.optics.frame import stray_ratio
    from onn.optics.sensor import SensorConfig

    scenes = {"mono": load_dataset("mnist").val.tensors[0][:256], "rgb": load_dataset("photo_patches").val.tensors[0][:256]}
    camera = Camera(SensorConfig(noise=False, bits=24))  # auto-exposure, subtraction, colour sum; no noise

    def layer(halves: torch.Tensor, haze: float) -> OpticalConv:
        optics = OpticalConv(halves.shape[0], 7, halves.shape[2])
        optics.freeze_to(halves.float(), haze=haze)
        return optics

    def errors(x, truth, halves, haze):
        """Relative L2 of the readings (per half) and of what the backend sees, against the full frame."""
        readings = layer(halves, haze).readings(x)
        return (float((readings - truth[0]).norm() / truth[0].norm()),
                float((camera(readings) - truth[1]).norm() / truth[1].norm()))

    designs = []
    for colours in ("mono", "rgb"):
        for suboptic_mm in (0.3, 0.4, 0.5):
            for oversampling in (1.0, 1.5, 2.0):
                widths, geometry, frame, _ = designed(colours, suboptic_mm, oversampling, steps=steps)
                maps = widths.view(2, 2, *widths.shape[-2:])  # (4, N, N) -> (kernel, K⁺/K⁻, N, N)
                effective = frame_halves(maps, torch.ones(2, 2, len(geometry.wavelengths_m)), geometry, frame)
                window = psf_to_kernel(integrate_to_kernel(sensor_intensity(maps, geometry), geometry))
                readings = layer(effective, 0.0).readings(scenes[colours])
                designs.append((colours, suboptic_mm, oversampling, float(stray_ratio(effective, 7).mean()),
                                window, (readings, camera(readings))))
    # log h = log a_colours + b log(suboptic_mm / 0.4) + c log(oversampling), least squares
    rows = torch.tensor([[c == "mono", c == "rgb", math.log(s / 0.4), math.log(o)] for c, s, o, *_ in designs],
                        dtype=torch.float64)
    target = torch.tensor([math.log(d[3]) for d in designs], dtype=torch.float64)
    coef = torch.linalg.lstsq(rows, target[:, None]).solution[:, 0]
    fitted = (rows @ coef).exp()
    print(f"fit: haze = a (suboptic_mm / 0.4)^b oversampling^c with a_mono {math.exp(coef[0]):.3f}, a_rgb "
          f"{math.exp(coef[1]):.3f}, b {float(coef[2]):.3f}, c {float(coef[3]):.3f}\n")
    print("| light | sub-optic (mm) | oversampling | stray ratio measured | fitted | readings error: window / + measured "
          "haze / + fitted haze | backend input error: window / + measured / + fitted |\n|---|---|---|---|---|---|---|")
    for (colours, suboptic_mm, oversampling, measured, window, truth), fit in zip(designs, fitted.tolist()):
        x = scenes[colours]
        cells = [errors(x, truth, window, h) for h in (0.0, measured, fit)]
        print(f"| {colours} | {suboptic_mm} | {oversampling} | {measured:.2f} | {fit:.2f} | "
              + " / ".join(f"{c[0]:.3f}" for c in cells) + " | " + " / ".join(f"{c[1]:.3f}" for c in cells) + " |",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=PARTS)
    parser.add_argument("--steps", type=int, default=60, help="inverse-design steps")
    parser.add_argument("--repeats", type=int, default=3, help="cost: alternated repeats")
    parser.add_argument("--kernels", type=int, default=8, help="cost: signed kernels of the design")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for part in args.parts:
        print(f"\n## {part}\n", flush=True)
        {"budget": lambda: part_budget(args.steps), "padding": lambda: part_padding(args.steps),
         "stray": lambda: part_stray(args.steps), "cost": lambda: part_cost(args.steps, args.repeats, args.kernels),
         "haze": lambda: part_haze(args.steps)}[part]()


if __name__ == "__main__":
    main()
