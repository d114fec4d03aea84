"""Bring models from other frameworks: ``from_keras`` reads Keras ``applications`` ResNets.

    >>> model = reslab.models.convert.from_keras("resnet50.weights.h5")       # or a .keras file
    >>> logits = model(images_nchw)                                      # Keras' inputs, channels first

Supported, with or without their 1000-class top:

- Keras' ``ResNet50``, ``ResNet101`` and ``ResNet152`` (v1: the stride on the first 1×1 conv of
  a block, biased convolutions, BatchNorm epsilon 1.001e-5) become ``resnet50/101/152`` with the
  layout options ``stride_in_1x1``, ``conv_bias`` and ``bn_eps``;
- Keras' ``ResNet50V2``, ``ResNet101V2`` and ``ResNet152V2`` (pre-activation; a stage strides in
  its last block, whose shortcut is a 1×1 max-pool with stride; a final ``post_bn``) become the
  registered ``resnet50v2/101v2/152v2`` (the ``"keras_v2"`` layout of
  :data:`reslab.models.network.LAYOUTS`).

The file is read with h5py (no Keras needed); the version is told by its layers (v1 has a batch
norm for every conv, v2 four fewer: none after the stem and the projections, one ``post_bn``).
Keras 3 stores weights under generic names in the functional model's layer order
(``conv2d``, ``conv2d_1``, …; in which a stage's projection shortcut ``_0_conv`` comes after
the first block's 3×3 conv), so each kind of layer is matched by that order to the Keras
application's layer names (``conv2_block1_0_conv``, …); a ``.keras`` archive also records
those names (its ``config.json``), and they are checked. Every tensor's shape is checked, and
errors name the Keras layer, the reslab parameter and both shapes; the parity test checks
the outputs.

Inputs: Keras' v1 ResNets take ``caffe``-style inputs (BGR, mean-subtracted, no scaling) via
``keras.applications.resnet.preprocess_input``, the V2 ones values in [-1, 1]
(``keras.applications.resnet_v2.preprocess_input``); the converted model expects the same
values, channels first. Keras applies a softmax at the top unless built with
``classifier_activation=None``; the converted model returns logits.

Pooling of a top-less model (Keras' ``pooling=``; it has no weights, so only a ``.keras``
archive records it): ``"avg"`` and ``"max"`` return ``(N, 2048)``; ``None`` returns the feature
map, ``(N, 2048, H', W')`` in reslab's channels-first layout (Keras' ``(N, H', W', 2048)``,
transposed). A model with its top always average-pools, as Keras' does. The input channels
are read from the stem's kernel (1 for a grayscale ``input_shape=(H, W, 1)``).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from reslab.errors import CheckpointError, ConfigError
from reslab.models.registry import create_model
from reslab.models.network import KERAS_BN_EPS

_DEPTH_BY_CONVS = {53: 50, 104: 101, 155: 152}
# Keras' class names of the layers holding weights, and the snake-case names its files use.
_KINDS = {"Conv2D": "conv2d", "BatchNormalization": "batch_normalization", "Dense": "dense"}
# Keras' global pooling layers (``pooling=`` of a top-less application), by the value that builds them.
_POOLINGS = {"GlobalAveragePooling2D": "avg", "GlobalMaxPooling2D": "max"}
POOLINGS = ("avg", "max", None)
# The default of ``pooling``: what the file records, "avg" when it records nothing.
FROM_FILE = "from the file"


@dataclass
class _FileLayer:
    key: str  # the name in the file: conv2d_14
    name: str | None  # Keras' layer name, when the file records it (.keras): conv2_block1_0_conv
    variables: list[np.ndarray]


# The first bytes of an HDF5 file (at offset 0 unless a user block precedes them) and of a zip archive.
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_ZIP_SIGNATURE = b"PK"
_WHAT_TO_PASS = "pass the .weights.h5 file Keras' model.save_weights writes, or the .keras archive of model.save"


def _check_file(path: Path) -> None:
    """Refuse what cannot be a weights file before h5py or zipfile say so in their own words."""
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a Keras weights file; {_WHAT_TO_PASS}")
    if not path.exists():
        raise CheckpointError(f"{path}: no such file; {_WHAT_TO_PASS}")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a regular file; {_WHAT_TO_PASS}")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CheckpointError(f"{path} cannot be read ({exc.strerror or exc})") from None
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): saving or downloading it was cut short; "
                              "save or download it again")


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            return file.read(len(_HDF5_SIGNATURE))
    except OSError as exc:
        raise CheckpointError(f"{path} cannot be read ({exc.strerror or exc})") from None


def _open_hdf5(h5py, source, name: str, head: bytes):
    """``h5py.File(source)``; a file h5py cannot open is a CheckpointError saying what is wrong with it."""
    try:
        return h5py.File(source, "r")
    except OSError as exc:
        reason = str(exc)
        if "truncated" in reason:  # HDF5's own word when the file is shorter than its header records
            raise CheckpointError(f"{name} is truncated: saving or downloading it was cut short; save or download "
                                  "it again") from None
        elif head.startswith(_ZIP_SIGNATURE):
            problem = "is a zip archive, not an HDF5 file; a .keras archive is read when its name ends in .keras"
        elif not head.startswith(_HDF5_SIGNATURE):
            problem = "is not an HDF5 file (it does not start with the HDF5 signature)"
        else:
            problem = f"is a damaged HDF5 file ({reason})"
        raise CheckpointError(f"{name} {problem}; {_WHAT_TO_PASS}") from None


def _open_h5(path: Path):
    """The weights file as an h5py handle, and Keras' layer config (``None`` for a ``.weights.h5``)."""
    try:
        import h5py  # noqa: PLC0415
    except ImportError:
        raise ConfigError("reading Keras weights needs h5py: pip install h5py") from None
    _check_file(path)
    head = _head(path)
    if path.suffix != ".keras":
        return _open_hdf5(h5py, path, str(path), head), None
    if not zipfile.is_zipfile(path):
        if head.startswith(_ZIP_SIGNATURE):  # a zip's table of contents is at its end: the part cut off
            raise CheckpointError(f"{path} is a truncated or damaged zip archive (its table of contents is missing "
                                  "or unreadable): saving or downloading it was cut short; save or download it again")
        if head.startswith(_HDF5_SIGNATURE):
            problem = ("is an HDF5 file, not the zip archive a .keras file is; if it holds weights from "
                       "model.save_weights, name it .weights.h5")
        else:
            problem = "is not a zip archive, which a .keras file is"
        raise CheckpointError(f"{path} {problem}; {_WHAT_TO_PASS}")
    try:
        with zipfile.ZipFile(path) as archive:
            if "model.weights.h5" not in archive.namelist():
                raise CheckpointError(f"{path}: a .keras file should hold model.weights.h5; found "
                                      f"{', '.join(archive.namelist())}")
            data = archive.read("model.weights.h5")
            config_text = archive.read("config.json") if "config.json" in archive.namelist() else None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise CheckpointError(f"{path} is a damaged zip archive ({exc}); save or download it again") from None
    try:
        config = json.loads(config_text) if config_text is not None else None
    except ValueError as exc:
        raise CheckpointError(f"{path}: its config.json is not valid JSON ({exc}); save or download it "
                              "again") from None
    return _open_hdf5(h5py, io.BytesIO(data), f"{path}: its model.weights.h5", data[:len(_HDF5_SIGNATURE)]), config


