"""``reslab predict --fast`` against plain ``reslab predict``: first and second call, same run.

    python benchmarks/predict_fast.py [--model resnet20] [--images 5 256] [--repeats 5] [--json FILE]

A one-epoch run of ``--model`` is trained on synthetic 32x32 RGB images in a temporary folder and
measured by ``reslab bench infer RUN --paths eager bn-fold+cl ort-fp32 int8-ort``. Then, for each
ONNX Runtime path in turn — made the record's choice, so that both are timed whichever wins on
this CPU — with the files ``bench infer`` kept removed:

* plain: ``reslab predict RUN IMAGES`` (eager PyTorch);
* first ``--fast`` call: nothing kept yet, so it exports the ONNX file (and, for int8-ort,
  calibrates and quantises it) and keeps it in ``RUN/inference/``;
* second ``--fast`` call: loads the kept file.

Each is timed as a fresh process (what a user waits for, Python and torch imports included) and
in this process (``reslab.cli.main.main``, imports done: the command's own work); plain and the
second call alternate, ``--repeats`` times each, and their medians count. Each call classifies
``--images`` images (5, as a user classifying a handful; 256, where the inference itself weighs).
The rows for ``make bench`` compare the second call with plain predict in a fresh process.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reslab.applications.inference import ARTEFACT_DIR, RESULT_FILE  # noqa: E402
from reslab.cli.main import main as reslab_main  # noqa: E402
from reslab.utils.cpu import describe_cpu  # noqa: E402

ONNX_PATHS = ("ort-fp32", "int8-ort")


def _fresh_process(argv: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "reslab", *argv], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"reslab {' '.join(argv)} failed:\n{done.stderr}")
    return seconds


def _in_process(argv: list[str]) -> tuple[float, str]:
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            reslab_main(argv)
        except SystemExit as exit_info:
            if exit_info.code:
                raise SystemExit(f"reslab {' '.join(argv)} failed:\n{err.getvalue()}") from None
    return time.perf_counter() - start, err.getvalue()


def _choose(run_dir: Path, path: str) -> None:
    """Make ``path`` the record's choice (the only path marked as passed) and drop the kept files."""
    record = json.loads((run_dir / RESULT_FILE).read_text())
    record["results"] = [dict(r, passed=r["name"] == path) for r in record["results"]]
    record["fastest"] = path
    (run_dir / RESULT_FILE).write_text(json.dumps(record))
    shutil.rmtree(run_dir / ARTEFACT_DIR, ignore_errors=True)


def _call(argv: list[str], fresh: bool) -> float:
    return _fresh_process(argv) if fresh else _in_process(argv)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--images", type=int, nargs="+", default=[5, 256],
                        help="images classified per call, one table row each (default 5 256)")
    parser.add_argument("--repeats", type=int, default=5, help="calls timed of plain and of the second call (default 5)")
    parser.add_argument("--json", default=None, help="also write the summary rows to this JSON file")
    args = parser.parse_args(argv)
    import numpy as np  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    from reslab.train import resolve_config, train  # noqa: PLC0415

    print(describe_cpu(), flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="reslab-predict-bench-") as tmp:
        run_dir = Path(tmp) / "run"
        train(resolve_config("digits-quick", model=args.model, overrides={
            "out": str(run_dir), "epochs": 1, "batch_size": 32, "data": "synthetic", "quiet": True,
            "data_options": {"num_train": 128, "num_test": 64, "image_size": 32, "channels": 3, "num_classes": 10}}))
        _in_process(["bench", "infer", str(run_dir), "--paths", "eager", "bn-fold+cl", *ONNX_PATHS,
                     "--min-time", "0.2", "--check-images", "64", "--calibration-images", "64"])
        print(f"{args.model}, 32x32 images; seconds per call (plain and 2nd call: median of {args.repeats})")
        print(f"{'path':<9} {'images':>6} {'where':<14} {'plain':>7} {'--fast 1st':>10} {'--fast 2nd':>10} "
              f"{'2nd vs plain':>12}")
        rng = np.random.default_rng(0)
        for count in args.images:
            images = Path(tmp) / f"images{count}"
            images.mkdir()
            for index, image in enumerate(rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)):
                Image.fromarray(image).save(images / f"{index}.png")
            plain = ["predict", str(run_dir), str(images)]
            fast = [*plain, "--fast"]
            for path in ONNX_PATHS:
                for fresh in (True, False):
                    _choose(run_dir, path)
                    if not fresh:
                        _in_process(plain)  # imports and first-use costs out of the way, as in a warm process
                    first_s = _call(fast, fresh)
                    # plain and second calls alternate, so that a shared machine's changing load meets both alike
                    pairs = [(_call(plain, fresh), _call(fast, fresh)) for _ in range(args.repeats)]
                    plain_s, second_s = (statistics.median(times) for times in zip(*pairs))
                    where = "fresh process" if fresh else "in process"
                    print(f"{path:<9} {count:>6} {where:<14} {plain_s:>7.2f} {first_s:>10.2f} {second_s:>10.2f} "
                          f"{plain_s / second_s:>11.2f}x", flush=True)
                    if fresh:
                        rows.append({"work": f"predict --fast ({path}), {count} images, 2nd call",
                                     "peer": f"plain predict {plain_s:.2f} s", "reslab": f"{second_s:.2f} s",
                                     "ratio": plain_s / second_s, "peak": None})
        _, said = _in_process(fast)
        print(said.strip().splitlines()[-1])
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
