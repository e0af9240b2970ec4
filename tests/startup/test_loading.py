"""Loading TensorFlow: its objects frozen out of the collector's way, once."""

import atexit
import gc

from inception_tf.startup import loading


def test_a_process_that_loaded_tensorflow_here_freezes_its_objects_then_and_at_exit_once(monkeypatch):
    """Every full collection, and Python's finalisation, would scan the objects TensorFlow
    and Keras hold (a second or two of every command's exit): `quiet_import_tensorflow`
    freezes them once loaded, and leaves `gc.freeze` as one exit handler, however often
    it is called."""
    handlers, frozen = [], []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(len(handlers)))
    monkeypatch.setattr(atexit, "register", handlers.append)
    monkeypatch.setattr(atexit, "unregister", lambda handler: handlers.remove(handler) if handler in handlers else None)
    loading.quiet_import_tensorflow()
    loading.quiet_import_tensorflow()
    assert handlers == [gc.freeze] and frozen == [0, 1]  # each call freezes before it registers
