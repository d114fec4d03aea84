"""Curvature of the loss: Hessian eigenvalues, trace, spectral density and Li et al.'s convexity map.

Everything is built on Hessian-vector products ``H v`` (never the Hessian itself, which for a
ResNet-56 would have 10¹¹ entries), computed exactly by double backpropagation over the
samples (or by forward-over-reverse autodiff, ``jvp(grad(f))``), with BatchNorm in eval mode:
the Hessian is that of the function the landscape plots show.

Speed (see ``benchmarks/hessian_throughput.py``, which runs PyHessian beside it): the gradient's
graph is built once per point and reused by every product (``reuse_graph``; what PyHessian does),
when its saved tensors fit in the memory budget — else each product recomputes it; in eval mode
every conv→BN pair is folded into one conv whose weight and bias are computed *from* the conv's
and BN's parameters inside the graph (``fold_bn``), so the derivatives are still exactly those
of the original parameters while the activations skip BN's pass and its double backward; and
the top-k eigenvalues come from one Lanczos run (``method="lanczos"``, the default),
which needs far fewer products than deflated power iteration (``method="power"``).

* top-k eigenvalues: Lanczos with full reorthogonalisation (largest magnitude first), or power
  iteration with deflation;
* trace: Hutchinson's estimator ``E[zᵀ H z]`` with Rademacher ``z`` (with its standard error);
* spectral density: stochastic Lanczos quadrature (Ghorbani et al. 2019) — a few Lanczos runs
  from random starts; each tridiagonal matrix's eigenvalues (Ritz values) and the squared first
  components of its eigenvectors (weights) give a quadrature of the density, smoothed with
  Gaussians;
* λmin and the convexity measure ``|λmin / λmax|`` of Li et al. 2018 (§6): near 0, the
  surface has no significant negative curvature (convex-looking); large, it is saddle-like.
  λmin comes from Lanczos (the smallest Ritz value) or from power iteration on ``H − λmax·I``;
* a map of ``λmin``, ``λmax`` and the ratio over a coarse grid of the random filter-normalised
  plane that ``reslab analyze landscape`` uses with the same seed.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from reslab.analysis.common import Result
from reslab.analysis.landscape.directions import random_plane
from reslab.analysis.landscape.surface import target_samples
from reslab.errors import AnalysisError
from reslab.settings import Settings, setting
from reslab.train.evaluation import task_cross_entropy

HVP_METHODS = ("double_backward", "forward_over_reverse")
MIN_METHODS = ("lanczos", "power")
HVP = Callable[[torch.Tensor], torch.Tensor]


# -- the operator --------------------------------------------------------------------------------
class HessianOperator:
    """``v ↦ H v`` for the mean loss of ``model`` on fixed samples, w.r.t. its trainable parameters.

    Args:
        model: the network (copied to ``device``, eval mode: BN uses its running statistics).
        inputs: ``(N, ...)`` model inputs (normalised images ``(N, C, H, W)``).
        targets: ``(N, ...)`` labels (int64 for cross-entropy) or regression targets.
        loss_fn: ``loss_fn(outputs, targets) -> mean loss``; default cross-entropy (per image,
            pixel or token: :func:`reslab.train.evaluation.task_cross_entropy`).
        batch_size: samples per pass; the loss is the exact mean over all N samples.
        device: where to compute.
        method: ``"double_backward"`` (default) or ``"forward_over_reverse"``.
        reuse_graph: keep the first-order graph of each batch and reuse it for every product
            (double backward only). ``None`` (default): when its saved tensors fit in
            ``memory_budget`` bytes (measured on the first batch); else recompute per product.
        fold_bn: compute with conv→BN pairs folded into single convs (eval mode; exact).
        memory_budget: bytes the kept graphs may take; default half of the available memory.

    Vectors are flat float32 ``(dim,)`` tensors on ``device``, parameters concatenated in
    ``named_parameters`` order. :meth:`set_point` moves the operator to other weights.
    """

    def __init__(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 batch_size: int = 256, device: str | torch.device = "cpu", method: str = "double_backward",
                 reuse_graph: bool | None = None, fold_bn: bool = True, memory_budget: int | None = None):
        if method not in HVP_METHODS:
            raise AnalysisError(f"--hvp must be one of {', '.join(HVP_METHODS)}, got {method!r}")
        if inputs.shape[0] == 0 or inputs.shape[0] != targets.shape[0]:
            raise AnalysisError(f"need N ≥ 1 inputs with as many targets, got {tuple(inputs.shape)} and "
                                f"{tuple(targets.shape)}")
        if batch_size < 1:
            raise AnalysisError(f"--batch-size must be at least 1, got {batch_size}")
        self.device = torch.device(device)
        self.method = method
        self.loss_fn = loss_fn or task_cross_entropy
        self.model = copy.deepcopy(model).to(self.device).eval()
        self.names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        self.shapes = [tuple(p.shape) for n, p in self.model.named_parameters() if p.requires_grad]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.dim = int(sum(self.sizes))
        self.num_samples = int(inputs.shape[0])
        self.batches = [(inputs[s:s + batch_size].to(self.device), targets[s:s + batch_size].to(self.device))
                        for s in range(0, self.num_samples, batch_size)]
        self.fixed = {k: v for k, v in self.model.state_dict().items() if k not in set(self.names)}
        self.point = {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}
        self.products = 0  # Hessian-vector products computed so far
        self.folded = _FoldedForward.build(self.model, self.names) if fold_bn else None
        self.reuse_graph = reuse_graph if method == "double_backward" else False
        self.memory_budget = memory_budget
        self.graph_bytes: int | None = None  # saved-tensor bytes of the kept graphs, once measured
        self._graphs: list[tuple[list[torch.Tensor], list[torch.Tensor]]] | None = None

    @property
    def bn_folded(self) -> int:
        """How many conv→BN pairs the computation folds (0 when none or ``fold_bn=False``)."""
        return len(self.folded.pairs) if self.folded is not None else 0

    # -- weights ------------------------------------------------------------------------------
    def set_point(self, state: Mapping[str, torch.Tensor]) -> None:
        """Evaluate H at ``state`` (parameters by name; buffers by name are taken too)."""
        self._graphs = None
        for name in self.names:
            if name in state:
                self.point[name] = state[name].detach().to(self.device, torch.float32).clone()
        for name in self.fixed:
            if name in state and state[name].is_floating_point():
                self.fixed[name] = state[name].detach().to(self.device, self.fixed[name].dtype).clone()

    def flatten(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat([p.reshape(-1) for p in parts])

    def unflatten(self, vector: torch.Tensor) -> list[torch.Tensor]:
        return [chunk.view(shape) for chunk, shape in zip(torch.split(vector, self.sizes), self.shapes)]

    # -- values -------------------------------------------------------------------------------
    def _batch_loss(self, params: Mapping[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        # Attention through the math kernel: the fused ones (flash, memory-efficient) have no
        # derivative of their backward, which every Hessian-vector product takes.
        with sdpa_kernel(SDPBackend.MATH):
            if self.folded is not None:
                outputs = self.folded(params, self.fixed, xb)
            else:
                outputs = functional_call(self.model, ({**params}, self.fixed), (xb,))
        return self.loss_fn(outputs, yb) * (xb.shape[0] / self.num_samples)

    def loss(self) -> float:
        """The mean loss at the current point."""
        with torch.no_grad():
            return float(sum(self._batch_loss(self.point, xb, yb).double() for xb, yb in self.batches))

    def hvp(self, vector: torch.Tensor) -> torch.Tensor:
        """``H v`` for a flat ``(dim,)`` vector; exact (no finite differences)."""
        if vector.shape != (self.dim,):
            raise AnalysisError(f"vector must have shape ({self.dim},), got {tuple(vector.shape)}")
        vector = vector.to(self.device, torch.float32)
        tangents = dict(zip(self.names, self.unflatten(vector)))
        out = torch.zeros(self.dim, dtype=torch.float32, device=self.device)
        graphs = self._kept_graphs() if self.reuse_graph is not False else None
        if graphs is not None:
            parts_in = [tangents[n] for n in self.names]
            for leaves, grads in graphs:
                used = [(g, v) for g, v in zip(grads, parts_in) if g is not None and g.requires_grad]
                if not used:
                    continue
                products = torch.autograd.grad([g for g, _ in used], leaves, grad_outputs=[v for _, v in used],
                                               retain_graph=True, allow_unused=True)
                out += self.flatten([torch.zeros_like(leaf) if p is None else p for p, leaf in zip(products, leaves)])
            self.products += 1
            return out
        for xb, yb in self.batches:
            if self.method == "forward_over_reverse":
                parts = self._hvp_forward_over_reverse(tangents, xb, yb)
            else:
                parts = self._hvp_double_backward(tangents, xb, yb)
            out += self.flatten(parts)
        self.products += 1
        return out

    def _first_order_graph(self, xb, yb) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        with torch.enable_grad():
            params = {n: p.detach().requires_grad_(True) for n, p in self.point.items()}
            leaves = [params[n] for n in self.names]
            loss = self._batch_loss(params, xb, yb)
            grads = torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True)
        return leaves, list(grads)

    def _kept_graphs(self):
        """The per-batch (leaves, gradients-with-graph), built on first use; ``None`` when they do not fit."""
        if self._graphs is not None:
            return self._graphs
        budget = self.memory_budget if self.memory_budget is not None else _default_memory_budget(self.device)
        graphs = []
        for index, (xb, yb) in enumerate(self.batches):
            if index == 0 and self.graph_bytes is None:
                counted = [0]

                def pack(tensor):
                    counted[0] += tensor.numel() * tensor.element_size()
                    return tensor

                with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
                    graphs.append(self._first_order_graph(xb, yb))
                # The batches have the same size but the last: scale the first one's graph.
                self.graph_bytes = int(counted[0] * self.num_samples / xb.shape[0])
                if self.reuse_graph is None and self.graph_bytes > budget:
                    self.reuse_graph = False
                    return None
                continue
            graphs.append(self._first_order_graph(xb, yb))
        self._graphs = graphs
        return graphs

    def _hvp_double_backward(self, tangents, xb, yb) -> list[torch.Tensor]:
        with torch.enable_grad():
            params = {n: p.detach().requires_grad_(True) for n, p in self.point.items()}
            loss = self._batch_loss(params, xb, yb)
            leaves = [params[n] for n in self.names]
            grads = torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True)
            terms = [(g * tangents[n]).sum() for g, n in zip(grads, self.names) if g is not None and g.requires_grad]
            if not terms:  # the loss is linear in every parameter: H = 0
                return [torch.zeros_like(leaf) for leaf in leaves]
            products = torch.autograd.grad(sum(terms), leaves, allow_unused=True)
        return [torch.zeros_like(leaf) if p is None else p.detach() for p, leaf in zip(products, leaves)]

    def _hvp_forward_over_reverse(self, tangents, xb, yb) -> list[torch.Tensor]:
        def loss_of(params):
            return self._batch_loss(params, xb, yb)

        with torch.enable_grad():
            _, products = torch.func.jvp(torch.func.grad(loss_of), (dict(self.point),), (dict(tangents),))
        return [products[n].detach() for n in self.names]


def _default_memory_budget(device: torch.device) -> int:
    """Half of the memory free now (CUDA: on the device; CPU: MemAvailable), 1 GiB if unknown."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[0] // 2)
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except (OSError, RuntimeError, ValueError):
        pass
    return 1 << 30


