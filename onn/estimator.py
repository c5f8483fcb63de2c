"""Pre-training accuracy estimator (SPEC §3): what accuracy can a design reach, before training it?

Two numbers, both kernel ridge regression (`onn.krr`) fitted on a seeded subsample of the training
split, with the ridge λ chosen on one subsample of the validation split and the accuracy measured
on another, disjoint one. The test split never enters an estimate (a sweep chooses designs by it).

- ``ceiling`` (the paper's): the NTK of the same architecture at infinite width (conv k x k ->
  ReLU -> pool -> ``len(hidden)`` hidden ReLU layers -> linear; `onn.ntk_analytic.hybrid_ntk`).
  It sees only kernel size, pool, backend depth and the colour channels the camera records — not
  the kernel count, the sensor or anything physical.
- ``design``: kernel regression through the design's *own* optical layer and its *own* backend.
  Each of ``n_frontends`` frontends draws the design's ``design.kernels()`` kernel pairs as
  independent non-negative PSF halves (|N(0, 1)| per kernel pixel and colour, as random sub-optics
  would give), images the subsample through `onn.layers.OpticalConv` *with the design's sensor
  noise*, then ReLU -> pool. On those features sits the empirical NTK (`onn.ntk.mlp_ntk`) of the
  design's digital backend at its *finite* widths and depth, freshly initialised as a trial would
  (`BACKENDS_PER_FRONTEND` initialisations per frontend); the accuracies of all fits are averaged.
  It is the expected accuracy of an untrained optical layer of this design with its own backend
  trained in the lazy (kernel) regime — the paper's Table 5 setting (random PSFs) — and moves with
  the kernel count, kernel size, wavelength set, sensor noise and the backend's depth and width.

Segmentation (``task == "segment"``, the ``decoder`` backend): ``design`` only (asking for the
ceiling raises `NotImplementedError`). Each random frontend images the subsample through the
design's own kernel groups (group i at 1/2^i resolution, as `onn.models.HybridONN.features`),
with its sensor noise, -> ReLU -> nearest upsampling back to full resolution -> the 3x3
neighbourhood of every pixel: ``9 n`` features per pixel. A linear ridge regression (with
intercept) of the {0, 1} mask on those features, fitted on up to `SEG_TRAIN_PIXELS` random train
pixels, λ chosen by foreground IoU; the estimate is a foreground IoU (pixels predicted > 0.5). It
ignores the decoder's widths and depth.

Not modelled: feature learning (the kernel is the backend's at initialisation), the per-channel
affine's parameters, learnt (rather than random) kernels, the training budget, and the mask
resolution (at kernel level a realised kernel is just another kernel). The estimate's level is not
a trained accuracy: use it to rank designs. Measured levels, ranking quality (Spearman ρ against
trained designs) and cost are in benchmarks/README.md ("Accuracy estimator").

The ceiling is cached per (dataset, architecture, subsample) in a small in-process LRU, the one
piece of module state here, so a sweep worker computes it once for all designs that share it.
"""

from __future__ import annotations

import math
import numbers
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from onn.data import TaskData
from onn.design import Design
from onn.krr import RIDGE_GRID, RidgeResult, ridge_classify
from onn.layers import OpticalConv, match_colours
from onn.models import mlp_backend
from onn.ntk import mlp_ntk
from onn.ntk_analytic import HybridArchitecture, hybrid_ntk

# The ceiling's learning curve that chose 1000 train samples is in benchmarks/README.md.
DEFAULT_N_TRAIN = 1000
DEFAULT_N_VAL = 1500  # validation samples: half choose λ, the other half score the estimate
DEFAULT_N_FRONTENDS = 2
BACKENDS_PER_FRONTEND = 2  # backend initialisations whose empirical NTK is fitted per random frontend
FEATURE_BATCH_FLOATS = 2**24  # sensor readings held at once while imaging (64 MB float32)
SEG_DEFAULT_N_TRAIN = 256  # segmentation: train tiles (each gives S² pixels)
SEG_TRAIN_PIXELS = 2**15  # random train pixels the per-pixel ridge is fitted on
SEG_CONTEXT = 3  # pixel neighbourhood (side) of the per-pixel features
CEILING_CACHE_SIZE = 16


