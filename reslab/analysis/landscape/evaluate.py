"""Loss and accuracy of one network at many points of weight space, fast.

The reference design (Li et al.'s code) evaluates a grid one point at a time: copy the
perturbed weights into the model, stream the samples through a ``DataLoader`` in batches of
128 (normalising each sample in the ``Dataset``), repeat. Here:

* the samples are normalised once and stay on the device, split into large batches (512 on a
  CPU, 2048 on a GPU), everything under :func:`torch.inference_mode`;
* on a CPU, images and activations are channels-last, where oneDNN's convolutions run
  1.1–1.8× faster than in NCHW at CIFAR/digits sizes;
* every conv → BN pair is folded into one conv, recomputed per point, and on a CPU every
  conv → ReLU and conv → add → ReLU runs as one oneDNN call (:mod:`reslab.models.fusion`);
* ``"loop"`` (the default) writes each point's weights into a private copy of the network in
  place and evaluates it; on a CPU, ``workers`` points run at once, one per core, each with one
  intra-op thread — small convolutions parallelise poorly inside an op, independent points
  perfectly;
* ``"vmap"`` evaluates ``chunk_size`` points per pass with :func:`torch.vmap` over stacked
  parameter sets and :func:`torch.func.functional_call` (every convolution becomes a grouped
  convolution over the stacked models).

Measured with ``benchmarks/landscape_throughput.py`` (ResNet-20, digits, 16 points, a shared
2-core CPU, without conv+ReLU fusion): ``loop`` with 2 workers ≈ 2.2× the reference's
points/s, ``loop`` with 1 worker ≈ 1.7×, ``vmap`` ≈ 1.2× (grouped convolutions are slow in
oneDNN) — so ``"auto"`` means ``"loop"``; with the fusion, ``loop`` reaches ≈ 2.5×. On a GPU,
``vmap`` can help when one point's batch is too small to fill the device.

BatchNorm runs in eval mode: every point uses the running statistics stored with the origin
(or, along an interpolation, the interpolated statistics). That keeps the loss a deterministic
function of the weights, but a perturbed net's activations no longer match those statistics,
which inflates the loss far from the origin (see ``docs/landscape.md``).
"""

from __future__ import annotations

import contextlib
import copy
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from torch.nn.utils.fusion import fuse_conv_bn_weights

from reslab.analysis.landscape.directions import Plane
from reslab.errors import AnalysisError
from reslab.models.fusion import FoldedPair, fold_network, maybe_fuse_pointwise
from reslab.tasks.common import flat_outputs

METHODS = ("auto", "loop", "vmap")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
DEFAULT_CPU_BATCH = 512
DEFAULT_GPU_BATCH = 2048


def resolve_precision(precision: str, device: str | torch.device) -> tuple[str, str]:
    """``(fp32|bf16|fp16, why)``: ``"auto"`` is bf16 on CUDA GPUs and CPUs with bf16 units, else fp32.

    On a CPU without AVX512-BF16/AMX, oneDNN emulates bf16 (slower than fp32), so auto keeps fp32.
    """
    if precision != "auto":
        if precision not in PRECISIONS:
            raise AnalysisError(f"--precision must be auto or one of {', '.join(PRECISIONS)}, got {precision!r}")
        return precision, ""
    device = torch.device(device)
    if device.type == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16", "auto: bf16 autocast (this GPU supports bf16)"
        return "fp32", "auto: fp32 (this GPU has no bf16)"
    from reslab.utils.cpu import has_native_bf16  # noqa: PLC0415

    if device.type == "cpu" and has_native_bf16():
        return "bf16", "auto: bf16 autocast (this CPU has native bf16: AVX512-BF16/AMX)"
    return "fp32", f"auto: fp32 ({device.type} without native bf16; emulated bf16 would be slower)"


def default_batch_size(device: torch.device) -> int:
    return DEFAULT_GPU_BATCH if device.type == "cuda" else DEFAULT_CPU_BATCH


