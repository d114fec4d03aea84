"""Fast CPU inference: BN folding, every path of bench_inference, `reslab bench infer` and `predict --fast`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from reslab.applications.inference import (
    PATHS,
    bench_inference,
    build_path,
    fast_model,
    fold_batch_norms,
)
from reslab.cli.main import main
from reslab.errors import ConfigError
from reslab.models import create_model
from reslab.models.network import BATCH_NORMS


def _bn_count(model):
    return sum(isinstance(m, BATCH_NORMS) for m in model.modules())


def _trained_like(model):
    """Non-trivial BN statistics, so folding has something to fold."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, BATCH_NORMS):
            module.running_mean.normal_(0, 0.2, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.normal_(0, 0.2, generator=generator)
    return model.eval()


# A U-Net checks its input size with int(x.shape[-1]), which fx cannot trace: its parts are folded.
@pytest.mark.parametrize("name, folded_all", [("resnet20", True), ("resnet18", True), ("preact_resnet18", False),
                                              ("unet_cifar_resnet8", True)])
def test_bn_folding_is_exact_and_removes_the_bn_after_each_conv(name, folded_all):
    model = _trained_like(create_model(name, num_classes=7))
    x = torch.randn(3, 3, 32, 32)
    folded = fold_batch_norms(model)
    with torch.no_grad():
        assert (folded(x) - model(x)).abs().max() < 1e-4
    assert _bn_count(model) > 0 and model.training is False
    # ResNets: every BN follows a conv; pre-activation nets keep the BNs that follow an addition
    assert (_bn_count(folded) == 0) == folded_all and _bn_count(folded) < _bn_count(model)


def test_bench_inference_measures_every_fp32_path_and_ort_int8():
    model = _trained_like(create_model("resnet20", num_classes=10))
    images = torch.randn(40, 3, 16, 16)
    bench = bench_inference(model, images, torch.randn(32, 3, 16, 16), batch=8, min_time=0.01,
                            paths=["bn-fold", "bn-fold+cl", "ort-fp32", "int8-ort"], model_name="resnet20",
                            measure_peak=False)
    names = [r.name for r in bench.results]
    assert names == ["eager", "bn-fold", "bn-fold+cl", "ort-fp32", "int8-ort"]
    for result in bench.results:
        assert result.error is None, result.error
        assert result.latency_ms > 0 and result.throughput > 0 and 0 <= result.agreement <= 1
        if result.precision == "fp32":
            assert result.max_abs_diff <= 1e-4 and result.passed
    int8 = bench.result("int8-ort")
    assert int8.precision == "int8" and int8.max_abs_diff > 0  # really quantised
    assert int8.passed == (int8.agreement >= 0.99)
    table = bench.table()
    assert "x ORT" in table and "batch 8 img/s" in table and "features:" in table
    # resnet20 at 16x16: a quarter of its 41 MMACs at 32x32, two FLOPs per multiply-add
    assert bench.gflops_per_image == pytest.approx(2 * 0.0408 / 4, rel=0.05)
    data = bench.to_dict()
    assert data["fastest"] in names and data["results"][0]["name"] == "eager"


def test_fp32_check_is_relative_to_large_logits(monkeypatch):
    # Logits in the thousands: float32 re-ordering differs by more than 1e-4 absolute, which is
    # rounding; the check scales with the largest logit, and a wrong path still fails.
    model = _trained_like(create_model("cifar_resnet8", num_classes=10))
    with torch.no_grad():
        model.fc.weight.mul_(2000.0)
    images = torch.randn(16, 3, 16, 16)
    with torch.no_grad():
        largest = float(model.eval()(images).abs().max())
    bench = bench_inference(model, images, images, batch=8, min_time=0.01, paths=["bn-fold"], measure_peak=False)
    folded = bench.result("bn-fold")
    assert largest > 100 and bench.output_scale == pytest.approx(largest)
    assert folded.passed and folded.max_abs_diff <= 1e-4 * largest
    assert "largest |logit|" in bench.table()
    # a path off by 1 % of the largest logit is wrong, scaled tolerance or not
    import reslab.applications.inference as inference

    real_build = inference.build_path

    def off_by_one_percent(name, *args, **kwargs):
        run = real_build(name, *args, **kwargs)
        return (lambda x: run(x) + 0.01 * largest) if name == "bn-fold" else run
    monkeypatch.setattr(inference, "build_path", off_by_one_percent)
    wrong = bench_inference(model, images, images, batch=8, min_time=0.01, paths=["bn-fold"], measure_peak=False)
    assert not wrong.result("bn-fold").passed


def test_compile_and_pt2e_int8_paths_build_and_agree(tmp_path):
    pytest.importorskip("torchao")
    model = _trained_like(create_model("cifar_resnet8", num_classes=10))
    x = torch.randn(4, 3, 16, 16)
    reference = model(x)
    compiled = build_path("compile", model, x, [], tmp_path)
    assert (compiled(x) - reference).abs().max() < 1e-4
    int8 = build_path("int8-pt2e", model, x, [torch.randn(8, 3, 16, 16) for _ in range(4)], tmp_path)
    out = int8(x)
    assert out.shape == reference.shape and 0 < (out - reference).abs().max() < 0.5 * reference.abs().max()
    assert int8(x[:1]).shape == (1, 10)  # another batch size: compiled again
    assert getattr(int8, "note", None) is None  # inductor compiled it; no fallback to the lowering


def test_pt2e_int8_falls_back_to_torchaos_lowering_when_inductor_fails(tmp_path, monkeypatch):
    pytest.importorskip("torchao")
    model = _trained_like(create_model("cifar_resnet8", num_classes=10))
    x = torch.randn(4, 3, 16, 16)
    calibration = [torch.randn(8, 3, 16, 16) for _ in range(2)]
    compiled = build_path("int8-pt2e", model, x, calibration, tmp_path)

    def broken_compile(module, *args, **kwargs):
        def fail(*_):
            raise RuntimeError("inductor cannot lower this")
        return fail
    monkeypatch.setattr(torch, "compile", broken_compile)
    lowered = build_path("int8-pt2e", model, x, calibration, tmp_path)
    assert "RuntimeError: inductor cannot lower this" in lowered.note and "lower_pt2e_quantized_to_x86" in lowered.note
    # the same quantised graph either way: outputs agree to int8 rounding
    assert (lowered(x) - compiled(x)).abs().max() < 0.05 * compiled(x).abs().max()


def test_compile_path_freezes_the_weights():
    # Freezing makes the weights constants (BN folded, oneDNN weights prepacked, ReLU fused): a
    # change to the module's parameters after compiling no longer reaches the output. Without
    # freezing they are graph inputs and it would (torch.compile's options= did not freeze).
    from reslab.applications.inference import _compiled_runner

    model = _trained_like(create_model("cifar_resnet8", num_classes=10)).eval()
    x = torch.randn(2, 3, 16, 16)
    run = _compiled_runner(model)
    before = run(x)
    with torch.no_grad():
        model.conv1.weight.mul_(3.0)
    assert torch.equal(run(x), before)
    assert not torch.allclose(model(x), before, atol=1e-3)


def test_unknown_paths_and_bad_images_are_refused():
    model = create_model("cifar_resnet8")
    with pytest.raises(ConfigError, match="unknown inference path"):
        bench_inference(model, torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8), paths=["tensorrt"])
    with pytest.raises(ConfigError, match=r"\(N, C, H, W\)"):
        bench_inference(model, torch.randn(3, 8, 8), torch.randn(2, 3, 8, 8))
    assert PATHS[0] == "eager"


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory):
    from reslab.train import resolve_config, train

    out = tmp_path_factory.mktemp("digits") / "run"
    config = resolve_config("digits-quick", model="cifar_resnet8", data="digits",
                            overrides={"epochs": 2, "quiet": True, "device": "cpu", "out": str(out)})
    return train(config).run_dir


