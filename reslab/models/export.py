"""Export a model to ONNX (optional extra: ``pip install 'reslab[onnx]'``).

>>> from reslab.models.export import export_onnx
>>> export_onnx(reslab.create_model("resnet20"), "resnet20.onnx", input_size=32, in_chans=3)

The graph takes ``input: (N, in_chans, H, W)`` float32 with a dynamic batch ``N`` and returns
``logits: (N, num_classes)``; the model is exported in eval mode (BN uses its running
statistics, dropout and drop-path are off). A token model (transformer, LSTM, GRU) takes
``tokens: (N, T)`` int64 with dynamic ``N`` and ``T`` (up to its context) and returns ``logits:
(N, T, V)``; a vector model (``resmlp{d}``) takes the images it flattens (see :mod:`reslab.models.inputs`).
"""

from __future__ import annotations

import copy
import importlib.util
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from reslab.errors import ConfigError, ModelConfigError, ReslabError
from reslab.models.inputs import (
    TOKENS,
    context_of,
    default_size,
    example_input,
    input_kind,
    is_recurrent,
    sequence_length,
)
from reslab.models.registry import model_info
from reslab.utils import atomic_write_bytes

# protobuf cannot serialise a single message of 2 GiB or more.
_PROTOBUF_LIMIT = 2**31 - 1


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    input_size: int | Sequence[int],
    in_chans: int | None = None,
    opset: int | None = None,
) -> Path:
    """Write ``model`` as one self-contained ONNX file at ``path`` (atomically).

    Args:
        model: the network; it is not changed (a copy is put in eval mode on the CPU).
        path: the ``.onnx`` file to write (weights inside it, no external data file).
        input_size: image side ``N`` or ``(H, W)`` used to trace the graph, or a token model's
            sequence length; the batch (and a token model's length) stays dynamic.
        in_chans: input channels (default: the model's ``in_chans``, else 3; none for a token model).
        opset: ONNX opset version (default: the exporter's).

    Returns:
        The path written.

    Raises:
        ConfigError: onnx/onnxscript are not installed, bad sizes, or the model is too large.
        ModelConfigError: ``in_chans`` contradicts the model.
    """
    # onnx/onnxscript are an optional extra (heavy): only looked up here; torch.onnx imports them when exporting.
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"ONNX export needs the package(s) {', '.join(missing)}, which are not installed; "
            "install the optional extra with: pip install 'reslab[onnx]'"
        )
    tokens = input_kind(model) == TOKENS
    if not tokens:
        _check_in_chans(model, in_chans)
    example = _trace_input(model, input_size, in_chans)
    exported = _eval_copy(model)
    # torch's own deprecation notes about its internals (an LSTM's export prints a screenful) tell
    # the user nothing about the file, which the caller checks against the model.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        program = torch.onnx.export(
            exported, (example,), dynamo=True, verbose=False, opset_version=opset,
            input_names=["tokens" if tokens else "input"], output_names=["logits"],
            dynamic_shapes=_dynamic_shapes(model),
        )
    proto = program.model_proto  # serialised anew at every access: fix and write this one
    if tokens:
        _free_output_length(proto)
    data = proto.SerializeToString() if proto.ByteSize() < _PROTOBUF_LIMIT else None
    if data is None:
        raise ConfigError("the model is larger than 2 GiB, which a single ONNX file cannot hold")
    path = Path(path)
    atomic_write_bytes(path, data)
    return path


def _check_in_chans(model: nn.Module, in_chans: int | None) -> None:
    model_chans = getattr(model, "in_chans", None)
    if in_chans is not None and model_chans is not None and in_chans != model_chans:
        raise ModelConfigError(f"in_chans={in_chans} does not match the model, which takes {model_chans} channels")


def trace_length(model: nn.Module, input_size) -> int:
    """The sequence length to trace a token model at: at least 2, since torch.export fixes a
    dimension it sees at size 1 (so a length traced at 1 could not stay free)."""
    length = sequence_length(model, input_size)
    context = context_of(model)
    # Only the bump to 2 is capped: a length past the context is the model's own error, in one line.
    return min(2, context) if length == 1 and context is not None else max(2, length)


