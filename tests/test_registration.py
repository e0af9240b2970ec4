"""`keras.models.load_model` opens every model file the package writes after a bare
`import inception_tf`, in a fresh process, with the saved model's predictions."""

import json
import subprocess
import sys

import numpy as np

from caffe_files import random_blobs, write_caffemodel
from runs import env
from inception_tf import GoogLeNet, compile_for_training, labels_for_heads
from inception_tf.modeling import model_files

# A fresh process, as a user's: `import inception_tf` must load no TensorFlow, and
# importing Keras afterwards must register the layers.
LOAD = """
import json, sys
import numpy as np
import inception_tf
assert "tensorflow" not in sys.modules and "keras" not in sys.modules, "import inception_tf loaded TensorFlow"
import keras
found = {}
for path, inputs in json.loads(sys.argv[1]).items():
    model = keras.models.load_model(path)
    outputs = model(np.load(inputs), training=False)
    np.save(inputs + ".loaded.npy", np.concatenate([np.asarray(o).ravel() for o in (outputs if isinstance(outputs, list) else [outputs])]))
    found[path] = type(model).__name__
print(json.dumps(found))
"""


def _predictions(model, inputs):
    outputs = model(inputs, training=False)  # eagerly: tracing a predict function per model costs more
    return np.concatenate([np.asarray(o).ravel() for o in (outputs if isinstance(outputs, list) else [outputs])])


def _run_model(tmp_path):
    """A model as `train.py` saves it: compiled, trained a step, with its info entry."""
    model = compile_for_training(GoogLeNet(3, (49, 49, 3), variant="bn"), learning_rate=0.01)
    rng = np.random.default_rng(1)
    model.train_on_batch(rng.uniform(-1, 1, (4, 49, 49, 3)).astype("float32"), labels_for_heads(model, np.arange(4) % 3))
    return model_files.save_keras(model, tmp_path / "run" / "model.keras", ["a", "b", "c"])


def test_load_model_after_a_bare_import_opens_every_model_file_with_its_predictions(tmp_path):
    (tmp_path / "run").mkdir()
    caffemodel = write_caffemodel(tmp_path / "bvlc_googlenet.caffemodel", random_blobs(seed=0))
    converted = tmp_path / "bvlc.keras"
    from inception_tf import cli

    assert cli.main(["convert", "--caffemodel", str(caffemodel), "--out", str(converted)]) == 0
    models = {
        tmp_path / "bn.keras": GoogLeNet(10, input_shape=(64, 64, 3), variant="bn"),
        tmp_path / "paper.keras": GoogLeNet(10, input_shape=(64, 64, 3), variant="paper", aux_heads=False),
        tmp_path / "run" / "model.keras": None,
        converted: None,
    }
    _run_model(tmp_path)
    import keras

    rng = np.random.default_rng(0)
    requests, expected = {}, {}
    for path, model in models.items():
        if model is not None:
            model.save(path)  # Keras's own save, as a user's script does
        model = keras.models.load_model(path)
        size = model.input_shape[1]
        inputs = rng.uniform(-1, 1, (2, size, size, 3)).astype("float32")
        np.save(f"{path}.inputs.npy", inputs)
        requests[str(path)] = f"{path}.inputs.npy"
        expected[str(path)] = _predictions(model, inputs)
    done = subprocess.run([sys.executable, "-c", LOAD, json.dumps(requests)], capture_output=True, text=True,
                          timeout=600, env=env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert set(json.loads(done.stdout.splitlines()[-1])) == set(requests)
    for path, inputs in requests.items():
        np.testing.assert_allclose(np.load(inputs + ".loaded.npy"), expected[path], rtol=1e-5, atol=1e-6, err_msg=path)