class _FoldedForward:
    """The model with conv→BN pairs merged, called with the *original* parameters.

    The merged conv's weight ``W·s`` and bias ``β + (b − μ)·s``, ``s = γ/√(σ² + ε)``, are
    computed inside the autograd graph from ``W``, ``b``, ``γ``, ``β``, so gradients and
    Hessian-vector products are those of the original parameters, exactly; only the cheap
    per-channel products on weights replace BN's pass (and its double backward) on activations.
    """

    def __init__(self, network: nn.Module, pairs, names: Sequence[str]):
        self.network, self.pairs = network, list(pairs)
        merged = set()
        for pair in self.pairs:
            merged.update({f"{pair.conv}.weight", f"{pair.conv}.bias"})
            merged.update(f"{pair.bn}.{n}" for n in ("weight", "bias", "running_mean", "running_var",
                                                     "num_batches_tracked"))
        self.merged = merged

    @classmethod
    def build(cls, model: nn.Module, names: Sequence[str]) -> "_FoldedForward | None":
        from reslab.models.fusion import fold_network  # noqa: PLC0415 - fx tracing only when used

        folded = fold_network(copy.deepcopy(model))  # folding adds conv biases to the traced modules
        if folded is None:
            return None
        network, pairs = folded
        # A BN whose running statistics are trainable, or a conv whose weight is frozen, is left alone.
        names = set(names)
        if any(f"{p.conv}.weight" not in names for p in pairs):
            return None
        return cls(network, pairs, list(names))

    def __call__(self, params: Mapping[str, torch.Tensor], fixed: Mapping[str, torch.Tensor],
                 x: torch.Tensor) -> torch.Tensor:
        values = {**fixed, **params}
        tensors = {k: v for k, v in values.items() if k not in self.merged}
        for pair in self.pairs:
            weight = values[f"{pair.conv}.weight"]
            gamma = values.get(f"{pair.bn}.weight")
            beta = values.get(f"{pair.bn}.bias")
            mean, var = values[f"{pair.bn}.running_mean"], values[f"{pair.bn}.running_var"]
            scale = torch.rsqrt(var + pair.eps)
            if gamma is not None:
                scale = gamma * scale
            bias = values[f"{pair.conv}.bias"] if pair.conv_has_bias else torch.zeros_like(mean)
            shift = (bias - mean) * scale
            if beta is not None:
                shift = shift + beta
            tensors[f"{pair.conv}.weight"] = weight * scale.reshape(-1, *([1] * (weight.ndim - 1)))
            tensors[f"{pair.conv}.bias"] = shift
        return functional_call(self.network, tensors, (x,), strict=False)


