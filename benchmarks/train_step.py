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


def step_seconds(system: str, methods: list[str], repeats: int, batch: int) -> dict[str, float]:
    """Median step time per method; methods take turns (round-robin) so that each ratio is
    measured under the same background load."""
    spec, data, teacher = load_system(system)
    x, y = data.train.tensors[0][:batch], data.train.tensors[1][:batch]
    runs = {}
    for method in methods:
        model = build_student(spec.design, data, seed=0)
        runs[method] = (model, [n for n, _ in model.named_parameters()],
                        torch.optim.AdamW(model.parameters(), 1e-3), TrainConfig(method=method))
    generator = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(repeats + 1):  # the first round warms up allocators and oneDNN kernels
        for method, (model, names, optimiser, config) in runs.items():
            start = time.perf_counter()
            terms = _loss_terms(model, teacher, x, y, data.task, config, generator, generator, names)
            loss = sum(weight * value for weight, value in terms.values())
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            times[method].append(time.perf_counter() - start)
    return {m: statistics.median(t[1:]) for m, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--system", default="mono")
    parser.add_argument("--methods", nargs="+", default=["task", "kd", "ntkd"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    malloc = "on" if os.environ.get("MALLOC_MMAP_THRESHOLD_") else "off"
    print(f"{args.system}, batch {args.batch}, {args.threads} thread(s), malloc env {malloc}")
    medians = step_seconds(args.system, args.methods, args.repeats, args.batch)
    base = medians[args.methods[0]]
    for method, seconds in medians.items():
        print(f"  {method:>5}: {seconds * 1e3:8.1f} ms/step  ({seconds / base:.2f}x the {args.methods[0]} step)")


if __name__ == "__main__":
    main()
