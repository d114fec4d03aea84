"""reslab networks as torchvision detection backbones, and mAP@0.5.

    >>> from torchvision.models.detection import FasterRCNN
    >>> backbone = reslab.applications.detection_backbone("resnet18", trainable_stages=3)
    >>> detector = FasterRCNN(backbone, num_classes=3)

The backbone follows torchvision's contract: ``forward`` returns an ``OrderedDict`` of feature
maps and ``out_channels`` says their channels. With ``fpn=True`` the stage outputs go through
``torchvision.ops.FeaturePyramidNetwork`` with a max-pooled extra level (as torchvision's own
``resnet_fpn_backbone``): for an ImageNet ResNet that is five maps, which FasterRCNN's and
RetinaNet's default anchor generators expect. torchvision is needed here only (``pip install
torchvision``; reslab's core does not depend on it).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from reslab.errors import AnalysisError, ConfigError, ModelConfigError
from reslab.models import create_model


def _torchvision():
    try:
        import torchvision  # noqa: PLC0415
    except ImportError:
        raise ConfigError("detection backbones need torchvision: pip install torchvision") from None
    return torchvision


class DetectionBackbone(nn.Module):
    """A features-only reslab network (+ optional FPN) with torchvision's backbone contract."""

    def __init__(self, body: nn.Module, fpn: nn.Module | None, out_channels: int):
        super().__init__()
        self.body = body
        self.fpn = fpn
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        maps = self.body(x)
        if self.fpn is None:
            return OrderedDict([("0", maps[-1])])
        return self.fpn(OrderedDict((str(i), feature) for i, feature in enumerate(maps)))


def detection_backbone(name: str = "resnet18", trainable_stages: int = 3, fpn: bool = True, out_channels: int = 256,
                       pretrained: str | bool | None = None, **model_options) -> DetectionBackbone:
    """A detection backbone from the reslab model ``name``.

    Args:
        trainable_stages: how many of the network's parts, counted from the deepest, are trained
            (torchvision's ``trainable_layers``): the stages, then the stem; 0 freezes everything,
            stages + 1 trains everything. Frozen parts get ``requires_grad=False`` and their
            batch norms become ``torchvision.ops.FrozenBatchNorm2d`` (fixed statistics).
        fpn: a feature pyramid over every stage's output (else the last stage's map alone).
        out_channels: the pyramid's width (ignored without ``fpn``).
        pretrained, model_options: as for :func:`reslab.create_model` (e.g. ``shortcut="none"``
            for the plain twin).
    """
    tv = _torchvision()
    body = create_model(name, features_only=True, **({"pretrained": pretrained} if pretrained else {}),
                        **model_options)
    stages = body.stages()
    if not isinstance(trainable_stages, int) or not 0 <= trainable_stages <= len(stages) + 1:
        raise ModelConfigError(f"{name}: trainable_stages must be 0..{len(stages) + 1} (stages, then the stem), "
                               f"got {trainable_stages!r}")
    parts = [["conv1", "bn1"]] + [[f"layer{i}"] for i in range(1, len(stages) + 1)]
    frozen = [module for part in parts[:len(parts) - trainable_stages] for module in part]
    for module_name in frozen:
        module = getattr(body, module_name, None)
        if module is None:
            continue
        module.requires_grad_(False)
        _freeze_batch_norms(body, module_name, tv.ops.FrozenBatchNorm2d)
    if not fpn:
        return DetectionBackbone(body, None, body.feature_info.channels(-1))
    body.as_features(range(1, len(stages) + 1))  # every stage feeds the pyramid; not the stem, as in torchvision
    pyramid = tv.ops.FeaturePyramidNetwork(body.feature_info.channels(), out_channels,
                                           extra_blocks=tv.ops.feature_pyramid_network.LastLevelMaxPool())
    return DetectionBackbone(body, pyramid, out_channels)


