"""Fake run, analysis and experiment directories for the report tests (written by hand, in tmp_path).

The files follow the documented formats (docs/analysis.md, ARCHITECTURE.md) without running any
training or analysis, so the report is tested against the contract itself.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

DEPTHS = (8, 14, 20)


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


def fake_curve(kind: str, depth: int, epochs: int = 6) -> dict:
    """Per-epoch errors: plain nets get worse with depth (degradation), residual nets better."""
    final = 0.05 + (0.04 * depth / 20 if kind == "plain" else -0.01 * depth / 20)
    train = [final + (0.9 - final) * math.exp(-e) for e in range(1, epochs + 1)]
    test = [t + 0.02 for t in train]
    return {
        "epoch": list(range(1, epochs + 1)),
        "iteration": [10 * e for e in range(1, epochs + 1)],
        "train_error": train, "test_error": test,
        "train_loss": [2.3 * t for t in train], "test_loss": [2.3 * t + 0.05 for t in test],
    }


def make_run(run_dir: Path, model: str, kind: str, depth: int, seed: int = 0, epochs: int = 6) -> Path:
    options = {"shortcut": "none"} if kind == "plain" else {}
    write_json(run_dir / "config.json", {
        "model": model, "model_options": options, "data": "digits", "data_options": {}, "recipe": "digits-quick",
        "epochs": epochs, "lr": 0.1, "seed": seed, "num_classes": 10, "in_chans": 1, "mean": [0.3], "std": [0.4],
        "image_size": [8, 8], "class_names": [str(i) for i in range(10)], "data_source": "embedded digits",
        "versions": {"python": "3.11", "torch": "2.x", "reslab": "0.1.0"},
    })
    curve = fake_curve(kind, depth, epochs)
    rows = [{"epoch": e, "iteration": it, "lr": 0.1, "train_loss": tl, "train_error": te, "test_loss": vl,
             "test_error": ve, "images_per_s": 1000.0, "epoch_time_s": 1.0, "elapsed_s": float(e)}
            for e, it, tl, te, vl, ve in zip(curve["epoch"], curve["iteration"], curve["train_loss"],
                                            curve["train_error"], curve["test_loss"], curve["test_error"])]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return run_dir


def gradients_result(label: str = "resnet8") -> dict:
    layers = 8
    series = [{"label": f"{label} @ init", "model": label, "kind": "residual", "checkpoint": "init",
               "layers": [f"l{i}" for i in range(layers)], "grad_norm": [0.5 + 0.1 * i for i in range(layers)],
               "weight_norm": [3.0] * layers, "update_ratio": [0.02] * layers, "lr": 0.1, "loss": 2.3},
              {"label": "plain8 @ init", "model": "plain8", "kind": "plain", "checkpoint": "init",
               "layers": [f"l{i}" for i in range(layers)], "grad_norm": [0.05 * 2 ** i for i in range(layers)],
               "weight_norm": [3.0] * layers, "update_ratio": [0.01] * layers, "lr": 0.1, "loss": 2.3}]
    classic = [{"label": "plain MLP, tanh, no BN", "model": "plain_mlp", "kind": "plain", "checkpoint": "init",
                "layers": [f"h{i}" for i in range(12)], "grad_norm": [0.0] + [10.0 ** (i - 11) for i in range(1, 12)],
                "weight_norm": [1.0] * 12, "update_ratio": [1e-3] * 12, "lr": None, "loss": 2.3},
               {"label": "residual MLP, tanh, no BN", "model": "res_mlp", "kind": "residual", "checkpoint": "init",
                "layers": [f"h{i}" for i in range(12)], "grad_norm": [1.0] * 12,
                "weight_norm": [1.0] * 12, "update_ratio": [1e-3] * 12, "lr": None, "loss": 2.3}]
    shattered = [{"label": label, "model": label, "kind": "residual", "lags": [0, 1, 2, 3],
                  "distance": [0.0, 1 / 3, 2 / 3, 1.0], "correlation": [1.0, 0.9, 0.8, 0.7],
                  "matrix": {"__array__": "shattered_0_matrix"}}]
    return {"analysis": "gradients", "format": 1, "created": "2024-01-01T00:00:00+00:00",
            "target": {"label": label, "model": label, "kind": "residual", "checkpoint": "init", "run_dir": None,
                       "dataset": "digits", "data_source": "embedded digits"},
            "settings": {"samples": 64}, "series": series, "classic": classic,
            "classic_settings": {"depth": 10, "weight_layers": 12, "activation": "tanh"}, "shattered": shattered}


def responses_result() -> dict:
    return {"analysis": "responses", "format": 1, "target": {"label": "resnet8", "checkpoint": "last"},
            "settings": {"samples": 32},
            "series": [{"label": "resnet8", "model": "resnet8", "kind": "residual", "checkpoint": "last",
                        "blocks": ["layer1.0", "layer2.0", "layer3.0"], "std": [0.3, 0.2, 0.1]},
                       {"label": "plain8", "model": "plain8", "kind": "plain", "checkpoint": "last",
                        "blocks": ["layer1.0", "layer2.0", "layer3.0"], "std": [0.9, 0.7, 0.8]}]}


def lesion_result() -> dict:
    return {"analysis": "lesion", "format": 1, "target": {"label": "resnet8", "checkpoint": "last"},
            "settings": {"samples": 32, "draws": 3},
            "series": [{"label": "resnet8", "model": "resnet8", "kind": "residual", "checkpoint": "last",
                        "blocks": ["a", "b", "c"], "removable": ["a", "b", "c"], "base_error": 0.1,
                        "single_block_error": [0.12, 0.2, 0.15], "k": [1, 2, 3],
                        "k_mean_error": [0.16, 0.3, 0.5], "k_std_error": [0.03, 0.05, 0.0], "k_sets": [3, 3, 1]},
                       {"label": "plain8", "model": "plain8", "kind": "plain", "checkpoint": "last",
                        "blocks": ["a", "b", "c"], "removable": ["a"], "base_error": 0.15,
                        "single_block_error": [0.85, None, None], "k": [1], "k_mean_error": [0.85],
                        "k_std_error": [0.0], "k_sets": [1]}]}


def degradation_result(experiment: Path, seeds=(0,)) -> dict:
    runs = []
    for kind in ("plain", "residual"):
        for depth in DEPTHS:
            for seed in seeds:
                curve = fake_curve(kind, depth)
                runs.append({"run": f"{'plain' if kind == 'plain' else 'resnet'}{depth}-s{seed}",
                             "model": f"cifar_{'plain' if kind == 'plain' else 'resnet'}{depth}", "kind": kind,
                             "depth": depth, "seed": seed, "final_train_error": curve["train_error"][-1],
                             "final_test_error": curve["test_error"][-1], "best_test_error": min(curve["test_error"]),
                             "epochs": len(curve["epoch"]), "iterations": curve["iteration"][-1], "curve": curve})
    return {"experiment": "degradation", "format": 1, "dataset": "digits", "data_source": "embedded digits",
            "recipe": "digits-quick", "epochs": 6, "seeds": list(seeds), "depths": list(DEPTHS), "runs": runs}


def make_experiment(root: Path, with_analyses: bool = True) -> Path:
    """An experiment directory: six runs (plain/residual × 3 depths), degradation.json, analyses of one run."""
    experiment = root / "degradation"
    for kind in ("plain", "residual"):
        for depth in DEPTHS:
            name = f"{'plain' if kind == 'plain' else 'resnet'}{depth}-s0"
            make_run(experiment / name, f"cifar_{'plain' if kind == 'plain' else 'resnet'}{depth}", kind, depth)
    write_json(experiment / "degradation.json", degradation_result(experiment))
    if with_analyses:
        analysis = experiment / "resnet8-s0" / "analysis"
        write_json(analysis / "gradients.json", gradients_result())
        np.savez(analysis / "gradients.npz", shattered_0_matrix=np.eye(4, dtype=np.float32))
        write_json(analysis / "responses.json", responses_result())
        write_json(analysis / "lesion.json", lesion_result())
    return experiment


@pytest.fixture
def experiment_dir(tmp_path) -> Path:
    return make_experiment(tmp_path)


@pytest.fixture
def single_run(tmp_path) -> Path:
    return make_run(tmp_path / "lonely-run", "cifar_resnet8", "residual", 8)


@pytest.fixture
def analysis_only_dir(tmp_path) -> Path:
    """What ``reslab analyze ... MODEL --out DIR`` leaves: result files, no run."""
    out = tmp_path / "analysis" / "resnet8"
    write_json(out / "gradients.json", gradients_result())
    np.savez(out / "gradients.npz", shattered_0_matrix=np.eye(4, dtype=np.float32))
    write_json(out / "responses.json", responses_result())
    write_json(out / "lesion.json", lesion_result())
    return out


@pytest.fixture
def fakes():
    """The builders above, for tests (conftest modules cannot be imported under --import-mode=importlib)."""
    from types import SimpleNamespace

    return SimpleNamespace(gradients_result=gradients_result, responses_result=responses_result,
                           lesion_result=lesion_result, degradation_result=degradation_result, make_run=make_run)
