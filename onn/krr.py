"""Kernel ridge regression classifier with the ridge chosen on a validation split (SPEC §3).

    Ŷ = Θ(X_test, X_train) (Θ(X_train, X_train) + λI)⁻¹ Y,   Y one-hot (n, classes)

λ is searched on a grid relative to the mean diagonal of the train Gram (so that the grid means the
same for kernels of any scale); one eigendecomposition serves the whole grid. Ties in validation
accuracy go to the largest λ (the smoothest fit). Everything in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# λ / mean(diag Θ_train); the noiseless infinite-width kernels want the small end, noisy finite
# random features the large one.
RIDGE_GRID: tuple[float, ...] = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


@dataclass(frozen=True)
class RidgeResult:
    test_accuracy: float  # in [0, 1]
    val_accuracy: float
    ridge: float  # the chosen λ, relative to the mean diagonal of the train Gram


def ridge_classify(k_train: torch.Tensor, y_train: torch.Tensor, k_val: torch.Tensor, y_val: torch.Tensor,
                   k_test: torch.Tensor, y_test: torch.Tensor, n_classes: int,
                   grid: tuple[float, ...] = RIDGE_GRID) -> RidgeResult:
    """Fit on (k_train (n, n), y_train (n,)), pick λ on (k_val (v, n), y_val), score (k_test (t, n), y_test).

    Labels are int64 class indices in [0, n_classes).
    """
    if not grid or min(grid) <= 0:
        raise ValueError(f"the ridge grid must hold positive values, got {grid}")
    k_train = k_train.double()
    k_train = (k_train + k_train.T) / 2  # exact symmetry for eigh
    evals, evecs = torch.linalg.eigh(k_train)  # (n,), (n, n)
    targets = torch.nn.functional.one_hot(y_train, n_classes).to(k_train)  # (n, classes)
    projected = evecs.T @ targets  # (n, classes)
    scale = float(k_train.diagonal().mean())
    k_val, k_test = k_val.to(k_train), k_test.to(k_train)
    best: tuple[float, float] | None = None  # (val accuracy, λ)
    for ridge in sorted(grid):
        alpha = evecs @ (projected / (evals + ridge * scale)[:, None])  # (n, classes)
        accuracy = float(((k_val @ alpha).argmax(1) == y_val.to(k_val.device)).double().mean())
        if best is None or accuracy >= best[0]:
            best = (accuracy, ridge)
    val_accuracy, ridge = best
    alpha = evecs @ (projected / (evals + ridge * scale)[:, None])
    test_accuracy = float(((k_test @ alpha).argmax(1) == y_test.to(k_test.device)).double().mean())
    return RidgeResult(test_accuracy, val_accuracy, ridge)
