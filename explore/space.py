"""Search-space domains of a sweep file, and the one place each domain type is converted.

A ``space`` entry is ``{type: float, low, high, log}``, ``{type: int, low, high, step, log}`` or
``{type: choice, values: [...]}``. Each domain knows its Optuna distribution (what the sampler
draws from), its Parquet dtype (the ``param.<name>`` column) and its chart scale; nothing else in
the application converts a domain.
"""

from __future__ import annotations

import math
import random
from typing import Annotated, Any, Literal, Union

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FloatRange(Strict):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self):
        _check_range(self.low, self.high, self.log)
        return self

    def distribution(self):
        import optuna

        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log)

    @property
    def dtype(self) -> pl.DataType:
        return pl.Float64

    @property
    def bounds(self) -> tuple[float, float]:
        return self.low, self.high

    @property
    def scale(self) -> str:
        return "log" if self.log else "linear"

    def sample(self, rng: random.Random) -> float:
        if self.log:
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.uniform(self.low, self.high)

    def grid(self, n: int = 5) -> list[float]:
        """``n`` evenly spaced values (geometrically for a log range), ends included."""
        if self.log:
            ratio = (self.high / self.low) ** (1 / (n - 1))
            return [self.low * ratio**i for i in range(n)]
        return [self.low + (self.high - self.low) * i / (n - 1) for i in range(n)]


class IntRange(Strict):
    type: Literal["int"]
    low: int
    high: int
    step: int = Field(1, ge=1)
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self):
        _check_range(self.low, self.high, self.log)
        if self.log and self.step != 1:
            raise ValueError(f"an int range cannot have both `log: true` and `step: {self.step}` (Optuna samples a "
                             f"log range on every integer); drop one of them")
        if (self.high - self.low) % self.step:
            raise ValueError(f"`high - low` must be a multiple of `step`, but got low={self.low}, high={self.high}, "
                             f"step={self.step}; use high={self.low + (self.high - self.low) // self.step * self.step}")
        return self

    def distribution(self):
        import optuna

        return optuna.distributions.IntDistribution(self.low, self.high, log=self.log, step=self.step)

    @property
    def dtype(self) -> pl.DataType:
        return pl.Int64

    @property
    def bounds(self) -> tuple[int, int]:
        return self.low, self.high

    @property
    def scale(self) -> str:
        return "log" if self.log else "linear"

    def sample(self, rng: random.Random) -> int:
        if self.log:
            return int(round(math.exp(rng.uniform(math.log(self.low), math.log(self.high)))))
        return rng.choice(range(self.low, self.high + 1, self.step))

    def grid(self, n: int | None = None) -> list[int]:
        return list(range(self.low, self.high + 1, self.step))


class Choice(Strict):
    type: Literal["choice"]
    values: list[Union[bool, int, float, str]] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self):
        if len({(type(v), v) for v in self.values}) != len(self.values):
            raise ValueError(f"`values` repeat an entry: {self.values}")
        return self

    def distribution(self):
        import optuna

        return optuna.distributions.CategoricalDistribution(self.values)

    @property
    def dtype(self) -> pl.DataType:
        return value_dtype(self.values)

    @property
    def bounds(self) -> tuple[Any, Any] | None:
        numbers = [v for v in self.values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return (min(numbers), max(numbers)) if len(numbers) == len(self.values) else None

    @property
    def scale(self) -> str:
        return "ordinal" if self.bounds is not None else "nominal"

    def sample(self, rng: random.Random) -> Any:
        return rng.choice(self.values)

    def grid(self, n: int | None = None) -> list[Any]:
        return list(self.values)


Domain = Annotated[Union[FloatRange, IntRange, Choice], Field(discriminator="type")]
DOMAIN_TAGS = {"float": FloatRange, "int": IntRange, "choice": Choice}


def value_dtype(values: list[Any]) -> pl.DataType:
    """The Parquet dtype of a column holding these (fixed or chosen) values."""
    kinds = {type(v) for v in values}
    if kinds <= {bool}:
        return pl.Boolean
    if kinds <= {int}:
        return pl.Int64
    if kinds <= {int, float}:
        return pl.Float64
    return pl.String


def _check_range(low: float, high: float, log: bool) -> None:
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise ValueError(f"`low < high` must hold, but got low={low}, high={high}")
    if log and low <= 0:
        raise ValueError(f"a log range needs low > 0, got low={low}")
