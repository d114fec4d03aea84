"""Fast CPU inference: every optimisation of a trained network, measured side by side.

:func:`build_path` turns a model into one of :data:`PATHS`, a callable on normalised images
``(N, C, H, W)`` float32 that returns logits:

=====================  ==========================================================================
``eager``              the model in eval mode under ``torch.inference_mode`` (the reference)
``bn-fold``            conv → BN pairs folded into the convs (:mod:`reslab.models.fusion`, with
                       ``torch.nn.utils.fusion.fuse_conv_bn_weights``; exact up to rounding)
``bn-fold+cl``         the same in channels-last memory format (oneDNN's preferred layout)
``compile``            ``torch.compile`` (inductor) with ``freezing`` (weights become constants, BN
                       folded, oneDNN convolutions prepacked with ReLU and addition fused), channels-last
``ort-fp32``           the ONNX export run by ONNX Runtime (all graph optimisations)
``int8-pt2e``          post-training int8 quantisation: ``torch.export`` → torchao's PT2E with the x86
                       inductor quantizer (static, per-channel weights), calibrated on training
                       images, compiled by inductor with freezing (oneDNN int8 kernels: VNNI/AMX;
                       torchao's ``lower_pt2e_quantized_to_x86`` where inductor fails)
``int8-ort``           ONNX Runtime's ``quantize_static`` (QDQ, per-channel s8 weights, u8 activations)
                       calibrated on the same images
=====================  ==========================================================================

:func:`bench_inference` measures each path's latency at batch 1, throughput at batch 16, largest
output difference from eager and top-1 agreement with eager; a path *passes* when its outputs are
within ``fp32_tolerance`` of eager's (times the largest eager logit where that exceeds 1: fp32 paths)
or its agreement is at least ``int8_agreement`` (int8).
``reslab bench infer`` prints the table; ``reslab predict --fast`` uses the fastest passing path
for the same weights (:func:`weights_fingerprint`), loading the files kept in the run (:func:`fast_model`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.util
import math
import os
import re
import shutil
import statistics
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from reslab.errors import CheckpointError, ConfigError
from reslab.models import fusion
from reslab.models.export import output_scale
from reslab.store.jsonfiles import read_json
from reslab.utils import atomic_path
from reslab.utils.cpu import cpu_features, describe_cpu, has_vnni, matmul_rate

PATHS = ("eager", "bn-fold", "bn-fold+cl", "compile", "ort-fp32", "int8-pt2e", "int8-ort")
INT8_PATHS = ("int8-pt2e", "int8-ort")
#: The paths a token model (transformer, LSTM, GRU) takes: it has no conv → BN pairs to fold and no
#: channels to lay out last, and the int8 paths calibrate an image classifier's convolutions.
TOKEN_PATHS = ("eager", "compile", "ort-fp32")
#: An ANSI escape sequence (colours), which some libraries put in their messages even off a terminal.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: What each path needs beyond torch (an optional package), for a clear message when it is missing.
_NEEDS = {"ort-fp32": ("onnxruntime", "onnx", "onnxscript"), "int8-ort": ("onnxruntime", "onnx", "onnxscript"),
          "int8-pt2e": ("torchao",)}

Runner = Callable[[torch.Tensor], torch.Tensor]


class PathUnavailable(Exception):
    """A path this machine or environment cannot run (a package or CPU feature is missing)."""


# -- building each path ---------------------------------------------------------------------------
def _eval_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).to("cpu", torch.float32).eval()


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """A CPU float32 copy of ``model`` (eval mode) whose conv → BN pairs are folded into the convs
    (:func:`reslab.models.fusion.fold_batch_norms`).

    ``torch.fx`` cannot trace every model: a U-Net checks its input size with ``int(x.shape[-1])``,
    an MLP checks its input's features in an ``if``. Such a model's parts are folded one by one
    instead (a U-Net's ResNet encoder and decoder blocks trace), and its own forward, checks
    included, stays as it is. A model with no conv → BN pair left (an MLP's Linear → BatchNorm1d)
    runs as eager does.
    """
    return _fold_parts(_eval_copy(model))


def _fold_parts(module: nn.Module) -> nn.Module:
    """``module`` folded whole where fx traces it, else with each child folded the same way."""
    if not any(isinstance(m, nn.BatchNorm2d) for m in module.modules()) or not any(module.children()):
        return module  # nothing to fold: keep the module itself rather than a graph of it
    try:
        folded = fusion.fold_batch_norms(module)
    except Exception:  # noqa: BLE001 - fx raises many types on data-dependent control flow; fold the parts
        for name, child in list(module.named_children()):
            setattr(module, name, _fold_parts(child))
        return module
    batch_norms = lambda m: sum(isinstance(x, nn.BatchNorm2d) for x in m.modules())  # noqa: E731
    return folded if batch_norms(folded) < batch_norms(module) else module


def _no_grad_runner(module: nn.Module, channels_last: bool = False) -> Runner:
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(x.contiguous(memory_format=fmt))
    return run


def _compiled_runner(module: nn.Module, channels_last: bool = True) -> Runner:
    from torch._inductor import config as inductor_config  # noqa: PLC0415 - heavy, only for this path

    module = module.to(memory_format=torch.channels_last) if channels_last else module
    # freezing: parameters become constants, so inductor folds BN into the convs, prepacks oneDNN
    # weights and fuses ReLU and the residual addition into them (mkldnn._convolution_pointwise).
    # torch.compile(options={"freezing": True}) does not reach the freezing pass in torch 2.14 (the
    # weights stay graph inputs and the convs plain aten calls, measured), so the setting is patched
    # around every call, which also covers recompiles for a new batch size.
    compiled = torch.compile(module)
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), inductor_config.patch(freezing=True):
            return compiled(x.contiguous(memory_format=fmt))
    return run


def _ort_session(path: Path, threads: int):
    import onnxruntime as ort  # noqa: PLC0415 - optional extra

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Errors only: ONNX Runtime's warnings are coloured log lines on stderr (escape codes in a file or pipe).
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {name: x.contiguous().numpy()})[0])
    return run


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over a list of batches."""

    def __init__(self, batches: Sequence[torch.Tensor], name: str) -> None:
        self._batches = iter([{name: b.contiguous().numpy()} for b in batches])

    def get_next(self):
        return next(self._batches, None)


def _int8_pt2e(model: nn.Module, example: torch.Tensor, calibration: Sequence[torch.Tensor]) -> Runner:
    from torch._inductor import config as inductor_config  # noqa: PLC0415 - heavy, only for this path
    from torchao.quantization.pt2e.lowering import lower_pt2e_quantized_to_x86  # noqa: PLC0415 - optional extra
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e  # noqa: PLC0415
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (  # noqa: PLC0415
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.no_grad():
        graph = torch.export.export(_eval_copy(model), (example,), dynamic_shapes=({0: batch},)).module()
        quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(graph, quantizer)
        for images in calibration:
            prepared(images)
        converted = convert_pt2e(prepared)
    # Inductor with freezing: int8 weights prepacked for oneDNN's VNNI/AMX kernels, q/dq pairs fused
    # into the convs, and the elementwise work between them generated as C++ (1.4x torchao's
    # lower_pt2e_quantized_to_x86 on ResNet-56, measured). The lowering is the fallback when
    # inductor cannot compile the graph.
    compiled = torch.compile(converted)

    def run_compiled(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), inductor_config.patch(freezing=True), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return compiled(x.contiguous())
    try:
        run_compiled(example)
        return run_compiled
    except Exception as exc:  # noqa: BLE001 - any inductor failure leaves the slower lowering
        fallback = (f"torch.compile failed ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}); "
                    "using torchao's lower_pt2e_quantized_to_x86")
    # the lowering specialises on the batch size: one lowered graph per size.
    lowered: dict[tuple[int, ...], nn.Module] = {}

    def run(x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        with torch.no_grad():
            if tuple(x.shape) not in lowered:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    lowered[tuple(x.shape)] = lower_pt2e_quantized_to_x86(converted, (x,))
            return lowered[tuple(x.shape)](x)
    run.note = fallback  # type: ignore[attr-defined] - bench_inference reports it
    return run


#: Memory ONNX Runtime's calibration may use: it keeps every intermediate output of every calibration
#: batch until the end (its ``CalibMaxIntermediateOutputs`` option drops, rather than merges, full chunks).
ORT_CALIBRATION_BYTES = 3 * 2**30


def activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of every leaf module's output for one image of ``x`` (float32)."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * 4

    model = _eval_copy(model)
    handles = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for handle in handles:
            handle.remove()
    return total


def ort_calibration_images(model: nn.Module, example: torch.Tensor, wanted: int) -> int:
    """How many calibration images ONNX Runtime's calibration holds in :data:`ORT_CALIBRATION_BYTES`."""
    per_image = max(1, activation_bytes(model, example))
    return max(1, min(wanted, ORT_CALIBRATION_BYTES // per_image))


#: The files the ONNX Runtime paths build in their ``workdir`` (and find there again: see :func:`build_path`).
ONNX_FILE = "model.onnx"
INT8_ONNX_FILE = "model.int8.onnx"


def _int8_ort(fp32_path: Path, workdir: Path, calibration: Sequence[torch.Tensor], threads: int) -> Runner:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static  # noqa: PLC0415
    from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: PLC0415

    int8 = workdir / INT8_ONNX_FILE
    # Quantised in a scratch folder and renamed into place: a kept workdir never holds half a file.
    with tempfile.TemporaryDirectory(prefix=".int8-", dir=workdir) as scratch:
        prepared, built = Path(scratch) / "model.pre.onnx", Path(scratch) / INT8_ONNX_FILE
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        import onnx  # noqa: PLC0415

        name = onnx.load(str(prepared), load_external_data=False).graph.input[0].name
        # u8 activations × s8 weights: the combination VNNI's instructions (and ORT's fast kernels) take.
        quantize_static(str(prepared), str(built), _Calibration(calibration, name), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
        os.replace(built, int8)
    return _ort_session(int8, threads)


def build_path(name: str, model: nn.Module, example: torch.Tensor, calibration: Sequence[torch.Tensor],
               workdir: Path, threads: int | None = None) -> Runner:
    """The runner of path ``name`` (see the module doc); raises PathUnavailable when it cannot be built.

    The ONNX Runtime paths write their files (:data:`ONNX_FILE`, :data:`INT8_ONNX_FILE`) in
    ``workdir`` and use the ones already there instead of exporting or calibrating again: a
    ``workdir`` kept for one model's weights and input shape (:func:`artefact_dir`) makes them
    load in a fraction of a second."""
    if name not in PATHS:
        raise ConfigError(f"unknown inference path {name!r}; paths are {', '.join(PATHS)}")
    missing = [p for p in _NEEDS.get(name, ()) if importlib.util.find_spec(p) is None]
    if missing:
        extra = "onnx" if "onnxruntime" in missing or "onnx" in missing else "infer"
        raise PathUnavailable(f"needs {', '.join(missing)} (pip install 'reslab[{extra}]')")
    threads = threads or torch.get_num_threads()
    if name == "eager":
        return _no_grad_runner(_eval_copy(model))
    if name == "bn-fold":
        return _no_grad_runner(fold_batch_norms(model))
    if name == "bn-fold+cl":
        return _no_grad_runner(fold_batch_norms(model).to(memory_format=torch.channels_last), channels_last=True)
    if name == "compile":
        # channels-last is a layout of 4-d images; token ids (N, T) have none
        return _compiled_runner(_eval_copy(model), channels_last=example.ndim == 4)
    if name in ("ort-fp32", "int8-ort"):
        from reslab.models.export import export_onnx  # noqa: PLC0415

        if name == "int8-ort" and (workdir / INT8_ONNX_FILE).is_file():
            return _ort_session(workdir / INT8_ONNX_FILE, threads)
        fp32 = workdir / ONNX_FILE
        if not fp32.is_file():
            with warnings.catch_warnings(), contextlib.redirect_stdout(None):
                warnings.simplefilter("ignore")
                if _reads_tokens(example):
                    export_onnx(model, fp32, int(example.shape[1]))
                else:
                    export_onnx(model, fp32, tuple(example.shape[-2:]), int(example.shape[1]))
        if name == "ort-fp32":
            return _ort_session(fp32, threads)
        images = torch.cat(list(calibration)) if calibration else example
        count = ort_calibration_images(model, example, images.shape[0])
        return _int8_ort(fp32, workdir, list(images[:count].split(example.shape[0])), threads)
    return _int8_pt2e(model, example, calibration)


def _reads_tokens(x: torch.Tensor) -> bool:
    """Whether ``x`` is a batch of token ids ``(N, T)`` rather than images ``(N, C, H, W)``."""
    return x.ndim == 2 and not x.is_floating_point()


def plain_text(message: str) -> str:
    """``message`` without ANSI escape sequences (what a table or a record may hold)."""
    return _ANSI.sub("", message)


# -- measuring ------------------------------------------------------------------------------------
@dataclass
class PathResult:
    """One path's measurements: ``latency_ms`` (median, batch 1), ``throughput`` (images/s, batch
    ``batch``), ``max_abs_diff`` from eager and ``agreement`` (top-1, fraction) over the check images."""

    name: str
    precision: str
    latency_ms: float | None = None
    throughput: float | None = None
    max_abs_diff: float | None = None
    agreement: float | None = None
    passed: bool = False
    build_s: float | None = None
    error: str | None = None
    calibration_images: int | None = None  # int8: the images it was calibrated on


@dataclass
class InferenceBench:
    """All paths of one model, with the settings and the CPU they were measured on."""

    model: str
    input_shape: list[int]
    batch: int
    threads: int
    check_images: int
    check_source: str
    calibration_images: int
    fp32_tolerance: float
    int8_agreement: float
    cpu: str
    cpu_features: dict[str, bool]
    gflops_per_image: float | None = None  # forward FLOPs (torch.utils.flop_counter), in GFLOP
    peak_fp32_gflops: float | None = None  # the machine's measured fp32 matmul rate, same threads
    output_scale: float = 1.0  # max(1, largest |eager logit|): fp32 paths pass within fp32_tolerance times it
    weights_fingerprint: str | None = None  # of the weights measured (weights_fingerprint): predict --fast checks it
    results: list[PathResult] = field(default_factory=list)

    def percent_of_peak(self, result: PathResult) -> float | None:
        """The path's FLOP rate at batch ``batch`` as a share of the fp32 matmul peak (int8 paths too:
        how far past the fp32 ceiling quantisation goes)."""
        if not (result.throughput and self.gflops_per_image and self.peak_fp32_gflops):
            return None
        return 100 * result.throughput * self.gflops_per_image / self.peak_fp32_gflops

    def result(self, name: str) -> PathResult | None:
        return next((r for r in self.results if r.name == name), None)

    def fastest(self, passed_only: bool = True, metric: str = "throughput") -> PathResult | None:
        """The path with the highest throughput (or lowest latency) among those that passed."""
        candidates = [r for r in self.results if (r.passed or not passed_only) and getattr(r, metric) is not None]
        if not candidates:
            return None
        return (max if metric == "throughput" else min)(candidates, key=lambda r: getattr(r, metric))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        fastest = self.fastest()
        data["fastest"] = fastest.name if fastest else None
        data["fastest_latency"] = (self.fastest(metric="latency_ms") or PathResult("", "")).name or None
        return data

    def table(self) -> str:
        eager, ort = self.result("eager"), self.result("ort-fp32")
        ort_int8 = self.result("int8-ort")

        def ratio(value, reference, inverse=False):
            if value is None or reference is None or not reference:
                return "–"
            return f"{(reference / value if inverse else value / reference):.2f}x"

        unit = "seq/s" if len(self.input_shape) == 1 else "img/s"
        header = (f"{'path':<12} {'prec':<5} {'batch 1 ms':>10} {'x eager':>8} {'x ORT':>7} {f'batch {self.batch} {unit}':>15} "
                  f"{'x eager':>8} {'x ORT':>7} {'% peak':>6} {'max |diff|':>10} {'top-1 agree':>11} {'check':>6}")
        item = "sequence" if len(self.input_shape) == 1 else "image"
        int8 = any(r.name in INT8_PATHS for r in self.results)
        peak = (f"; {self.gflops_per_image:.3f} GFLOP per {item}, fp32 matmul peak {self.peak_fp32_gflops:.0f} GFLOP/s "
                "(% peak: the path's FLOP rate at the throughput batch as a share of it)"
                if self.gflops_per_image and self.peak_fp32_gflops else "")
        lines = [f"{self.model}, input {tuple(self.input_shape)}, {self.threads} threads; CPU: {self.cpu}{peak}",
                 f"agreement and differences vs eager on {self.check_images} {item}s ({self.check_source}); "
                 + (f"int8 calibrated on {self.calibration_images} training {item}s; " if int8 else "")
                 + f"check: fp32 within {self.fp32_tolerance:g} x max(1, largest |logit| = {self.output_scale:.3g})"
                 + (f", int8 top-1 agreement >= {100 * self.int8_agreement:g}%" if int8 else ""),
                 header, "-" * len(header)]
        for r in self.results:
            if r.error:
                lines.append(f"{r.name:<12} {r.precision:<5} skipped: {plain_text(r.error)}")
                continue
            ort_ref = ort
            lines.append(
                f"{r.name:<12} {r.precision:<5} {_num(r.latency_ms, 2):>10} "
                f"{ratio(r.latency_ms, eager.latency_ms if eager else None, inverse=True):>8} "
                f"{ratio(r.latency_ms, ort_ref.latency_ms if ort_ref else None, inverse=True):>7} "
                f"{_num(r.throughput, 1):>15} {ratio(r.throughput, eager.throughput if eager else None):>8} "
                f"{ratio(r.throughput, ort_ref.throughput if ort_ref else None):>7} "
                f"{_num(self.percent_of_peak(r), 0):>6} {_sci(r.max_abs_diff):>10} {_pct(r.agreement):>11} {'pass' if r.passed else 'FAIL':>6}")
        for r in self.results:
            if r.calibration_images is not None and r.calibration_images < self.calibration_images:
                lines.append(f"{r.name} was calibrated on {r.calibration_images} of the {self.calibration_images} images "
                             "(ONNX Runtime's calibration keeps every activation of every image in memory)")
        fastest = self.fastest()
        if fastest is not None:
            lines.append(f"fastest passing path at batch {self.batch}: {fastest.name}")
        if ort_int8 is not None and ort_int8.throughput and self.result("int8-pt2e") is not None:
            pt2e = self.result("int8-pt2e")
            if pt2e.throughput:
                lines.append(f"int8-pt2e vs int8-ort at batch {self.batch}: {pt2e.throughput / ort_int8.throughput:.2f}x")
        return "\n".join(lines)


def _num(value, digits):
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and math.isfinite(value) else "–"


def _sci(value):
    return f"{value:.1e}" if isinstance(value, (int, float)) and math.isfinite(value) else "–"


def _pct(value):
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) else "–"


def time_call(run: Runner, x: torch.Tensor, min_time: float = 1.0, min_repeats: int = 5, warmup: int = 3) -> float:
    """Median seconds of ``run(x)`` over at least ``min_repeats`` calls and ``min_time`` seconds."""
    for _ in range(warmup):
        run(x)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeats or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t0)
        if len(times) >= 1000:
            break
    return statistics.median(times)


def _predict_all(run: Runner, images: torch.Tensor, batch: int) -> torch.Tensor:
    """Outputs for all ``images`` in batches of exactly ``batch`` (the last one padded, then trimmed), so
    paths that specialise on the shape (compile, int8-pt2e) build once."""
    outputs = []
    for start in range(0, images.shape[0], batch):
        chunk = images[start:start + batch]
        count = chunk.shape[0]
        if count < batch:
            chunk = _batch_of(chunk, batch)
        outputs.append(run(chunk)[:count].float())
    return torch.cat(outputs)


def bench_inference(model: nn.Module, check_images: torch.Tensor, calibration: torch.Tensor, *,
                    paths: Sequence[str] = PATHS, batch: int = 16, min_time: float = 1.0,
                    fp32_tolerance: float = 1e-4, int8_agreement: float = 0.99, model_name: str | None = None,
                    check_source: str = "", measure_peak: bool = True,
                    say: Callable[[str], None] | None = None, keep: Path | None = None) -> InferenceBench:
    """Build and measure every path in ``paths`` (``eager`` is always measured first, as the reference).

    check_images: normalised images ``(N, C, H, W)`` float32 for the output check and agreement, or
        a token model's int64 ids ``(N, T)`` (its paths are :data:`TOKEN_PATHS`; agreement is over
        every position's next-token prediction).
    calibration: normalised training images for the int8 paths (a few hundred).
    keep: a run directory: the files the ONNX Runtime paths built (the ones measured) are kept in
        its ``inference/FINGERPRINT-CxHxW/`` (:func:`artefact_dir`), where ``predict --fast`` loads
        them instead of building them again.
    """
    say = say or (lambda message: None)
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        raise ConfigError(f"unknown inference path(s) {', '.join(unknown)}; paths are {', '.join(PATHS)}")
    tokens = _reads_tokens(check_images)
    if (check_images.ndim != 4 and not tokens) or check_images.shape[0] < 1:
        raise ConfigError(f"check inputs must be images (N, C, H, W) or token ids (N, T) with N >= 1, got "
                          f"{check_images.dtype} {tuple(check_images.shape)}")
    if tokens:
        refused = [p for p in paths if p not in TOKEN_PATHS]
        if refused:
            name = model_name or getattr(model, "model_name", "the model")
            raise ConfigError(f"{name} is a language model, reading token ids (N, T): path(s) {', '.join(refused)} are for image models (BN "
                              f"folding, channels-last, int8 calibration of convolutions); its paths are "
                              f"{', '.join(TOKEN_PATHS)}")
    order = ["eager"] + [p for p in dict.fromkeys(paths) if p != "eager"]
    threads = torch.get_num_threads()
    bench = InferenceBench(
        model=model_name or getattr(model, "model_name", type(model).__name__),
        input_shape=list(check_images.shape[1:]), batch=batch, threads=threads,
        check_images=int(check_images.shape[0]), check_source=check_source,
        calibration_images=int(calibration.shape[0]), fp32_tolerance=fp32_tolerance, int8_agreement=int8_agreement,
        cpu=describe_cpu(), cpu_features=cpu_features(), weights_fingerprint=weights_fingerprint(model))
    one, many = check_images[:1].clone(), _batch_of(check_images, batch)
    bench.gflops_per_image = forward_gflops(model, one)
    bench.peak_fp32_gflops = matmul_rate(torch.float32) if measure_peak else None
    calibration_batches = list(calibration.split(batch))
    reference: torch.Tensor | None = None
    with tempfile.TemporaryDirectory(prefix="reslab-infer-") as tmp:
        for name in order:
            precision = "int8" if name in INT8_PATHS else "fp32"
            result = PathResult(name, precision)
            bench.results.append(result)
            if name in INT8_PATHS and not has_vnni():
                say(f"{name}: this CPU has no VNNI (AVX512-VNNI/AVX-VNNI): int8 runs on slower AVX2 kernels")
            say(f"{name}: building")
            start = time.perf_counter()
            try:
                run = build_path(name, model, many, calibration_batches, Path(tmp), threads)
                outputs = _predict_all(run, check_images, batch)  # also the first (compiling) calls
            except PathUnavailable as exc:
                result.error = plain_text(str(exc))
                say(f"{name}: skipped ({result.error})")
                continue
            except Exception as exc:  # noqa: BLE001 - a path that fails to build must not end the benchmark
                first = plain_text(str(exc)).strip().splitlines()[0][:160] if str(exc).strip() else ""
                result.error = f"{type(exc).__name__}: {first}"
                say(f"{name}: failed ({result.error})")
                continue
            result.build_s = time.perf_counter() - start
            if getattr(run, "note", None):
                say(f"{name}: {run.note}")
            if name == "int8-ort":
                result.calibration_images = ort_calibration_images(model, many, int(calibration.shape[0]))
            elif name == "int8-pt2e":
                result.calibration_images = int(calibration.shape[0])
            if reference is None:
                reference = outputs
                bench.output_scale = output_scale(reference)  # the criterion reslab export's check uses too
            result.max_abs_diff = float((outputs - reference).abs().max())
            classes = -1 if tokens else 1  # a language model's logits (N, T, V): the next token at every position
            result.agreement = float((outputs.argmax(classes) == reference.argmax(classes)).float().mean())
            result.passed = (result.agreement >= int8_agreement if precision == "int8"
                             else result.max_abs_diff <= fp32_tolerance * bench.output_scale)
            result.latency_ms = 1e3 * time_call(run, one, min_time)
            result.throughput = batch / time_call(run, many, min_time)
            say(f"{name}: {result.latency_ms:.2f} ms at batch 1, {result.throughput:.1f} {'sequences' if tokens else 'images'}"
                f"/s at batch {batch}, "
                f"max |diff| {result.max_abs_diff:.1e}, agreement {100 * result.agreement:.2f}%")
        if keep is not None:
            _keep_files(Path(tmp), artefact_dir(Path(keep), bench.weights_fingerprint, one))
    return bench


def _keep_files(workdir: Path, keep: Path) -> None:
    """Copy the ONNX Runtime paths' files from ``workdir`` into ``keep``, each atomically."""
    for name in (ONNX_FILE, INT8_ONNX_FILE):
        if (workdir / name).is_file():
            with atomic_path(keep / name) as tmp:
                shutil.copyfile(workdir / name, tmp)


def forward_gflops(model: nn.Module, x: torch.Tensor) -> float | None:
    """GFLOP of one forward pass per image (``torch.utils.flop_counter``: 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode  # noqa: PLC0415

    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            _eval_copy(model)(x)
        return counter.get_total_flops() / 1e9 / x.shape[0]
    except Exception:  # noqa: BLE001 - a count is a nicety; the benchmark goes on without it
        return None


def _batch_of(images: torch.Tensor, batch: int) -> torch.Tensor:
    if images.shape[0] >= batch:
        return images[:batch].clone()
    repeats = math.ceil(batch / images.shape[0])
    return images.repeat(repeats, *[1] * (images.ndim - 1))[:batch].clone()


__all__ = ["PATHS", "INT8_PATHS", "TOKEN_PATHS", "PathUnavailable", "plain_text", "build_path", "fold_batch_norms", "bench_inference",
           "InferenceBench", "PathResult", "time_call"]


# -- a trained run: its data for the checks, its saved choice and files for predict --fast -------
#: Where ``reslab bench infer`` leaves a run's measurements (read by ``reslab predict --fast``).
RESULT_FILE = "inference.json"
#: Where the built files of a run's paths are kept, one folder per weights and input shape.
ARTEFACT_DIR = "inference"
#: What ``predict --fast`` uses when a run has no measurements of its weights: exact, and needs nothing beyond torch.
DEFAULT_FAST_PATH = "bn-fold+cl"
#: The paths ``predict --fast`` may choose: those that load ready to run. ``compile`` and
#: ``int8-pt2e`` compile with inductor in every new process (seconds to minutes), which a call
#: classifying a few images never earns back.
PREDICT_PATHS = ("eager", "bn-fold", "bn-fold+cl", "ort-fp32", "int8-ort")


def weights_fingerprint(model: nn.Module) -> str:
    """A short hash of ``model``'s state dict (names, dtypes, shapes and bytes of every tensor).

    The same weights give the same fingerprint however they were loaded; any trained step, another
    checkpoint or another model changes it. ``bench infer`` records it; ``predict --fast`` trusts a
    measurement, and a kept file, only for the weights it was made from.
    """
    # SHA-256: the CPU's SHA instructions make it the fastest of hashlib's here (0.06 s for ResNet-50's
    # 100 MB, against 0.15 s for BLAKE2b, measured), and a predict call pays it every time.
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:20]


def artefact_dir(run_dir: Path, fingerprint: str, example: torch.Tensor) -> Path:
    """``RUN/inference/FINGERPRINT-CxHxW``: the files built for these weights at this input shape."""
    shape = "x".join(str(side) for side in example.shape[1:])
    return Path(run_dir) / ARTEFACT_DIR / f"{fingerprint}-{shape}"


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """``RUN/inference.json`` as written by ``reslab bench infer`` (``None`` when there is none).

    Raises:
        CheckpointError: the file is damaged (not JSON, or not a benchmark's record), naming it and
            the command that writes it again.
    """
    record = Path(run_dir) / RESULT_FILE
    if not record.is_file():
        return None
    again = f"measure again with: reslab bench infer {run_dir} (which rewrites it), or delete it"
    try:
        data = read_json(record, error=CheckpointError, what="the record of reslab bench infer")
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}; {again}") from None
    results = data.get("results") if isinstance(data, dict) else None
    fine = isinstance(results, list) and all(isinstance(r, dict) and isinstance(r.get("name"), str) for r in results)
    if not fine or (data.get("fastest") is not None and data["fastest"] not in [r["name"] for r in results]):
        raise CheckpointError(f"{record} is not a record of reslab bench infer (no list of measured paths with the "
                              f"fastest among them); {again}")
    return data


class RunnerModule(nn.Module):
    """A path's runner as a module (eval-only), so code that takes a model can use it."""

    def __init__(self, run: Runner, name: str) -> None:
        super().__init__()
        self._run = run
        self.path_name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)


def _choose(data: dict[str, Any] | None, record: Path | None, fingerprint: str, measure: str
            ) -> tuple[str, str, str | None]:
    """(path, why, a note to print first) from a run's record of ``bench infer``."""
    default_why = f"{DEFAULT_FAST_PATH} is exact and needs nothing beyond torch"
    if data is None:
        return DEFAULT_FAST_PATH, f"no {RESULT_FILE} in the run (measure with: {measure}); {default_why}", None
    if data.get("weights_fingerprint") != fingerprint:
        if data.get("weights_fingerprint"):
            note = (f"{record} measured other weights (checkpoint {data.get('checkpoint', '?')!r}, fingerprint "
                    f"{data['weights_fingerprint']}) than these ({fingerprint}): trained further since, or another "
                    f"checkpoint; its choice and check do not hold for them; measure these with: {measure}")
        else:
            note = (f"{record} holds no fingerprint of the weights it measured (an older reslab wrote it), so its "
                    f"choice and check may not hold for these; measure them with: {measure}")
        return DEFAULT_FAST_PATH, f"{default_why}; {RESULT_FILE} is not a record of these weights", note
    usable = [r for r in data["results"] if r.get("passed") and r["name"] in PREDICT_PATHS
              and isinstance(r.get("throughput"), (int, float))]
    if not usable:
        return DEFAULT_FAST_PATH, f"no path that loads ready to run passed its check in {record}; {default_why}", None
    # the record's own verdict where predict can use it; otherwise the fastest of those it can
    recorded = [r for r in usable if r["name"] == data.get("fastest")]
    best = recorded[0] if recorded else max(usable, key=lambda r: r["throughput"])
    why = (f"the fastest path that passed its check in {record}: {best['throughput']:.0f} images/s at batch "
           f"{data.get('batch', '?')}, top-1 agreement {100 * float(best.get('agreement') or 0):.2f}% with eager")
    if data.get("fastest") not in (None, best["name"]):
        why += f"; {data['fastest']}, faster there, compiles for seconds in every process"
    return best["name"], why, None


def fast_model(model: nn.Module, run_dir: Path | None, calibration: Callable[[], torch.Tensor],
               example: torch.Tensor, say: Callable[[str], None] | None = None,
               checkpoint: str = "last") -> RunnerModule:
    """The fastest path that passed its check in ``run_dir/inference.json`` for these very weights
    (``bn-fold+cl`` without such a record), built for ``model``.

    The record is trusted only when its weights' fingerprint is ``model``'s: after more training,
    or for another checkpoint, the path is ``bn-fold+cl`` and ``say`` is told which ``reslab bench
    infer`` command measures these weights. The ONNX Runtime paths load their files from
    ``RUN/inference/FINGERPRINT-CxHxW/`` (kept by ``bench infer``, or built and kept here on the
    first call). ``calibration()`` gives normalised training images when an int8 file must be built.

    Raises:
        CheckpointError: the record is damaged.
    """
    say = say or (lambda message: None)
    if run_dir is None:
        # Weights outside a run have nowhere to keep a record of bench infer, so none can name a faster path.
        fingerprint, note = None, None
        choice, why = DEFAULT_FAST_PATH, (f"weights outside a run have no record of reslab bench infer; "
                                          f"{DEFAULT_FAST_PATH} is exact and needs nothing beyond torch")
    else:
        fingerprint = weights_fingerprint(model)
        measure = f"reslab bench infer {run_dir}" + (f" --checkpoint {checkpoint}" if checkpoint != "last" else "")
        choice, why, note = _choose(read_record(run_dir), Path(run_dir) / RESULT_FILE, fingerprint, measure)
    if note:
        say(note)
    missing = [p for p in _NEEDS.get(choice, ()) if importlib.util.find_spec(p) is None]
    if missing:
        say(f"fast path {choice} is not available here (needs {', '.join(missing)}); using {DEFAULT_FAST_PATH}")
        choice, why = DEFAULT_FAST_PATH, "the fallback"
    if choice not in ("ort-fp32", "int8-ort"):
        run = build_path(choice, model, example, [], Path(tempfile.gettempdir()))  # builds no file
        say(f"fast path: {choice} ({why})")
        return RunnerModule(run, choice)
    file_name = ONNX_FILE if choice == "ort-fp32" else INT8_ONNX_FILE
    with contextlib.ExitStack() as stack:
        workdir, kept = _workdir(run_dir, fingerprint, example, file_name, stack, say)
        found = (workdir / file_name).is_file()
        images = calibration() if choice == "int8-ort" and not found else example
        run = build_path(choice, model, example, list(images.split(16)), workdir)
        if not kept:
            run(example)  # the session holds the file open; build it before the folder goes
        where = (f"loaded {workdir / file_name}" if found else f"built and kept in {workdir / file_name}" if kept
                 else "built for this call only")
        say(f"fast path: {choice} ({why}; {where})")
    return RunnerModule(run, choice)


def _workdir(run_dir: Path | None, fingerprint: str | None, example: torch.Tensor, file_name: str,
             stack: contextlib.ExitStack, say: Callable[[str], None]) -> tuple[Path, bool]:
    """(the folder ``file_name`` is found or built in, whether that folder is kept in the run)."""
    if run_dir is not None:
        folder = artefact_dir(run_dir, fingerprint, example)
        if (folder / file_name).is_file():
            return folder, True
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not os.access(folder, os.W_OK):
                raise PermissionError(13, "permission denied")
            return folder, True
        except OSError as exc:
            say(f"cannot keep built files in {folder} ({exc.strerror or exc}); building them for this call only")
    return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reslab-fast-"))), False


__all__ += ["RESULT_FILE", "ARTEFACT_DIR", "DEFAULT_FAST_PATH", "PREDICT_PATHS", "RunnerModule", "artefact_dir",
            "fast_model", "read_record", "weights_fingerprint"]