def _trace_input(model: nn.Module, input_size, in_chans: int | None = None) -> torch.Tensor:
    """The zeros every exporter traces with: a batch of 2 (so the batch stays free)."""
    if input_kind(model) == TOKENS:
        return example_input(model, trace_length(model, input_size), in_chans)
    return example_input(model, input_size, in_chans)


def _dynamic_shapes(model: nn.Module) -> tuple[dict, ...]:
    """The free dimensions: the batch, and a token model's length (bounded by its context)."""
    free = {0: torch.export.Dim("batch", min=1)}
    if input_kind(model) == TOKENS:
        context = context_of(model)
        free[1] = torch.export.Dim("length", min=1, max=context) if context is not None \
            else torch.export.Dim("length", min=1)
    return (free,)


def _free_output_length(proto) -> None:
    """Make the graph say the logits' length is the input's.

    The ONNX exporter records an LSTM's output length as the length it traced, although the LSTM
    op it emits takes any length (the check at another length computes the right logits); ONNX
    Runtime then warns on every call whose length differs. The recorded intermediate shapes carry
    the traced length too and are only hints, so they go.
    """
    length = proto.graph.input[0].type.tensor_type.shape.dim[1]
    for output in proto.graph.output:
        dims = output.type.tensor_type.shape.dim
        if len(dims) >= 2 and length.dim_param and dims[1].dim_param != length.dim_param:
            dims[1].Clear()
            dims[1].dim_param = length.dim_param
    del proto.graph.value_info[:]


# -- TorchScript and torch.export, and the check every format gets -------------------------------
EXPORT_FORMATS = ("onnx", "torchscript", "exported-program")
DEFAULT_SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "exported-program": ".pt2"}
#: The suffixes that say which format a file holds; a file named with another format's suffix is refused.
FORMAT_SUFFIXES = {"onnx": (".onnx",), "torchscript": (".pt", ".pth", ".torchscript"), "exported-program": (".pt2",)}
_FORMAT_NAMES = {"onnx": "an ONNX", "torchscript": "a TorchScript", "exported-program": "an ExportedProgram"}


def check_output_suffix(path: str | os.PathLike, fmt: str, flag: str | None = "-o") -> None:
    """ConfigError when ``path``'s suffix belongs to another format than ``fmt`` (TorchScript under
    ``.onnx``), or when ``fmt`` is ``exported-program`` and ``path`` does not end in ``.pt2`` (the one
    suffix ``torch.export.load`` reads). Other suffixes are the user's choice. ``flag`` names the
    argument in the message."""
    if fmt not in FORMAT_SUFFIXES:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    path = Path(path)
    named = f"{flag} {path}" if flag else str(path)
    suffix = path.suffix.lower()
    wanted = path.with_name((path.name[:-len(path.suffix)] if path.suffix else path.name) + DEFAULT_SUFFIX[fmt])
    if fmt == "exported-program" and suffix != ".pt2":
        raise ConfigError(f"{named}: an ExportedProgram file must end in .pt2 (torch.export.load reads only those); "
                          f"name it {wanted}")
    owner = next((other for other, suffixes in FORMAT_SUFFIXES.items() if suffix in suffixes), fmt)
    if owner != fmt:
        asked, instead = (f"--format is {fmt}", f"pass --format {owner}") if flag else (f"the format is {fmt!r}",
                                                                                      f"export as {owner!r}")
        raise ConfigError(f"{named}: the suffix {path.suffix} says {_FORMAT_NAMES[owner]} file, but {asked}; name "
                          f"the file {wanted}, or {instead}")


def default_input_size(model: nn.Module, name: str | None = None) -> int | tuple[int, int]:
    """The size to trace ``model`` at when none is given: for a token model its context (the
    sequence length; the registry's default where it has none), for a vector model the image size
    it was built for, else the image side of its family — 32 for CIFAR networks (ResNets,
    DenseNets, U-Nets on a CIFAR encoder), 224 for ImageNet ones, the registry's default for other
    families (64 for a U-Net on an ImageNet encoder)."""
    own = default_size(model, name)
    if own is not None:
        return own
    spec = getattr(model, "spec", None)
    if spec is not None:
        return 32 if spec.stem == "cifar" else 224
    encoder = getattr(model, "encoder_name", None)
    name = name or getattr(model, "model_name", None)
    try:
        if encoder is not None and model_info(encoder).family == "cifar":
            return 32
        return int(model_info(name).default_input_size) if name else 224
    except ModelConfigError:
        return 224


