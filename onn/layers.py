"""The optical convolution layer (kernel level, the fast path used in training), SPEC §1.

``n_kernels`` signed ``k x k`` kernels per colour. Each is realised as a pair of non-negative PSFs
(K⁺, K⁻) on two sub-optics; every sub-optic's image is read by the sensor per colour channel, the
colour images of a sub-optic are summed and the K⁻ image is subtracted from the K⁺ image, all
digitally. With an ideal sensor this equals ``conv2d`` with the signed kernels.

Once the optics are designed or fabricated they stop being trainable: `freeze_to` replaces the
learnable kernels by fixed non-negative halves (from the metasurface simulation or a fabrication
draw), which may be larger than k x k (a shifted PSF needs a border; the full-frame model's
effective kernels span the whole sub-image, `onn.optics.frame`, and are applied by FFT).

Stray light at kernel level (``haze``): a metasurface puts only part of its light in the kernel window
(`onn.optics.frame.light_budget`); the rest lands over the whole sub-image. The kernel-level model can
add it as a uniform haze: each half reads, besides its kernel, ``haze`` times its kernel's light spread
evenly over the ``(2H - 1) x (2W - 1)`` scene offsets a sub-image pixel can see. ``haze`` is the ratio of
that stray light to the light in the window (`onn.optics.frame.stray_ratio`; fitted per geometry by
`onn.optics.frame.fitted_haze`). Full-frame halves hold their stray light themselves: freeze them with
``haze=0``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from onn.optics.geometry import next_smooth
from onn.optics.psf import split_signed
from onn.optics.sensor import SensorConfig, read_difference


def match_colours(images: torch.Tensor, colours: int, channels: tuple[int, ...] | None = None) -> torch.Tensor:
    """Show (B, C_in, H, W) scenes to a camera with ``colours`` channels: grey scenes are seen equally
    in every colour; a monochrome camera sees the mean of the colour channels; ``channels`` picks the
    scene channel each camera colour sees (e.g. (1, 2) for a green-blue camera on RGB scenes)."""
    c_in = images.shape[1]
    if channels is not None and c_in > 1:
        if len(channels) != colours or max(channels) >= c_in:
            raise ValueError(f"channels {channels} do not map {c_in}-channel scenes to a {colours}-colour camera")
        return images if channels == tuple(range(c_in)) else images[:, list(channels)]
    if c_in == colours:
        return images
    if c_in == 1:
        return images.expand(-1, colours, -1, -1)
    if colours == 1:
        return images.mean(1, keepdim=True)
    raise ValueError(f"cannot show {c_in}-channel images to a {colours}-colour camera")


class Camera(nn.Module):
    """The sensor and the digital K⁺ − K⁻ subtraction summed over colours: (B, C, 2, n, H, W)
    readings [colour, half, kernel] of one exposure -> (B, n, H, W). No sensor: ideal readings."""

    def __init__(self, sensor: SensorConfig | None):
        super().__init__()
        self.sensor = sensor

    def forward(self, readings: torch.Tensor, *, generator: torch.Generator | None = None,
                noise: bool = True) -> torch.Tensor:
        if self.sensor is not None:  # one fused readout, subtraction and colour sum (onn.optics.sensor)
            return read_difference(readings, self.sensor, generator=generator, noise=noise)
        return readings[:, :, 0].sum(1) - readings[:, :, 1].sum(1)


FFT_ABOVE = 15  # kernels wider than this (full-frame effective kernels) are applied by FFT


def correlate_same(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.conv2d(x, weight, padding=k // 2)`` for (B, 1, H, W) scenes and (O, 1, k, k) kernels, k
    odd: direct for small kernels, by real FFTs on a zero-padded grid (no wrap-around) above
    `FFT_ABOVE`, where the direct sum costs k² per output pixel."""
    k = weight.shape[-1]
    if k <= FFT_ABOVE:
        return F.conv2d(x, weight, padding=k // 2)
    h, w = x.shape[-2:]
    size = (next_smooth(h + k - 1), next_smooth(w + k - 1))
    # Correlation = convolution with the flipped kernel; the 'same' window starts at k // 2.
    spectrum = torch.fft.rfft2(x, s=size) * torch.fft.rfft2(weight[:, 0].flip(-1, -2), s=size)
    return torch.fft.irfft2(spectrum, s=size)[..., k // 2:k // 2 + h, k // 2:k // 2 + w]


class OpticalConv(nn.Module):
    """Metasurface convolution + sensor + pos/neg subtraction: (B, C_in, H, W) -> (B, n, H, W).

    Two steps: `readings` (the sensor-plane sub-images, what the optics do) and ``camera`` (what
    the sensor and the digital subtraction do); `onn.ntk_probe` differentiates between the two."""

    def __init__(self, n_kernels: int, kernel_size: int, colours: int = 1, sensor: SensorConfig | None = None,
                 generator: torch.Generator | None = None, channels: tuple[int, ...] | None = None,
                 haze: float = 0.0):
        """``channels``: the scene channel each colour sees (`Design.image_channels`); None: grey
        scenes go to every colour, a one-colour camera sees the mean of a colour scene. ``haze``:
        uniform stray light, as a ratio to the light in the kernel window (module docstring)."""
        super().__init__()
        if n_kernels < 1 or kernel_size < 1 or colours < 1:
            raise ValueError(f"need n_kernels, kernel_size, colours >= 1, got {n_kernels}, {kernel_size}, {colours}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (the PSF is centred on the axis), got {kernel_size}")
        if not haze >= 0:
            raise ValueError(f"haze is a ratio of light and must be >= 0, got {haze}")
        self.n_kernels, self.kernel_size, self.colours, self.channels = n_kernels, kernel_size, colours, channels
        self.haze = float(haze)
        self.camera = Camera(sensor)
        fan_in = colours * kernel_size * kernel_size
        weight = torch.randn(n_kernels, colours, kernel_size, kernel_size, generator=generator) / fan_in**0.5
        self.weight = nn.Parameter(weight)
        self.register_buffer("fixed_halves", None)  # (n, 2, C, k', k') once frozen

    @property
    def sensor(self) -> SensorConfig | None:
        return self.camera.sensor

    @property
    def frozen(self) -> bool:
        return self.fixed_halves is not None

    def halves(self) -> torch.Tensor:
        """(n, 2, C, k', k') non-negative PSFs [K⁺, K⁻] in kernel (correlation) convention."""
        return self.fixed_halves if self.frozen else split_signed(self.weight)

    def signed_kernels(self) -> torch.Tensor:
        """(n, C, k', k') the signed kernels the layer applies (K⁺ - K⁻)."""
        halves = self.halves()
        return halves[:, 0] - halves[:, 1]

    def freeze_to(self, halves: torch.Tensor, *, haze: float | None = None) -> None:
        """Replace the learnable kernels by fixed non-negative halves (n, 2, C, k', k'), k' odd.
        ``haze``: a new stray-light ratio (0 for full-frame halves, which hold their stray light);
        None keeps the layer's."""
        n, two, colours, k1, k2 = halves.shape
        if (n, two, colours) != (self.n_kernels, 2, self.colours) or k1 != k2 or k1 % 2 == 0:
            raise ValueError(f"halves {tuple(halves.shape)} do not fit {self.n_kernels} kernels x 2 x "
                             f"{self.colours} colours with an odd square kernel")
        if (halves < 0).any():
            raise ValueError("PSFs are intensities: halves must be non-negative")
        self.fixed_halves = halves.detach().clone()
        self.weight.requires_grad_(False)
        if haze is not None:
            self.haze = float(haze)

    def readings(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) scenes -> (B, C, 2, n, H, W) sensor-plane sub-images [colour, K⁺/K⁻, kernel]."""
        x = match_colours(images, self.colours, self.channels)  # (B, C, H, W)
        batch, colours, height, width = x.shape
        halves = self.halves()  # (n, 2, C, k, k)
        n, k = halves.shape[0], halves.shape[-1]
        weight = halves.permute(2, 1, 0, 3, 4).reshape(colours, 2 * n, 1, k, k)  # (C, 2*n, 1, k, k)
        # One conv per colour: a grouped conv gives the same numbers but its backward pass is ~5x
        # slower on CPU (benchmarks/README.md).
        out = torch.cat([correlate_same(x[:, c:c + 1], weight[c]) for c in range(colours)],
                        dim=1).view(batch, colours, 2, n, height, width)
        if self.haze:  # a uniform kernel over every offset a sub-image pixel sees reads the whole scene
            light = halves.sum((-1, -2)).permute(2, 1, 0)  # (C, 2, n)
            out = out + (light * self._haze_scale(x)[:, :, None, None])[..., None, None]
        return out

    def _haze_scale(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C) what one unit of kernel light adds to every pixel as haze: ``haze`` x scene sum /
        (2H - 1)(2W - 1)."""
        height, width = x.shape[-2:]
        return self.haze * x.sum((-1, -2)) / ((2 * height - 1) * (2 * width - 1))

    def forward(self, images: torch.Tensor, *, generator: torch.Generator | None = None,
                noise: bool = True) -> torch.Tensor:
        return self.camera(self.readings(images), generator=generator, noise=noise)  # (B, n, H, W)

    def patches(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Per colour, the (B, HW, k²) unfolded k x k patches of the scene the kernels see; with a
        haze, one more column (B, HW, k² + 1) holding what a unit of kernel light adds as haze."""
        x = match_colours(images, self.colours, self.channels).detach()  # (B, C, H, W)
        k = self.kernel_size
        patches = [F.unfold(x[:, c:c + 1], k, padding=k // 2).transpose(1, 2) for c in range(self.colours)]
        if not self.haze:
            return patches
        scale = self._haze_scale(x)  # (B, C)
        return [torch.cat([p, scale[:, c, None, None].expand(-1, p.shape[1], 1)], 2) for c, p in enumerate(patches)]

    def weight_grads(self, patches: list[torch.Tensor], delta: torch.Tensor) -> torch.Tensor:
        """(B, n C k²) per-sample gradients of ``weight`` given the gradient ``delta`` (B, C, 2, n, H, W)
        of something with respect to this layer's `readings` of the scenes whose `patches` are given:
        each half's gradient is delta times its patches (one batched matmul per colour), then through
        K⁺ = max(w, 0) and K⁻ = max(−w, 0) (autograd's convention at w = 0: both pass)."""
        batch, k, n = delta.shape[0], self.kernel_size, self.n_kernels
        per_colour = []
        for c, patch in enumerate(patches):
            d = delta[:, c].reshape(batch, 2 * n, -1)  # (B, 2n, HW)
            grad = torch.bmm(d, patch)  # (B, 2n, k² [+ 1])
            if self.haze:  # every kernel pixel's light also reaches every pixel as haze
                grad = grad[..., :-1] + grad[..., -1:]
            per_colour.append(grad.view(batch, 2, n, k, k))
        halves = torch.stack(per_colour, 3)  # (B, 2, n, C, k, k)
        w = self.weight  # (n, C, k, k)
        grad = halves[:, 0] * (w >= 0) - halves[:, 1] * (w <= 0)  # (B, n, C, k, k)
        return grad.reshape(batch, -1)

    def pixels_read(self, image_size: int) -> int:
        """Sensor pixels read per inference: kernels x 2 halves x colours x feature-map size."""
        return self.n_kernels * 2 * self.colours * image_size * image_size
