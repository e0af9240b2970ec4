"""GoogLeNet (Inception v1) in the Keras 3 functional API on TensorFlow.

Importing the package loads neither TensorFlow nor Keras: TensorFlow loads with the first
public name used (`from inception_tf import GoogLeNet`) or with Keras, and until then
`inception_tf.startup.runtime.configure()` can still choose the runtime settings that TensorFlow
fixes when it loads. The package's layers are registered with Keras as Keras loads
(`registration`), so that after `import inception_tf` `keras.models.load_model` opens
every model file the package writes, without custom_objects.
"""

import importlib
import typing

from inception_tf import registration

registration.register_when_keras_loads()

# Why not these imports at run time: they load TensorFlow, and `python -m inception_tf`,
# `train.py` and `startup.runtime.configure()` import this package before they choose the
# settings TensorFlow reads as it loads (oneDNN, threads). Static tools read them here.
if typing.TYPE_CHECKING:
    from inception_tf.modeling.imagenet import decode_predictions  # noqa: F401
    from inception_tf.modeling.layers import LocalResponseNormalization  # noqa: F401
    from inception_tf.modeling.network import GoogLeNet, inception_module, inference_model  # noqa: F401
    from inception_tf.modeling.preprocessing import preprocess_input  # noqa: F401
    from inception_tf.serving.export import export_saved_model  # noqa: F401
    from inception_tf.tasks.compiling import compile_for_training, labels_for_heads  # noqa: F401
    from inception_tf.tasks.schedules import CosineDecay, LinearDecay, StepDecay, paper_schedule  # noqa: F401

# Public name -> the module that defines it.
_EXPORTS = {
    "CosineDecay": "tasks.schedules",
    "LinearDecay": "tasks.schedules",
    "GoogLeNet": "modeling.network",
    "LocalResponseNormalization": "modeling.layers",
    "StepDecay": "tasks.schedules",
    "compile_for_training": "tasks.compiling",
    "decode_predictions": "modeling.imagenet",
    "export_saved_model": "serving.export",
    "inception_module": "modeling.network",
    "inference_model": "modeling.network",
    "labels_for_heads": "tasks.compiling",
    "paper_schedule": "tasks.schedules",
    "preprocess_input": "modeling.preprocessing",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'inception_tf' has no attribute {name!r}")
    registration.register_classes()  # with any public name, as Keras is loading anyway
    value = getattr(importlib.import_module(f"inception_tf.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
