"""One sweep trial, staged: validity -> estimate -> gate -> train -> realise -> fabricate ->
compensate. Plain functions on `onn`; no Ray here (`explore.sweep` schedules this).

Every stage is timed; the trial stops at the first stage that rules the design out and says why:

- ``infeasible``: the design cannot be built or simulated (`onn.optics.InfeasibleDesign`);
- ``pruned``: the estimator gate predicts it cannot reach the sweep's bar;
- ``failed``: training diverged (`onn.train.NonFiniteLoss`). Unexpected exceptions propagate, so
  the scheduler can retry the trial before recording it as failed.

Only a ``complete`` trial reports objective values; the others report NaN objectives, which the
searcher tells Optuna as pruned (`explore.sweep.StagedOptunaSearch`).
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from explore.pareto import non_dominated
from explore.point import DesignPoint
from explore.spec import Gate, SweepSpec
from onn.data import TaskData
from onn.design import Design
from onn.energy import EnergyConstants, digital_conv_energy, hybrid_energy
from onn.estimator import AccuracyEstimate, estimate_accuracy
from onn.fabrication import freeze_realised, realise
from onn.models import HybridONN, build_hybrid
from onn.optics.validity import InfeasibleDesign
from onn.robustness import compensate, draw_generator, make_draw, robustness
from onn.train import NonFiniteLoss, evaluate, fit, headline

# Test hook for the fault-tolerance tests: "<kind>:<trial_index>" with kind raise | nan | die (in the
# trial) or driver (Tune's controller fails once on that trial's result: `explore.driver`).
FAULT_ENV = "EXPLORE_INJECT_FAULT"


@dataclass(frozen=True)
class TrialContext:
    spec: SweepSpec
    data: TaskData
    teacher: torch.nn.Module | None
    energy: EnergyConstants
    front: np.ndarray | None = None  # (n, 2) `gate_front` points: (estimated accuracy, energy_pj)
    device: str = "cpu"
    log: Callable[[str], None] | None = None


class StageClock:
    """Records ``t_<stage>_s`` and the last stage reached."""

    def __init__(self):
        self.metrics: dict[str, Any] = {}
        self.stage = "validity"
        self._start = time.perf_counter()

    def run(self, stage: str, fn: Callable[[], Any]) -> Any:
        self.stage = stage
        begin = time.perf_counter()
        try:
            return fn()
        finally:
            self.metrics[f"t_{stage}_s"] = time.perf_counter() - begin

    def finish(self, status: str, reason: str = "") -> dict[str, Any]:
        return {**self.metrics, "status": status, "reason": reason, "stage": self.stage,
                "t_total_s": time.perf_counter() - self._start}


def run_trial(point: DesignPoint, ctx: TrialContext, *, trial_index: int = 0) -> dict[str, Any]:
    """Run every stage for one design point; returns the row's metric columns."""
    clock = StageClock()
    spec, data = ctx.spec, ctx.data
    fault = injected_fault(trial_index)
    try:
        model = clock.run("validity", lambda: build_hybrid(point.design, in_channels=data.channels,
                                                           image_size=data.image_size, n_outputs=data.n_classes,
                                                           seed=point.train.seed))
    except InfeasibleDesign as exc:
        return clock.finish("infeasible", str(exc))
    clock.metrics.update(_describe(point.design, model))

    clock.run("estimate", lambda: clock.metrics.update(_estimate(point, model, ctx)))
    reason = clock.run("gate", lambda: gate_reason(clock.metrics, spec.gate, ctx.front))
    if reason:
        return clock.finish("pruned", reason)

    if fault == "raise":
        raise RuntimeError(f"{FAULT_ENV}: injected failure in trial {trial_index}")
    if fault == "die":
        os._exit(1)  # the worker process dies mid-trial, as on a lost node
    train_config = point.train
    if fault == "nan":
        train_config = dataclasses.replace(train_config, lr=1e12)
    try:
        result = clock.run("train", lambda: fit(model, data.train, task=data.task, config=train_config,
                                                 evaluate_on={"val": data.val, "test": data.test},
                                                 teacher=ctx.teacher, device=ctx.device, log=ctx.log,
                                                 label=f"trial {trial_index}"))
    except NonFiniteLoss as exc:
        return clock.finish("failed", str(exc))
    clock.metrics.update(accuracy_ideal=result.test_metric, accuracy_val=result.val_metric,
                         train_s=result.seconds, train_steps=result.steps)

    system, physics = model, {}
    if spec.realisation.enabled:
        system, physics = clock.run("realise", lambda: _realise(model, point.design, ctx, clock.metrics))
    ideal = clock.metrics.get("accuracy_realised", result.test_metric)  # the system's score on the test split
    clock.run("fabricate", lambda: clock.metrics.update(_fabricate(system, point, ctx, physics, ideal)))
    clock.run("compensate", lambda: clock.metrics.update(_compensate(system, point, ctx, physics)))
    return clock.finish("complete")