def _layer_names(config) -> dict[str, str]:
    """File name → Keras layer name, from a functional model's config: Keras names each layer in
    the file by its class and how many of that class came before it in the model's layer list."""
    layers = (config or {}).get("config", {}).get("layers") if isinstance(config, dict) else None
    if not isinstance(layers, list):
        return {}
    names, counts = {}, {}
    for layer in layers:
        kind = _KINDS.get(layer.get("class_name")) if isinstance(layer, dict) else None
        if kind is None:
            continue
        count = counts.get(kind, 0)
        counts[kind] = count + 1
        names[kind if count == 0 else f"{kind}_{count}"] = layer.get("name") or layer.get("config", {}).get("name")
    return names


def _recorded_pooling(path: Path, config) -> str | None:
    """The global pooling a ``.keras`` archive's model config records (``"avg"``, ``"max"`` or
    ``None``), or :data:`FROM_FILE` when there is no functional model config to tell."""
    layers = (config or {}).get("config", {}).get("layers") if isinstance(config, dict) else None
    if not isinstance(layers, list):
        return FROM_FILE
    found = [layer for layer in layers if isinstance(layer, dict) and layer.get("class_name") in _POOLINGS]
    if not found:
        return None
    if len(found) > 1:
        raise CheckpointError(f"{path}: its model has {len(found)} global pooling layers; Keras' ResNets have "
                              "at most one")
    layer_config = found[0].get("config") or {}
    if layer_config.get("keepdims") or layer_config.get("data_format") == "channels_first":
        raise CheckpointError(f"{path}: its {found[0]['class_name']} keeps the pooled dimensions or reads "
                              "channels first; reslab converts Keras' ResNets as keras.applications builds "
                              "them (keepdims=False, channels last)")
    return _POOLINGS[found[0]["class_name"]]


