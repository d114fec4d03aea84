"""Put a finished run's weights into the package as pretrained weights (run by a maintainer).

    python scripts/ship_pretrained.py RUN_DIR --tag cifar10 [--checkpoint last|ema] [--verify]

Writes ``reslab/models/weights/<model>-<tag>.safetensors``: the run's last (or EMA) weights, with the
record of how they were made in the safetensors header (model, tag, recipe, seed, epochs,
measured test accuracy with and without test-time flips, classes, mean/std, image size,
versions, the run's wall time, the command that reproduces it). ``--verify`` re-evaluates the
weights on the run's test set first and refuses to ship if the accuracy differs from the
run's final record. Register the new file in ``reslab/models/pretrained.py`` (``_SHIPPED``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from safetensors.torch import save_file

from reslab.models.pretrained import METADATA_KEY, WEIGHTS_DIR
from reslab.train import evaluate, load_run
from reslab.train.config import FIELD_NAMES, resolve_config
from reslab.train.rundir import read_metrics


#: Settings that say where or how fast a run trained, not what it learned.
_NOT_THE_RECIPE = {"out", "data_dir", "threads", "quiet", "device", "tensorboard", "eval_every", "save_every",
                   "download"}


def reproducing_command(config: dict) -> str:
    """``reslab train`` with the recipe and every setting the run changed from it."""
    recipe = resolve_config(config.get("recipe"), model=config["model"], data=config["data"]).to_dict()
    command = f"reslab train {config['model']} --data {config['data']}"
    if config.get("recipe"):
        command += f" --recipe {config['recipe']}"
    for key in FIELD_NAMES:
        if key in _NOT_THE_RECIPE or key in ("model", "data", "recipe") or config.get(key) == recipe[key] \
                or (key == "task" and recipe[key] is None):  # the engine chooses it from model and data again
            continue
        value = config.get(key)
        command += f" --epochs {value}" if key == "epochs" else f" --seed {value}" if key == "seed" else \
            f" --set {key}={json.dumps(value) if not isinstance(value, str) else value}"
    return command


def _cpu() -> str:
    """The CPU and its vector features, for the record (assumes shipping on the machine that trained)."""
    from reslab.utils.cpu import describe_cpu  # noqa: PLC0415

    return describe_cpu()


def record_of(run_dir: Path, config: dict, tag: str, checkpoint: str = "last") -> dict:
    final = [row for row in read_metrics(run_dir) if row.get("test_error") is not None][-1]
    prefix = "ema_" if checkpoint == "ema" else ""
    command = reproducing_command(config)
    return {
        "model": config["model"], "tag": tag, "model_options": config.get("model_options") or {},
        "data": config["data"], "num_train": (config.get("dataset") or {}).get("num_train"),
        "num_test": (config.get("dataset") or {}).get("num_test"),
        "num_classes": config["num_classes"], "class_names": config.get("class_names"),
        "in_chans": config["in_chans"], "input_size": config["image_size"],
        "mean": config["mean"], "std": config["std"],
        "recipe": config.get("recipe"), "seed": config["seed"], "epochs": final["epoch"],
        "batch_size": config["batch_size"],
        # Asked for and used: a CPU without bf16 units trains in float32 (the run's notes say so).
        "bf16": bool(config.get("bf16")) and not any("training in float32" in note for note in config.get("notes") or []),
        "threads": config.get("threads"), "cpu": _cpu(),
        "weights": checkpoint,
        "test_accuracy": round(1.0 - final[f"{prefix}test_error"], 6),
        "test_accuracy_flip": (round(1.0 - final["test_flip_error"], 6)
                               if not prefix and final.get("test_flip_error") is not None else None),
        "train_error": final.get("train_error"), "wall_time_s": round(final["elapsed_s"], 1),
        "versions": config.get("versions"), "trained": config.get("written"),
        "shipped": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--tag", required=True, help="the name users pass as pretrained=TAG, e.g. cifar10")
    parser.add_argument("--checkpoint", choices=("last", "ema"), default="last",
                        help="the run's last weights or their EMA (a run trained with ema=true)")
    parser.add_argument("--verify", action="store_true", help="re-evaluate on the run's test set before shipping")
    args = parser.parse_args(argv)
    loaded = load_run(args.run_dir, args.checkpoint)
    record = record_of(args.run_dir, loaded.config, args.tag, args.checkpoint)
    if args.verify:
        result = evaluate(loaded.model, loaded.dataset)
        print(f"re-evaluated: test accuracy {100 * result.accuracy:.2f}% (run's record "
              f"{100 * record['test_accuracy']:.2f}%)")
        # bf16-trained weights are evaluated in fp32 here; allow a few images of difference.
        if abs(result.accuracy - record["test_accuracy"]) > 0.003:
            print("refusing to ship: the weights do not reproduce the run's accuracy", file=sys.stderr)
            return 1
        record["test_accuracy_fp32_eval"] = round(result.accuracy, 6)
    state = {key: tensor.contiguous() for key, tensor in loaded.model.state_dict().items()}
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    out = WEIGHTS_DIR / f"{record['model']}-{args.tag}.safetensors"
    save_file(state, str(out), metadata={METADATA_KEY: json.dumps(record)})
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): {json.dumps(record)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