def _describe(design: Design, model: HybridONN) -> dict[str, Any]:
    return {"n_kernels": design.kernels(), "colours": design.colours, "n_suboptics": design.layout().n_suboptics,
            "pitch_um": design.geometry().pitch_m * 1e6, "hidden": "x".join(map(str, design.hidden)),
            "n_params": sum(p.numel() for p in model.parameters())}


def _estimate(point: DesignPoint, model: HybridONN, ctx: TrialContext) -> dict[str, Any]:
    energy = hybrid_energy(model, constants=ctx.energy)
    digital = digital_conv_energy(model, constants=ctx.energy)
    estimate = gate_estimate(point.design, ctx.data, ctx.spec, device=ctx.device)
    return {"est_accuracy": estimate.design, "energy_pj": energy.total_pj, "energy_capture_pj": energy.capture_pj,
            "energy_readout_pj": energy.readout_pj, "energy_adc_pj": energy.adc_pj,
            "energy_digital_mac_pj": energy.digital_mac_pj, "energy_digital_add_pj": energy.digital_add_pj,
            "energy_all_digital_pj": digital.total_pj, "macs": energy.digital_macs, "pixels_read": energy.pixels_read}


def gate_estimate(design: Design, data: TaskData, spec: SweepSpec, *, device: str = "cpu") -> AccuracyEstimate:
    """The design-aware estimate with the sweep's gate settings (subsamples capped at the splits)."""
    gate = spec.gate
    return estimate_accuracy(design, data, n_train=min(gate.n_train, len(data.train)),
                             n_test=min(gate.n_test, len(data.test)), n_frontends=gate.n_frontends, seed=spec.seed,
                             ceiling=False, device=device)


def gate_reason(metrics: dict[str, Any], gate: Gate, front: np.ndarray | None) -> str:
    """Why the design is pruned, or "" to go on; ``front`` is `gate_front`'s (k, 2) points."""
    if not gate.enabled:
        return ""
    estimate = metrics["est_accuracy"]
    if estimate < gate.min_accuracy:
        return f"estimated accuracy {estimate:.3f} < gate.min_accuracy {gate.min_accuracy}"
    if front is not None and len(front):
        estimated, energy = front[:, 0], front[:, 1]
        better = (estimated >= estimate + gate.dominated_margin) & (energy <= metrics["energy_pj"])
        if better.any():
            i = int(np.flatnonzero(better)[0])
            return (f"dominated: a design on the trained front was estimated at {estimated[i]:.3f} for "
                    f"{energy[i]:.3g} pJ, this one at {estimate:.3f} (margin {gate.dominated_margin}) for "
                    f"{metrics['energy_pj']:.3g} pJ")
    return ""


