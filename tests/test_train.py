"""The one training function: methods, clear failures, reproducibility."""

import pytest
import torch
from torch.utils.data import TensorDataset

from onn.data import load_dataset
from onn.design import Design
from onn.models import build_hybrid
from onn.optics.validity import InfeasibleDesign
from onn.teachers import get_teacher
from onn.train import NonFiniteLoss, TrainConfig, fit

TINY = Design(aperture_mm=2.0, suboptic_mm=0.3, mask_res=128, n_kernels=4, kernel_size=3, hidden=(16,))


def tiny_student(seed=0):
    return build_hybrid(TINY, in_channels=1, image_size=16, n_outputs=10, seed=seed)


@pytest.mark.parametrize("method", ["task", "kd", "ntkd"])
def test_every_method_trains_and_beats_chance(method):
    data = load_dataset("digits")
    teacher, _ = get_teacher("digits", log=None, epochs=2)
    config = TrainConfig(method=method, epochs=3, batch_size=64, lr=5e-3, ntk_subbatch=8, log_every_s=1e9)
    result = fit(tiny_student(), data.train, task="classify", config=config, teacher=teacher,
                 evaluate_on={"val": data.val, "test": data.test}, log=None)
    assert result.test_metric > 0.2  # chance is 0.1 (a 2-epoch teacher is weak: NTKD here is not better)
    assert result.steps == 3 * 19 and result.macs > 0 and result.n_trainable == result.n_params
    assert {name for name, _ in result.loss_terms} == {"task": {"task"}, "kd": {"kd"}, "ntkd": {"task", "ntk"}}[method]


def test_same_seed_same_model():
    data = load_dataset("digits")
    config = TrainConfig(method="task", max_steps=5, batch_size=32, log_every_s=1e9)
    a, b = tiny_student(), tiny_student()
    fit(a, data.train, task="classify", config=config, log=None)
    fit(b, data.train, task="classify", config=config, log=None)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_nan_loss_stops_with_the_step_and_the_term():
    data = load_dataset("digits")
    images, labels = data.train.tensors
    poisoned = images.clone()
    poisoned[:] = float("nan")  # every batch is non-finite from the first step
    with pytest.raises(NonFiniteLoss, match=r"'task' is nan at step 1/"):
        fit(tiny_student(), TensorDataset(poisoned, labels), task="classify",
            config=TrainConfig(method="task", max_steps=3, batch_size=32), log=None)


def test_a_preset_with_more_kernels_than_the_layout_holds_is_refused():
    with pytest.raises(InfeasibleDesign) as info:
        build_hybrid(Design(aperture_mm=1.0, suboptic_mm=0.4, n_kernels=8), in_channels=1, image_size=28, n_outputs=10)
    assert info.value.quantity == "n_kernels" and "aperture_mm >=" in str(info.value)


def test_kd_and_ntkd_need_a_teacher():
    data = load_dataset("digits")
    with pytest.raises(ValueError, match="needs a teacher"):
        fit(tiny_student(), data.train, task="classify", config=TrainConfig(method="ntkd"), log=None)


def test_methods_share_batches_and_noise_so_ntkd_at_zero_beta_is_plain_training():
    """Only the loss differs between methods: NTK probes draw from their own stream."""
    data = load_dataset("digits")
    teacher, _ = get_teacher("digits", log=None, epochs=2)
    plain, ntkd = tiny_student(), tiny_student()
    common = dict(max_steps=4, batch_size=32, ntk_subbatch=8, log_every_s=1e9)
    fit(plain, data.train, task="classify", config=TrainConfig(method="task", **common), log=None)
    fit(ntkd, data.train, task="classify", config=TrainConfig(method="ntkd", ntk_beta=0.0, **common),
        teacher=teacher, log=None)
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(plain.parameters(), ntkd.parameters()))
