"""The profiler: parameters, MACs, depth and activation memory, against published figures and hand counts."""

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import reslab
import reslab.models.profile as profile_module
from reslab.errors import ConfigError, ModelConfigError
from reslab.models import ModelProfile, profile_model, profile_table
from reslab.models.profile import PUBLISHED, format_table

# Published figures, written out here independently of reslab.models.profile.PUBLISHED.
PARAMS_M = {  # He et al. 2015 (CIFAR), torchvision (ImageNet), He et al. 2016, Zagoruyko 2016
    "resnet20": 0.27, "resnet32": 0.46, "resnet44": 0.66, "resnet56": 0.85, "resnet110": 1.7, "resnet1202": 19.4,
    "resnet18": 11.69, "resnet34": 21.80, "resnet50": 25.56, "resnet101": 44.55, "resnet152": 60.19,
    "resnext50_32x4d": 25.03, "wide_resnet50_2": 68.88, "preact_resnet164": 1.7, "wrn_16_8": 11.0, "wrn_28_10": 36.5,
}
# G multiply-adds at 224×224: the figures and torchvision's metadata (both must hold to 1 %).
GMACS = {"resnet18": (1.82, 1.814), "resnet34": (3.67, 3.664), "resnet50": (4.09, 4.089),
         "resnet101": (7.80, 7.801), "resnet152": (11.51, 11.514), "resnext50_32x4d": (4.23, 4.23),
         "wide_resnet50_2": (11.40, 11.398)}


@pytest.fixture(scope="module")
def published_rows():
    """The family table over every model with a published figure (what `make demo` prints)."""
    return {row.name: row for row in profile_table(models=list(PUBLISHED))}


def test_every_published_figure_agrees(published_rows):
    checks = [(name, row.params_ok, row.macs_ok) for name, row in published_rows.items()]
    assert all(ok is not False for _, p, m in checks for ok in (p, m)), checks
    assert sum(ok is True for _, p, m in checks for ok in (p, m)) == len(PUBLISHED) + 7  # 7 rows with MACs


@pytest.mark.parametrize("name", sorted(PARAMS_M))
def test_parameter_counts_match_the_papers(published_rows, name):
    published = PARAMS_M[name]
    decimals = len(repr(published).split(".")[1])
    # To 0.01 M, or to the precision the figure was published with (1.7 M means 1.65–1.75).
    tolerance = max(0.01, 0.5 * 10 ** -decimals)
    assert abs(published_rows[name].parameters / 1e6 - published) <= tolerance + 1e-9


@pytest.mark.parametrize("name", sorted(GMACS))
def test_imagenet_macs_within_one_percent(published_rows, name):
    macs = published_rows[name].macs / 1e9
    for published in GMACS[name]:
        assert abs(macs - published) / published <= 0.01


def test_resnet20_macs_by_hand():
    # 3×3 convs at 32×32: stem 3→16; stage 1: 6 convs 16→16 at 32×32; stage 2: 16→32 then 5×32→32
    # at 16×16; stage 3: 32→64 then 5×64→64 at 8×8; fc 64→10. Option A shortcuts cost nothing.
    expected = (3 * 16 * 9 * 32 * 32 + 6 * 16 * 16 * 9 * 32 * 32
                + (16 * 32 + 5 * 32 * 32) * 9 * 16 * 16 + (32 * 64 + 5 * 64 * 64) * 9 * 8 * 8 + 64 * 10)
    result = profile_model("resnet20")
    assert result.macs == expected == 40_551_040
    assert result.flops == 2 * expected
    assert result.weight_layers == 20 and result.num_blocks == 9 and result.input_size == (32, 32)


@pytest.mark.parametrize("name, size", [("highway20", 16), ("se_resnet18", 64), ("cbam_resnet18", 64),
                                        ("resnext50_32x4d", 64), ("cifar_preact_resnet29", 16), ("resnet20", 16)])
def test_counter_agrees_with_flop_counter_mode(name, size):
    options = {"block": "bottleneck"} if name == "cifar_preact_resnet29" else {}
    model = reslab.create_model(name, **options).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 3, size, size))
    assert profile_model(model, input_size=size).macs * 2 == counter.get_total_flops()


