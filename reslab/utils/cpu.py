"""What the CPU can do: the instruction-set features that decide which fast paths pay off.

bf16 autocast on a CPU is only faster where the hardware has bf16 units (AVX512-BF16 or AMX);
elsewhere oneDNN emulates bf16 and it is slower than float32. int8 gains depend on VNNI / AMX.
Linux exposes the features as flags in ``/proc/cpuinfo``; elsewhere torch's own capability
string (``torch.backends.cpu.get_cpu_capability()``) is all we know.
"""

from __future__ import annotations

import functools
import platform
import time
from pathlib import Path

import torch

# Flag in /proc/cpuinfo -> the name people know it by.
FEATURES = {
    "avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512", "avx512_vnni": "AVX512-VNNI", "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX512-BF16", "amx_tile": "AMX", "amx_bf16": "AMX-BF16", "amx_int8": "AMX-INT8",
}


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The lower-case feature flags of the first CPU in ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_features() -> dict[str, bool]:
    """``{"AVX2": True, "AVX-512": ..., "AVX512-VNNI": ..., "AVX512-BF16": ..., "AMX": ...}``."""
    flags = cpu_flags()
    features = {name: flag in flags for flag, name in FEATURES.items()}
    if not flags:  # no /proc/cpuinfo: fall back on torch's dispatch level
        capability = _torch_capability()
        features["AVX2"] = capability in ("AVX2", "AVX512")
        features["AVX-512"] = capability == "AVX512"
    return features


def has_native_bf16() -> bool:
    """True where the CPU computes in bf16 natively (AVX512-BF16 or AMX-BF16)."""
    features = cpu_features()
    return features["AVX512-BF16"] or features["AMX-BF16"]


def has_vnni() -> bool:
    """True where int8 dot products have their own instructions (AVX512-VNNI, AVX-VNNI or AMX-INT8)."""
    features = cpu_features()
    return features["AVX512-VNNI"] or features["AVX-VNNI"] or features["AMX-INT8"]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_cpu() -> str:
    """One line: the model, torch's thread count and the features present, e.g. for a benchmark's header."""
    present = [name for name, on in cpu_features().items() if on]
    return (f"CPU {cpu_model()}, {torch.get_num_threads()} torch threads, features: "
            f"{', '.join(present) if present else 'none of ' + ', '.join(FEATURES.values())}")


def _torch_capability() -> str:
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return ""


__all__ = ["FEATURES", "cpu_features", "cpu_flags", "cpu_model", "describe_cpu", "has_native_bf16", "has_vnni"]


def matmul_rate(dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 5,
                device: str | torch.device = "cpu") -> float:
    """GFLOP/s of the best of ``repeats`` ``size × size`` matmuls in ``dtype``: the machine's practical
    peak, which benchmarks report their share of."""
    device = torch.device(device)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    torch.mm(a, b)  # warm-up: library initialisation, page faults
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9
