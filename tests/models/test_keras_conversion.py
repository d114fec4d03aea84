"""``reslab.models.convert.from_keras``: a Keras 3 ResNet50 or ResNet50V2 (torch backend) computes what reslab computes."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported anywhere in this process

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from reslab.models.convert import from_keras  # noqa: E402
from reslab.errors import CheckpointError, ConfigError  # noqa: E402

import reslab  # noqa: E402
from reslab.errors import ModelConfigError  # noqa: E402

keras = pytest.importorskip("keras")
pytest.importorskip("h5py")
# Keras' own numpy-2 deprecation noise, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _randomise(model, rng) -> None:
    """Non-trivial BN statistics and conv biases, so every tensor matters."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.get_weights()[0].shape
            layer.set_weights([rng.uniform(0.5, 1.5, shape).astype("float32"),
                               rng.uniform(-0.2, 0.2, shape).astype("float32"),
                               rng.uniform(-0.2, 0.2, shape).astype("float32"),
                               rng.uniform(0.5, 1.5, shape).astype("float32")])
        elif isinstance(layer, keras.layers.Conv2D) and layer.use_bias:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.uniform(-0.1, 0.1, bias.shape).astype("float32")])


def _require_torch_backend():
    if keras.backend.backend() != "torch":
        pytest.skip(f"keras runs on the {keras.backend.backend()} backend in this process")


@pytest.fixture(scope="module")
def keras_resnet50(tmp_path_factory):
    _require_torch_backend()
    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(weights=None, classifier_activation=None)
    rng = np.random.default_rng(0)
    _randomise(model, rng)
    directory = tmp_path_factory.mktemp("keras")
    model.save_weights(directory / "resnet50.weights.h5")
    model.save(directory / "resnet50.keras")
    x = rng.standard_normal((2, 224, 224, 3)).astype("float32")
    return directory, x, np.asarray(model.predict(x, verbose=0))


