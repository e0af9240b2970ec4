"""A model's input from images of any size, in TensorFlow: decode, resize, 3 channels,
normalise (`preprocessing.normalize`). Evaluation, the exported model and `predict` go
through the one `preprocess_images`; training crops and augments (`dataloaders.data`)
before the same `to_model_input`."""

import numpy as np
import tensorflow as tf

from inception_tf.modeling.preprocessing import normalize

def decode_image(encoded):
    """JPEG / PNG / BMP / GIF (first frame) bytes -> uint8 RGB [h, w, 3]."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def resize_images(images, image_size, boxes=None, box_indices=None):
    """uint8 (or float, 0-255) [batch, h, w, c] -> float32 [boxes, size, size, c] in [0, 1].

    `boxes` ([n, 4], normalised y1, x1, y2, x2) crop before resizing; a box with
    x1 > x2 is mirrored, and outside the image is 0. Box i crops image `box_indices[i]`
    (default: image i). Without boxes the whole image is resized.
    """
    batch = tf.shape(images)[0]
    if boxes is None:
        boxes = tf.tile(tf.constant([[0.0, 0.0, 1.0, 1.0]]), [batch, 1])
    if box_indices is None:
        box_indices = tf.range(batch)
    resized = tf.image.crop_and_resize(
        images, boxes, box_indices, [image_size, image_size], method="bilinear"
    )
    return resized / 255.0


def to_model_input(images, preprocessing="tf"):
    """float32 [batch, h, w, 1 or 3] in [0, 1] -> 3 channels, normalised for the model
    (`preprocessing.normalize`: "tf" [-1, 1], "caffe" BGR minus the ImageNet mean)."""
    if images.shape[-1] == 1:
        images = tf.image.grayscale_to_rgb(images)
    elif images.shape[-1] != 3:
        raise ValueError(f"Images must have 1 or 3 channels. Received: shape={images.shape}")
    return normalize(images, preprocessing)


def preprocess_images(images, image_size, preprocessing="tf"):
    """What evaluation and the exported model do to a batch of uint8 images of any size."""
    return to_model_input(resize_images(images, image_size), preprocessing)


def preprocess_each(images, image_size, preprocessing="tf"):
    """`preprocess_images` of uint8 images of different sizes, one at a time: numpy float32
    [len(images), size, size, 3]."""
    return np.concatenate([np.asarray(preprocess_images(image[None], image_size, preprocessing)) for image in images])
