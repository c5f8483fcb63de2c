"""The probe NTK (`onn.ntk`'s ``"probe"`` mode), computed layer by layer from one batched pass.

For a ±1 probe ``v`` over the outputs, ``g_i = ∂(v·f(x_i))/∂θ`` and the estimate is
``Θ̂[i, j] = <g_i, g_j>`` (averaged over probes). `onn.ntk` can compute the per-sample gradients
``g_i`` with ``vmap(vjp)``: a per-sample forward through the whole model. Here instead:

1. one batched forward records, for every module that owns a parameter of θ, its input and output;
2. one batched backward of ``Σ_i v·f(x_i)`` per probe gives each module's output gradient δ
   (per sample: the samples of a batch do not interact, so row i of δ is sample i's);
3. each module's share of the Gram comes from its own input and δ:
   - `nn.Linear` on (N, F) inputs, in closed form: ``(a_i·a_j) (δ_i·δ_j)`` for the weight (its
     per-sample gradient is ``δ_i a_iᵀ``) plus ``δ_i·δ_j`` for the bias; no per-sample weight
     gradient is formed (the "ghost" Gram);
   - `nn.Conv2d` (groups 1): per-sample weight gradients from unfolded patches, one batched matmul;
   - `onn.layers.OpticalConv`: the same on the gradient with respect to its sensor-plane readings
     (`OpticalConv.weight_grads`), so the sensor's readout is differentiated once, batched;
   - any other module: per-sample gradients of that module alone, ``vmap(vjp)`` of its forward at
     its recorded input with cotangent δ (small modules: the optical layer, a per-channel affine).

Every step is differentiable, so NTKD trains through the result (``create_graph`` when grad mode
is on). Valid when every module with parameters in θ runs once per forward and treats samples
independently (true of every model in `onn`; BatchNorm only in eval mode); `probe_ntk` raises if a
module runs twice. `onn.ntk.empirical_ntk` cross-checks the two computations in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vjp, vmap

from onn.layers import OpticalConv


@dataclass
class _Tap:
    """What one parametrised module saw in the batched forward."""

    module: nn.Module
    params: dict[str, torch.Tensor]  # its own parameters (short names) that are part of θ
    args: tuple = ()
    kwargs: dict | None = None
    output: torch.Tensor | None = None
    readings: torch.Tensor | None = None  # an OpticalConv's sensor-plane readings (its camera's input)
    patches: list | None = None  # an OpticalConv's unfolded scene patches, computed once for every probe
    calls: int = 0

    @property
    def optical(self) -> bool:
        return isinstance(self.module, OpticalConv) and set(self.params) == {"weight"}

    @property
    def target(self) -> torch.Tensor:
        """The tensor whose per-sample gradient this module's share is computed from."""
        return self.readings if self.optical else self.output


def _tapped_forward(model: nn.Module, x: torch.Tensor, names: list[str], output_pool: int | None):
    """Batched forward with every θ-owning module's input and output recorded: (outputs (N, O), taps)."""
    wanted = set(names)
    taps: list[_Tap] = []
    for prefix, module in model.named_modules():
        own = {n: p for n, p in module.named_parameters(recurse=False)
               if (f"{prefix}.{n}" if prefix else n) in wanted}
        if own:
            taps.append(_Tap(module, own))
    handles = []
    for tap in taps:
        def hook(module, args, kwargs, output, tap=tap):
            tap.args, tap.kwargs, tap.output, tap.calls = args, kwargs, output, tap.calls + 1
        handles.append(tap.module.register_forward_hook(hook, with_kwargs=True))
        if tap.optical:
            def camera_hook(module, args, kwargs, output, tap=tap):
                tap.readings = args[0]
            handles.append(tap.module.camera.register_forward_hook(camera_hook, with_kwargs=True))
    try:
        out = model(x, noise=False)
    finally:
        for handle in handles:
            handle.remove()
    for tap in taps:
        if tap.calls != 1:
            raise ValueError(f"{type(tap.module).__name__} ran {tap.calls} times in one forward; the layer-wise "
                             f"probe NTK needs each module with parameters to run once (use the vmap path)")
    if output_pool is not None and out.ndim == 4:
        out = F.avg_pool2d(out, output_pool)
    return out.reshape(out.shape[0], -1), taps