@pytest.fixture
def digits_run(trained_once, tmp_path):
    """A trained run of its own for each test (a copy: tests write records and files into it)."""
    return Path(shutil.copytree(trained_once, tmp_path / "run"))


def test_bench_infer_cli_writes_the_run_choice_and_predict_fast_uses_it(digits_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "infer", str(digits_run), "--paths", "bn-fold", "ort-fp32", "int8-ort", "--min-time", "0.01",
              "--check-images", "0", "--calibration-images", "64", "-o", str(tmp_path / "b.json")])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "digits test images 1-" in out and "int8-ort" in out and "fastest passing path" in out
    record = json.loads((digits_run / "inference.json").read_text())
    assert record["check_images"] > 300 and record == json.loads((tmp_path / "b.json").read_text())
    # predict --fast: the recorded fastest path (forced to int8-ort here, as if it had won)
    record["fastest"] = "int8-ort"
    record["results"] = [dict(r, passed=True) if r["name"] == "int8-ort" else r for r in record["results"]]
    (digits_run / "inference.json").write_text(json.dumps(record))
    from PIL import Image

    from reslab.data import load_dataset

    image = load_dataset("digits").test_images[0, 0].numpy()
    Image.fromarray(image).save(tmp_path / "d.png")
    with pytest.raises(SystemExit):
        main(["predict", str(digits_run), str(tmp_path / "d.png"), "--json"])
    plain = json.loads(capsys.readouterr().out)
    with pytest.raises(SystemExit):
        main(["predict", str(digits_run), str(tmp_path / "d.png"), "--json", "--fast"])
    captured = capsys.readouterr()
    fast = json.loads(captured.out)
    assert "fast path: int8-ort" in captured.err
    kept = next((digits_run / "inference").glob("*-1x8x8")) / "model.int8.onnx"
    assert f"loaded {kept}" in captured.err  # the file bench infer measured, not a new calibration
    assert fast["top"][0]["class"] == plain["top"][0]["class"]
    assert fast["top"][0]["probability"] == pytest.approx(plain["top"][0]["probability"], abs=0.1)