def _layers_by_kind(handle, names: dict[str, str]) -> dict[str, list[_FileLayer]]:
    """Each kind of layer (conv2d, batch_normalization, dense) → its layers with weights, in order."""
    if "layers" not in handle:
        raise CheckpointError("not a Keras 3 weights file (no 'layers' group); save it with model.save_weights("
                              "'x.weights.h5') or model.save('x.keras') in Keras 3")
    kinds: dict[str, list[tuple[int, _FileLayer]]] = {}
    for key in handle["layers"]:
        match = re.fullmatch(r"(conv2d|batch_normalization|dense)(?:_(\d+))?", key)
        group = handle["layers"][key]
        if match is None or "vars" not in group or not len(group["vars"]):
            continue
        variables = [np.asarray(group["vars"][str(i)]) for i in range(len(group["vars"]))]
        kinds.setdefault(match.group(1), []).append((int(match.group(2) or 0), _FileLayer(key, names.get(key),
                                                                                          variables)))
    return {kind: [layer for _, layer in sorted(items, key=lambda item: item[0])] for kind, items in kinds.items()}


# -- Keras' layers, in the order its functional model lists them, and reslab's modules for them ----------
def _v1_layers(model) -> list[tuple[str, nn.Module]]:
    layers = [("conv1_conv", model.conv1), ("conv1_bn", model.bn1)]
    for stage_index, stage in enumerate(model.stages(), start=2):
        for block_index, block in enumerate(stage, start=1):
            prefix = f"conv{stage_index}_block{block_index}"
            layers += [(f"{prefix}_1_conv", block.conv1), (f"{prefix}_1_bn", block.bn1),
                       (f"{prefix}_2_conv", block.conv2), (f"{prefix}_2_bn", block.bn2)]
            if block.downsample is not None:
                layers.append((f"{prefix}_0_conv", block.downsample[0]))
            layers.append((f"{prefix}_3_conv", block.conv3))
            if block.downsample is not None:
                layers.append((f"{prefix}_0_bn", block.downsample[1]))
            layers.append((f"{prefix}_3_bn", block.bn3))
    return layers


