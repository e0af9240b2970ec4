"""Which Keras backend the commands would run on, known before Keras loads.

The model builder runs on every Keras backend; the commands are TensorFlow jobs
(tf.data pipelines, tf.distribute, SavedModel export and serving). Under another backend
they would fail late (a whole training, then the evaluation), so they stop first.
"""

import json
import os
import pathlib
import sys


def keras_backend():
    """The backend Keras loads with: `KERAS_BACKEND`, else `keras.json` in Keras's home
    (`KERAS_HOME`, else `~/.keras`), else "tensorflow"; Keras's own answer once it is loaded."""
    if "keras" in sys.modules and hasattr(sys.modules["keras"], "backend"):
        return sys.modules["keras"].backend.backend()
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = pathlib.Path(os.environ.get("KERAS_HOME") or pathlib.Path.home() / ".keras")
    try:
        return json.loads((home / "keras.json").read_text()).get("backend") or "tensorflow"
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def check_tensorflow_backend(command):
    """ValueError, in one line, when `command` would run under another Keras backend."""
    found = keras_backend()
    if found != "tensorflow":
        source = "KERAS_BACKEND" if os.environ.get("KERAS_BACKEND") else "backend (keras.json)"
        raise ValueError(
            f"`{command}` is a TensorFlow job (tf.data, tf.distribute, SavedModel): run it with KERAS_BACKEND=tensorflow "
            f"(or unset). GoogLeNet itself builds on every backend. Received: {source}={found!r}"
        )
