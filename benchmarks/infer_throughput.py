"""CPU inference: reslab's fastest fp32 and int8 paths against ONNX Runtime, measured in one run.

    python benchmarks/infer_throughput.py [--models resnet18 resnet50] [--json FILE]

For each model this runs ``reslab bench infer`` (fresh seeded weights, random normal images at
224x224; every path: eager, BN folding, channels-last, torch.compile, ONNX Runtime fp32, int8
PT2E, int8 ONNX Runtime) and prints its table, then the summary rows ``make bench`` gathers:
the fastest passing fp32 path against ONNX Runtime fp32 and reslab's int8 PT2E against ONNX
Runtime int8, at batch 16, with the share of the machine's fp32 matmul peak.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reslab.applications.inference import bench_inference  # noqa: E402
from reslab.models import create_model  # noqa: E402


def summary_rows(bench) -> list[dict]:
    rows = []
    ort, ort_int8, pt2e = bench.result("ort-fp32"), bench.result("int8-ort"), bench.result("int8-pt2e")
    fp32 = [r for r in bench.results if r.precision == "fp32" and r.passed and r.name != "ort-fp32" and r.throughput]
    if fp32 and ort is not None and ort.throughput:
        best = max(fp32, key=lambda r: r.throughput)
        rows.append({"work": f"{bench.model} inference b{bench.batch}, fp32 ({best.name})",
                     "peer": f"ONNX Runtime {ort.throughput:.0f} img/s", "reslab": f"{best.throughput:.0f} img/s",
                     "ratio": best.throughput / ort.throughput, "peak": (bench.percent_of_peak(best) or 0) / 100})
    if pt2e is not None and pt2e.throughput and ort_int8 is not None and ort_int8.throughput:
        rows.append({"work": f"{bench.model} inference b{bench.batch}, int8 (PT2E)",
                     "peer": f"ONNX Runtime int8 {ort_int8.throughput:.0f} img/s",
                     "reslab": f"{pt2e.throughput:.0f} img/s", "ratio": pt2e.throughput / ort_int8.throughput,
                     "peak": (bench.percent_of_peak(pt2e) or 0) / 100})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--check-images", type=int, default=64)
    parser.add_argument("--min-time", type=float, default=2.0)
    parser.add_argument("--json", default=None, help="also write the summary rows to this JSON file")
    args = parser.parse_args(argv)
    import torch  # noqa: PLC0415

    rows = []
    for name in args.models:
        torch.manual_seed(0)
        model = create_model(name).eval()
        generator = torch.Generator().manual_seed(0)
        images = torch.randn(args.check_images, 3, args.size, args.size, generator=generator)
        calibration = torch.randn(256, 3, args.size, args.size, generator=generator)
        bench = bench_inference(model, images, calibration, min_time=args.min_time, model_name=name,
                                check_source="random normal images",
                                say=lambda m: print(f"infer: {m}", file=sys.stderr, flush=True))
        print(bench.table(), flush=True)
        rows.extend(summary_rows(bench))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
