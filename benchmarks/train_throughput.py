"""Training throughput: reslab's pipeline against an ordinary DataLoader pipeline, same run.

Both pipelines train the same CIFAR ResNet (same initial weights) with the same optimizer
(SGD, momentum 0.9, Nesterov, weight decay 5e-4, lr 0.1), the same loss (cross-entropy), in
float32, on the same images with the same augmentation (4-pixel pad + random 32x32 crop +
horizontal flip, then per-channel normalisation):

* reference — what a typical training script does: a ``Dataset`` over uint8 HWC arrays whose
  ``__getitem__`` pads, crops, flips, converts to float CHW and normalises one sample at a
  time (torchvision's RandomCrop + RandomHorizontalFlip + ToTensor + Normalize, written out),
  a ``torch.utils.data.DataLoader`` with the default collate, shuffling and worker processes,
  a model in the default (NCHW) layout, and ``loss.item()`` every step for logging;
* reslab — the trainer's path: :class:`reslab.data.DeviceLoader` (the whole set as one uint8
  tensor on the device, batched crop/flip/normalise) and :class:`reslab.train.step.TrainStep`
  (loss and error summed on the device, no host sync per step), measured in the default
  layout and with ``channels_last`` (which the CPU recipes use).

The reference's worker count defaults to half the CPU cores (at least 1): its workers then
prepare batches while the main process computes, without taking every core from the model's
threads. Change it with ``--num-workers``.

Each pipeline runs ``--warmup`` untimed steps, then ``--steps`` timed ones; the pipelines
alternate for ``--rounds`` rounds and the best round of each counts (on a shared machine the
best round is the least disturbed). The last line is the ratio of reslab in ``--layout``
(default channels_last, as the recipes train) to the reference, geometric mean over the models.

    python benchmarks/train_throughput.py                       # ResNet-20 and -56, synthetic data
    python benchmarks/train_throughput.py --data-dir ../data     # real CIFAR-10 images
    python benchmarks/train_throughput.py --models resnet20 --steps 5 --warmup 2 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import reslab  # noqa: E402
from benchmarks.peak import measure_peak  # noqa: E402
from reslab.data import AugmentConfig, DeviceLoader, load_dataset  # noqa: E402
from reslab.train.evaluation import bf16_available  # noqa: E402
from reslab.train.step import TrainStep  # noqa: E402
from reslab.utils.cpu import describe_cpu  # noqa: E402

OPTIMIZER = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)


# -- the reference: per-sample transforms in a DataLoader -------------------------------------------
class PerSampleCIFAR(torch.utils.data.Dataset):
    """uint8 HWC images; each item padded, randomly cropped and flipped, converted and normalised alone."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray, mean, std, padding: int = 4):
        self.images = images_hwc
        self.labels = labels
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.padding = padding

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = self.images[index]                                               # (H, W, C) uint8
        height, width = image.shape[:2]
        p = self.padding
        padded = np.pad(image, ((p, p), (p, p), (0, 0)))                          # RandomCrop(padding=4)
        top, left = np.random.randint(0, 2 * p + 1, size=2)
        image = padded[top:top + height, left:left + width]
        if np.random.rand() < 0.5:                                               # RandomHorizontalFlip
            image = image[:, ::-1]
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255)  # ToTensor
        tensor = (tensor - self.mean) / self.std                                 # Normalize
        return tensor, int(self.labels[index])


def _seed_worker(worker_id: int) -> None:
    np.random.seed((torch.initial_seed() + worker_id) % 2**32)


def run_reference(model, images, labels, mean, std, device, batch_size, warmup, steps, num_workers):
    """Images/s of the DataLoader pipeline over ``steps`` timed steps."""
    dataset = PerSampleCIFAR(images.permute(0, 2, 3, 1).numpy(), labels.numpy(), mean, std)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=num_workers,
        pin_memory=device.type == "cuda", persistent_workers=num_workers > 0, worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.SGD(model.parameters(), **OPTIMIZER)
    criterion = nn.CrossEntropyLoss()
    model.train()

    def batches():
        while True:
            yield from loader

    stream = batches()
    started = None
    for step in range(warmup + steps):
        if step == warmup:
            _sync(device)
            started = time.perf_counter()
        x, y = next(stream)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        loss.item()  # the usual per-step logging read
    _sync(device)
    return steps * batch_size / (time.perf_counter() - started)


