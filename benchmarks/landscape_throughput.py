"""Loss-landscape throughput: reslab's evaluator vs the reference design, same machine, one run.

The reference is the design of Li et al.'s loss-landscape code, written plainly and fairly:
for each grid point, copy the perturbed weights into the model's parameters, then stream the
samples through a ``torch.utils.data.DataLoader`` (batch 128, ``shuffle=False``) whose
``Dataset`` normalises each sample as it is read (as ``transforms.Normalize`` does), under
``torch.no_grad()`` in eval mode, accumulating ``CrossEntropyLoss`` and correct predictions.

reslab's path (:class:`reslab.analysis.landscape.LandscapeEvaluator`): samples normalised once
and resident on the device, weights passed with ``functional_call``, ``inference_mode``, large
batches, channels-last on CPU (or ``--method vmap``: several points per pass).

The peer is the ``loss-landscapes`` package (``pip install loss-landscapes``, benchmark-only):
its ``planar_interpolation`` over the same plane (start and end models built from reslab's
filter-normalised directions), its ``metrics.Loss`` on all samples in one pass, under
``torch.no_grad()``. Its grid is offset by one step in every other column (the package walks
the columns alternately up and down); the check evaluates reslab at exactly the points it visits.

Against the machine: one point costs the FLOPs ``torch.utils.flop_counter`` counts for one
forward pass over the samples; the machine's fp32 (and bf16) matmul peak from
:mod:`benchmarks.peak` divided by that is the ceiling in points/s, and each path prints its
fraction of it. Where the CPU has bf16 units (or on CUDA) reslab's bf16 autocast path is timed
too, and each point's loss is compared with fp32's (within 1 % relative, same minimum).

Both evaluate the same points of the same filter-normalised random plane on the same samples;
the script checks that their losses agree, times each ``--repeats`` times alternately (the
best time of each counts, which filters out other processes' load), and prints the ratio last.
When reslab's path uses the private fused conv+ReLU op (CPU), the same evaluator without it is
timed alongside, and one line says what the op buys.

    python benchmarks/landscape_throughput.py                       # ResNet-20, digits, CPU
    python benchmarks/landscape_throughput.py --model resnet56 --data cifar10 --data-dir data \\
        --samples 10000 --grid 5 --device cuda
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.peak import measure_peak  # noqa: E402
from reslab.analysis.landscape import LandscapeEvaluator, random_plane  # noqa: E402
from reslab.models import fusion  # noqa: E402
from reslab.analysis.landscape.surface import grid_points  # noqa: E402
from reslab.data import load_dataset, normalize  # noqa: E402
from reslab.models import create_model  # noqa: E402
from reslab.utils.cpu import describe_cpu  # noqa: E402


class NormalizedImages(Dataset):
    """The reference's dataset: uint8 images normalised one sample at a time in ``__getitem__``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std):
        self.images, self.labels = images, labels
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int):
        image = self.images[index].to(torch.float32).div_(255.0)
        return (image - self.mean) / self.std, self.labels[index]


