"""The package's layers and optimizer registered with Keras as soon as Keras loads, without loading it.

`keras.models.load_model` finds a custom layer only in Keras's registry: Keras imports a
saved layer's module by itself only for its own family (keras, keras_hub, keras_cv,
keras_nlp). Registering means defining the layer classes, which imports Keras, which
loads TensorFlow, whose runtime settings `runtime.configure()` must choose first. So
`import inception_tf` registers at once where Keras is loaded already, and otherwise
asks to be told when it loads: a finder on `sys.meta_path` sees the first import of
`keras` and runs the registration right after Keras's own module has run, as wrapt's
post-import hooks do.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# Where the classes a saved model may name are defined and registered.
REGISTERED_MODULES = ("inception_tf.modeling.layers", "inception_tf.tasks.optimizers")


def register_classes():
    """Defines (and so registers) the package's layers and optimizer; loads Keras."""
    for module in REGISTERED_MODULES:
        importlib.import_module(module)


def register_when_keras_loads():
    """`register_classes` now if Keras is loaded, else right after its first import."""
    if "keras" in sys.modules:
        register_classes()
    elif not any(isinstance(finder, _AfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport("keras", register_classes))


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs `callback` once the module `name` has been imported (its code has run)."""

    def __init__(self, name, callback):
        self.name, self.callback = name, callback

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # once; and the real finders must answer below
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            try:
                self.callback()
            except Exception as error:  # a failed registration must not break `import keras`
                warnings.warn(f"inception_tf could not register its layers and optimizer with Keras: {error!r}", stacklevel=2)

        spec.loader.exec_module = exec_module
        return spec
