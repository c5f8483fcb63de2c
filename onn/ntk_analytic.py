"""Infinite-width NNGP and NTK of the hybrid architecture, in closed form (SPEC §3).

The architecture (kernel level, `onn.models.HybridONN` with an ``mlp`` backend)::

    x (C, S, S) -> conv k x k, n channels, no bias, 'same' padding -> ReLU -> avg pool p
                -> flatten (n * P features, P = (S/p)^2) -> [Linear -> ReLU] * L -> Linear

with every width (the n conv channels and the hidden widths) taken to infinity under the NTK
parameterisation: a layer of fan-in m computes ``sqrt(s/m) W a (+ sqrt(b) β)`` with W, β ~ N(0, 1),
s = 1 for the first (conv) layer and s = 2 (He) after a ReLU, bias variance b for dense layers.

Derivation (Jacot et al. 2018, "Neural tangent kernel", Thm 1; Arora et al. 2019, "On exact
computation with an infinitely wide neural net", §3 and Appendix C for the CNN recursion):

1. Conv pre-activation at positions i of x and j of x' (a Gaussian process):
   ``Σ₀(i, j) = <patch_i(x), patch_j(x')> / (C k²)`` (zero padding: patches are the ``unfold`` columns).
   Its NTK is ``Θ₀ = Σ₀`` (gradient w.r.t. the conv weights).
2. ReLU, arc-cosine kernels of degree 1 and 0 (Cho & Saul 2009, Eq. 6), with the He factor 2:
   for variances a = Σ₀(i, i), b = Σ₀'(j, j) and ρ = Σ₀(i, j) / sqrt(ab), θ = arccos ρ,
   ``κ₁ = sqrt(ab) (sin θ + (π − θ) cos θ) / π``  (= 2 E[relu(u) relu(v)]),
   ``κ₀ = (π − θ) / π``                            (= 2 E[relu'(u) relu'(v)]).
3. Average pool + flatten + first dense layer. The dense weights are independent per (channel,
   pooled position), so only positions in the *same* pool window w meet, and every pair inside a
   window does (the pooled value averages p² positions):
   ``Σ₁ = (1/P) Σ_w (1/p⁴) Σ_{i, j ∈ w} κ₁(i, j)``,
   ``Θ₁ = Σ₁ + (1/P) Σ_w (1/p⁴) Σ_{i, j ∈ w} κ₀(i, j) Θ₀(i, j)``.
   With p = 1 this is Arora et al.'s "vanilla CNN with flatten" readout (only i = j).
4. Each further ReLU -> Linear (the L hidden layers) is the fully-connected recursion
   (Jacot et al. 2018, Eq. 6; Lee et al. 2018 for the NNGP):
   ``Σ' = κ₁(Σ) + b``,  ``Θ' = Θ κ₀(Σ) + Σ'``, with κ applied to the scalar kernels and their
   diagonals; the output NTK (per logit; logits are independent) is the last Θ.

Nothing is approximated: the per-position pairs are computed exactly, chunked to bound memory.
The cost is ``P p⁴`` arc-cosine evaluations per pair of images (12,544 for 28 x 28 and p = 4),
~10 ns each on one core here, i.e. ~0.1 ms per image pair. The loops run many small tensor ops:
run them single-threaded on a loaded machine (torch's OpenMP threads spinning against other
processes made them 25x slower with 2 threads than with 1 on this 2-core box).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def window_patches(images: torch.Tensor, kernel_size: int, pool: int) -> torch.Tensor:
    """(N, C, S, S) images -> (P, N, p², C k²) conv patches scaled by 1/sqrt(C k²), grouped by
    pool window (P = (S/p)² windows of p² positions). Zero padding k // 2, as `OpticalConv`."""
    n, channels, size, _ = images.shape
    if size % pool:
        raise ValueError(f"image size {size} is not divisible by pool {pool}; choose a pool that divides it")
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    dim = channels * kernel_size**2
    patches = F.unfold(images, kernel_size, padding=kernel_size // 2)  # (N, d, S*S)
    side = size // pool
    patches = patches.view(n, dim, side, pool, side, pool).permute(2, 4, 0, 3, 5, 1)  # (S/p, S/p, N, p, p, d)
    return patches.reshape(side * side, n, pool * pool, dim) / math.sqrt(dim)  # (P, N, p², d)


def _acos(x: torch.Tensor) -> torch.Tensor:
    """arccos; on CPU through numpy, whose vectorised arccos is ~10x faster than torch's float32 one
    on this machine."""
    if x.device.type == "cpu":
        return torch.from_numpy(np.arccos(x.numpy()))
    return torch.acos(x)


def _relu_pair_terms(gram: torch.Tensor, norm_a: torch.Tensor, norm_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """π Σ κ₁ and π Σ κ₀ Θ₀ (step 2) over every (window, i, j): (A, B) each.

    Args:
        gram: (P, A, p², B, p²) Σ₀(i, j) of A x B images; overwritten.
        norm_a: (P, A, p²) sqrt(Σ₀(i, i)); norm_b: (P, B, p²) sqrt(Σ₀'(j, j)).
    Uses κ₀ Θ₀ = sqrt(ab) ρ (π − θ) / π, so both sums share one arccos; the sqrt(ab) weights are
    applied inside the reduction (j first: the contiguous axis).
    """
    inv_a = torch.where(norm_a > 0, 1 / norm_a, 0.0)[:, :, :, None, None]  # (P, A, p², 1, 1); zero patch: ρ = 0
    inv_b = torch.where(norm_b > 0, 1 / norm_b, 0.0)[:, None, None]  # (P, 1, 1, B, p²)
    rho = gram.mul_(inv_a).mul_(inv_b).clamp_(-1.0, 1.0)
    slope = _acos(-rho).mul_(rho)  # (π − θ) ρ
    sine = rho.mul_(rho).neg_().add_(1.0).clamp_(min=0.0).sqrt_()  # sin θ = sqrt(1 − ρ²), in place
    sine.add_(slope)  # sin θ + (π − θ) cos θ

    def weighted_sum(terms: torch.Tensor) -> torch.Tensor:
        per_i = terms.mul_(norm_b[:, None, None]).sum(-1)  # norm_b as (P, 1, 1, B, p²) -> (P, A, p², B)
        return (per_i * norm_a[..., None]).sum((0, 2))  # (A, B)

    return weighted_sum(sine), weighted_sum(slope)


def conv_readout_kernels(patches_a: torch.Tensor, patches_b: torch.Tensor | None = None, *,
                         block: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ₁, Θ₁) at the first dense layer (steps 1-3), each (N_a, N_b) float64.

    Args:
        patches_a, patches_b: (P, N, p², d) from `window_patches`; ``patches_b=None`` gives the
            symmetric train Gram (only blocks on and above the diagonal are computed).
        block: images per side of a block; a block holds P p⁴ block² floats per temporary
            (8: 3 MB for 28 x 28, p = 4; larger blocks fall out of cache and run ~2x slower per pair).
    """
    symmetric = patches_b is None
    patches_b = patches_a if symmetric else patches_b
    n_windows, n_a, q, dim = patches_a.shape
    n_b = patches_b.shape[1]
    norms_a, norms_b = patches_a.norm(dim=-1), patches_b.norm(dim=-1)  # (P, N, p²)
    nngp = torch.zeros(n_a, n_b, dtype=torch.float64)
    ntk = torch.zeros(n_a, n_b, dtype=torch.float64)
    for a0 in range(0, n_a, block):
        a1 = min(a0 + block, n_a)
        pa = patches_a[:, a0:a1].reshape(n_windows, (a1 - a0) * q, dim)  # (P, a p², d)
        for b0 in range(a0 if symmetric else 0, n_b, block):
            b1 = min(b0 + block, n_b)
            pb = patches_b[:, b0:b1].reshape(n_windows, (b1 - b0) * q, dim)  # (P, b p², d)
            gram = torch.bmm(pa, pb.transpose(1, 2)).view(n_windows, a1 - a0, q, b1 - b0, q)  # (P, a, p², b, p²)
            s, t = _relu_pair_terms(gram, norms_a[:, a0:a1], norms_b[:, b0:b1])
            nngp[a0:a1, b0:b1], ntk[a0:a1, b0:b1] = s.double(), t.double()
            if symmetric and b0 != a0:
                nngp[b0:b1, a0:a1], ntk[b0:b1, a0:a1] = s.T.double(), t.T.double()
    norm = math.pi * n_windows * q * q  # the 1/π of κ and the (1/P)(1/p⁴) of the pooled readout
    nngp /= norm
    ntk = ntk / norm + nngp
    return nngp, ntk


def conv_readout_variance(patches: torch.Tensor) -> torch.Tensor:
    """(N,) float64 Σ₁(x, x): the diagonal of `conv_readout_kernels`, at O(N) cost."""
    n_windows, n, q, _ = patches.shape
    norms = patches.norm(dim=-1).double()  # (P, N, p²)
    gram = (patches @ patches.transpose(-1, -2)).double()  # (P, N, p², p²): each image with itself
    scale = norms[..., :, None] * norms[..., None, :]  # sqrt(ab)
    rho = (gram / scale.clamp(min=1e-300)).clamp(-1.0, 1.0)
    kappa1 = scale * ((1 - rho * rho).clamp(min=0).sqrt() + _acos(-rho) * rho)  # π κ₁
    return kappa1.sum((0, 2, 3)) / (math.pi * n_windows * q * q)


def relu_dual(cov: torch.Tensor, var_a: torch.Tensor, var_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(κ₁, κ₀) of a scalar kernel (step 2): ``cov`` (N_a, N_b), variances (N_a,), (N_b,)."""
    scale = (var_a[:, None] * var_b[None, :]).sqrt()
    rho = (cov / scale.clamp(min=1e-300)).clamp(-1.0, 1.0)
    angle = _acos(-rho)  # π − θ
    kappa1 = scale * ((1 - rho * rho).clamp(min=0).sqrt() + angle * rho) / math.pi
    return kappa1, angle / math.pi


def dense_stack(nngp: torch.Tensor, ntk: torch.Tensor, var_a: torch.Tensor, var_b: torch.Tensor, depth: int,
                bias_var: float = 0.0) -> torch.Tensor:
    """Output NTK (N_a, N_b) after ``depth`` ReLU -> Linear layers on top of a pre-activation
    with kernels (Σ, Θ) and variances ``var_a`` (N_a,), ``var_b`` (N_b,) (step 4)."""
    for _ in range(depth):
        kappa1, kappa0 = relu_dual(nngp, var_a, var_b)
        nngp = kappa1 + bias_var
        ntk = ntk * kappa0 + nngp
        var_a, var_b = var_a + bias_var, var_b + bias_var  # κ₁(a, a, a) = a
    return ntk


@dataclass(frozen=True)
class HybridArchitecture:
    """What the infinite-width NTK of the hybrid depends on: conv kernel size, pool, the number of
    hidden dense layers, and the bias variance of every dense layer (the first one's too)."""

    kernel_size: int
    pool: int
    depth: int
    bias_var: float = 0.0


def hybrid_ntk(architecture: HybridArchitecture, x1: torch.Tensor, x2: torch.Tensor | None = None, *,
               block: int = 8) -> torch.Tensor:
    """Infinite-width output NTK (N1, N2) float64 of conv -> ReLU -> pool -> ``depth`` hidden
    ReLU layers -> linear, for (N, C, S, S) images (``x2=None``: the symmetric Gram of x1)."""
    a = architecture
    pa = window_patches(x1.float(), a.kernel_size, a.pool)
    pb = None if x2 is None else window_patches(x2.float(), a.kernel_size, a.pool)
    nngp, ntk = conv_readout_kernels(pa, pb, block=block)
    var_a = conv_readout_variance(pa) + a.bias_var
    var_b = var_a if pb is None else conv_readout_variance(pb) + a.bias_var
    return dense_stack(nngp + a.bias_var, ntk + a.bias_var, var_a, var_b, a.depth, a.bias_var)
