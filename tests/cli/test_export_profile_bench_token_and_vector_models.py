"""Language models (int64 tokens (N, T)) and vector models (images they flatten) through
``reslab export``, ``reslab profile`` and ``reslab bench infer``: what the image models get, or a
one-line refusal where a format or path cannot take them."""

from __future__ import annotations

import re

import pytest
import torch

from reslab.cli.main import main
from reslab.models.export import run_exported

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TINY_LM = ["--model-option", "width=16", "--model-option", "heads=2"]


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    """A transformer2 language-model run, trained one epoch on 2,000 characters in windows of 12."""
    out = tmp_path_factory.mktemp("lm") / "t2"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "transformer2", "--data", "text", "--set", "data_options.max_chars=2000",
              "--set", "data_options.context=12", "--set", "model_options.width=16", "--set", "model_options.heads=2",
              "--epochs", "1", "--quiet", "--out", str(out)])
    assert exit_info.value.code in (0, None)
    return out


@pytest.mark.parametrize("name, extra", [("transformer2", TINY_LM[2:]), ("lstm2", [])])
def test_a_language_model_exports_to_onnx_with_free_batch_and_length(tmp_path, capsys, name, extra):
    path = tmp_path / f"{name}.onnx"
    code, out, err = _run(["export", name, "--model-option", "width=16", *extra, "--input-size", "10",
                           "-o", str(path)], capsys)
    assert code == 0, err
    assert "(N, T) int64 token ids below 96, traced at T = 10" in out
    assert "on a batch of 3 sequences of 9 tokens" in out and out.rstrip().endswith("OK")
    assert "\x1b[" not in err  # no ONNX Runtime warning about the recorded output length
    import onnx

    graph = onnx.load(str(path)).graph
    length = graph.input[0].type.tensor_type.shape.dim[1].dim_param
    assert length and graph.output[0].type.tensor_type.shape.dim[1].dim_param == length
    tokens = torch.randint(0, 96, (4, 5))
    assert run_exported(path, "onnx", tokens).shape == (4, 5, 96)


def test_a_language_model_exports_as_torchscript_and_a_transformer_as_an_exported_program(tmp_path, capsys):
    for name, fmt, suffix in (("lstm2", "torchscript", ".torchscript.pt"),
                              ("transformer2", "exported-program", ".pt2")):
        path = tmp_path / f"{name}{suffix}"
        code, out, err = _run(["export", name, "--format", fmt, *TINY_LM[:2], *(TINY_LM[2:] if "trans" in name
                                                                                  else []), "--input-size", "8",
                               "-o", str(path)], capsys)
        assert code == 0, err
        assert out.rstrip().endswith("OK")
        assert run_exported(path, fmt, torch.randint(0, 96, (2, 6))).shape == (2, 6, 96)


def test_an_lstm_as_an_exported_program_is_refused_in_one_line_naming_the_formats_that_work(tmp_path, capsys):
    code, out, err = _run(["export", "lstm2", "--format", "exported-program", "-o", str(tmp_path / "l.pt2")], capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "LSTM language model" in err and "--format onnx or --format torchscript" in err
    assert not any(tmp_path.iterdir())


def test_in_chans_for_a_language_model_is_refused_in_one_line(tmp_path, capsys):
    code, _, err = _run(["export", "transformer2", "--in-chans", "1", "-o", str(tmp_path / "t.onnx")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no channels" in err
    code, _, err = _run(["profile", "transformer2", "--in-chans", "1"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no channels" in err


def test_export_of_a_language_model_run_traces_at_its_window(lm_run, capsys):
    code, out, err = _run(["export", str(lm_run)], capsys)
    assert code == 0, err
    assert (lm_run / "export" / "transformer2.onnx").is_file()
    assert "traced at T = 12" in out and out.rstrip().endswith("OK")


def test_a_vector_model_export_honours_in_chans_and_input_size(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    code, out, err = _run(["export", "resmlp5", "--in-chans", "1", "--input-size", "6", "-o", str(path)], capsys)
    assert code == 0, err
    assert "input (N, 1, 6, 6) normalised images (flattened to 36 features)" in out and out.rstrip().endswith("OK")
    assert run_exported(path, "onnx", torch.randn(5, 1, 6, 6)).shape == (5, 10)


def test_profile_of_a_language_model_counts_one_sequence(capsys):
    code, out, err = _run(["profile", "transformer2", "--set", "width=16", "--set", "heads=2", "--input-size", "32"],
                          capsys)
    assert code == 0, err
    assert "input:              32 int64 tokens (ids below 96), 96 logits per token" in out
    assert re.search(r"MACs / sequence:\s+[1-9]", out)


def test_profile_counts_an_lstms_gates():
    from reslab.models.profile import profile_model

    width, length = 16, 10
    profile = profile_model("lstm1", input_size=length, width=width)
    gates, head = 4 * width * (width + width), width * 96  # W_ih x + W_hh h per token, then the head
    assert profile.input_kind == "tokens" and profile.input_size == (length,)
    assert profile.macs == length * (gates + head)


def test_profile_of_a_language_model_run_and_a_vector_model(lm_run, capsys):
    code, out, err = _run(["profile", str(lm_run)], capsys)
    assert code == 0, err
    assert "12 int64 tokens" in out
    code, out, err = _run(["profile", "resmlp5", "--in-chans", "1"], capsys)  # BatchNorm1d at batch 1: extrapolated
    assert code == 0, err
    assert "1×8×8 (flattened to 64 features)" in out


def test_bench_infer_measures_a_language_model_on_eager_and_onnx_runtime(lm_run, capsys):
    code, out, err = _run(["bench", "infer", str(lm_run), "--paths", "eager", "ort-fp32", "--min-time", "0",
                           "--check-images", "8"], capsys)
    assert code == 0, err
    assert "\x1b[" not in out and "\x1b[" not in err
    rows = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in
            ("eager", "ort-fp32")}
    assert set(rows) == {"eager", "ort-fp32"} and all(line.rstrip().endswith("pass") for line in rows.values())
    assert "seq/s" in out and "windows of 12 tokens" in out and "int8" not in out


def test_bench_infer_refuses_image_paths_for_a_language_model_in_one_line(capsys):
    code, out, err = _run(["bench", "infer", "transformer2", "--paths", "eager", "bn-fold"], capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "its paths are eager, compile, ort-fp32" in err
