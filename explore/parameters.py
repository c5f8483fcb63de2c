"""The sweep parameters: every name a sweep file may put under ``fixed`` or ``space``.

One table (`PARAMETERS`) says, per name, what it is, where its value lands (a field of
`onn.design.Design`, of its `onn.optics.sensor.SensorConfig`, of the digital backend, or of
`onn.train.TrainConfig`), the type of its value and the values the physics and the simulation can
take. Validation (`explore.spec`), the design-point converter (`explore.point`), ``--dry-run`` and
the README's parameter table all read it; a new knob is one entry here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_type_hints

from onn.optics.constants import WAVELENGTH_SETS_NM
from onn.train import TrainConfig

Target = Literal["design", "sensor", "backend", "train", "derived"]
Kind = Literal["float", "int", "str", "bool"]


@dataclass(frozen=True)
class Parameter:
    """One sweep parameter.

    ``target``/``field``: where the value lands (``backend`` fields are ``depth`` and ``width``,
    which become `Design.hidden`). ``low``/``high``: inclusive bounds every value must keep
    (None: unbounded); ``positive``: strictly above 0; ``odd``: odd integers only; ``options``:
    the only values allowed; ``words``: strings allowed besides a number's domain (e.g. ``fitted``).
    """

    name: str
    doc: str
    target: Target
    field: str
    kind: Kind
    low: float | None = None
    high: float | None = None
    positive: bool = False
    odd: bool = False
    options: tuple[Any, ...] | None = None
    words: tuple[str, ...] = ()

    def cast(self, value: Any) -> Any:
        """The value as the target field holds it (a sampled 192.0 is the int 192)."""
        if isinstance(value, str) and value in self.words:
            return value
        match self.kind:
            case "int":
                return int(value)
            case "float":
                return float(value)
            case "bool":
                return bool(value)
        return value

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is outside this parameter's domain, or None if it is inside."""
        if self.options is not None:
            return None if value in self.options else f"must be one of {list(self.options)}, got {value!r}"
        if isinstance(value, str) and value in self.words:
            return None
        if self.kind == "str":
            return None if isinstance(value, str) else f"must be a string, got {value!r}"
        if self.kind == "bool":
            return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {value!r}"
        if self.kind == "int" and value != int(value):
            return f"must be a whole number, got {value!r}"
        if self.positive and not value > 0:
            return f"must be > 0, got {value!r}"
        if self.low is not None and value < self.low:
            return f"must be >= {self.low:g}, got {value!r}"
        if self.high is not None and value > self.high:
            return f"must be <= {self.high:g}, got {value!r}"
        if self.odd and int(value) % 2 == 0:
            return f"must be odd (a PSF is centred on the axis), got {value!r}"
        return None

    def allowed(self) -> str:
        """What the domain is, in words (for errors and the README)."""
        if self.options is not None:
            return "one of " + ", ".join(map(str, self.options))
        parts = [{"float": "number", "int": "integer", "str": "string", "bool": "true/false"}[self.kind]]
        if self.positive:
            parts.append("> 0")
        if self.low is not None:
            parts.append(f">= {self.low:g}")
        if self.high is not None:
            parts.append(f"<= {self.high:g}")
        if self.odd:
            parts.append("odd")
        return ", ".join(parts) + "".join(f", or {w!r}" for w in self.words)


HARDWARE: tuple[Parameter, ...] = (
    Parameter("aperture_mm", "metasurface side H (mm); sets how many sub-optics fit", "design", "aperture_mm", "float",
              positive=True, high=100.0),
    Parameter("suboptic_mm", "sub-optic side k (mm)", "design", "suboptic_mm", "float", positive=True, high=20.0),
    Parameter("spacing_mm", "fabrication gap between sub-optics (mm)", "design", "spacing_mm", "float", low=0.0,
              high=10.0),
    Parameter("mask_res", "design samples per sub-optic side (cost knob of the physical simulation)", "design",
              "mask_res", "int", low=2, high=16384),
    Parameter("wavelengths", "wavelength set of the camera", "design", "wavelengths", "str",
              options=tuple(WAVELENGTH_SETS_NM)),
    Parameter("kernel_size", "kernel side in kernel pixels", "design", "kernel_size", "int", low=1, high=63, odd=True),
    Parameter("n_kernels", "signed kernels used; without aperture_mm the aperture is the smallest that holds them, "
              "with it, at most what its layout holds (omit both: the preset's aperture, all it holds)", "design",
              "n_kernels", "int", low=1, high=4096),
    Parameter("oversampling", "mask_res as a multiple (>= 1) of the smallest that neither aliases nor blurs the "
              "kernel pixel (onn.optics.validity.min_mask_res); instead of mask_res", "derived", "oversampling",
              "float", low=1.0, high=16.0),
    Parameter("pool", "digital average pooling after the nonlinearity", "design", "pool", "int", low=1, high=64),
    Parameter("backend_depth", "hidden FC layers of the digital backend", "backend", "depth", "int", low=0, high=8),
    Parameter("backend_width", "width of the first hidden layer; each further layer halves it", "backend", "width",
              "int", low=1, high=65536),
    Parameter("distance_mm", "metasurface to sensor (mm)", "design", "distance_mm", "float", positive=True,
              high=1000.0),
    Parameter("kernel_pixel_um", "kernel pixel on the sensor (µm)", "design", "kernel_pixel_um", "float",
              positive=True, high=1000.0),
    Parameter("haze", "stray light in the kernel-level model (training, estimate, kernel-level fabrication): the "
              "light outside each kernel window as a ratio to the light in it, spread evenly over the sub-image; "
              "'fitted': what the full-frame model measures at the design's geometry (onn.optics.frame.fitted_haze)",
              "design", "haze", "float", low=0.0, high=100.0, words=("fitted",)),
    Parameter("read_noise_fs", "sensor read noise, fraction of full scale", "sensor", "read_noise_fs", "float",
              low=0.0, high=1.0),
    Parameter("full_well_e", "sensor full well (electrons)", "sensor", "full_well_e", "float", positive=True),
    Parameter("bits", "ADC bits", "sensor", "bits", "int", low=1, high=24),
)

