"""``reslab.convert.from_keras``: a Keras 3 ResNet50 (torch backend) computes what reslab computes."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported anywhere in this process

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from reslab.convert import from_keras  # noqa: E402
from reslab.errors import CheckpointError  # noqa: E402

import reslab  # noqa: E402
from reslab.errors import ModelConfigError  # noqa: E402

keras = pytest.importorskip("keras")
pytest.importorskip("h5py")
# Keras' own numpy-2 deprecation noise, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def keras_resnet50(tmp_path_factory):
    if keras.backend.backend() != "torch":
        pytest.skip(f"keras runs on the {keras.backend.backend()} backend in this process")
    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(weights=None, classifier_activation=None)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # non-trivial BN statistics and conv biases, so every tensor matters
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.get_weights()[0].shape
            layer.set_weights([rng.uniform(0.5, 1.5, shape).astype("float32"),
                               rng.uniform(-0.2, 0.2, shape).astype("float32"),
                               rng.uniform(-0.2, 0.2, shape).astype("float32"),
                               rng.uniform(0.5, 1.5, shape).astype("float32")])
        elif isinstance(layer, keras.layers.Conv2D):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.uniform(-0.1, 0.1, bias.shape).astype("float32")])
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


def test_files_that_are_not_keras_resnets_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        from_keras(tmp_path / "missing.weights.h5")
    import h5py

    with h5py.File(tmp_path / "other.weights.h5", "w") as handle:
        handle.create_dataset("layers/conv2d/vars/0", data=np.zeros((3, 3, 3, 8), dtype="float32"))
    with pytest.raises(CheckpointError, match="1 convolutions; Keras' ResNet50/101/152 have 53, 104, 155"):
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
