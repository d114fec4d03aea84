"""Residual connections beyond CNNs: sweeps of residual vs plain for transformers, recurrent stacks,
MLPs, dropout rates and the family (ResNet, plain, highway, DenseNet).

Each experiment is a grid of runs trained by :func:`reslab.train.train` with one recipe, one run
directory each, and a summary file ``EXP_DIR/<name>.json`` (format in docs/beyond_cnns.md)::

    reslab experiment transformer   # causal char-level LM on Python's help topics, depth × (residual, plain)
    reslab experiment rnn           # stacked LSTM and GRU, residual between layers (GNMT) vs plain
    reslab experiment mlp           # MLP on the digits, depth to 50, with and without BN
    reslab experiment dropout       # dropout rate × (residual, plain) for the transformer LM
    reslab experiment family        # ResNet-20, plain-20, highway-20 and a DenseNet-BC of the same size

Like the degradation experiment they are resumable: the same command skips finished runs and
resumes interrupted ones, and ``--quick`` is a smaller budget for tests and the demo.

The final losses are *measured at the end* in eval mode (dropout off, BN in inference mode) on
the training data (for text, the first 256 windows of the training part) and on the validation
split, so residual and plain are compared on the same footing; the curves are the trainer's
per-epoch running training loss and its validation loss.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from reslab.data import SequenceLoader, TextDataset
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
from reslab.store.jsonfiles import finite_number, utc_now, versions, write_json
from reslab.store.rundir import read_metrics
from reslab.train import load_run, resolve_config
from reslab.train.evaluation import eval_sums, evaluate, result_from_sums

FORMAT = 1
TRAIN_WINDOWS = 256  # text: windows of the training part the final training loss is measured on
TEXT_SPLIT = "first 90 % of the characters train, the last 10 % validate (by position)"


# -- settings -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepSettings(LaunchSettings):
    """What every sweep shares: where, how long, how many at once, the budget."""

    out: str | None = setting(None, "experiment directory (default: experiments/<name>)", metavar="DIR")
    quick: bool = setting(False, "the small budget (≤ 2 minutes on 2 cores) that the tests and the demo use")
    epochs: int | None = setting(None, "epochs per run (default: the experiment's budget)", minimum=1)
    seed: int = setting(0, "the seed of every run", minimum=0)
    jobs: int = setting(1, "runs trained at once in worker processes", minimum=1)
    threads: int = setting(0, "torch threads per run (0: torch's default; with --jobs J use cores / J)", minimum=0)
    quiet: bool = setting(False, "no per-epoch lines")


@dataclass(frozen=True)
class TextSweepSettings(SweepSettings):
    text: str | None = setting(None, "train on this UTF-8 text file instead of Python's help topics", metavar="FILE")
    context: int = setting(64, "characters per training window", minimum=2)
    width: int | None = setting(None, "model width (embedding / hidden size; default: the budget's)", minimum=8)


@dataclass(frozen=True)
class TransformerSweepSettings(TextSweepSettings):
    depths: tuple[int, ...] | None = setting(None, "transformer layers to compare (default 1 2 4 8; quick 1 4)",
                                            minimum=1)
    variants: tuple[str, ...] = setting(("residual", "plain"), "residual (sum), plain (no skips), rezero, highway")
    norm: Literal["pre", "post"] = setting("pre", "LayerNorm placement: pre-LN (GPT-2) or post-LN (the original)")
    dropout: float = setting(0.0, "dropout on every branch's output and the embeddings (not on the attention "
                                  "weights)", minimum=0.0, maximum=0.99)


@dataclass(frozen=True)
class RecurrentSweepSettings(TextSweepSettings):
    depths: tuple[int, ...] | None = setting(None, "recurrent layers to compare (default 1 2 4 8; quick 2 6)",
                                            minimum=1)
    cells: tuple[str, ...] = setting(("lstm", "gru"), "recurrent cells: lstm, gru")
    dropout: float = setting(0.0, "dropout between layers", minimum=0.0, maximum=0.99)


@dataclass(frozen=True)
class DropoutSweepSettings(TextSweepSettings):
    rates: tuple[float, ...] | None = setting(None, "dropout rates (default 0 0.1 0.2 0.3 0.5; quick 0 0.3)",
                                             minimum=0.0, maximum=0.99)
    depth: int = setting(4, "transformer layers", minimum=1)
    variants: tuple[str, ...] = setting(("residual", "plain"), "residual (sum), plain (no skips), rezero, highway")


@dataclass(frozen=True)
class MLPSweepSettings(SweepSettings):
    depths: tuple[int, ...] | None = setting(None, "weight layers (≥ 3; default 3 10 20 50; quick 3 20)", minimum=3)
    norms: tuple[str, ...] = setting(("batch", "none"), "normalisation in the hidden units: batch, none")
    width: int = setting(64, "hidden width", minimum=4)
    data: str = setting("digits", "image dataset, flattened to vectors (digits: 64-d)")


@dataclass(frozen=True)
class FamilySweepSettings(SweepSettings):
    models: tuple[str, ...] = setting(("resnet20", "plain20", "highway20", "densenet_bc_52_12"),
                                      "models to compare (on the digits: 269,434, 269,434, 283,338 and 264,154 parameters)")
    data: str = setting("digits", "dataset: digits, or cifar10 (with --data-dir)")
    data_dir: str | None = setting(None, "where the dataset's files are", metavar="DIR")


VARIANT_MERGE = {"residual": "sum", "plain": "none", "rezero": "rezero", "highway": "highway"}


# -- the plan -------------------------------------------------------------------------------------
@dataclass
class SweepRun:
    """One run of a sweep: its TrainConfig and where it sits in the grid (the record's keys)."""

    config: Any
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sweep:
    name: str
    axis: str
    loss_unit: str
    data: dict[str, Any]
    runs: list[SweepRun]
    settings: Settings
    command: str


def _check_variants(variants) -> list[str]:
    bad = [v for v in variants if v not in VARIANT_MERGE]
    if bad or not variants:
        raise ConfigError(f"--variants: {', '.join(bad) or 'none given'}; choose from {', '.join(VARIANT_MERGE)}")
    return list(dict.fromkeys(variants))


def _text_data(s: TextSweepSettings, quick: bool) -> tuple[dict, dict]:
    """The data settings of a text sweep and the ``data`` entry of its summary."""
    options: dict[str, Any] = {"context": s.context}
    if s.text:
        options["file"] = str(Path(s.text).expanduser().resolve())
    elif quick:
        options["max_chars"] = 120_000
    source = options.get("file", "Python's standard library pydoc_data/topics.py")
    description = f"character-level text, {TEXT_SPLIT}; windows of {s.context} characters"
    if "max_chars" in options:
        description += f"; quick: the first {options['max_chars']:,} characters only"
    return options, {"name": "text", "source": source, "description": description}


def _overrides(s: SweepSettings, out: Path, name: str, **extra) -> dict[str, Any]:
    values = {"seed": s.seed, "out": str(out / name), "quiet": s.quiet or s.jobs > 1, **extra}
    if s.threads:
        values["threads"] = s.threads
    if s.epochs is not None:
        values["epochs"] = s.epochs
    return values


def _depths(given, default, quick_default, quick) -> list[int]:
    return sorted(set(given)) if given else list(quick_default if quick else default)


def _out(s: SweepSettings, name: str) -> Path:
    return Path(s.out) if s.out else Path("experiments") / name


def _transformer_run(s: TextSweepSettings, run_dir: Path, data_options: dict, depth: int, variant: str, *,
                     norm: str, width: int, dropout: float, epochs: int) -> SweepRun:
    """One character-level transformer of the transformer and dropout sweeps."""
    model_options = {"merge": VARIANT_MERGE[variant], "norm": norm, "width": width, "heads": 4,
                     "dropout": dropout, "context": s.context}
    config = resolve_config("text-char", model=f"transformer{depth}", data="text", overrides={
        **_overrides(s, run_dir.parent, run_dir.name, epochs=s.epochs or epochs), "model_options": model_options,
        "data_options": data_options})
    return SweepRun(config, {"variant": variant, "residual": variant != "plain", "depth": depth, "dropout": dropout})


def plan_transformer(s: TransformerSweepSettings, command: str) -> Sweep:
    out, quick = _out(s, "transformer"), s.quick
    options, data = _text_data(s, quick)
    depths = _depths(s.depths, (1, 2, 4, 8), (1, 4), quick)
    width = s.width or (48 if quick else 64)
    epochs = 1 if quick else 3
    runs = []
    for depth in depths:
        for variant in _check_variants(s.variants):
            run = _transformer_run(s, out / f"{variant}-d{depth}-s{s.seed}", options, depth, variant,
                                   norm=s.norm, width=width, dropout=s.dropout, epochs=epochs)
            run.meta["norm"] = s.norm
            runs.append(run)
    return Sweep("transformer", "depth", "nats/char", data, runs, s, command)


def plan_dropout(s: DropoutSweepSettings, command: str) -> Sweep:
    out, quick = _out(s, "dropout"), s.quick
    options, data = _text_data(s, quick)
    rates = sorted(set(s.rates)) if s.rates else ([0.0, 0.3] if quick else [0.0, 0.1, 0.2, 0.3, 0.5])
    width = s.width or (48 if quick else 64)
    depth = 2 if quick and s.depth == 4 else s.depth
    epochs = 1 if quick else 2  # measured: ten runs of 10–16 s, 2.5 min alone on 2 cores
    runs = []
    for rate in rates:
        for variant in _check_variants(s.variants):
            runs.append(_transformer_run(s, out / f"{variant}-d{depth}-p{rate:g}-s{s.seed}", options, depth,
                                         variant, norm="pre", width=width, dropout=float(rate), epochs=epochs))
    return Sweep("dropout", "dropout", "nats/char", data, runs, s, command)


def plan_rnn(s: RecurrentSweepSettings, command: str) -> Sweep:
    out, quick = _out(s, "rnn"), s.quick
    options, data = _text_data(s, quick)
    depths = _depths(s.depths, (1, 2, 4, 8), (2, 6), quick)
    width = s.width or (48 if quick else 64)
    epochs = 1 if quick else 2
    bad = [c for c in s.cells if c not in ("lstm", "gru")]
    if bad or not s.cells:
        raise ConfigError(f"--cells: {', '.join(bad) or 'none given'}; choose from lstm, gru")
    runs = []
    for depth in depths:
        for cell in dict.fromkeys(s.cells):
            for variant, model in (("residual", f"{cell}{depth}"), ("plain", f"plain_{cell}{depth}")):
                name = f"{cell}-{variant}-d{depth}-s{s.seed}"
                config = resolve_config("text-char", model=model, data="text", overrides={
                    **_overrides(s, out, name, epochs=s.epochs or epochs),
                    "model_options": {"width": width, "dropout": s.dropout}, "data_options": options})
                runs.append(SweepRun(config, {"variant": variant, "residual": variant == "residual", "depth": depth,
                                              "cell": cell, "dropout": s.dropout}))
    return Sweep("rnn", "depth", "nats/char", data, runs, s, command)


def plan_mlp(s: MLPSweepSettings, command: str) -> Sweep:
    out, quick = _out(s, "mlp"), s.quick
    depths = _depths(s.depths, (3, 10, 20, 50), (3, 20), quick)
    bad = [n for n in s.norms if n not in ("batch", "none")]
    if bad or not s.norms:
        raise ConfigError(f"--norms: {', '.join(bad) or 'none given'}; choose from batch, none")
    epochs = 8 if quick else 30
    runs = []
    for depth in depths:
        for norm in dict.fromkeys(s.norms):
            for variant, model in (("residual", f"resmlp{depth}"), ("plain", f"plain_mlp{depth}")):
                name = f"{variant}-{norm}-d{depth}-s{s.seed}"
                # No shifts: an MLP sees the 64 pixels as unordered inputs. Gradients clipped at norm 1
                # for every run alike: without it the 50-layer residual MLP without BN diverges (NaN in
                # epoch 5 at lr 0.04), as unnormalised deep nets do at this lr.
                config = resolve_config("digits-quick" if s.data == "digits" else None, model=model, data=s.data,
                                        overrides={**_overrides(s, out, name, epochs=s.epochs or epochs),
                                                   "model_options": {"width": s.width, "norm": norm},
                                                   "crop_padding": 0, "flip": False, "lr": 0.05, "grad_clip": 1.0,
                                                   "label_smoothing": 0.0})
                runs.append(SweepRun(config, {"variant": variant, "residual": variant == "residual", "depth": depth,
                                              "norm": norm}))
    data = {"name": s.data, "source": s.data, "description": "images flattened to vectors (digits: 64-d)"}
    return Sweep("mlp", "depth", "cross-entropy", data, runs, s, command)


def family_variant(model: str) -> str:
    for prefix, variant in (("plain", "plain"), ("highway", "highway"), ("densenet", "dense")):
        if model.startswith(prefix):
            return variant
    return "residual"


def plan_family(s: FamilySweepSettings, command: str) -> Sweep:
    out, quick = _out(s, "family"), s.quick
    digits = s.data == "digits"
    epochs = (4 if quick else 15) if digits else (1 if quick else 10)
    runs = []
    for model in dict.fromkeys(s.models):
        variant = family_variant(model)
        extra = {"data_dir": s.data_dir} if s.data_dir else {}
        config = resolve_config("digits-quick" if digits else "cifar10-fast", model=model, data=s.data,
                                overrides={**_overrides(s, out, f"{model}-s{s.seed}", epochs=s.epochs or epochs),
                                           **extra})
        runs.append(SweepRun(config, {"variant": variant, "residual": variant in ("residual", "highway")}))
    data = {"name": s.data, "source": s.data_dir or s.data, "description": "image classification"}
    return Sweep("family", "model", "cross-entropy", data, runs, s, command)


PLANS = {"transformer": (TransformerSweepSettings, plan_transformer),
         "rnn": (RecurrentSweepSettings, plan_rnn),
         "mlp": (MLPSweepSettings, plan_mlp),
         "dropout": (DropoutSweepSettings, plan_dropout),
         "family": (FamilySweepSettings, plan_family)}


# -- measuring a finished run ---------------------------------------------------------------------
def _final_losses(loaded) -> dict[str, float | None]:
    """Training and validation loss (and error) of the final weights, in eval mode."""
    model, dataset = loaded.model, loaded.dataset
    if isinstance(dataset, TextDataset):
        train_tokens = dataset.train_tokens[: TRAIN_WINDOWS * dataset.context + 1]
        train = result_from_sums(eval_sums(model, SequenceLoader(train_tokens, 64, dataset.context, train=False)))
        val = result_from_sums(eval_sums(model, SequenceLoader(dataset.test_tokens, 64, dataset.context,
                                                               train=False)))
    else:
        train = evaluate(model, dataset, split="train")
        val = evaluate(model, dataset, split="test")
    return {"final_train_loss": finite_number(train.loss), "final_val_loss": finite_number(val.loss),
            "final_train_error": finite_number(train.error), "final_val_error": finite_number(val.error)}


def _rank_collapse(run_dir: Path, dataset) -> dict[str, Any] | None:
    """Relative distance from rank 1 at every layer, for the initial and the final weights."""
    from reslab.analysis.rank_collapse import rank_collapse  # noqa: PLC0415 - only transformer sweeps

    tokens = SequenceLoader(dataset.test_tokens, 32, dataset.context, train=False)
    x, _ = next(iter(tokens))
    final = rank_collapse(load_run(run_dir, dataset=dataset).model, x)
    init = rank_collapse(load_run(run_dir, "init", dataset=dataset).model, x)
    return {"layers": list(final.layers), "relative_residual": [float(v) for v in final.relative_residual],
            "init": [float(v) for v in init.relative_residual]}


def _gradient_norms(run_dir: Path, dataset) -> dict[str, Any]:
    """‖∂L/∂W‖ at every weight layer at initialisation, input layer first (one batch of 256)."""
    from reslab.analysis.gradients import layer_gradients  # noqa: PLC0415 - only MLP sweeps
    from reslab.data import normalize  # noqa: PLC0415

    loaded = load_run(run_dir, "init", dataset=dataset)
    generator = torch.Generator().manual_seed(0)
    pick = torch.randperm(dataset.num_train, generator=generator)[:256]
    x = normalize(dataset.train_images[pick], dataset.mean, dataset.std)
    grads = layer_gradients(loaded.model, x, dataset.train_labels[pick], batch_size=256)
    return {"layers": list(range(1, len(grads.grad_norm) + 1)), "names": list(grads.layers),
            "norms": [float(v) for v in grads.grad_norm]}


def measure_run(sweep: Sweep, run: SweepRun) -> dict[str, Any]:
    """The summary record of one finished run."""
    run_dir = Path(run.config.out)
    loaded = load_run(run_dir)
    metrics = read_metrics(run_dir)
    config = loaded.config
    record: dict[str, Any] = {
        "name": run_dir.name, "model": run.config.model, "run_dir": run_dir.name, **run.meta,
        "depth": run.meta.get("depth", config.get("depth")),
        "params": int(config.get("num_parameters") or sum(p.numel() for p in loaded.model.parameters())),
        "epochs": len(metrics), "wall_s": finite_number(metrics[-1].get("elapsed_s")) if metrics else None,
        **_final_losses(loaded),
        "curves": {"epoch": [m["epoch"] for m in metrics], "train_loss": [m.get("train_loss") for m in metrics],
                   "val_loss": [m.get("test_loss") for m in metrics]},
    }
    if sweep.loss_unit == "nats/char" and record["final_val_loss"] is not None:
        record["bits_per_char"] = record["final_val_loss"] / math.log(2)
    if sweep.name == "transformer":
        record["rank_collapse"] = _rank_collapse(run_dir, loaded.dataset)
    if sweep.name == "mlp":
        record["gradient_norms"] = _gradient_norms(run_dir, loaded.dataset)
    return record


# -- running --------------------------------------------------------------------------------------
class SweepResult(ExperimentResult):
    @property
    def records(self) -> list[dict[str, Any]]:
        return list((self.summary or {}).get("records") or [])

    def table(self) -> str:
        return format_table(self.records, (self.summary or {}).get("loss_unit", ""))


def _number(value, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and math.isfinite(value) else "–"


def format_table(records, unit: str = "") -> str:
    header = (f"{'run':<28} {'variant':<9} {'depth':>5} {'dropout':>7} {'params':>9} {'train loss':>10} "
              f"{'val loss':>9} {'val err':>8} {'time':>7}")
    lines = [f"final losses in {unit}, measured in eval mode" if unit else "", header, "-" * len(header)]
    for r in records:
        lines.append(f"{r['name']:<28} {r.get('variant', ''):<9} {r.get('depth') or '':>5} "
                     f"{_number(r.get('dropout'), 2) if r.get('dropout') is not None else '':>7} "
                     f"{r.get('params', 0):>9,} {_number(r.get('final_train_loss')):>10} "
                     f"{_number(r.get('final_val_loss')):>9} {_number(r.get('final_val_error')):>8} "
                     f"{_number(r.get('wall_s'), 0) + ' s':>7}")
    return "\n".join(line for line in lines if line)


def run_sweep(name: str, settings: Settings | None = None, *, say: Message | None = None, **changes) -> SweepResult:
    """Train (or resume, or reuse) every run of the sweep ``name`` and write ``EXP_DIR/<name>.json``."""
    if name not in PLANS:
        raise ConfigError(f"unknown sweep {name!r}; choose from {', '.join(PLANS)}")
    cls, plan = PLANS[name]
    s = cls.of(settings, **changes)
    command = experiment_command(["reslab", "experiment", name], s)
    sweep = plan(s, command)
    out = Path(sweep.runs[0].config.out).parent
    check_runs([run.config for run in sweep.runs])
    say = say or stderr_printer(f"reslab experiment {name}", not s.quiet)
    say(f"{len(sweep.runs)} runs into {out}")
    start = time.perf_counter()
    # Longest first, so the worker processes finish together.
    order = sorted(range(len(sweep.runs)), key=lambda i: -int(sweep.runs[i].meta.get("depth") or 0))
    outcomes_in_order = ensure_runs([sweep.runs[i].config for i in order], jobs=s.jobs, launch=s.launch_settings(),
                                    experiment_dir=out, command=command,
                                    on_start=lambda: write_settings_file(out, s, command), say=say,
                                    epoch_lines=not s.quiet)
    outcomes = [None] * len(order)
    for i, outcome in zip(order, outcomes_in_order):
        outcomes[i] = outcome
    if not all(o.finished for o in outcomes):
        return SweepResult(out, outcomes, None, [], complete=False)
    records = [measure_run(sweep, run) for run in sweep.runs]
    summary = {
        "experiment": name, "format": FORMAT, "created": utc_now(), "versions": versions(),
        "settings": s.to_dict(), "command": command, "data": sweep.data, "axis": sweep.axis,
        "loss_unit": sweep.loss_unit, "complete": True, "wall_s": time.perf_counter() - start,
        "records": records,
    }
    path = out / f"{name}.json"
    write_json(path, summary)
    return SweepResult(out, outcomes, summary, [path])