# TrainConfig fields a sweep may set per trial (`train.<field>`); the seed is the sweep's, the method
# is NTKD, logging is not a design choice.
_NOT_SWEPT = {"seed", "log_every_s", "method"}


def _train_parameters() -> tuple[Parameter, ...]:
    hints = get_type_hints(TrainConfig)
    out = []
    for f in dataclasses.fields(TrainConfig):
        if f.name in _NOT_SWEPT:
            continue
        hint = hints[f.name]
        options = get_args(hint) if getattr(hint, "__origin__", None) is Literal else None
        kind = {bool: "bool", int: "int", float: "float"}.get(type(f.default), "str")
        if options is None and f.default is None:  # int | None (e.g. max_steps)
            kind = "int"
        out.append(Parameter(f"train.{f.name}", f"onn.train.TrainConfig.{f.name}", "train", f.name, kind,
                             options=options))
    return tuple(out)


TRAINING: tuple[Parameter, ...] = _train_parameters()
PARAMETERS: dict[str, Parameter] = {p.name: p for p in (*HARDWARE, *TRAINING)}
HARDWARE_NAMES = tuple(p.name for p in HARDWARE)


def value_problems(fixed: dict[str, Any], space: dict[str, Any]) -> list[tuple[str, str]]:
    """(key path, what is wrong) for every ``fixed`` value and every ``space`` entry outside its
    parameter's domain, found before anything runs: a range must lie inside the domain at both
    ends (and be of the parameter's kind), a choice may only offer allowed values."""
    from explore.space import Choice, FloatRange, IntRange  # domains only; no cycle: space imports nothing

    problems = []
    for name, value in fixed.items():
        parameter = PARAMETERS.get(name)
        if parameter is not None and (problem := _train_problem(parameter, value) or parameter.problem(value)):
            problems.append((f"fixed.{name}", f"{problem} ({name}: {parameter.doc}; allowed: {parameter.allowed()})"))
    for name, domain in space.items():
        parameter = PARAMETERS.get(name)
        if parameter is None:
            continue
        where = f"space.{name}"
        allowed = f"({name}: {parameter.doc}; allowed: {parameter.allowed()})"
        match domain:
            case Choice(values=values):
                for i, value in enumerate(values):
                    if problem := _train_problem(parameter, value) or parameter.problem(value):
                        problems.append((f"{where}.values.{i}", f"{problem} {allowed}"))
            case FloatRange() | IntRange():
                if parameter.kind in ("str", "bool") or parameter.options is not None:
                    problems.append((f"{where}.type", f"{name} takes {parameter.allowed()}, not a numeric range; "
                                                      f"use {{type: choice, values: [...]}}"))
                    continue
                if parameter.kind == "int" and isinstance(domain, FloatRange):
                    problems.append((f"{where}.type", f"{name} is a whole number; use {{type: int, low: "
                                                      f"{int(domain.low)}, high: {int(domain.high)}}}"))
                    continue
                for end in ("low", "high"):
                    value = getattr(domain, end)
                    if problem := _train_problem(parameter, value) or parameter.problem(value):
                        problems.append((f"{where}.{end}", f"{problem} {allowed}"))
                if parameter.odd and isinstance(domain, IntRange) and (domain.low % 2 == 0 or domain.step % 2):
                    problems.append((where, f"{name} takes odd values only; use an odd low and step: 2 "
                                            f"(found low={domain.low}, step={domain.step})"))
    return problems


def _train_problem(parameter: Parameter, value: Any) -> str | None:
    """A training knob's own check: `TrainConfig` built with the value, its error if it refuses."""
    if parameter.target != "train" or parameter.problem(value):
        return None
    try:
        TrainConfig(**{parameter.field: parameter.cast(value)})
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


def markdown_table() -> str:
    """The README's parameter table, derived from `PARAMETERS` (a test keeps the README in sync)."""
    lines = ["| parameter | what it is | values |", "|---|---|---|"]
    lines += [f"| `{p.name}` | {p.doc} | {p.allowed()} |" for p in HARDWARE]
    lines.append("| `train.<field>` | a field of `onn.train.TrainConfig` (e.g. `train.lr`, `train.ntk_beta`) | its type |")
    return "\n".join(lines)
