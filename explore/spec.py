"""Sweep files: the YAML format, validated into a frozen `SweepSpec` before anything runs.

A malformed file raises `SpecError` listing, for every problem, the file, the key path, what was
found and what is allowed (with the closest valid key for a typo). The format is documented key by
key in README.md ("Sweep files"); `sweeps/*.yaml` are the worked examples, each parsed by a test.

Parameters (the keys of ``fixed`` and ``space``) are the names of `explore.parameters.PARAMETERS`;
search-space domains are `explore.space`'s; objectives are the optimisable columns of
`explore.columns.COLUMNS`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from explore.columns import BEFORE_TRAINING, OBJECTIVES, TEST_SCORES, validation_twin
from explore.parameters import HARDWARE_NAMES, PARAMETERS, value_problems
from explore.space import DOMAIN_TAGS, Choice, Domain, FloatRange, IntRange, Strict
from onn.data import DATASETS, TASKS
from onn.energy import CONSTANTS as ENERGY_CONSTANTS
from onn.energy import EnergyConstants
from onn.fabrication import KernelErrors, KernelPreset, PhysicalErrors, default_kernel_errors
from onn.robustness import Compensation, CompensationConfig
from onn.teachers import TEACHERS
from onn.train import TrainConfig


class Task(Strict):
    dataset: str
    teacher: str | None = None  # default: the dataset's usual teacher (onn.teachers.DEFAULT_TEACHER)
    root: str | None = None  # local dataset folder (cifar10, carvana)

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value):
        return _known(value, DATASETS, "dataset")

    @field_validator("teacher")
    @classmethod
    def _known_teacher(cls, value):
        return value if value is None else _known(value, TEACHERS, "teacher")


class Objective(Strict):
    metric: str
    direction: Literal["max", "min"]

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value):
        if value in TEST_SCORES:
            raise ValueError(f"{value!r} is measured on the test split, which a sweep never chooses by (that would "
                             f"make every front figure optimistic); optimise {validation_twin(value)!r}, the same "
                             f"score on validation: the report shows the test score beside it")
        return _known(value, OBJECTIVES, "metric")


class Gate(Strict):
    enabled: bool = True
    min_accuracy: float = Field(0.0, ge=0.0, le=1.0)  # prune if the design-aware estimate is below
    dominated_margin: float = Field(0.02, ge=0.0, le=1.0)  # prune if a front design was estimated this much higher
    n_train: int = Field(2000, ge=10)  # estimator subsamples (at most the split's size)
    n_val: int = Field(1500, ge=4)  # validation samples: half choose the ridge, half score the estimate
    n_frontends: int = Field(2, ge=1)


class CompensationSettings(Strict):
    """`onn.robustness.CompensationConfig` plus the method; ``compensation: ntkd`` is short for
    ``compensation: {method: ntkd}``."""

    method: Compensation = "ntkd"  # none (as made), task or ntkd fine-tune of the backend
    fraction: float = Field(0.1, gt=0.0, le=1.0)  # of the training split
    steps: int = Field(100, ge=1)  # optimiser-step budget per draw
    lr: float = Field(1e-3, gt=0.0)
    batch_size: int = Field(128, ge=1)
    eval_every: int = Field(10, ge=1)  # steps between checks on validation
    patience: int = Field(3, ge=1)  # checks without improvement before stopping
    val_samples: int | None = Field(1000, ge=1)  # validation samples checked (None: all)

    def config(self) -> CompensationConfig:
        return CompensationConfig(**self.model_dump(exclude={"method"}))


class Fabrication(Strict):
    enabled: bool = True
    draws: int = Field(3, ge=1)
    level: Literal["kernel", "physical"] = "kernel"
    preset: KernelPreset = "calibrated"  # kernel level: onn.fabrication.default_kernel_errors
    errors: dict[str, Any] = Field(default_factory=dict)  # overrides of the error model's fields
    compensation: CompensationSettings = CompensationSettings()

    @field_validator("compensation", mode="before")
    @classmethod
    def _shorthand(cls, value):
        return {"method": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _valid_errors(self):
        """``errors`` overrides fields of the level's error model, with its own range checks."""
        model = KernelErrors if self.level == "kernel" else PhysicalErrors
        unknown = sorted(set(self.errors) - {f.name for f in dataclass_fields(model)})
        if unknown:
            allowed = ", ".join(f.name for f in dataclass_fields(model))
            raise ValueError(f"errors: unknown {self.level}-level error field(s) {unknown}; allowed: {allowed}")
        try:
            self.error_model()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"errors: {exc}") from None
        return self

    def error_model(self, colours: int = 1) -> KernelErrors | PhysicalErrors:
        """The level's error model: the preset for ``colours`` colours (kernel level) + ``errors``."""
        errors = {k: tuple(v) if isinstance(v, list) else v for k, v in self.errors.items()}  # YAML lists
        if self.level == "physical":
            return PhysicalErrors(**errors)
        return dataclasses.replace(default_kernel_errors(colours, self.preset), **errors)


