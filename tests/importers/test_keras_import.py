"""Keras files (.keras and legacy .h5) rebuilt in MLX equal Keras' own predictions (Keras on the torch backend).

keras.applications backbones are built with weights=None (no download) at small
input sizes, with random BatchNorm statistics and a transfer-learning head.
MobileNetV2 and ResNet50 run by default; EfficientNetB0, DenseNet121 and
Xception are @slow (pytest -m slow).
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":
    pytest.skip("these tests run Keras on the torch backend", allow_module_level=True)

from engine.core.errors import UserError  # noqa: E402
from engine.image.bundle import load_bundle  # noqa: E402
from engine.image.importers.keras_file import import_keras  # noqa: E402

TOL = 1e-3
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def randomize_batchnorm(model, seed=0):
    """Non-trivial BatchNorm statistics so the import must get them right."""
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights(
                [rng.uniform(0.8, 1.2, g.shape), rng.normal(0, 0.05, b.shape), rng.normal(0, 0.1, m.shape),
                 rng.uniform(0.5, 1.5, v.shape)]
            )  # fmt: skip


def _all_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)
        else:
            yield layer


def transfer_model(app: str, size: int, classes: int = 4, nested: bool = False, **kwargs):
    keras.utils.set_random_seed(0)
    base = getattr(keras.applications, app)(input_shape=(size, size, 3), include_top=False, weights=None, **kwargs)
    randomize_batchnorm(base)
    if nested:
        inp = keras.Input((size, size, 3))
        x = base(inp, training=False)
    else:
        inp, x = base.input, base.output
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    out = keras.layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inp, out)


def check(model, path, size, batch=2):
    x = np.random.default_rng(1).uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
    want = np.asarray(model.predict(x, verbose=0))
    bundle = import_keras(path)
    logits = bundle.predict_logits(x)
    e = np.exp(logits - logits.max(1, keepdims=True))
    got = e / e.sum(1, keepdims=True)
    assert bundle.source["softmax_removed"]
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= TOL
    # Also compare logits where Keras' softmax input is reachable: probabilities are too forgiving alone.
    return bundle, x


def _pre_softmax(model, x):
    head = model.layers[-1]
    sub = keras.Model(model.input, head.input)
    w, b = head.get_weights()
    return np.asarray(sub.predict(x, verbose=0)) @ w + b


def test_mobilenet_v2_keras_and_h5(tmp_path):
    model = transfer_model("MobileNetV2", 32, alpha=0.35)
    for suffix in (".keras", ".h5"):
        path = tmp_path / f"m{suffix}"
        model.save(path)
        bundle, x = check(model, path, 32)
        assert np.abs(bundle.predict_logits(x) - _pre_softmax(model, x)).max() <= TOL
    assert bundle.preprocessing.input_size == (32, 32)


def test_nested_base_model_and_bundle_round_trip(tmp_path):
    model = transfer_model("MobileNetV2", 32, alpha=0.35, nested=True)
    path = tmp_path / "nested.keras"
    model.save(path)
    bundle, x = check(model, path, 32)
    bundle.save(tmp_path / "B")
    again = load_bundle(tmp_path / "B")
    assert again.arch == "graph" and np.abs(again.predict_logits(x) - bundle.predict_logits(x)).max() == 0


def test_resnet50(tmp_path):
    model = transfer_model("ResNet50", 32)
    path = tmp_path / "r.keras"
    model.save(path)
    bundle, x = check(model, path, 32)
    assert np.abs(bundle.predict_logits(x) - _pre_softmax(model, x)).max() <= TOL


@pytest.mark.slow
@pytest.mark.parametrize("app, size", [("EfficientNetB0", 32), ("DenseNet121", 32), ("Xception", 71)])
def test_more_applications(tmp_path, app, size):
    model = transfer_model(app, size)
    for suffix in (".keras", ".h5"):
        path = tmp_path / f"m{suffix}"
        model.save(path)
        bundle, x = check(model, path, size)
        assert np.abs(bundle.predict_logits(x) - _pre_softmax(model, x)).max() <= TOL


def test_sequential_with_rescaling_flatten_and_same_pooling(tmp_path):
    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [
            keras.Input((15, 13, 3)),
            keras.layers.Rescaling(1 / 127.5, offset=-1),
            keras.layers.ZeroPadding2D(((1, 0), (2, 1))),
            keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu"),
            keras.layers.SeparableConv2D(8, 3, padding="same", depth_multiplier=2),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(max_value=6.0),
            keras.layers.AveragePooling2D(3, strides=2, padding="same"),
            keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="swish"),
            keras.layers.MaxPooling2D(2, padding="same"),
            keras.layers.Flatten(),
            keras.layers.Dense(5),
        ]
    )
    randomize_batchnorm(model)
    path = tmp_path / "s.keras"
    model.save(path)
    x = np.random.default_rng(1).uniform(0, 255, (2, 15, 13, 3)).astype(np.float32)
    want = np.asarray(model.predict(x, verbose=0))
    bundle = import_keras(path)
    assert not bundle.source["softmax_removed"]
    assert np.abs(bundle.predict_logits(x) - want).max() <= TOL
    assert bundle.preprocessing.scale == "raw"  # the model rescales inside


def test_unsupported_layer_is_named(tmp_path):
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3, name="c"),
                              keras.layers.LayerNormalization(name="my_norm"), keras.layers.Flatten()])  # fmt: skip
    path = tmp_path / "u.keras"
    model.save(path)
    with pytest.raises(UserError, match="'my_norm' \\(LayerNormalization\\): unsupported layer type"):
        import_keras(path)


def test_weights_only_h5_is_refused_with_a_reason(tmp_path):
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])
    path = tmp_path / "w.weights.h5"
    model.save_weights(path)
    with pytest.raises(UserError, match="weights only|not a Keras"):
        import_keras(path)


def test_keras_xception_h5_into_the_builtin_xception(tmp_path):
    """--arch xception reads a Keras HDF5 file by layer names into engine/models/xception.py."""
    from engine.image.importers.dispatch import import_file

    model = transfer_model("Xception", 71, classes=3)
    path = tmp_path / "x.h5"
    model.save(path)
    x = np.random.default_rng(1).uniform(-1, 1, (1, 71, 71, 3)).astype(np.float32)
    bundle = import_file(path, arch="xception", input_size="71")
    assert bundle.arch == "xception" and bundle.arch_config["num_classes"] == 3
    assert np.abs(bundle.predict_logits(x) - _pre_softmax(model, x)).max() <= TOL
