"""Does a trained design survive fabrication, and how much does fine-tuning win back? (SPEC §4)

- `robustness`: Monte Carlo over fabrication draws (`onn.fabrication`) -> accuracy mean, spread
  and a tail statistic (5th percentile). Draw i is seeded from (seed, i) alone, so it is the same
  draw on every process and in every run, whatever else ran before it.
- `compensate`: the optics of a fabricated model stay frozen; only the digital backend
  (`HybridONN.backend_parameters`) is fine-tuned, with the task loss or NTKD, on a fixed random
  ~10 % subset of the TRAINING split, seen through the perturbed system.
"""

from __future__ import annotations

import dataclasses
import hashlib
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import nn
from torch.utils.data import TensorDataset

from onn.fabrication import KernelErrors, PhysicalErrors, fabricate, fabricate_physical
from onn.models import HybridONN
from onn.optics.geometry import OpticalGeometry
from onn.optics.inverse_design import InverseDesignResult
from onn.train import TrainConfig, evaluate, fit, headline

CompensationMethod = Literal["none", "kd", "ntkd"]


def draw_seed(seed: int, draw: int) -> int:
    """A 63-bit seed for draw ``draw`` of a Monte Carlo run seeded ``seed`` (stable across
    processes and Python versions: no ``hash()``, which is salted per process)."""
    digest = hashlib.sha256(f"onn-fabrication:{seed}:{draw}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def draw_generator(seed: int, draw: int) -> torch.Generator:
    """The CPU generator of draw ``draw`` (draws are made on the CPU, so every device agrees)."""
    return torch.Generator().manual_seed(draw_seed(seed, draw))


@dataclass(frozen=True)
class RobustnessResult:
    ideal: float  # headline metric (accuracy or IoU, in [0, 1]) of the unperturbed model
    per_draw: tuple[float, ...]  # one per fabrication draw, in draw order
    mean: float
    std: float  # sample standard deviation over draws (0 for one draw)
    p5: float  # 5th percentile over draws (linear interpolation)
    drop: float  # ideal - mean
    seconds: float


def robustness(model: HybridONN, dataset: TensorDataset, task: str, errors: KernelErrors | PhysicalErrors,
               n_draws: int, seed: int, device: torch.device | str = "cpu", *,
               design: InverseDesignResult | tuple[InverseDesignResult, ...] | None = None,
               geometry: OpticalGeometry | tuple[OpticalGeometry, ...] | None = None,
               chunk: int = 4, ideal: float | None = None) -> RobustnessResult:
    """Monte Carlo robustness of ``model`` on ``dataset`` under ``n_draws`` fabrication draws.

    Physical errors need the model's inverse ``design`` and its ``geometry`` (one per kernel group).
    Every evaluation uses `onn.train.evaluate`'s fixed sensor-noise stream, so draws differ only
    in their fabrication errors. ``ideal``: the unperturbed model's headline metric on ``dataset``
    if the caller has already scored it with `evaluate` (the same number; saves one evaluation).
    """
    if n_draws < 1:
        raise ValueError(f"n_draws must be >= 1, got {n_draws}")
    start = time.perf_counter()
    if ideal is None:
        ideal = headline(evaluate(model, dataset, task, device=device))
    per_draw = []
    for i in range(n_draws):
        made = make_draw(model, errors, draw_generator(seed, i), design=design, geometry=geometry, chunk=chunk)
        per_draw.append(headline(evaluate(made, dataset, task, device=device)))
    mean = statistics.fmean(per_draw)
    return RobustnessResult(
        ideal=ideal, per_draw=tuple(per_draw), mean=mean,
        std=statistics.stdev(per_draw) if n_draws > 1 else 0.0,
        p5=float(torch.quantile(torch.tensor(per_draw, dtype=torch.float64), 0.05)),
        drop=ideal - mean, seconds=time.perf_counter() - start)


def make_draw(model: HybridONN, errors: KernelErrors | PhysicalErrors, generator: torch.Generator, *,
              design=None, geometry=None, chunk: int = 4) -> HybridONN:
    """One fabricated copy of ``model`` at either level of error model."""
    match errors:
        case KernelErrors():
            return fabricate(model, errors, generator)
        case PhysicalErrors():
            if design is None or geometry is None:
                raise ValueError("physical errors act on pillar widths: pass the model's inverse design "
                                 "(onn.fabrication.realise) and its geometry (Design.geometry())")
            return fabricate_physical(model, design, geometry, errors, generator, chunk=chunk)
    raise TypeError(f"errors must be KernelErrors or PhysicalErrors, got {type(errors).__name__}")


# --- compensation ------------------------------------------------------------------------------

@dataclass(frozen=True)
class CompensationResult:
    method: str  # "none" (task loss only), "kd" or "ntkd"
    fraction: float  # of the training split used
    n_samples: int
    before: tuple[tuple[str, float], ...]  # (split, headline metric) before fine-tuning
    after: tuple[tuple[str, float], ...]
    steps: int
    seconds: float
    loss_terms: tuple[tuple[str, float], ...] = ()  # mean of each loss term over the last epoch

    def gain(self, split: str) -> float:
        """Metric recovered on ``split`` (after - before)."""
        return dict(self.after)[split] - dict(self.before)[split]


def compensation_subset(n_train: int, fraction: float, seed: int) -> torch.Tensor:
    """Sorted indices (m,) of a fixed random ``fraction`` of a training split of ``n_train`` samples."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    m = max(1, round(fraction * n_train))
    return torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))[:m].sort().values


def compensate(model: HybridONN, train: TensorDataset, task: str, *, teacher: nn.Module | None = None,
               method: CompensationMethod = "ntkd", fraction: float = 0.10, config: TrainConfig = TrainConfig(),
               seed: int = 0, evaluate_on: dict[str, TensorDataset] | None = None,
               device: torch.device | str = "cpu", log: Callable[[str], None] | None = None) -> CompensationResult:
    """Fine-tune the digital backend of a fabricated ``model`` IN PLACE (copy it first to keep
    the uncompensated one); the optics stay bit-identical.

    Args:
        train: the TRAINING split; a fixed random ``fraction`` of it (``compensation_subset``) is
            seen, through the perturbed optics. Never pass the test split here.
        method: ``"none"`` trains with the task loss only, ``"ntkd"`` (needs ``teacher``) with NTKD;
            it replaces ``config.method``. ``config.epochs`` count passes over the subset.
        evaluate_on: splits scored before and after (e.g. ``{"test": data.test}``).
    """
    if not all(o.frozen for o in model.optics):
        raise ValueError("compensation fine-tunes the backend of a fabricated model; freeze the optics first "
                         "(onn.fabrication.fabricate or OpticalConv.freeze_to)")
    start = time.perf_counter()
    evaluate_on = evaluate_on or {}
    score = lambda: tuple((split, headline(evaluate(model, data, task, device=device)))
                          for split, data in evaluate_on.items())
    before = score()
    index = compensation_subset(len(train), fraction, seed)
    images, targets = train.tensors
    subset = TensorDataset(images[index], targets[index])  # (m, C, H, W), (m, ...)
    result = fit(model, subset, task=task, config=dataclasses.replace(config, method=method, seed=seed),
                 teacher=teacher if method != "none" else None, parameters=model.backend_parameters(),
                 device=device, log=log, label=f"compensate {method}")
    return CompensationResult(method, fraction, len(index), before, score(), result.steps,
                              time.perf_counter() - start, result.loss_terms)
