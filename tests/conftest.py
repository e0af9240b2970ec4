import os
import pathlib
import sys
import tempfile

# The helpers every folder of tests imports (`from runs import ...`), in one place.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "support"))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# `precision="auto"` times the candidates once per machine and workload: the tests share
# one store for the session (xdist's workers too), apart from the user's.
os.environ.setdefault(
    "INCEPTION_TF_CACHE_DIR",
    str(pathlib.Path(tempfile.gettempdir()) / f"inception_tf-tests-{os.environ.get('PYTEST_XDIST_TESTRUNUID', os.getpid())}"),
)

# The runtime is timed by tests/startup/test_runtime.py with fakes and in its own probe test, and
# test_experiment's run loads a stored answer; every other test times nothing and runs
# oneDNN, as train.py chose on every CPU measured (TensorFlow leaves it off on AVX2 CPUs,
# where the suite then trains at about 0.6x the speed).
os.environ.setdefault("INCEPTION_TF_RUNTIME", "default")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from inception_tf.startup import loading  # noqa: E402

# TensorFlow and Keras leave some 300,000 objects that live as long as the worker: frozen
# here, they drop out of the full collections that the tests' garbage sets off.
loading.quiet_import_tensorflow()

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts from the same seed, float32 policy and an empty Keras session."""
    keras.utils.set_random_seed(1234)
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")
    # Without Keras's `gc.collect()`: a full collection after every test, often longer than
    # the test; Python's own collector frees what a test leaves.
    keras.backend.clear_session(free_memory=False)


# The longest files first (`--durations=0` summed per file). Under the Makefile's
# `--dist loadfile --no-loadscope-reorder` a worker takes a whole file at a time, in this
# order; a long file taken last would leave the other workers idle at the end.
LONGEST_FILES = (
    "test_preemption.py", "test_experiment.py", "test_compiling.py", "test_determinism.py", "test_export.py",
    "test_network.py", "test_other_backends.py", "test_runtime.py", "test_notebook.py", "test_disk_full.py",
    "test_benchmarks.py", "test_data.py", "test_litert.py", "test_server.py", "test_weights.py", "test_caffe.py",
    "test_predict.py", "test_precision.py", "test_registration.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: index for index, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
