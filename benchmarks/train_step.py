"""Time one training step (forward + backward + update) of a preset, per method.

    python benchmarks/train_step.py --system poly --methods none kd ntkd

Prints the median step time of each method and its ratio to the plain step, in one process.
Used for before/after comparisons: run it on two checkouts (e.g. a `git worktree` of the older
commit with PYTHONPATH pointing at it) in the same session.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from explore.systems import build_student, load_system
from onn.train import TrainConfig, _loss_terms


def step_seconds(system: str, method: str, repeats: int, batch: int) -> float:
    spec, data, teacher = load_system(system)
    model = build_student(spec.design, data, seed=0)
    x, y = data.train.tensors[0][:batch], data.train.tensors[1][:batch]
    names = [n for n, _ in model.named_parameters()]
    optimiser = torch.optim.AdamW(model.parameters(), 1e-3)
    generator = torch.Generator().manual_seed(0)
    config = TrainConfig(method=method)
    times = []
    for _ in range(repeats + 1):  # the first step warms up allocators and oneDNN kernels
        start = time.perf_counter()
        terms = _loss_terms(model, teacher, x, y, data.task, config, generator, generator, names)
        loss = sum(weight * value for weight, value in terms.values())
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--system", default="mono")
    parser.add_argument("--methods", nargs="+", default=["none", "kd", "ntkd"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    malloc = "on" if os.environ.get("MALLOC_MMAP_THRESHOLD_") else "off"
    print(f"{args.system}, batch {args.batch}, {args.threads} thread(s), malloc env {malloc}")
    base = None
    for method in args.methods:
        seconds = step_seconds(args.system, method, args.repeats, args.batch)
        base = base or seconds
        print(f"  {method:>5}: {seconds * 1e3:8.1f} ms/step  ({seconds / base:.2f}x the {args.methods[0]} step)")


if __name__ == "__main__":
    main()
