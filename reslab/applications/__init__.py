"""Applications: reslab networks as backbones for other tasks (detection so far)."""

from reslab.applications.detection import DetectionBackbone, detection_backbone, mean_average_precision

__all__ = ["DetectionBackbone", "detection_backbone", "mean_average_precision"]