# -- algorithms on an abstract H v ----------------------------------------------------------------
def _random_unit(dim: int, generator: torch.Generator, device, rademacher: bool = False) -> torch.Tensor:
    """A random vector drawn on the CPU (same on every device for a seed), moved to ``device``."""
    if rademacher:
        v = torch.randint(0, 2, (dim,), generator=generator, dtype=torch.int8).to(torch.float32) * 2 - 1
    else:
        v = torch.randn(dim, generator=generator, dtype=torch.float32)
    v = v.to(device)
    return v / v.norm() if not rademacher else v


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a.double(), b.double()))


TOP_METHODS = ("lanczos", "power")


def top_eigenvalues(hvp: HVP, dim: int, k: int = 5, *, max_iterations: int = 100, tol: float = 1e-4,
                    generator: torch.Generator | None = None, device="cpu", progress=None,
                    method: str = "lanczos") -> tuple[list[float], list[torch.Tensor], list[int]]:
    """The ``k`` eigenvalues of largest magnitude (and unit eigenvectors), largest magnitude first.

    ``method="lanczos"`` (the default; it replaced power iteration): one Lanczos run with full
    reorthogonalisation; after each product the tridiagonal matrix's Ritz values are computed and
    the run stops when each of the top ``k`` changed by less than ``tol`` relatively (at most
    ``max(max_iterations, 3k)`` products). Extreme eigenvalues converge in far fewer products
    than with power iteration, and all ``k`` come from the same run. ``method="power"``: power
    iteration with deflation, ``max_iterations`` per eigenvalue, each stopped when its Rayleigh
    quotient changes by less than ``tol`` (the method of PyHessian, and reslab's default before Lanczos).

    Returns ``(eigenvalues, eigenvectors (dim,), products used)``; for Lanczos every eigenvalue
    reports the run's total.
    """
    if method not in TOP_METHODS:
        raise AnalysisError(f"top-eigenvalue method must be one of {', '.join(TOP_METHODS)}, got {method!r}")
    if k < 1:
        return [], [], []
    if method == "power":
        return _power_top(hvp, dim, k, max_iterations=max_iterations, tol=tol, generator=generator, device=device,
                          progress=progress)
    return _lanczos_top(hvp, dim, k, max_steps=min(dim, max(max_iterations, 3 * k)), tol=tol, generator=generator,
                        device=device, progress=progress)


