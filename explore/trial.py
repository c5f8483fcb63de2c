"""One sweep trial, staged: validity -> estimate -> gate -> train -> realise -> fabricate ->
compensate. Plain functions on `onn`; no Ray here (`explore.driver` schedules this).

Each stage returns a small frozen result that the next stages take as arguments; `run_trial`
returns a `TrialOutcome` holding all of them, and `explore.rows.outcome_metrics` flattens it into
the row. The trial stops at the first stage that rules the design out and says why:

- ``infeasible``: the design cannot be built or simulated (`onn.optics.InfeasibleDesign`);
- ``pruned``: the estimator gate predicts it cannot reach the sweep's bar;
- ``failed``: training diverged (`onn.train.NonFiniteLoss`). Unexpected exceptions propagate, so
  the scheduler can retry the trial before recording it as failed;
- ``screened``: with screening (``search.screen``), estimated beside other proposals and not the
  one chosen for training (`explore.screening`; the driver decides, `Examined.screened` records it).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import TensorDataset

from explore.context import TrialContext
from explore.pareto import non_dominated
from explore.point import DesignPoint
from explore.spec import Gate, SweepSpec
from onn.data import TaskData
from onn.design import Design
from onn.energy import EnergyBreakdown, digital_conv_energy, format_energy, hybrid_energy
from onn.estimator import AccuracyEstimate, estimate_accuracy
from onn.fabrication import Realisation, freeze_realised, realise_design
from onn.handoff import HandOff, pack, quantise
from onn.models import HybridONN, build_hybrid
from onn.optics.frame import light_budget
from onn.optics.validity import InfeasibleDesign
from onn.robustness import MonteCarloResult, monte_carlo
from onn.train import NonFiniteLoss, TrainResult, evaluate, fit, headline


@dataclass(frozen=True)
class Described:
    """What the design is, once built."""

    n_kernels: int
    colours: int
    n_suboptics: int
    pitch_um: float
    hidden: tuple[int, ...]
    n_params: int
    haze: float  # the kernel-level stray-light ratio the design was trained with


@dataclass(frozen=True)
class Estimated:
    """Before training: the accuracy estimate and the exact energy (hybrid and all-digital)."""

    accuracy: AccuracyEstimate
    energy: EnergyBreakdown
    all_digital: EnergyBreakdown


@dataclass(frozen=True)
class Realised:
    """The trained kernels inverse-designed at the design's mask resolution, its widths on the
    lithography grid, that system's scores, and its fabrication hand-off."""

    realisation: Realisation  # quantised (`onn.handoff.quantise`): what is scored is what is exported
    system: HybridONN  # the realised (ideal physics, no fabrication error) system
    scores: dict[str, float]  # split -> headline metric
    handoff: HandOff
    light: dict[str, float]  # the light budget's row columns (`light_budget_row`)


@dataclass(frozen=True)
class TrialOutcome:
    """Everything a trial found, stage by stage; later stages are None when it stopped early."""

    status: str  # complete, pruned, infeasible, failed or screened
    reason: str
    stage: str  # the last stage reached
    seconds: dict[str, float]  # stage -> wall seconds, and "total"
    cpu_seconds: dict[str, float]  # stage -> CPU seconds of this process (all its threads)
    described: Described | None = None
    estimated: Estimated | None = None
    trained: TrainResult | None = None
    realised: Realised | None = None
    fabricated: MonteCarloResult | None = None
    compensation: str = "none"  # what `fabricated` fine-tuned (`onn.robustness.Compensation`)
    violation: float = 0.0  # how far from feasible / from passing the gate (relative); 0 for a trained design


