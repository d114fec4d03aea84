"""reslab backbones inside torchvision's detectors, and the generated shapes set."""

from __future__ import annotations

import pytest
import torch

from reslab.applications import detection_backbone, mean_average_precision
from reslab.data.detection import make_shapes_detection
from reslab.errors import AnalysisError, ModelConfigError

detection = pytest.importorskip("torchvision.models.detection")
ops = pytest.importorskip("torchvision.ops")


def test_backbone_has_torchvisions_contract_and_freezes_what_it_is_told():
    backbone = detection_backbone("resnet18", trainable_stages=3)
    maps = backbone(torch.randn(1, 3, 64, 64))
    assert list(maps) == ["0", "1", "2", "3", "pool"] and backbone.out_channels == 256
    assert all(m.shape[1] == 256 for m in maps.values()) and maps["0"].shape[-1] == 16  # stride 4
    body = backbone.body
    assert not any(p.requires_grad for p in body.conv1.parameters()) and not any(
        p.requires_grad for p in body.layer1.parameters())
    assert all(p.requires_grad for p in body.layer2.parameters())
    assert isinstance(body.bn1, ops.FrozenBatchNorm2d) and isinstance(body.layer1[0].bn1, ops.FrozenBatchNorm2d)
    assert isinstance(body.layer2[0].bn1, torch.nn.BatchNorm2d)
    plain = detection_backbone("resnet18", fpn=False, shortcut="none")
    single = plain(torch.randn(1, 3, 64, 64))
    assert list(single) == ["0"] and plain.out_channels == 512 and single["0"].shape[1] == 512
    with pytest.raises(ModelConfigError, match="trainable_stages must be 0..5"):
        detection_backbone("resnet18", trainable_stages=6)
    # RetinaNet takes it unchanged too.
    retina = detection.RetinaNet(detection_backbone("resnet18"), num_classes=3, min_size=64, max_size=64).eval()
    with torch.no_grad():
        assert isinstance(retina([torch.rand(3, 64, 64)]), list)


def test_shapes_set_is_seeded_and_its_boxes_hold_the_shapes():
    images, targets = make_shapes_detection(4, image_size=64, seed=3)
    again, _ = make_shapes_detection(4, image_size=64, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(images, again))
    for image, target in zip(images, targets):
        assert image.shape == (3, 64, 64) and 0 <= image.min() and image.max() <= 1
        boxes = target["boxes"]
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert set(target["labels"].tolist()) <= {1, 2}


def test_map_is_one_for_perfect_detections_and_zero_for_misses():
    target = {"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]]), "labels": torch.tensor([1, 2])}
    perfect = {**target, "scores": torch.tensor([0.9, 0.8])}
    assert mean_average_precision([perfect], [target]) == pytest.approx(1.0)
    wrong = {"boxes": torch.tensor([[40.0, 40, 50, 50]]), "labels": torch.tensor([1]), "scores": torch.tensor([0.9])}
    assert mean_average_precision([wrong], [target]) == 0.0


def test_faster_rcnn_with_a_reslab_resnet18_learns_the_shapes():
    torch.manual_seed(0)
    size, steps, batch = 64, 40, 4
    images, targets = make_shapes_detection(64, image_size=size, seed=0)
    val_images, val_targets = make_shapes_detection(16, image_size=size, seed=1)
    model = detection.FasterRCNN(detection_backbone("resnet18", trainable_stages=5), num_classes=3,
                                 min_size=size, max_size=size, rpn_pre_nms_top_n_train=300,
                                 rpn_post_nms_top_n_train=100, rpn_pre_nms_top_n_test=300,
                                 rpn_post_nms_top_n_test=100, box_batch_size_per_image=64, box_detections_per_img=20)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.005, momentum=0.9,
                                weight_decay=1e-4)

    def val_map():
        model.eval()
        with torch.no_grad():
            predictions = model(val_images)
        model.train()
        return mean_average_precision(predictions, val_targets)

    before = val_map()
    losses = []
    for step in range(steps):
        start = (step * batch) % len(images)
        loss = sum(model(images[start:start + batch], targets[start:start + batch]).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    after = val_map()
    print(f"mAP@0.5 {before:.3f} -> {after:.3f}; loss (mean of 5 steps) {sum(losses[:5]) / 5:.3f} -> "
          f"{sum(losses[-5:]) / 5:.3f}")
    assert sum(losses[-5:]) < 0.9 * sum(losses[:5]), losses
    # Chance (an untrained detector) is ~0.02 here; 40 steps from random weights reach ~0.27.
    assert after > 0.1 and after > 3 * before, (before, after)


def test_map_refuses_prediction_and_target_lists_of_different_lengths():
    target = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1])}
    perfect = {**target, "scores": torch.tensor([0.9])}
    # Zipped, two perfect predictions for four targets scored 1.0.
    with pytest.raises(AnalysisError, match=r"2 predictions for 4 targets; pass one prediction dict per target"):
        mean_average_precision([perfect] * 2, [target] * 4)
    with pytest.raises(AnalysisError, match=r"predictions\[1\] has 1 boxes, 1 labels, 0 scores"):
        mean_average_precision([perfect, {**perfect, "scores": torch.tensor([])}], [target] * 2)
    with pytest.raises(AnalysisError, match=r"targets\[0\] has no labels"):
        mean_average_precision([perfect], [{"boxes": target["boxes"]}])
    assert mean_average_precision([perfect] * 4, [target] * 4) == pytest.approx(1.0)


@pytest.mark.parametrize("threshold", [1.5, 0, -0.5, float("nan"), "0.5", True, None])
def test_map_refuses_an_iou_threshold_outside_zero_to_one(threshold):
    target = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1])}
    perfect = {**target, "scores": torch.tensor([0.9])}
    with pytest.raises(AnalysisError, match=r"iou_threshold must be (a number )?in \(0, 1\]"):
        mean_average_precision([perfect], [target], iou_threshold=threshold)
    assert mean_average_precision([perfect], [target], iou_threshold=1) == pytest.approx(1.0)


def test_map_refuses_boxes_of_the_wrong_shape_and_non_finite_scores():
    target = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1])}
    perfect = {**target, "scores": torch.tensor([0.9])}
    with pytest.raises(AnalysisError, match=r"predictions\[0\]\['boxes'\] has shape \(1, 3\); expected \(N, 4\)"):
        mean_average_precision([{**perfect, "boxes": torch.tensor([[0.0, 0, 10]])}], [target])
    with pytest.raises(AnalysisError, match=r"predictions\[0\]\['scores'\] holds NaN or infinite values"):
        mean_average_precision([{**perfect, "scores": torch.tensor([float("nan")])}], [target])
    with pytest.raises(AnalysisError, match=r"targets\[0\]\['boxes'\] holds NaN or infinite values"):
        mean_average_precision([perfect], [{**target, "boxes": torch.tensor([[0.0, 0, float("inf"), 10]])}])