def _lanczos_top(hvp: HVP, dim: int, k: int, *, max_steps: int, tol: float, generator=None, device="cpu",
                 progress=None) -> tuple[list[float], list[torch.Tensor], list[int]]:
    generator = generator or torch.Generator().manual_seed(0)
    basis = [_random_unit(dim, generator, device)]
    alphas: list[float] = []
    betas: list[float] = []
    previous: np.ndarray | None = None
    nodes = vectors = order = None
    for step in range(1, max_steps + 1):
        w = hvp(basis[-1])
        if progress is not None:
            progress.update(1)
        alpha = _dot(w, basis[-1])
        alphas.append(alpha)
        w = w - alpha * basis[-1] - (betas[-1] * basis[-2] if betas else 0.0)
        stacked = torch.stack(basis)
        for _ in range(2):  # full reorthogonalisation, twice (see lanczos())
            w = w - stacked.T @ (stacked @ w)
        beta = float(w.norm())
        tridiagonal = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        nodes, vectors = np.linalg.eigh(tridiagonal)
        order = np.argsort(-np.abs(nodes))[:k]
        current = nodes[order]
        exhausted = beta <= 1e-10 * max(abs(alpha), 1.0)
        if len(current) == k and previous is not None and len(previous) == k and np.all(
                np.abs(current - previous) <= tol * np.maximum(np.abs(current), 1e-30)):
            break
        if exhausted:
            break
        previous = current
        betas.append(beta)
        basis.append(w / beta)
    stacked = torch.stack(basis[:len(alphas)])
    values, eigenvectors = [], []
    for index in order:
        coefficients = torch.as_tensor(vectors[:, index], dtype=torch.float32, device=stacked.device)
        vector = coefficients @ stacked
        eigenvectors.append(vector / vector.norm())
        values.append(float(nodes[index]))
    return values, eigenvectors, [len(alphas)] * len(values)


def _power_top(hvp: HVP, dim: int, k: int = 5, *, max_iterations: int = 100, tol: float = 1e-4,
               generator: torch.Generator | None = None, device="cpu", progress=None
               ) -> tuple[list[float], list[torch.Tensor], list[int]]:
    """The ``k`` eigenvalues of largest magnitude, by power iteration with deflation.

    After eigenpairs ``(λ_j, u_j)`` are found, the iteration runs on ``H − Σ λ_j u_j u_jᵀ`` (and
    keeps its vector orthogonal to the ``u_j``), so it converges to the next one. It stops when
    the Rayleigh quotient changes by less than ``tol`` relatively (or after ``max_iterations``).

    Returns ``(eigenvalues, eigenvectors (dim,), iterations used)``, in the order found.
    """
    generator = generator or torch.Generator().manual_seed(0)
    values: list[float] = []
    vectors: list[torch.Tensor] = []
    iterations: list[int] = []
    for _ in range(k):
        v = _random_unit(dim, generator, device)
        estimate = None
        used = 0
        for used in range(1, max_iterations + 1):
            for u in vectors:  # stay in the complement of the eigenvectors found
                v = v - _dot(u, v) * u
            v = v / v.norm()
            w = hvp(v)
            for lam, u in zip(values, vectors):
                w = w - lam * _dot(u, v) * u
            new = _dot(v, w)  # Rayleigh quotient of the deflated operator
            norm = float(w.norm())
            if progress is not None:
                progress.update(1)
            if norm == 0.0:
                estimate = new
                break
            v = w / norm
            if estimate is not None and abs(new - estimate) <= tol * max(abs(new), 1e-30):
                estimate = new
                break
            estimate = new
        values.append(float(estimate))
        vectors.append(v)
        iterations.append(used)
    return values, vectors, iterations


