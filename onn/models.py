"""Hybrid ONN models: optical conv layer -> pos/neg subtraction -> per-channel affine + ReLU ->
digital backend (SPEC §2).

Every model in `onn` (students and teachers) takes ``forward(x, *, generator=None, noise=True)``
so that training and evaluation code treat them alike; only the optics use the two keywords.
"""

from __future__ import annotations

import torch
from torch import nn

from onn.design import Design
from onn.layers import OpticalConv


class ChannelAffine(nn.Module):
    """Per-channel scale and bias: (B, n, H, W) -> same. The digital nonlinearity's affine part."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale[:, None, None] + self.bias[:, None, None]


def mlp_backend(n_features: int, hidden: tuple[int, ...], n_outputs: int, pool: int,
                generator: torch.Generator | None = None) -> nn.Sequential:
    """Average pool -> flatten -> [Linear -> ReLU] per hidden width -> Linear (initialised from
    ``generator`` if given)."""
    layers: list[nn.Module] = [nn.AvgPool2d(pool), nn.Flatten()] if pool > 1 else [nn.Flatten()]
    width = n_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, n_outputs))
    backend = nn.Sequential(*layers)
    if generator is not None:
        _reset_from(backend, generator)
    return backend


class HybridONN(nn.Module):
    """(B, C_in, S, S) scenes -> (B, n_outputs) logits, or (B, 1, S, S) mask logits for a decoder.

    ``optics[i]`` is kernel group i, imaged at a kernel pixel 2^i times the base size (one group
    for classification); each group has its own per-channel affine + ReLU.
    """

    def __init__(self, design: Design, *, in_channels: int, image_size: int, n_outputs: int,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.design = design
        self.in_channels, self.image_size = in_channels, image_size
        groups = design.groups or (design.kernels(),)
        if image_size % 2 ** (len(groups) - 1):
            raise ValueError(f"image size {image_size} is not divisible by the coarsest group scale "
                             f"{2 ** (len(groups) - 1)}")
        self.optics = nn.ModuleList(OpticalConv(g, design.kernel_size, design.colours, design.sensor,
                                                generator=generator, channels=design.image_channels, haze=design.haze)
                                    for g in groups)
        self.affine = nn.ModuleList(ChannelAffine(g) for g in groups)
        if design.backend == "mlp":
            if len(groups) != 1:
                raise ValueError("the mlp backend takes one kernel group")
            if image_size % design.pool:
                raise ValueError(f"image size {image_size} is not divisible by pool {design.pool}")
            n_features = groups[0] * (image_size // design.pool) ** 2
            self.backend = mlp_backend(n_features, design.hidden, n_outputs, design.pool)
        elif design.backend == "decoder":
            from onn.segmentation import Decoder

            self.backend = Decoder(groups, design.hidden, n_outputs)
        else:
            raise ValueError(f"unknown backend {design.backend!r}; use 'mlp' or 'decoder'")
        if generator is not None:
            _reset_from(self.backend, generator)

    def features(self, x: torch.Tensor, *, generator: torch.Generator | None = None,
                 noise: bool = True) -> list[torch.Tensor]:
        """Per group: (B, g_i, S / 2^i, S / 2^i) sensor-side features after the nonlinearity."""
        out = []
        for scale, (optics, affine) in enumerate(zip(self.optics, self.affine)):
            # A kernel pixel 2^i times larger sees the scene at 1/2^i resolution.
            scene = nn.functional.avg_pool2d(x, 2**scale) if scale else x
            out.append(torch.relu(affine(optics(scene, generator=generator, noise=noise))))
        return out

    def forward(self, x: torch.Tensor, *, generator: torch.Generator | None = None, noise: bool = True) -> torch.Tensor:
        features = self.features(x, generator=generator, noise=noise)
        return self.backend(features[0] if len(features) == 1 else features)

    def optical_parameters(self) -> list[nn.Parameter]:
        return list(self.optics.parameters())

    def backend_parameters(self) -> list[nn.Parameter]:
        """Everything digital: the affine nonlinearities and the backend."""
        return list(self.affine.parameters()) + list(self.backend.parameters())

    def pixels_read(self) -> int:
        """Sensor pixels read per inference, over all groups."""
        return sum(o.pixels_read(self.image_size // 2**i) for i, o in enumerate(self.optics))


def build_hybrid(design: Design, *, in_channels: int, image_size: int, n_outputs: int, seed: int = 0) -> HybridONN:
    """A freshly initialised hybrid for a dataset shape; raises `InfeasibleDesign` for an impossible design."""
    design.check(image_size=image_size)
    return HybridONN(design, in_channels=in_channels, image_size=image_size, n_outputs=n_outputs,
                     generator=torch.Generator().manual_seed(seed))


def _reset_from(module: nn.Module, generator: torch.Generator) -> None:
    """Re-initialise every Linear / Conv layer as torch does by default, but drawing from
    ``generator`` (torch's own initialisers use the global RNG, so equal seeds would not give
    equal models)."""
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_uniform_(layer.weight, a=5**0.5, generator=generator)
                if layer.bias is not None:
                    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(layer.weight)
                    bound = 1 / fan_in**0.5
                    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
