"""Profile a network: parameters, MACs/FLOPs, weight layers, activation memory of a training step.

Conventions (what each number counts):

* **parameters** — every element of ``model.parameters()`` (weights, biases, BN γ/β); buffers
  (BN running statistics) are not parameters.
* **MACs** — multiply–accumulates of *one image* of the given size, counted by
  :class:`torch.utils.flop_counter.FlopCounterMode` (FLOPs / 2), whose formulas cover
  convolutions and matrix products (the fully connected layer; attention; an LSTM's gates, whose
  fused CPU op gets a formula here). A token model's MACs are per sequence. BN, ReLU, pooling,
  the residual additions, zero-padding and the element-wise products of attention and highway
  gates are not counted (the convention of torchvision's model metadata and of the papers). **FLOPs = 2 × MACs.** Counting is exact
  and linear in the batch, so a batch of ``B`` gives ``B ×`` the per-image figure.
* **weight layers** — :func:`reslab.models.weight_layers`: the conv and linear layers on the
  main path, i.e. the "depth" in a name such as ResNet-56. Shortcut projections, highway gates
  and attention layers are not counted. (WRN-d-k is the exception in the literature: its ``d``
  counts every convolution, the 3 shortcut projections included, and not the fc, so
  ``wrn_28_10`` has 26 main-path weight layers: 25 convs + fc.)
* **activation memory** — bytes of the distinct tensor storages that autograd saves for the
  backward pass during one training-mode forward at ``batch_size``, excluding parameters and
  buffers (they are counted by :func:`torch.autograd.graph.saved_tensors_hooks`, deduplicated by
  storage). It includes the input batch, which the first convolution keeps. This is the memory a
  training step holds between its forward and its backward — what grows with depth and batch;
  it leaves out the gradients and the temporaries of the backward pass itself. With activation
  checkpointing a block keeps only its input, and backward re-computes one block at a time
  (that block's activations, held briefly, are not in the figure).
* **CUDA peak** (only with a CUDA ``device``) — ``torch.cuda.max_memory_allocated`` over one
  real forward + backward at ``batch_size`` minus what was allocated before it (the model),
  so it adds the parameter gradients and the backward's temporaries to the activations.

MACs and activation memory come from training-mode forwards through
:func:`torch.func.functional_call` with stand-in buffers, so the model passed in is never
changed or moved. Large images run on the ``meta`` device (shapes only: no memory, no
arithmetic); small images run for real on the CPU, where that is faster than meta's Python
shape functions — at the batch asked for, or, for large batches, at batches 2, 3 and 4,
extrapolated exactly (saved bytes are affine in the batch). All paths count the same (tested);
a 1202-layer network at batch 128 takes seconds and allocates nothing of its 11 GiB.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import sys
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Iterable, Sequence

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from reslab.errors import ConfigError, ModelConfigError
from reslab.models.inputs import IMAGES, TOKENS, VECTORS, default_size, image_hw, input_kind, kind_of_name, \
    sequence_length, vocabulary
from reslab.models.introspect import named_blocks, weight_layers
from reslab.models.registry import create_model, model_info
from reslab.utils import resolve_device

MIB = 2**20

__all__ = [
    "ModelProfile",
    "profile_model",
    "Published",
    "PUBLISHED",
    "TableRow",
    "TABLE_MODELS",
    "profile_table",
    "format_table",
]


@dataclass
class ModelProfile:
    """What :func:`profile_model` measured (see the module docstring for the conventions)."""

    name: str
    family: str | None
    input_size: tuple[int, ...]  # (H, W); (T,) for a token model
    in_chans: int  # 0 for a token model
    num_classes: int
    batch_size: int
    parameters: int
    macs: int  # per image
    weight_layers: int
    num_blocks: int
    activation_bytes: int  # one training step at batch_size
    cuda_peak_bytes: int | None = None
    device: str = "cpu"
    options: dict = field(default_factory=dict)
    input_kind: str = IMAGES  # reslab.models.inputs: "images", "vectors" or "tokens"

    @property
    def flops(self) -> int:
        """FLOPs per image, ``2 × macs``."""
        return 2 * self.macs

    @property
    def activation_bytes_per_image(self) -> float:
        return self.activation_bytes / self.batch_size

    def to_dict(self) -> dict:
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        data["flops"] = self.flops
        return data

    def format(self) -> str:
        """A readable block of ``key: value`` lines."""
        options = ", ".join(f"{k}={v}" for k, v in sorted(self.options.items())) or "-"
        if self.input_kind == TOKENS:
            unit = "sequence"
            shown = f"{self.input_size[0]} int64 tokens (ids below {self.num_classes}), {self.num_classes} logits per token"
        else:
            unit = "image"
            h, w = self.input_size
            flat = f" (flattened to {self.in_chans * h * w} features)" if self.input_kind == VECTORS else ""
            shown = f"{self.in_chans}×{h}×{w}{flat}, {self.num_classes} classes"
        lines = [
            f"model:              {self.name}" + (f" ({self.family})" if self.family else ""),
            f"options:            {options}",
            f"input:              {shown}",
            f"parameters:         {self.parameters:,} ({self.parameters / 1e6:.2f} M)",
            f"MACs / {unit + ':':<13}{self.macs:,} ({_giga(self.macs)} G)",
            f"FLOPs / {unit + ':':<12}{self.flops:,} ({_giga(self.flops)} G; FLOPs = 2 × MACs, conv + matmul only)",
            f"weight layers:      {self.weight_layers} (main-path conv + fc)",
            f"blocks:             {self.num_blocks}",
            f"activation memory:  {self.activation_bytes / MIB:,.1f} MiB at batch {self.batch_size} "
            f"({self.activation_bytes_per_image / MIB:,.2f} MiB/{unit}; saved for backward in one training step)",
        ]
        if self.cuda_peak_bytes is not None:
            lines.append(
                f"CUDA peak:          {self.cuda_peak_bytes / MIB:,.1f} MiB above the model "
                f"(forward + backward at batch {self.batch_size} on {self.device})"
            )
        return "\n".join(lines)


def _giga(value: float) -> str:
    return f"{value / 1e9:.3f}" if value >= 1e8 else f"{value / 1e9:.4f}"


# -- profile one model ----------------------------------------------------------------------
def profile_model(
    model_or_name: nn.Module | str,
    input_size: int | Sequence[int] | None = None,
    batch_size: int = 1,
    in_chans: int | None = None,
    num_classes: int | None = None,
    device: str | torch.device = "cpu",
    **options,
) -> ModelProfile:
    """Profile a model given by registry name or as a module.

    Args:
        model_or_name: a registered/generic name (built with ``in_chans``, ``num_classes`` and
            ``options``) or an ``nn.Module`` (profiled as it is; it is not changed).
        input_size: image side ``N`` (``N×N``) or ``(H, W)``; default 32 for CIFAR models,
            224 for ImageNet ones, a vector model's ``image_size`` (by name, ``N`` builds it for
            ``N×N`` images). For a token model (transformer, LSTM, GRU) the sequence length ``T``
            of an int64 ``(batch_size, T)`` input; default its context (256 for an LSTM).
        batch_size: batch of the training step whose activation memory is measured.
        in_chans: input channels (default 3, or the model's ``in_chans``); none for a token model.
        num_classes: classifier outputs (names only; default the family's).
        device: ``"cpu"``, ``"meta"``, ``"cuda[:i]"`` or ``"auto"``. Counting runs on meta or
            CPU whatever it is; a CUDA device additionally measures a real training step's peak.
        **options: model options for a name (``shortcut``, ``activation_checkpointing``, …).

    Returns:
        A :class:`ModelProfile`. ``x: (batch_size, in_chans, H, W)``.

    Raises:
        ModelConfigError: unknown name, invalid options, or arguments that contradict the module.
        ConfigError: invalid sizes or device.
    """
    _check_positive_int("batch_size", batch_size)
    resolved = _resolve_profile_device(device)
    if isinstance(model_or_name, str):
        entry = model_info(model_or_name)
        kind = kind_of_name(model_or_name)
        if kind == TOKENS and in_chans is not None:
            raise ConfigError(f"in_chans is for image and vector models; {model_or_name} is a language model, which "
                              "reads token ids (N, T) with no channels")
        if kind == VECTORS and input_size is not None and "image_size" not in options:
            # A vector model's first layer is sized by C·H·W: build it for the images asked for.
            options["image_size"] = image_hw(input_size)
        with _single_thread(True):  # initialising thousands of small tensors: see _single_thread
            model = create_model(model_or_name, num_classes=num_classes,
                                 in_chans=3 if in_chans is None else in_chans, **options)
        name, family = model_or_name, _family_of(model, entry.family)
    elif isinstance(model_or_name, nn.Module):
        if options:
            raise ModelConfigError(
                f"model options ({', '.join(sorted(options))}) apply only when profiling by name; "
                "build the module with them instead"
            )
        model = model_or_name
        name = getattr(model, "model_name", type(model).__name__)
        family = _family_of(model, None)
        model_chans = getattr(model, "in_chans", None)
        if in_chans is not None and model_chans is not None and in_chans != model_chans:
            raise ModelConfigError(f"in_chans={in_chans} does not match the model, which takes {model_chans} channels")
        in_chans = in_chans if in_chans is not None else model_chans
        model_classes = getattr(model, "num_classes", None)
        if num_classes is not None and model_classes is not None and num_classes != model_classes:
            raise ModelConfigError(f"num_classes={num_classes} does not match the model, which has {model_classes}")
    else:
        raise ModelConfigError(f"expected a model name or an nn.Module, got {type(model_or_name).__name__}")

    kind = input_kind(model)
    if kind == TOKENS:
        if in_chans is not None:
            raise ConfigError(f"in_chans is for image and vector models; {name} reads token ids (N, T) with no "
                              "channels")
        in_chans = 0
        size: tuple[int, ...] = (sequence_length(model, input_size if input_size is not None
                                                 else default_size(model)),)
    else:
        in_chans = 3 if in_chans is None else in_chans
        _check_positive_int("in_chans", in_chans)
        size = _resolve_input_size(input_size if input_size is not None else default_size(model), family)

    macs, activation_bytes = _count(model, batch_size, in_chans, size)
    cuda_peak = _cuda_peak_bytes(model, batch_size, in_chans, size, resolved) if resolved.type == "cuda" else None
    return ModelProfile(
        name=name,
        family=family,
        input_size=size,
        in_chans=in_chans,
        num_classes=_num_outputs(model),
        batch_size=batch_size,
        parameters=sum(p.numel() for p in model.parameters()),
        macs=macs,
        weight_layers=len(weight_layers(model)),
        num_blocks=len(named_blocks(model)),
        activation_bytes=activation_bytes,
        cuda_peak_bytes=cuda_peak,
        device=str(resolved),
        options=dict(getattr(model, "model_options", {})),
        input_kind=kind,
    )


def _family_of(model: nn.Module, default: str | None) -> str | None:
    spec = getattr(model, "spec", None)
    return getattr(spec, "family", default)


def _num_outputs(model: nn.Module) -> int:
    value = getattr(model, "num_classes", None)
    for head in ("fc", "head"):  # ResNets' classifier; the other families' (a language model's: its vocabulary)
        if value is None and isinstance(getattr(model, head, None), nn.Linear):
            value = getattr(model, head).out_features
    return int(value) if value is not None else 0


def _check_positive_int(argument: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{argument} must be a positive integer, got {value!r}")


def _resolve_input_size(input_size, family: str | None) -> tuple[int, int]:
    if input_size is None:
        side = 32 if family == "cifar" else 224
        return side, side
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        _check_positive_int("input_size", input_size)
        return input_size, input_size
    if isinstance(input_size, (tuple, list)) and len(input_size) == 2:
        for side in input_size:
            _check_positive_int("input_size", side)
        return int(input_size[0]), int(input_size[1])
    raise ConfigError(f"input_size must be an integer N (N×N images) or a pair (H, W), got {input_size!r}")


def _resolve_profile_device(device) -> torch.device:
    if isinstance(device, str) and device == "meta":
        return torch.device("meta")
    return resolve_device(device)


# Up to this many input pixels per step (four 32×32 images), real CPU arithmetic is cheaper
# than the meta device's Python shape functions; beyond it, meta is. Both count the same.
_CPU_COUNT_MAX_PIXELS = 4 * 32 * 32


@contextlib.contextmanager
def _single_thread(enabled: bool):
    """One intra-op thread for the few-pixel CPU forward (and for building models).

    Its thousands of tiny ops gain nothing from threads, and on a busy machine the OpenMP
    workers of every op wait on each other: a 1202-layer net took 5–45 s with 2 threads and
    under 1 s with one on a loaded 2-core machine.
    """
    if not enabled:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _elements(size: tuple[int, ...]) -> int:
    """Pixels of one image, or tokens of one sequence: what a forward's cost grows with."""
    total = 1
    for side in size:
        total *= side
    return total


def _input(model: nn.Module, batch_size: int, in_chans: int, size: tuple[int, ...], device,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Zeros (or, with ``generator``, random values) of the kind the model reads, on ``device``."""
    if input_kind(model) == TOKENS:
        if generator is None:
            return torch.zeros(batch_size, size[0], dtype=torch.int64, device=device)
        return torch.randint(0, vocabulary(model), (batch_size, size[0]), device=device, generator=generator)
    if generator is None:
        return torch.zeros(batch_size, in_chans, *size, device=device)
    return torch.randn(batch_size, in_chans, *size, device=device, generator=generator)


def _count(model: nn.Module, batch_size: int, in_chans: int, size: tuple[int, ...]) -> tuple[int, int]:
    """Per-image MACs and the bytes saved for backward by a training step at ``batch_size``.

    Where it is cheapest, and all three count exactly the same:

    * a few small images (≤ ``_CPU_COUNT_MAX_PIXELS`` pixels in all): one real CPU forward;
    * many small images: real CPU forwards at batches 2, 3 and 4, extrapolated. Saved bytes are
      affine in the batch (every saved tensor either has the batch as its first dimension or is
      per-channel, like BN's batch statistics), and the three counts confirm it, else meta;
    * large images: one forward on the meta device (shapes only, no memory, no arithmetic).

    A 1202-layer network at batch 128 thus takes about as long as at batch 1.
    """
    pixels = _elements(size)
    on_cpu = all(t.device.type == "cpu" for t in itertools.chain(model.parameters(), model.buffers()))
    # BatchNorm1d (a vector model's) refuses to train on one sample at any input size; its step of one
    # is then the affine extrapolation below, from batches 2, 3 and 4.
    one_sample_refused = batch_size == 1 and any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    if on_cpu and batch_size * pixels <= _CPU_COUNT_MAX_PIXELS and not one_sample_refused:
        return _count_once(model, batch_size, in_chans, size, torch.device("cpu"))
    if on_cpu and 4 * pixels <= _CPU_COUNT_MAX_PIXELS:
        cpu = torch.device("cpu")
        macs, at2 = _count_once(model, 2, in_chans, size, cpu)
        (_, at3), (_, at4) = (_count_once(model, b, in_chans, size, cpu, count_macs=False) for b in (3, 4))
        if at4 - at3 == at3 - at2:
            return macs, at2 + (batch_size - 2) * (at3 - at2)
    return _count_once(model, batch_size, in_chans, size, torch.device("meta"))


def _rnn_layer_flops(input_shape, weight_ih_shape, weight_hh_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of oneDNN's fused LSTM layer (what ``nn.LSTM`` runs on the CPU): every token's gates
    are two matrix products, ``W_ih x`` and ``W_hh h``. torch's counter has no formula for this op,
    and would count an LSTM's recurrent layers as nothing."""
    tokens = 1
    for side in input_shape[:-1]:
        tokens *= side
    return 2 * tokens * (weight_ih_shape[0] * weight_ih_shape[1] + weight_hh_shape[0] * weight_hh_shape[1])


_EXTRA_FLOPS = {torch.ops.aten.mkldnn_rnn_layer: _rnn_layer_flops}


def _count_once(model: nn.Module, batch_size: int, in_chans: int, size: tuple[int, ...],
                device: torch.device, count_macs: bool = True) -> tuple[int, int]:
    """One training-mode forward on ``device`` (``cpu`` or ``meta``): per-image MACs, saved bytes.

    ``count_macs=False`` skips the FLOP counter (MACs returned as 0) where only bytes are needed.

    The forward runs through ``functional_call`` with stand-ins for the buffers (and, on meta,
    for the parameters), so BN's running-stat updates land on the stand-ins and the model is
    left exactly as it was.
    """
    on_cpu = device.type == "cpu"
    tensors: dict[str, torch.Tensor] = {}
    for key, param in model.named_parameters(remove_duplicate=False):
        tensors[key] = param if on_cpu else torch.empty_like(param, device=device).requires_grad_(param.requires_grad)
    for key, buffer in model.named_buffers(remove_duplicate=False):
        tensors[key] = buffer.clone() if on_cpu else torch.empty_like(buffer, device=device)
    # Storages are told apart by identity: every tensor viewing a storage returns the same
    # ``untyped_storage()`` object (on meta too, where ``data_ptr()`` is 0 for all). The objects
    # are kept here until the end, so no ``id`` can be reused by another storage meanwhile.
    not_activations = {id(storage): storage for storage in (t.untyped_storage() for t in tensors.values())}
    saved: dict[int, torch.UntypedStorage] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = id(storage)
        if key not in not_activations and key not in saved:
            saved[key] = storage
        return tensor

    x = _input(model, batch_size, in_chans, size, device)
    was_training = model.training
    model.train()
    try:
        counter = FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOPS)
        with torch.enable_grad(), _single_thread(on_cpu), counter if count_macs else contextlib.nullcontext(), \
                torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            output = functional_call(model, tensors, (x,))
    except ValueError as exc:
        if "Expected more than 1 value per channel" in str(exc):
            raise ConfigError(
                f"batch {batch_size} of {size[0]}×{size[1]} images leaves a 1×1 feature map, and batch norm "
                "cannot train on one value per channel; use a batch size ≥ 2 or a larger input size"
            ) from exc
        raise
    except RuntimeError as exc:
        shown = f"{size[0]}-token" if input_kind(model) == TOKENS else "×".join(map(str, (in_chans, *size)))
        raise ConfigError(
            f"the model cannot run on {shown} inputs ({exc}); check --input-size and --in-chans"
        ) from exc
    finally:
        model.train(was_training)
    del output
    return counter.get_total_flops() // (2 * batch_size), sum(storage.nbytes() for storage in saved.values())


def _cuda_peak_bytes(model: nn.Module, batch_size: int, in_chans: int, size: tuple[int, ...],
                     device: torch.device) -> int:
    """Peak CUDA memory of one real forward + backward, above what the model itself holds."""
    replica = copy.deepcopy(model).to(device).train()
    for param in replica.parameters():
        param.grad = None
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    baseline = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    generator = torch.Generator(device=device).manual_seed(0)
    x = _input(model, batch_size, in_chans, size, device, generator)
    output = replica(x)
    target = torch.zeros(batch_size, dtype=torch.long, device=device)
    loss = nn.functional.cross_entropy(output, target) if output.dim() == 2 else output.float().sum()
    loss.backward()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - baseline
    del replica, x, output, loss
    torch.cuda.empty_cache()
    return int(peak)


# -- the family table with published figures --------------------------------------------------
@dataclass(frozen=True)
class Published:
    """A published figure, kept as written (its decimals set the comparison's tolerance).

    ``params`` in millions, ``macs`` in G multiply–adds; ``params_without_norm``: the figure
    matches our conv + fc weights and not our total with BN's γ/β (He et al. 2016's 10.2 M for
    ResNet-1001: 10.18 M vs 10.33 M), so it is compared with the former.
    """

    params: str | None
    macs: str | None
    source: str
    params_without_norm: bool = False


# Sources: torchvision's weight metadata (num_params; "_ops" = GMACs at 224×224, which its docs
# call GFLOPS), He et al. 2015 Tables 6 and 1 (CIFAR, ImageNet), He et al. 2016 Table 2/3
# (pre-activation), Zagoruyko & Komodakis 2016 (WRN).
PUBLISHED: dict[str, Published] = {
    "resnet18": Published("11.69", "1.814", "torchvision"),
    "resnet34": Published("21.80", "3.664", "torchvision"),
    "resnet50": Published("25.56", "4.089", "torchvision"),
    "resnet101": Published("44.55", "7.801", "torchvision"),
    "resnet152": Published("60.19", "11.514", "torchvision"),
    "resnext50_32x4d": Published("25.03", "4.23", "torchvision"),
    "wide_resnet50_2": Published("68.88", "11.398", "torchvision"),
    "resnet20": Published("0.27", None, "He 2015"),
    "resnet32": Published("0.46", None, "He 2015"),
    "resnet44": Published("0.66", None, "He 2015"),
    "resnet56": Published("0.85", None, "He 2015"),
    "resnet110": Published("1.7", None, "He 2015"),
    "resnet1202": Published("19.4", None, "He 2015"),
    # Option A shortcuts have no parameters, so a plain twin has its residual twin's count.
    "plain20": Published("0.27", None, "= resnet20"),
    "plain32": Published("0.46", None, "= resnet32"),
    "plain44": Published("0.66", None, "= resnet44"),
    "plain56": Published("0.85", None, "= resnet56"),
    "plain110": Published("1.7", None, "= resnet110"),
    "plain1202": Published("19.4", None, "= resnet1202"),
    "preact_resnet110": Published("1.7", None, "He 2016"),
    "preact_resnet164": Published("1.7", None, "He 2016"),
    "preact_resnet1001": Published("10.2", None, "He 2016", params_without_norm=True),
    "wrn_16_8": Published("11.0", None, "Zagoruyko 2016"),
    "wrn_28_10": Published("36.5", None, "Zagoruyko 2016"),
}

# The paper's own ImageNet figures (v1, stride on the first 1×1 of a bottleneck), for the note.
PAPER_2015_GFLOPS = {"resnet18": "1.8", "resnet34": "3.6", "resnet50": "3.8", "resnet101": "7.6", "resnet152": "11.3"}

TABLE_MODELS: dict[str, tuple[str, ...]] = {
    "cifar": (
        "resnet20", "plain20", "resnet32", "plain32", "resnet44", "plain44", "resnet56", "plain56",
        "resnet110", "plain110", "resnet1202", "plain1202",
        "preact_resnet110", "preact_resnet164", "preact_resnet1001", "wrn_16_8", "wrn_28_10",
    ),
    "imagenet": (
        "resnet18", "plain18", "resnet34", "plain34", "resnet50", "plain50", "resnet101", "resnet152",
        "resnext50_32x4d", "wide_resnet50_2", "se_resnet50", "cbam_resnet50",
    ),
}
TABLE_CHOICES = ("cifar", "imagenet", "all")


@dataclass
class TableRow:
    """One model of the family table: our measurements next to the published figures."""

    name: str
    family: str
    input_size: int
    weight_layers: int
    parameters: int
    parameters_without_norm: int
    macs: int
    activation_bytes_per_image: int  # training step at batch 1
    published: Published | None

    @property
    def params_m(self) -> float:
        return self.parameters / 1e6

    def compared_params_m(self) -> float:
        """Our count in the published count's convention."""
        if self.published is not None and self.published.params_without_norm:
            return self.parameters_without_norm / 1e6
        return self.params_m

    @property
    def params_delta_m(self) -> float | None:
        if self.published is None or self.published.params is None:
            return None
        return self.compared_params_m() - float(self.published.params)

    @property
    def params_ok(self) -> bool | None:
        """Agrees to the published precision: within 0.01 M, or half a unit of its last digit."""
        if self.params_delta_m is None:
            return None
        return abs(self.params_delta_m) <= _tolerance(self.published.params, floor=0.01) + 1e-9

    @property
    def macs_delta_pct(self) -> float | None:
        if self.published is None or self.published.macs is None:
            return None
        published = float(self.published.macs) * 1e9
        return 100.0 * (self.macs - published) / published

    @property
    def macs_ok(self) -> bool | None:
        """Within 1 % of the published multiply–adds."""
        if self.macs_delta_pct is None:
            return None
        return abs(self.macs_delta_pct) <= 1.0

    def to_dict(self) -> dict:
        return {
            "name": self.name, "family": self.family, "input_size": self.input_size,
            "weight_layers": self.weight_layers, "parameters": self.parameters, "macs": self.macs,
            "activation_bytes_per_image": self.activation_bytes_per_image,
            "published_params_m": None if self.published is None else self.published.params,
            "published_gmacs": None if self.published is None else self.published.macs,
            "published_source": None if self.published is None else self.published.source,
            "params_delta_m": self.params_delta_m, "params_ok": self.params_ok,
            "macs_delta_pct": self.macs_delta_pct, "macs_ok": self.macs_ok,
        }


def _tolerance(written: str, floor: float) -> float:
    exponent = Decimal(written).as_tuple().exponent
    return max(floor, 0.5 * 10.0**exponent)


def profile_table(which: str = "all", models: Iterable[str] | None = None, progress: bool = False) -> list[TableRow]:
    """Profile the family (``"cifar"``, ``"imagenet"`` or ``"all"``) at its standard input size.

    Every row is one training-mode forward at batch 1 (32×32 for CIFAR models on the CPU,
    224×224 for ImageNet ones on the meta device), giving MACs and activation memory per image.

    Args:
        which: the family to list.
        models: other names instead of the standard list.
        progress: show a tqdm bar (on a terminal only).
    """
    if which not in TABLE_CHOICES:
        raise ConfigError(f"--table must be one of {', '.join(TABLE_CHOICES)}, got {which!r}")
    if models is None:
        families = ("cifar", "imagenet") if which == "all" else (which,)
        models = [name for family in families for name in TABLE_MODELS[family]]
    models = list(models)
    rows = []
    iterator = models
    if progress:
        iterator = tqdm(models, desc="profiling", unit="model", leave=False, disable=not sys.stderr.isatty())
    with _single_thread(True):  # CPU work here is many tiny ops (see _single_thread)
        for name in iterator:
            rows.append(_table_row(name))
    return rows


def _table_row(name: str) -> TableRow:
    """Profile ``name`` at its family's input size, batch 1, beside its published figures."""
    entry = model_info(name)
    # Counts do not depend on the weights' values. Large-image models are counted on meta, so
    # build them there (no memory, no init arithmetic); small ones on the CPU, where
    # initialising real weights costs less than meta's per-op overhead.
    # (A torch.device context intercepts every call, so use none for the CPU.)
    with torch.device("meta") if entry.family == "imagenet" else contextlib.nullcontext():
        model = create_model(name)
    profile = profile_model(model, input_size=entry.default_input_size, batch_size=1)
    without_norm = sum(
        p.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) for p in m.parameters()
    )
    return TableRow(
        name=name, family=_family_of(model, entry.family) or entry.family,
        input_size=entry.default_input_size, weight_layers=profile.weight_layers,
        parameters=profile.parameters, parameters_without_norm=without_norm, macs=profile.macs,
        activation_bytes_per_image=profile.activation_bytes, published=PUBLISHED.get(name),
    )


def _mark(ok: bool | None) -> str:
    return " " if ok is None else ("✓" if ok else "✗")


def format_table(rows: Sequence[TableRow]) -> str:
    """The table as text: one section per family, published figures and differences beside ours."""
    header = (
        f"{'model':<19}{'layers':>7}{'params M':>10}{'published':>11}{'Δ M':>8}    "
        f"{'GMACs':>8}{'published':>11}{'Δ %':>7}    {'act MiB/img':>11}  source"
    )
    out: list[str] = []
    notes: set[str] = set()
    for family, title in (("cifar", "CIFAR-10 networks, 32×32 input"), ("imagenet", "ImageNet networks, 224×224 input")):
        family_rows = [row for row in rows if row.family == family]
        if not family_rows:
            continue
        if out:
            out.append("")
        out += [title, header, "-" * len(header)]
        for row in family_rows:
            pub = row.published
            pub_params = (pub.params + ("*" if pub.params_without_norm else "")) if pub and pub.params else "-"
            # (`or 0.0` turns a rounded -0.0 into 0.0, so no "-0.000" is printed.)
            delta_m = f"{round(row.params_delta_m, 3) or 0.0:+.3f}" if row.params_delta_m is not None else ""
            pub_macs = pub.macs if pub and pub.macs else "-"
            delta_pct = f"{round(row.macs_delta_pct, 2) or 0.0:+.2f}" if row.macs_delta_pct is not None else ""
            source = pub.source if pub else ""
            if row.name in PAPER_2015_GFLOPS:
                notes.add("v15")
                source += "†"
            out.append(
                f"{row.name:<19}{row.weight_layers:>7}{row.params_m:>10.3f}{pub_params:>11}{delta_m:>8} {_mark(row.params_ok)}  "
                f"{row.macs / 1e9:>8.4f}{pub_macs:>11}{delta_pct:>7} {_mark(row.macs_ok)}  "
                f"{row.activation_bytes_per_image / MIB:>11.2f}  {source}".rstrip()
            )
    checked = [ok for row in rows for ok in (row.params_ok, row.macs_ok) if ok is not None]
    out += [
        "",
        "layers: main-path conv + fc layers, the depth in the name (WRN-d-k's d counts all convs, its 3 shortcut "
        "projections included, and not the fc).",
        "GMACs: multiply-accumulates per image, conv + fc only (torch.utils.flop_counter); FLOPs = 2 × MACs.",
        "act MiB/img: tensors saved for backward by one training step at batch 1 (inputs included).",
        "✓/✗: params within 0.01 M (or half a unit of the published figure's last digit); MACs within 1 %.",
    ]
    if "v15" in notes:
        papers = "/".join(PAPER_2015_GFLOPS.values())
        out.append(
            f"† He et al. 2015 (Table 1) quote {papers} G \"FLOPs\" (multiply-adds) for ResNet-18/34/50/101/152. "
            "Their bottleneck nets are v1 (stride on the first 1×1 conv); ours are v1.5 (stride on the 3×3 conv), "
            "as in torchvision, which costs more (4.09 vs 3.8 G for ResNet-50)."
        )
    for row in rows:
        if row.published is not None and row.published.params_without_norm:
            out.append(
                f"* {row.published.source}'s {row.published.params} M for {row.name} matches our conv + fc weights "
                f"({row.parameters_without_norm / 1e6:.2f} M), so it is compared with those; with BN's γ/β we have "
                f"{row.params_m:.2f} M."
            )
    out.append(f"{sum(checked)} of {len(checked)} published figures agree.")
    return "\n".join(out)