def hutchinson_trace(hvp: HVP, dim: int, probes: int = 100, *, generator: torch.Generator | None = None,
                     device="cpu", progress=None) -> tuple[float, float, np.ndarray]:
    """Hutchinson's estimate of ``tr H``: the mean of ``zᵀ H z`` over Rademacher probes ``z``.

    Returns ``(estimate, standard error of the mean, the per-probe values)``.
    """
    if probes < 1:
        raise AnalysisError(f"--trace-probes must be at least 1, got {probes}")
    generator = generator or torch.Generator().manual_seed(0)
    samples = []
    for _ in range(probes):
        z = _random_unit(dim, generator, device, rademacher=True)
        samples.append(_dot(z, hvp(z)))
        if progress is not None:
            progress.update(1)
    values = np.asarray(samples, dtype=np.float64)
    error = float(values.std(ddof=1) / math.sqrt(probes)) if probes > 1 else float("nan")
    return float(values.mean()), error, values


def lanczos(hvp: HVP, dim: int, steps: int, *, generator: torch.Generator | None = None, device="cpu",
            start: torch.Tensor | None = None, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` Lanczos iterations with full reorthogonalisation from a random unit start.

    Returns the tridiagonal matrix's diagonal ``alpha (m,)`` and off-diagonal ``beta (m-1,)``,
    ``m ≤ steps`` (fewer when the Krylov space is exhausted, e.g. for a matrix with fewer distinct
    eigenvalues). Keeps all ``m`` basis vectors: memory ``m × dim`` floats.
    """
    if steps < 1:
        raise AnalysisError(f"Lanczos needs at least 1 step, got {steps}")
    generator = generator or torch.Generator().manual_seed(0)
    q = _random_unit(dim, generator, device) if start is None else (start / start.norm()).to(device, torch.float32)
    basis = [q]
    alphas: list[float] = []
    betas: list[float] = []
    for j in range(min(steps, dim)):
        w = hvp(basis[-1])
        if progress is not None:
            progress.update(1)
        alpha = _dot(w, basis[-1])
        alphas.append(alpha)
        w = w - alpha * basis[-1] - (betas[-1] * basis[-2] if betas else 0.0)
        # Full reorthogonalisation (twice is enough): without it, rounding errors bring back
        # converged eigenvectors and produce spurious copies of the extreme Ritz values.
        stacked = torch.stack(basis)
        for _ in range(2):
            w = w - stacked.T @ (stacked @ w)
        beta = float(w.norm())
        if j == min(steps, dim) - 1 or beta <= 1e-10 * max(abs(alpha), 1.0):
            break
        betas.append(beta)
        basis.append(w / beta)
    return np.asarray(alphas), np.asarray(betas[:len(alphas) - 1])


def ritz(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (Ritz values, ascending) of the tridiagonal matrix and their quadrature weights.

    The weight of a Ritz value is the squared first component of its eigenvector: the Gauss
    quadrature of the spectral measure ``vᵀ δ(H − t) v`` of the start vector. Weights sum to 1.
    """
    tridiagonal = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
    nodes, vectors = np.linalg.eigh(tridiagonal)
    return nodes, vectors[0, :] ** 2


def slq(hvp: HVP, dim: int, steps: int = 80, starts: int = 3, *, generator: torch.Generator | None = None,
        device="cpu", progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Stochastic Lanczos quadrature: ``(nodes, weights)``, each ``(starts, m)`` (NaN-padded rows)."""
    if starts < 1:
        raise AnalysisError(f"--density-starts must be at least 1, got {starts}")
    generator = generator or torch.Generator().manual_seed(0)
    runs = [ritz(*lanczos(hvp, dim, steps, generator=generator, device=device, progress=progress))
            for _ in range(starts)]
    width = max(len(n) for n, _ in runs)
    nodes = np.full((starts, width), np.nan)
    weights = np.full((starts, width), np.nan)
    for i, (n, w) in enumerate(runs):
        nodes[i, :len(n)] = n
        weights[i, :len(w)] = w
    return nodes, weights


def density_curve(nodes: np.ndarray, weights: np.ndarray, sigma: float, grid: np.ndarray) -> np.ndarray:
    """The smoothed spectral density ``(1/S) Σ_s Σ_j w_sj · N(t; θ_sj, σ²)`` on ``grid`` (integrates to ~1)."""
    nodes = np.atleast_2d(nodes)
    weights = np.atleast_2d(weights)
    valid = np.isfinite(nodes) & np.isfinite(weights)
    theta, w = nodes[valid], weights[valid]
    kernel = np.exp(-0.5 * ((grid[:, None] - theta[None, :]) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    return kernel @ w / nodes.shape[0]


def extreme_eigenvalues(hvp: HVP, dim: int, steps: int = 30, *, generator: torch.Generator | None = None,
                        device="cpu", progress=None) -> tuple[float, float]:
    """``(λmin, λmax)`` estimated by the extreme Ritz values of one Lanczos run.

    Ritz values lie inside the spectrum and converge to its ends first, so with a few dozen
    steps these are close (from inside) to the true extremes.
    """
    nodes, _ = ritz(*lanczos(hvp, dim, steps, generator=generator, device=device, progress=progress))
    return float(nodes[0]), float(nodes[-1])


def smallest_eigenvalue_power(hvp: HVP, dim: int, lambda_max: float, *, max_iterations: int = 200,
                              tol: float = 1e-4, generator: torch.Generator | None = None, device="cpu",
                              progress=None) -> float:
    """λmin by power iteration on ``H − λmax·I`` (whose spectrum is ``≤ 0``, largest magnitude at λmin)."""
    shifted = lambda v: hvp(v) - lambda_max * v  # noqa: E731
    values, _, _ = top_eigenvalues(shifted, dim, 1, max_iterations=max_iterations, tol=tol, generator=generator,
                                   device=device, progress=progress, method="power")
    return values[0] + lambda_max


def convexity_ratio(lambda_min: float, lambda_max: float) -> float:
    """Li et al.'s ``|λmin / λmax|`` (NaN when λmax is 0)."""
    return abs(lambda_min / lambda_max) if lambda_max != 0 else float("nan")


# -- the analysis ------------------------------------------------------------------------------
@dataclass
class HessianResult(Result):
    """Everything ``reslab analyze hessian`` measures (``hessian.json`` + ``hessian.npz``).

    ``density``: ``nodes``/``weights`` ``(starts, m)`` (Ritz values and weights), ``sigma``,
    ``grid``/``values`` (the smoothed density). ``map``: ``x (nx,)``, ``y (ny,)``,
    ``lambda_min``/``lambda_max``/``ratio`` ``(ny, nx)`` (``[j, i]`` at ``(x[i], y[j])``).
    """

    analysis: ClassVar[str] = "hessian"
    target: dict[str, Any]
    settings: dict[str, Any]
    loss: float
    dim: int
    top_eigenvalues: list[float] = field(default_factory=list)
    top_iterations: list[int] = field(default_factory=list)
    lambda_max: float | None = None
    lambda_min: float | None = None
    convexity_ratio: float | None = None
    trace: float | None = None
    trace_std_error: float | None = None
    density: dict[str, Any] | None = None
    map: dict[str, Any] | None = None
    seconds: float = 0.0
    hessian_vector_products: int = 0


@dataclass(frozen=True)
class HessianSettings(Settings):
    """Every option of :func:`analyze_hessian` and ``reslab analyze hessian``, with its one default."""

    samples: int | None = setting(512, "images of the split the loss is averaged over (none: the whole split)",
                                  minimum=1, cli=False)  # the shared target arguments add --samples
    split: Literal["train", "test"] = setting("train", "which split")
    seed: int = setting(0, "seeds every random vector and the map's plane", minimum=0, cli=False)
    sample_seed: int = setting(0, "seed of the choice of --samples images (0: the same images whatever --seed)",
                               minimum=0)
    top_k: int = setting(5, "eigenvalues of largest magnitude (0 = skip)", minimum=0)
    top_method: Literal["lanczos", "power"] = setting(
        "lanczos", "top eigenvalues by one Lanczos run (fast; the default) or deflated power iteration "
                   "(PyHessian's method)")
    max_iterations: int = setting(100, "power iterations per eigenvalue at most (Lanczos: products at most)",
                                  minimum=1)
    tol: float = setting(1e-4, "stop an eigenvalue when it changes by less than this, relatively", minimum=0)
    min_method: Literal["lanczos", "power"] = setting(
        "lanczos", "λmin from the smallest Ritz value of a Lanczos run, or by power iteration on H − λmax·I")
    extreme_steps: int = setting(40, "Lanczos steps for λmin/λmax", minimum=1)
    trace: bool = setting(False, "estimate the trace (Hutchinson)")
    trace_probes: int = setting(100, "Rademacher probes of the trace", minimum=1)
    density: bool = setting(False, "eigenvalue density (stochastic Lanczos quadrature)")
    density_steps: int = setting(80, "Lanczos steps per start of the density", minimum=1)
    density_starts: int = setting(3, "random starts of the density", minimum=1)
    density_sigma: float = setting(0.01, "Gaussian broadening, as a fraction of the spectrum's width", minimum=0)
    map_grid: tuple[float, float, int] | None = setting(
        None, "(start, stop, points) of the curvature map over the random plane of seed", cli=False)
    map_steps: int = setting(20, "Lanczos steps per map point", minimum=1)
    keep_bn_bias: bool = setting(False, "the map's plane also perturbs BN γ/β and biases (as landscape "
                                        "--keep-bn-bias)")
    batch_size: int = setting(256, "images per forward pass", minimum=1, cli=False)
    device: str = setting("cpu", "where to compute", cli=False)
    hvp_method: Literal["double_backward", "forward_over_reverse"] = setting(
        "double_backward", "how Hessian-vector products are computed", flag="--hvp")
    reuse_graph: Literal["auto", "on", "off"] = setting(
        "auto", "keep the gradient's graph for every product (auto: when it fits in half the free memory)")
    fold_bn: bool = setting(True, "fold conv→BN pairs into single convs while computing (exact; faster)")

    def check(self) -> None:
        if self.map_grid is not None and self.map_grid[2] < 1:
            raise AnalysisError(f"--map grid needs at least 1 point, got {self.map_grid[2]}")


def analyze_hessian(target, settings: HessianSettings | Mapping[str, Any] | None = None, *, progress: bool = False,
                    inputs: torch.Tensor | None = None, labels: torch.Tensor | None = None, loss_fn=None,
                    **changes: Any) -> HessianResult:
    """The Python twin of ``reslab analyze hessian``.

    Args:
        target: a :class:`reslab.analysis.common.Target` (or anything with ``.model``,
            ``.dataset`` and ``.describe()``).
        settings: a :class:`HessianSettings` (or a mapping of its fields); ``changes`` — any of
            its fields as keywords (``top_k=2, trace=True``) — are applied on top. See the class
            for each option and its default.
        progress: tqdm bars on stderr.
        inputs, labels, loss_fn: use these instead of the target's dataset / cross-entropy.
    """
    settings = HessianSettings.of(settings, **changes)
    started = time.perf_counter()
    if inputs is None or labels is None:
        inputs, labels = target_samples(target, settings.split, settings.samples, settings.sample_seed)
    device = torch.device(settings.device)
    operator = HessianOperator(target.model, inputs, labels, loss_fn=loss_fn, batch_size=settings.batch_size,
                               device=device, method=settings.hvp_method,
                               reuse_graph={"auto": None, "on": True, "off": False}[settings.reuse_graph],
                               fold_bn=settings.fold_bn)
    spectrum = _Spectrum(operator, settings, progress)
    result = HessianResult(target=target.describe() if hasattr(target, "describe") else {},
                           settings=_recorded_settings(settings, target, inputs, device),
                           loss=operator.loss(), dim=operator.dim)
    if settings.top_k:
        result.top_eigenvalues, result.top_iterations = spectrum.top()
    result.lambda_max, result.lambda_min = spectrum.extremes(result.top_eigenvalues)
    result.convexity_ratio = convexity_ratio(result.lambda_min, result.lambda_max)
    if settings.trace:
        result.trace, result.trace_std_error = spectrum.trace()
    if settings.density:
        result.density = spectrum.density()
    if settings.map_grid is not None:
        result.map = hessian_map(operator, target.model, settings.map_grid, seed=settings.seed,
                                 steps=settings.map_steps, keep_bn_bias=settings.keep_bn_bias,
                                 generator=spectrum.generator, progress=progress)
    result.seconds = time.perf_counter() - started
    result.hessian_vector_products = operator.products
    return result


def _recorded_settings(settings: HessianSettings, target, inputs: torch.Tensor, device) -> dict[str, Any]:
    """What ``hessian.json`` records of the settings (options of parts not computed are ``None``)."""
    s = settings
    return {"samples": int(inputs.shape[0]), "split": s.split, "seed": s.seed, "sample_seed": s.sample_seed,
            "bn_mode": "eval", "batch_size": s.batch_size, "device": str(device), "hvp": s.hvp_method,
            "reuse_graph": s.reuse_graph, "fold_bn": s.fold_bn, "top_k": s.top_k, "top_method": s.top_method, "max_iterations": s.max_iterations, "tol": s.tol, "min_method": s.min_method,
            "extreme_steps": s.extreme_steps, "trace_probes": s.trace_probes if s.trace else None,
            "density_steps": s.density_steps if s.density else None,
            "density_starts": s.density_starts if s.density else None,
            "density_sigma": s.density_sigma if s.density else None,
            "dataset": getattr(getattr(target, "dataset", None), "name", None)}


class _Spectrum:
    """The steps of :func:`analyze_hessian`, sharing one operator, one generator and the progress bars."""

    def __init__(self, operator: HessianOperator, settings: HessianSettings, progress: bool):
        self.operator, self.settings, self.progress = operator, settings, progress
        self.generator = torch.Generator().manual_seed(int(settings.seed))

    def _run(self, total: int, desc: str, step: Callable[[Any], Any]):
        if self.progress:
            from tqdm import tqdm  # noqa: PLC0415 - lazy: only a person watching a terminal needs it
        bar = tqdm(total=total, desc=desc, unit="hvp", dynamic_ncols=True, leave=False) if self.progress else None
        try:
            return step(bar)
        finally:
            _close(bar)

    def _common(self, bar) -> dict[str, Any]:
        return {"generator": self.generator, "device": self.operator.device, "progress": bar}

    def top(self) -> tuple[list[float], list[int]]:
        s, op = self.settings, self.operator
        total = s.top_k * s.max_iterations if s.top_method == "power" else max(s.max_iterations, 3 * s.top_k)
        values, _, iterations = self._run(total, "top eigenvalues", lambda bar: top_eigenvalues(
            op.hvp, op.dim, s.top_k, max_iterations=s.max_iterations, tol=s.tol, method=s.top_method,
            **self._common(bar)))
        return values, iterations

    def extremes(self, top_values: Sequence[float]) -> tuple[float, float]:
        """(λmax, λmin): λmax the largest of Lanczos' and the power iteration's; λmin by ``min_method``."""
        s, op = self.settings, self.operator
        ritz_min, ritz_max = self._run(s.extreme_steps, "extreme eigenvalues", lambda bar: extreme_eigenvalues(
            op.hvp, op.dim, s.extreme_steps, **self._common(bar)))
        lambda_max = max([ritz_max] + [v for v in top_values if v > 0])
        if s.min_method == "lanczos":
            return lambda_max, ritz_min
        lambda_min = self._run(2 * s.max_iterations, "smallest eigenvalue", lambda bar: smallest_eigenvalue_power(
            op.hvp, op.dim, lambda_max, max_iterations=2 * s.max_iterations, tol=s.tol, **self._common(bar)))
        return lambda_max, lambda_min

    def trace(self) -> tuple[float, float]:
        s, op = self.settings, self.operator
        estimate, std_error, _ = self._run(s.trace_probes, "trace", lambda bar: hutchinson_trace(
            op.hvp, op.dim, s.trace_probes, **self._common(bar)))
        return estimate, std_error

    def density(self) -> dict[str, Any]:
        s, op = self.settings, self.operator
        nodes, weights = self._run(s.density_steps * s.density_starts, "density", lambda bar: slq(
            op.hvp, op.dim, s.density_steps, s.density_starts, **self._common(bar)))
        low, high = float(np.nanmin(nodes)), float(np.nanmax(nodes))
        sigma = s.density_sigma * max(high - low, 1e-12)
        grid = np.linspace(low - 5 * sigma, high + 5 * sigma, 1000)
        return {"nodes": nodes, "weights": weights, "sigma": sigma, "grid": grid,
                "values": density_curve(nodes, weights, sigma, grid)}


def hessian_map(operator: HessianOperator, model: nn.Module, grid: tuple[float, float, int], *, seed: int = 0,
                steps: int = 20, keep_bn_bias: bool = False, generator: torch.Generator | None = None,
                progress: bool = False) -> dict[str, Any]:
    """λmin, λmax and ``|λmin/λmax|`` over a ``points × points`` grid of the random plane of ``seed``."""
    low, high, points = grid
    if points < 1:
        raise AnalysisError(f"--map grid needs at least 1 point, got {points}")
    axis = np.linspace(low, high, points) if points > 1 else np.array([low], dtype=np.float64)
    plane = random_plane(model, dims=2, seed=seed, keep_bn_bias=keep_bn_bias)
    shape = (axis.size, axis.size)
    lam_min, lam_max = np.full(shape, np.nan), np.full(shape, np.nan)
    bar = None
    if progress:
        from tqdm import tqdm  # noqa: PLC0415 - lazy: only a person watching a terminal needs it

        bar = tqdm(total=axis.size ** 2, desc="curvature map", unit="pt", dynamic_ncols=True)
    origin = copy.deepcopy(operator.point), copy.deepcopy(operator.fixed)
    try:
        for j, b in enumerate(axis):
            for i, a in enumerate(axis):
                operator.set_point(plane.point([float(a), float(b)]))
                lam_min[j, i], lam_max[j, i] = extreme_eigenvalues(operator.hvp, operator.dim, steps,
                                                                   generator=generator, device=operator.device)
                if bar is not None:
                    bar.update(1)
    finally:
        operator.point, operator.fixed = origin
        _close(bar)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(lam_min / lam_max)
    return {"x": axis, "y": axis.copy(), "lambda_min": lam_min, "lambda_max": lam_max, "ratio": ratio,
            "seed": seed, "steps": steps, "plane": "random", "normalization": "filter",
            "keep_bn_bias": bool(keep_bn_bias)}


def _close(bar) -> None:
    if bar is not None:
        bar.close()


__all__ = [
    "HessianOperator", "HessianResult", "HessianSettings", "analyze_hessian", "convexity_ratio", "density_curve",
    "extreme_eigenvalues", "hessian_map", "hutchinson_trace", "lanczos", "ritz", "slq",
    "smallest_eigenvalue_power", "top_eigenvalues", "TOP_METHODS",
]