class Realisation(Strict):
    enabled: bool = True
    steps: int = Field(100, ge=1)  # inverse-design steps per kernel chunk
    # frame: all of each sub-optic's light on the sensor, crosstalk into neighbours' sub-images
    # included (onn.optics.frame); window: only the light in its own kernel window (the model before
    # 2026-11-30: faster and optimistic). Realised accuracy and physical-level fabrication use it.
    imaging: Literal["frame", "window"] = "frame"
    baffle: bool = False  # frame imaging with an ideal baffle between sub-optics: no crosstalk
    stray_weight: float = Field(0.0, ge=0)  # inverse design: weight of the light missing the kernel window

    @model_validator(mode="after")
    def _baffle_needs_frame(self):
        if self.baffle and self.imaging != "frame":
            raise ValueError("baffle: true needs imaging: frame (the window model has no crosstalk to stop)")
        return self


class Energy(Strict):
    constants: str = "default"
    overrides: dict[str, float] = Field(default_factory=dict)

    @field_validator("constants")
    @classmethod
    def _known_set(cls, value):
        return _known(value, ENERGY_CONSTANTS, "energy constant set")

    @model_validator(mode="after")
    def _valid_overrides(self):
        try:
            EnergyConstants.from_overrides(self.overrides, base=self.constants)
        except KeyError as exc:  # KeyError's str() adds quotes
            raise ValueError(exc.args[0]) from None
        return self


class Search(Strict):
    # Optuna's multi-objective TPE, uniform random, Gaussian-process (logEHVI), NSGA-II, or every
    # point of a grid (the space's choices and int ranges, grid_points values of each float range)
    sampler: Literal["tpe", "random", "gp", "nsga2", "grid"] = "tpe"
    startup_trials: int = Field(10, ge=0)  # tpe/gp: random proposals first; nsga2: the population (>= 4)
    grid_points: int = Field(5, ge=2)  # grid: values per float range
    # Screening (explore.screening): proposals estimated per design trained (1: off), and what the
    # sampler is told of those not trained: nothing it learns from (fail), pruned with their
    # shortfall as a constraint violation (pruned), or their predicted values as if trained (estimate)
    screen: int = Field(1, ge=1, le=64)
    screened_tell: Literal["fail", "pruned", "estimate"] = "fail"

    @property
    def population(self) -> int:
        """NSGA-II's population: ``startup_trials``, at least 4."""
        return max(4, self.startup_trials)


class StopWhenFlat(Strict):
    """Stop proposing once the hypervolume is flat (`explore.pareto.FlatStop`): budget.trials becomes a cap."""

    patience: int = Field(8, ge=1)  # finished trials in a row without a hypervolume gain
    min_trials: int = Field(8, ge=2)  # trials before the reference point is frozen and the count starts
    rel_tol: float = Field(0.01, ge=0.0)  # a gain below this fraction of the best hypervolume is no gain


class Budget(Strict):
    trials: int = Field(ge=1)
    concurrency: int = Field(1, ge=1)
    cpus_per_trial: float = Field(1.0, gt=0.0)
    gpus_per_trial: float = Field(0.0, ge=0.0)  # fractional shares a GPU; 0: every trial on the CPU
    compile: bool = True  # torch.compile the sensor readout in trials (ONN_COMPILE; pays for trials of minutes)
    time_limit_s: float | None = Field(None, gt=0.0)
    max_retries: int = Field(1, ge=0)  # a trial whose worker dies is retried this often, then failed
    stop_when_flat: StopWhenFlat | None = None  # stop early on a hypervolume plateau (off by default)


class SweepSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    task: Task
    fixed: dict[str, Any] = Field(default_factory=dict)
    space: dict[str, Domain] = Field(min_length=1)
    training: dict[str, Any] = Field(default_factory=dict)  # TrainConfig fields for every trial
    objectives: list[Objective] = Field(min_length=1)
    gate: Gate = Gate()
    fabrication: Fabrication = Fabrication()
    realisation: Realisation = Realisation()
    energy: Energy = Energy()
    search: Search = Search()
    budget: Budget
    seed: int = 0
    output: str = "results"

    @field_validator("fixed", mode="before")
    @classmethod
    def _known_fixed(cls, value):
        if not isinstance(value, dict):
            return value  # pydantic then says that a mapping is expected
        for key in value:
            _known(key, HARDWARE_NAMES, "fixed parameter (training knobs go under `training`)")
        return value

    @field_validator("space", mode="before")
    @classmethod
    def _known_parameters(cls, value):
        if not isinstance(value, dict):
            return value
        for key in value:
            _known(key, PARAMETERS, "parameter")
        return value

    @field_validator("training")
    @classmethod
    def _known_training(cls, value):
        names = {f.name for f in dataclass_fields(TrainConfig)} - {"seed"}
        for key in value:
            _known(key, names, "training key")
        try:
            TrainConfig(**value)  # types and ranges
        except TypeError as exc:  # a value of the wrong type (None, a list, ...) compared with a number
            raise ValueError(f"a training value has the wrong type ({exc}); see onn.train.TrainConfig") from None
        return value

    @field_validator("objectives")
    @classmethod
    def _distinct(cls, value):
        metrics = [o.metric for o in value]
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"objectives repeat a metric: {metrics}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _segmentation_images_by_window(cls, raw):
        """Segmentation designs image three kernel groups at different scales, which the full-frame
        model does not handle: unless the file says otherwise, they are imaged by the window model."""
        task = raw.get("task") if isinstance(raw, dict) else None
        if isinstance(task, dict) and isinstance(task.get("dataset"), str) and TASKS.get(task["dataset"]) == "segment":
            realisation = raw.get("realisation") or {}
            if isinstance(realisation, dict) and "imaging" not in realisation:
                raw = {**raw, "realisation": {**realisation, "imaging": "window"}}
        return raw

    @model_validator(mode="after")
    def _frame_imaging_needs_one_group(self):
        if self.realisation.enabled and self.realisation.imaging == "frame" and TASKS.get(self.task.dataset) == "segment":
            raise ValueError("realisation.imaging: frame handles one kernel group; segmentation designs image three "
                             "groups at different scales: set realisation.imaging: window")
        return self

    @model_validator(mode="after")
    def _physical_needs_realisation(self):
        if self.fabrication.enabled and self.fabrication.level == "physical" and not self.realisation.enabled:
            raise ValueError("fabrication.level: physical perturbs the inverse-designed metasurface; set "
                             "realisation.enabled: true (or use fabrication.level: kernel)")
        return self

    @model_validator(mode="after")
    def _grid_holds_the_budget(self):
        if self.search.sampler == "grid":
            size = math.prod(len(d.grid(self.search.grid_points)) for d in self.space.values())
            if self.budget.trials > size:
                raise ValueError(f"the grid holds {size} designs but budget.trials is {self.budget.trials}; "
                                 f"lower budget.trials to <= {size} or widen the grid")
        return self

    @model_validator(mode="after")
    def _screening_ranks_what_it_knows(self):
        if self.search.screen == 1:
            return self
        accuracy = [m for m in self.metrics if m.startswith("accuracy_")]
        unknown = [m for m in self.metrics if not m.startswith("accuracy_") and m not in BEFORE_TRAINING]
        directions = dict(zip(self.metrics, self.directions))
        wrong_way = accuracy and len(self.objectives) == 2 and (
            directions[accuracy[0]] != "max" or any(d != "min" for m, d in directions.items() if m != accuracy[0]))
        if len(self.objectives) != 2 or len(accuracy) != 1 or unknown or wrong_way:
            raise ValueError(f"search.screen ranks proposals by an estimated accuracy and a cost known before "
                             f"training; it needs two objectives, one accuracy_* maximised and one minimised of "
                             f"{', '.join(BEFORE_TRAINING)} (got "
                             f"{', '.join(f'{d} {m}' for m, d in directions.items())}); or set search.screen: 1")
        if self.search.sampler == "grid":
            raise ValueError("search.screen does not combine with the grid sampler (it visits every point anyway)")
        return self

    @model_validator(mode="after")
    def _one_mask_resolution(self):
        given = [k for k in ("mask_res", "oversampling") if k in self.fixed or k in self.space]
        if len(given) == 2:
            raise ValueError("mask_res and oversampling both set the mask resolution; keep one (oversampling: a "
                             "multiple of the smallest resolution that cannot alias)")
        return self

    @model_validator(mode="after")
    def _disjoint(self):
        both = sorted(set(self.fixed) & set(self.space))
        if both:
            raise ValueError(f"{both} appear in both `fixed` and `space`; keep each parameter in one")
        return self

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    @property
    def metrics(self) -> list[str]:
        return [o.metric for o in self.objectives]

    @property
    def folder(self) -> Path:
        """Where this sweep's results go: ``<output>/<name>/``."""
        return Path(self.output).resolve() / self.name


class SpecError(ValueError):
    """A sweep file that cannot be run; the message lists every problem with its key path."""