def _v2_layers(model) -> list[tuple[str, nn.Module]]:
    layers = [("conv1_conv", model.conv1)]
    for stage_index, stage in enumerate(model.stages(), start=2):
        for block_index, block in enumerate(stage, start=1):
            prefix = f"conv{stage_index}_block{block_index}"
            # reslab's pre-activation bottleneck: bn1 (Keras' preact_bn), conv1, bn2, conv2, bn3, conv3.
            layers += [(f"{prefix}_preact_bn", block.bn1), (f"{prefix}_1_conv", block.conv1),
                       (f"{prefix}_1_bn", block.bn2), (f"{prefix}_2_conv", block.conv2),
                       (f"{prefix}_2_bn", block.bn3)]
            if isinstance(block.downsample, nn.Sequential):  # a projection; the subsampling max-pool has no weights
                layers.append((f"{prefix}_0_conv", block.downsample[0]))
            layers.append((f"{prefix}_3_conv", block.conv3))
    return [*layers, ("post_bn", model.bn_final)]


def _detect(path: Path, convs: int, norms: int) -> tuple[int, str]:
    """ResNet depth and version (``""`` or ``"V2"``) from the numbers of conv and BN layers."""
    depth = _DEPTH_BY_CONVS.get(convs)
    if depth is not None and norms == convs:
        return depth, ""
    if depth is not None and norms == convs - 4:
        return depth, "V2"
    expected = ", ".join(map(str, _DEPTH_BY_CONVS))
    raise CheckpointError(f"{path}: {convs} convolutions and {norms} batch norms; Keras' ResNet50/101/152 have "
                          f"{expected} convolutions with as many batch norms, ResNet50V2/101V2/152V2 the same "
                          "convolutions with 4 fewer batch norms")


def from_keras(path: str | Path, pooling: str | None = FROM_FILE) -> nn.Module:
    """A reslab model (eval mode) holding the weights of a Keras ``applications.ResNet50/101/152``
    (→ ``resnet50/101/152`` in Keras' v1 layout) or ``ResNet50V2/101V2/152V2`` (→
    ``resnet50v2/101v2/152v2``) weights file (``.weights.h5`` or ``.keras``).

    Args:
        path: the ``.weights.h5`` (``model.save_weights``) or ``.keras`` (``model.save``) file.
        pooling: what a top-less model (``include_top=False``) does after its last stage, as
            Keras' ``pooling=``: ``"avg"`` or ``"max"`` (output ``(N, 2048)``), or ``None`` (the
            feature map ``(N, 2048, H', W')``, channels first). By default what a ``.keras``
            archive records; a ``.weights.h5`` file records no pooling, and then it is ``"avg"``.
            A model with its top average-pools, as Keras' does; another value is refused.

    The input channels (``in_chans``) and the classes come from the file: the stem's kernel and
    the top's, if any.
    """
    if pooling != FROM_FILE and pooling not in POOLINGS:
        raise ConfigError(f"from_keras: pooling must be 'avg', 'max' or None (Keras' pooling= of a top-less "
                          f"model), got {pooling!r}")
    path = Path(path)
    handle, config = _open_h5(path)
    try:
        with handle:
            file_layers = _layers_by_kind(handle, _layer_names(config))
    except OSError as exc:
        # h5py opens a file by its header; a part cut off or overwritten further in shows on reading.
        raise CheckpointError(f"{path} is damaged: its weights cannot be read ({exc}); save or download it "
                              "again") from None
    convs, norms = file_layers.get("conv2d", []), file_layers.get("batch_normalization", [])
    dense = file_layers.get("dense", [])
    depth, version = _detect(path, len(convs), len(norms))
    num_classes = dense[0].variables[0].shape[-1] if dense else 0
    pooling = _pooling(path, pooling, _recorded_pooling(path, config), top=bool(dense))
    stem_kernel = convs[0].variables[0]
    if stem_kernel.ndim != 4:
        raise CheckpointError(f"{path}: the stem conv's kernel ({convs[0].key}) has shape {stem_kernel.shape}; "
                              "Keras' is (7, 7, channels, 64)")
    in_chans = int(stem_kernel.shape[2])
    if version == "V2":
        model = create_model(f"resnet{depth}v2", num_classes=num_classes, in_chans=in_chans)
        layers = _v2_layers(model)
    else:
        model = create_model(f"resnet{depth}", num_classes=num_classes, in_chans=in_chans, stride_in_1x1=True,
                             conv_bias=True, bn_eps=KERAS_BN_EPS)
        layers = _v1_layers(model)
    if pooling == "max":
        # ResNet.forward_head pools with the module torchvision names avgpool.
        model.avgpool = nn.AdaptiveMaxPool2d((1, 1))
    elif pooling is None:
        model.avgpool = None  # forward_head then returns the feature map itself
    if dense:
        layers.append(("predictions", model.fc))
    architecture = f"ResNet{depth}{version}"
    names = {id(tensor): name for name, tensor in [*model.named_parameters(), *model.named_buffers()]}
    expected = {kind: [(name, module) for name, module in layers if _kind(module) == kind] for kind in _KINDS.values()}
    with torch.no_grad():
        for kind, slots in expected.items():
            found = file_layers.get(kind, [])
            if len(found) != len(slots):
                raise CheckpointError(f"{path}: {len(found)} {kind} layers with weights; Keras' {architecture} "
                                      f"has {len(slots)}")
            for (keras_name, module), layer in zip(slots, found):
                if layer.name is not None and layer.name != keras_name:
                    raise CheckpointError(f"{path}: layer {layer.key} is {layer.name!r}; Keras' {architecture} "
                                          f"has {keras_name!r} there")
                _load_layer(module, layer, f"{path}: Keras layer {keras_name} ({layer.key})", names)
    model.converted_from = {"framework": "keras", "file": str(path), "architecture": architecture,
                            "pooling": pooling}
    return model.eval()


