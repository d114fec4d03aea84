"""What a launcher costs: the wall time of one small sweep under each launcher against the local pool.

    python benchmarks/sweep_overhead.py [--runs 8] [--parallel 2] [--epochs 6] [--json FILE]

The same sweep (``--runs`` short digits trainings of ``cifar_resnet8``, different learning rates,
``--parallel`` at a time, one torch thread each) runs four times in one process, each into a fresh
directory: the local pool (the reference), submitit's local executor (``--launcher slurm
--slurm-executor local``: real jobs, pickles, log files and polling, as on a cluster but without the
queue), and Ray with a local cluster, once counting the cluster's start (what ``reslab sweep
--launcher ray`` without an address costs) and once on a cluster already up (what a sweep on a
running cluster costs). The overhead is each one's wall time over the local pool's, minus one; the
target is ≤ 10 % for ray on a running cluster and for slurm-local. A launcher whose extra is
missing is reported as such. Every run's metrics are also checked to be identical across launchers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from peak import describe_cpu  # noqa: E402

from reslab.experiments.common import ensure_runs  # noqa: E402
from reslab.experiments.launch.base import LaunchError, LaunchSettings  # noqa: E402
from reslab.store import rundir  # noqa: E402
from reslab.train import resolve_config  # noqa: E402


def sweep_configs(out: Path, runs: int, epochs: int):
    lrs = [round(0.02 + 0.02 * i, 3) for i in range(runs)]
    return [resolve_config("digits-quick", model="cifar_resnet8", data="digits",
                           overrides={"lr": lr, "epochs": epochs, "threads": 1, "quiet": True,
                                      "out": str(out / f"lr{lr}")}) for lr in lrs]


def timed_sweep(name: str, launch: LaunchSettings, root: Path, runs: int, epochs: int, jobs: int) -> dict:
    out = root / name
    configs = sweep_configs(out, runs, epochs)
    start = time.perf_counter()
    # --jobs is the local pool's; the engines take max_parallel.
    ensure_runs(configs, jobs=jobs if launch.launcher == "local" else 1, launch=launch, experiment_dir=out,
                epoch_lines=False)
    seconds = time.perf_counter() - start
    curves = {Path(c.out).name: [(m["train_loss"], m["test_loss"]) for m in rundir.read_metrics(c.out)]
              for c in configs}
    return {"launcher": name, "seconds": seconds, "curves": curves}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--json", help="write the rows for benchmarks/bench_table.py here")
    args = parser.parse_args(argv)
    print(f"CPU: {describe_cpu()}")
    print(f"sweep: {args.runs} runs of cifar_resnet8 on the digits, {args.epochs} epochs each, {args.parallel} at a "
          "time, 1 torch thread per run")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        plans = [
            ("local", LaunchSettings()),
            ("slurm-local", LaunchSettings(launcher="slurm", slurm_executor="local", max_parallel=args.parallel,
                                           cpus_per_run=1, timeout_min=60)),
            ("ray (cluster started)", LaunchSettings(launcher="ray", max_parallel=args.parallel, cpus_per_run=1)),
        ]
        for name, launch in plans:
            try:
                results.append(timed_sweep(name.split()[0] + ("-start" if "started" in name else ""), launch, root,
                                           args.runs, args.epochs, args.parallel))
                results[-1]["launcher"] = name
            except (LaunchError, ImportError) as error:
                print(f"{name}: not measured: {error}")
            shutil.rmtree(root / name.split()[0], ignore_errors=True)
        try:
            import ray

            ray.init(num_cpus=args.parallel, include_dashboard=False, log_to_driver=False)
            try:
                results.append(timed_sweep("ray-up", LaunchSettings(launcher="ray", max_parallel=args.parallel,
                                                                    cpus_per_run=1), root, args.runs, args.epochs,
                                           args.parallel))
                results[-1]["launcher"] = "ray (cluster up)"
            finally:
                ray.shutdown()
        except ImportError as error:
            print(f"ray (cluster up): not measured: {error}")
    reference = results[0]
    rows = []
    print(f"\n{'launcher':<24} {'wall':>8} {'overhead':>9}  same metrics as local")
    for result in results:
        overhead = result["seconds"] / reference["seconds"] - 1
        same = result["curves"] == reference["curves"]
        print(f"{result['launcher']:<24} {result['seconds']:>6.1f} s {100 * overhead:>+8.1f} %  {'yes' if same else 'NO'}")
        rows.append({"work": f"sweep of {args.runs} runs, {args.parallel} at a time", "peer": "local pool",
                     "reslab": result["launcher"], "ratio": reference["seconds"] / result["seconds"], "peak": None,
                     "seconds": result["seconds"], "overhead": overhead, "same_metrics": same})
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0 if all(r["same_metrics"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
