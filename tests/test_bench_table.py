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
