"""The optical convolution layer (kernel level, the fast path used in training), SPEC §1.

``n_kernels`` signed ``k x k`` kernels per colour. Each is realised as a pair of non-negative PSFs
(K⁺, K⁻) on two sub-optics; every sub-optic's image is read by the sensor per colour channel, the
colour images of a sub-optic are summed and the K⁻ image is subtracted from the K⁺ image, all
digitally. With an ideal sensor this equals ``conv2d`` with the signed kernels.

Once the optics are designed or fabricated they stop being trainable: `freeze_to` replaces the
learnable kernels by fixed non-negative halves (from the metasurface simulation or a fabrication
draw), which may be larger than k x k (a shifted PSF needs a border).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from onn.optics.psf import split_signed
from onn.optics.sensor import SensorConfig, read_sensor


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


class OpticalConv(nn.Module):
    """Metasurface convolution + sensor + pos/neg subtraction: (B, C_in, H, W) -> (B, n, H, W)."""

    def __init__(self, n_kernels: int, kernel_size: int, colours: int = 1, sensor: SensorConfig | None = None,
                 generator: torch.Generator | None = None, channels: tuple[int, ...] | None = None):
        """``channels``: the scene channel each colour sees (`Design.image_channels`); None: grey
        scenes go to every colour, a one-colour camera sees the mean of a colour scene."""
        super().__init__()
        if n_kernels < 1 or kernel_size < 1 or colours < 1:
            raise ValueError(f"need n_kernels, kernel_size, colours >= 1, got {n_kernels}, {kernel_size}, {colours}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (the PSF is centred on the axis), got {kernel_size}")
        self.n_kernels, self.kernel_size, self.colours, self.sensor = n_kernels, kernel_size, colours, sensor
        self.channels = channels
        fan_in = colours * kernel_size * kernel_size
        weight = torch.randn(n_kernels, colours, kernel_size, kernel_size, generator=generator) / fan_in**0.5
        self.weight = nn.Parameter(weight)
        self.register_buffer("fixed_halves", None)  # (n, 2, C, k', k') once frozen

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

    def freeze_to(self, halves: torch.Tensor) -> None:
        """Replace the learnable kernels by fixed non-negative halves (n, 2, C, k', k'), k' odd."""
        n, two, colours, k1, k2 = halves.shape
        if (n, two, colours) != (self.n_kernels, 2, self.colours) or k1 != k2 or k1 % 2 == 0:
            raise ValueError(f"halves {tuple(halves.shape)} do not fit {self.n_kernels} kernels x 2 x "
                             f"{self.colours} colours with an odd square kernel")
        if (halves < 0).any():
            raise ValueError("PSFs are intensities: halves must be non-negative")
        self.fixed_halves = halves.detach().clone()
        self.weight.requires_grad_(False)

    def forward(self, images: torch.Tensor, *, generator: torch.Generator | None = None,
                noise: bool = True) -> torch.Tensor:
        x = match_colours(images, self.colours, self.channels)  # (B, C, H, W)
        batch, colours, height, width = x.shape
        halves = self.halves()  # (n, 2, C, k, k)
        n, k = halves.shape[0], halves.shape[-1]
        weight = halves.permute(2, 1, 0, 3, 4).reshape(colours, 2 * n, 1, k, k)  # (C, 2*n, 1, k, k)
        # Every (colour, half, kernel) sub-image, one conv per colour: a grouped conv gives the same
        # numbers but its backward pass is ~5x slower on CPU (benchmarks/README.md).
        readings = torch.cat([F.conv2d(x[:, c:c + 1], weight[c], padding=k // 2) for c in range(colours)],
                             dim=1)  # (B, C*2*n, H, W)
        if self.sensor is not None:
            readings = read_sensor(readings, self.sensor, generator=generator, noise=noise)
        readings = readings.view(batch, colours, 2, n, height, width).sum(1)  # (B, 2, n, H, W)
        return readings[:, 0] - readings[:, 1]  # (B, n, H, W)

    def pixels_read(self, image_size: int) -> int:
        """Sensor pixels read per inference: kernels x 2 halves x colours x feature-map size."""
        return self.n_kernels * 2 * self.colours * image_size * image_size
