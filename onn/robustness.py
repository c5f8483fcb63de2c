"""Does a trained design survive fabrication, and how much does fine-tuning win back? (SPEC §4)

`monte_carlo` is the one fabrication loop: each draw of a fabricated system (`onn.fabrication`) is
built once, scored as made on every split asked for, then, for each compensation asked for,
fine-tuned (`compensate`: optics frozen, digital backend only, on a fixed ~10 % of the TRAINING
split seen through the perturbed system) and scored again. Draw i is seeded from (seed, i) alone,
so it is the same draw on every process and in every run, whatever else ran before it.

Compensation vocabulary (everywhere in the project): ``"none"`` (score as made), ``"task"``
(fine-tune with the task loss), ``"ntkd"`` (fine-tune with NTKD from the teacher).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Literal, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from onn.fabrication import KernelErrors, PhysicalErrors, Realisation, fabricate, fabricate_physical
from onn.models import HybridONN
from onn.train import EarlyStopping, TrainConfig, evaluate, fit, headline

Compensation = Literal["none", "task", "ntkd"]
COMPENSATIONS: tuple[str, ...] = ("none", "task", "ntkd")
# Training method of each fine-tuning compensation (`onn.train.TrainConfig.method`).
FINE_TUNE_METHOD = {"task": "task", "ntkd": "ntkd"}


def draw_seed(seed: int, draw: int) -> int:
    """A 63-bit seed for draw ``draw`` of a Monte Carlo run seeded ``seed`` (stable across
    processes and Python versions: no ``hash()``, which is salted per process)."""
    digest = hashlib.sha256(f"onn-fabrication:{seed}:{draw}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def draw_generator(seed: int, draw: int) -> torch.Generator:
    """The CPU generator of draw ``draw`` (draws are made on the CPU, so every device agrees)."""
    return torch.Generator().manual_seed(draw_seed(seed, draw))


def make_draw(model: HybridONN, errors: KernelErrors | PhysicalErrors, generator: torch.Generator, *,
              realisation: Realisation | None = None, chunk: int = 4) -> HybridONN:
    """One fabricated copy of ``model`` at either level of error model (physical errors act on the
    pillar widths of ``realisation``, the model's inverse design)."""
    match errors:
        case KernelErrors():
            return fabricate(model, errors, generator)
        case PhysicalErrors():
            if realisation is None:
                raise ValueError("physical errors act on pillar widths: pass the model's realisation "
                                 "(onn.fabrication.realise_design)")
            return fabricate_physical(model, realisation, errors, generator, chunk=chunk)
    raise TypeError(f"errors must be KernelErrors or PhysicalErrors, got {type(errors).__name__}")


# --- compensation ------------------------------------------------------------------------------

@dataclass(frozen=True)
class CompensationConfig:
    """How a fabricated system's backend is fine-tuned (SPEC §4): on a fixed ``fraction`` of the
    training split, for at most ``steps`` optimiser steps (AdamW, one-cycle to ``lr``), checked
    every ``eval_every`` steps on ``val_samples`` validation samples seen through the same
    fabricated optics, stopped after ``patience`` checks without improvement, and the best check's
    backend kept (it may be the uncompensated one: step 0). A budget in steps, not epochs: three
    epochs over 600 images at batch 128 would be 15 steps."""

    fraction: float = 0.10
    steps: int = 100
    lr: float = 1e-3
    batch_size: int = 128
    eval_every: int = 10
    patience: int = 3
    val_samples: int | None = 1000  # None: the whole validation split

    def __post_init__(self):
        if not 0 < self.fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.steps < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(f"need steps >= 1, batch_size >= 1, lr > 0; got {self.steps}, {self.batch_size}, {self.lr}")
        if self.eval_every < 1 or self.patience < 1 or (self.val_samples is not None and self.val_samples < 1):
            raise ValueError(f"need eval_every, patience, val_samples >= 1; got {self.eval_every}, {self.patience}, "
                             f"{self.val_samples}")


@dataclass(frozen=True)
class CompensationResult:
    method: str  # "task" or "ntkd"
    n_samples: int  # training samples fine-tuned on
    steps: int  # optimiser steps run
    best_step: int  # the step whose backend was kept (0: the uncompensated one)
    curve: tuple[tuple[int, float], ...]  # (step, validation headline metric) at every check
    seconds: float
    loss_terms: tuple[tuple[str, float], ...] = ()  # mean of each loss term over the last epoch


def compensation_subset(n: int, fraction: float, seed: int) -> torch.Tensor:
    """Sorted indices (m,) of a fixed random ``fraction`` of a split of ``n`` samples."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    m = max(1, round(fraction * n))
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:m].sort().values


def _subset(data: TensorDataset, index: torch.Tensor) -> TensorDataset:
    return TensorDataset(*(t[index] for t in data.tensors))


def compensate(model: HybridONN, train: TensorDataset, task: str, *, method: str = "ntkd",
               teacher: nn.Module | None = None, config: CompensationConfig = CompensationConfig(),
               val: TensorDataset | None = None, base: TrainConfig = TrainConfig(), seed: int = 0,
               device: torch.device | str = "cpu", log: Callable[[str], None] | None = None) -> CompensationResult:
    """Fine-tune the digital backend of a fabricated ``model`` IN PLACE (copy it first to keep
    the uncompensated one); the optics stay bit-identical.

    Args:
        train: the TRAINING split; a fixed random ``config.fraction`` of it is seen, through the
            perturbed optics.
        val: the VALIDATION split, for early stopping (``config.val_samples`` of it, fixed by
            ``seed``); None: every step of the budget runs. Never pass the test split as either.
        method: ``"task"`` (task loss) or ``"ntkd"`` (needs ``teacher``).
        base: the training settings the rest comes from (NTK mode, probes, α, β, ...).
    Raises:
        ValueError: the optics are not frozen, or ``method`` is not a fine-tuning compensation.
    """
    if method not in FINE_TUNE_METHOD:
        raise ValueError(f"compensation method must be one of {sorted(FINE_TUNE_METHOD)}, got {method!r}")
    if not all(o.frozen for o in model.optics):
        raise ValueError("compensation fine-tunes the backend of a fabricated model; freeze the optics first "
                         "(onn.fabrication.fabricate or OpticalConv.freeze_to)")
    start = time.perf_counter()
    subset = _subset(train, compensation_subset(len(train), config.fraction, seed))  # (m, C, H, W), (m, ...)
    stopping = None
    if val is not None:
        n_val = len(val) if config.val_samples is None else min(config.val_samples, len(val))
        stopping = EarlyStopping(_subset(val, compensation_subset(len(val), n_val / len(val), seed)),
                                 every=config.eval_every, patience=config.patience)
    training = FINE_TUNE_METHOD[method]
    settings = dataclasses.replace(base, method=training, seed=seed, lr=config.lr, batch_size=config.batch_size,
                                   epochs=config.steps * config.batch_size / len(subset) + 1, max_steps=config.steps)
    result = fit(model, subset, task=task, config=settings, teacher=teacher if training != "task" else None,
                 parameters=model.backend_parameters(), device=device, log=log, label=f"compensate {method}",
                 early_stopping=stopping)
    best = result.steps if result.best_step is None else result.best_step
    return CompensationResult(method, len(subset), result.steps, best, result.curve, time.perf_counter() - start,
                              result.loss_terms)


# --- the Monte Carlo ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Spread:
    """Mean, sample standard deviation (0 for one value) and 5th percentile (linear interpolation)."""

    mean: float
    std: float
    p5: float

    @classmethod
    def of(cls, values: Sequence[float]) -> "Spread":
        values = list(values)
        return cls(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0,
                   float(np.percentile(values, 5)))


@dataclass(frozen=True)
class Draw:
    """One fabricated system: its scores as made and after each compensation.

    ``made[split]`` and ``compensated[method][split]`` are `onn.train.evaluate` dicts (accuracy, or
    IoU / mIoU / Dice); ``fine_tuned[method]`` says how each fine-tune went."""

    index: int
    made: dict[str, dict[str, float]]
    compensated: dict[str, dict[str, dict[str, float]]]
    fine_tuned: dict[str, CompensationResult]


@dataclass(frozen=True)
class MonteCarloResult:
    draws: tuple[Draw, ...]
    seconds_made: float  # building and scoring the draws as made
    seconds_compensated: float  # fine-tuning and rescoring them

    def made(self, split: str, metric: str | None = None) -> Spread:
        """Spread over draws of the as-made score on ``split`` (``metric``: default the headline)."""
        return Spread.of([_pick(d.made[split], metric) for d in self.draws])

    def compensated(self, method: str, split: str, metric: str | None = None) -> Spread:
        return Spread.of([_pick(d.compensated[method][split], metric) for d in self.draws])

    def steps(self, method: str) -> float:
        """Mean over draws of the optimiser steps whose backend a compensation kept."""
        return statistics.fmean(d.fine_tuned[method].best_step for d in self.draws)


def _pick(metrics: Mapping[str, float], metric: str | None) -> float:
    return headline(metrics) if metric is None else metrics[metric]


def monte_carlo(model: HybridONN, errors: KernelErrors | PhysicalErrors, *, draws: int, seed: int, task: str,
                score_on: Mapping[str, TensorDataset], compensations: Sequence[str] = (),
                train: TensorDataset | None = None, val: TensorDataset | None = None, teacher: nn.Module | None = None,
                compensation: CompensationConfig = CompensationConfig(), base: TrainConfig = TrainConfig(),
                realisation: Realisation | None = None, chunk: int = 4, device: torch.device | str = "cpu",
                log: Callable[[str], None] | None = None) -> MonteCarloResult:
    """``draws`` fabrication draws of ``model``, each built once and scored as made on every split of
    ``score_on``, then fine-tuned by every method of ``compensations`` (each on its own copy of the
    made draw, seed ``seed + draw``) and scored again. Every evaluation uses `onn.train.evaluate`'s
    fixed sensor-noise stream, so draws differ only in their fabrication errors.

    Args:
        compensations: fine-tuning methods (``"task"``, ``"ntkd"``); ``"none"`` entries are ignored.
        train, val, teacher, compensation, base: what `compensate` needs (``train``: the TRAINING
            split; ``val``: the VALIDATION split it stops on).
        realisation: the model's inverse design, for physical errors.
    """
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    methods = [m for m in compensations if m != "none"]
    if methods and train is None:
        raise ValueError("compensation fine-tunes on the training split: pass train=data.train")
    made_s = compensated_s = 0.0
    out = []
    for i in range(draws):
        start = time.perf_counter()
        made = make_draw(model, errors, draw_generator(seed, i), realisation=realisation, chunk=chunk)
        made_scores = {split: evaluate(made, data, task, device=device) for split, data in score_on.items()}
        made_s += time.perf_counter() - start
        start = time.perf_counter()
        scores, runs = {}, {}
        for k, method in enumerate(methods):
            tuned = made if k == len(methods) - 1 else copy.deepcopy(made)  # the last one may use the draw itself
            runs[method] = compensate(tuned, train, task, method=method, teacher=teacher, config=compensation, val=val,
                                      base=base, seed=seed + i, device=device, log=log)
            scores[method] = {split: evaluate(tuned, data, task, device=device) for split, data in score_on.items()}
        compensated_s += time.perf_counter() - start
        out.append(Draw(i, made_scores, scores, runs))
    return MonteCarloResult(tuple(out), made_s, compensated_s)
