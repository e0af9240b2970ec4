"""Loading TensorFlow: quietly, with the fixes every run needs, and its objects frozen
out of the garbage collector's way."""

import atexit
import gc
import os
import sys

from inception_tf import native_stderr

LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"


def quiet_import_tensorflow():
    """Imports TensorFlow and finds its devices with their C++ start-up lines (oneDNN,
    CUDA stubs and cuInit, absl) kept off the terminal: TensorFlow prints them whatever
    TF_CPP_MIN_LOG_LEVEL says. A level of 0 or 1 asks for them, and gets them; unset, the
    level becomes 2 (later C++ messages below warnings stay off too). On a failed import
    the lines are shown with the error. Training steps then sum their gradients in a fixed
    order (`keras_fixes.deterministic_gradient_sums`): a rerun gives the same bits.

    The hundreds of thousands of objects that TensorFlow and Keras hold from then on are
    frozen (`gc.freeze`): every full collection would scan them again, and halves its
    time without them. An exit handler freezes the rest: Python's finalisation would scan
    them all, for a second or two, only to free memory the process is giving back; files
    are closed where they are written, never left to a collector."""
    os.environ.setdefault(LOG_LEVEL, "2")
    if "tensorflow" in sys.modules or os.environ[LOG_LEVEL] in ("0", "1"):
        import tensorflow  # noqa: F401
    else:
        with native_stderr.held():
            import tensorflow as tf

            # Finding the devices is where CUDA's probe complains on a machine without it.
            tf.config.list_physical_devices()
    from inception_tf import keras_fixes  # imports Keras: only once TensorFlow is loaded

    keras_fixes.deterministic_gradient_sums()
    gc.freeze()
    atexit.unregister(gc.freeze)  # once, however many calls
    atexit.register(gc.freeze)
