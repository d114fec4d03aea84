"""A small generated detection set: coloured rectangles and ellipses on noise, with boxes.

For tests and demos of detection backbones; seeded, so the same call gives the same images.
Targets follow torchvision's detection convention: ``{"boxes": float (K, 4) x1 y1 x2 y2 in
pixels, "labels": int64 (K,)}`` with labels 1 (rectangle) and 2 (ellipse); 0 is background.
"""

from __future__ import annotations

import torch

from reslab.errors import DatasetError

SHAPE_CLASSES = ("background", "rectangle", "ellipse")


def make_shapes_detection(num_images: int, image_size: int = 128, max_objects: int = 3, min_side: float = 0.2,
                          max_side: float = 0.5, seed: int = 0) -> tuple[list[torch.Tensor], list[dict]]:
    """``num_images`` float images ``(3, S, S)`` in [0, 1] and their targets.

    Each image holds 1..``max_objects`` shapes of side ``min_side``..``max_side`` × ``S``, each
    a random saturated colour, drawn over uniform noise of brightness 0.2..0.5; later shapes may
    overlap earlier ones (their boxes are kept whole).
    """
    if num_images < 1 or image_size < 16 or max_objects < 1 or not 0 < min_side <= max_side <= 1:
        raise DatasetError(f"make_shapes_detection: need num_images >= 1, image_size >= 16, max_objects >= 1 and "
                           f"0 < min_side <= max_side <= 1; got {num_images}, {image_size}, {max_objects}, "
                           f"{min_side}, {max_side}")
    generator = torch.Generator().manual_seed(seed)
    size = image_size
    grid_y, grid_x = torch.meshgrid(torch.arange(size, dtype=torch.float32) + 0.5,
                                    torch.arange(size, dtype=torch.float32) + 0.5, indexing="ij")
    images, targets = [], []
    for _ in range(num_images):
        image = 0.2 + 0.3 * torch.rand(3, size, size, generator=generator)
        count = int(torch.randint(1, max_objects + 1, (1,), generator=generator))
        boxes, labels = [], []
        for _ in range(count):
            w, h = ((min_side + (max_side - min_side) * torch.rand(2, generator=generator)) * size).tolist()
            x1 = float(torch.rand(1, generator=generator)) * (size - w)
            y1 = float(torch.rand(1, generator=generator)) * (size - h)
            label = int(torch.randint(1, 3, (1,), generator=generator))
            colour = torch.rand(3, generator=generator)
            colour[int(torch.randint(0, 3, (1,), generator=generator))] = 1.0  # saturated: stands out of the noise
            if label == 1:
                mask = (grid_x >= x1) & (grid_x <= x1 + w) & (grid_y >= y1) & (grid_y <= y1 + h)
            else:
                cx, cy = x1 + w / 2, y1 + h / 2
                mask = ((grid_x - cx) / (w / 2)) ** 2 + ((grid_y - cy) / (h / 2)) ** 2 <= 1.0
            image[:, mask] = colour[:, None]
            boxes.append([x1, y1, x1 + w, y1 + h])
            labels.append(label)
        images.append(image)
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32),
                        "labels": torch.tensor(labels, dtype=torch.int64)})
    return images, targets


__all__ = ["SHAPE_CLASSES", "make_shapes_detection"]
