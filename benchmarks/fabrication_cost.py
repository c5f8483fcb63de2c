"""Cost of the fabrication check and of compensation, as ratios to training the same design (SPEC §4).

    python benchmarks/fabrication_cost.py --systems mono --epochs 2 --draws 3
    python benchmarks/fabrication_cost.py --systems poly --epochs 4 --draws 3

For each system (`explore.systems.SYSTEMS`), in one process and one after the other on the same
design: an NTKD training run of ``--epochs`` epochs, a robustness check of ``--draws`` kernel-level
fabrication draws at the SPEC §4 default errors (scored on the full test split), and a
compensation of one draw with the task loss and with NTKD (backend only, ``--comp-epochs`` passes
over 10 % of the training split, scored on the test split before and after). Prints each cost as a
ratio to the training run, plus the per-epoch training time so that the ratio can be rescaled to
another training budget. The sweep's defaults (`sweeps/mono.yaml`: 2 epochs, 3 draws) are the
defaults here.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import environment_line  # noqa: E402

from explore.runtime import ensure_malloc_env  # noqa: E402
from explore.systems import SYSTEMS, build_student, load_system  # noqa: E402
from onn.fabrication import default_kernel_errors  # noqa: E402
from onn.robustness import monte_carlo  # noqa: E402
from onn.train import TrainConfig, evaluate, fit, headline  # noqa: E402


def measure(name: str, epochs: float, draws: int, comp_epochs: float, seed: int) -> dict[str, float]:
    system, data, teacher = load_system(name)
    model = build_student(system.design, data, seed=seed)
    trained = fit(model, data.train, task=data.task, config=TrainConfig(method="ntkd", epochs=epochs, seed=seed),
                  teacher=teacher, log=None)
    errors = default_kernel_errors(system.design.colours)
    check = monte_carlo(model, errors, draws=draws, seed=seed, task=data.task, score_on={"test": data.test},
                        compensations=("task", "ntkd"), train=data.train, teacher=teacher,
                        config=TrainConfig(epochs=comp_epochs, seed=seed))
    costs = {"train": trained.seconds, f"robustness ({draws} draws)": check.seconds_made}
    for method, label in (("task", "compensation, task loss"), ("ntkd", "compensation, NTKD")):
        costs[label] = statistics.fmean(d.fine_tuned[method].seconds for d in check.draws)  # one draw's
    ideal = headline(evaluate(model, data.test, data.task))
    print(f"\n{name} ({system.dataset}, {system.design.kernels()} kernels, {system.design.wavelengths}): "
          f"NTKD training {epochs:g} epochs = {trained.seconds:.1f} s ({trained.seconds / epochs:.1f} s/epoch); "
          f"ideal {100 * ideal:.2f} %, fabricated {100 * check.made('test').mean:.2f} %")
    print("| stage | seconds | ratio to training |\n|---|---|---|")
    for label, seconds in costs.items():
        print(f"| {label} | {seconds:.1f} | {seconds / trained.seconds:.3f} |")
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", nargs="+", default=["mono"], choices=sorted(SYSTEMS))
    parser.add_argument("--epochs", type=float, default=2.0, help="NTKD training epochs (default 2, as mono.yaml)")
    parser.add_argument("--draws", type=int, default=3, help="fabrication draws in the robustness check")
    parser.add_argument("--comp-epochs", type=float, default=TrainConfig.epochs,
                        help="compensation passes over the 10 %% subset (default: TrainConfig's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ensure_malloc_env()
    torch.set_num_threads(args.threads)
    print(environment_line())
    for name in args.systems:
        measure(name, args.epochs, args.draws, args.comp_epochs, args.seed)


if __name__ == "__main__":
    main()