class StageClock:
    """Times each stage and remembers the last one reached."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self.stage = "validity"
        self._start, self._cpu_start = time.perf_counter(), time.process_time()

    def run(self, stage: str, fn: Callable[[], Any]) -> Any:
        self.stage = stage
        begin, cpu_begin = time.perf_counter(), time.process_time()
        try:
            return fn()
        finally:
            self.seconds[stage] = time.perf_counter() - begin
            self.cpu_seconds[stage] = time.process_time() - cpu_begin

    def outcome(self, status: str, reason: str = "", **stages) -> TrialOutcome:
        return TrialOutcome(status, reason, self.stage, {**self.seconds, "total": time.perf_counter() - self._start},
                            {**self.cpu_seconds, "total": time.process_time() - self._cpu_start}, **stages)


@dataclass
class Examined:
    """A design before training: built and estimated (or found infeasible), with its stage clock."""

    clock: StageClock
    model: HybridONN | None = None
    described: Described | None = None
    estimated: Estimated | None = None
    infeasible: TrialOutcome | None = None

    def gate(self, ctx: TrialContext) -> TrialOutcome | None:
        """The gate stage: the ``pruned`` outcome if the estimator gate rules the design out, else None."""
        accuracy, energy_pj = self.estimated.accuracy.design, self.estimated.energy.total_pj
        reason = self.clock.run("gate", lambda: gate_reason(accuracy, energy_pj, ctx.spec.gate, ctx.front))
        if not reason:
            return None
        return self.clock.outcome("pruned", reason, described=self.described, estimated=self.estimated,
                                  violation=gate_shortfall(accuracy, energy_pj, ctx.spec.gate, ctx.front))

    def screened(self, reason: str, violation: float) -> TrialOutcome:
        """The outcome of a design screening did not pick for training (its own stages' time only)."""
        outcome = self.clock.outcome("screened", reason, described=self.described, estimated=self.estimated,
                                     violation=violation)
        return dataclasses.replace(outcome, seconds={**self.clock.seconds, "total": sum(self.clock.seconds.values())},
                                   cpu_seconds={**self.clock.cpu_seconds,
                                                "total": sum(self.clock.cpu_seconds.values())})


def examine(point: DesignPoint, ctx: TrialContext) -> Examined:
    """The validity and estimate stages: what is known of a design before training it."""
    clock = StageClock()
    data = ctx.data
    try:
        model = clock.run("validity", lambda: build_hybrid(point.design, in_channels=data.channels,
                                                           image_size=data.image_size, n_outputs=data.n_classes,
                                                           seed=point.train.seed))
    except InfeasibleDesign as exc:
        return Examined(clock, infeasible=clock.outcome("infeasible", str(exc), violation=exc.violation))
    estimated = clock.run("estimate", lambda: estimate(point.design, model, ctx))
    return Examined(clock, model, describe(point.design, model), estimated)


def run_trial(point: DesignPoint, ctx: TrialContext, *, trial_index: int = 0,
              examined: Examined | None = None) -> TrialOutcome:
    """Run every stage for one design point (from the gate on, if ``examined`` already did the first two)."""
    examined = examined or examine(point, ctx)
    if examined.infeasible is not None:
        return examined.infeasible
    spec, data = ctx.spec, ctx.data
    pruned = examined.gate(ctx)
    if pruned is not None:
        return pruned
    clock, model, described, estimated = examined.clock, examined.model, examined.described, examined.estimated

    config = point.train if ctx.faults is None else ctx.faults.before_training(trial_index, point.train)
    try:
        trained = clock.run("train", lambda: fit(model, data.train, task=data.task, config=config,
                                                  evaluate_on={"val": data.val, "test": data.test},
                                                  teacher=ctx.teacher, device=ctx.device, log=ctx.log,
                                                  label=f"trial {trial_index}", history_on=data.val))
    except NonFiniteLoss as exc:
        return clock.outcome("failed", str(exc), described=described, estimated=estimated)
    stages = dict(described=described, estimated=estimated, trained=trained)
    system, realised = model, None
    if spec.realisation.enabled:
        realised = clock.run("realise", lambda: realise(model, ctx))
        system = realised.system
        stages["realised"] = realised
    fabricated = clock.run("fabricate", lambda: fabricate(system, point, ctx, realised))
    if fabricated is not None:
        clock.seconds["fabricate"] = fabricated.seconds_made
        clock.seconds["compensate"] = fabricated.seconds_compensated
        clock.stage = "compensate"
        stages.update(fabricated=fabricated, compensation=spec.fabrication.compensation.method)
    return clock.outcome("complete", **stages)


def describe(design: Design, model: HybridONN) -> Described:
    return Described(design.kernels(), design.colours, design.layout().n_suboptics, design.geometry().pitch_m * 1e6,
                     design.hidden, sum(p.numel() for p in model.parameters()), design.haze)


def estimate(design: Design, model: HybridONN, ctx: TrialContext) -> Estimated:
    return Estimated(gate_estimate(design, ctx.data, ctx.spec, device=ctx.device),
                     hybrid_energy(model, constants=ctx.energy), digital_conv_energy(model, constants=ctx.energy))


def gate_estimate(design: Design, data: TaskData, spec: SweepSpec, *, device: str = "cpu") -> AccuracyEstimate:
    """The design-aware estimate with the sweep's gate settings (subsamples capped at the splits):
    fitted on training samples, scored on validation samples; the test split is never read."""
    gate = spec.gate
    return estimate_accuracy(design, data, n_train=min(gate.n_train, len(data.train)),
                             n_val=min(gate.n_val, len(data.val)), n_frontends=gate.n_frontends, seed=spec.seed,
                             ceiling=False, device=device)


def gate_reason(accuracy: float, energy_pj: float, gate: Gate, front: np.ndarray | None) -> str:
    """Why a design estimated at ``accuracy`` for ``energy_pj`` is pruned, or "" to go on;
    ``front`` is `gate_front`'s (k, 2) points."""
    if not gate.enabled:
        return ""
    if accuracy < gate.min_accuracy:
        return f"estimated accuracy {accuracy:.3f} < gate.min_accuracy {gate.min_accuracy}"
    if front is not None and len(front):
        estimates, energies = front[:, 0], front[:, 1]
        better = (estimates >= accuracy + gate.dominated_margin) & (energies <= energy_pj)
        if better.any():
            i = int(np.flatnonzero(better)[0])
            return (f"dominated: a design on the trained front was estimated at {estimates[i]:.3f} for "
                    f"{format_energy(energies[i])}, this one at {accuracy:.3f} (margin {gate.dominated_margin}) for "
                    f"{format_energy(energy_pj)}")
    return ""


def gate_shortfall(accuracy: float, energy_pj: float, gate: Gate, front: np.ndarray | None) -> float:
    """How much more estimated accuracy the design would need to pass the gate (0: it passes)."""
    if not gate.enabled:
        return 0.0
    need = gate.min_accuracy
    if front is not None and len(front):
        rivals = front[front[:, 1] <= energy_pj, 0]  # front designs at no more energy
        if len(rivals):
            need = max(need, float(rivals.max()) + gate.dominated_margin)
    return max(0.0, need - accuracy)


def gate_front(complete_rows: list[dict[str, Any]], objective: str) -> list[tuple[float, float]]:
    """(estimated accuracy, energy pJ) of the designs on the trained (``objective``, energy) front,
    for the gate's dominance rule.

    The gate compares a candidate's estimate with the ESTIMATES of the front designs, like with
    like: the estimator ranks designs well but its level differs from trained accuracy after
    fabrication (it sits above it for classification, far below it for segmentation), so
    comparing an estimate with a trained accuracy would prune too little or nearly everything.
    """
    rows = [r for r in complete_rows if all(r.get(k) is not None and np.isfinite(r[k])
                                            for k in (objective, "energy_pj", "est_accuracy"))]
    if not rows:
        return []
    trained = np.array([(r[objective], r["energy_pj"]) for r in rows], dtype=float)
    on_front = non_dominated(trained, ["max", "min"])
    return [(rows[i]["est_accuracy"], rows[i]["energy_pj"]) for i in np.flatnonzero(on_front)]


def realise(model: HybridONN, ctx: TrialContext) -> Realised:
    """Inverse-design the trained kernels at the design's mask resolution (`onn.fabrication.realise_design`),
    put the widths on the lithography grid (`onn.handoff.quantise`); the realised system (ideal
    physics, no fabrication error) replaces the kernel-level one from here on."""
    settings = ctx.spec.realisation
    designed = realise_design(model, steps=settings.steps, generator=torch.Generator().manual_seed(ctx.spec.seed),
                              frame=settings.imaging == "frame", baffle=settings.baffle,
                              stray_weight=settings.stray_weight)
    realisation, indices = quantise(designed)
    system = freeze_realised(model, realisation)
    scores = {split: headline(evaluate(system, data, ctx.data.task, device=ctx.device))
              for split, data in splits(ctx.data).items()}
    data = ctx.data
    task = {"dataset": data.name, "task": data.task, "channels": data.channels, "image_size": data.image_size,
            "n_outputs": data.n_classes}
    return Realised(realisation, system, scores, pack(model, realisation, indices, task=task),
                    light_budget_row(realisation))


def light_budget_row(realisation: Realisation) -> dict[str, float]:
    """Where the realised metasurface's light goes (`onn.optics.frame.light_budget`): mean fractions
    over sub-optics and wavelengths; empty under window imaging (which does not follow the light
    out of the kernel window, and is chosen for speed)."""
    if realisation.frames is None:
        return {}
    design, geometry, frame = realisation.designs[0], realisation.geometries[0], realisation.frames[0]
    budget = light_budget(design.widths_um.reshape(-1, *design.widths_um.shape[-2:]), geometry, frame).means()
    return {"light_in_window": budget["in_window"], "light_own_subimage": budget["own_subimage"],
            "light_crosstalk": budget["other_subimages"], "light_unread": budget["unread"],
            "light_lost": budget["lost"] + budget["beyond"], "crosstalk_ratio": budget["crosstalk_ratio"]}


def splits(data: TaskData) -> dict[str, TensorDataset]:
    """The splits every trained system is scored on: validation (to choose by) and test (for the record)."""
    return {"val": data.val, "test": data.test}


def fabricate(system: HybridONN, point: DesignPoint, ctx: TrialContext,
              realised: Realised | None) -> MonteCarloResult | None:
    """Monte Carlo over fabrication draws of ``system`` (physical-level errors perturb its
    realisation), each scored as made and after the sweep's compensation (fine-tuned on training
    samples, stopped on validation seen through the same draw); None when off."""
    fab = ctx.spec.fabrication
    if not fab.enabled:
        return None
    data = ctx.data
    return monte_carlo(system, fab.error_model(point.design.colours), draws=fab.draws, seed=ctx.spec.seed,
                       task=data.task, score_on=splits(data), compensations=(fab.compensation.method,),
                       train=data.train, val=data.val, teacher=ctx.teacher, compensation=fab.compensation.config(),
                       base=point.train, realisation=None if realised is None else realised.realisation,
                       device=ctx.device)