def _known(value: str, allowed, what: str) -> str:
    if value in allowed:
        return value
    close = difflib.get_close_matches(str(value), list(allowed), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(f"unknown {what} {value!r}; {hint}allowed: {', '.join(sorted(allowed))}")


def _allowed_keys(loc: tuple) -> list[str]:
    """Field names of the model that holds the key at ``loc`` (for unknown-key errors)."""
    model: Any = SweepSpec
    for part in loc[:-1]:
        fields = getattr(model, "model_fields", None)
        if fields is None:
            return []
        if part in fields:
            model = fields[part].annotation
        elif part in DOMAIN_TAGS:
            model = DOMAIN_TAGS[part]
        else:
            return []
        if getattr(model, "__origin__", None) is dict:  # dict[str, Domain]: the next part is a key
            model = Union[FloatRange, IntRange, Choice]
    return list(getattr(model, "model_fields", {}))


def _shown(part: Any) -> str:
    """A key of a key path as written, quoted when it holds anything but word characters."""
    text = str(part)
    return text if re.fullmatch(r"[\w.\-]+", text) else repr(part)


def _format(error: dict, source: str) -> str:
    loc = tuple(error["loc"])
    # pydantic puts the union tag of a search-space entry in the path; users never wrote it
    shown_loc = [p for i, p in enumerate(loc) if not (i == 2 and loc[0] == "space" and p in DOMAIN_TAGS)]
    path = ".".join(_shown(p) for p in shown_loc) or "(top level)"
    found = error.get("input")
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{source}: {path}: unknown key{hint} Allowed here: {', '.join(allowed)}"
    if error["type"] == "missing":
        return f"{source}: {path}: required key is missing"
    # pydantic quotes the input raw; a control character in it would break the message's lines
    message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in error["msg"].removeprefix("Value error, "))
    shown = repr(found)
    return f"{source}: {path}: {message} (found {shown if len(shown) <= 80 else shown[:77] + '...'})"


def parse_spec(raw: Any, source: str = "<sweep>") -> SweepSpec:
    """Validate a loaded YAML document; raises `SpecError` naming every bad key."""
    _check_mapping(raw, source)
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as exc:
        problems = [_format(e, source) for e in exc.errors()]
        raise SpecError("invalid sweep file:\n  " + "\n  ".join(problems)) from None
    problems = value_problems(spec.fixed, spec.space)
    if problems:
        raise SpecError("invalid sweep file:\n  " + "\n  ".join(f"{source}: {path}: {message}"
                                                               for path, message in problems))
    return spec


def _check_mapping(raw: Any, source: str) -> None:
    if raw is None:
        raise SpecError(f"{source}: the file is empty; a sweep file is a mapping of keys (name, task, space, "
                        f"objectives, budget, ...): see sweeps/tiny.yaml")
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: the file must be a mapping of keys (name, task, space, objectives, budget, "
                        f"...), found a {type(raw).__name__}: see sweeps/tiny.yaml")


def load_spec(path: str | Path, overrides: list[str] = ()) -> SweepSpec:
    """Read, apply ``key.path=value`` overrides (values parsed as YAML) and validate a sweep file."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such sweep file (see sweeps/ for examples)")
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    _check_mapping(raw, str(path))
    for item in overrides:
        if "=" not in item:
            raise SpecError(f"override {item!r} must look like key.path=value, e.g. budget.trials=4")
        key, value = item.split("=", 1)
        _set_path(raw, key.split("."), yaml.safe_load(value))
    return parse_spec(raw, str(path))


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice in one mapping is an error (PyYAML keeps the last)."""


def _no_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping (first on line {seen[key] + 1}); keep one",
                key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def _set_path(raw: dict, keys: list[str], value: Any) -> None:
    """Set ``raw[k1][k2]... = value``; parameter names may contain a dot (``train.lr``), so at each
    level the longest run of keys that names an existing entry is taken as one key."""
    node = raw
    i = 0
    while i < len(keys) - 1:
        width = next((w for w in range(len(keys) - i, 1, -1) if ".".join(keys[i:i + w]) in node), 1)
        key = ".".join(keys[i:i + width])
        if i + width == len(keys):
            node[key] = value
            return
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise SpecError(f"override {'.'.join(keys)}: {key} is not a mapping")
        i += width
    node[keys[-1]] = value


# Budget keys a resume may change: how the remaining trials are run, not what a trial computes.
RESUMABLE_CHANGES = ("trials", "concurrency", "time_limit_s", "max_retries", "stop_when_flat")


def resume_changes(saved: SweepSpec, spec: SweepSpec) -> tuple[list[str], list[str]]:
    """The dotted keys that differ between the saved sweep and ``spec``: (those a resume may
    change, those it may not)."""
    old, new = _flatten(saved.model_dump(mode="json")), _flatten(spec.model_dump(mode="json"))
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    allowed = [k for k in changed if k.startswith(tuple(f"budget.{key}" for key in RESUMABLE_CHANGES))]
    return allowed, [k for k in changed if k not in allowed]


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def spec_to_yaml(spec: SweepSpec) -> str:
    """The resolved file (defaults filled in), as saved beside the results."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