def _eval_copy(model: nn.Module) -> nn.Module:
    """A copy in eval mode on the CPU: neither may leak into the caller's model."""
    copied = copy.deepcopy(model).cpu().eval()
    # Checkpointing only acts in training, but keep the traced graph free of it regardless.
    if hasattr(copied, "activation_checkpointing"):
        copied.activation_checkpointing = False
    return copied


def export_torchscript(model: nn.Module, path: str | os.PathLike, input_size, in_chans: int | None = None) -> Path:
    """Write ``model`` (eval mode, CPU) as a traced TorchScript file, loadable with
    ``torch.jit.load`` without reslab; the batch size stays free (no shape is baked in)."""
    example = _trace_input(model, input_size, in_chans)
    copied = _eval_copy(model)
    with torch.no_grad(), warnings.catch_warnings():
        # TorchScript is deprecated upstream in favour of torch.export; users who still deploy
        # with torch.jit.load asked for it by name.
        warnings.simplefilter("ignore", FutureWarning)
        # The tracer warns that shapes it reads become constants; where that would matter (the
        # batch, a token model's length) the check on another batch and length catches it.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(copied, example, check_trace=False)
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        buffer = _to_bytes(lambda handle: torch.jit.save(traced, handle))
    atomic_write_bytes(path, buffer)
    return path


def export_program(model: nn.Module, path: str | os.PathLike, input_size, in_chans: int | None = None) -> Path:
    """Write ``model`` as a ``torch.export`` ExportedProgram (``.pt2``, ``torch.export.load``),
    with a dynamic batch dimension."""
    path = Path(path)
    check_output_suffix(path, "exported-program", flag=None)
    _refuse_format(model, "exported-program")
    example = _trace_input(model, input_size, in_chans)
    copied = _eval_copy(model)
    with torch.no_grad():
        program = torch.export.export(copied, (example,), dynamic_shapes=_dynamic_shapes(model))
    atomic_write_bytes(path, _to_bytes(lambda handle: torch.export.save(program, handle)))
    return path


def _to_bytes(write) -> bytes:
    handle = io.BytesIO()
    write(handle)
    return handle.getvalue()


def export_model(model: nn.Module, path: str | os.PathLike, fmt: str, input_size, in_chans: int | None = None) -> Path:
    """Export in ``fmt`` (one of :data:`EXPORT_FORMATS`) to ``path``, whose suffix must not be another
    format's (:func:`check_output_suffix`)."""
    check_output_suffix(path, fmt, flag=None)
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    _refuse_format(model, fmt)
    # One eager forward first: an input the model refuses (a size a U-Net cannot pool, a sequence
    # longer than a transformer's context) is the model's own one-line error here, not wrapped
    # deep inside an exporter's traceback.
    with torch.no_grad():
        _eval_copy(model)(_trace_input(model, input_size, in_chans)[:1])
    exporter = {"onnx": export_onnx, "torchscript": export_torchscript, "exported-program": export_program}[fmt]
    try:
        return exporter(model, path, input_size, in_chans)
    except ReslabError:
        raise
    except Exception as exc:  # noqa: BLE001 - an exporter's failure is a limit of that format for this model
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        others = ", ".join(f for f in formats_for(model) if f != fmt) or "none"
        raise ConfigError(f"{_kind_words(model)} could not be exported as {fmt} ({type(exc).__name__}: {first}); "
                          f"formats that take it: {others}") from None


def formats_for(model: nn.Module) -> tuple[str, ...]:
    """The formats ``model``'s kind can be exported in with its free dimensions kept free."""
    if input_kind(model) == TOKENS and is_recurrent(model):
        return ("onnx", "torchscript")
    return EXPORT_FORMATS


