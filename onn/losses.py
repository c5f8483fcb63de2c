"""Training losses (SPEC §2): task, Hinton KD and the NTK alignment term of NTKD."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Normalise = Literal["trace", "frobenius", "none"]


def task_loss(output: torch.Tensor, target: torch.Tensor, task: str) -> torch.Tensor:
    """Cross-entropy for classification; per-pixel BCE + soft Dice for segmentation."""
    if task == "classify":
        return F.cross_entropy(output, target)
    bce = F.binary_cross_entropy_with_logits(output, target)
    prob = torch.sigmoid(output)
    dice = 1 - (2 * (prob * target).sum((1, 2, 3)) + 1) / (prob.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)
    return bce + dice.mean()


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor, task: str, *,
            temperature: float = 4.0, alpha: float = 0.5) -> torch.Tensor:
    """Hinton et al. (2015): ``α T² KL(p_t^T || p_s^T) + (1 - α) task``.

    For segmentation each pixel is a Bernoulli distribution (soft masks)."""
    t = temperature
    if task == "classify":
        kl = F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1), log_target=True,
                      reduction="batchmean")
    else:
        p_t = torch.sigmoid(teacher / t)
        log_s, log_s_neg = F.logsigmoid(student / t), F.logsigmoid(-student / t)
        log_t, log_t_neg = F.logsigmoid(teacher / t), F.logsigmoid(-teacher / t)
        kl = (p_t * (log_t - log_s) + (1 - p_t) * (log_t_neg - log_s_neg)).mean()
    return alpha * t * t * kl + (1 - alpha) * task_loss(student, target, task)


def centre_gram(gram: torch.Tensor) -> torch.Tensor:
    """``H Θ H`` with ``H = I − 11ᵀ/n`` (as in centred kernel alignment, Cortes et al. 2012): the
    Gram of the per-sample gradients minus their batch mean. A constant added to every entry (the
    level every pair of samples shares, not class structure) leaves it unchanged."""
    return gram - gram.mean(0, keepdim=True) - gram.mean(1, keepdim=True) + gram.mean()


def normalise_gram(gram: torch.Tensor, how: Normalise) -> torch.Tensor:
    """Put Grams of very different scale on one footing. ``trace``: divide by the mean diagonal
    (entries O(1)); ``frobenius``: unit Frobenius norm times B (entries O(1)); ``none``: literal."""
    b = gram.shape[0]
    if how == "trace":
        return gram / (gram.diagonal().mean().abs() + 1e-12)
    if how == "frobenius":
        return gram * (b / (gram.norm() + 1e-12))
    if how == "none":
        return gram
    raise ValueError(f"unknown normalisation {how!r}; use 'trace', 'frobenius' or 'none'")


def ntk_loss(student_gram: torch.Tensor, teacher_gram: torch.Tensor, normalise: Normalise = "trace",
             centre: bool = False) -> torch.Tensor:
    """``L_NTK = mean_ij (Θ̂ᵀ_ij - Θ̂ˢ_ij)²`` after centring (optional) and normalising each Gram.

    Centred and Frobenius-normalised, the loss is ``2 (1 − CKA)`` of the two Grams (centred kernel
    alignment): zero for Grams equal up to scale and a constant, insensitive to the shared level
    that dominates the uncentred loss at initialisation."""
    prepare = (lambda g: normalise_gram(centre_gram(g), normalise)) if centre else (lambda g: normalise_gram(g, normalise))
    return (prepare(teacher_gram.detach()) - prepare(student_gram)).square().mean()