def reference_evaluate(model: torch.nn.Module, plane, coords: torch.Tensor, loader: DataLoader,
                       device: torch.device) -> list[float]:
    """One point at a time: set the weights, run the loader, accumulate; returns the losses."""
    parameters = dict(model.named_parameters())
    losses = []
    model.eval()
    with torch.no_grad():
        for a, b in coords.tolist():
            for name, p in parameters.items():
                p.copy_(plane.origin[name] + a * plane.axes[0][name] + b * plane.axes[1][name])
            total, correct, count = 0.0, 0, 0
            for inputs, targets in loader:
                inputs, targets = inputs.to(device), targets.to(device)
                outputs = model(inputs)
                total += F.cross_entropy(outputs, targets).item() * targets.shape[0]
                correct += (outputs.argmax(dim=1) == targets).sum().item()
                count += targets.shape[0]
            losses.append(total / count)
    return losses


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet20", help="model name (default resnet20)")
    parser.add_argument("--data", default="digits", help="digits (default, embedded) or cifar10 (needs --data-dir)")
    parser.add_argument("--data-dir", default=None, help="where the dataset's files are")
    parser.add_argument("--samples", type=int, default=None, help="training images to evaluate on (default: all)")
    parser.add_argument("--grid", type=int, default=11, help="points per axis of the timed grid (default 11: 121 points)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--method", default="auto", choices=["auto", "loop", "vmap"], help="reslab's method")
    parser.add_argument("--batch-size", type=int, default=None, help="reslab's batch size (default 512 CPU, 2048 GPU)")
    parser.add_argument("--chunk-size", type=int, default=8, help="points per pass with --method vmap")
    parser.add_argument("--workers", type=int, default=None,
                        help="reslab's concurrent points on CPU (default: torch's thread count)")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                        help="reslab's precision (bf16/fp16: autocast, for GPUs)")
    parser.add_argument("--no-fold-bn", action="store_true", help="reslab without folding BN into convs")
    parser.add_argument("--ref-batch-size", type=int, default=128, help="the reference's batch size (default 128)")
    parser.add_argument("--ref-workers", type=int, default=0, help="the reference DataLoader's workers (default 0)")
    parser.add_argument("--repeats", type=int, default=2, help="timed repetitions of each (best counts; default 2)")
    parser.add_argument("--epochs", type=int, default=3, help="digits-quick epochs of training before measuring "
                        "(default 3; 0 = the initial weights)")
    parser.add_argument("--json", default=None, help="also write the summary rows to this JSON file")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dataset = load_dataset(args.data, data_dir=args.data_dir)
    images, labels = dataset.train_images, dataset.train_labels
    if args.samples is not None:
        images, labels = images[:args.samples], labels[:args.samples]
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=dataset.num_classes, in_chans=dataset.in_chans).eval()
    if args.epochs and args.data == "digits":
        model = _trained(args.model, args.epochs)
    print(describe_cpu())
    plane = random_plane(model, dims=2, seed=0)
    axis = torch.linspace(-1, 1, args.grid, dtype=torch.float64).numpy()
    coords = torch.from_numpy(grid_points(axis, axis))
    points = coords.shape[0]

    print(f"model {args.model} ({sum(p.numel() for p in model.parameters()):,} parameters), data {dataset.name} "
          f"{tuple(images.shape[1:])}, {images.shape[0]} samples, {points} grid points, device {device}, "
          f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}")

    ref_model = create_model(args.model, num_classes=dataset.num_classes, in_chans=dataset.in_chans)
    ref_model.load_state_dict(model.state_dict())
    ref_model.to(device).eval()
    ref_plane = plane.to(device)
    loader = DataLoader(NormalizedImages(images, labels, dataset.mean, dataset.std), batch_size=args.ref_batch_size,
                        shuffle=False, num_workers=args.ref_workers, persistent_workers=args.ref_workers > 0)

    x = normalize(images, dataset.mean, dataset.std)
    evaluator = LandscapeEvaluator(model, x, labels, batch_size=args.batch_size, device=device, method=args.method,
                                   chunk_size=args.chunk_size, workers=args.workers, fold_bn=not args.no_fold_bn,
                                   precision=args.precision)
    our_plane = plane.to(device)
    # What the private fused conv+ReLU op buys: the same evaluator without it (BN still folded),
    # i.e. the public F.relu(F.conv2d(...)) path that fusion.fused_conv_relu falls back to.
    public = None
    if evaluator.pointwise_fused:
        saved = fusion.fused_conv_relu
        fusion.fused_conv_relu = lambda: fusion.public_conv_relu
        try:
            public = LandscapeEvaluator(model, x, labels, batch_size=args.batch_size, device=device,
                                        method=args.method, chunk_size=args.chunk_size, workers=args.workers,
                                        fold_bn=not args.no_fold_bn, precision=args.precision)
        finally:
            fusion.fused_conv_relu = saved

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def run_reference():
        return reference_evaluate(ref_model, ref_plane, coords, loader, device)

    def run_ours():
        return evaluator.evaluate(our_plane, coords)[0].tolist()

    # Warm-up (allocator, oneDNN primitive caches, cuDNN autotuning) on the first point, then check agreement.
    reference_evaluate(ref_model, ref_plane, coords[:1], loader, device)
    evaluator.evaluate(our_plane, coords[:1])
    runs = [("reference", run_reference), ("reslab", run_ours)]
    if public is not None:
        public.evaluate(our_plane, coords[:1])
        runs.append(("public", lambda: public.evaluate(our_plane, coords)[0].tolist()))
    best = {name: float("inf") for name, _ in runs}
    cpu = {name: float("inf") for name, _ in runs}
    values = {}
    for _ in range(max(1, args.repeats)):
        for name, fn in runs:
            sync()
            start, start_cpu = time.perf_counter(), time.process_time()
            values[name] = fn()
            sync()
            best[name] = min(best[name], time.perf_counter() - start)
            cpu[name] = min(cpu[name], time.process_time() - start_cpu)
    diff = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(values["reference"], values["reslab"]))
    print(f"losses agree: max relative difference {diff:.2e} over {points} points")
    rate = {name: points / seconds for name, seconds in best.items()}
    print(f"reference (one point at a time, DataLoader batch {args.ref_batch_size}): {rate['reference']:.2f} points/s")
    print(f"reslab (method {evaluator.method}, batch {evaluator.batch_size}, channels_last {evaluator.channels_last}, "
          f"{evaluator.bn_folded} BN folded, {evaluator.pointwise_fused} conv+ReLU fused, "
          f"{evaluator.workers} worker(s)): "
          f"{rate['reslab']:.2f} points/s")
    if public is not None:
        print(f"fused conv+ReLU (private oneDNN op) vs public F.relu(F.conv2d): {rate['reslab']:.2f} vs "
              f"{rate['public']:.2f} points/s, {1e3 / rate['reslab']:.0f} vs {1e3 / rate['public']:.0f} ms per point "
              f"({rate['reslab'] / rate['public']:.2f}x)")
    else:
        print("fused conv+ReLU (private oneDNN op): not in use, nothing to compare")
    print(f"projected 51x51 surface with reslab: {51 * 51 / rate['reslab']:.0f} s")
    # CPU seconds of this process: on a machine shared with other jobs, less noisy than wall time.
    if device.type == "cpu":
        print(f"CPU-time ratio reslab/reference: {cpu['reference'] / cpu['reslab']:.2f}x "
              f"({cpu['reference']:.2f} s vs {cpu['reslab']:.2f} s of CPU time)")
    print(f"ratio reslab/reference: {rate['reslab'] / rate['reference']:.2f}x")

    # -- against the machine and against loss-landscapes -----------------------------------
    peak = measure_peak(str(device) if device.type == "cuda" else "cpu")
    with torch.utils.flop_counter.FlopCounterMode(display=False) as counter, torch.no_grad():
        model.to(device)(x.to(device))
    gflop = counter.get_total_flops() / 1e9
    ceiling = peak["fp32"] / gflop
    print(f"one point: {gflop:.2f} GFLOP ({1e3 * gflop / x.shape[0]:.2f} MFLOP/image); fp32 peak {peak['fp32']:.0f} "
          f"GFLOP/s => ceiling {ceiling:.1f} points/s; reslab fp32 reaches {100 * rate['reslab'] / ceiling:.0f} %")
    rows = [{"work": f"{args.grid}x{args.grid} landscape plane, fp32", "peer": f"Li et al. design "
             f"{rate['reference']:.1f} pts/s", "reslab": f"{rate['reslab']:.1f} pts/s",
             "ratio": rate["reslab"] / rate["reference"], "peak": rate["reslab"] / ceiling}]
    peer_rate, peer_coords, peer_losses = _loss_landscapes(model, plane, x, labels, args.grid, device)
    if peer_rate is not None:
        ours_at_peer = evaluator.evaluate(our_plane, peer_coords)[0].numpy()
        agree = float(np.max(np.abs(ours_at_peer - peer_losses) / np.maximum(np.abs(peer_losses), 1e-12)))
        print(f"loss-landscapes (planar_interpolation, one pass over all samples, no_grad): {peer_rate:.2f} points/s; "
              f"reslab fp32 {rate['reslab'] / peer_rate:.2f}x; losses agree within {agree:.1e} (relative)")
        rows.append({"work": f"{args.grid}x{args.grid} landscape plane, fp32", "peer": f"loss-landscapes "
                     f"{peer_rate:.1f} pts/s", "reslab": f"{rate['reslab']:.1f} pts/s",
                     "ratio": rate["reslab"] / peer_rate, "peak": rate["reslab"] / ceiling})
    else:
        print("loss-landscapes: not installed (pip install loss-landscapes); peer not measured")
    if peak["bf16"] is not None:
        low = LandscapeEvaluator(model, x, labels, batch_size=args.batch_size, device=device, method=args.method,
                                 chunk_size=args.chunk_size, workers=args.workers, precision="bf16")
        low.evaluate(our_plane, coords[:1])
        seconds = float("inf")
        for _ in range(max(1, args.repeats)):
            start = time.perf_counter()
            low_losses = low.evaluate(our_plane, coords)[0].numpy()
            seconds = min(seconds, time.perf_counter() - start)
        fp32_losses = np.asarray(values["reslab"])
        worst = float(np.max(np.abs(low_losses - fp32_losses) / np.abs(fp32_losses)))
        same_min = int(np.argmin(low_losses)) == int(np.argmin(fp32_losses))
        bf16_rate = points / seconds
        print(f"reslab bf16 autocast: {bf16_rate:.2f} points/s ({bf16_rate / rate['reslab']:.2f}x fp32"
              + (f", {bf16_rate / peer_rate:.2f}x loss-landscapes" if peer_rate else "")
              + f"; {100 * bf16_rate * gflop / peak['bf16']:.0f} % of the bf16 peak); every point within "
              f"{100 * worst:.2f} % of fp32 ({'OK' if worst <= 0.01 else 'NOT within 1 %'}), minimum "
              f"{'at the same point' if same_min else 'MOVED'}")
        rows.append({"work": f"{args.grid}x{args.grid} landscape plane, bf16", "peer": (
            f"loss-landscapes {peer_rate:.1f} pts/s" if peer_rate else "reslab fp32"),
            "reslab": f"{bf16_rate:.1f} pts/s", "ratio": bf16_rate / (peer_rate or rate["reslab"]),
            "peak": bf16_rate * gflop / peak["bf16"]})
    else:
        print("reslab bf16 autocast: not measured (no bf16 units on this CPU: AVX512-BF16/AMX absent)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def _trained(name: str, epochs: int):
    import tempfile  # noqa: PLC0415

    from reslab.train import resolve_config, train  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as out:
        config = resolve_config("digits-quick", model=name,
                                overrides={"epochs": epochs, "out": out, "quiet": True, "seed": 0, "device": "cpu"})
        return train(config).model.eval()


def _loss_landscapes(model, plane, x, labels, steps: int, device):
    """(points/s, coordinates (P, 2) it evaluated, its losses (P,)) of the loss-landscapes package, or Nones."""
    try:
        import loss_landscapes  # noqa: PLC0415
        import loss_landscapes.metrics  # noqa: PLC0415
    except ImportError:
        return None, None, None
    import copy  # noqa: PLC0415

    def shifted(a: float, b: float):
        out = copy.deepcopy(model).to(device).eval()
        with torch.no_grad():
            for name, p in out.named_parameters():
                if name in plane.origin:
                    p.copy_(plane.origin[name] + a * plane.axes[0][name] + b * plane.axes[1][name])
        return out

    # Grid positions -1 + 2i/(steps-1): the package steps (end - start)/steps from start.
    reach = 2 * steps / (steps - 1) - 1
    start, end_one, end_two = shifted(-1, -1), shifted(reach, -1), shifted(-1, reach)
    metric = loss_landscapes.metrics.Loss(torch.nn.CrossEntropyLoss(), x.to(device), labels.to(device))
    with torch.no_grad():
        began = time.perf_counter()
        losses = loss_landscapes.planar_interpolation(start, end_one, end_two, metric, steps=steps, deepcopy_model=True)
        seconds = time.perf_counter() - began
    axis = -1 + 2 * np.arange(steps + 1) / (steps - 1)
    # Column i walks up (positions 1..steps) when i is even, down (steps-1..0) when odd.
    coords = [(axis[i], axis[j + 1] if i % 2 == 0 else axis[j]) for i in range(steps) for j in range(steps)]
    return steps * steps / seconds, torch.tensor(coords, dtype=torch.float64), np.asarray(losses).reshape(-1)


if __name__ == "__main__":
    main()