@dataclass(frozen=True)
class AccuracyEstimate:
    """Estimated accuracies in [0, 1] on held-out validation samples (NaN when not computed) and
    what they cost.

    ``lam_*`` are the chosen ridges relative to the mean diagonal of the train Gram (for
    ``design``: the median over frontends); ``design_std`` is the spread over frontends.
    """

    ceiling: float
    design: float
    n_train: int
    n_select: int  # validation samples λ was chosen on
    n_score: int  # other validation samples the accuracy is measured on
    lam_ceiling: float
    lam_design: float
    seconds_ceiling: float
    seconds_design: float
    design_std: float = math.nan
    ceiling_cached: bool = False


@dataclass(frozen=True)
class Subsample:
    """Seeded subsample of a task: images (N, C, S, S) float32 and labels, for fitting (train),
    choosing λ (select) and scoring (score); select and score are disjoint parts of validation."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_select: torch.Tensor
    y_select: torch.Tensor
    x_score: torch.Tensor
    y_score: torch.Tensor


def subsample(data: TaskData, *, n_train: int, n_val: int, seed: int) -> Subsample:
    """``n_train`` training samples and ``n_val`` validation samples (the first half choose λ, the
    rest score), drawn without replacement from ``torch.Generator(seed)``.

    The train indices are a prefix of one permutation, so a larger ``n_train`` only adds samples;
    the validation draw does not depend on ``n_train``. Raises ValueError naming the parameter.
    """
    generator = torch.Generator().manual_seed(seed)
    parts = []
    for param, n, split, least in (("n_train", n_train, data.train, 1), ("n_val", n_val, data.val, 2)):
        _check_positive(param, n)
        if n < least or n > len(split):
            raise ValueError(f"{param}={n} must be between {least} and the size of the {param[2:]} split of "
                             f"{data.name!r} ({len(split)} samples)")
        index = torch.randperm(len(split), generator=generator)[:n]
        images, labels = split.tensors
        parts.append((images[index].float(), labels[index]))
    (x_train, y_train), (x_val, y_val) = parts
    half = n_val // 2
    return Subsample(x_train, y_train, x_val[:half], y_val[:half], x_val[half:], y_val[half:])


def _check_positive(param: str, n) -> None:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"{param} must be a positive int, got {n!r}")


# --- the paper's ceiling: infinite-width NTK of the same architecture ----------------------------

def ceiling_grams(design: Design, sample: Subsample, *, device: str = "cpu") -> tuple[torch.Tensor, ...]:
    """(Θ_train (n, n), Θ_select (v, n), Θ_score (t, n)) float64 of the infinite-width hybrid."""
    def seen(images):  # what the camera records (`OpticalConv` does the same)
        return match_colours(images, design.colours, design.image_channels).to(device)

    architecture = HybridArchitecture(design.kernel_size, design.pool, len(design.hidden))
    train = seen(sample.x_train)
    return (hybrid_ntk(architecture, train), hybrid_ntk(architecture, seen(sample.x_select), train),
            hybrid_ntk(architecture, seen(sample.x_score), train))


def ceiling_learning_curve(design: Design, data: TaskData, n_trains: list[int], *, n_val: int,
                           seed: int = 0, device: str = "cpu") -> tuple[list[RidgeResult], float]:
    """Ceiling accuracy at every ``n_trains`` (nested prefixes of one subsample, exactly what
    `estimate_accuracy` would use for each), from one set of Grams at the largest. Returns the
    results and the seconds that the largest took (Grams + solve)."""
    start = time.perf_counter()
    sample = subsample(data, n_train=max(n_trains), n_val=n_val, seed=seed)
    k_train, k_select, k_score = ceiling_grams(design, sample, device=device)
    results = {}
    for n in sorted(n_trains, reverse=True):
        results[n] = ridge_classify(k_train[:n, :n], sample.y_train[:n], k_select[:, :n], sample.y_select,
                                    k_score[:, :n], sample.y_score, data.n_classes)
        if n == max(n_trains):
            seconds = time.perf_counter() - start
    return [results[n] for n in n_trains], seconds


_CEILING_CACHE: OrderedDict[tuple, RidgeResult] = OrderedDict()  # key -> result, least recent first


def _ceiling_key(design: Design, data: TaskData, sample_args: tuple) -> tuple:
    """Everything the ceiling depends on: the data and the architecture, not the physics."""
    return (data.name, len(data.train), len(data.val), len(data.test), data.image_size, data.channels,
            design.colours, design.kernel_size, design.pool, len(design.hidden), *sample_args)


def clear_ceiling_cache() -> None:
    _CEILING_CACHE.clear()


def ceiling_accuracy(design: Design, data: TaskData, sample: Subsample, *, seed: int,
                     device: str = "cpu") -> tuple[RidgeResult, bool]:
    """The infinite-width ceiling on ``sample`` (drawn with ``seed``), from the LRU cache when
    (dataset, architecture, subsample) was seen before; returns (result, whether cached)."""
    sizes = (len(sample.y_train), len(sample.y_select), len(sample.y_score), seed)
    key = _ceiling_key(design, data, sizes)
    if key in _CEILING_CACHE:
        _CEILING_CACHE.move_to_end(key)
        return _CEILING_CACHE[key], True
    result = ridge_classify(*_interleave(ceiling_grams(design, sample, device=device), sample), data.n_classes)
    _CEILING_CACHE[key] = result
    while len(_CEILING_CACHE) > CEILING_CACHE_SIZE:
        _CEILING_CACHE.popitem(last=False)
    return result, False


def _interleave(grams: tuple[torch.Tensor, ...], sample: Subsample) -> tuple[torch.Tensor, ...]:
    k_train, k_select, k_score = grams
    return k_train, sample.y_train, k_select, sample.y_select, k_score, sample.y_score


# --- the design-aware estimate: random optical frontends of this design ------------------------

def _stream(seed: int, *words: int) -> torch.Generator:
    """An independent generator per (seed, purpose...): numpy's SeedSequence mixes the words."""
    state = np.random.SeedSequence([seed, *words]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


def random_halves(design: Design, generator: torch.Generator) -> torch.Tensor:
    """(n, 2, C, k, k) independent non-negative PSF halves ~ |N(0, 1)| for the design's kernels."""
    n, k = design.kernels(), design.kernel_size
    return torch.randn(n, 2, design.colours, k, k, generator=generator).abs()


def random_frontend(design: Design, generator: torch.Generator) -> OpticalConv:
    """The design's optical layer, frozen to `random_halves`, with the design's sensor."""
    halves = random_halves(design, generator)
    layer = OpticalConv(halves.shape[0], design.kernel_size, design.colours, design.sensor, generator=generator,
                        channels=design.image_channels, haze=design.haze)
    layer.freeze_to(halves)
    return layer


def optical_features(layer: OpticalConv, images: torch.Tensor, pool: int, *, generator: torch.Generator,
                     device: str = "cpu") -> torch.Tensor:
    """(N, C_in, S, S) scenes -> (N, n (S/p)²) features: optics + sensor (noise drawn from
    ``generator``) -> ReLU -> average pool, as `HybridONN.features` with the affine at its
    initial identity. Imaged in batches that hold ~`FEATURE_BATCH_FLOATS` sensor readings."""
    layer = layer.to(device)
    size = images.shape[-1]
    batch = max(1, FEATURE_BATCH_FLOATS // (2 * layer.n_kernels * layer.colours * size * size))
    out = []
    with torch.no_grad():
        for begin in range(0, len(images), batch):
            x = images[begin:begin + batch].to(device)
            y = torch.relu(layer(x, generator=generator, noise=True))  # (B, n, S, S)
            y = F.avg_pool2d(y, pool) if pool > 1 else y  # (B, n, S/p, S/p)
            out.append(y.flatten(1))  # (B, n (S/p)²)
    return torch.cat(out)


def design_accuracy(design: Design, sample: Subsample, n_classes: int, *, n_frontends: int, seed: int,
                    device: str = "cpu") -> list[RidgeResult]:
    """One ridge fit per (random frontend, backend initialisation) of ``design``: `BACKENDS_PER_FRONTEND`
    fits per frontend (see the module docstring)."""
    results = []
    for frontend in range(n_frontends):
        layer = random_frontend(design, _stream(seed, frontend, 0))
        noise = torch.Generator(device=device).manual_seed(_stream(seed, frontend, 1).initial_seed())
        train, select, score = (optical_features(layer, x, design.pool, generator=noise, device=device).double()
                                for x in (sample.x_train, sample.x_select, sample.x_score))
        for init in range(BACKENDS_PER_FRONTEND):
            backend = mlp_backend(train.shape[1], design.hidden, n_classes, pool=1,
                                  generator=_stream(seed, frontend, 2, init))
            linears = [m for m in backend.to(device, torch.float64) if isinstance(m, torch.nn.Linear)]
            grams = (mlp_ntk(linears, train), mlp_ntk(linears, select, train), mlp_ntk(linears, score, train))
            results.append(ridge_classify(*_interleave(grams, sample), n_classes))
    return results


# --- segmentation: per-pixel ridge regression on the design's random optical features ---------

def random_group_frontends(design: Design, generator: torch.Generator) -> list[OpticalConv]:
    """One frozen random `OpticalConv` per kernel group of ``design`` (`random_halves`, split in
    group order), each with the design's sensor."""
    halves = random_halves(design, generator)  # (n, 2, C, k, k)
    layers = []
    for group in halves.split(list(design.groups or (halves.shape[0],))):
        layer = OpticalConv(group.shape[0], design.kernel_size, design.colours, design.sensor,
                            channels=design.image_channels, haze=design.haze)
        layer.freeze_to(group)
        layers.append(layer)
    return layers


def pixel_features(layers: list[OpticalConv], images: torch.Tensor, *, generator: torch.Generator,
                   context: int = SEG_CONTEXT) -> torch.Tensor:
    """(B, C_in, S, S) scenes -> (B, context² n, S, S) per-pixel features: group i images the
    scene at 1/2^i resolution -> ReLU -> nearest upsampling by 2^i; all groups concatenated
    (n channels), then each pixel's ``context x context`` neighbourhood (zero padded)."""
    size = images.shape[-1]
    maps = []
    with torch.no_grad():
        for scale, layer in enumerate(layers):
            scene = F.avg_pool2d(images, 2**scale) if scale else images
            y = torch.relu(layer(scene, generator=generator, noise=True))  # (B, g_i, S/2^i, S/2^i)
            maps.append(F.interpolate(y, scale_factor=2**scale, mode="nearest") if scale else y)
        x = torch.cat(maps, 1)  # (B, n, S, S)
        if context > 1:
            x = F.unfold(x, context, padding=context // 2).view(x.shape[0], -1, size, size)  # (B, c² n, S, S)
    return x


def _pixel_rows(features: torch.Tensor) -> torch.Tensor:
    return features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])  # (B S², D)


def segment_design_accuracy(design: Design, sample: Subsample, *, n_frontends: int, seed: int,
                            train_pixels: int = SEG_TRAIN_PIXELS, device: str = "cpu") -> list[RidgeResult]:
    """One per-pixel ridge fit per random frontend of a segmentation ``design`` (see the module
    docstring); ``*_accuracy`` fields hold foreground IoU. Masks are (N, 1, S, S) in {0, 1}."""
    results = []
    size = sample.x_train.shape[-1]
    for frontend in range(n_frontends):
        layers = [layer.to(device) for layer in random_group_frontends(design, _stream(seed, frontend, 0))]
        noise = torch.Generator(device=device).manual_seed(_stream(seed, frontend, 1).initial_seed())
        batch = max(1, FEATURE_BATCH_FLOATS // (2 * design.kernels() * design.colours * size * size))

        def batches(images, masks):
            for begin in range(0, len(images), batch):
                x = pixel_features(layers, images[begin:begin + batch].to(device), generator=noise)
                yield _pixel_rows(x), masks[begin:begin + batch].reshape(-1).to(device)  # (P, D), (P,) float32

        # Fit on a fixed random subset of the train pixels: centred normal equations, float64.
        n_pixels = len(sample.x_train) * size * size
        keep = torch.zeros(n_pixels, dtype=torch.bool)
        keep[torch.randperm(n_pixels, generator=_stream(seed, frontend, 2))[:train_pixels]] = True
        rows, targets, offset = [], [], 0
        for x, y in batches(sample.x_train, sample.y_train):
            chosen = keep[offset:offset + len(x)].to(device)
            rows.append(x[chosen].double())
            targets.append(y[chosen].double())
            offset += len(x)
        x_fit, y_fit = torch.cat(rows), torch.cat(targets)  # (P, D), (P,)
        x_mean, y_mean = x_fit.mean(0), y_fit.mean()
        x_fit = x_fit - x_mean
        gram = x_fit.T @ x_fit  # (D, D)
        evals, evecs = torch.linalg.eigh((gram + gram.T) / 2)
        projected = evecs.T @ (x_fit.T @ (y_fit - y_mean))  # (D,)
        scale = float(gram.diagonal().mean()) + 1e-30
        ridges = sorted(RIDGE_GRID)
        weights = torch.stack([evecs @ (projected / (evals.clamp(min=0) + r * scale)) for r in ridges], 1)  # (D, R)
        bias = (y_mean - x_mean @ weights).float()  # (R,)
        weights = weights.float()

        def iou_per_ridge(images, masks) -> torch.Tensor:  # (R,)
            inter = torch.zeros(len(ridges), dtype=torch.float64, device=device)
            union = torch.zeros_like(inter)
            for x, y in batches(images, masks):
                predicted = x @ weights + bias > 0.5  # (P, R)
                truth = (y > 0.5)[:, None]
                inter += (predicted & truth).sum(0)
                union += (predicted | truth).sum(0)
            return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))

        select = iou_per_ridge(sample.x_select, sample.y_select)
        best = max(range(len(ridges)), key=lambda i: (float(select[i]), i))  # ties: the largest λ
        score = iou_per_ridge(sample.x_score, sample.y_score)
        results.append(RidgeResult(float(score[best]), float(select[best]), ridges[best]))
    return results


