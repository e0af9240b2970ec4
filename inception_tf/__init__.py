"""GoogLeNet (Inception v1) in the Keras 3 functional API on TensorFlow."""

from inception_tf.layers import LocalResponseNormalization
from inception_tf.model import GoogLeNet, inference_model, inception_module
from inception_tf.schedules import CosineDecay, StepDecay, paper_schedule
from inception_tf.training import compile_for_training, labels_for_heads

__all__ = [
    "CosineDecay",
    "GoogLeNet",
    "LocalResponseNormalization",
    "StepDecay",
    "compile_for_training",
    "inference_model",
    "inception_module",
    "labels_for_heads",
    "paper_schedule",
]
__version__ = "0.1.0"
