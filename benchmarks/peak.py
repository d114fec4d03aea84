"""The machine's measured peak: fp32 and bf16 matmul rates, and the CPU's features.

Every benchmark prints the fraction of this peak it reaches, so a reader sees how much room is
left. The rate is the best of a few large square matmuls (``torch.mm``, ``--size`` 2048 by
default, which oneDNN/MKL run at their best) with torch's current thread count; bf16 is
measured only where the CPU has bf16 units (AVX512-BF16 or AMX) or on CUDA.

    python benchmarks/peak.py            # prints both rates and the features
    from benchmarks.peak import measure_peak; peak = measure_peak()   # {"fp32": GFLOP/s, ...}
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reslab.utils.cpu import describe_cpu, has_native_bf16, matmul_rate  # noqa: E402,F401 - matmul_rate re-exported


@functools.lru_cache(maxsize=4)
def measure_peak(device: str = "cpu", size: int = 2048) -> dict[str, float | None]:
    """``{"fp32": GFLOP/s, "bf16": GFLOP/s or None}`` for ``device`` (cached per process)."""
    bf16 = device != "cpu" or has_native_bf16()
    return {"fp32": matmul_rate(torch.float32, size, device=device),
            "bf16": matmul_rate(torch.bfloat16, size, device=device) if bf16 else None}


def percent_of(rate_gflops: float, peak_gflops: float | None) -> str:
    """``"87 %"`` (or ``"–"`` without a peak)."""
    return f"{100 * rate_gflops / peak_gflops:.0f} %" if peak_gflops else "–"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048, help="matrix size (default 2048)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(describe_cpu())
    peak = measure_peak(args.device, args.size)
    print(f"fp32 matmul peak: {peak['fp32']:.0f} GFLOP/s ({args.size}x{args.size}, {torch.get_num_threads()} threads)")
    if peak["bf16"] is None:
        print("bf16 matmul peak: not measured (no bf16 units on this CPU: AVX512-BF16/AMX absent)")
    else:
        print(f"bf16 matmul peak: {peak['bf16']:.0f} GFLOP/s ({peak['bf16'] / peak['fp32']:.1f}x fp32)")


if __name__ == "__main__":
    main()