def estimate_accuracy(design: Design, data: TaskData, *, n_train: int | None = None, n_val: int | None = None,
                      seed: int = 0, n_frontends: int = DEFAULT_N_FRONTENDS, ceiling: bool = True,
                      device: str = "cpu") -> AccuracyEstimate:
    """Estimate the accuracy ``design`` can reach on ``data`` before training it, on held-out
    validation samples; the test split is never read.

    Args:
        n_train: training subsample (default `DEFAULT_N_TRAIN`, or the whole split if smaller;
            `SEG_DEFAULT_N_TRAIN` tiles for segmentation). The ceiling grows with it (MNIST: 95.9 /
            97.3 / 98.3 % at 500 / 1000 / 2000) and costs n_train (n_train / 2 + n_val) image pairs,
            each P p⁴ arc-cosines (`onn.ntk_analytic`).
        n_val: validation subsample (default `DEFAULT_N_VAL`, or the whole split if smaller): the
            first half chooses λ, the second half scores the estimate.
        n_frontends: random optical frontends averaged by the design estimate.
        ceiling: also compute the infinite-width ceiling (cached; NaN fields when False; not
            implemented for segmentation).
    For segmentation the accuracies are foreground IoU.
    Raises:
        InfeasibleDesign: the design cannot be built (layout, wavelengths, geometry).
        ValueError: a subsample larger than its split or not positive; ``n_frontends < 1``.
        ValueError: a backend that does not fit the task (mlp: classify, decoder: segment).
        NotImplementedError: ``ceiling=True`` for segmentation.
    """
    segment = data.task == "segment"
    if design.backend != ("decoder" if segment else "mlp"):
        raise ValueError(f"a {data.task!r} task needs the {'decoder' if segment else 'mlp'} backend, got "
                         f"{design.backend!r} (segmentation designs start from onn.design.PRESETS['seg'])")
    if segment and ceiling:
        raise NotImplementedError("the infinite-width ceiling is not implemented for segmentation; pass "
                                  "ceiling=False for the design-aware estimate (foreground IoU)")
    default_train = SEG_DEFAULT_N_TRAIN if segment else DEFAULT_N_TRAIN
    n_train = min(default_train, len(data.train)) if n_train is None else n_train
    n_val = min(DEFAULT_N_VAL, len(data.val)) if n_val is None else n_val
    for param, n in (("n_train", n_train), ("n_val", n_val), ("n_frontends", n_frontends)):
        _check_positive(param, n)
    design.check(image_size=data.image_size)
    sample = subsample(data, n_train=n_train, n_val=n_val, seed=seed)

    nan = math.nan
    top, lam_top, seconds_top, cached = nan, nan, nan, False
    if ceiling:
        start = time.perf_counter()
        result, cached = ceiling_accuracy(design, data, sample, seed=seed, device=device)
        top, lam_top, seconds_top = result.score_accuracy, result.ridge, time.perf_counter() - start

    start = time.perf_counter()
    if segment:
        results = segment_design_accuracy(design, sample, n_frontends=n_frontends, seed=seed, device=device)
    else:
        results = design_accuracy(design, sample, data.n_classes, n_frontends=n_frontends, seed=seed, device=device)
    accuracies = [r.score_accuracy for r in results]
    return AccuracyEstimate(
        ceiling=top, design=float(np.mean(accuracies)), n_train=n_train, n_select=len(sample.y_select),
        n_score=len(sample.y_score), lam_ceiling=lam_top, lam_design=float(np.median([r.ridge for r in results])),
        seconds_ceiling=seconds_top, seconds_design=time.perf_counter() - start,
        design_std=float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else nan, ceiling_cached=cached)
