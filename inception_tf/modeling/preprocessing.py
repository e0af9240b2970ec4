"""The two input conventions a GoogLeNet's weights can expect, in one place.

- "tf": RGB scaled to [-1, 1], what this project's own runs train with.
- "caffe": BGR in 0-255 minus the ImageNet mean per channel (104, 117, 123), what the
  BVLC Caffe model was trained with (Caffe's `data/ilsvrc12` mean, rounded as in its
  deploy files).

Training, evaluation, the exported signatures and `predict` all go through `normalize`,
so a model is fed at serving time exactly as it was trained (images of any size are
resized first by `image_input`). Importing this module loads neither TensorFlow nor Keras.
"""

import numpy as np

from inception_tf import choices

CAFFE_MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)


def check_mode(mode):
    if mode not in choices.PREPROCESSING:
        raise ValueError(f"`mode` must be one of {choices.PREPROCESSING}. Received: mode={mode!r}")
    return mode


def normalize(images, mode):
    """float32 RGB images in [0, 1], channels last (numpy or tensor) -> model input."""
    check_mode(mode)
    if mode == "tf":
        return images * 2.0 - 1.0
    return images[..., ::-1] * 255.0 - CAFFE_MEAN_BGR


def preprocess_input(images, mode="tf"):
    """Turns RGB images with values in 0-255 into the input a GoogLeNet expects.

    Args:
        images: uint8 or float RGB, `(..., height, width, 3)`, channels last; a numpy
            array, or a tensor of the backend.
        mode: "tf" ([-1, 1], the default of models trained here) or "caffe" (BGR minus
            the ImageNet mean, for the BVLC weights). A model converted by
            `python -m inception_tf convert` or trained from one records its mode.

    Returns:
        float32 images of the same shape (numpy in, numpy out).
    """
    check_mode(mode)
    shape = tuple(getattr(images, "shape", np.shape(images)))
    if len(shape) < 3 or shape[-1] != 3:
        raise ValueError(
            f"`preprocess_input` expects RGB images, channels last (..., height, width, 3). Received: shape={shape}"
        )
    if isinstance(images, (np.ndarray, list, tuple)):
        return normalize(np.asarray(images, np.float32) / np.float32(255.0), mode).astype(np.float32)
    import keras

    return normalize(keras.ops.cast(images, "float32") / 255.0, mode)
