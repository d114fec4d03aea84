"""Transfer learning: start a run from another network's weights, with a new head.

``reslab finetune SOURCE`` and ``TrainConfig(init_from=SOURCE, freeze=[...], freeze_bn=..., head_lr=...)``
come here, and so does every ``MODEL --checkpoint FILE`` of the other commands
(:func:`reslab.train.loading.load_file`): one reader of weights files. A source is

* a reslab run directory (its ``checkpoints/last.safetensors``, architecture from ``config.json``),
* a reslab checkpoint (``RUN/checkpoints/*.safetensors``: architecture from its run), or
* a state-dict file on local disk (``.pth``/``.pt``/``.pth.tar``/``.th``/``.bin``/``.ckpt`` read with
  ``torch.load(weights_only=True)``, or ``.safetensors``), e.g. torchvision's ``resnet50-0676ba61.pth``,
  timm's ``checkpoint.pth.tar`` or a public CIFAR ResNet's. The weights are found inside the dicts other
  libraries wrap them in (``state_dict``, ``model``, ``state_dict_ema``, ...); names lose a prefix every
  one of them carries and the model's do not (``module.``, ``model.``, ``_orig_mod.``); a classifier
  named ``linear``, ``head`` or ``classifier`` is the model's ``fc``. Nothing is downloaded.

Every tensor except the classification head's is copied; the head is the new model's own, sized
for the new classes. The first convolution is adapted when the input channels differ (as timm's
``in_chans``: summed over the RGB filters for one channel, repeated and rescaled for more). A
source whose other tensors differ in name or shape is refused, naming the first mismatching
tensor and both shapes, before any training starts.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from reslab.errors import CheckpointError, ConfigError
from reslab.models.layers import ZeroPadShortcut
from reslab.models.network import BATCH_NORMS

#: File suffixes read as plain state dicts (``torch.load``): ``.pth.tar`` is what timm's train
#: script writes, ``.th`` what the public CIFAR ResNet code's pretrained files are named.
TORCH_SUFFIXES = (".pth", ".pt", ".pth.tar", ".th", ".bin", ".ckpt")
#: Every suffix a weights file may have.
WEIGHT_SUFFIXES = (".safetensors", *TORCH_SUFFIXES)
#: Where other libraries' checkpoints keep the weights inside a bigger dict, preferred first (the
#: trained weights before their EMA, as timm's own loader does).
_NESTED_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema", "model_ema", "module", "net")
#: Prefixes a wrapper adds to every name: DDP/DataParallel, Lightning and wrapper modules, torch.compile.
_WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.")
#: Other names of a classifier (``head.fc`` before ``head``: the longer one is the linear layer).
_HEAD_NAMES = ("fc", "linear", "head.fc", "head", "classifier", "last_linear")
#: The module names ``freeze`` accepts for the stem (everything before the first stage).
STEM = "stem"


@dataclass
class TransferSource:
    """Weights to start from: ``state`` (CPU tensors), the architecture when the source says it
    (``model``, ``model_options``; a bare state-dict file does not), and ``origin`` — what is
    recorded in the new run's config (kind, path, model, the source's classes and data)."""

    state: dict[str, torch.Tensor]
    model: str | None
    model_options: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, Any] = field(default_factory=dict)

    @property
    def is_file(self) -> bool:
        """Weights from outside reslab's runs (whose model options are not known)."""
        return self.origin.get("kind") in ("state-dict file", "safetensors file")


