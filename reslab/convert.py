"""Bring models from other frameworks: ``from_keras`` reads Keras ``applications`` ResNets.

    >>> model = reslab.convert.from_keras("resnet50.weights.h5")       # or a .keras file
    >>> logits = model(images_nchw)                                      # Keras' inputs, channels first

Supported: Keras' ``ResNet50``, ``ResNet101`` and ``ResNet152`` (v1: the stride on the first
1×1 conv of a block, biased convolutions, BatchNorm epsilon 1.001e-5), with or without their
1000-class top. The file is read with h5py (no Keras needed). Keras 3 stores weights under
auto-generated names in the functional model's layer order (``conv2d``, ``conv2d_1``, …), so
layers are matched by that order — in which a stage's projection shortcut comes after the first
block's 3×3 conv — and every tensor's shape is checked; the parity test checks the outputs. ResNet50V2/101V2/152V2 (pre-activation, stride at
the end of a stage) are not supported yet.

Inputs: Keras' ResNets take ``caffe``-style inputs (BGR, mean-subtracted, no scaling) via
``keras.applications.resnet.preprocess_input``; the converted model expects the same values,
channels first. Keras applies a softmax at the top unless built with
``classifier_activation=None``; the converted model returns logits.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from reslab.errors import CheckpointError, ConfigError
from reslab.models import create_model

#: Keras' BatchNorm epsilon in its ResNets.
KERAS_BN_EPS = 1.001e-5
_DEPTH_BY_CONVS = {53: 50, 104: 101, 155: 152}


def _open_h5(path: Path):
    try:
        import h5py  # noqa: PLC0415
    except ImportError:
        raise ConfigError("reading Keras weights needs h5py: pip install h5py") from None
    if path.suffix == ".keras":
        with zipfile.ZipFile(path) as archive:
            if "model.weights.h5" not in archive.namelist():
                raise CheckpointError(f"{path}: a .keras file should hold model.weights.h5; found "
                                      f"{', '.join(archive.namelist())}")
            data = archive.read("model.weights.h5")
        return h5py.File(io.BytesIO(data), "r")
    return h5py.File(path, "r")


def _layers_by_kind(handle) -> dict[str, list[list[np.ndarray]]]:
    """Each kind of layer (conv2d, batch_normalization, dense) → its variables, in creation order."""
    if "layers" not in handle:
        raise CheckpointError("not a Keras 3 weights file (no 'layers' group); save it with model.save_weights("
                              "'x.weights.h5') or model.save('x.keras') in Keras 3")
    kinds: dict[str, list[tuple[int, list[np.ndarray]]]] = {}
    for name in handle["layers"]:
        match = re.fullmatch(r"(conv2d|batch_normalization|dense)(?:_(\d+))?", name)
        group = handle["layers"][name]
        if match is None or "vars" not in group or not len(group["vars"]):
            continue
        variables = [np.asarray(group["vars"][str(i)]) for i in range(len(group["vars"]))]
        kinds.setdefault(match.group(1), []).append((int(match.group(2) or 0), variables))
    return {kind: [v for _, v in sorted(items, key=lambda item: item[0])] for kind, items in kinds.items()}


def from_keras(path: str | Path) -> nn.Module:
    """A reslab ResNet-50/101/152 (v1 layout, eval mode) holding the weights of a Keras
    ``applications.ResNet50/101/152`` weights file (``.weights.h5`` or ``.keras``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    with _open_h5(path) as handle:
        layers = _layers_by_kind(handle)
    convs, norms, dense = layers.get("conv2d", []), layers.get("batch_normalization", []), layers.get("dense", [])
    depth = _DEPTH_BY_CONVS.get(len(convs))
    if depth is None:
        raise CheckpointError(f"{path}: {len(convs)} convolutions; Keras' ResNet50/101/152 have "
                              f"{', '.join(map(str, _DEPTH_BY_CONVS))} (ResNet V2 files are not supported yet)")
    num_classes = dense[0][0].shape[1] if dense else 0
    model = create_model(f"resnet{depth}", num_classes=num_classes, stride_in_1x1=True, conv_bias=True,
                         bn_eps=KERAS_BN_EPS)
    pairs = [(model.conv1, model.bn1)]
    for block in model.blocks():
        # Keras saves layers in the functional model's order, where a projection shortcut
        # (``_0_conv``) sits between the block's 3×3 and its last 1×1.
        pairs += [(block.conv1, block.bn1), (block.conv2, block.bn2)]
        if block.downsample is not None:
            pairs.append((block.downsample[0], block.downsample[1]))
        pairs.append((block.conv3, block.bn3))
    if len(pairs) != len(convs) or len(norms) != len(convs):
        raise CheckpointError(f"{path}: {len(convs)} convolutions and {len(norms)} batch norms do not match "
                              f"resnet{depth}'s {len(pairs)} conv-BN pairs")
    with torch.no_grad():
        for index, ((conv, bn), conv_vars, bn_vars) in enumerate(zip(pairs, convs, norms)):
            kernel = torch.from_numpy(conv_vars[0]).permute(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
            _copy(conv.weight, kernel, f"conv {index}")
            _copy(conv.bias, torch.from_numpy(conv_vars[1]), f"conv {index} bias")
            for target, value, what in zip((bn.weight, bn.bias, bn.running_mean, bn.running_var), bn_vars,
                                           ("gamma", "beta", "moving mean", "moving variance")):
                _copy(target, torch.from_numpy(value), f"batch norm {index} {what}")
        if dense:
            _copy(model.fc.weight, torch.from_numpy(dense[0][0]).T, "dense kernel")
            _copy(model.fc.bias, torch.from_numpy(dense[0][1]), "dense bias")
    model.converted_from = {"framework": "keras", "file": str(path), "architecture": f"ResNet{depth}"}
    return model.eval()


def _copy(target: torch.Tensor, value: torch.Tensor, what: str) -> None:
    if tuple(target.shape) != tuple(value.shape):
        raise CheckpointError(f"Keras {what}: shape {tuple(value.shape)} does not fit reslab's "
                              f"{tuple(target.shape)}")
    target.copy_(value.to(target.dtype))


__all__ = ["from_keras", "KERAS_BN_EPS"]
