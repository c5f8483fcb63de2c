"""How much of a sweep's space can be built and simulated at all, found before anything runs.

`feasibility` draws designs from the space (its corners first, then seeded random points) and puts
each through the design's own validity checks (`onn.design.Design.check`: layout, aliasing, band
limit, footprint, memory). No training, no Ray: a few milliseconds per design. ``--dry-run`` prints
the result; a sweep whose every sampled design is infeasible is refused before Ray starts.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from dataclasses import dataclass

from explore.point import base_design, design_point
from explore.space import Choice
from explore.spec import SweepSpec
from onn.data import load_dataset
from onn.optics.validity import InfeasibleDesign

MAX_CORNERS = 64  # corners of the numeric ranges tried before random points (2^6)


@dataclass(frozen=True)
class Feasibility:
    samples: int
    infeasible: int
    reasons: tuple[tuple[str, int], ...]  # (quantity to change, designs it ruled out), most first
    examples: tuple[tuple[str, str], ...]  # (quantity, one message saying what to change)

    @property
    def fraction(self) -> float:
        return self.infeasible / self.samples if self.samples else 0.0

    def summary(self) -> str:
        if not self.infeasible:
            return f"feasibility: all {self.samples} sampled designs can be built and simulated"
        parts = [f"{quantity} {count / self.samples:.0%}" for quantity, count in self.reasons]
        lines = [f"feasibility: {self.fraction:.0%} of {self.samples} sampled designs are infeasible "
                 f"(by the quantity to change: {', '.join(parts)})"]
        lines += [f"  e.g. {quantity}: {message}" for quantity, message in self.examples]
        return "\n".join(lines)


def sample_params(spec: SweepSpec, n: int, seed: int = 0) -> list[dict]:
    """The space's corners (numeric ranges at low/high, choices at every value; at most
    `MAX_CORNERS`), then seeded random points, ``n`` in all; each with the fixed parameters."""
    rng = random.Random(seed)
    ends = {name: (d.values if isinstance(d, Choice) else (d.low, d.high)) for name, d in spec.space.items()}
    corners = itertools.islice(itertools.product(*ends.values()), MAX_CORNERS)
    points = [dict(zip(ends, values)) for values in corners][:n]
    while len(points) < n:
        points.append({name: domain.sample(rng) for name, domain in spec.space.items()})
    return [{**spec.fixed, **point} for point in points]


def feasibility(spec: SweepSpec, n: int = 256, seed: int = 0) -> Feasibility:
    """Sample ``n`` designs of the sweep and check each; raises `onn.data.DatasetError` if the
    sweep's dataset cannot be loaded."""
    data = load_dataset(spec.task.dataset, spec.task.root)
    base = base_design(data.channels, data.task)
    reasons: Counter[str] = Counter()
    examples: dict[str, str] = {}
    points = sample_params(spec, n, seed)
    for params in points:
        try:
            design_point(params, base=base, training=spec.training, seed=spec.seed).design.check(data.image_size)
        except InfeasibleDesign as exc:
            reasons[exc.quantity] += 1
            examples.setdefault(exc.quantity, exc.reason)
    ranked = reasons.most_common()
    return Feasibility(len(points), sum(reasons.values()), tuple(ranked),
                       tuple((quantity, examples[quantity]) for quantity, _ in ranked[:3]))