def _saved_bytes_by_hand(model, x):
    """Independent count: distinct data pointers saved for backward, parameters and buffers excluded."""
    excluded = {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    seen = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in excluded:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    del out
    return sum(seen.values())


@pytest.mark.parametrize("name", ["resnet20", "highway20", "cifar_preact_resnet20"])
def test_activation_memory_on_meta_and_cpu_and_by_hand(name, monkeypatch):
    model = reslab.create_model(name)
    by_hand = _saved_bytes_by_hand(reslab.create_model(name), torch.randn(2, 3, 16, 16))
    on_cpu = profile_model(model, input_size=16, batch_size=2).activation_bytes
    monkeypatch.setattr(profile_module, "_CPU_COUNT_MAX_PIXELS", 0)  # force the meta device
    on_meta = profile_model(model, input_size=16, batch_size=2)
    assert on_cpu == on_meta.activation_bytes == by_hand > 0
    assert on_meta.macs == profile_model(reslab.create_model(name), input_size=16).macs


def test_activation_memory_grows_with_batch_and_depth_and_shrinks_with_checkpointing():
    small = profile_model("resnet56", batch_size=4).activation_bytes
    large = profile_model("resnet56", batch_size=64).activation_bytes
    assert 15.5 < large / small <= 16.0  # linear in the batch, up to BN's per-channel statistics
    assert profile_model("resnet110", batch_size=4).activation_bytes > 1.9 * small
    checkpointed = profile_model("resnet56", batch_size=64, activation_checkpointing=True)
    assert checkpointed.activation_bytes < 0.35 * large
    assert checkpointed.options["activation_checkpointing"] is True


@pytest.mark.parametrize("name, size, batch", [("resnet20", 32, 16), ("highway20", 24, 9),
                                               ("cifar_preact_resnet20", 32, 5), ("se_resnet18", 32, 7)])
def test_extrapolated_batch_counts_equal_the_meta_count(name, size, batch, monkeypatch):
    model = reslab.create_model(name, drop_path=0.1) if "plain" not in name else reslab.create_model(name)
    extrapolated = profile_model(model, input_size=size, batch_size=batch)  # CPU at batches 2, 3, 4
    monkeypatch.setattr(profile_module, "_CPU_COUNT_MAX_PIXELS", 0)  # force the meta device
    on_meta = profile_model(model, input_size=size, batch_size=batch)
    assert extrapolated.activation_bytes == on_meta.activation_bytes
    assert extrapolated.macs == on_meta.macs


def test_large_batches_are_counted_on_meta_without_memory():
    result = profile_model("resnet110", batch_size=128)  # meta device: shapes only
    assert result.weight_layers == 110
    # 8.04 MiB per image at batch 1 (the table); about 1 GiB for the batch, never allocated.
    assert 127 * 8.0 * 2**20 < result.activation_bytes < 129 * 8.1 * 2**20


def test_profiling_leaves_the_model_untouched():
    model = reslab.create_model("resnet20", drop_path=0.1).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    profile_model(model, input_size=16, batch_size=2)
    profile_model(model, input_size=64, batch_size=8)  # the meta path
    assert not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_profile_of_a_module_and_its_report():
    model = reslab.create_model("resnet18", num_classes=7, in_chans=1)
    result = profile_model(model, input_size=(64, 48), batch_size=2)
    assert isinstance(result, ModelProfile)
    assert (result.name, result.family, result.in_chans, result.num_classes) == ("resnet18", "imagenet", 1, 7)
    assert result.input_size == (64, 48) and result.parameters == sum(p.numel() for p in model.parameters())
    data = result.to_dict()
    assert data["flops"] == 2 * data["macs"] and json.loads(json.dumps(data)) == data
    text = result.format()
    for label in ("parameters:", "MACs / image:", "FLOPs / image:", "weight layers:", "activation memory:"):
        assert label in text


def test_profile_errors():
    with pytest.raises(ConfigError, match="one value per channel"):
        profile_model("resnet18", input_size=32, batch_size=1)  # 1×1 maps in training
    with pytest.raises(ConfigError, match="input_size"):
        profile_model("resnet20", input_size=0)
    with pytest.raises(ConfigError, match="batch_size"):
        profile_model("resnet20", batch_size=0)
    with pytest.raises(ModelConfigError, match="in_chans=3 does not match"):
        profile_model(reslab.create_model("resnet20", in_chans=1), in_chans=3)
    with pytest.raises(ModelConfigError, match="only when profiling by name"):
        profile_model(reslab.create_model("resnet20"), shortcut="B")
    with pytest.raises(ModelConfigError, match="did you mean"):
        profile_model("resnet_20")
    with pytest.raises(ConfigError, match="--table"):
        profile_table("mnist")


def test_format_table_marks_disagreement():
    rows = profile_table(models=["resnet20", "plain20", "preact_resnet1001"])
    text = format_table(rows)
    assert "resnet20" in text and "plain20" in text and "10.2*" in text and "3 of 3 published figures agree" in text
    wrong = rows[0]
    wrong.published = profile_module.Published("0.30", None, "made up")
    assert wrong.params_ok is False and "✗" in format_table([wrong])


# -- CLI ---------------------------------------------------------------------------------------
def _run_cli(argv, capsys):
    from reslab.cli.main import main

    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    out, err = capsys.readouterr()
    return excinfo.value.code, out, err


def test_cli_profile_one_model(capsys):
    code, out, _ = _run_cli(["profile", "resnet20", "--json", "--batch-size", "2", "--in-chans", "1"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["parameters"] == 269_722 - 2 * 16 * 9 and data["in_chans"] == 1 and data["batch_size"] == 2
    code, out, _ = _run_cli(["profile", "resnet20", "--shortcut", "none"], capsys)
    assert code == 0 and "shortcut=none" in out and "40,551,040" in out


def test_cli_profile_table(capsys, monkeypatch):
    monkeypatch.setattr(profile_module, "TABLE_MODELS", {"cifar": ("resnet20", "plain20"), "imagenet": ("resnet18",)})
    code, out, _ = _run_cli(["profile", "--table", "all", "--quiet"], capsys)
    assert code == 0
    assert "CIFAR-10 networks" in out and "ImageNet networks" in out and "4 of 4 published figures agree" in out
    code, out, _ = _run_cli(["profile", "--table", "cifar", "--json"], capsys)
    assert [row["name"] for row in json.loads(out)] == ["resnet20", "plain20"]


@pytest.mark.parametrize("argv, words", [
    (["profile"], "name a MODEL"),
    (["profile", "resnet20", "--table", "cifar"], "not both"),
    (["profile", "resnet20", "--batch-size", "0"], "batch_size must be a positive integer"),
    (["profile", "cifar_resnet21"], "6n+2"),
])
def test_cli_errors_are_one_line(argv, words, capsys):
    code, _, err = _run_cli(argv, capsys)
    assert code == 2 and words in err and err.count("\n") == 1
