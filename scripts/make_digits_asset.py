"""Build ``reslab/data/assets/digits.npz`` from scikit-learn's handwritten digits (run once).

The asset ships inside the package so ``load_dataset("digits")`` needs neither scikit-learn nor
the network at run time. It holds:

- ``images``: uint8 (1797, 1, 8, 8); scikit-learn's pixel values 0..16 scaled to 0..255
  (``round(v * 255 / 16)``), so every image uses the same uint8 range as CIFAR;
- ``labels``: int64 (1797,), digits 0..9;
- ``is_test``: bool (1797,), a fixed stratified split (20 % test per class, seed 0), stored so
  the split never changes with library versions.

Source: the UCI "Optical Recognition of Handwritten Digits" data set (Alpaydin & Kaynak, 1998),
licensed CC BY 4.0, as shipped by scikit-learn (``sklearn.datasets.load_digits``).

Usage::

    python scripts/make_digits_asset.py            # writes reslab/data/assets/digits.npz
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np

ASSET = Path(__file__).resolve().parents[1] / "reslab" / "data" / "assets" / "digits.npz"
TEST_FRACTION = 0.2
SEED = 0


def stratified_test_mask(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Return a bool mask choosing ``round(test_fraction * n_c)`` test samples of every class c."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        n_test = int(round(test_fraction * len(members)))
        mask[rng.permutation(members)[:n_test]] = True
    return mask


def build() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits  # only needed to (re)build the asset

    bunch = load_digits()
    raw = np.asarray(bunch.images)  # (1797, 8, 8) float, values 0..16
    images = np.rint(raw * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None, :, :]
    labels = np.asarray(bunch.target, dtype=np.int64)
    return {
        "images": np.ascontiguousarray(images),
        "labels": labels,
        "is_test": stratified_test_mask(labels, TEST_FRACTION, SEED),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ASSET)
    args = parser.parse_args()
    arrays = build()
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(args.out)  # atomic: a reader never sees half an asset
    n_test = int(arrays["is_test"].sum())
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes): {len(arrays['labels'])} images, "
          f"{len(arrays['labels']) - n_test} train / {n_test} test")


if __name__ == "__main__":
    main()