def test_fast_model_without_a_record_is_exact(digits_run):
    from reslab.train import load_run

    run = load_run(digits_run)
    example = torch.randn(5, 1, 8, 8)
    fast = fast_model(run.model, digits_run, lambda: example, example)
    assert fast.path_name == "bn-fold+cl"
    assert (fast(example) - run.model(example)).abs().max() < 1e-4


def test_bench_infer_loads_a_torchvision_state_dict_file(tmp_path, capsys):
    torchvision = pytest.importorskip("torchvision")
    from reslab.errors import CheckpointError
    from reslab.train.loading import load_file

    torch.manual_seed(0)
    theirs = torchvision.models.resnet18(num_classes=7).eval()
    file = tmp_path / "resnet18-custom.pth"
    torch.save(theirs.state_dict(), file)
    ours = load_file("resnet18", file).model  # what bench infer MODEL --checkpoint FILE builds
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))  # the head's 7 classes come from the file
    with pytest.raises(CheckpointError, match=r"does not match resnet50: it has no tensor 'layer1\.0\.downsample\.0\.weight'.*as MODEL"):
        load_file("resnet50", file)
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "infer", "resnet18", "--checkpoint", str(tmp_path / "missing.pth")])
    assert exit_info.value.code != 0
    assert "must be a weights file on local disk" in capsys.readouterr().err


