"""Empirical NTK: the exact Gram against an explicit J·Jᵀ, the estimates against the exact one."""

import dataclasses

import pytest
import torch
from torch import nn

from onn.design import Design
from onn.losses import ntk_loss
from onn.models import HybridONN, build_hybrid
from onn.ntk import empirical_ntk, last_layer_names, mlp_ntk, per_sample_probe_ntk


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.Tanh(), nn.Linear(7, 3))

    def forward(self, x, *, generator=None, noise=True):
        return self.body(x)


def explicit_gram(model, x):
    params = list(model.parameters())
    rows = []
    for i in range(x.shape[0]):
        out = model(x[i:i + 1])[0]
        per_output = []
        for o in range(out.numel()):
            grads = torch.autograd.grad(out[o], params, retain_graph=True)
            per_output.append(torch.cat([g.flatten() for g in grads]))
        rows.append(torch.stack(per_output))  # (O, P)
    jac = torch.stack(rows)  # (B, O, P)
    return torch.einsum("bop,cop->bc", jac, jac)


def test_exact_gram_equals_explicit_jacobian_product(generator):
    model, x = Tiny(), torch.randn(5, 3, 4, generator=generator)
    assert torch.allclose(empirical_ntk(model, x, mode="exact"), explicit_gram(model, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("hidden", [(), (7,), (9, 5)])
def test_dense_stack_ntk_equals_explicit_jacobian_product(hidden, generator):
    torch.manual_seed(1)
    widths = (12, *hidden, 3)
    linears = [nn.Linear(a, b, bias=i != 1) for i, (a, b) in enumerate(zip(widths, widths[1:]))]
    body = nn.Sequential(*[m for layer in linears for m in (layer, nn.ReLU())][:-1])
    model = Tiny()
    model.body = nn.Sequential(nn.Flatten(), body)
    x, y = torch.randn(5, 12, generator=generator), torch.randn(4, 12, generator=generator)
    assert torch.allclose(mlp_ntk(linears, x), explicit_gram(model, x), rtol=1e-4, atol=1e-5)
    both = explicit_gram(model, torch.cat([x, y]))
    assert torch.allclose(mlp_ntk(linears, y, x), both[5:, :5], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["exact", "probe", "last_layer"])
def test_gram_is_symmetric_positive_semidefinite(mode, generator):
    gram = empirical_ntk(Tiny(), torch.randn(6, 3, 4, generator=generator), mode=mode, probes=3, generator=generator)
    assert torch.allclose(gram, gram.T, atol=1e-5)
    assert torch.linalg.eigvalsh(gram.double()).min() > -1e-4 * gram.abs().max()


def test_probe_estimate_converges_like_one_over_sqrt_probes(generator):
    model, x = Tiny(), torch.randn(8, 3, 4, generator=generator)
    exact = empirical_ntk(model, x, mode="exact")

    def error(probes):
        errs = [float((empirical_ntk(model, x, mode="probe", probes=probes,
                                     generator=torch.Generator().manual_seed(s)) - exact).norm() / exact.norm())
                for s in range(12)]
        return sum(errs) / len(errs)

    few, many = error(2), error(32)
    assert many < few / 2.5  # 1/sqrt(16) = 1/4 expected; allow slack for 12 repeats
    assert many < 0.15


def test_last_layer_gram_uses_only_the_last_layer(generator):
    model, x = Tiny(), torch.randn(4, 3, 4, generator=generator)
    assert last_layer_names(model) == ["body.3.weight", "body.3.bias"]
    features = model.body[:3](x)
    expected = 3 * (features @ features.T + 1)  # Σ_o over 3 outputs of <e_o ⊗ a_i, e_o ⊗ a_j> (+ bias)
    assert torch.allclose(empirical_ntk(model, x, mode="last_layer"), expected, rtol=1e-4, atol=1e-5)


def test_ntkd_loss_is_zero_when_student_is_teacher(generator):
    model, x = Tiny(), torch.randn(6, 3, 4, generator=generator)
    gram = empirical_ntk(model, x, mode="exact")
    assert float(ntk_loss(gram, gram.clone())) == 0.0


@pytest.mark.parametrize("mode", ["exact", "probe"])
def test_ntkd_gradients_reach_the_optical_kernels(mode, generator):
    design = Design(aperture_mm=2.0, suboptic_mm=0.3, mask_res=128, n_kernels=2, kernel_size=3, hidden=(8,))
    student = build_hybrid(design, in_channels=1, image_size=16, n_outputs=4)
    x = torch.rand(4, 1, 16, 16, generator=generator)
    names = [n for n, _ in student.named_parameters()]
    target = torch.eye(4) + 0.5
    loss = ntk_loss(empirical_ntk(student, x, mode=mode, names=names, probes=2, generator=generator), target)
    loss.backward()
    assert student.optics[0].weight.grad is not None and student.optics[0].weight.grad.abs().sum() > 0


def _models():
    """One of each kind of model the NTKD loss sees: an MLP, CNN teachers (conv, pooling, batch norm
    in eval mode), a hybrid with its optics trainable and with them frozen, and a segmentation
    hybrid (kernel groups, transposed convolutions)."""
    from onn.data import load_dataset
    from onn.design import PRESETS
    from onn.teachers import build_teacher

    digits = load_dataset("digits")
    mono = Design(aperture_mm=2.0, suboptic_mm=0.3, mask_res=128, n_kernels=3, kernel_size=3, hidden=(8,))
    frozen = build_hybrid(mono, in_channels=1, image_size=16, n_outputs=10, seed=1)
    frozen.optics[0].freeze_to(frozen.optics[0].halves().detach() + 0.1)
    seg = PRESETS["seg"].with_(n_kernels=7, groups=(1, 2, 4), hidden=(8, 4, 2), aperture_mm=2.0, suboptic_mm=0.3)
    grey = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    colour = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    return {
        "mlp": (Tiny(), torch.randn(6, 3, 4, generator=torch.Generator().manual_seed(0)), None),
        "lenet": (build_teacher("lenet5", digits).eval(), grey, None),
        "alexnet": (build_teacher("alexnet", dataclasses.replace(digits, channels=3)).eval(), colour, None),
        "hybrid": (build_hybrid(mono, in_channels=1, image_size=16, n_outputs=10), grey, None),
        "hybrid, frozen optics": (frozen, grey, None),
        "hybrid with stray light": (build_hybrid(mono.with_(haze=1.5), in_channels=1, image_size=16, n_outputs=10),
                                    grey, None),
        "segmentation": (HybridONN(seg, in_channels=3, image_size=16, n_outputs=1,  # no geometry check: kernels only
                                   generator=torch.Generator().manual_seed(0)), colour, 4),
    }


@pytest.mark.parametrize("kind", ["mlp", "lenet", "alexnet", "hybrid", "hybrid, frozen optics", "hybrid with stray light",
                                  "segmentation"])
def test_layerwise_probe_ntk_equals_the_per_sample_vmap(kind):
    """`onn.ntk_probe` (one batched pass, the Gram per layer) against `per_sample_probe_ntk` (vmap
    over samples): the same Gram, the same cross-Gram, the same gradient for NTKD to train on."""
    model, x, pool = _models()[kind]
    names = [n for n, p in model.named_parameters() if p.requires_grad] or [n for n, _ in model.named_parameters()]
    x1, x2 = x[:4], x[4:]
    grams = {}
    for way, fn in (("layerwise", lambda *a, **k: empirical_ntk(*a, mode="probe", **k)),
                    ("vmap", per_sample_probe_ntk)):
        model.zero_grad()
        gram = fn(model, x1, probes=2, names=names, generator=torch.Generator().manual_seed(5), output_pool=pool)
        cross = fn(model, x1, x2, probes=2, names=names, generator=torch.Generator().manual_seed(5),
                   output_pool=pool)
        (gram.square().sum() + cross.sum()).backward()
        grads = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in model.parameters()]
        grams[way] = (gram.detach(), cross.detach(), grads)
    (gram, cross, grads), (gram_ref, cross_ref, grads_ref) = grams["layerwise"], grams["vmap"]
    assert gram.shape == (4, 4) and cross.shape == (4, 2)
    assert torch.allclose(gram, gram_ref, rtol=1e-4, atol=1e-5 * gram_ref.abs().max())
    assert torch.allclose(cross, cross_ref, rtol=1e-4, atol=1e-5 * cross_ref.abs().max())
    for g, g_ref in zip(grads, grads_ref):
        assert torch.allclose(g, g_ref, rtol=1e-3, atol=1e-4 * (g_ref.abs().max() + 1e-12))
    with torch.no_grad():  # a frozen teacher's Gram: no graph, the same numbers
        assert torch.allclose(empirical_ntk(model, x1, mode="probe", probes=2, names=names, output_pool=pool,
                                            generator=torch.Generator().manual_seed(5)), gram, rtol=1e-5)


@pytest.mark.parametrize("normalise", ["frobenius", "trace"])
def test_centred_ntk_loss_ignores_a_constant_and_vanishes_for_equal_grams(normalise, generator):
    model, x = Tiny(), torch.randn(6, 3, 4, generator=generator)
    teacher = empirical_ntk(model, x, mode="exact").detach()
    student = empirical_ntk(Tiny(), torch.randn(6, 3, 4, generator=generator), mode="exact").detach()
    centred = lambda s, t: float(ntk_loss(s, t, normalise, centre=True))  # noqa: E731
    assert centred(teacher, teacher.clone()) == pytest.approx(0.0, abs=1e-10)
    base = centred(student, teacher)
    assert base > 1e-4
    for shift in (0.5, 10.0, -3.0):  # a constant on every entry of either Gram changes nothing
        assert centred(student + shift * student.abs().mean(), teacher) == pytest.approx(base, rel=1e-4)
        assert centred(student, teacher + shift * teacher.abs().mean()) == pytest.approx(base, rel=1e-4)
    # uncentred, the same constant moves the loss
    plain = float(ntk_loss(student, teacher, normalise))
    assert float(ntk_loss(student + 10 * student.abs().mean(), teacher, normalise)) != pytest.approx(plain, rel=1e-2)