# -- reslab: DeviceLoader + TrainStep ---------------------------------------------------------------
def run_reslab(model, images, labels, mean, std, device, batch_size, warmup, steps, channels_last, bf16=False):
    """Images/s of the trainer's data path and step over ``steps`` timed steps."""
    loader = DeviceLoader(images, labels, batch_size=batch_size, device=device, train=True,
                          augment=AugmentConfig(crop_padding=4, flip=True), mean=mean, std=std, seed=0,
                          channels_last=channels_last)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), **OPTIMIZER)
    step_fn = TrainStep(model, model, optimizer, nn.CrossEntropyLoss(), bf16=bf16)
    model.train()

    def batches():
        epoch = 0
        while True:
            loader.set_epoch(epoch)
            yield from loader
            epoch += 1

    stream = batches()
    total = torch.zeros((), device=device)
    started = None
    for step in range(warmup + steps):
        if step == warmup:
            _sync(device)
            started = time.perf_counter()
        x, y = next(stream)
        loss_sum, _ = step_fn(x, y)
        total += loss_sum  # summed on the device; read once at the end, as the trainer does
    float(total)
    _sync(device)
    return steps * batch_size / (time.perf_counter() - started)


def run_trainer(name, args, device, bf16: bool) -> float:
    """Images/s of the whole trainer (``reslab.train.train``, recipe cifar10-fast) over one epoch."""
    import tempfile  # noqa: PLC0415

    from reslab.train import resolve_config, train  # noqa: PLC0415

    if args.data_dir:
        data = {"data": "cifar10", "data_dir": args.data_dir}
    else:
        data = {"data": "synthetic", "data_options": {"num_train": args.num_images, "num_test": 0, "image_size": 32,
                                                      "channels": 3}}
    with tempfile.TemporaryDirectory() as out:
        config = resolve_config("cifar10-fast", model=name, overrides={
            **data, "epochs": 1, "out": out, "quiet": True, "seed": 0, "device": str(device),
            "batch_size": args.batch_size, "bf16": bf16, "threads": args.threads})
        result = train(config)
    return float(result.metrics[-1]["images_per_s"])


