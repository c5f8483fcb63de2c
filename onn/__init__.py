"""Hybrid optical neural networks: metasurface optics, NTKD training, estimators, fabrication.

`onn` is the physics-and-learning library. It never imports `explore`, Ray, Optuna, polars, Altair
or YAML (a test enforces it), so everything here works in a notebook::

    from onn import PRESETS, build_hybrid, load_dataset, get_teacher, fit, TrainConfig

    data = load_dataset("mnist")
    teacher, _ = get_teacher("mnist")
    model = build_hybrid(PRESETS["mono"], in_channels=1, image_size=28, n_outputs=10)
    result = fit(model, data.train, task=data.task, config=TrainConfig(method="ntkd", epochs=1),
                 teacher=teacher, evaluate_on={"val": data.val})

The names below are the public surface; submodules hold the details (`onn.optics` the physics).
"""

from onn.data import DATASETS, TaskData, load_dataset
from onn.design import PRESETS, Design
from onn.energy import EnergyBreakdown, EnergyConstants, digital_conv_energy, get_constants, hybrid_energy
from onn.estimator import AccuracyEstimate, estimate_accuracy
from onn.fabrication import (KernelErrors, PhysicalErrors, Realisation, default_kernel_errors, fabricate,
                             fabricate_physical, freeze_realised, realise_design)
from onn.layers import OpticalConv
from onn.losses import kd_loss, ntk_loss, task_loss
from onn.models import HybridONN, build_hybrid
from onn.ntk import empirical_ntk, mlp_ntk
from onn.optics import InfeasibleDesign, OpticalGeometry
from onn.optics.sensor import SensorConfig
from onn.robustness import COMPENSATIONS, CompensationConfig, MonteCarloResult, Spread, compensate, monte_carlo
from onn.teachers import TEACHERS, build_teacher, get_teacher
from onn.train import EarlyStopping, NonFiniteLoss, TrainConfig, TrainResult, evaluate, fit, headline

__version__ = "0.1.0"

__all__ = [
    "AccuracyEstimate", "COMPENSATIONS", "CompensationConfig", "DATASETS", "Design", "EarlyStopping", "EnergyBreakdown", "EnergyConstants", "HybridONN",
    "InfeasibleDesign", "KernelErrors", "MonteCarloResult", "NonFiniteLoss", "OpticalConv", "OpticalGeometry",
    "PRESETS", "PhysicalErrors", "Realisation", "SensorConfig", "Spread", "TEACHERS", "TaskData", "TrainConfig",
    "TrainResult", "build_hybrid", "build_teacher", "compensate", "default_kernel_errors", "digital_conv_energy",
    "empirical_ntk", "estimate_accuracy", "evaluate", "fabricate", "fabricate_physical", "fit",
    "freeze_realised", "get_constants", "get_teacher", "headline", "hybrid_energy", "kd_loss", "load_dataset",
    "mlp_ntk", "monte_carlo", "ntk_loss", "realise_design", "task_loss",
]
