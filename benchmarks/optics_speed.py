"""Speed of the optical frontend against the bare PyTorch operations it is built from.

(a) Physical level. `onn.optics.propagation.propagate` with a cached transfer function on a batch
    of sub-optic fields (B, L, N, N) (B = 2 halves x 16 kernels, L = 3 colours), timed against the
    bare ``ifft2(fft2(x_padded) * H)`` on the same batch already zero-padded to (B, L, M, M), so
    the bare path does no padding or cropping. Target: ours/bare <= 1.5. Forward only, and
    forward + backward (a vector-Jacobian product, as in inverse design). `sensor_intensity`
    (widths -> transmission -> propagate -> |.|^2) is timed against the same bare FFT for context.
(b) Kernel level. `onn.layers.OpticalConv` forward + backward against `F.conv2d` forward + backward
    with the equivalent signed weight, on MNIST-sized (mono) and CIFAR-sized (poly) batches.

Run from the repository root, with glibc's malloc told to keep large buffers (ENVIRONMENT.md):
    MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 \\
        .venv/bin/python benchmarks/optics_speed.py [--threads 1 2] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.nn.functional as F

from _timing import environment_line, median_seconds
from onn.layers import OpticalConv
from onn.optics.geometry import OpticalGeometry
from onn.optics.propagation import propagate, transfer_function
from onn.optics.psf import sensor_intensity
from onn.optics.sensor import SensorConfig

RGB_NM = (635.0, 532.0, 450.0)
SUBOPTIC_MM = 0.3  # small enough that N = 128 and 256 pass `check_geometry` (pitch 2.3 / 1.2 µm)


def propagation_rows(mask_res: int, batch: int, repeats: int) -> list[tuple[str, str, float, float]]:
    """(case, shape, ours_s, bare_s) rows for one grid size."""
    geometry = OpticalGeometry.from_design(suboptic_mm=SUBOPTIC_MM, mask_res=mask_res, wavelengths_nm=RGB_NM)
    n, m, colours = geometry.mask_res, geometry.padded_res, len(RGB_NM)
    gen = torch.Generator().manual_seed(0)
    transfer = transfer_function(m, geometry.pitch_m, geometry.distance_m, geometry.wavelengths_m)  # (L, M, M)
    phase = torch.rand(batch, colours, n, n, generator=gen) * 6.283
    field = torch.polar(torch.ones_like(phase), phase)  # (B, L, N, N) complex64
    padded = F.pad(field, (0, m - n, 0, m - n))  # (B, L, M, M): the bare path starts here
    widths_um = torch.rand(batch, n, n, generator=gen) * 0.24  # (B, N, N)

    def ours():
        return propagate(field, transfer)

    def bare():
        return torch.fft.ifft2(torch.fft.fft2(padded) * transfer)

    def full_path():
        return sensor_intensity(widths_um, geometry)

    field_leaf = field.clone().requires_grad_(True)
    padded_leaf = padded.clone().requires_grad_(True)
    grad_small = torch.polar(torch.ones_like(phase), phase.flip(-1))  # (B, L, N, N)
    grad_padded = F.pad(grad_small, (0, m - n, 0, m - n))  # (B, L, M, M)

    def ours_grad():
        out = propagate(field_leaf, transfer)
        return torch.autograd.grad(out, field_leaf, grad_small)

    def bare_grad():
        out = torch.fft.ifft2(torch.fft.fft2(padded_leaf) * transfer)
        return torch.autograd.grad(out, padded_leaf, grad_padded)

    with torch.no_grad():
        t = median_seconds({"ours": ours, "bare": bare, "full": full_path}, repeats)
    tg = median_seconds({"ours": ours_grad, "bare": bare_grad}, repeats)
    shape = f"({batch},{colours},{n},{n})->{m}"
    return [("propagate fwd", shape, t["ours"], t["bare"]),
            ("propagate fwd+bwd", shape, tg["ours"], tg["bare"]),
            ("sensor_intensity fwd (context)", shape, t["full"], t["bare"])]


def reference_readout(irradiance, config, generator):
    """The sensor before 2026-11-30 (plain autograd ops), the 'before' of the fused readout."""
    levels = 2**config.bits - 1
    peak = irradiance.flatten(1).amax(1).clamp(min=1e-12)
    signal = irradiance / peak.view(-1, *([1] * (irradiance.ndim - 1)))
    std = (signal.clamp(min=0) / config.full_well_e + config.read_noise_fs**2).sqrt()
    z = torch.randn(signal.shape, generator=generator, device=signal.device, dtype=signal.dtype)
    signal = torch.addcmul(signal, std, z)
    clipped = signal.clamp(0, 1)
    return clipped + (torch.round(clipped * levels) / levels - clipped).detach()


def conv_rows(n_kernels: int, colours: int, size: int, sensor: SensorConfig | None, batch: int,
              repeats: int) -> list[tuple[str, str, float, float]]:
    """OpticalConv vs conv2d with the same signed weight, forward + backward w.r.t. the weight; with
    the sensor on, also the layer before the fused readout, the fused readout compiled
    (ONN_COMPILE=1), and the noise draw alone (the part no fusion removes)."""
    gen = torch.Generator().manual_seed(0)
    layer = OpticalConv(n_kernels, 7, colours=colours, sensor=sensor, generator=gen)
    weight = layer.signed_kernels().detach().clone().requires_grad_(True)  # (n, C, 7, 7)
    images = torch.rand(batch, colours, size, size, generator=gen)  # (B, C, H, W)
    grad_out = torch.randn(batch, n_kernels, size, size, generator=gen)  # (B, n, H, W)
    if sensor is None:  # the ideal-sensor layer must be exactly conv2d, else the comparison is moot
        with torch.no_grad():
            diff = (layer(images) - F.conv2d(images, weight, padding=3)).abs().max().item()
        assert diff < 1e-4, f"OpticalConv(sensor=None) differs from conv2d by {diff}"
    noise_gen = torch.Generator().manual_seed(1)

    def ours():
        layer.zero_grad(set_to_none=True)
        layer(images, generator=noise_gen).backward(grad_out)

    def compiled():
        os.environ["ONN_COMPILE"] = "1"
        try:
            ours()
        finally:
            del os.environ["ONN_COMPILE"]

    def before():  # the layer as it was: one readout of the concatenated readings, then subtract and sum
        layer.zero_grad(set_to_none=True)
        readings = layer.readings(images)  # (B, C, 2, n, H, W)
        read = reference_readout(readings.reshape(batch, -1, size, size), sensor, noise_gen).view(readings.shape)
        (read[:, :, 0].sum(1) - read[:, :, 1].sum(1)).backward(grad_out)

    def noise_draw():
        torch.randn(batch, colours * 2 * n_kernels, size, size, generator=noise_gen)

    def bare():
        weight.grad = None
        F.conv2d(images, weight, padding=3).backward(grad_out)

    # Context: the same (colour, half, kernel) readings from one grouped conv2d (OpticalConv's first
    # formulation, replaced by one conv per colour because the grouped backward is slow on CPU).
    grouped_weight = torch.rand(colours * 2 * n_kernels, 1, 7, 7, generator=gen, requires_grad=True)
    grouped_grad = torch.randn(batch, colours * 2 * n_kernels, size, size, generator=gen)  # (B, C*2*n, H, W)

    def grouped():
        grouped_weight.grad = None
        F.conv2d(images, grouped_weight, padding=3, groups=colours).backward(grouped_grad)

    shape = f"({batch},{colours},{size},{size})"
    name = f"OpticalConv {n_kernels}x{colours}x7x7"
    if sensor is None:
        t = median_seconds({"ours": ours, "bare": bare, "grouped": grouped}, repeats)
        return [(f"{name} sensor=None fwd+bwd", shape, t["ours"], t["bare"]),
                (f"readings by one grouped conv2d, {colours * 2 * n_kernels} outputs (context)", shape,
                 t["grouped"], t["bare"])]
    t = median_seconds({"before": before, "ours": ours, "compiled": compiled, "noise": noise_draw, "bare": bare},
                       repeats)
    return [(f"{name} sensor on fwd+bwd, before (autograd readout)", shape, t["before"], t["bare"]),
            (f"{name} sensor on fwd+bwd, fused readout", shape, t["ours"], t["bare"]),
            (f"{name} sensor on fwd+bwd, fused readout compiled (ONN_COMPILE=1)", shape, t["compiled"], t["bare"]),
            (f"the noise draw alone: randn of the {colours * 2 * n_kernels} readings (floor)", shape, t["noise"],
             t["bare"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="torch thread counts to run (pinned)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per case (median reported)")
    parser.add_argument("--batch", type=int, default=32, help="sub-optic fields per propagation batch (2 x kernels)")
    args = parser.parse_args()
    for threads in args.threads:
        torch.set_num_threads(threads)
        print(f"\n### torch threads = {threads}\n\n{environment_line()}; median of {args.repeats} repeats\n")
        rows = []
        for mask_res in (128, 256):
            rows += propagation_rows(mask_res, args.batch, args.repeats)
        for sensor in (SensorConfig(), None):
            rows += conv_rows(8, 1, 28, sensor, 128, args.repeats)  # mono: MNIST
        for sensor in (SensorConfig(), None):
            rows += conv_rows(16, 3, 32, sensor, 128, args.repeats)  # poly: CIFAR-sized RGB
        print("| case | shape | ours ms | bare ms | ours/bare |\n|---|---|---:|---:|---:|")
        for case, shape, ours_s, bare_s in rows:
            print(f"| {case} | {shape} | {ours_s * 1e3:.1f} | {bare_s * 1e3:.1f} | {ours_s / bare_s:.2f} |")


if __name__ == "__main__":
    main()