def weights_suffix(path: str | Path) -> str | None:
    """The weights-file suffix ``path`` ends with (``.pth.tar`` counts as one), or ``None``."""
    name = Path(path).name.lower()
    return next((s for s in sorted(WEIGHT_SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)


def read_source(source: str | Path, what: str = "fine-tuning source") -> TransferSource:
    """Read a run directory, a reslab checkpoint or a state-dict file (see the module doc).

    ``what`` names the source in messages (``"--checkpoint"`` for the commands that take one).
    """
    from reslab.train.checkpoint import CHECKPOINT_DIR, load_weights  # noqa: PLC0415 - avoid an import cycle
    from reslab.train.rundir import CONFIG_FILE, read_config  # noqa: PLC0415

    path = Path(source)
    if not path.exists():
        raise ConfigError(f"{what} {str(source)!r} does not exist: give a run directory, a checkpoint "
                          "(RUN/checkpoints/last.safetensors) or a state-dict file (.pth/.safetensors) on local disk")
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise ConfigError(f"{what} {str(path)!r} is a directory without {CONFIG_FILE}, so it is not a "
                              "reslab run; give a run directory or a weights file")
        return _from_run(path, path / CHECKPOINT_DIR / "last.safetensors", read_config(path), load_weights)
    suffix = weights_suffix(path)
    if suffix == ".safetensors" and path.parent.name == CHECKPOINT_DIR and (path.parent.parent / CONFIG_FILE).is_file():
        return _from_run(path.parent.parent, path, read_config(path.parent.parent), load_weights)
    if suffix == ".safetensors":
        # Not part of a run: there is no other checkpoint to fall back on, only the file itself.
        tensors, metadata = load_weights(path, hint="the file is not part of a run, so copy or download it again")
        state, entry = _unwrap(tensors, path)
        return TransferSource(state=state, model=metadata.get("model") or None,
                              origin={"kind": "safetensors file", "path": str(path.resolve()),
                                      "model": metadata.get("model"), "entry": entry})
    if suffix in TORCH_SUFFIXES:
        state, entry = _unwrap(_torch_load(path), path)
        return TransferSource(state=state, model=None,
                              origin={"kind": "state-dict file", "path": str(path.resolve()), "entry": entry})
    raise ConfigError(f"{what} {str(path)!r}: unknown file type {path.suffix!r}; expected a run directory or a "
                      f"weights file ({', '.join(WEIGHT_SUFFIXES)})")


def _safe_globals():
    """Classes beyond tensors that a weights file may hold and that are safe to rebuild.

    timm's train script saves its ``argparse.Namespace`` of arguments next to the weights
    (``checkpoint.pth.tar``): a plain attribute bag, rebuilt without running any code.
    """
    allow = getattr(torch.serialization, "safe_globals", None)
    if allow is None:  # torch < 2.5
        torch.serialization.add_safe_globals([argparse.Namespace])
        return contextlib.nullcontext()
    return allow([argparse.Namespace])


def _torch_load(path: Path) -> Any:
    hint = "it must be a file written by torch.save(model.state_dict())"
    if path.stat().st_size == 0:
        raise CheckpointError(f"{str(path)!r} is empty (0 bytes), so it holds no weights; {hint} (copy or download it "
                              "again)")
    try:
        with _safe_globals():
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle/zip errors of every kind: one clear message
        raise CheckpointError(f"{str(path)!r} could not be read as a PyTorch state dict: {_load_problem(exc)}; "
                              f"{hint}") from None


def _load_problem(exc: Exception) -> str:
    """What ``torch.load`` found wrong, in reslab's words: torch's own text advises
    ``weights_only=False``, i.e. running the file's pickled code, which is never done here."""
    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return (f"it holds a pickled {found[1]} object, not only tensors, and rebuilding it would run code from "
                "the file")
    if "Weights only load failed" in text:
        return "it is not a file torch.save wrote (neither a zip archive nor a pickle of tensors)"
    if "zip archive" in text or "central directory" in text:
        return "it is truncated or damaged (its zip archive is incomplete)"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    sentence = first.split(". ")[0].rstrip(".")
    return f"{type(exc).__name__}" + (f": {sentence}" if sentence else "")


def _from_run(run_dir: Path, weights: Path, config: dict[str, Any], load_weights) -> TransferSource:
    state, _ = load_weights(weights)
    origin = {"kind": "reslab run", "path": str(run_dir.resolve()), "checkpoint": str(weights.resolve()),
              "model": config.get("model"), "data": config.get("data"),
              "data_options": config.get("data_options") or {}, "class_names": config.get("class_names")}
    test_error = None
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        import json  # noqa: PLC0415

        for line in metrics.read_text(encoding="utf-8").splitlines():
            if line.strip() and json.loads(line).get("test_error") is not None:
                test_error = json.loads(line)["test_error"]
    origin["test_error"] = test_error
    return TransferSource(state=state, model=config.get("model"), model_options=dict(config.get("model_options") or {}),
                          origin=origin)


def _unwrap(loaded: Any, path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """The tensors of a state dict, out of the dicts other libraries wrap them in, and the entry
    they were found under (``"state_dict"``; ``None`` at the top level)."""
    entries: list[str] = []
    for _ in range(3):
        if not isinstance(loaded, Mapping):
            break
        # A wrapper entry wins even beside a stray tensor at the top (a saved metric, say).
        key = next((k for k in _NESTED_KEYS if isinstance(loaded.get(k), Mapping) and loaded.get(k)), None)
        if key is None:
            break
        entries.append(key)
        loaded = loaded[key]
    state = ({str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
             if isinstance(loaded, Mapping) else {})
    if not state:
        held = f"its entries are {', '.join(map(str, list(loaded)[:8]))}" if isinstance(loaded, Mapping) and loaded \
            else f"it holds {type(loaded).__name__ if not isinstance(loaded, Mapping) else 'an empty mapping'}"
        raise CheckpointError(f"{str(path)!r} holds no state dict (a mapping of parameter names to tensors; {held}); "
                              f"expected one at the top or under {', '.join(_NESTED_KEYS[:4])}")
    # A NaN or infinite weight computes NaN everywhere downstream: a useless file, refused by name.
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{str(path)!r}: tensor {key!r} holds {bad} non-finite value(s) (NaN or infinity) "
                                  f"of {tensor.numel()}, so every output would be NaN; the weights are damaged (a "
                                  "run that diverged, or a bad copy): use another file")
    return state, ".".join(entries) or None


# -- matching a source to a model -----------------------------------------------------------------
def classifier_name(model: nn.Module) -> str:
    """The dotted name of the model's classification head (``fc`` in the ResNet family)."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else getattr(model, "fc", None)
    for name, module in model.named_modules():
        if head is not None and module is head and name:
            return name
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if linears:
        return linears[-1]
    raise ConfigError(f"model {getattr(model, 'model_name', type(model).__name__)!r} has no linear classification "
                      "head to replace, so it cannot be fine-tuned")


def input_conv_name(model: nn.Module) -> str | None:
    """The first convolution, the one that reads the images (``conv1``), if the model has one."""
    in_chans = getattr(model, "in_chans", None)
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name if in_chans is None or module.in_channels == in_chans else None
    return None


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> tuple[torch.Tensor, str]:
    """A first convolution's weight ``(O, I, k, k)`` for ``in_chans`` input channels, and how.

    timm's rule for ``in_chans``: one channel sums the filters over the source's channels (a grey
    image is what the RGB filters see when R = G = B); more channels repeat the filters and scale
    them by ``I / in_chans``, which keeps the output's scale (for a multiple of ``I``, an image whose
    channels are all equal gives exactly the source's output).
    """
    source = weight.shape[1]
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True), f"its {source}-channel filters summed into one channel"
    repeats = math.ceil(in_chans / source)
    adapted = weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (source / in_chans)
    return adapted, f"its {source}-channel filters repeated to {in_chans} channels and scaled by {source}/{in_chans}"


def map_names(model: nn.Module, state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``state`` under the model's names: wrapper prefixes the model lacks dropped, a classifier of
    another common name renamed to the model's. Returns the state and what was done."""
    target = model.state_dict()
    state = dict(state)
    done: dict[str, Any] = {}
    stripped = []
    changed = True
    while changed and state:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state) and not any(k.startswith(prefix) for k in target):
                state = {k[len(prefix):]: v for k, v in state.items()}
                stripped.append(prefix)
                changed = True
    if stripped:
        done["stripped_prefixes"] = stripped
    head = _head_name(model)
    if head is not None and f"{head}.weight" not in state:
        for other in _HEAD_NAMES:
            under = {k for k in state if k.startswith(other + ".")}
            if other == head or not under or {k[len(other) + 1:] for k in under} - {"weight", "bias"}:
                continue
            if state[f"{other}.weight"].ndim == 2 and not any(k.startswith(other + ".") for k in target):
                state = {(head + k[len(other):] if k in under else k): v for k, v in state.items()}
                done["renamed"] = {other: head}
                break
    return state, done


def _head_name(model: nn.Module) -> str | None:
    try:
        return classifier_name(model)
    except ConfigError:
        return None


def load_backbone(model: nn.Module, source: TransferSource, where: str, hint: str | None = None) -> dict[str, Any]:
    """Copy every tensor of ``source`` into ``model`` except the head's; return what was done.

    Raises CheckpointError naming the first tensor whose name or shape does not match. The first
    convolution is adapted to the model's input channels (:func:`adapt_input_conv`).
    """
    given, record = match_backbone(model, source, where, hint)
    with torch.no_grad():
        own = model.state_dict()
        for key, tensor in given.items():
            own[key].copy_(tensor.to(own[key].dtype))
    return record


def match_backbone(model: nn.Module, source: TransferSource, where: str,
                   hint: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors :func:`load_backbone` copies (renamed and adapted) and its record; nothing is
    copied, so a model on the ``meta`` device checks a source without building weights."""
    head = classifier_name(model)
    is_head = lambda key: key == head or key.startswith(head + ".")  # noqa: E731
    state, record = map_names(model, source.state)
    target = {k: v for k, v in model.state_dict().items() if not is_head(k)}
    given = {k: v for k, v in state.items() if not is_head(k)}
    name = getattr(model, "model_name", type(model).__name__)
    hint = hint or _mismatch_hint(name, source)
    first_conv = input_conv_name(model)
    notes: list[str] = []
    for key, tensor in target.items():
        if key not in given:
            if key.endswith("num_batches_tracked"):
                continue  # older files predate the counter; BN does not use it in eval mode
            raise CheckpointError(f"{where} does not match {name}: it has no tensor {key!r} (shape {tuple(tensor.shape)} "
                                  f"in {name}); {hint}")
        theirs, ours = tuple(given[key].shape), tuple(tensor.shape)
        if theirs != ours and first_conv is not None and key == f"{first_conv}.weight" and len(ours) == 4 \
                and theirs[:1] + theirs[2:] == ours[:1] + ours[2:]:
            given[key], how = adapt_input_conv(given[key].float(), ours[1])
            record["input_conv"] = {"tensor": key, "source_channels": theirs[1], "channels": ours[1], "how": how}
            notes.append(f"input channels: {where} was trained on {theirs[1]}-channel images, {name} here reads "
                         f"{ours[1]}: the first convolution {key} has {how} (timm's in_chans rule)")
        elif theirs != ours:
            raise CheckpointError(f"{where} does not match {name}: {key} has shape {theirs} in the "
                                  f"source and {ours} in {name}; {hint}")
    extra = [k for k in given if k not in target]
    if extra:
        raise CheckpointError(f"{where} does not match {name}: the source has tensor {extra[0]!r} (shape "
                              f"{tuple(given[extra[0]].shape)}) that {name} lacks ({len(extra)} such); {hint}")
    if record.get("stripped_prefixes"):
        notes.insert(0, f"names: dropped the prefix {' and '.join(repr(p) for p in record['stripped_prefixes'])} of "
                        "every tensor")
    if record.get("renamed"):
        (theirs_head, ours_head), = record["renamed"].items()
        notes.insert(0, f"classifier: the source's {theirs_head}.* is {name}'s {ours_head}.*")
    pad_note = _shortcut_pad_note(model, source)
    if pad_note:
        notes.append(pad_note)
    head_shapes = {k: list(v.shape) for k, v in state.items() if is_head(k)}
    record.update({"copied_tensors": len(given), "head": head, "source_head_shapes": head_shapes, "notes": notes})
    return given, record


def _mismatch_hint(name: str, source: TransferSource) -> str:
    if source.model and source.model != name:
        return f"the source is a {source.model}: pass --model {source.model} (the source's architecture)"
    if source.model:
        options = ", ".join(f"{k}={v}" for k, v in source.model_options.items()) or "its defaults"
        return f"the source is a {name} built with {options}; build the same"
    return "give --model with the architecture the file was saved from (e.g. --model resnet50 for torchvision's resnet50)"


def _shortcut_pad_note(model: nn.Module, source: TransferSource) -> str | None:
    """A reminder, for weights from outside reslab, that option A's zero channels have two conventions
    which no state dict shows (option A has no parameters) and which give very different outputs."""
    if not source.is_file or "shortcut_pad" in (getattr(model, "model_options", None) or {}):
        return None
    if not any(isinstance(m, ZeroPadShortcut) for m in model.modules()):
        return None
    return ("option A shortcuts: this model appends its zero channels (shortcut_pad=back, reslab's convention); "
            "weights trained with the public CIFAR ResNet code, which pads both sides, need --model-option "
            "shortcut_pad=both (an error far above the published one says so; see docs/models.md)")


def load_weights_file(model: nn.Module, source: TransferSource, where: str, hint: str | None = None) -> dict[str, Any]:
    """Every tensor of ``source`` into ``model``, the classifier included (its shape must match)."""
    record = load_backbone(model, source, where, hint)
    head = record["head"]
    state, _ = map_names(model, source.state)
    head_state = {key[len(head) + 1:]: tensor for key, tensor in state.items() if key.startswith(head + ".")}
    module = model.get_submodule(head)
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in head_state.items()}
    if got != expected:
        raise CheckpointError(f"{where}: the classifier {head} of {getattr(model, 'model_name', 'the model')} does not "
                              f"match the file's (shapes {got or 'none'} in the file, {expected} in the model)")
    module.load_state_dict(head_state)
    return record


# -- freezing -------------------------------------------------------------------------------------
def stem_modules(model: nn.Module) -> list[str]:
    """The top-level modules before the first stage (``conv1``, ``bn1``, ``maxpool``; an MLP's ``input``).

    The head ends the stem too: a model whose stages go by another name must not have its new
    head frozen with ``--freeze stem``.
    """
    head = classifier_name(model)
    names = []
    for name, _ in model.named_children():
        if name.startswith(("layer", "block", "stage", "units")) or name == head:
            break
        names.append(name)
    return names


def resolve_freeze(model: nn.Module, names: list[str]) -> list[str]:
    """The module names ``freeze`` means (``stem`` expanded); ConfigError for one the model lacks."""
    modules = dict(model.named_modules())
    head = classifier_name(model)
    resolved: list[str] = []
    for name in names:
        if name == STEM:
            stem = stem_modules(model)
            if not stem:
                raise ConfigError(f"--freeze stem: {getattr(model, 'model_name', 'the model')} has no modules before "
                                  f"its first stage; name the modules to freeze instead")
            resolved.extend(stem)
            continue
        if name not in modules or not name:
            top = [STEM] + [n for n, child in model.named_children() if n not in stem_modules(model)
                            and n != head and any(True for _ in child.parameters())]
            raise ConfigError(f"--freeze {name!r}: {getattr(model, 'model_name', 'the model')} has no module of that "
                              f"name; freeze some of {', '.join(top)} (or a block such as layer1.0)")
        if name == head or name.startswith(head + "."):
            raise ConfigError(f"--freeze {name!r} is the new classification head, which is always trained")
        resolved.append(name)
    return list(dict.fromkeys(resolved))


def freeze(model: nn.Module, names: list[str]) -> int:
    """``requires_grad=False`` on the parameters of modules ``names``; returns how many tensors."""
    modules = dict(model.named_modules())
    count = 0
    for name in names:
        for param in modules[name].parameters():
            if param.requires_grad:
                param.requires_grad_(False)
                count += 1
    return count


def fixed_bn_modules(model: nn.Module, frozen: list[str], freeze_bn: bool) -> list[nn.Module]:
    """The batch-norm layers that keep their statistics: all with ``freeze_bn``, else those in frozen modules.

    A frozen stage whose BN still tracked batch statistics would change its output anyway, so its
    BN layers stay in eval mode too (torchvision's detection backbones freeze BN for the same reason).
    """
    if freeze_bn:
        chosen = [m for m in model.modules() if isinstance(m, BATCH_NORMS)]
        for module in chosen:
            for param in module.parameters():
                param.requires_grad_(False)
        return chosen
    modules = dict(model.named_modules())
    out: list[nn.Module] = []
    for name in frozen:
        out.extend(m for m in modules[name].modules() if isinstance(m, BATCH_NORMS))
    return list({id(m): m for m in out}.values())


def keep_bn_fixed(modules: list[nn.Module]) -> None:
    """Call after ``model.train()``: these BN layers normalise with their running statistics."""
    for module in modules:
        module.eval()


__all__ = [
    "TransferSource", "read_source", "weights_suffix", "classifier_name", "input_conv_name", "adapt_input_conv",
    "map_names", "match_backbone", "load_backbone", "load_weights_file", "stem_modules", "resolve_freeze",
    "freeze", "fixed_bn_modules", "keep_bn_fixed", "finetune_config",
]


def finetune_config(source: str | Path, *, data: str, recipe: str | Path | None = None, model: str | None = None,
                    overrides: Mapping[str, Any] | None = None):
    """The :class:`~reslab.train.TrainConfig` of fine-tuning ``source`` on ``data``.

    The architecture (and its model options) is the source's; a bare state-dict file needs
    ``model``. Settings come from ``recipe`` (default: the data's, as for ``reslab train``) and
    ``overrides`` (``freeze``, ``freeze_bn``, ``head_lr``, ``lr``, ``epochs``, ...).
    """
    from reslab.train.config import resolve_config  # noqa: PLC0415 - config imports nothing of ours

    read = read_source(source)
    name = model or read.model
    if not name:
        raise ConfigError(f"{str(source)!r} is a {read.origin['kind']}, which does not say which architecture it holds; "
                          "give it with --model (e.g. --model resnet50 for torchvision's resnet50 weights)")
    values = dict(overrides or {})
    values["init_from"] = str(source)
    if read.model_options and name == read.model:
        values["model_options"] = {**read.model_options, **dict(values.get("model_options") or {})}
    check_source_fits(read, name, dict(values.get("model_options") or {}), f"fine-tuning source {str(source)!r}")
    return resolve_config(recipe, model=name, data=data, overrides=values)


def check_source_fits(source: TransferSource, name: str, options: Mapping[str, Any], where: str) -> None:
    """CheckpointError now, before a run directory is made, if ``source`` cannot start ``name``.

    The model is built on the ``meta`` device (shapes without storage), so this costs no memory;
    the head and the input channels are left to the trainer (the data decides them).
    """
    from reslab.models import create_model, model_info  # noqa: PLC0415 - models import nothing of ours

    if model_info(name).family not in ("cifar", "imagenet"):
        return
    with torch.device("meta"):
        model = create_model(name, **dict(options))
    match_backbone(model, source, where)