def gate_front(complete_rows: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(estimated accuracy, energy pJ) of the designs on the trained (accuracy after fabrication,
    energy) front, for the gate's dominance rule.

    The gate compares a candidate's estimate with the ESTIMATES of the front designs, like with
    like: the estimator ranks designs well but its level differs from trained accuracy after
    fabrication (it sits above it for classification, far below it for segmentation), so
    comparing an estimate with a trained accuracy would prune too little or nearly everything.
    """
    rows = [r for r in complete_rows if all(r.get(k) is not None and np.isfinite(r[k])
                                            for k in ("accuracy_fabricated", "energy_pj", "est_accuracy"))]
    if not rows:
        return []
    trained = np.array([(r["accuracy_fabricated"], r["energy_pj"]) for r in rows], dtype=float)
    on_front = non_dominated(trained, ["max", "min"])
    return [(rows[i]["est_accuracy"], rows[i]["energy_pj"]) for i in np.flatnonzero(on_front)]


def _realise(model: HybridONN, design: Design, ctx: TrialContext,
             metrics: dict[str, Any]) -> tuple[HybridONN, dict[str, tuple]]:
    """Inverse-design the trained kernels at the design's mask resolution, one kernel group at a
    time (each at its own kernel pixel); the realised system (ideal physics, no fabrication
    error) replaces the kernel-level one from here on. Errors are means over kernels. Also
    returns the inverse designs and geometries, which physical fabrication errors act on."""
    geometries = design.geometries()
    generator = torch.Generator().manual_seed(ctx.spec.seed)
    results = [realise(model, geometry, group=group, steps=ctx.spec.realisation.steps, generator=generator)
               for group, geometry in enumerate(geometries)]
    realised = freeze_realised(model, results, geometries)
    counts = [r.widths_um.shape[0] for r in results]
    mean = lambda field: sum(c * statistics.fmean(getattr(r, field)) for c, r in zip(counts, results)) / sum(counts)
    metrics.update(realised_kernel_error=mean("kernel_error"), realised_design_error=mean("design_error"),
                   accuracy_realised=headline(evaluate(realised, ctx.data.test, ctx.data.task, device=ctx.device)))
    return realised, {"design": tuple(results), "geometry": geometries}


def _fabricate(system: HybridONN, point: DesignPoint, ctx: TrialContext, physics: dict[str, tuple],
               ideal: float) -> dict[str, Any]:
    """Monte Carlo over fabrication draws; ``physics`` (the realisation's inverse designs and
    geometries) is what physical-level errors perturb; ``ideal`` is the system's test score,
    already measured by the stage before."""
    fab = ctx.spec.fabrication
    if not fab.enabled:
        return {}
    check = robustness(system, ctx.data.test, ctx.data.task, fab.error_model(point.design.colours), fab.draws,
                       ctx.spec.seed, device=ctx.device, ideal=ideal, **physics)
    return {"accuracy_fabricated_raw": check.mean, "accuracy_fabricated_raw_std": check.std,
            "accuracy_fabricated_raw_p5": check.p5, "accuracy_fabricated": check.mean,
            "accuracy_fabricated_std": check.std, "accuracy_fabricated_p5": check.p5}


def _compensate(system: HybridONN, point: DesignPoint, ctx: TrialContext, physics: dict[str, tuple]) -> dict[str, Any]:
    """Fine-tune the backend of each fabricated draw (optics frozen) on a fraction of the
    training split; the compensated accuracies replace the raw ones as ``accuracy_fabricated``."""
    fab = ctx.spec.fabrication
    if not fab.enabled or fab.compensation == "none":
        return {}
    method = {"task": "none", "ntkd": "ntkd"}[fab.compensation]
    config = dataclasses.replace(point.train, epochs=fab.compensation_epochs)
    errors = fab.error_model(point.design.colours)
    accuracies = []
    for draw in range(fab.draws):
        made = make_draw(system, errors, draw_generator(ctx.spec.seed, draw), **physics)
        compensate(made, ctx.data.train, ctx.data.task, teacher=ctx.teacher, method=method,
                   fraction=fab.compensation_fraction, config=config, seed=ctx.spec.seed + draw, device=ctx.device)
        accuracies.append(headline(evaluate(made, ctx.data.test, ctx.data.task, device=ctx.device)))
    return {"accuracy_fabricated": statistics.fmean(accuracies),
            "accuracy_fabricated_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
            "accuracy_fabricated_p5": float(np.percentile(accuracies, 5))}


def injected_fault(trial_index: int) -> str | None:
    spec = os.environ.get(FAULT_ENV, "")
    for item in filter(None, spec.split(",")):
        kind, _, index = item.partition(":")
        if index and int(index) == trial_index:
            return kind
    return None
