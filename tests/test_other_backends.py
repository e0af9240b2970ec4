"""The model builder on Keras's JAX backend: both variants, the aux heads on and off, the
features without the top, `inception_module`, `weights=` from a .keras file and from a
caffemodel, saving and loading both ways, and three training steps, each giving on JAX what
it gives on TensorFlow with the same weights (`backend_side.py` runs the JAX side).

PyTorch's backend takes the same check where `torch` imports (never in CI: its wheels are
large): `INCEPTION_TF_TEST_BACKEND=torch python -m pytest tests/test_other_backends.py` is
how results/backends/ records it."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from inception_tf import GoogLeNet, inception_module
from inception_tf.modeling import model_files

from caffe_files import random_blobs, write_caffemodel
from runs import ROOT, env

TOLERANCE = 1e-5  # max abs difference, float32
BACKEND = os.environ.get("INCEPTION_TF_TEST_BACKEND", "jax")
SIDE = ROOT / "tests" / "support" / "backend_side.py"
CASES = {
    "paper": dict(num_classes=10, input_shape=(64, 64, 3), variant="paper"),
    "paper_no_aux": dict(num_classes=10, input_shape=(64, 64, 3), variant="paper", aux_heads=False),
    "bn": dict(num_classes=10, input_shape=(64, 64, 3), variant="bn"),
    "bn_no_aux": dict(num_classes=10, input_shape=(64, 64, 3), variant="bn", aux_heads=False),
    "features_avg": dict(include_top=False, pooling="avg", input_shape=(64, 64, 3), variant="paper"),
    "features_max": dict(include_top=False, pooling="max", input_shape=(96, 96, 3), variant="bn"),
    "caffe": dict(num_classes=1000, input_shape=(64, 64, 3), variant="paper"),  # weights= BVLC's layout
}
MODULE = dict(filters_1x1=64, filters_3x3_reduce=96, filters_3x3=128, filters_5x5_reduce=16, filters_5x5=32,
              filters_pool_proj=32, name="inception_3a")


def _outputs(model, x):
    predicted = model(x, training=False)
    predicted = predicted if isinstance(predicted, (list, tuple)) else [predicted]
    return [np.asarray(p, np.float32) for p in predicted]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """The TensorFlow side's models, files and outputs, and what the other backend's process
    (`BACKEND`, JAX unless the variable names another) gave for them."""
    folder = tmp_path_factory.mktemp("backends")
    rng = np.random.default_rng(0)
    inputs = {"side64": rng.uniform(0, 1, (2, 64, 64, 3)).astype(np.float32),
              "side96": rng.uniform(0, 1, (2, 96, 96, 3)).astype(np.float32),
              "module": rng.normal(size=(2, 8, 8, 192)).astype(np.float32)}
    np.savez(folder / "inputs.npz", **inputs)
    caffemodel = write_caffemodel(folder / "bvlc_googlenet.caffemodel", random_blobs(seed=5))
    cases, expected = {}, {}
    for name, kwargs in CASES.items():
        keras.utils.set_random_seed(len(name))
        weights = str(caffemodel) if name == "caffe" else None
        model = GoogLeNet(weights=weights, **kwargs)
        path = model_files.save_keras(model, folder / f"{name}.keras")
        cases[name] = {"kwargs": kwargs, "file": str(path), "weights": weights or str(path)}
        expected[name] = _outputs(model, inputs[f"side{kwargs['input_shape'][0]}"])
    module_in = keras.Input((8, 8, 192))
    module = keras.Model(module_in, inception_module(module_in, **MODULE))
    module.save(folder / "module.keras")
    cases["module"] = {"kwargs": {}, "module": MODULE, "file": str(folder / "module.keras")}
    expected["module"] = _outputs(module, inputs["module"])
    (folder / "cases.json").write_text(json.dumps({"inputs": str(folder / "inputs.npz"), "folder": str(folder), "cases": cases}))
    done = subprocess.run(
        [sys.executable, str(SIDE), str(folder / "cases.json"), str(folder / "out.npz")],
        capture_output=True, text=True, env={**env(), "KERAS_BACKEND": BACKEND}, cwd=ROOT, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    got = dict(np.load(folder / "out.npz", allow_pickle=False))
    differences = {name: max(float(np.abs(got[key] - value).max()) for index, value in enumerate(heads)
                             for key in (f"{name}/{index}", f"{name}/loaded/{index}"))
                   for name, heads in expected.items()}
    print(f"\n{BACKEND}: max |difference| from TensorFlow per case: "
          + ", ".join(f"{name} {value:.1e}" for name, value in differences.items())
          + f"; main loss before and after 3 steps: {got['fit/losses'][0]:.4f} -> {got['fit/losses'][1]:.4f}")
    return folder, expected, got


def test_the_other_side_ran_on_the_other_backend(compared):
    _, _, got = compared
    assert str(got["backend"]) == BACKEND


@pytest.mark.parametrize("name", list(CASES))
def test_each_variant_predicts_as_on_tensorflow(compared, name):
    _, expected, got = compared
    heads = expected[name]
    assert len(heads) == (3 if CASES[name].get("include_top", True) and CASES[name].get("aux_heads", True) else 1)
    for index, value in enumerate(heads):
        for key in (f"{name}/{index}", f"{name}/loaded/{index}"):  # built with weights=, and load_model
            assert got[key].shape == value.shape, key
            assert np.abs(got[key] - value).max() <= TOLERANCE, (key, np.abs(got[key] - value).max())


def test_inception_module_computes_as_on_tensorflow(compared):
    _, expected, got = compared
    for key in ("module/0", "module/loaded/0"):  # built by the function there, and loaded
        assert got[key].shape == (2, 8, 8, 256)
        assert np.abs(got[key] - expected["module"][0]).max() <= TOLERANCE


def test_a_model_trained_there_learns_and_loads_on_tensorflow(compared):
    folder, _, got = compared
    before, after = got["fit/losses"]
    assert after < before, (before, after)  # three steps on the same batch: its loss falls
    loaded = keras.models.load_model(folder / "trained_here.keras")
    for index, value in enumerate(_outputs(loaded, got["fit/inputs"])):
        assert np.abs(value - got[f"fit/{index}"]).max() <= TOLERANCE
