"""Count what a model costs per inference, from the model itself (forward hooks)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class OpCount:
    macs: int  # multiply-accumulates of Linear / Conv2d / ConvTranspose2d layers, per sample
    params: int


def count_macs(model: nn.Module, example: torch.Tensor) -> OpCount:
    """MACs of one forward pass of a single sample ``example`` (1, ...), by hooks on the digital
    layers. Optics run as ``F.conv2d`` inside `OpticalConv`, not as modules, so they count as free."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Linear):
            total += module.in_features * module.out_features * (output.numel() // module.out_features)
        elif isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += per_output * output.numel()
        elif isinstance(module, nn.ConvTranspose2d):
            per_input = module.out_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += per_input * inputs[0].numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))]
    try:
        with torch.no_grad():
            model.eval()
            model(example[:1], noise=False)
    finally:
        for h in handles:
            h.remove()
    return OpCount(total, sum(p.numel() for p in model.parameters()))
