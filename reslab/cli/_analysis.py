"""Arguments and steps shared by the ``reslab analyze`` commands (gradients, responses, lesion).

Every analysis command takes a TARGET — a model name (fresh initialisation, or the weights of
``--checkpoint FILE``; needs ``--data``) or a RUN_DIR — optionally a twin, chooses samples, runs the library function, saves the result
(JSON + NPZ) and draws its PNGs from the saved file with :mod:`reslab.report.plots`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from reslab.analysis.common import default_out_dir, load_target, progress_enabled
from reslab.cli._weights import add_normalization_arguments, parse_floats, say_weights
from reslab.settings import parse_key_values  # noqa: F401 - the one KEY=VALUE parser, used by the commands

#: The TARGET of the analyses that also take a checkpoint file (landscape, hessian).
TARGET_OR_CHECKPOINT = ("a run directory, a checkpoint file inside one (RUN/checkpoints/x.safetensors), or a model "
                        "name (fresh, seeded initialisation, or the weights of --checkpoint FILE; needs --data)",
                        "RUN_DIR|CHECKPOINT|MODEL")


def add_target_arguments(parser: argparse.ArgumentParser, *, samples_default: int | None, samples_help: str,
                         batch_size_default: int | None, checkpoint: bool = True,
                         helps: Mapping[str, str | tuple[str, str]] | None = None) -> None:
    """TARGET, data, twin, samples, output and device options common to every analysis.

    ``helps``: another help text — or ``(help, metavar)`` — for some of them, by destination
    (``"target"``, ``"seed"``, ``"batch_size"``, ``"out"``): the command knows what they mean for it.
    """
    helps = dict(helps or {})

    def text(dest: str, default: str, metavar: str | None = None) -> dict[str, Any]:
        given = helps.get(dest, default)
        help_text, shown = given if isinstance(given, tuple) else (given, metavar)
        return {"help": help_text, **({"metavar": shown} if shown else {})}

    parser.add_argument("target", **text(
        "target", "a model name (fresh, seeded initialisation, or the weights of --checkpoint FILE; needs --data) or "
                  "a run directory", "MODEL|RUN_DIR"))
    data = parser.add_argument_group("data")
    data.add_argument("--data", metavar="NAME",
                      help="dataset (digits, cifar10, cifar100, imagefolder, synthetic); required for a MODEL, "
                           "optional for a RUN_DIR (default: the run's own data)")
    data.add_argument("--data-dir", metavar="DIR", help="where the dataset's files are")
    data.add_argument("--data-option", metavar="KEY=VALUE", action="append", default=[],
                      help="dataset option, repeatable (e.g. num_train=256 for synthetic)")
    data.add_argument("--download", action="store_true", help="download the dataset if it is missing (CIFAR only)")
    data.add_argument("--samples", type=int, default=samples_default, metavar="N",
                      help=samples_help + (f" (default {samples_default})" if samples_default else
                                           " (default: the whole split)"))
    model = parser.add_argument_group("model")
    if checkpoint:
        model.add_argument("--checkpoint", default="last", metavar="NAME|FILE",
                           help="for a RUN_DIR: last (default), init, ema, epoch_K or a .safetensors file; for a "
                                "MODEL: a weights file (.pth, .pt, .pth.tar, .bin, .safetensors; torchvision, timm or "
                                "other code's state dict), loaded instead of a fresh initialisation")
    model.add_argument("--twin", nargs="?", const="auto", default=None, metavar="MODEL|RUN_DIR",
                       help="compare with the plain (or residual) twin: alone, the twin is built (for a MODEL) or "
                            "found among the run's sibling directories (for a RUN_DIR); or name it. Give a bare "
                            "--twin after MODEL|RUN_DIR (or write --twin=auto), so it does not take the target")
    model.add_argument("--model-option", metavar="KEY=VALUE", action="append", default=[],
                       help="option of a MODEL, repeatable (e.g. zero_init_last=true; shortcut_pad=both for weights "
                            "of the public CIFAR ResNet code, see docs/models.md)")
    add_normalization_arguments(model)
    model.add_argument("--seed", type=int, default=0,
                       **text("seed", "seed of fresh models and of sample choice (default 0)"))
    run = parser.add_argument_group("run")
    run.add_argument("--batch-size", type=int, default=batch_size_default,
                     **text("batch_size", f"images per forward pass (default {batch_size_default})"))
    run.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1 or auto")
    run.add_argument("--out", **text(
        "out", "output directory (default: RUN_DIR/analysis, or analysis/MODEL for a model name)", "DIR"))
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--force", action="store_true",
                     help="replace a result of another computation (other target or settings) in the output "
                          "file, and its plots; without it such a file is kept and the command stops")


def load_main_target(args, checkpoint: str | None = None, dataset=None):
    """The TARGET of ``args`` at ``checkpoint`` (default ``args.checkpoint``), on ``dataset`` if given."""
    data = {"dataset": dataset} if dataset is not None else {
        "data": args.data, "data_dir": args.data_dir, "download": args.download,
        "data_options": parse_key_values(args.data_option, "--data-option")}
    target = load_target(
        args.target, **data, checkpoint=checkpoint or getattr(args, "checkpoint", "last"),
        model_options=parse_key_values(args.model_option, "--model-option"), seed=args.seed,
        mean=parse_floats(args.mean, "--mean"), std=parse_floats(args.std, "--std"),
    )
    say_weights(target.config, f"reslab analyze {getattr(args, 'analysis', '')}".rstrip())
    return target


def output_dir(args, target) -> Path:
    return Path(args.out) if args.out else default_out_dir(target)


def save_with_plots(result, out_dir: Path, plots: Sequence[tuple[str, Callable]], *, force: bool = False,
                    all_suffixes: Sequence[str] = ()) -> list[Path]:
    """Save ``result`` as ``out_dir/<analysis>.json``, then draw each ``(file suffix, plot)`` from that file.

    Drawing reads the saved file back, exactly as the report does, so the PNG shows what was saved;
    a plot in ``all_suffixes`` that this result has not is removed with the old data. ``force``:
    replace a result of another computation (see :meth:`reslab.store.Result.save`).
    """
    from reslab.report.files import load_result  # noqa: PLC0415 - lazy: the report draws with matplotlib, which `reslab --help` need not import
    from reslab.report.plots import remove_stale_figures, save_figure  # noqa: PLC0415 - lazy: the report draws with matplotlib, which `reslab --help` need not import

    json_path = result.save(out_dir / f"{result.analysis}.json", force=force)
    data = load_result(json_path)
    written = [json_path]
    if json_path.with_suffix(".npz").exists():
        written.append(json_path.with_suffix(".npz"))
    for suffix, plot in plots:
        written.append(save_figure(plot(data), out_dir / f"{result.analysis}{suffix}.png"))
    remove_stale_figures(json_path, all_suffixes, written)
    return written


def print_written(paths: Sequence[Path]) -> None:
    print("wrote " + ", ".join(str(p) for p in paths))


def progress(args) -> bool:
    return progress_enabled(args.quiet)
