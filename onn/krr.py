"""Kernel ridge regression classifier with the ridge chosen on one held-out set and scored on
another (SPEC §3; in the estimator both are disjoint subsamples of the validation split).

    Ŷ = Θ(X, X_train) (Θ(X_train, X_train) + λI)⁻¹ Y,   Y one-hot (n, classes)

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
    score_accuracy: float  # in [0, 1], on the scoring set
    select_accuracy: float  # on the set λ was chosen on
    ridge: float  # the chosen λ, relative to the mean diagonal of the train Gram


def ridge_classify(k_train: torch.Tensor, y_train: torch.Tensor, k_select: torch.Tensor, y_select: torch.Tensor,
                   k_score: torch.Tensor, y_score: torch.Tensor, n_classes: int,
                   grid: tuple[float, ...] = RIDGE_GRID) -> RidgeResult:
    """Fit on (k_train (n, n), y_train (n,)), pick λ on (k_select (v, n), y_select), report the
    accuracy on (k_score (t, n), y_score). Labels are int64 class indices in [0, n_classes).
    """
    if not grid or min(grid) <= 0:
        raise ValueError(f"the ridge grid must hold positive values, got {grid}")
    k_train = k_train.double()
    k_train = (k_train + k_train.T) / 2  # exact symmetry for eigh
    evals, evecs = torch.linalg.eigh(k_train)  # (n,), (n, n)
    targets = torch.nn.functional.one_hot(y_train, n_classes).to(k_train)  # (n, classes)
    projected = evecs.T @ targets  # (n, classes)
    scale = float(k_train.diagonal().mean())
    k_select, k_score = k_select.to(k_train), k_score.to(k_train)
    best: tuple[float, float] | None = None  # (selection accuracy, λ)
    for ridge in sorted(grid):
        alpha = evecs @ (projected / (evals + ridge * scale)[:, None])  # (n, classes)
        accuracy = float(((k_select @ alpha).argmax(1) == y_select.to(k_select.device)).double().mean())
        if best is None or accuracy >= best[0]:
            best = (accuracy, ridge)
    select_accuracy, ridge = best
    alpha = evecs @ (projected / (evals + ridge * scale)[:, None])
    score_accuracy = float(((k_score @ alpha).argmax(1) == y_score.to(k_score.device)).double().mean())
    return RidgeResult(score_accuracy, select_accuracy, ridge)
