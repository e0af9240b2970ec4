"""GoogLeNet (Inception v1) in the Keras 3 functional API on TensorFlow.

Importing the package loads nothing and changes nothing: TensorFlow loads with the first
public name used (`from inception_tf import GoogLeNet`), which also registers
LocalResponseNormalization with Keras, so that `keras.models.load_model` finds it without
custom_objects. Until then `inception_tf.runtime.configure()` can still choose the
runtime settings that TensorFlow fixes when it loads.
"""

import importlib

# Public name -> the module that defines it.
_EXPORTS = {
    "CosineDecay": "schedules",
    "GoogLeNet": "model",
    "LocalResponseNormalization": "layers",
    "StepDecay": "schedules",
    "compile_for_training": "training",
    "decode_predictions": "imagenet",
    "export_saved_model": "export",
    "inception_module": "model",
    "inference_model": "model",
    "labels_for_heads": "training",
    "paper_schedule": "schedules",
    "preprocess_input": "preprocessing",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'inception_tf' has no attribute {name!r}")
    # The layers module registers the custom layers: load it with any public name.
    importlib.import_module("inception_tf.layers")
    value = getattr(importlib.import_module(f"inception_tf.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