class FoldedLoader:
    """Writes ``origin + Σ c_i · axis_i`` (original parameter names) into a folded network in place."""

    def __init__(self, folded: nn.Module, pairs: Sequence[FoldedPair], original_keys: Sequence[str]):
        self.pairs = list(pairs)
        tensors = {k: v for k, v in folded.state_dict(keep_vars=True).items() if v.is_floating_point()}
        self.fused = {}
        merged_keys = set()
        for pair in self.pairs:
            weight, bias = tensors[f"{pair.conv}.weight"], tensors[f"{pair.conv}.bias"]
            self.fused[pair] = (weight, bias)
            merged_keys.update({f"{pair.conv}.weight", f"{pair.conv}.bias"})
            merged_keys.update(f"{pair.bn}.{n}" for n in ("weight", "bias", "running_mean", "running_var"))
        self.direct = {k: tensors[k] for k in original_keys if k not in merged_keys and k in tensors}

    @torch.no_grad()
    def load(self, origin: Mapping[str, torch.Tensor], axes: Sequence[Mapping[str, torch.Tensor]],
             coords: Sequence[float]) -> None:
        def value(key: str) -> torch.Tensor:
            terms = [(c, axis[key]) for c, axis in zip(coords, axes) if c != 0 and key in axis]
            if not terms:
                return origin[key]
            out = origin[key].clone()
            for c, d in terms:
                out.add_(d, alpha=float(c))
            return out

        for key, tensor in self.direct.items():
            tensor.copy_(value(key))
        for pair, (weight, bias) in self.fused.items():
            fused_weight, fused_bias = fuse_conv_bn_weights(
                value(f"{pair.conv}.weight"), value(f"{pair.conv}.bias") if pair.conv_has_bias else None,
                value(f"{pair.bn}.running_mean"), value(f"{pair.bn}.running_var"), pair.eps,
                value(f"{pair.bn}.weight"), value(f"{pair.bn}.bias"))
            weight.copy_(fused_weight)
            bias.copy_(fused_bias)


