"""GoogLeNet (Inception v1) in the Keras 3 functional API on TensorFlow."""

import os

# TensorFlow's C++ warnings (grappler cost estimates, CUDA probing) bury the progress
# bar; a TF_CPP_MIN_LOG_LEVEL the user set still wins. It must precede TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# `import inception_tf` registers LocalResponseNormalization with Keras, so
# `keras.models.load_model` finds it without custom_objects.
from inception_tf.export import export_saved_model  # noqa: E402
from inception_tf.imagenet import decode_predictions  # noqa: E402
from inception_tf.layers import LocalResponseNormalization  # noqa: E402
from inception_tf.model import GoogLeNet, inception_module, inference_model  # noqa: E402
from inception_tf.preprocessing import preprocess_input  # noqa: E402
from inception_tf.schedules import CosineDecay, StepDecay, paper_schedule  # noqa: E402
from inception_tf.training import compile_for_training, labels_for_heads  # noqa: E402

__all__ = [
    "CosineDecay",
    "GoogLeNet",
    "LocalResponseNormalization",
    "StepDecay",
    "compile_for_training",
    "decode_predictions",
    "export_saved_model",
    "inception_module",
    "inference_model",
    "labels_for_heads",
    "paper_schedule",
    "preprocess_input",
]
__version__ = "0.1.0"
