"""Run every benchmark and print one table: work, peer, reslab, ratio, % of peak (``make bench``).

    python benchmarks/bench_table.py [--only hessian landscape train infer predict sweep] [--json FILE]

Each benchmark runs in its own process (its full output goes to the terminal as it runs) and
writes its summary rows as JSON; the table gathers them. The peers are benchmark-only
dependencies (``pip install -e '.[bench]'``: PyHessian, loss-landscapes); a benchmark whose
peer is missing still measures reslab and says so. The ratio is reslab's speed over the
peer's, measured in the same run (ONNX Runtime for the inference rows, plain ``reslab predict``
for the ``predict --fast`` rows); % of peak is the share of the machine's measured matmul rate
(fp32, or bf16 for bf16 rows) the reslab side reaches (``benchmarks/peak.py``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = {
    "hessian": "hessian_throughput.py",
    "landscape": "landscape_throughput.py",
    "train": "train_throughput.py",
    "infer": "infer_throughput.py",
    "predict": "predict_fast.py",
    "sweep": "sweep_overhead.py",
}


def run_benchmark(name: str, extra: list[str]) -> tuple[list[dict], float, int]:
    """Run one benchmark script; returns its JSON rows, wall time and exit status."""
    with tempfile.TemporaryDirectory() as tmp:
        rows_file = Path(tmp) / f"{name}.json"
        start = time.perf_counter()
        status = subprocess.call([sys.executable, str(HERE / BENCHMARKS[name]), "--json", str(rows_file), *extra])
        seconds = time.perf_counter() - start
        rows = json.loads(rows_file.read_text()) if rows_file.is_file() else []
    return rows, seconds, status


def format_table(rows: list[dict]) -> str:
    headers = ("work", "peer", "reslab", "ratio", "% of peak")
    cells = [(r["work"], r["peer"], r["reslab"], f"{r['ratio']:.2f}x" if r.get("ratio") is not None else "-",
              f"{100 * r['peak']:.0f} %" if r.get("peak") is not None else "-") for r in rows]
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *cells)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), default=list(BENCHMARKS),
                        help="run only these benchmarks (default: all)")
    parser.add_argument("--json", help="also write every row to this JSON file")
    args = parser.parse_args(argv)

    from benchmarks.peak import measure_peak  # noqa: PLC0415 - after argparse, so --help is instant
    from reslab.utils.cpu import describe_cpu  # noqa: PLC0415

    rows: list[dict] = []
    failed = []
    for name in args.only:
        print(f"\n=== benchmarks/{BENCHMARKS[name]} ===", flush=True)
        found, seconds, status = run_benchmark(name, [])
        print(f"=== {name}: {seconds:.0f} s, exit status {status} ===", flush=True)
        if status != 0 or not found:
            failed.append(name)
        rows.extend({**row, "benchmark": name} for row in found)
    print()
    peak = measure_peak("cpu")
    print(describe_cpu())
    print(f"measured matmul peak: fp32 {peak['fp32']:.0f} GFLOP/s"
          + (f", bf16 {peak['bf16']:.0f} GFLOP/s" if peak["bf16"] else ", bf16: no bf16 units"))
    print(format_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    if failed:
        print(f"benchmarks that failed or wrote no rows: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    raise SystemExit(main())
