"""Hessian analyses against closed forms: a linear least-squares model has H = 2 XᵀX / n."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reslab.analysis.common import Target
from reslab.analysis.hessian import (
    HessianOperator,
    HessianResult,
    analyze_hessian,
    density_curve,
    extreme_eigenvalues,
    hutchinson_trace,
    lanczos,
    ritz,
    slq,
    smallest_eigenvalue_power,
    top_eigenvalues,
)
from reslab.cli.main import main
from reslab.models import create_model


def mse(outputs, targets):
    return F.mse_loss(outputs.squeeze(-1), targets)


@pytest.fixture
def least_squares():
    """(operator, exact Hessian) for ℓ(w) = mean (x·w − y)² on 6 features with well separated eigenvalues."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=generator) * torch.tensor([3.0, 2.0, 1.5, 1.0, 0.5, 0.1])
    y = torch.randn(64, generator=generator)
    model = nn.Linear(6, 1, bias=False)
    hessian = (2.0 * x.T @ x / x.shape[0]).double()
    return HessianOperator(model, x, y, loss_fn=mse, batch_size=32), hessian


def test_hvp_is_exact_for_least_squares_over_several_batches(least_squares):
    operator, hessian = least_squares
    assert operator.dim == 6 and len(operator.batches) == 2
    v = torch.randn(6)
    torch.testing.assert_close(operator.hvp(v).double(), hessian @ v.double(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_top_eigenvalues_match_the_closed_form(least_squares, method):
    operator, hessian = least_squares
    exact = torch.linalg.eigvalsh(hessian).flip(0).numpy()
    values, vectors, iterations = top_eigenvalues(operator.hvp, operator.dim, 3, max_iterations=2000, tol=1e-10,
                                                  method=method)
    np.testing.assert_allclose(values, exact[:3], rtol=1e-4)
    for value, vector in zip(values, vectors):  # eigenvectors: H u = λ u
        torch.testing.assert_close(hessian.float() @ vector, value * vector, rtol=1e-3, atol=1e-3)
    assert all(1 <= i <= 2000 for i in iterations)


def test_trace_hutchinson_and_lanczos_extremes(least_squares):
    operator, hessian = least_squares
    exact = torch.linalg.eigvalsh(hessian).numpy()
    estimate, error, samples = hutchinson_trace(operator.hvp, operator.dim, probes=1000)
    assert samples.shape == (1000,) and error > 0
    assert abs(estimate - exact.sum()) < 4 * error  # unbiased: within 4 standard errors
    low, high = extreme_eigenvalues(operator.hvp, operator.dim, steps=6)  # full Krylov space: exact
    assert low == pytest.approx(exact[0], rel=1e-3) and high == pytest.approx(exact[-1], rel=1e-4)


def test_smallest_eigenvalue_by_power_iteration_on_the_shifted_operator():
    generator = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(5, 5, generator=generator, dtype=torch.float64))
    spectrum = torch.tensor([-2.0, 0.5, 1.0, 2.0, 3.0], dtype=torch.float64)
    matrix = (basis @ torch.diag(spectrum) @ basis.T).float()
    lambda_min = smallest_eigenvalue_power(lambda v: matrix @ v, 5, 3.0, max_iterations=2000, tol=1e-10)
    assert lambda_min == pytest.approx(-2.0, abs=1e-4)


def test_hutchinson_is_exact_for_a_diagonal_hessian():
    diagonal = torch.tensor([3.0, -1.0, 0.5, 2.0])
    estimate, error, _ = hutchinson_trace(lambda v: diagonal * v, 4, probes=5)
    assert estimate == pytest.approx(4.5) and error == pytest.approx(0.0, abs=1e-12)


def test_slq_density_mass_and_quadrature_match_the_spectrum(least_squares):
    operator, hessian = least_squares
    exact = torch.linalg.eigvalsh(hessian).numpy()
    nodes, weights = slq(operator.hvp, operator.dim, steps=10, starts=200)
    assert nodes.shape == (200, 6)  # the Krylov space is exhausted after 6 steps
    np.testing.assert_allclose(nodes[0], exact, rtol=1e-3, atol=1e-4)  # Ritz values = eigenvalues
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
    # Each eigenvalue carries mass 1/6 in expectation over random starts.
    np.testing.assert_allclose(weights.mean(axis=0), np.full(6, 1 / 6), atol=0.05)
    grid = np.linspace(exact[0] - 1, exact[-1] + 1, 20001)
    curve = density_curve(nodes, weights, sigma=0.05, grid=grid)
    assert np.trapezoid(curve, grid) == pytest.approx(1.0, abs=1e-3)


def test_lanczos_first_coefficient_is_the_rayleigh_quotient_and_ritz_weights_sum_to_one(least_squares):
    operator, hessian = least_squares
    start = torch.randn(6)
    alpha, beta = lanczos(operator.hvp, 6, steps=4, start=start)
    unit = (start / start.norm()).double()
    assert alpha.shape == (4,) and beta.shape == (3,)
    assert alpha[0] == pytest.approx(float(unit @ hessian @ unit), rel=1e-5)
    nodes, weights = ritz(alpha, beta)
    assert weights.sum() == pytest.approx(1.0) and float(np.dot(nodes, weights)) == pytest.approx(alpha[0], rel=1e-6)


def _tiny_net_operator(method: str = "double_backward"):
    torch.manual_seed(0)
    model = create_model("cifar_resnet8", num_classes=3, in_chans=1).eval()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(12, 1, 6, 6, generator=generator)
    y = torch.randint(0, 3, (12,), generator=generator)
    return HessianOperator(model, x, y, batch_size=5, method=method)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")  # inside torch.func.jvp
def test_hvp_of_a_network_is_symmetric_matches_finite_differences_and_both_methods_agree():
    operator = _tiny_net_operator()
    generator = torch.Generator().manual_seed(2)
    u, v = torch.randn(operator.dim, generator=generator), torch.randn(operator.dim, generator=generator)
    hu, hv = operator.hvp(u), operator.hvp(v)
    assert float(u @ hv) == pytest.approx(float(v @ hu), rel=1e-3)

    # Central differences of the gradient along a unit v, in float64 so rounding cannot mask errors.
    from torch.func import functional_call

    model = copy.deepcopy(operator.model).double()
    unit = (v / v.norm()).double()
    buffers = {k: b.double() if b.is_floating_point() else b for k, b in operator.fixed.items()}

    def gradient(shift: float) -> torch.Tensor:
        params = {n: (p.double() + shift * d).requires_grad_(True) for (n, p), d in
                  zip(operator.point.items(), operator.unflatten(unit))}
        loss = sum(F.cross_entropy(functional_call(model, (params, buffers), (xb.double(),)), yb) * len(yb)
                   for xb, yb in operator.batches) / operator.num_samples
        return operator.flatten(torch.autograd.grad(loss, [params[n] for n in operator.names]))

    eps = 1e-5
    finite = (gradient(eps) - gradient(-eps)) / (2 * eps)
    exact = operator.hvp(unit.float()).double()
    assert float((finite - exact).norm() / exact.norm()) < 1e-3
    other = _tiny_net_operator("forward_over_reverse")
    torch.testing.assert_close(other.hvp(v), hv, rtol=1e-3, atol=1e-4)


def test_analyze_hessian_saves_a_result_with_density_and_map(tmp_path, dataset):
    torch.manual_seed(0)
    model = create_model("cifar_resnet8", num_classes=dataset.num_classes, in_chans=dataset.in_chans).eval()
    target = Target(model=model, dataset=dataset, label="cifar_resnet8")
    result = analyze_hessian(target, samples=16, top_k=2, max_iterations=15, trace=True, trace_probes=4,
                             density=True, density_steps=8, density_starts=2, extreme_steps=8,
                             map_grid=(-1.0, 1.0, 2), map_steps=4, batch_size=8)
    assert len(result.top_eigenvalues) == 2 and result.lambda_max >= abs(result.top_eigenvalues[1]) * 0.5
    assert result.lambda_min <= result.lambda_max and result.convexity_ratio == pytest.approx(
        abs(result.lambda_min / result.lambda_max))
    assert result.density["nodes"].shape == (2, 8) and result.map["ratio"].shape == (2, 2)
    assert result.hessian_vector_products > 30 and result.settings["samples"] == 16
    path = result.save(tmp_path / "hessian.json")
    loaded = HessianResult.load(path)
    assert loaded.top_eigenvalues == pytest.approx(result.top_eigenvalues)
    np.testing.assert_allclose(loaded.map["lambda_max"], result.map["lambda_max"])
    assert json.loads(path.read_text())["analysis"] == "hessian"


def test_hessian_cli_writes_json_and_plots_and_rejects_bad_input(tmp_path, capsys):
    out = tmp_path / "h"
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "hessian", "cifar_resnet8", "--data", "synthetic", "--data-option", "num_train=32",
              "--data-option", "image_size=8", "--samples", "8", "--top-k", "1", "--max-iterations", "5",
              "--extreme-steps", "4", "--density", "--density-steps", "4", "--density-starts", "1", "--map",
              "--grid=-0.5:0.5:2", "--map-steps", "3", "--out", str(out), "--quiet"])
    assert exit_info.value.code == 0, capsys.readouterr().err
    for name in ("hessian.json", "hessian.npz", "hessian_density.png", "hessian_map.png"):
        assert (out / name).is_file(), name
    assert "|λmin/λmax|" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "hessian", "cifar_resnet8", "--data", "digits", "--map", "--grid", "1:0:3"])
    assert exit_info.value.code == 2
    assert "--grid" in capsys.readouterr().err