def _per_sample_grads(tap: _Tap, delta: torch.Tensor) -> torch.Tensor:
    """(N, P) per-sample gradients of the module's θ-parameters, flattened and concatenated."""
    module, params = tap.module, tap.params
    if tap.optical:
        if tap.patches is None:
            tap.patches = module.patches(tap.args[0])
        return module.weight_grads(tap.patches, delta)
    if isinstance(module, nn.Conv2d) and module.groups == 1 and isinstance(module.padding, tuple):
        x = tap.args[0]
        n = x.shape[0]
        patches = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)  # (N, C k², L)
        d = delta.reshape(n, delta.shape[1], -1)  # (N, C_out, L)
        grads = []
        for name in params:
            if name == "weight":
                grads.append(torch.bmm(d, patches.transpose(1, 2)).flatten(1))  # (N, C_out C k²)
            else:  # bias
                grads.append(d.sum(-1))
        return torch.cat(grads, 1)
    frozen = {n: p for n, p in module.named_parameters(recurse=False) if n not in params}
    buffers = dict(module.named_buffers(recurse=False))
    kwargs = tap.kwargs or {}

    def one(arguments, cotangent):
        def local(theta):
            batched = tuple(a.unsqueeze(0) if torch.is_tensor(a) else a for a in arguments)
            return functional_call(module, ({**frozen, **theta}, buffers), batched, kwargs)[0]

        _, pullback = vjp(local, params)
        return pullback(cotangent)[0]

    in_dims = tuple(0 if torch.is_tensor(a) else None for a in tap.args)
    grads = vmap(one, in_dims=(in_dims, 0))(tap.args, delta)  # name -> (N, *shape)
    return torch.cat([grads[n].flatten(1) for n in params], 1)


def _gram_share(tap1: _Tap, delta1: torch.Tensor, tap2: _Tap, delta2: torch.Tensor) -> torch.Tensor:
    """This module's share of Θ̂(x1, x2): (N1, N2)."""
    module = tap1.module
    if isinstance(module, nn.Linear) and tap1.args[0].ndim == 2:
        d = delta1 @ delta2.T  # (N1, N2)
        gram = 0
        if "weight" in tap1.params:
            gram = gram + (tap1.args[0] @ tap2.args[0].T) * d
        if "bias" in tap1.params:
            gram = gram + d
        return gram
    g1 = _per_sample_grads(tap1, delta1)
    g2 = g1 if tap2 is tap1 else _per_sample_grads(tap2, delta2)
    return g1 @ g2.T


def _deltas(out: torch.Tensor, v: torch.Tensor, taps: list[_Tap], create_graph: bool):
    """Per-sample gradients of ``v·f(x_i)`` with respect to every tapped module's output."""
    return torch.autograd.grad((out * v).sum(), [t.target for t in taps], retain_graph=True,
                               create_graph=create_graph, allow_unused=True)


def probe_ntk(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None, *, names: list[str],
              draw_signs, output_pool: int | None = None) -> torch.Tensor:
    """(N1, N2) probe estimate ``mean_v <g_i, g_j>`` with ``g_i = ∂(v·f(x_i))/∂θ_names``, one probe
    ``v`` (O,) of ±1 per entry of ``draw_signs(O)``. Differentiable with respect to θ when grad mode is on."""
    create_graph = torch.is_grad_enabled()
    params = dict(model.named_parameters())
    switched = [params[n] for n in names if not params[n].requires_grad]
    for p in switched:  # a frozen teacher: its parameters are θ for the NTK's sake
        p.requires_grad_(True)
    try:
        with torch.enable_grad():
            out1, taps1 = _tapped_forward(model, x1, names, output_pool)
            out2, taps2 = (out1, taps1) if x2 is None else _tapped_forward(model, x2, names, output_pool)
            signs = draw_signs(out1.shape[1])
            gram = out1.new_zeros(out1.shape[0], out2.shape[0])
            for v in signs:
                deltas1 = _deltas(out1, v, taps1, create_graph)
                deltas2 = deltas1 if x2 is None else _deltas(out2, v, taps2, create_graph)
                for t1, d1, t2, d2 in zip(taps1, deltas1, taps2, deltas2):
                    if d1 is not None and d2 is not None:  # None: the module does not reach the outputs
                        gram = gram + _gram_share(t1, d1, t2, d2)
            gram = gram / len(signs)
    finally:
        for p in switched:
            p.requires_grad_(False)
    return gram if create_graph else gram.detach()
