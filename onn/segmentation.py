"""Segmentation networks: the hybrid's up-convolution decoder and the U-Net teacher (SPEC §2).

The custom polychromatic segmentation system images the scene through groups of kernels at
three scales (8 / 16 / 32 RGB 3x3 kernels at kernel pixels of 1x, 2x and 4x size: an optical
encoder). The digital decoder upsamples the coarse groups with transposed convolutions and fuses
them, U-Net style, into one mask logit per pixel. `otsu_mask` is the classical baseline the
learnt systems are compared with (SPEC §7: an Otsu threshold scores IoU 0.717 on the nuclei image).
"""

from __future__ import annotations

import torch
from torch import nn


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.Conv2d(c_out, c_out, 3, padding=1),
                         nn.ReLU())


class Decoder(nn.Module):
    """Features per scale [(B, g0, S, S), (B, g1, S/2, S/2), ...] -> (B, n_out, S, S) logits.

    ``widths`` are the channels after fusing each scale, coarsest first (one per group)."""

    def __init__(self, groups: tuple[int, ...], widths: tuple[int, ...], n_out: int = 1):
        super().__init__()
        if len(widths) != len(groups):
            raise ValueError(f"decoder needs one width per kernel group: groups {groups}, widths {widths}")
        coarse_first = list(reversed(groups))
        self.entry = conv_block(coarse_first[0], widths[0])
        self.ups = nn.ModuleList()
        self.fuse = nn.ModuleList()
        for i in range(1, len(groups)):
            self.ups.append(nn.ConvTranspose2d(widths[i - 1], widths[i], 2, stride=2))
            self.fuse.append(conv_block(widths[i] + coarse_first[i], widths[i]))
        self.out = nn.Conv2d(widths[-1], n_out, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        coarse_first = list(reversed(features))
        x = self.entry(coarse_first[0])
        for up, fuse, skip in zip(self.ups, self.fuse, coarse_first[1:]):
            x = fuse(torch.cat([up(x), skip], dim=1))  # (B, w_i + g_i, S_i, S_i)
        return self.out(x)


class UNetBody(nn.Module):
    """A three-scale U-Net (Ronneberger et al. 2015): (B, C, S, S) -> (B, n_out, S, S)."""

    def __init__(self, channels: int, n_out: int = 1, widths: tuple[int, int, int] = (32, 64, 128)):
        super().__init__()
        a, b, c = widths
        self.down1, self.down2, self.bottom = conv_block(channels, a), conv_block(a, b), conv_block(b, c)
        self.pool = nn.MaxPool2d(2)
        self.up2, self.fuse2 = nn.ConvTranspose2d(c, b, 2, stride=2), conv_block(2 * b, b)
        self.up1, self.fuse1 = nn.ConvTranspose2d(b, a, 2, stride=2), conv_block(2 * a, a)
        self.out = nn.Conv2d(a, n_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.down1(x)  # (B, a, S, S)
        s2 = self.down2(self.pool(s1))  # (B, b, S/2, S/2)
        bottom = self.bottom(self.pool(s2))  # (B, c, S/4, S/4)
        x = self.fuse2(torch.cat([self.up2(bottom), s2], 1))
        x = self.fuse1(torch.cat([self.up1(x), s1], 1))
        return self.out(x)


# --- the classical baseline ---------------------------------------------------------------------

def mask_counts(predicted: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """(6,) float64 pixel counts of two boolean masks of any shape: foreground intersection and
    union, background intersection and union, predicted and true foreground. Counts of batches add."""
    predicted, truth = predicted.bool(), truth.bool()
    return torch.stack([(predicted & truth).sum(), (predicted | truth).sum(), (~predicted & ~truth).sum(),
                        (~predicted | ~truth).sum(), predicted.sum(), truth.sum()]).double().cpu()


def metrics_from_counts(counts: torch.Tensor) -> dict[str, float]:
    """Foreground IoU, mIoU (mean of foreground and background IoU) and Dice from `mask_counts`;
    an empty union scores 1 (both masks agree that there is nothing)."""
    inter, union, inter_bg, union_bg, predicted, truth = counts.tolist()
    iou = inter / union if union else 1.0
    iou_bg = inter_bg / union_bg if union_bg else 1.0
    total = predicted + truth
    return {"iou": iou, "miou": (iou + iou_bg) / 2, "dice": 2 * inter / total if total else 1.0}


def mask_metrics(predicted: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """IoU, mIoU and Dice of two boolean masks, pooled over all pixels (as `onn.train.evaluate`)."""
    return metrics_from_counts(mask_counts(predicted, truth))


def otsu_mask(image: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Otsu's threshold (Otsu 1979, `skimage.filters.threshold_otsu`, 256-bin histogram) of a
    grey image (any shape): (foreground mask ``image > t``, t). The foreground is the bright class."""
    from skimage.filters import threshold_otsu

    threshold = float(threshold_otsu(image.detach().cpu().numpy()))
    return image > threshold, threshold