@pytest.mark.parametrize("filename", ["resnet50.weights.h5", "resnet50.keras"])
def test_converted_keras_resnet50_matches_keras(keras_resnet50, filename):
    directory, x, expected = keras_resnet50
    model = from_keras(directory / filename)
    assert model.model_options["stride_in_1x1"] and model.layer3[0].conv1.stride == (2, 2)
    with torch.no_grad():
        out = model(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()  # channels-last -> channels-first
    assert out.shape == (2, 1000)
    assert np.abs(out - expected).max() <= 1e-4


@pytest.fixture(scope="module")
def keras_resnet50v2(tmp_path_factory):
    """ResNet50V2 with its top (224×224) and a top-less one on an odd, non-square size."""
    _require_torch_backend()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    directory = tmp_path_factory.mktemp("keras_v2")
    model = keras.applications.ResNet50V2(weights=None, classifier_activation=None)
    _randomise(model, rng)
    model.save_weights(directory / "resnet50v2.weights.h5")
    model.save(directory / "resnet50v2.keras")
    x = rng.standard_normal((2, 224, 224, 3)).astype("float32")
    # Odd sizes: every padding and stride (zero-padded stem pool, 1×1 max-pool shortcuts) at an edge.
    backbone = keras.applications.ResNet50V2(weights=None, include_top=False, pooling="avg", input_shape=(75, 61, 3))
    _randomise(backbone, rng)
    backbone.save_weights(directory / "resnet50v2_notop.weights.h5")
    x_odd = rng.standard_normal((2, 75, 61, 3)).astype("float32")
    return {"directory": directory, "x": x, "expected": np.asarray(model.predict(x, verbose=0)),
            "params": model.count_params(),
            "x_odd": x_odd, "expected_odd": np.asarray(backbone.predict(x_odd, verbose=0))}


@pytest.mark.parametrize("filename", ["resnet50v2.weights.h5", "resnet50v2.keras"])
def test_converted_keras_resnet50v2_matches_keras(keras_resnet50v2, filename):
    case = keras_resnet50v2
    model = from_keras(case["directory"] / filename)
    assert model.model_name == "resnet50v2" and model.converted_from["architecture"] == "ResNet50V2"
    # Keras' V2 strides the last block of a stage, with a max-pool shortcut on the raw input.
    assert model.layer1[2].conv2.stride == (2, 2) and model.layer2[0].conv2.stride == (1, 1)
    assert isinstance(model.layer1[2].downsample, torch.nn.MaxPool2d) and not model.layer1[2].shortcut_preactivated
    # Keras counts BN's moving statistics as (non-trainable) parameters.
    running = sum(m.running_mean.numel() + m.running_var.numel() for m in model.modules()
                  if isinstance(m, torch.nn.BatchNorm2d))
    assert sum(p.numel() for p in model.parameters()) + running == case["params"]
    with torch.no_grad():
        out = model(torch.from_numpy(case["x"]).permute(0, 3, 1, 2)).numpy()  # channels-last -> channels-first
    assert out.shape == (2, 1000)
    assert np.abs(out - case["expected"]).max() <= 1e-4


def test_converted_keras_resnet50v2_without_top_on_odd_sizes(keras_resnet50v2):
    case = keras_resnet50v2
    model = from_keras(case["directory"] / "resnet50v2_notop.weights.h5")
    assert model.num_classes == 0
    with torch.no_grad():
        out = model(torch.from_numpy(case["x_odd"]).permute(0, 3, 1, 2)).numpy()
    assert out.shape == (2, 2048)
    assert np.abs(out - case["expected_odd"]).max() <= 1e-4


@pytest.fixture(scope="module")
def keras_backbones(tmp_path_factory):
    """Top-less Keras models on small inputs: a ResNet50 with pooling="max" (64×64, so the last
    feature map is 2×2), the same network without its pooling, and a grayscale ResNet50V2."""
    _require_torch_backend()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(2)
    directory = tmp_path_factory.mktemp("keras_pooling")
    pooled = keras.applications.ResNet50(weights=None, include_top=False, pooling="max", input_shape=(64, 64, 3))
    _randomise(pooled, rng)
    pooled.save(directory / "max.keras")
    pooled.save_weights(directory / "max.weights.h5")
    # Keras' pooling=None model: the same layers up to the last block's output (no pooling layer).
    unpooled = keras.Model(pooled.input, pooled.get_layer("conv5_block3_out").output)
    unpooled.save(directory / "none.keras")
    x = rng.standard_normal((2, 64, 64, 3)).astype("float32")
    feature_map = np.asarray(unpooled.predict(x, verbose=0))  # (2, 2, 2, 2048), channels last
    gray = keras.applications.ResNet50V2(weights=None, include_top=False, pooling="avg", input_shape=(32, 32, 1))
    _randomise(gray, rng)
    gray.save_weights(directory / "gray.weights.h5")
    x_gray = rng.standard_normal((2, 32, 32, 1)).astype("float32")
    return {"directory": directory, "x": x, "max": np.asarray(pooled.predict(x, verbose=0)),
            "feature_map": feature_map, "avg": feature_map.mean(axis=(1, 2)),
            "x_gray": x_gray, "gray": np.asarray(gray.predict(x_gray, verbose=0))}


def _run(model, x_nhwc):
    with torch.no_grad():
        return model(torch.from_numpy(x_nhwc).permute(0, 3, 1, 2)).numpy()


def test_keras_max_pooling_recorded_in_the_archive_is_honoured(keras_backbones):
    case = keras_backbones
    model = from_keras(case["directory"] / "max.keras")
    assert model.converted_from["pooling"] == "max"
    out = _run(model, case["x"])
    assert out.shape == (2, 2048)
    assert np.abs(out - case["max"]).max() <= 1e-4
    assert np.abs(case["max"] - case["avg"]).max() > 0.01  # the two poolings differ on these features


def test_keras_pooling_none_archive_gives_the_channels_first_feature_map(keras_backbones):
    case = keras_backbones
    model = from_keras(case["directory"] / "none.keras")
    assert model.converted_from["pooling"] is None
    out = _run(model, case["x"])
    assert out.shape == (2, 2048, 2, 2)  # Keras' (2, 2, 2, 2048), channels first
    assert np.abs(out - case["feature_map"].transpose(0, 3, 1, 2)).max() <= 1e-4


@pytest.mark.parametrize("pooling", ["avg", "max", None])
def test_a_bare_weights_file_pools_as_the_pooling_argument_says(keras_backbones, pooling):
    case = keras_backbones
    model = from_keras(case["directory"] / "max.weights.h5", pooling=pooling)
    expected = case["feature_map"].transpose(0, 3, 1, 2) if pooling is None else case[pooling]
    out = _run(model, case["x"])
    assert out.shape == expected.shape
    assert np.abs(out - expected).max() <= 1e-4


def test_a_bare_weights_file_average_pools_by_default(keras_backbones):
    case = keras_backbones
    model = from_keras(case["directory"] / "max.weights.h5")  # a .weights.h5 records no pooling
    assert model.converted_from["pooling"] == "avg"
    assert np.abs(_run(model, case["x"]) - case["avg"]).max() <= 1e-4


def test_the_pooling_argument_overrides_the_archive(keras_backbones):
    case = keras_backbones
    model = from_keras(case["directory"] / "max.keras", pooling="avg")
    assert np.abs(_run(model, case["x"]) - case["avg"]).max() <= 1e-4


def test_grayscale_keras_model_reads_one_input_channel(keras_backbones):
    case = keras_backbones
    model = from_keras(case["directory"] / "gray.weights.h5")
    assert model.in_chans == 1 and model.conv1.weight.shape[1] == 1
    out = _run(model, case["x_gray"])
    assert out.shape == (2, 2048)
    assert np.abs(out - case["gray"]).max() <= 1e-4


def test_pooling_keras_would_not_build_is_refused(keras_resnet50, tmp_path):
    # Checked before the file is read: the message is about pooling, not the missing file.
    with pytest.raises(ConfigError, match=r"pooling must be 'avg', 'max' or None .*got 'sum'"):
        from_keras(tmp_path / "missing.weights.h5", pooling="sum")
    directory = keras_resnet50[0]
    for pooling in ("max", None):
        with pytest.raises(ConfigError, match=rf"holds a model with its top .*pooling={pooling!r} is only for a "
                                              r"top-less model"):
            from_keras(directory / "resnet50.weights.h5", pooling=pooling)
    assert from_keras(directory / "resnet50.keras", pooling="avg").converted_from["pooling"] == "avg"


def test_mismatched_keras_layers_are_named(keras_resnet50v2, tmp_path):
    import h5py

    copy = tmp_path / "bad.weights.h5"
    copy.write_bytes((keras_resnet50v2["directory"] / "resnet50v2.weights.h5").read_bytes())
    with h5py.File(copy, "r+") as handle:
        variables = handle["layers/conv2d_3/vars"]  # conv2_block1_0_conv, the first projection
        del variables["0"]
        variables.create_dataset("0", data=np.zeros((1, 1, 64, 128), dtype="float32"))
    with pytest.raises(CheckpointError, match=r"Keras layer conv2_block1_0_conv \(conv2d_3\) kernel: shape "
                                              r"\(128, 64, 1, 1\) does not fit reslab's layer1.0.downsample.0.weight "
                                              r"\(256, 64, 1, 1\)"):
        from_keras(copy)


def test_a_keras_archive_is_matched_by_its_layer_names(keras_resnet50v2, tmp_path):
    import json
    import zipfile

    source, renamed = keras_resnet50v2["directory"] / "resnet50v2.keras", tmp_path / "renamed.keras"
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(renamed, "w") as out:
        for item in archive.namelist():
            data = archive.read(item)
            if item == "config.json":
                config = json.loads(data)
                layer = next(layer for layer in config["config"]["layers"] if layer["name"] == "conv2_block1_0_conv")
                layer["name"] = "my_shortcut"
                data = json.dumps(config).encode()
            out.writestr(item, data)
    with pytest.raises(CheckpointError, match="layer conv2d_3 is 'my_shortcut'; Keras' ResNet50V2 has "
                                              "'conv2_block1_0_conv' there"):
        from_keras(renamed)


def test_v2_layout_is_a_registered_model():
    model = reslab.create_model("resnet50v2", num_classes=10)
    assert [m.stride for m in model.spec.stages] == [2, 2, 2, 1]
    assert model.conv1.bias is not None and model.layer1[0].conv1.bias is None and model.layer1[0].conv3.bias is not None
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    # Its feature maps: layer1 already ends at 1/8 (the stride sits in its last block).
    features = reslab.create_model("resnet50v2", features_only=True)
    assert model.feature_info.reduction() == [2, 8, 16, 32, 32]
    assert [f.shape[-1] for f in features(torch.randn(1, 3, 64, 64))] == [32, 8, 4, 2, 2]
    # The standard pre-activation net is unchanged: stride on the first block, projections there.
    standard = reslab.create_model("preact_resnet50")
    assert standard.layer2[0].conv2.stride == (2, 2) and standard.layer1[2].downsample is None
    assert standard.conv1.bias is None and isinstance(standard.maxpool, torch.nn.MaxPool2d)


def test_files_that_are_not_keras_resnets_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        from_keras(tmp_path / "missing.weights.h5")
    import h5py

    with h5py.File(tmp_path / "other.weights.h5", "w") as handle:
        handle.create_dataset("layers/conv2d/vars/0", data=np.zeros((3, 3, 3, 8), dtype="float32"))
    with pytest.raises(CheckpointError, match="1 convolutions and 0 batch norms; Keras' ResNet50/101/152 have "
                                              "53, 104, 155 convolutions"):
        from_keras(tmp_path / "other.weights.h5")


def test_layout_options_are_checked():
    with pytest.raises(ModelConfigError, match="stride_in_1x1 is for bottleneck networks"):
        reslab.create_model("resnet18", stride_in_1x1=True)
    with pytest.raises(ModelConfigError, match="bn_eps must be a small positive number"):
        reslab.create_model("resnet50", bn_eps=-1)
    with pytest.raises(ModelConfigError, match="conv_bias must be True or False"):
        reslab.create_model("resnet50", conv_bias="yes")
    v1 = reslab.create_model("resnet50", stride_in_1x1=True, conv_bias=True)
    assert v1.layer2[0].conv1.stride == (2, 2) and v1.layer2[0].conv2.stride == (1, 1)
    assert v1(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