def step_gflop(name: str, num_classes: int, batch_size: int) -> float:
    """FLOPs of one training step (forward + backward), counted by torch.utils.flop_counter, in GFLOP."""
    model = reslab.create_model(name, num_classes=num_classes)
    x = torch.randn(batch_size, 3, 32, 32)
    with torch.utils.flop_counter.FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model(x), torch.zeros(batch_size, dtype=torch.int64)).backward()
    return counter.get_total_flops() / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet20,resnet56", help="comma-separated CIFAR models")
    parser.add_argument("--data-dir", help="directory with cifar-10-batches-py (default: synthetic CIFAR-shaped data)")
    parser.add_argument("--num-images", type=int, default=10000, help="synthetic training images (default 10000)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best round counts")
    parser.add_argument("--num-workers", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                        help="reference DataLoader workers (default: half the CPU cores, at least 1)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's, one per core)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--layout", choices=("channels_last", "nchw"), default="channels_last",
                        help="reslab's layout in the final ratio (channels_last, as the recipes train; default)")
    parser.add_argument("--no-trainer", action="store_true", help="skip the one-epoch runs of the whole trainer")
    parser.add_argument("--json", default=None, help="also write the summary rows to this JSON file")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.data_dir:
        dataset = load_dataset("cifar10", data_dir=args.data_dir)
        source = f"CIFAR-10 from {args.data_dir}"
    else:
        dataset = load_dataset("synthetic", num_train=args.num_images, num_test=0, image_size=32, channels=3)
        source = f"synthetic CIFAR-shaped data ({args.num_images} images)"
    images, labels, mean, std = dataset.train_images, dataset.train_labels, dataset.mean, dataset.std
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} torch threads, "
          f"{os.cpu_count()} CPUs; {source}; batch {args.batch_size}; {args.warmup} warm-up + {args.steps} timed "
          f"steps x {args.rounds} rounds (best counts); reference DataLoader with {args.num_workers} worker(s)")

    print(describe_cpu())
    bf16, why_not = bf16_available(device)
    peak = measure_peak(str(device) if device.type == "cuda" else "cpu")
    settings = [("reference", "DataLoader + per-sample transforms, NCHW"),
                ("reslab", "DeviceLoader + TrainStep, NCHW"),
                ("reslab_cl", "DeviceLoader + TrainStep, channels_last")]
    if bf16:
        settings.append(("reslab_bf16", "DeviceLoader + TrainStep, channels_last, bf16"))
    else:
        print(f"bf16: not measured ({why_not})")
    ratios = []
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        torch.manual_seed(0)
        initial = reslab.create_model(name, num_classes=dataset.num_classes).state_dict()
        best = {key: 0.0 for key, _ in settings}
        for _ in range(args.rounds):
            for key, _ in settings:
                model = reslab.create_model(name, num_classes=dataset.num_classes)
                model.load_state_dict(initial)
                model.to(device)
                if key == "reference":
                    rate = run_reference(model, images, labels, mean, std, device, args.batch_size, args.warmup,
                                         args.steps, args.num_workers)
                else:
                    rate = run_reslab(model, images, labels, mean, std, device, args.batch_size, args.warmup,
                                      args.steps, channels_last=key != "reslab", bf16=key == "reslab_bf16")
                best[key] = max(best[key], rate)
        gflop_per_image = step_gflop(name, dataset.num_classes, args.batch_size) / args.batch_size
        for key, label in settings:
            ratio = best[key] / best["reference"]
            peak_of = peak["bf16"] if key == "reslab_bf16" else peak["fp32"]
            print(f"{name:10s} {label:45s} {best[key]:8.1f} img/s  {ratio:5.2f}x  "
                  f"{100 * best[key] * gflop_per_image / peak_of:3.0f} % of the {'bf16' if key == 'reslab_bf16' else 'fp32'}"
                  f" peak")
        rows.append({"work": f"{name} training step, fp32", "peer": f"DataLoader {best['reference']:.0f} img/s",
                     "reslab": f"{best['reslab_cl']:.0f} img/s", "ratio": best["reslab_cl"] / best["reference"],
                     "peak": best["reslab_cl"] * gflop_per_image / peak["fp32"]})
        if bf16:
            print(f"{name:10s} bf16 / fp32 (channels_last): {best['reslab_bf16'] / best['reslab_cl']:.2f}x")
            rows.append({"work": f"{name} training step, bf16", "peer": f"reslab fp32 {best['reslab_cl']:.0f} img/s",
                         "reslab": f"{best['reslab_bf16']:.0f} img/s",
                         "ratio": best["reslab_bf16"] / best["reslab_cl"],
                         "peak": best["reslab_bf16"] * gflop_per_image / peak["bf16"]})
        if not args.no_trainer:
            for low, key in ((False, "reslab_cl"), (True, "reslab_bf16")) if bf16 else ((False, "reslab_cl"),):
                sustained = run_trainer(name, args, device, bf16=low)
                print(f"{name:10s} whole trainer, one epoch{', bf16' if low else ''}: {sustained:.1f} img/s sustained "
                      f"= {100 * sustained / best[key]:.0f} % of its burst rate ({best[key]:.1f} img/s)")
                rows.append({"work": f"{name} trainer epoch{', bf16' if low else ''} vs its burst",
                             "peer": f"burst {best[key]:.0f} img/s", "reslab": f"{sustained:.0f} img/s",
                             "ratio": sustained / best[key],
                             "peak": sustained * gflop_per_image / (peak["bf16"] if low else peak["fp32"])})
        headline = best["reslab_cl"] if args.layout == "channels_last" else best["reslab"]
        ratios.append(headline / best["reference"])
    geometric = math.exp(statistics.fmean(math.log(r) for r in ratios))
    print(f"ratio reslab ({args.layout}) / reference DataLoader, geometric mean over {len(ratios)} model(s): "
          f"{geometric:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
