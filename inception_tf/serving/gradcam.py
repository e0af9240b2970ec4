"""Grad-CAM (Selvaraju et al., 2017): where the model looked for the class it chose.

The class score is the main classifier's logit (before the softmax, as in the paper:
the softmax's gradient vanishes for confident predictions), differentiated with respect
to the output of the last inception module, 5b. Each of its channels is weighted by its
mean gradient, the weighted sum kept where positive, scaled to [0, 1] and laid over the
image in OpenCV's JET colours.
"""

import pathlib

import cv2
import keras
import numpy as np
import tensorflow as tf

from inception_tf import files
from inception_tf.modeling import image_input, network

LAST_MODULE = "inception_5b"
MIN_SIDE = 224  # overlays of small images (28x28 Fashion-MNIST) are enlarged to be seen
CAPTION_HEIGHT = 24
HEAT_WEIGHT = 0.45


def probe(model):
    """A model of `model`'s inputs giving module 5b's output and the main logits."""
    try:
        features = model.get_layer(LAST_MODULE).output
        logits = model.get_layer(network.classifier_layer(network.MAIN_HEAD)).output
    except ValueError:
        raise ValueError(
            f"Grad-CAM needs a GoogLeNet with layers {LAST_MODULE!r} and "
            f"{network.classifier_layer(network.MAIN_HEAD)!r}. Received: model={model.name!r}"
        ) from None
    return keras.Model(model.inputs, [features, logits])


def heatmaps(probed, inputs):
    """Grad-CAM maps of the top-1 class for preprocessed `inputs` [n, size, size, 3];
    `probed` is `probe(model)`.

    Returns `(maps, classes, probabilities)`: maps float32 [n, h, w] in [0, 1] at module
    5b's resolution (size / 32), the top-1 class indices and their probabilities.
    """
    inputs = tf.convert_to_tensor(inputs, tf.float32)
    with tf.GradientTape() as tape:
        activations, scores = probed(inputs, training=False)
        scores = tf.cast(scores, tf.float32)
        classes = tf.argmax(scores, axis=-1)
        chosen = tf.gather(scores, classes, batch_dims=1)
    # Samples do not interact at inference, so one gradient of the sum is each one's own.
    gradients = tf.cast(tape.gradient(chosen, activations), tf.float32)
    activations = tf.cast(activations, tf.float32)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    maps = tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1)).numpy()
    # Scaled per image from its own minimum to its maximum, as pytorch-grad-cam does: on
    # small inputs module 5b is 2x2 and a map scaled by its maximum alone is nearly flat.
    flat = maps.reshape(len(maps), -1)
    low, spread = flat.min(axis=1)[:, None, None], np.ptp(flat, axis=1)[:, None, None]
    maps = np.divide(maps - low, spread, out=np.zeros_like(maps), where=spread > 0)
    probabilities = tf.nn.softmax(scores).numpy()
    return maps, classes.numpy(), probabilities[np.arange(len(maps)), classes.numpy()]


def overlay_size(height, width):
    """(height, width) of the picture part of an overlay: the image's own size, enlarged by
    a whole factor when its short side is under MIN_SIDE."""
    factor = max(1, -(-MIN_SIDE // min(height, width)))
    return height * factor, width * factor


def overlay(image, heatmap, caption):
    """uint8 RGB [h', w' + CAPTION_HEIGHT, 3]: `image` (uint8 RGB) at `overlay_size`, the
    heat map over it, `caption` on a band above."""
    height, width = overlay_size(*image.shape[:2])
    picture = cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST)
    heat = cv2.resize(heatmap.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    colours = cv2.applyColorMap(np.uint8(255 * np.clip(heat, 0, 1)), cv2.COLORMAP_JET)[..., ::-1]
    blended = cv2.addWeighted(picture, 1 - HEAT_WEIGHT, colours, HEAT_WEIGHT, 0)
    band = np.full((CAPTION_HEIGHT, width, 3), 255, np.uint8)
    cv2.putText(band, caption, (4, CAPTION_HEIGHT - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, blended])


class Explainer:
    """Writes `<stem>.png` (`<stem>-2.png`, ... for repeated names) into `folder`, one
    Grad-CAM overlay per image, for `predict --explain`."""

    def __init__(self, model, preprocessing, folder, name):
        self.probe, self.preprocessing, self.name = probe(model), preprocessing, name
        self.folder = pathlib.Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.size = model.inputs[0].shape[1]
        self.used = set()

    def _path(self, source):
        stem, count = pathlib.Path(source).stem, 1
        while (candidate := stem if count == 1 else f"{stem}-{count}") in self.used:
            count += 1
        self.used.add(candidate)
        return self.folder / f"{candidate}.png"

    def write(self, entries):
        """`entries`: `(path, uint8 RGB image)` pairs."""
        inputs = image_input.preprocess_each([image for _, image in entries], self.size, self.preprocessing)
        maps, classes, scores = heatmaps(self.probe, inputs)
        for (source, image), heatmap, index, score in zip(entries, maps, classes, scores):
            picture = overlay(image, heatmap, f"{self.name(int(index))} {score:.2f}")
            with files.atomic_path(self._path(source), suffix=".png") as tmp:
                if not cv2.imwrite(str(tmp), picture[..., ::-1]):
                    raise OSError(f"could not write {tmp}")


class InMemory:
    """Grad-CAM overlays as arrays, for the page `serve` shows: a .keras model's file in,
    `overlay(image)` of one uint8 RGB image out."""

    def __init__(self, keras_file, class_names):
        from inception_tf.modeling import model_files

        model = network.inference_model(keras.models.load_model(keras_file, compile=False))
        self.probe, self.size = probe(model), model.inputs[0].shape[1]
        self.preprocessing = model_files.read_info(keras_file).preprocessing
        self.class_names = class_names

    def __call__(self, image):
        inputs = image_input.preprocess_each([image], self.size, self.preprocessing)
        maps, classes, scores = heatmaps(self.probe, inputs)
        index = int(classes[0])
        name = self.class_names[index] if index < len(self.class_names) else str(index)
        return overlay(image, maps[0], f"{name} {scores[0]:.2f}")