def test_a_result_of_other_settings_is_not_replaced_silently_and_its_plots_go_with_it(tmp_path, capsys):
    out = tmp_path / "h"
    base = ["analyze", "hessian", "cifar_resnet8", "--data", "synthetic", "--data-option", "num_train=32",
            "--data-option", "image_size=8", "--samples", "8", "--max-iterations", "3", "--extreme-steps", "3",
            "--out", str(out), "--quiet"]
    with pytest.raises(SystemExit) as exit_info:
        main(base + ["--top-k", "1", "--density", "--density-steps", "3", "--density-starts", "1"])
    assert exit_info.value.code == 0 and (out / "hessian_density.png").is_file()
    before = (out / "hessian.json").read_text()
    with pytest.raises(SystemExit) as exit_info:
        main(base + ["--top-k", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "holds a hessian result of another computation" in err[0]
    assert "top_k 1 → 0" in err[0] and "--force" in err[0]
    assert (out / "hessian.json").read_text() == before and (out / "hessian_density.png").is_file()
    with pytest.raises(SystemExit) as exit_info:
        main(base + ["--top-k", "0", "--force"])
    assert exit_info.value.code == 0 and not (out / "hessian_density.png").exists()  # plots go with their data


def _assert_same_product(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal up to float32 rounding of differently ordered sums: relative to the product's scale."""
    assert float((a - b).norm() / b.norm()) < 1e-5
    assert float((a - b).abs().max() / b.abs().max()) < 1e-4


def _bn_net_operator(**options):
    """A small ResNet whose BNs have non-trivial statistics and affine parameters (as after training)."""
    torch.manual_seed(0)
    model = create_model("cifar_resnet8", num_classes=3, in_chans=1).eval()
    generator = torch.Generator().manual_seed(3)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(0.3 * torch.randn(module.num_features, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(module.num_features, generator=generator))
            module.weight.data.copy_(1 + 0.2 * torch.randn(module.num_features, generator=generator))
            module.bias.data.copy_(0.1 * torch.randn(module.num_features, generator=generator))
    x = torch.randn(12, 1, 6, 6, generator=generator)
    y = torch.randint(0, 3, (12,), generator=generator)
    return HessianOperator(model, x, y, batch_size=5, **options)


def test_folded_bn_and_kept_graph_give_the_products_of_the_plain_computation():
    plain = _bn_net_operator(fold_bn=False, reuse_graph=False)
    fast = _bn_net_operator()
    assert plain.bn_folded == 0 and fast.bn_folded > 0  # every conv→BN pair of the network
    assert fast.names == plain.names and fast.dim == plain.dim
    assert fast.loss() == pytest.approx(plain.loss(), rel=1e-5)
    generator = torch.Generator().manual_seed(4)
    for _ in range(3):  # the kept graph is reused: later products are still exact
        v = torch.randn(plain.dim, generator=generator)
        _assert_same_product(fast.hvp(v), plain.hvp(v))
    assert fast.reuse_graph is None and fast.graph_bytes > 0 and fast._graphs is not None


def test_the_kept_graph_is_dropped_when_it_does_not_fit_and_rebuilt_after_set_point():
    tight = _bn_net_operator(memory_budget=1)  # one byte: the graph cannot be kept
    plain = _bn_net_operator(fold_bn=False, reuse_graph=False)
    v = torch.randn(plain.dim, generator=torch.Generator().manual_seed(5))
    _assert_same_product(tight.hvp(v), plain.hvp(v))
    assert tight.reuse_graph is False and tight._graphs is None

    kept = _bn_net_operator()
    kept.hvp(v)
    moved = {n: p + 0.05 for n, p in kept.point.items()}
    kept.set_point(moved)
    plain.set_point(moved)
    _assert_same_product(kept.hvp(v), plain.hvp(v))


def test_lanczos_top_k_agrees_with_power_iteration_on_a_network_in_fewer_products():
    operator = _bn_net_operator()
    power, _, power_used = top_eigenvalues(operator.hvp, operator.dim, 3, tol=1e-6, max_iterations=500, method="power")
    fast, vectors, used = top_eigenvalues(operator.hvp, operator.dim, 3, tol=1e-6)
    np.testing.assert_allclose(fast, power, rtol=1e-2)
    assert used[0] < sum(power_used)
    for value, vector in zip(fast, vectors):  # Ritz pairs are eigenpairs: ‖H u − λ u‖ small relative to |λ|
        assert float((operator.hvp(vector) - value * vector).norm()) < 0.05 * abs(value)
    with pytest.raises(Exception, match="lanczos, power"):
        top_eigenvalues(operator.hvp, operator.dim, 1, method="arnoldi")
