import os
import pathlib
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# `precision="auto"` times the candidates once per machine and workload: the tests share
# one store for the session (xdist's workers too), apart from the user's.
os.environ.setdefault(
    "INCEPTION_TF_CACHE_DIR",
    str(pathlib.Path(tempfile.gettempdir()) / f"inception_tf-tests-{os.environ.get('PYTEST_XDIST_TESTRUNUID', os.getpid())}"),
)

# The runtime (oneDNN, threads, XLA) is timed by tests/test_runtime.py with fakes and in
# its own probe test; every other test keeps TensorFlow's own settings.
os.environ.setdefault("INCEPTION_TF_RUNTIME", "default")

from inception_tf.tasks import runtime  # noqa: E402

runtime.quiet_import_tensorflow()

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts from the same seed, float32 policy and an empty Keras session."""
    keras.utils.set_random_seed(1234)
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session()
