"""``make bench``'s table: every benchmark's JSON rows gathered into one table."""

from __future__ import annotations

import json

from benchmarks import bench_table

FAKE = '''
import json, sys
path = sys.argv[sys.argv.index("--json") + 1]
json.dump([{"work": "fake work", "peer": "peer 2.0 s", "reslab": "1.0 s", "ratio": 2.0, "peak": 0.5}], open(path, "w"))
'''


def test_bench_table_runs_each_benchmark_and_prints_one_table(tmp_path, monkeypatch, capsys):
    (tmp_path / "fake.py").write_text(FAKE)
    (tmp_path / "broken.py").write_text("raise SystemExit(3)\n")
    monkeypatch.setattr(bench_table, "HERE", tmp_path)
    monkeypatch.setattr(bench_table, "BENCHMARKS", {"fake": "fake.py", "broken": "broken.py"})
    monkeypatch.setattr("benchmarks.peak.measure_peak", lambda device="cpu": {"fp32": 100.0, "bf16": None})
    out_json = tmp_path / "rows.json"
    status = bench_table.main(["--only", "fake", "broken", "--json", str(out_json)])
    captured = capsys.readouterr()
    assert status == 1 and "failed or wrote no rows: broken" in captured.err
    header = next(line for line in captured.out.splitlines() if line.startswith("work"))
    assert header.split() == ["work", "peer", "reslab", "ratio", "%", "of", "peak"]
    row = next(line for line in captured.out.splitlines() if line.startswith("fake work"))
    assert "peer 2.0 s" in row and "2.00x" in row and "50 %" in row
    assert json.loads(out_json.read_text()) == [{"work": "fake work", "peer": "peer 2.0 s", "reslab": "1.0 s",
                                                 "ratio": 2.0, "peak": 0.5, "benchmark": "fake"}]


def test_infer_benchmark_rows_compare_the_fastest_fp32_path_and_pt2e_with_onnx_runtime():
    from benchmarks.infer_throughput import summary_rows
    from reslab.applications.inference import InferenceBench, PathResult

    bench = InferenceBench(model="resnet18", input_shape=[3, 224, 224], batch=16, threads=2, check_images=64,
                           check_source="noise", calibration_images=256, fp32_tolerance=1e-4, int8_agreement=0.99,
                           cpu="cpu", cpu_features={}, gflops_per_image=3.6, peak_fp32_gflops=360.0)
    bench.results = [PathResult("eager", "fp32", throughput=40, passed=True),
                     PathResult("compile", "fp32", throughput=90, passed=True),
                     PathResult("bn-fold", "fp32", throughput=95, passed=False),  # failed its check: not counted
                     PathResult("ort-fp32", "fp32", throughput=80, passed=True),
                     PathResult("int8-pt2e", "int8", throughput=200, passed=True),
                     PathResult("int8-ort", "int8", throughput=160, passed=True)]
    fp32, int8 = summary_rows(bench)
    assert "compile" in fp32["work"] and fp32["ratio"] == 90 / 80 and fp32["peak"] == 90 * 3.6 / 360
    assert int8["ratio"] == 200 / 160 and "ONNX Runtime int8 160" in int8["peer"]