def _pooling(path: Path, given: str | None, recorded: str | None, top: bool) -> str | None:
    """The pooling to build: the one given, else the one the file records, else ``"avg"``."""
    chosen = given if given != FROM_FILE else recorded if recorded != FROM_FILE else "avg"
    if top and chosen != "avg":
        raise ConfigError(f"from_keras: {path} holds a model with its top (1000-class or other dense "
                          f"'predictions' layer), which Keras average-pools before; pooling={chosen!r} is only "
                          "for a top-less model (include_top=False): leave pooling out or pass 'avg'")
    return chosen


def _kind(module: nn.Module) -> str:
    return {nn.Conv2d: "conv2d", nn.BatchNorm2d: "batch_normalization", nn.Linear: "dense"}[type(module)]


def _load_layer(module: nn.Module, layer: _FileLayer, where: str, names: dict[int, str]) -> None:
    """Copy one Keras layer's variables into ``module``, checking their number and shapes."""
    if isinstance(module, nn.BatchNorm2d):
        targets = [(module.weight, "gamma"), (module.bias, "beta"), (module.running_mean, "moving mean"),
                   (module.running_var, "moving variance")]
        values = [torch.from_numpy(value) for value in layer.variables]
    else:
        targets = [(module.weight, "kernel")] + ([(module.bias, "bias")] if module.bias is not None else [])
        kernel = torch.from_numpy(layer.variables[0])
        # Conv kernels (kh, kw, in, out) -> (out, in, kh, kw); dense kernels (in, out) -> (out, in).
        kernel = kernel.permute(3, 2, 0, 1) if kernel.dim() == 4 else kernel.T
        values = [kernel, *(torch.from_numpy(value) for value in layer.variables[1:])]
    if len(values) != len(targets):
        raise CheckpointError(f"{where}: {len(values)} variables, reslab's {names[id(module.weight)].rsplit('.', 1)[0]} "
                              f"takes {len(targets)} ({', '.join(what for _, what in targets)})")
    for (target, what), value in zip(targets, values):
        if tuple(target.shape) != tuple(value.shape):
            raise CheckpointError(f"{where} {what}: shape {tuple(value.shape)} does not fit reslab's "
                                  f"{names[id(target)]} {tuple(target.shape)}")
        target.copy_(value.to(target.dtype))


__all__ = ["from_keras", "KERAS_BN_EPS", "POOLINGS"]
