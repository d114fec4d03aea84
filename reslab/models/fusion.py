"""Folding BatchNorm into the conv before it, and fusing conv + ReLU (+ residual add), for eval mode.

In eval mode BN is an affine map per channel, ``y = γ (x − μ) / √(σ² + ε) + β``, so a conv
followed only by a BN equals one conv with weight ``W · s`` and bias ``β + (b − μ) · s``,
``s = γ / √(σ² + ε)`` (:func:`torch.nn.utils.fusion.fuse_conv_bn_weights` computes it). Folding
removes a full pass over every activation per BN (≈ 10–15% of a ResNet's CPU time at CIFAR
sizes); results equal the unfolded network's up to float32 rounding.

* :func:`fold_batch_norms` — a folded copy of a model, its weights folded once (inference paths).
* :func:`fold_network` — the folded graph and its :class:`FoldedPair` list, for callers that write
  other weights into it (the loss landscape refolds for every grid point from that point's conv
  weights and BN parameters/statistics; the Hessian folds inside its differentiable forward).

The pairs are found on a :func:`torch.fx.symbolic_trace` of the model: a BN whose input is a
conv's output that nothing else uses. Networks that cannot be traced, and pre-activation
blocks (BN before the conv), keep (some of) their BNs.

On a CPU, :func:`maybe_fuse_pointwise` then runs ``relu(conv(x))`` and ``relu(conv(x) + y)``
(the residual merge) as single oneDNN calls — the fused op ``torch.compile`` uses on CPUs —
after checking on a sample that the fused network reproduces the unfused one. That op is
private to torch, so it is reached only through :func:`fused_conv_relu`, which checks it
against ``F.relu(F.conv2d(...))`` once per process and falls back to that public path (and
then nothing is fused) if the op is missing, fails or disagrees.
"""
from __future__ import annotations

import copy
import functools
import operator
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights


@dataclass(frozen=True)
class FoldedPair:
    conv: str   # qualified name of the conv in the original model
    bn: str     # qualified name of the BN that followed it
    eps: float
    conv_has_bias: bool