class _Replica:
    """One network that points are written into in place: the model, or its BN-folded copy."""

    def __init__(self, model: nn.Module, device: torch.device, memory_format, fold_bn: bool,
                 sample: torch.Tensor | None = None):
        self.model = copy.deepcopy(model).to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        if memory_format is torch.channels_last:
            self.model = self.model.to(memory_format=memory_format)
        self.tensors = {k: v for k, v in self.model.state_dict(keep_vars=True).items() if v.is_floating_point()}
        self.initial = {k: v.detach().clone() for k, v in self.tensors.items()}
        self.network, self.folded, self.bn_folded, self.pointwise_fused = self.model, None, 0, 0
        if fold_bn:

            folded = fold_network(copy.deepcopy(self.model))
            if folded is not None:
                network, pairs = folded
                network = network.to(device)
                if memory_format is torch.channels_last:
                    network = network.to(memory_format=memory_format)
                self.network, self.folded = network, FoldedLoader(network, pairs, list(self.tensors))
                self.bn_folded = len(pairs)
                if sample is not None and device.type == "cpu":
                    # On a CPU, also fuse conv + ReLU (+ the residual add) into single oneDNN calls:
                    # two fewer passes over memory per block, which matters when cores share it.
                    self.load(self.initial, [], [])
                    self.network, self.pointwise_fused = maybe_fuse_pointwise(network, sample)

    @torch.no_grad()
    def load(self, origin: Mapping[str, torch.Tensor], axes: Sequence[Mapping[str, torch.Tensor]],
             coords: Sequence[float]) -> None:
        """Write ``origin + Σ c_i · axis_i`` into the network's tensors (missing keys: the model's own)."""
        if self.folded is not None:
            self.folded.load({**self.initial, **origin}, axes, coords)
            return
        for k, tensor in self.tensors.items():
            tensor.copy_(origin[k] if k in origin else self.initial[k])
            for c, axis in zip(coords, axes):
                if c != 0 and k in axis:
                    tensor.add_(axis[k], alpha=float(c))

    def sums(self, batches, precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cross-entropy (float64) and number of correct predictions, as device scalars."""
        device = batches[0][0].device
        total_loss = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        for xb, yb in batches:
            with _autocast(device, precision):
                logits = self.network(xb)
            logits, labels = flat_outputs(logits.float(), yb)
            total_loss += F.cross_entropy(logits, labels, reduction="sum").double()
            correct += (logits.argmax(dim=1) == labels).sum()
        return total_loss, correct


class LandscapeEvaluator:
    """Evaluate ``model`` (its architecture; weights come from each point) on fixed samples.

    Args:
        model: the network; copied to ``device`` in eval mode (BN uses running statistics).
        images: float32 ``(N, C, H, W)``, already normalised (or a language model's int64 token
            windows ``(N, T)``); moved to ``device`` once.
        labels: int64 ``(N,)`` (or a segmenter's masks ``(N, H, W)``, next tokens ``(N, T)``): loss
            and accuracy are means over every label.
        batch_size: images per forward pass (default 512 on CPU, 2048 on GPU).
        device: where to compute.
        method: ``"loop"``, ``"vmap"`` or ``"auto"`` (= ``"loop"``; see the module docstring).
        chunk_size: points per pass for ``"vmap"``.
        channels_last: memory format of images and activations (default: on for CPU, off for GPU).
        fold_bn: ``"loop"`` only: merge every conv→BN pair into one conv, recomputed per point
            (see :mod:`reslab.models.fusion`); equal results up to float32 rounding, fewer passes over memory.
        workers: ``"loop"`` on CPU only: evaluate this many points at once, each in its own
            thread with one intra-op thread (default: ``torch.get_num_threads()``, i.e. one per
            core torch would use). Small convolutions parallelise poorly inside one op, but
            independent points parallelise perfectly. 1 = one point at a time using torch's
            intra-op threads.
        precision: ``"fp32"`` (default, exact up to rounding), ``"bf16"``/``"fp16"`` autocast —
            several times faster on GPUs and on CPUs with bf16 units (AVX512-BF16/AMX); losses
            then differ in the 3rd digit — or ``"auto"``: bf16 where it is native, else fp32.
    """

    def __init__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                 batch_size: int | None = None, device: str | torch.device = "cpu", method: str = "auto",
                 chunk_size: int = 8, channels_last: bool | None = None, fold_bn: bool = True,
                 workers: int | None = None, precision: str = "fp32"):
        if method not in METHODS:
            raise AnalysisError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
        if images.shape[0] != labels.shape[0] or images.shape[0] == 0:
            raise AnalysisError(f"expected inputs (N, ...) and labels (N, ...) with N ≥ 1, got "
                                f"{tuple(images.shape)} and {tuple(labels.shape)}")
        if chunk_size < 1:
            raise AnalysisError(f"--chunk-size must be at least 1, got {chunk_size}")
        self.precision, self.precision_note = resolve_precision(precision, device)
        if workers is not None and workers < 1:
            raise AnalysisError(f"--workers must be at least 1, got {workers}")
        self.device = torch.device(device)
        self.method = "loop" if method == "auto" else method
        self.chunk_size = int(chunk_size)
        self.batch_size = int(batch_size or default_batch_size(self.device))
        if self.batch_size < 1:
            raise AnalysisError(f"--batch-size must be at least 1, got {batch_size}")
        # Channels-last is a layout of images (N, C, H, W); token windows keep theirs.
        self.channels_last = images.ndim == 4 and ((self.device.type == "cpu") if channels_last is None
                                                   else bool(channels_last))
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        if self.method != "loop" or self.device.type != "cpu":
            workers = 1
        self.workers = int(workers or max(1, torch.get_num_threads()))
        self.model = copy.deepcopy(model).to(self.device).eval()
        self.num_samples = int(images.shape[0])
        # Losses and accuracies are means over every label: an image's, a pixel's or a character's.
        self.num_labels = int(labels.numel())
        x = images.to(self.device, images.dtype if not images.is_floating_point() else torch.float32
                      ).contiguous(memory_format=memory_format)
        y = labels.to(self.device, torch.int64)
        # Split once: the resident tensors are sliced into views reused for every point.
        self.batches = [(x[s:s + self.batch_size], y[s:s + self.batch_size])
                        for s in range(0, self.num_samples, self.batch_size)]
        # The "loop" method writes each point's weights into a private copy's own tensors (a copy
        # of 10⁵–10⁶ floats) and calls it directly: cheaper than functional_call, whose
        # parameter swapping costs more per batch than the copy costs per point.
        self._replicas = []
        if self.method == "loop":
            sample = self.batches[0][0][:4]
            self._replicas = [_Replica(model, self.device, memory_format, fold_bn, sample) for _ in range(self.workers)]
        self.bn_folded = self._replicas[0].bn_folded if self._replicas else 0
        self.pointwise_fused = self._replicas[0].pointwise_fused if self._replicas else 0

    # -- one state ---------------------------------------------------------------------------
    @torch.inference_mode()
    # -- many points of a plane --------------------------------------------------------------
    def evaluate(self, plane: Plane, coords: torch.Tensor | Sequence[Sequence[float]]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and accuracy at ``coords`` (``(P, dims)``) of ``plane``: two float64 ``(P,)`` CPU tensors.

        ``plane`` should already be on this evaluator's device (``plane.to(device)``) to avoid
        moving its tensors for every call.
        """
        coords = torch.as_tensor(coords, dtype=torch.float64)
        if coords.ndim != 2 or coords.shape[1] != plane.dims:
            raise AnalysisError(f"coords must have shape (P, {plane.dims}), got {tuple(coords.shape)}")
        if self.method == "vmap":
            with torch.inference_mode():
                return self._evaluate_vmap(plane, coords)
        points = coords.tolist()
        if self.workers == 1 or len(points) == 1:
            with torch.inference_mode():
                sums = [self._evaluate_point(self._replicas[0], plane, point) for point in points]
        else:
            sums = self._evaluate_parallel(plane, points)
        # One device→host transfer per call, not one per point: no GPU sync inside the loop.
        loss = torch.stack([s[0] for s in sums]).cpu() / self.num_labels
        accuracy = torch.stack([s[1] for s in sums]).cpu().double() / self.num_labels
        return loss, accuracy

    def _evaluate_point(self, replica: _Replica, plane: Plane, point: Sequence[float]):
        replica.load(plane.origin, plane.axes, point)
        return replica.sums(self.batches, self.precision)

    def _evaluate_parallel(self, plane: Plane, points: list[list[float]]):
        """Points spread over ``workers`` threads, one replica and one intra-op thread each."""
        workers = min(self.workers, len(points))
        shares = [list(range(i, len(points), workers)) for i in range(workers)]

        def work(worker: int):
            with torch.inference_mode():
                return [(i, self._evaluate_point(self._replicas[worker], plane, points[i])) for i in shares[worker]]

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # process-wide; restored below
        try:
            with ThreadPoolExecutor(workers) as pool:
                done = [item for part in pool.map(work, range(workers)) for item in part]
        finally:
            torch.set_num_threads(threads)
        return [sums for _, sums in sorted(done, key=lambda item: item[0])]

    def _evaluate_vmap(self, plane: Plane, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        varying = sorted({k for axis in plane.axes for k in axis})
        fixed = {k: plane.origin[k].to(self.device) for k in plane.origin if k not in varying}
        model = self.model

        def forward(params: dict[str, torch.Tensor], xb: torch.Tensor) -> torch.Tensor:
            return functional_call(model, (params, fixed), (xb,))

        batched = torch.vmap(forward, in_dims=(0, None))
        losses, accuracies = [], []
        for start in range(0, coords.shape[0], self.chunk_size):
            chunk = coords[start:start + self.chunk_size].to(self.device, torch.float32)  # (K, dims)
            params = {}
            for k in varying:
                base = plane.origin[k].to(self.device)
                stacked = base.unsqueeze(0).repeat(chunk.shape[0], *([1] * base.dim()))
                for i, axis in enumerate(plane.axes):
                    if k in axis:
                        shape = (-1,) + (1,) * base.dim()
                        stacked += chunk[:, i].view(shape) * axis[k].to(self.device).unsqueeze(0)
                params[k] = stacked
            total_loss = torch.zeros(chunk.shape[0], dtype=torch.float64, device=self.device)
            correct = torch.zeros(chunk.shape[0], dtype=torch.int64, device=self.device)
            for xb, yb in self.batches:
                with _autocast(self.device, self.precision):
                    logits = batched(params, xb)
                logits = logits.float()  # (K, B, ...): one batch of outputs per point
                flat, labels = flat_outputs(logits.flatten(0, 1), yb.repeat(chunk.shape[0], *([1] * (yb.ndim - 1))))
                per_label = F.cross_entropy(flat, labels, reduction="none").view(chunk.shape[0], -1)
                total_loss += per_label.sum(dim=1).double()
                correct += (flat.argmax(dim=1) == labels).view(chunk.shape[0], -1).sum(dim=1)
            losses.append(total_loss.cpu() / self.num_labels)
            accuracies.append(correct.cpu().double() / self.num_labels)
        return torch.cat(losses), torch.cat(accuracies)


def _autocast(device: torch.device, precision: str):
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
