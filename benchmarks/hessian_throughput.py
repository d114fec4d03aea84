"""Hessian throughput: reslab's curvature routines against PyHessian, same model, samples and tolerances.

A ResNet-20 trained briefly on the embedded digits (recipe digits-quick, ``--epochs``, seed 0),
eval mode, the first ``--samples`` training images in one batch — the setting PyHessian is made
for (it keeps the gradient's graph of one batch and reuses it for every product). Both sides
are timed from scratch (PyHessian's constructor builds its graph; reslab's operator builds its
own on the first product):

* one Hessian-vector product (the best of three, graph already built);
* the top-1 and top-``--top-k`` eigenvalues, power iteration to relative tolerance ``--tol``
  (PyHessian) vs reslab's default (one Lanczos run, same tolerance);
* Hutchinson's trace with ``--probes`` Rademacher probes on both sides.

It prints values (eigenvalues must agree within 1 %, traces within two standard errors), times,
the ratio PyHessian-time / reslab-time, and the fraction of the machine's fp32 matmul peak
(:mod:`benchmarks.peak`) that reslab's products reach (FLOPs counted by
``torch.utils.flop_counter``). PyHessian is a benchmark-only dependency: ``pip install pyhessian``.

    python benchmarks/hessian_throughput.py
    python benchmarks/hessian_throughput.py --samples 256 --probes 20 --json rows.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.peak import measure_peak  # noqa: E402
from reslab.analysis.hessian import HessianOperator, hutchinson_trace, top_eigenvalues  # noqa: E402
from reslab.data import load_dataset, normalize  # noqa: E402
from reslab.utils.cpu import describe_cpu  # noqa: E402


def trained_model(epochs: int):
    from reslab.train import resolve_config, train  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as out:
        config = resolve_config("digits-quick", model="resnet20",
                                overrides={"epochs": epochs, "out": out, "quiet": True, "seed": 0, "device": "cpu"})
        result = train(config)
        model = result.model.eval()
    return model


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=512, help="training images (default 512, one batch)")
    parser.add_argument("--epochs", type=int, default=3, help="digits-quick epochs before measuring (default 3)")
    parser.add_argument("--top-k", type=int, default=5, help="eigenvalues of the top-k comparison (default 5)")
    parser.add_argument("--tol", type=float, default=1e-4, help="relative tolerance of the eigenvalues (default 1e-4)")
    parser.add_argument("--probes", type=int, default=50, help="Rademacher probes of the trace (default 50)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the summary rows to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        from pyhessian import hessian as PyHessian  # noqa: PLC0415, N812
    except ImportError:
        raise SystemExit("this benchmark compares against PyHessian: pip install pyhessian") from None

    print(describe_cpu())
    peak = measure_peak()["fp32"]
    print(f"fp32 matmul peak {peak:.0f} GFLOP/s")
    torch.manual_seed(0)
    model = trained_model(args.epochs)
    dataset = load_dataset("digits")
    x = normalize(dataset.train_images[:args.samples], dataset.mean, dataset.std)
    y = dataset.train_labels[:args.samples]
    print(f"ResNet-20 ({sum(p.numel() for p in model.parameters()):,} parameters) trained {args.epochs} epochs on the "
          f"digits; {x.shape[0]} samples {tuple(x.shape[1:])}, eval mode, torch {torch.__version__}")

    def pyhessian():
        # PyHessian takes the gradient from p.grad after loss.backward(create_graph=True): clear it
        # first, or a second instance would accumulate the first one's gradient (and double H).
        model.zero_grad(set_to_none=True)
        return PyHessian(model, torch.nn.CrossEntropyLoss(), data=(x, y), cuda=False)

    def ours():
        return HessianOperator(model, x, y, batch_size=args.samples)

    rows = []
    # -- one product --------------------------------------------------------------------------
    peer = pyhessian()
    from pyhessian.utils import hessian_vector_product  # noqa: PLC0415

    op = ours()
    op.hvp(torch.randn(op.dim))  # builds and keeps the graph
    v = torch.randn(op.dim)
    v_parts = [part.clone() for part in op.unflatten(v)]
    peer_hvp = min(timed(lambda: hessian_vector_product(peer.gradsH, peer.params, v_parts))[1] for _ in range(3))
    our_hvp = min(timed(lambda: op.hvp(v))[1] for _ in range(3))
    peer_hv = torch.cat([t.reshape(-1) for t in hessian_vector_product(peer.gradsH, peer.params, v_parts)])
    hv_diff = float((peer_hv - op.hvp(v)).abs().max() / peer_hv.abs().max())
    with torch.utils.flop_counter.FlopCounterMode(display=False) as counter:
        op.hvp(v)
    hvp_gflop = counter.get_total_flops() / 1e9
    print(f"one Hessian-vector product: PyHessian {peer_hvp:.3f} s, reslab {our_hvp:.3f} s ({peer_hvp / our_hvp:.2f}x; "
          f"{op.bn_folded} conv-BN pairs folded, graph kept: {op.reuse_graph is not False}, "
          f"{(op.graph_bytes or 0) / 2**20:.0f} MiB); max relative difference {hv_diff:.1e}; "
          f"{hvp_gflop:.2f} GFLOP = {hvp_gflop / our_hvp:.0f} GFLOP/s, {100 * hvp_gflop / our_hvp / peak:.0f} % of peak")
    rows.append(_row("Hessian-vector product", "PyHessian", peer_hvp, our_hvp, hvp_gflop / our_hvp / peak))
    peer = None  # free its graph before the timed runs

    # -- top eigenvalues ----------------------------------------------------------------------
    for k in (1, args.top_k):
        torch.manual_seed(0)
        (peer_values, _), peer_time = timed(lambda: pyhessian().eigenvalues(maxIter=100, tol=args.tol, top_n=k))
        operator = ours()
        (values, _, used), our_time = timed(lambda: top_eigenvalues(operator.hvp, operator.dim, k, tol=args.tol))
        rel = max(abs(a - b) / abs(b) for a, b in zip(sorted(values, key=abs, reverse=True),
                                                     sorted(peer_values, key=abs, reverse=True)))
        print(f"top-{k} eigenvalue(s): PyHessian {_fmt(peer_values)} in {peer_time:.2f} s; reslab (Lanczos, "
              f"{used[0]} products) {_fmt(values)} in {our_time:.2f} s: {peer_time / our_time:.2f}x; "
              f"max relative difference {100 * rel:.2f} % ({'within' if rel <= 0.01 else 'NOT within'} 1 %)")
        rows.append(_row(f"top-{k} Hessian eigenvalue{'s' if k > 1 else ''}", "PyHessian", peer_time, our_time,
                         hvp_gflop * used[0] / our_time / peak))

    # -- trace -----------------------------------------------------------------------------------
    torch.manual_seed(0)
    peer_samples, peer_time = timed(lambda: pyhessian().trace(maxIter=args.probes, tol=0.0))
    operator = ours()
    (estimate, error, _), our_time = timed(lambda: hutchinson_trace(operator.hvp, operator.dim, args.probes))
    peer_mean = float(np.mean(peer_samples))
    peer_error = float(np.std(peer_samples, ddof=1) / math.sqrt(len(peer_samples)))
    gap = abs(estimate - peer_mean) / math.hypot(error, peer_error)
    print(f"trace, {args.probes} probes: PyHessian {peer_mean:.3f} ± {peer_error:.3f} in {peer_time:.2f} s; reslab "
          f"{estimate:.3f} ± {error:.3f} in {our_time:.2f} s: {peer_time / our_time:.2f}x; difference "
          f"{gap:.1f} standard errors ({'within' if gap <= 2 else 'NOT within'} 2)")
    rows.append(_row(f"Hutchinson trace, {args.probes} probes", "PyHessian", peer_time, our_time,
                     hvp_gflop * args.probes / our_time / peak))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def _row(work: str, peer: str, peer_s: float, ours_s: float, fraction: float) -> dict:
    return {"work": work, "peer": f"{peer} {peer_s:.2f} s", "reslab": f"{ours_s:.2f} s",
            "ratio": peer_s / ours_s, "peak": fraction}


def _fmt(values) -> str:
    return "[" + ", ".join(f"{v:.4f}" for v in values) + "]"


if __name__ == "__main__":
    main()