def _cli(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def _digit_png(path):
    from PIL import Image

    from reslab.data import load_dataset

    Image.fromarray(load_dataset("digits").test_images[0, 0].numpy()).save(path)
    return str(path)


def _no_bench(*args, **kwargs):
    raise AssertionError("the benchmark ran before its arguments were checked")


@pytest.mark.parametrize("flags, message", [
    (["-o", "out_dir/"], "-o out_dir/: names a directory; give a file name, such as out_dir/inference.json"),
    (["--pretrained", "cifar10"], "--pretrained cifar10 is for a model name; run is a run"),
    (["--input-size", "0"], "--input-size must be at least 1, got 0"),
])
def test_bench_infer_refuses_outputs_and_ignored_flags_before_measuring(tmp_path, capsys, monkeypatch, flags,
                                                                         message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()  # refused before the run is read
    (tmp_path / "out_dir").mkdir()
    monkeypatch.setattr("reslab.cli.bench.bench_inference", _no_bench)
    code, out, err = _cli(["bench", "infer", "run", *flags], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out_dir", "run"] and not any((tmp_path / "run").iterdir())


def test_bench_infer_json_prints_the_measurements_and_o_writes_them(tmp_path, capsys):
    written = tmp_path / "bench.json"
    code, out, err = _cli(["bench", "infer", "cifar_resnet8", "--input-size", "8", "--paths", "bn-fold", "--min-time",
                           "0.01", "--check-images", "4", "--calibration-images", "4", "--json", "-o", str(written)],
                          capsys)
    assert code == 0, err
    printed = json.loads(out)  # stdout holds the JSON alone; the table went to stderr
    assert [r["name"] for r in printed["results"]] == ["eager", "bn-fold"] and "fastest passing path" in err
    assert json.loads(written.read_text()) == printed and f"wrote {written}" in err
    code, _, err = _cli(["bench", "infer", "cifar_resnet8", "-o", str(written)], capsys)
    assert code == 2 and "the file exists; pass --force to replace it" in err


@pytest.mark.parametrize("damage, message", [
    ('{"results": [', "is corrupt (not valid JSON"),
    ('{"fastest": "ort-fp32", "results": []}', "is not a record of reslab bench infer"),
    ("[1, 2]", "is not a record of reslab bench infer"),
])
def test_damaged_inference_record_is_refused_in_one_line(digits_run, tmp_path, capsys, damage, message):
    (digits_run / "inference.json").write_text(damage)
    code, out, err = _cli(["predict", str(digits_run), _digit_png(tmp_path / "d.png"), "--fast"], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith("reslab predict: error: ") and message in err
    assert f"measure again with: reslab bench infer {digits_run} (which rewrites it), or delete it" in err


def test_stale_inference_record_is_not_trusted_after_more_training_or_for_another_checkpoint(digits_run, tmp_path,
                                                                                              capsys):
    image = _digit_png(tmp_path / "d.png")
    code, _, err = _cli(["bench", "infer", str(digits_run), "--paths", "ort-fp32", "--min-time", "0.01",
                         "--check-images", "64"], capsys)
    assert code == 0, err
    record = json.loads((digits_run / "inference.json").read_text())
    assert record["checkpoint"] == "last" and len(record["weights_fingerprint"]) == 20
    code, _, err = _cli(["predict", str(digits_run), image, "--fast"], capsys)
    assert code == 0 and "fast path: ort-fp32 (the fastest path that passed" in err
    code, _, err = _cli(["predict", str(digits_run), image, "--fast", "--checkpoint", "init"], capsys)
    assert code == 0 and "measured other weights (checkpoint 'last', fingerprint" in err
    assert f"measure these with: reslab bench infer {digits_run} --checkpoint init" in err
    assert "fast path: bn-fold+cl" in err and "100.00%" not in err
    code, _, err = _cli(["train", "--resume", str(digits_run), "--epochs", "3", "--quiet"], capsys)
    assert code == 0, err
    code, _, err = _cli(["predict", str(digits_run), image, "--fast"], capsys)
    assert code == 0 and "measured other weights" in err and "trained further since" in err
    assert f"measure these with: reslab bench infer {digits_run}\n" in err and "fast path: bn-fold+cl" in err


def test_predict_fast_keeps_the_built_onnx_file_and_loads_it_on_the_second_call(digits_run, tmp_path, capsys):
    image = _digit_png(tmp_path / "d.png")
    code, _, err = _cli(["bench", "infer", str(digits_run), "--paths", "ort-fp32", "--min-time", "0.01",
                         "--check-images", "64"], capsys)
    assert code == 0, err
    (kept,) = (digits_run / "inference").iterdir()
    assert kept.name.startswith(json.loads((digits_run / "inference.json").read_text())["weights_fingerprint"])
    shutil.rmtree(digits_run / "inference")
    code, plain, _ = _cli(["predict", str(digits_run), image, "--json"], capsys)
    code, first, err = _cli(["predict", str(digits_run), image, "--json", "--fast"], capsys)
    assert code == 0 and f"built and kept in {kept / 'model.onnx'}" in err
    modified = (kept / "model.onnx").stat().st_mtime_ns
    code, second, err = _cli(["predict", str(digits_run), image, "--json", "--fast"], capsys)
    assert code == 0 and f"loaded {kept / 'model.onnx'}" in err and (kept / "model.onnx").stat().st_mtime_ns == modified
    assert [p["class"] for p in json.loads(first)["top"]] == [p["class"] for p in json.loads(plain)["top"]]
    assert json.loads(second) == json.loads(first)
    assert sorted(p.name for p in kept.iterdir()) == ["model.onnx"]  # nothing half-written left beside it


def test_weights_fingerprint_follows_the_weights_not_the_object():
    import copy

    from reslab.applications.inference import weights_fingerprint

    model = create_model("cifar_resnet8")
    twin = copy.deepcopy(model).to(memory_format=torch.channels_last)
    assert weights_fingerprint(model) == weights_fingerprint(twin)
    next(m for m in twin.modules() if isinstance(m, BATCH_NORMS)).running_mean[0] += 1e-3  # one statistic moved
    assert weights_fingerprint(model) != weights_fingerprint(twin)


def test_predict_fast_skips_paths_that_compile_in_every_process(digits_run, tmp_path, capsys):
    code, _, err = _cli(["bench", "infer", str(digits_run), "--paths", "bn-fold", "--min-time", "0.01",
                         "--check-images", "16"], capsys)
    assert code == 0, err
    record = json.loads((digits_run / "inference.json").read_text())
    record["results"].append({"name": "compile", "precision": "fp32", "passed": True, "throughput": 1e9,
                              "agreement": 1.0})
    record["fastest"] = "compile"  # as if it had won the table
    (digits_run / "inference.json").write_text(json.dumps(record))
    code, _, err = _cli(["predict", str(digits_run), _digit_png(tmp_path / "d.png"), "--fast"], capsys)
    fastest_usable = max((r for r in record["results"] if r["name"] != "compile"), key=lambda r: r["throughput"])
    assert code == 0 and f"fast path: {fastest_usable['name']} (the fastest path that passed" in err
    assert "compile, faster there, compiles for seconds in every process" in err


def test_bench_infer_refuses_an_input_size_the_model_cannot_take_before_measuring(capsys, monkeypatch):
    monkeypatch.setattr("reslab.cli.bench.bench_inference", _no_bench)
    code, out, err = _cli(["bench", "infer", "unet_resnet20", "--input-size", "30", "--check-images", "2"], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and "input 30×30 does not fit" in err, err


def test_path_errors_in_the_table_carry_no_ansi_escape_codes():
    from reslab.applications.inference import InferenceBench, PathResult, plain_text

    coloured = "\x1b[0;93mneeds torchao\x1b[m"
    assert plain_text(coloured) == "needs torchao"
    bench = InferenceBench(model="m", input_shape=[3, 8, 8], batch=4, threads=1, check_images=1, check_source="",
                           calibration_images=1, fp32_tolerance=1e-4, int8_agreement=0.99, cpu="cpu",
                           cpu_features={}, results=[PathResult("int8-pt2e", "int8", error=coloured)])
    assert "\x1b" not in bench.table() and "skipped: needs torchao" in bench.table()
