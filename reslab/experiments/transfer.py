"""Transfer learning on a class split: does a network pretrained on some classes learn new ones
from few images better than the same network trained from scratch?

``reslab experiment transfer`` (CIFAR-10 by default, the split of the issue that asked for it):

1. **pretrain** ResNet-20 on all training images of airplane, automobile, bird, cat and deer;
2. **finetuned**: start from it (new 5-way head, ``reslab finetune``'s path) and train on the first
   100 training images of each of dog, frog, horse, ship and truck;
3. **scratch**: the same architecture, the same 500 images, the same epochs and schedule, from
   random weights.

Both are tested on the 5,000 test images of the five new classes; the gain is the difference in
test accuracy, in points. Every run is a run directory under ``EXP_DIR`` (resumable: the same
command skips finished runs), and ``EXP_DIR/transfer.json`` holds the records the report reads.
``--data digits`` (digits 0-4 → 5-9) is the small version the tests use. Every setting (the classes,
the images per class, the batch sizes, the modules to freeze) is checked against the data and the
model before anything trains or any directory is created.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reslab.errors import ConfigError
from reslab.experiments.common import (
    ExperimentResult,
    Message,
    check_runs,
    ensure_runs,
    experiment_command,
    stderr_printer,
    write_settings_file,
)
from reslab.experiments.launch.base import LaunchSettings
from reslab.settings import Settings, setting
from reslab.store.jsonfiles import utc_now, versions, write_json
from reslab.store.rundir import read_config, read_metrics
from reslab.train import resolve_config

FORMAT = 1
NAME = "transfer"

#: The split of each dataset the experiment knows: (pretraining classes, new classes).
SPLITS = {
    "cifar10": (("airplane", "automobile", "bird", "cat", "deer"), ("dog", "frog", "horse", "ship", "truck")),
    "digits": (("0", "1", "2", "3", "4"), ("5", "6", "7", "8", "9")),
}


@dataclass(frozen=True)
class TransferSettings(LaunchSettings):
    """The split, the budget of each phase and the fine-tuning settings (defaults: measured in docs/results.md)."""

    data: str = setting("cifar10", "dataset: cifar10 (with --data-dir) or digits (small, for tests)")
    data_dir: str | None = setting(None, "where the dataset's files are", metavar="DIR")
    model: str = setting("resnet20", "architecture of all three runs")
    source_classes: tuple[str, ...] | None = setting(None, "pretraining classes (default: the data's split)")
    target_classes: tuple[str, ...] | None = setting(None, "new classes (default: the data's split)")
    per_class: int = setting(100, "training images of each new class", minimum=1)
    pretrain_epochs: int | None = setting(None, "epochs of pretraining (default 12 on cifar10, 15 on digits)",
                                          minimum=1)
    epochs: int | None = setting(None, "epochs of fine-tuning and of training from scratch (default 40)", minimum=1)
    batch_size: int = setting(64, "batch of fine-tuning and scratch runs", minimum=1)
    lr: float = setting(0.02, "peak lr of the fine-tuned body", minimum=0.0)
    head_lr: float = setting(0.1, "peak lr of the fine-tuned network's new head", minimum=0.0)
    scratch_lr: float = setting(0.1, "peak lr of the network trained from scratch", minimum=0.0)
    freeze: tuple[str, ...] = setting((), "modules kept fixed while fine-tuning, comma-separated: stem, layer1, "
                                          "layer2, ... or a block such as layer1.0 (e.g. --freeze stem,layer1)")
    seed: int = setting(0, "seed of every run", minimum=0)
    jobs: int = setting(1, "runs trained at once (pretraining and scratch can run together)", minimum=1)
    threads: int = setting(0, "torch threads per run (0: torch's default; with --jobs 2 use 1)", minimum=0)
    out: str | None = setting(None, "experiment directory (default experiments/transfer-DATA)", metavar="DIR")
    quiet: bool = setting(False, "no per-epoch lines")


class TransferResult(ExperimentResult):
    @property
    def records(self) -> list[dict[str, Any]]:
        return list((self.summary or {}).get("records") or [])

    def table(self) -> str:
        return format_table(self.summary or {})


def _split(s: TransferSettings) -> tuple[list[str], list[str]]:
    default = SPLITS.get(s.data)
    source = list(s.source_classes if s.source_classes is not None else (default[0] if default else ()))
    target = list(s.target_classes if s.target_classes is not None else (default[1] if default else ()))
    if not default and (s.source_classes is None or s.target_classes is None):
        raise ConfigError(f"dataset {s.data!r} has no default class split; give --source-classes and "
                          f"--target-classes (known splits: {', '.join(SPLITS)})")
    for flag, classes in (("--source-classes", source), ("--target-classes", target)):
        if len(classes) < 2:
            raise ConfigError(f"{flag} {','.join(classes)!r} names {len(classes)} class(es); a classifier needs at "
                              "least 2: give 2 or more class names or indices, comma-separated")
    both = sorted(set(source) & set(target))
    if both:
        raise ConfigError(f"--source-classes and --target-classes share {', '.join(both)}: a transfer split needs "
                          "disjoint classes")
    return source, target


def plan(s: TransferSettings) -> dict[str, Any]:
    """The three TrainConfigs (pretrain, finetuned, scratch), before anything trains."""
    source, target = _split(s)
    out = Path(s.out) if s.out else Path("experiments") / f"{NAME}-{s.data}"
    recipe = "digits-quick" if s.data == "digits" else "cifar10-cpu"
    common: dict[str, Any] = {"seed": s.seed, "quiet": s.quiet or s.jobs > 1, "data_dir": s.data_dir}
    if s.threads:
        common["threads"] = s.threads
    pretrain_epochs = s.pretrain_epochs or (15 if s.data == "digits" else 12)
    epochs = s.epochs or 40
    pretrain = resolve_config(recipe, model=s.model, data=s.data, overrides={
        **common, "epochs": pretrain_epochs, "out": str(out / "pretrain"), "data_options": {"classes": source}})
    few = {"classes": target, "per_class": s.per_class}
    # Few images: small batches, so an epoch still has several steps; a test pass every 5 epochs.
    short = {**common, "epochs": epochs, "batch_size": s.batch_size, "data_options": few,
             "eval_every": 5 if epochs >= 10 else 1}
    finetuned = resolve_config(recipe, model=s.model, data=s.data, overrides={
        **short, "out": str(out / "finetuned"), "init_from": str(out / "pretrain"), "lr": s.lr,
        "head_lr": s.head_lr, "freeze": list(s.freeze)})
    scratch = resolve_config(recipe, model=s.model, data=s.data, overrides={
        **short, "out": str(out / "scratch"), "lr": s.scratch_lr})
    return {"out": out, "source": source, "target": target, "pretrain": pretrain, "finetuned": finetuned,
            "scratch": scratch}


def _record(variant: str, run_dir: Path) -> dict[str, Any]:
    config = read_config(run_dir)
    metrics = read_metrics(run_dir)
    tested = [m for m in metrics if m.get("test_error") is not None]
    last = tested[-1] if tested else {}
    dataset = config.get("dataset") or {}
    return {
        "variant": variant, "run_dir": str(run_dir), "model": config.get("model"),
        "classes": config.get("class_names"), "train_images": dataset.get("num_train"),
        "test_images": dataset.get("num_test"), "epochs": config.get("total_epochs"),
        "lr": config.get("lr"), "head_lr": config.get("head_lr") or None, "freeze": config.get("freeze") or [],
        "init_from": config.get("init_from"),
        "final_test_error": last.get("test_error"), "final_test_flip_error": last.get("test_flip_error"),
        "best_test_error": min((m["test_error"] for m in tested), default=None),
        "final_train_error": (metrics[-1] if metrics else {}).get("train_error"),
        "wall_s": (metrics[-1] if metrics else {}).get("elapsed_s"),
        "curve": [{"epoch": m.get("epoch"), "train_error": m.get("train_error"), "test_error": m.get("test_error")}
                  for m in metrics],
    }


def gain_points(summary: dict[str, Any]) -> float | None:
    """Test accuracy of the fine-tuned run minus that of the scratch run, in points."""
    errors = {r.get("variant"): r.get("final_test_error") for r in summary.get("records") or []}
    a, b = errors.get("finetuned"), errors.get("scratch")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (a, b)):
        return None
    return 100.0 * (b - a)


def run_transfer(settings: TransferSettings | None = None, *, say: Message | None = None,
                 **changes: Any) -> TransferResult:
    """Pretrain, fine-tune and train from scratch (or reuse the finished runs); write ``transfer.json``."""
    s = TransferSettings.of(settings, **changes)
    command = experiment_command(["reslab", "experiment", NAME], s)
    p = plan(s)
    out: Path = p["out"]
    # Classes, images per class, batch sizes and the modules to freeze meet the data and the model
    # here, so a wrong one fails before the pretraining trains and before EXP_DIR is created.
    check_runs([p["pretrain"], p["scratch"], p["finetuned"]])
    say = say or stderr_printer(f"reslab experiment {NAME}", not s.quiet)
    say(f"pretrain {s.model} on {', '.join(p['source'])}; fine-tune vs scratch on {s.per_class} images each of "
        f"{', '.join(p['target'])}; runs in {out}")
    start = time.perf_counter()
    # Pretraining and the scratch run do not depend on each other; fine-tuning needs the first.
    first = ensure_runs([p["pretrain"], p["scratch"]], jobs=s.jobs, launch=s.launch_settings(), experiment_dir=out,
                        command=command, on_start=lambda: write_settings_file(out, s, command), say=say,
                        epoch_lines=not s.quiet)
    if not all(o.finished for o in first):
        return TransferResult(out, first, None, [], complete=False)
    second = ensure_runs([p["finetuned"]], launch=s.launch_settings(), experiment_dir=out, command=command, say=say)
    outcomes = first + second
    if not all(o.finished for o in outcomes):
        return TransferResult(out, outcomes, None, [], complete=False)
    records = [_record(variant, Path(p[variant].out)) for variant in ("pretrain", "finetuned", "scratch")]
    summary: dict[str, Any] = {
        "experiment": NAME, "format": FORMAT, "created": utc_now(), "versions": versions(), "command": command,
        "settings": s.to_dict(), "data": s.data, "source_classes": p["source"], "target_classes": p["target"],
        "per_class": s.per_class, "wall_s": time.perf_counter() - start, "records": records,
    }
    summary["gain_points"] = gain_points(summary)
    path = out / f"{NAME}.json"
    write_json(path, summary)
    return TransferResult(out, outcomes, summary, [path])


def _percent(value: Any) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) and math.isfinite(value) else "–"


def format_table(summary: dict[str, Any]) -> str:
    header = f"{'run':<10} {'classes':<40} {'train images':>12} {'epochs':>6} {'test acc':>9} {'with flips':>10} {'time':>7}"
    lines = [header, "-" * len(header)]
    for r in summary.get("records") or []:
        error, flip = r.get("final_test_error"), r.get("final_test_flip_error")
        accuracy = None if error is None else 1 - error
        flipped = None if flip is None else 1 - flip
        wall = f"{r['wall_s']:.0f} s" if isinstance(r.get("wall_s"), (int, float)) else "–"
        lines.append(f"{r['variant']:<10} {', '.join(r.get('classes') or [])[:40]:<40} "
                     f"{r.get('train_images') or '':>12} {r.get('epochs') or '':>6} {_percent(accuracy):>9} "
                     f"{_percent(flipped):>10} {wall:>7}")
    gain = summary.get("gain_points")
    if gain is not None:
        lines.append(f"fine-tuned - scratch: {gain:+.2f} points of test accuracy on the new classes")
    return "\n".join(lines)


__all__ = ["TransferSettings", "TransferResult", "run_transfer", "plan", "gain_points", "format_table", "SPLITS"]
