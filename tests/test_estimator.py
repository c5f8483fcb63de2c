"""Pre-training accuracy estimator: the analytic infinite-width NTK against the empirical NTK of
very wide networks, the design estimate's response to the hardware, determinism, bad inputs."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from onn.data import load_dataset
from onn.design import Design
from onn.estimator import clear_ceiling_cache, estimate_accuracy, subsample
from onn.krr import ridge_classify
from onn.ntk import empirical_ntk
from onn.ntk_analytic import HybridArchitecture, hybrid_ntk
from onn.optics.sensor import SensorConfig
from onn.optics.validity import InfeasibleDesign

TINY = Design(aperture_mm=2.0, suboptic_mm=0.3, mask_res=128, n_kernels=4, kernel_size=3, hidden=(16,))
ROOMY = TINY.with_(aperture_mm=3.2)  # holds 32 signed kernels of 0.3 mm


pytestmark = pytest.mark.usefixtures("one_thread")  # many small ops (conftest.one_thread)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


class WideHybrid(nn.Module):
    """conv k x k (no bias) -> ReLU -> avg pool -> [Linear -> ReLU] * len(hidden) -> Linear(1), in the
    NTK parameterisation of `onn.ntk_analytic` (N(0, 1) weights, sqrt(s / fan-in) in the forward)."""

    def __init__(self, channels: int, kernel_size: int, pool: int, hidden: tuple[int, ...], image_size: int,
                 bias_var: float, generator: torch.Generator):
        super().__init__()
        self.kernel_size, self.pool, self.bias_std = kernel_size, pool, bias_var**0.5
        self.conv = nn.Parameter(torch.randn(channels, 1, kernel_size, kernel_size, generator=generator))
        fan_in = channels * (image_size // pool) ** 2
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for width in (*hidden, 1):
            self.weights.append(nn.Parameter(torch.randn(width, fan_in, generator=generator)))
            self.biases.append(nn.Parameter(torch.randn(width, generator=generator)))
            fan_in = width

    def forward(self, x, *, generator=None, noise=True):
        h = F.conv2d(x, self.conv, padding=self.kernel_size // 2) / self.kernel_size  # fan-in k², s = 1
        a = F.avg_pool2d(torch.relu(h), self.pool).flatten(1)  # (B, channels * P)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            a = torch.relu(a) if i else a
            a = (2 / a.shape[1]) ** 0.5 * a @ w.T + self.bias_std * b  # He factor 2 after a ReLU
        return a  # (B, 1)


def relative_error(a, b):
    return float((a - b).norm() / b.norm())


def test_analytic_gram_is_symmetric_psd_and_blocking_invariant(digits):
    x = digits.train.tensors[0][:13]
    gram = hybrid_ntk(HybridArchitecture(3, 4, 2, 0.1), x, block=4)
    assert torch.allclose(gram, gram.T, rtol=1e-6, atol=1e-9)
    assert torch.linalg.eigvalsh(gram).min() > -1e-8 * gram.diagonal().max()
    # one block vs many, symmetric path vs the general one
    assert torch.allclose(gram, hybrid_ntk(HybridArchitecture(3, 4, 2, 0.1), x, x, block=64), rtol=1e-5)


@pytest.mark.parametrize("hidden, channels, pool, seeds", [((), 4000, 4, 1), ((2048,), 1024, 8, 3)])
def test_analytic_ntk_matches_empirical_ntk_of_a_wide_network(digits, hidden, channels, pool, seeds):
    x = digits.train.tensors[0][:5]
    analytic = hybrid_ntk(HybridArchitecture(3, pool, len(hidden), 0.1), x)
    # Finite-width NTKs scatter around the limit as ~1/sqrt(width); average a few seeds where
    # the hidden layer must stay small enough for an exact Jacobian.
    empirical = sum(empirical_ntk(WideHybrid(channels, 3, pool, hidden, 16, 0.1, torch.Generator().manual_seed(s)),
                                  x, mode="exact").detach().double() for s in range(seeds)) / seeds
    assert relative_error(empirical, analytic) < 0.10
    # and it is not trivially close: a different depth is far off
    other = hybrid_ntk(HybridArchitecture(3, pool, len(hidden) + 2, 0.1), x)
    assert relative_error(other, analytic) > 0.2


def test_ridge_recovers_a_linearly_separable_task():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0]])
    y = torch.arange(90) % 3
    x = centres[y] + torch.randn(90, 2, generator=g)
    gram = x.double() @ x.double().T + 1
    result = ridge_classify(gram[:60, :60], y[:60], gram[60:75, :60], y[60:75], gram[75:, :60], y[75:], 3)
    assert result.score_accuracy == 1.0 and result.select_accuracy == 1.0


def test_design_estimate_grows_with_kernel_count(digits):
    # pool 8 leaves 4 positions per kernel, so the kernel count is what limits the features (at
    # pool 4, 32 kernels already reach the ceiling on this easy task)
    few, many = (estimate_accuracy(ROOMY.with_(n_kernels=n, pool=8), digits, n_train=600, n_val=300,
                                   n_frontends=4, ceiling=False).design for n in (2, 32))
    assert many > few + 0.1


def test_design_estimate_grows_with_backend_width(digits):
    # a one-unit bottleneck starves the backend's empirical NTK (seeds 0/1: 0.21/0.60); at width 128
    # it is close to the infinite-width kernel (0.86/0.88)
    narrow, wide = (estimate_accuracy(TINY.with_(hidden=(w,)), digits, n_train=600, n_val=300, n_frontends=2,
                                      ceiling=False).design for w in (1, 128))
    assert wide > narrow + 0.2


def test_design_estimate_drops_with_sensor_noise(digits):
    quiet, loud = (estimate_accuracy(TINY.with_(sensor=SensorConfig(read_noise_fs=r)), digits, n_train=600,
                                     n_val=300, n_frontends=2, ceiling=False).design for r in (0.005, 0.3))
    assert loud < quiet - 0.1


def test_both_estimates_beat_chance_and_the_ceiling_is_cached(digits):
    clear_ceiling_cache()
    first = estimate_accuracy(TINY, digits, n_train=200, n_val=200, n_frontends=1)
    assert first.ceiling > 0.6 and first.design > 0.6  # chance: 0.1
    assert not first.ceiling_cached and first.seconds_ceiling > 0 and first.lam_ceiling > 0
    # a physically different design with the same architecture shares the ceiling
    second = estimate_accuracy(TINY.with_(n_kernels=8, mask_res=160), digits, n_train=200, n_val=200, n_frontends=1)
    assert second.ceiling_cached and second.ceiling == first.ceiling
    third = estimate_accuracy(TINY.with_(hidden=(16, 16)), digits, n_train=200, n_val=200, n_frontends=1)
    assert not third.ceiling_cached


def test_same_seed_same_estimate(digits):
    def run(seed):
        e = estimate_accuracy(TINY, digits, n_train=200, n_val=200, seed=seed, ceiling=False)
        return e.design, e.lam_design, e.design_std

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_subsample_is_nested_in_n_train(digits):
    small, large = (subsample(digits, n_train=n, n_val=100, seed=1) for n in (100, 300))
    assert torch.equal(small.x_train, large.x_train[:100]) and torch.equal(small.x_score, large.x_score)
    # choosing and scoring use disjoint halves of the validation split; the test split is never drawn
    val = {tuple(x.flatten().tolist()) for x in digits.val.tensors[0]}
    select, score = ({tuple(x.flatten().tolist()) for x in part} for part in (large.x_select, large.x_score))
    assert len(select) == len(score) == 50 and not select & score and select | score <= val


def test_bad_inputs_raise_clear_errors(digits):
    with pytest.raises(ValueError, match=r"n_train=5000 must be between 1 and the size of the train split of 'digits' \(1200"):
        estimate_accuracy(TINY, digits, n_train=5000)
    with pytest.raises(ValueError, match="n_val must be a positive int"):
        estimate_accuracy(TINY, digits, n_train=100, n_val=0)
    with pytest.raises(ValueError, match="n_val=301 must be between 2 and the size of the val split"):
        estimate_accuracy(TINY, digits, n_train=100, n_val=301)
    with pytest.raises(ValueError, match="n_frontends"):
        estimate_accuracy(TINY, digits, n_train=100, n_val=50, n_frontends=0)
    with pytest.raises(InfeasibleDesign, match="wavelengths"):
        estimate_accuracy(TINY.with_(wavelengths=""), digits, n_train=100, n_val=50)
    with pytest.raises(InfeasibleDesign, match="n_kernels"):
        estimate_accuracy(TINY.with_(n_kernels=400), digits, n_train=100, n_val=50)
    with pytest.raises(ValueError, match="'segment' task needs the decoder backend"):
        estimate_accuracy(TINY, dataclasses.replace(digits, task="segment"), n_train=100, n_val=50)
    assert math.isnan(estimate_accuracy(TINY, digits, n_train=50, n_val=50, ceiling=False).ceiling)
    # defaults shrink to a small dataset's splits; explicit sizes do not
    whole = estimate_accuracy(TINY, digits, n_frontends=1, ceiling=False)
    assert whole.n_select + whole.n_score == len(digits.val)
