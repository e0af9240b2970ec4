"""The commands are TensorFlow jobs: under another Keras backend they stop at once, in one
line, instead of failing after a whole training."""

import json
import subprocess
import sys
import time

import pytest

from runs import MINIMAL, ROOT, env


def _command(args, **environ):
    started = time.monotonic()
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, env={**env(), **environ},
                          cwd=ROOT, timeout=300)
    return done, time.monotonic() - started


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_train_under_another_backend_stops_before_anything(tmp_path, backend):
    done, seconds = _command(["train.py", *MINIMAL, "--run-dir", str(tmp_path / "run")], KERAS_BACKEND=backend)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == (
        "error: `train` is a TensorFlow job (tf.data, tf.distribute, SavedModel): run it with KERAS_BACKEND=tensorflow "
        f"(or unset). GoogLeNet itself builds on every backend. Received: KERAS_BACKEND={backend!r}"
    )
    assert not (tmp_path / "run").exists()  # no run directory, no lock, no measurement
    assert seconds < 60  # TensorFlow never loaded; a training would take minutes


def test_the_backend_in_keras_json_counts_too(tmp_path):
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "jax", "floatx": "float32"}))
    environ = {**env(), "KERAS_HOME": str(tmp_path)}
    environ.pop("KERAS_BACKEND", None)
    done = subprocess.run([sys.executable, "-m", "inception_tf", "predict", "--model", "m.keras", "a.png"],
                          capture_output=True, text=True, env=environ, cwd=ROOT, timeout=300)
    assert done.returncode == 2 and "`predict` is a TensorFlow job" in done.stderr
    assert "Received: backend (keras.json)='jax'" in done.stderr


def test_tensorflow_named_or_left_unset_runs(tmp_path):
    from inception_tf.startup import backend

    assert backend.keras_backend() == "tensorflow"  # Keras is loaded here: its own answer
    backend.check_tensorflow_backend("train")