def _kind_words(model: nn.Module) -> str:
    name = getattr(model, "model_name", type(model).__name__)
    if input_kind(model) == TOKENS:
        cells = sorted({type(m).__name__ for m in model.modules() if isinstance(m, nn.RNNBase)})
        return f"{name} (a {'/'.join(cells)} language model)" if cells else f"{name} (a transformer language model)"
    return f"{name} ({input_kind(model)} model)"


def _refuse_format(model: nn.Module, fmt: str) -> None:
    """ConfigError, in one line, for a format that cannot take the model's kind."""
    if fmt in formats_for(model):
        return
    raise ConfigError(f"{_kind_words(model)} cannot be exported as {fmt}: torch.export fixes a recurrent layer's "
                      f"sequence length at the traced one, so the file would take only that length; use --format "
                      f"{' or --format '.join(formats_for(model))}, which keep the length free")


def run_exported(path: str | os.PathLike, fmt: str, x: torch.Tensor) -> torch.Tensor:
    """Run an exported file on ``x`` the way a deployment would: ONNX Runtime for ONNX,
    ``torch.jit.load`` / ``torch.export.load`` for the others."""
    if fmt == "onnx":
        if importlib.util.find_spec("onnxruntime") is None:
            raise ConfigError("checking an ONNX file needs onnxruntime, which is not installed: "
                              "pip install 'reslab[onnx]' (or pass --no-check)")
        import onnxruntime  # noqa: PLC0415

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings are coloured log lines on stderr
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        return torch.from_numpy(out)
    with torch.no_grad():
        if fmt == "torchscript":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                return torch.jit.load(str(path), map_location="cpu")(x)
        return torch.export.load(str(path)).module()(x)


def output_scale(reference: torch.Tensor) -> float:
    """``max(1, largest |output|)``: what an fp32 difference is measured against.

    Absolute for outputs up to 1, relative to the largest output beyond: re-ordered float32 sums in
    a deep network differ by about 1e-6 of the output's size (1.2e-4 on a fresh ResNet-50's logits
    of 98, 1.4e-4 on a U-Net's of 43, measured), which is rounding, not a wrong export or path.
    ``reslab export`` and ``reslab bench infer`` both pass a difference up to ``tolerance`` times it.
    """
    return max(1.0, float(reference.detach().abs().max())) if reference.numel() else 1.0


@dataclass(frozen=True)
class ExportCheck:
    """The exported file against the model: the largest absolute difference of their outputs, and
    the largest |output| of the model (what :func:`output_scale` measures the difference against)."""

    max_abs_diff: float
    largest_output: float

    @property
    def scale(self) -> float:
        return max(1.0, self.largest_output)

    @property
    def relative(self) -> float:
        """The difference as a share of the largest |output| (of 1 where the outputs are smaller)."""
        return self.max_abs_diff / self.scale

    def passed(self, tolerance: float) -> bool:
        return self.max_abs_diff <= tolerance * self.scale


def check_length(model: nn.Module, input_size) -> int:
    """The sequence length a token model's file is checked at: one other than the traced length,
    to test that it is free (within the context)."""
    traced = trace_length(model, input_size)
    context = context_of(model)
    return traced + 1 if traced < 3 and (context is None or traced < context) else traced - 1


def check_export(model: nn.Module, path: str | os.PathLike, fmt: str, input_size, in_chans: int | None = None,
                 batch: int = 3, seed: int = 0) -> ExportCheck:
    """The exported file against the model (eval mode) on a random batch of ``batch`` inputs — a
    batch size other than the one traced, and for a token model another sequence length
    (:func:`check_length`), to test that they are free."""
    generator = torch.Generator().manual_seed(seed)
    if input_kind(model) == TOKENS:
        x = example_input(model, check_length(model, input_size), in_chans, batch, generator)
    else:
        x = example_input(model, input_size, in_chans, batch, generator)
    with torch.no_grad():
        expected = _eval_copy(model)(x)
    got = run_exported(path, fmt, x)
    if got.shape != expected.shape:
        raise ConfigError(f"the exported {fmt} file gives shape {tuple(got.shape)} for an input {tuple(x.shape)}, "
                          f"the model {tuple(expected.shape)}")
    return ExportCheck(max_abs_diff=float((got - expected).abs().max()),
                       largest_output=float(expected.abs().max()) if expected.numel() else 0.0)
