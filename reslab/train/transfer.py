"""Transfer learning: start a run from another network's weights, with a new head.

``reslab finetune SOURCE`` and ``TrainConfig(init_from=SOURCE, freeze=[...], freeze_bn=..., head_lr=...)``
come here. A source is

* a reslab run directory (its ``checkpoints/last.safetensors``, architecture from ``config.json``),
* a reslab checkpoint (``RUN/checkpoints/*.safetensors``: architecture from its run), or
* a state-dict file on local disk (``.pth``/``.pt``/``.bin`` read with ``torch.load(weights_only=True)``,
  or ``.safetensors``), e.g. torchvision's ``resnet50-0676ba61.pth`` or a timm checkpoint (whose
  ``state_dict``/``model`` entry and DDP ``module.`` prefixes are unwrapped). Nothing is downloaded.

Every tensor except the classification head's is copied; the head is the new model's own, sized
for the new classes. A source whose other tensors differ in name or shape is refused, naming the
first mismatching tensor and both shapes, before any training starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from reslab.errors import CheckpointError, ConfigError
from reslab.models.network import BATCH_NORMS

#: File suffixes read as plain state dicts (``torch.load``) or safetensors.
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
#: Where other libraries' checkpoints keep the weights inside a bigger dict.
_NESTED_KEYS = ("state_dict", "model", "model_state_dict", "module")
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


def read_source(source: str | Path) -> TransferSource:
    """Read a run directory, a reslab checkpoint or a state-dict file (see the module doc)."""
    from reslab.train.checkpoint import CHECKPOINT_DIR, load_weights  # noqa: PLC0415 - avoid an import cycle
    from reslab.train.rundir import CONFIG_FILE, read_config  # noqa: PLC0415

    path = Path(source)
    if not path.exists():
        raise ConfigError(f"fine-tuning source {str(source)!r} does not exist: give a run directory, a checkpoint "
                          "(RUN/checkpoints/last.safetensors) or a state-dict file (.pth/.safetensors) on local disk")
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise ConfigError(f"fine-tuning source {str(path)!r} is a directory without {CONFIG_FILE}, so it is not a "
                              "reslab run; give a run directory or a weights file")
        return _from_run(path, path / CHECKPOINT_DIR / "last.safetensors", read_config(path), load_weights)
    if path.suffix == ".safetensors" and path.parent.name == CHECKPOINT_DIR and (path.parent.parent / CONFIG_FILE).is_file():
        return _from_run(path.parent.parent, path, read_config(path.parent.parent), load_weights)
    if path.suffix == ".safetensors":
        state, metadata = load_weights(path)
        return TransferSource(state=_unwrap(state, path), model=metadata.get("model") or None,
                              origin={"kind": "safetensors file", "path": str(path.resolve()),
                                      "model": metadata.get("model")})
    if path.suffix in TORCH_SUFFIXES:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - pickle/zip errors of every kind: one clear message
            # torch's own text advises weights_only=False, i.e. running the file's pickled code: not here.
            reason = ("it is corrupt or holds objects beyond tensors, which would need its pickled code run"
                      if "Weights only load failed" in str(exc) else f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
            raise CheckpointError(f"{str(path)!r} could not be read as a PyTorch state dict ({reason}); it must be "
                                  "a file written by torch.save(model.state_dict())") from None
        return TransferSource(state=_unwrap(loaded, path), model=None,
                              origin={"kind": "state-dict file", "path": str(path.resolve())})
    raise ConfigError(f"fine-tuning source {str(path)!r}: unknown file type {path.suffix!r}; expected a run "
                      f"directory, .safetensors or one of {', '.join(TORCH_SUFFIXES)}")


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


def _unwrap(loaded: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a state dict, out of the dicts other libraries wrap them in."""
    for _ in range(3):
        if isinstance(loaded, Mapping) and not any(isinstance(v, torch.Tensor) for v in loaded.values()):
            inner = next((loaded[k] for k in _NESTED_KEYS if isinstance(loaded.get(k), Mapping)), None)
            if inner is None:
                break
            loaded = inner
    if not isinstance(loaded, Mapping) or not loaded:
        raise CheckpointError(f"{str(path)!r} holds no state dict (a mapping of parameter names to tensors)")
    state = {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    if state and all(k.startswith("module.") for k in state):  # saved from a DDP/DataParallel wrapper
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


# -- the head -------------------------------------------------------------------------------------
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


def load_backbone(model: nn.Module, source: TransferSource, where: str, hint: str | None = None) -> dict[str, Any]:
    """Copy every tensor of ``source`` into ``model`` except the head's; return what was done.

    Raises CheckpointError naming the first tensor whose name or shape does not match.
    """
    head = classifier_name(model)
    is_head = lambda key: key == head or key.startswith(head + ".")  # noqa: E731
    target = {k: v for k, v in model.state_dict().items() if not is_head(k)}
    given = {k: v for k, v in source.state.items() if not is_head(k)}
    name = getattr(model, "model_name", type(model).__name__)
    hint = hint or (f"fine-tune a source of the same architecture, or pass --model with the source's architecture "
            f"(the source says {source.model!r})" if source.model else
            "give --model with the architecture the file was saved from (e.g. resnet50 for torchvision's resnet50)")
    for key, tensor in target.items():
        if key not in given:
            raise CheckpointError(f"{where} does not match {name}: it has no tensor {key!r} (shape {tuple(tensor.shape)} "
                                  f"in {name}); {hint}")
        if tuple(given[key].shape) != tuple(tensor.shape):
            raise CheckpointError(f"{where} does not match {name}: {key} has shape {tuple(given[key].shape)} in the "
                                  f"source and {tuple(tensor.shape)} in {name}; {hint}")
    extra = [k for k in given if k not in target]
    if extra:
        raise CheckpointError(f"{where} does not match {name}: the source has tensor {extra[0]!r} (shape "
                              f"{tuple(given[extra[0]].shape)}) that {name} lacks ({len(extra)} such); {hint}")
    with torch.no_grad():
        own = model.state_dict()
        for key, tensor in given.items():
            own[key].copy_(tensor.to(own[key].dtype))
    head_shapes = {k: list(v.shape) for k, v in source.state.items() if is_head(k)}
    return {"copied_tensors": len(given), "head": head, "source_head_shapes": head_shapes}


# -- freezing -------------------------------------------------------------------------------------
def stem_modules(model: nn.Module) -> list[str]:
    """The top-level modules before the first stage (``conv1``, ``bn1``, ``maxpool``)."""
    names = []
    for name, _ in model.named_children():
        if name.startswith(("layer", "block", "stage")):
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
            resolved.extend(stem_modules(model))
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
    "TransferSource", "read_source", "classifier_name", "load_backbone", "stem_modules", "resolve_freeze",
    "freeze", "fixed_bn_modules", "keep_bn_fixed", "finetune_config", "finetune",
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
    return resolve_config(recipe, model=name, data=data, overrides=values)


def finetune(source: str | Path, *, data: str, recipe: str | Path | None = None, model: str | None = None,
             **overrides: Any):
    """Fine-tune ``source`` on ``data`` (the Python twin of ``reslab finetune``); returns a TrainResult.

    ``finetune("runs/r20", data="cifar10", data_options={"classes": [...], "per_class": 100},
    freeze=["stem"], head_lr=0.1, lr=0.02, epochs=30)``
    """
    from reslab.train.trainer import train  # noqa: PLC0415 - the trainer imports this module

    return train(finetune_config(source, data=data, recipe=recipe, model=model, overrides=overrides))