def _freeze_batch_norms(root: nn.Module, prefix: str, frozen_cls) -> None:
    """Replace every BatchNorm2d under ``root.<prefix>`` by ``frozen_cls`` with the same statistics."""
    parent = getattr(root, prefix)
    if isinstance(parent, nn.BatchNorm2d):
        setattr(root, prefix, _frozen_copy(parent, frozen_cls))
        return
    for name, child in list(parent.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            setattr(parent, name, _frozen_copy(child, frozen_cls))
        else:
            _freeze_batch_norms(parent, name, frozen_cls)


def _frozen_copy(bn: nn.BatchNorm2d, frozen_cls) -> nn.Module:
    frozen = frozen_cls(bn.num_features, eps=bn.eps)
    frozen.weight.copy_(bn.weight.detach())
    frozen.bias.copy_(bn.bias.detach())
    frozen.running_mean.copy_(bn.running_mean)
    frozen.running_var.copy_(bn.running_var)
    return frozen


# -- evaluation ------------------------------------------------------------------------------------
def _iou(boxes: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    top_left = torch.maximum(boxes[:, None, :2], others[None, :, :2])
    bottom_right = torch.minimum(boxes[:, None, 2:], others[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    area = (boxes[:, 2:] - boxes[:, :2]).prod(-1)
    area_other = (others[:, 2:] - others[:, :2]).prod(-1)
    return inter / (area[:, None] + area_other[None, :] - inter).clamp(min=1e-9)


def mean_average_precision(predictions: list[dict], targets: list[dict], iou_threshold: float = 0.5) -> float:
    """VOC-style mAP at ``iou_threshold``: per class, detections of every image ranked by score,
    a detection is a true positive when it overlaps a not yet matched box of its class by at least
    the threshold; AP = area under the all-point-interpolated precision-recall curve; the mean is
    over the classes that have ground-truth boxes.

    ``predictions[i]`` (``boxes``, ``labels``, ``scores``) and ``targets[i]`` (``boxes``,
    ``labels``) describe the same image, so both lists must be as long, and within each dict
    every image's boxes, labels and scores as many; an AnalysisError says where they are not.
    ``iou_threshold`` is in (0, 1] (an overlap above 1 cannot happen, so a larger threshold would
    score every detection a miss; 0 would count every detection a hit), boxes are ``(N, 4)``
    ``(x1, y1, x2, y2)`` and every box and score a finite number."""
    _check_threshold(iou_threshold)
    _check_detections(predictions, targets)
    classes = sorted({int(c) for t in targets for c in t["labels"].tolist()})
    aps = []
    for cls in classes:
        scored = []
        total = 0
        matched = []
        for index, (prediction, target) in enumerate(zip(predictions, targets)):
            truth = target["boxes"][target["labels"] == cls]
            total += len(truth)
            matched.append(torch.zeros(len(truth), dtype=torch.bool))
            keep = prediction["labels"] == cls
            for box, score in zip(prediction["boxes"][keep], prediction["scores"][keep]):
                scored.append((float(score), index, box))
        scored.sort(key=lambda item: -item[0])
        hits = []
        for _, index, box in scored:
            truth = targets[index]["boxes"][targets[index]["labels"] == cls]
            if len(truth) == 0:
                hits.append(False)
                continue
            overlaps = _iou(box[None], truth)[0]
            overlaps[matched[index]] = -1.0
            best = int(overlaps.argmax())
            if overlaps[best] >= iou_threshold:
                matched[index][best] = True
                hits.append(True)
            else:
                hits.append(False)
        if total == 0:
            continue
        hit = torch.tensor(hits, dtype=torch.float64)
        true_positives = torch.cumsum(hit, 0)
        precision = true_positives / torch.arange(1, len(hits) + 1, dtype=torch.float64)
        recall = true_positives / total
        # All-point interpolation: precision made monotone from the right, summed over recall steps.
        ap = 0.0
        if len(hits):
            precision = torch.flip(torch.cummax(torch.flip(precision, [0]), 0).values, [0])
            previous = 0.0
            for r, p in zip(recall.tolist(), precision.tolist()):
                ap += (r - previous) * p
                previous = r
        aps.append(ap)
    return float(sum(aps) / len(aps)) if aps else 0.0


def _check_threshold(iou_threshold) -> None:
    try:
        # A NumPy or 0-d torch number is as good as a float; text and True/False are not numbers here.
        value = None if isinstance(iou_threshold, (bool, str, bytes)) else float(iou_threshold)
    except (TypeError, ValueError, RuntimeError):
        value = None
    if value is None:
        raise AnalysisError(f"mean_average_precision: iou_threshold must be a number in (0, 1], got "
                            f"{iou_threshold!r}; 0.5 is VOC's, 0.75 COCO's strict one")
    if not 0 < value <= 1:  # NaN fails this too
        raise AnalysisError(f"mean_average_precision: iou_threshold must be in (0, 1] (a box overlaps another by "
                            f"at most 1), got {iou_threshold}; 0.5 is VOC's, 0.75 COCO's strict one")


def _check_detections(predictions: list[dict], targets: list[dict]) -> None:
    """Refuse lists that would pair images wrongly or silently drop some (``zip`` stops at the shorter)."""
    if len(predictions) != len(targets):
        raise AnalysisError(f"mean_average_precision: {len(predictions)} predictions for {len(targets)} targets; "
                            "pass one prediction dict per target image, in the same order")
    for what, items, keys in (("predictions", predictions, ("boxes", "labels", "scores")),
                              ("targets", targets, ("boxes", "labels"))):
        for index, item in enumerate(items):
            missing = [key for key in keys if not isinstance(item, dict) or key not in item]
            if missing:
                raise AnalysisError(f"mean_average_precision: {what}[{index}] has no {', '.join(missing)}; each "
                                    f"is a dict with {', '.join(keys)} (torchvision's detection format)")
            counts = {key: len(item[key]) for key in keys}
            if len(set(counts.values())) > 1:
                raise AnalysisError(f"mean_average_precision: {what}[{index}] has "
                                    f"{', '.join(f'{n} {key}' for key, n in counts.items())}; one of each per box")
            boxes = torch.as_tensor(item["boxes"])
            if counts["boxes"] and (boxes.ndim != 2 or boxes.shape[1] != 4):
                raise AnalysisError(f"mean_average_precision: {what}[{index}]['boxes'] has shape {tuple(boxes.shape)}; "
                                    "expected (N, 4), one (x1, y1, x2, y2) row per box")
            for key in ("boxes", "scores"):
                if key in keys and counts[key] and not torch.isfinite(torch.as_tensor(item[key]).double()).all():
                    raise AnalysisError(f"mean_average_precision: {what}[{index}]['{key}'] holds NaN or infinite "
                                        "values; a detector that produced them has diverged — every box and score "
                                        "must be a finite number")


__all__ = ["DetectionBackbone", "detection_backbone", "mean_average_precision"]
