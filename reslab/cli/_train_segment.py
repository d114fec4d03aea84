"""``reslab train unet_resnet18 --task segment --data shapes``: the segmentation side of ``reslab train``.

:mod:`reslab.cli.train` parses the arguments; when they ask for segmentation (``--task segment``,
or ``--resume`` of a segmentation run) it hands them here, and this turns them into a
:class:`~reslab.train.segment.SegmentConfig` and calls
:func:`~reslab.train.segment.train_segmentation`. It also refuses the mixed-up cases early: a U-Net
or segmentation data without ``--task segment``.
"""

from __future__ import annotations

from pathlib import Path

from reslab.errors import ConfigError
from reslab.settings import parse_key_values

# Flags of `reslab train` that mean the same for segmentation (flag dest -> SegmentConfig field).
_FLAG_FIELDS = {
    "data": "data", "data_dir": "data_dir", "epochs": "epochs", "batch_size": "batch_size", "lr": "lr",
    "out": "out", "device": "device", "seed": "seed", "save_every": "save_every", "threads": "threads",
}
# Flags of the classifier's trainer that --task segment does not take.
_CLASSIFY_ONLY = ("recipe", "iterations", "eval_every", "download", "tensorboard", "compile", "ema", "channels_last",
                  "bf16", "test_flip")


def _is_segment_run(run_dir: str) -> bool:
    from reslab.store.jsonfiles import read_json  # noqa: PLC0415
    from reslab.store.rundir import CONFIG_FILE  # noqa: PLC0415

    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return False
    try:
        config = read_json(path)
    except Exception:  # noqa: BLE001 - unreadable: the classifier's resume says what is wrong
        return False
    return isinstance(config, dict) and config.get("task") == "segment"


def wants_segmentation(args) -> bool:
    """Whether the parsed ``reslab train`` arguments ask for segmentation."""
    if getattr(args, "task", "classify") == "segment":
        return True
    return bool(getattr(args, "resume", None)) and _is_segment_run(args.resume)


def check_classify(args) -> None:
    """ConfigError for a classification run given a U-Net or segmentation data (they need --task segment)."""
    from reslab.data.segmentation import is_segmentation_data  # noqa: PLC0415

    model = getattr(args, "model", None) or ""
    if model.startswith("unet_"):
        raise ConfigError(f"{model} is a segmentation model (per-pixel classes); train it with --task segment, "
                          f"e.g. reslab train {model} --task segment --data shapes")
    data = getattr(args, "data", None)
    if is_segmentation_data(data):
        suggestion = f"unet_{model}" if model and not model.startswith("unet_") else "unet_resnet18"
        raise ConfigError(f"--data {data} is segmentation data (masks, not labels); train a U-Net on it with "
                          f"--task segment, e.g. reslab train {suggestion} --task segment --data {data}")


def run(args) -> int:
    from reslab.train.segment import SegmentConfig, train_segmentation  # noqa: PLC0415 - lazy: `reslab --help` need not import torch models

    given = [flag for flag in _CLASSIFY_ONLY if getattr(args, flag, None) not in (None, False)]
    if given:
        flags = ", ".join("--" + flag.replace("_", "-") for flag in given)
        raise ConfigError(f"{flags}: not an option of --task segment (it takes --data, --data-dir, --epochs, "
                          "--batch-size, --lr, --out, --resume, --device, --seed, --save-every, --threads, --quiet, "
                          "--stop-after and --set KEY=VALUE for the other settings)")
    overrides = {field: getattr(args, dest) for dest, field in _FLAG_FIELDS.items() if getattr(args, dest) is not None}
    if args.quiet:
        overrides["quiet"] = True
    for key, value in parse_key_values(args.settings, "--set", tables=("model_options", "data_options"),
                                       example="optimizer=sgd").items():
        if key in ("model_options", "data_options"):
            overrides[key] = {**overrides.get(key, {}), **value}
        else:
            overrides[key] = value
    unknown = sorted(set(overrides) - set(SegmentConfig.field_names()))
    if unknown:
        raise ConfigError(f"--set {unknown[0]}: not a setting of --task segment; its settings are: "
                          f"{', '.join(SegmentConfig.field_names())}")
    if args.resume:
        if overrides.get("out") not in (None, args.resume):
            raise ConfigError("--out cannot be combined with --resume: the run continues in its own directory")
        if args.model:
            overrides["model"] = args.model  # a different one is refused: it would not continue the run
        if not _is_segment_run(args.resume):
            raise ConfigError(f"--task segment --resume {args.resume}: that directory holds no segmentation run "
                              "(its config.json has no \"task\": \"segment\")")
        result = train_segmentation(resume=args.resume, stop_after_epoch=args.stop_after, **overrides)
    else:
        if not args.model:
            raise ConfigError("give the U-Net to train (e.g. reslab train unet_resnet18 --task segment --data shapes), "
                              "or --resume RUN_DIR")
        overrides.setdefault("data", "shapes")
        result = train_segmentation(SegmentConfig(model=args.model, **overrides), stop_after_epoch=args.stop_after)
    print(result.summary(), flush=True)
    return 0