def _fold_graph(model: nn.Module) -> tuple[fx.GraphModule, list[FoldedPair]]:
    """``model`` traced, with each conv→BN pair merged into the conv (which gets a bias); raises what tracing raises.

    The graph module shares ``model``'s submodules, so the merged convs' biases are added to them.
    """
    graph_module = fx.symbolic_trace(model)
    modules = dict(graph_module.named_modules())
    pairs: list[FoldedPair] = []
    for node in list(graph_module.graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        bn = modules[node.target]
        source = node.args[0] if node.args else None
        if (not isinstance(source, fx.Node) or source.op != "call_module" or len(source.users) != 1
                or not isinstance(modules.get(source.target), nn.Conv2d) or len(node.args) != 1 or node.kwargs
                or bn.running_mean is None or not bn.affine):
            continue
        conv = modules[source.target]
        has_bias = conv.bias is not None
        if not has_bias:
            conv.bias = nn.Parameter(torch.zeros(conv.out_channels, dtype=conv.weight.dtype, device=conv.weight.device),
                                     requires_grad=False)
        node.replace_all_uses_with(source)
        graph_module.graph.erase_node(node)
        pairs.append(FoldedPair(conv=source.target, bn=node.target, eps=float(bn.eps), conv_has_bias=has_bias))
    if pairs:
        graph_module.graph.lint()
        graph_module.recompile()
        graph_module.delete_all_unused_submodules()
    return graph_module.eval(), pairs


def fold_network(model: nn.Module) -> tuple[nn.Module, list[FoldedPair]] | None:
    """``model`` (eval mode) with conv→BN pairs merged, and the pairs; ``None`` if untraceable or nothing folds.

    The merged convs are ``model``'s own modules, given a bias; their weights are placeholders
    until the caller writes folded values into them (pass a copy to keep ``model`` as it is).
    """
    try:
        graph_module, pairs = _fold_graph(model)
    except Exception:  # noqa: BLE001 - any tracing failure means: evaluate unfolded
        return None
    return (graph_module, pairs) if pairs else None


@torch.no_grad()
def fold_batch_norms(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) whose conv → BN pairs are folded into the convs.

    BN layers that follow something else (the pre-activation blocks' BNs after an addition) stay.
    Raises what :func:`torch.fx.symbolic_trace` raises when the model cannot be traced
    (data-dependent control flow).
    """
    model = copy.deepcopy(model).eval()
    values = {key: tensor.clone() for key, tensor in model.state_dict().items()}
    folded, pairs = _fold_graph(model)
    for pair in pairs:
        conv = folded.get_submodule(pair.conv)
        weight, bias = fuse_conv_bn_weights(
            values[f"{pair.conv}.weight"], values[f"{pair.conv}.bias"] if pair.conv_has_bias else None,
            values[f"{pair.bn}.running_mean"], values[f"{pair.bn}.running_var"], pair.eps,
            values[f"{pair.bn}.weight"], values[f"{pair.bn}.bias"])
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
    return folded


# -- conv + ReLU (+ residual add) fusion on a CPU ------------------------------------------------------
def public_conv_relu(x, weight, bias, stride, padding, dilation, groups, other=None):
    """``relu(conv2d(x) [+ other])`` with public ops: the reference for, and fallback of, the fused op."""
    out = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    return F.relu(out if other is None else out + other)


@functools.cache
def fused_conv_relu():
    """The one use of a private op here: oneDNN's fused conv (+ add) + ReLU, as ``torch.compile``'s CPU backend uses it.

    Returns a callable with :func:`public_conv_relu`'s signature. On first use, checks the
    private ``torch.ops.mkldnn._convolution_pointwise`` against the public path on small random
    inputs (NCHW and channels-last, with and without the residual add); if the op is missing,
    raises or disagrees, warns once and returns :func:`public_conv_relu` itself. It is kept
    because it is measurably faster on CPUs (``benchmarks/landscape_throughput.py`` prints by how much).
    """
    def private(x, weight, bias, stride, padding, dilation, groups, other=None):
        if other is None:
            return op(x, weight, bias, padding, stride, dilation, groups, "relu", [], "")
        return op.binary(x, other, weight, bias, padding, stride, dilation, groups, "add", None, "relu", [], "")

    try:
        if not torch.backends.mkldnn.is_available():
            raise RuntimeError("oneDNN (mkldnn) is not available in this torch build")
        op = torch.ops.mkldnn._convolution_pointwise
        generator = torch.Generator().manual_seed(0)
        x, w, b = (torch.randn(shape, generator=generator) for shape in ((2, 8, 9, 9), (16, 8, 3, 3), (16,)))
        args = (w, b, (2, 2), (1, 1), (1, 1), 1)
        residual = torch.randn((2, 16, 5, 5), generator=generator)
        for layout in (torch.contiguous_format, torch.channels_last):
            xi = x.contiguous(memory_format=layout)
            for extra in (None, residual.contiguous(memory_format=layout)):
                expected, got = public_conv_relu(xi, *args, other=extra), private(xi, *args, other=extra)
                if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-4, atol=1e-4):
                    raise RuntimeError(f"its output differs from the public path's on a {layout} test input")
        return private
    except Exception as exc:  # noqa: BLE001 - missing, failing or wrong: use the public path
        reason = (str(exc).splitlines() or [""])[0]
        warnings.warn(f"oneDNN fused conv+ReLU unusable ({type(exc).__name__}: {reason}); using F.relu(F.conv2d(...))",
                      RuntimeWarning, stacklevel=2)
        return public_conv_relu


class FusedConvReLU(nn.Module):
    """``relu(conv(x))`` or ``relu(conv(x) + other)`` through :func:`fused_conv_relu` (one oneDNN call on CPUs).

    Holds the conv module itself, so weights written into it (per grid point) are used as they are.
    """

    def __init__(self, conv: nn.Conv2d, add: bool):
        super().__init__()
        self.conv, self.add = conv, add
        self._args = (tuple(conv.stride), tuple(conv.padding), tuple(conv.dilation), conv.groups)
        self._fn = fused_conv_relu()

    def forward(self, x: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
        return self._fn(x, self.conv.weight, self.conv.bias, *self._args, other=other if self.add else None)


def _is_relu(node: fx.Node, modules: dict) -> bool:
    if node.op == "call_function" and node.target in (torch.nn.functional.relu, torch.relu):
        return True
    return node.op == "call_module" and isinstance(modules.get(node.target), nn.ReLU)


def _fusable_conv(node, modules: dict) -> bool:
    conv = modules.get(node.target) if isinstance(node, fx.Node) and node.op == "call_module" else None
    return (isinstance(conv, nn.Conv2d) and len(node.users) == 1 and conv.padding_mode == "zeros"
            and not isinstance(conv.padding, str))


def fuse_pointwise(network: fx.GraphModule) -> tuple[fx.GraphModule, int]:
    """A graph module computing ``network`` with conv→ReLU and conv→add→ReLU fused (CPU only).

    The result shares ``network``'s modules and parameters. Identity and (eval-mode) dropout
    calls are dropped first so the patterns are adjacent. Returns ``(module, fused count)``.
    """

    graph = copy.deepcopy(network.graph)
    fused = fx.GraphModule(network, graph)
    modules = dict(fused.named_modules())
    for node in list(graph.nodes):
        if node.op == "call_module" and isinstance(modules.get(node.target), (nn.Identity, nn.Dropout)) \
                and node.args and not node.kwargs:
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    count = 0
    for node in list(graph.nodes):
        if not _is_relu(node, modules) or not node.args:
            continue
        source = node.args[0]
        replacement = None
        if _fusable_conv(source, modules):
            replacement = (FusedConvReLU(modules[source.target], add=False), (source.args[0],), [source])
        elif (isinstance(source, fx.Node) and source.op == "call_function"
              and source.target in (operator.add, torch.add) and len(source.users) == 1 and len(source.args) == 2 and not source.kwargs):
            for conv, other in (source.args, source.args[::-1]):
                if _fusable_conv(conv, modules) and isinstance(other, fx.Node):
                    replacement = (FusedConvReLU(modules[conv.target], add=True), (conv.args[0], other), [source, conv])
                    break
        if replacement is None:
            continue
        module, args, dead = replacement
        name = f"fused_conv_relu_{count}"
        fused.add_submodule(name, module)
        with graph.inserting_after(node):
            new = graph.call_module(name, args)
        node.replace_all_uses_with(new)
        graph.erase_node(node)
        for old in dead:
            graph.erase_node(old)
        count += 1
    graph.lint()
    fused.recompile()
    return fused, count


def maybe_fuse_pointwise(network: fx.GraphModule, sample: torch.Tensor) -> tuple[nn.Module, int]:
    """:func:`fuse_pointwise` when oneDNN's fused op exists and reproduces ``network`` on ``sample``; else ``network``.

    :func:`fused_conv_relu` has checked the op itself; this checks the rewritten graph as a whole.
    """
    if sample.device.type != "cpu" or sample.dtype != torch.float32 or fused_conv_relu() is public_conv_relu:
        return network, 0
    try:
        fused, count = fuse_pointwise(network)
        if count == 0:
            return network, 0
        with torch.no_grad():
            expected, got = network(sample), fused(sample)
        if not torch.allclose(expected, got, rtol=1e-4, atol=1e-5 * float(expected.abs().max()) + 1e-6):
            return network, 0
        return fused, count
    except Exception:  # noqa: BLE001 - any failure of the private op means: run unfused
        return network, 0
