"""Empirical neural tangent kernels of a model's outputs (SPEC §2).

``Θ[i, j] = Σ_o <∂f_o(x_i)/∂θ, ∂f_o(x_j)/∂θ>``: the (B, B) Gram of per-sample Jacobians,
summed over outputs, with respect to a chosen set of parameters. Three ways to get it:

- ``"exact"``: Jacobian contraction, ``vmap(jacrev)`` + einsum (the reference; cost grows with
  outputs x parameters x batch).
- ``"probe"``: Hutchinson estimate over the outputs. For a random ±1 vector ``v`` shared by the
  batch, ``g_i = ∂(v·f(x_i))/∂θ`` satisfies ``E[g_i·g_j] = Θ[i, j]``; averaging ``g gᵀ`` over a few
  probes costs one batched forward and a backward per probe, the Gram assembled layer by layer
  (`onn.ntk_probe`; ``per_sample_probe_ntk`` is the same estimate by ``vmap(vjp)``, kept as the
  cross-check). Relative error ~ 1/sqrt(probes).
- ``"last_layer"``: the exact Gram with respect to the last parametrised layer only (about one
  forward pass; correlates 0.7-0.99 with the full NTK on our models).

All are differentiable with respect to the model's parameters (the NTKD loss trains through them);
call under ``torch.no_grad()`` for a teacher.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import nn
from torch.func import functional_call, jacrev, vjp, vmap

from onn.ntk_probe import probe_ntk

NtkMode = Literal["exact", "probe", "last_layer"]


def last_layer_names(model: nn.Module) -> list[str]:
    """Names of the parameters of the last module (in registration order) that owns parameters."""
    owner = None
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            owner = name
    if owner is None:
        raise ValueError("model has no parameters")
    prefix = f"{owner}." if owner else ""
    return [prefix + n for n, _ in model.get_submodule(owner).named_parameters(recurse=False)]


def _per_sample(model: nn.Module, names: list[str], output_pool: int | None) -> tuple[dict, Callable]:
    """The differentiated parameters ``{name: tensor}`` and ``single(theta, x_i) -> (O,)``: the
    model's flattened output on one sample as a function of those parameters (the others and the
    buffers held fixed), evaluated without noise, pooled by ``output_pool`` for dense outputs."""
    all_params = dict(model.named_parameters())
    params = {n: all_params[n] for n in names}
    frozen = {n: p for n, p in all_params.items() if n not in params}
    buffers = dict(model.named_buffers())

    def single(theta: dict, xi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, ({**frozen, **theta}, buffers), (xi.unsqueeze(0),), {"noise": False})
        if output_pool is not None and out.ndim == 4:
            out = torch.nn.functional.avg_pool2d(out, output_pool)
        return out.reshape(-1)  # (O,)

    return params, single


def empirical_ntk(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None, *, mode: NtkMode = "probe",
                  probes: int = 4, names: list[str] | None = None, generator: torch.Generator | None = None,
                  output_pool: int | None = None) -> torch.Tensor:
    """(N1, N2) empirical NTK ``Θ(x1, x2)`` of ``model`` (``x2=None``: the symmetric Gram of x1).

    Args:
        x1, x2: (N1, ...) and (N2, ...) inputs.
        names: parameters to differentiate (default: all of them, frozen or not; ``"last_layer"``
            overrides this with the last parametrised layer).
        output_pool: for dense outputs (B, 1, H, W), average-pool by this factor first to bound the
            number of outputs (segmentation NTKD).
        generator: source of the probe signs (one set of probes serves x1 and x2).
    The model is evaluated deterministically (``noise=False``): the NTK is a property of the
    function, not of one noise draw.
    """
    if mode == "last_layer":
        names = last_layer_names(model)
    elif names is None:
        names = [n for n, _ in model.named_parameters()]
    params, single = _per_sample(model, names, output_pool)

    if mode in ("exact", "last_layer"):
        jacobian = lambda x: vmap(jacrev(single), in_dims=(None, 0))(params, x)  # name -> (N, O, *shape)
        jac1 = jacobian(x1)
        jac2 = jac1 if x2 is None else jacobian(x2)
        return sum(torch.einsum("bop,cop->bc", jac1[n].flatten(2), jac2[n].flatten(2)) for n in jac1)
    if mode == "probe":
        if probes < 1:
            raise ValueError(f"probes must be >= 1, got {probes}")
        draw = lambda n_outputs: [torch.randint(0, 2, (n_outputs,), generator=generator).to(x1) * 2 - 1
                                  for _ in range(probes)]  # probes x (O,) ±1
        return probe_ntk(model, x1, x2, names=names, draw_signs=draw, output_pool=output_pool)
    raise ValueError(f"unknown NTK mode {mode!r}; use 'exact', 'probe' or 'last_layer'")


def per_sample_probe_ntk(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None, *, probes: int = 4,
                         names: list[str] | None = None, generator: torch.Generator | None = None,
                         output_pool: int | None = None) -> torch.Tensor:
    """The ``"probe"`` estimate by per-sample ``vmap(vjp)`` through the whole model: the reference
    `onn.ntk_probe` is checked against (same probes from the same ``generator``)."""
    names = [n for n, _ in model.named_parameters()] if names is None else names
    params, single = _per_sample(model, names, output_pool)

    with torch.no_grad():
        n_outputs = single(params, x1[0]).numel()
    signs = [torch.randint(0, 2, (n_outputs,), generator=generator).to(x1) * 2 - 1 for _ in range(probes)]

    def projected_grads(theta, xi):
        _, pullback = vjp(lambda t: single(t, xi), theta)
        return [pullback(v)[0] for v in signs]

    grads1 = vmap(projected_grads, in_dims=(None, 0))(params, x1)  # probes x (name -> (N1, *shape))
    grads2 = grads1 if x2 is None else vmap(projected_grads, in_dims=(None, 0))(params, x2)
    gram = x1.new_zeros(x1.shape[0], x1.shape[0] if x2 is None else x2.shape[0])
    for g1, g2 in zip(grads1, grads2):
        gram = gram + sum(g1[n].flatten(1) @ g2[n].flatten(1).T for n in g1)
    return gram / probes


def mlp_ntk(linears: list[nn.Linear], x1: torch.Tensor, x2: torch.Tensor | None = None) -> torch.Tensor:
    """Exact empirical NTK (N1, N2), summed over outputs, of the dense stack
    ``linears[0] -> ReLU -> linears[1] -> ReLU -> ... -> linears[-1]`` at its current weights,
    on inputs (N, F), in the inputs' dtype.

    No Jacobian is formed: for a dense layer ``z_l = W_l a_{l-1} + b_l`` the weight and bias
    gradients of output o are ``δ_lo a_{l-1}ᵀ`` and ``δ_lo``, with ``δ_lo = ∂f_o/∂z_l`` (w_l,), so
    ``Θ(x, x') = Σ_l (<a_{l-1}, a'_{l-1}> + 1) Σ_o <δ_lo, δ'_lo>``. The back-propagated δ are
    (N, O, w_l), which is small for a backend (O outputs, w_l hidden units); the whole kernel costs a
    few matrix products instead of N Jacobians of every weight.
    """
    def activations_and_deltas(x):
        activations, gates = [x], []
        for layer in linears[:-1]:
            z = layer(activations[-1])  # (N, w_l)
            gates.append(z > 0)
            activations.append(torch.relu(z))
        n_out = linears[-1].out_features
        delta = torch.eye(n_out, dtype=x.dtype, device=x.device).expand(len(x), n_out, n_out)  # (N, O, O)
        deltas = [delta]
        for layer, gate in zip(reversed(linears[1:]), reversed(gates)):
            delta = (delta @ layer.weight) * gate[:, None, :]  # (N, O, w_l)
            deltas.append(delta)
        return activations, deltas[::-1]

    with torch.no_grad():
        acts_a, deltas_a = activations_and_deltas(x1)
        acts_b, deltas_b = (acts_a, deltas_a) if x2 is None else activations_and_deltas(x2)
        gram = 0
        for layer, act_a, act_b, delta_a, delta_b in zip(linears, acts_a, acts_b, deltas_a, deltas_b):
            inputs = act_a @ act_b.T + (layer.bias is not None)  # the bias is an input fixed at 1
            gram = gram + inputs * (delta_a.flatten(1) @ delta_b.flatten(1).T)
    return gram
