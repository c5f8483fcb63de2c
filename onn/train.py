"""One training function for everything: sweep trials, compensation, experiments, teachers.

``fit`` trains a model with no transfer, Hinton KD or NTKD (SPEC §2) and returns a small frozen
`TrainResult`. Randomness (initial order of batches, sensor noise, NTK probes) comes from the
config's seed; evaluation uses its own fixed generator, so the same model scores the same twice.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Literal

import torch
from torch import nn
from torch.utils.data import TensorDataset

from onn.losses import Normalise, kd_loss, ntk_loss, task_loss
from onn.macs import count_macs
from onn.ntk import NtkMode, empirical_ntk
from onn.segmentation import mask_counts, metrics_from_counts

Method = Literal["task", "kd", "ntkd"]  # task loss only (no transfer), Hinton KD, NTKD
EVAL_SEED = 1234
# Sensor readings held at once while evaluating (2^26 float32: 256 MB per tensor): the evaluation batch
# of a hybrid with hundreds of kernels shrinks to fit (a 1000-kernel MNIST frontend at batch 500 took 19 GB).
EVAL_READINGS = 2**26


class NonFiniteLoss(FloatingPointError):
    """Training produced NaN/inf; the message names the step and the loss term."""


@dataclass(frozen=True)
class TrainConfig:
    method: Method = "ntkd"
    epochs: float = 3.0
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0
    kd_temperature: float = 4.0
    kd_alpha: float = 0.5
    ntk_alpha: float = 1.0  # weight of the task loss in NTKD
    ntk_beta: float = 1.0  # weight of the NTK alignment term
    ntk_mode: NtkMode = "probe"
    ntk_probes: int = 2
    ntk_subbatch: int = 32  # Gram on the first samples of each batch, topped up with random training
    # samples when the batch is smaller (segmentation's batch of 8 would give an 8 x 8 Gram)
    ntk_normalise: Normalise = "trace"
    ntk_centre: bool = False  # centre both Grams before normalising (CKA-style; onn.losses.ntk_loss)
    ntk_output_pool: int = 8  # segmentation: pool per-pixel logits before the Gram
    max_steps: int | None = None
    seed: int = 0
    eval_batch_size: int = 500
    log_every_s: float = 20.0

    def __post_init__(self):
        if self.method not in ("task", "kd", "ntkd"):
            raise ValueError(f"method must be 'task' (no transfer), 'kd' or 'ntkd', got {self.method!r}")
        if not self.epochs > 0 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(f"need epochs > 0, batch_size >= 1, lr > 0; got {self.epochs}, {self.batch_size}, {self.lr}")


@dataclass(frozen=True)
class TrainResult:
    method: str
    val_metric: float  # accuracy (classification) or foreground IoU (segmentation), in [0, 1]
    test_metric: float
    final_loss: float
    loss_terms: tuple[tuple[str, float], ...]  # mean of each term over the last epoch
    steps: int  # optimiser steps run
    seconds: float
    n_params: int
    n_trainable: int
    macs: int
    metrics: tuple[tuple[str, float], ...] = field(default=())  # every evaluation metric, "split/name"
    best_step: int | None = None  # early stopping: the step whose parameters were kept (0: none improved)
    curve: tuple[tuple[int, float], ...] = ()  # early stopping: (step, headline metric) at every check
    history: tuple[tuple[float, float, float], ...] = ()  # (epoch, mean train loss over it, `history_on` score)


@dataclass(frozen=True)
class EarlyStopping:
    """Check the headline metric on ``data`` every ``every`` steps (and before the first); keep the
    parameters of the best check; stop after ``patience`` checks without improvement."""

    data: TensorDataset
    every: int = 10
    patience: int = 3

    def __post_init__(self):
        if self.every < 1 or self.patience < 1:
            raise ValueError(f"early stopping needs every >= 1 and patience >= 1, got {self.every}, {self.patience}")


def evaluate(model: nn.Module, dataset: TensorDataset, task: str, *, batch_size: int = 500,
             device: torch.device | str = "cpu") -> dict[str, float]:
    """Accuracy (classification) or IoU / mIoU / Dice (segmentation, `onn.segmentation.mask_metrics`)
    on a whole split, with the sensor noise drawn from a fixed generator (the same model scores the
    same twice). A hybrid's batch is capped at `EVAL_READINGS` sensor readings."""
    if hasattr(model, "pixels_read"):
        batch_size = max(1, min(batch_size, EVAL_READINGS // model.pixels_read()))
    generator = torch.Generator(device=device).manual_seed(EVAL_SEED)
    images, targets = dataset.tensors
    was_training = model.training
    model.eval()
    correct, counts = 0, torch.zeros(6, dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].to(device)
            y = targets[start:start + batch_size].to(device)
            out = model(x, generator=generator)
            if task == "classify":
                correct += int((out.argmax(1) == y).sum())
            else:
                counts += mask_counts(out > 0, y > 0.5)
    model.train(was_training)
    if task == "classify":
        return {"accuracy": correct / len(images)}
    return metrics_from_counts(counts)


def headline(metrics: dict[str, float]) -> float:
    """The one number a split is judged by: accuracy, or foreground IoU for segmentation."""
    return metrics["accuracy"] if "accuracy" in metrics else metrics["iou"]


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fit(model: nn.Module, train: TensorDataset, *, task: str, config: TrainConfig,
        evaluate_on: dict[str, TensorDataset] | None = None, teacher: nn.Module | None = None,
        parameters: list[nn.Parameter] | None = None, device: torch.device | str = "cpu",
        log: Callable[[str], None] | None = stderr_log, label: str = "train",
        early_stopping: EarlyStopping | None = None, history_on: TensorDataset | None = None) -> TrainResult:
    """Train ``model`` on ``train`` and evaluate it on the splits in ``evaluate_on``
    (``"val"``/``"test"`` give the result's headline metrics).

    Args:
        parameters: what to train (default: every parameter that requires grad). Compensation
            passes the backend's parameters only; the rest stays bit-identical.
        early_stopping: stop on a held-out set (never the test split) and keep the best
            parameters; without it every step of the budget runs and the last parameters are kept.
        history_on: score this split (validation) at the end of every epoch and of training, for
            the learning curve in ``TrainResult.history`` (costs one evaluation per epoch).
        teacher: required for ``kd`` and ``ntkd``; frozen, sees the raw images.
        log: progress lines (loss terms, throughput, ETA) at most every ``config.log_every_s``.
    Raises:
        NonFiniteLoss: naming the step and term, instead of returning a NaN model.
    """
    if config.method != "task" and teacher is None:
        raise ValueError(f"method {config.method!r} needs a teacher")
    start = time.perf_counter()
    model.to(device)
    if teacher is not None:
        teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    trainable = parameters if parameters is not None else [p for p in model.parameters() if p.requires_grad]
    trainable_ids = {id(p) for p in trainable}
    ntk_names = [n for n, p in model.named_parameters() if id(p) in trainable_ids]
    images, targets = train.tensors
    steps_per_epoch = max(1, math.ceil(len(images) / config.batch_size))
    total = max(1, math.ceil(config.epochs * steps_per_epoch))
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    optimiser = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.lr, total_steps=total, pct_start=0.15)
    # Separate streams, so that every method sees the same batches and the same sensor noise
    # whatever else it draws (NTK probes must not shift the data order).
    noise_generator = torch.Generator(device=device).manual_seed(config.seed + 1)
    probe_generator = torch.Generator().manual_seed(config.seed + 2)
    topup_generator = torch.Generator().manual_seed(config.seed + 3)
    progress = _Progress(log, label, config, total, steps_per_epoch, start)
    last_epoch, this_epoch = _TermMeans(), _TermMeans()
    history: list[tuple[float, float, float]] = []
    stopper = None if early_stopping is None else _Stopper(early_stopping, model, trainable, task, config, device)
    model.train()
    loss_value = float("nan")
    step = 0
    for step, index in enumerate(_batch_indices(len(images), config.batch_size, total, config.seed), start=1):
        x, y = images[index].to(device), targets[index].to(device)
        gram_x = _gram_inputs(x, images, config, topup_generator, device) if config.method == "ntkd" else None
        terms = _loss_terms(model, teacher, x, y, task, config, noise_generator, probe_generator, ntk_names, gram_x)
        _check_finite(terms, label, step, total, schedule.get_last_lr()[0])
        loss = sum(weight * value for weight, value in terms.values())
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        loss_value = float(loss.detach())
        if step > total - steps_per_epoch:  # average the terms over the last epoch
            last_epoch.add(terms)
        progress.step(step, loss_value, terms)
        if history_on is not None:
            this_epoch.add({"loss": (1.0, loss.detach())})
            if step % steps_per_epoch == 0 or step == total:
                score = headline(evaluate(model, history_on, task, batch_size=config.eval_batch_size, device=device))
                history.append((step / steps_per_epoch, dict(this_epoch.means())["loss"], score))
                this_epoch = _TermMeans()
                model.train()
        if stopper is not None and stopper.check(step, last=step == total):
            break
    if stopper is not None:
        stopper.restore()

    metrics = {f"{split}/{name}": value for split, dataset in (evaluate_on or {}).items()
               for name, value in evaluate(model, dataset, task, batch_size=config.eval_batch_size,
                                           device=device).items()}
    pick = lambda split: next((v for k, v in metrics.items() if k in (f"{split}/accuracy", f"{split}/iou")), float("nan"))
    ops = count_macs(model, images[:1].to(device))
    model.train()
    return TrainResult(
        method=config.method, val_metric=pick("val"), test_metric=pick("test"), final_loss=loss_value,
        loss_terms=last_epoch.means(), steps=step, seconds=time.perf_counter() - start, n_params=ops.params,
        n_trainable=sum(p.numel() for p in trainable), macs=ops.macs, metrics=tuple(sorted(metrics.items())),
        best_step=None if stopper is None else stopper.best_step, curve=() if stopper is None else tuple(stopper.curve),
        history=tuple(history))


def _batch_indices(n: int, batch_size: int, total: int, seed: int):
    """``total`` batches of sample indices: a fresh seeded permutation per epoch, the last batch of
    an epoch possibly short."""
    generator = torch.Generator().manual_seed(seed)
    step = 0
    while True:
        order = torch.randperm(n, generator=generator)
        for begin in range(0, n, batch_size):
            if step == total:
                return
            step += 1
            yield order[begin:begin + batch_size]


def _check_finite(terms: dict, label: str, step: int, total: int, lr: float) -> None:
    for name, (_, value) in terms.items():
        if not torch.isfinite(value):
            raise NonFiniteLoss(f"{label}: loss term {name!r} is {float(value)} at step {step}/{total} "
                                f"(lr {lr:.2e}); lower the learning rate or check the inputs")


class _Stopper:
    """Early stopping: checks, the best parameters so far, and the patience left."""

    def __init__(self, rule: EarlyStopping, model, trainable, task, config, device):
        self.rule, self.model, self.trainable, self.task, self.device = rule, model, trainable, task, device
        self.batch_size = config.eval_batch_size
        self.curve: list[tuple[int, float]] = []
        self.best, self.best_step, self.best_state, self.waited = -math.inf, 0, None, 0
        self.check(0, last=False)

    def check(self, step: int, *, last: bool) -> bool:
        """Score at ``step`` if due; True to stop now."""
        if step % self.rule.every and not last:
            return False
        score = headline(evaluate(self.model, self.rule.data, self.task, batch_size=self.batch_size,
                                  device=self.device))
        self.curve.append((step, score))
        if score > self.best:
            self.best, self.best_step, self.waited = score, step, 0
            self.best_state = [p.detach().clone() for p in self.trainable]
            return False
        self.waited += 1
        return self.waited >= self.rule.patience

    def restore(self) -> None:
        with torch.no_grad():
            for p, best in zip(self.trainable, self.best_state):
                p.copy_(best)


class _TermMeans:
    """Running means of the loss terms."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, terms: dict) -> None:
        for name, (_, value) in terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value.detach())
        self.count += 1

    def means(self) -> tuple[tuple[str, float], ...]:
        return tuple((k, v / max(self.count, 1)) for k, v in self.sums.items())


class _Progress:
    """A progress line at most every ``config.log_every_s`` seconds, and at the last step."""

    def __init__(self, log, label: str, config: TrainConfig, total: int, steps_per_epoch: int, start: float):
        self.log, self.label, self.method = log, label, config.method
        self.every_s, self.total, self.steps_per_epoch, self.start = config.log_every_s, total, steps_per_epoch, start
        self.last = start

    def step(self, step: int, loss: float, terms: dict) -> None:
        now = time.perf_counter()
        if self.log is None or not (now - self.last > self.every_s or step == self.total):
            return
        elapsed = now - self.start
        parts = " ".join(f"{k} {float(v.detach()):.4f}" for k, (_, v) in terms.items())
        self.log(f"[{self.label} {self.method}] step {step}/{self.total} (epoch {step / self.steps_per_epoch:.2f}) "
                 f"loss {loss:.4f} ({parts}) {step / elapsed:.1f} steps/s, eta {elapsed / step * (self.total - step):.0f}s")
        self.last = now


def _gram_inputs(x: torch.Tensor, images: torch.Tensor, config: TrainConfig, generator: torch.Generator,
                 device) -> torch.Tensor:
    """The NTK Gram's samples: the first ``ntk_subbatch`` of the batch, topped up with random
    training samples (their own stream: the batches stay the same) when the batch is smaller."""
    missing = config.ntk_subbatch - len(x)
    if missing <= 0:
        return x[:config.ntk_subbatch]
    extra = torch.randint(len(images), (missing,), generator=generator)
    return torch.cat([x, images[extra].to(device)])


def _loss_terms(model, teacher, x, y, task, config: TrainConfig, noise_generator, probe_generator, ntk_names,
                gram_x=None):
    """{name: (weight, value)} for one batch; ``gram_x``: the NTK Gram's samples (default: the
    first ``ntk_subbatch`` of the batch)."""
    out = model(x, generator=noise_generator)
    match config.method:
        case "task":
            return {"task": (1.0, task_loss(out, y, task))}
        case "kd":
            with torch.no_grad():
                teacher_out = teacher(x)
            return {"kd": (1.0, kd_loss(out, teacher_out, y, task, temperature=config.kd_temperature,
                                        alpha=config.kd_alpha))}
        case "ntkd":
            sub = x[:config.ntk_subbatch] if gram_x is None else gram_x
            pool = config.ntk_output_pool if task == "segment" else None
            student_gram = empirical_ntk(model, sub, mode=config.ntk_mode, probes=config.ntk_probes,
                                         names=ntk_names, generator=probe_generator, output_pool=pool)
            with torch.no_grad():
                teacher_gram = empirical_ntk(teacher, sub, mode=config.ntk_mode, probes=config.ntk_probes,
                                             generator=probe_generator, output_pool=pool)
            return {"task": (config.ntk_alpha, task_loss(out, y, task)),
                    "ntk": (config.ntk_beta, ntk_loss(student_gram, teacher_gram, config.ntk_normalise,
                                                      config.ntk_centre))}
    raise ValueError(config.method)
