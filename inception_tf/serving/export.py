"""SavedModel export that serves without this package.

The SavedModel holds the inference graph (main head only) in float32, two signatures and
the class names:

- `serving_default(images: uint8 [batch, height, width, 3])`, any height and width:
  resized and normalised by `image_input.preprocess_images`, the function evaluation uses, in
  the model's preprocessing mode ("tf" or "caffe"); returns `probabilities`
  [batch, num_classes], `top_k_indices`, `top_k_scores` and `top_k_classes` (names).
- `image_bytes(image_bytes: string [batch])`: encoded JPEG / PNG / BMP / GIF images,
  any sizes mixed (what TensorFlow Serving's REST API carries as `{"b64": ...}`),
  decoded in the graph; returns what `serving_default` returns.
- `preprocessed(inputs: float32 [batch, size, size, 3])`, already normalised: returns
  `probabilities`.
- `assets/labels.txt`: one class name per line.
"""

import pathlib
import tempfile

import keras
import tensorflow as tf

from inception_tf import files, keras_fixes
from inception_tf.modeling import model_files
from inception_tf.modeling import image_input
from inception_tf.modeling import preprocessing as preprocessing_lib
from inception_tf.modeling.network import inference_model

SIGNATURE_BYTES = "image_bytes"
# What `tf.saved_model.save` writes into a SavedModel folder: all that an export replaces.
EXPORT_ENTRIES = ("saved_model.pb", "fingerprint.pb", "variables", "assets")
SIGNATURE_PREPROCESSED = "preprocessed"  # what the LiteRT files hold (litert.py)
PREPROCESSED_INPUT = "inputs"


def as_float32(model):
    """`model` rebuilt to compute in float32, with the same weights.

    Mixed-precision training keeps float32 weights, so the copy is exact; only the
    arithmetic changes.
    """
    policies = {layer.dtype_policy.name for layer in model.layers}
    if policies <= {"float32"}:
        return model
    clone = keras.Model.from_config(keras_fixes.float32_config(model.get_config()))
    clone.set_weights(model.get_weights())
    return clone


class _Serving(tf.Module):
    def __init__(self, model, class_names, top_k, labels_path, preprocessing):
        super().__init__()
        self.preprocessing = preprocessing
        self.served = keras_fixes.ServedModel(model)  # the weights are saved once, as captured variables
        self.labels = tf.saved_model.Asset(str(labels_path))
        height, width = model.inputs[0].shape[1:3]
        if height != width:
            raise ValueError(f"Export expects a square model input. Received: input_shape={model.inputs[0].shape}")
        self.image_size = height
        self.class_names = list(class_names)
        self.top_k = min(top_k, len(self.class_names))
        # The one function that runs the model: the other signatures call it, so the
        # model is traced and stored once, not once per signature.
        self.classify = tf.function(
            lambda inputs: {"probabilities": tf.cast(self.served.model(inputs, training=False), tf.float32)},
            input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32, name=PREPROCESSED_INPUT)],
            autograph=False,
        )

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")], autograph=False)
    def serve(self, images):
        return self._ranked(image_input.preprocess_images(images, self.image_size, self.preprocessing))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")], autograph=False)
    def serve_bytes(self, image_bytes):
        """Encoded images of any sizes, mixed: each is decoded and resized alone, then the
        batch goes through the same `to_model_input` as `serve`'s."""
        size = self.image_size

        def resized(encoded):
            return image_input.resize_images(image_input.decode_image(encoded)[None], size)[0]

        images = tf.map_fn(resized, image_bytes, fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
        return self._ranked(image_input.to_model_input(images, self.preprocessing))

    def _ranked(self, inputs):
        probabilities = self.classify(inputs)["probabilities"]
        scores, indices = tf.math.top_k(probabilities, k=self.top_k)
        return {
            "probabilities": probabilities,
            "top_k_indices": indices,
            "top_k_scores": scores,
            "top_k_classes": tf.gather(tf.constant(self.class_names), indices),
        }


def check_target(path, overwrite=False):
    """Refuses an export `path` that holds what an export does not write (a user's files),
    unless `overwrite`; returns whether the folder holds such files."""
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"The export goes into a folder, and {path} is a file. Received: path={str(path)!r}")
    foreign = sorted(entry.name for entry in path.iterdir() if entry.name not in EXPORT_ENTRIES) if path.is_dir() else []
    if foreign and not overwrite:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ValueError(
            f"{path} holds files an export does not write ({shown}): choose an empty or new folder, or overwrite "
            f"(`--overwrite`) to replace only the export's own entries ({', '.join(EXPORT_ENTRIES)}) and keep the rest. "
            f"Received: path={str(path)!r}"
        )
    return bool(foreign)


def _place_entries(tmp, path):
    """The finished export `tmp` into a folder `path` that holds a user's files too: the
    export's entries replaced one by one (each in one rename), the rest kept."""
    for name in EXPORT_ENTRIES:
        if (tmp / name).exists():
            files.move_into_place(tmp / name, path / name)
        else:
            files.remove(path / name)


def export_saved_model(model, path, class_names=None, top_k=5, float32=True, preprocessing="tf", overwrite=False):
    """Writes the inference SavedModel of `model` (a GoogLeNet, aux heads or not) to `path`.

    Written to a temporary folder beside `path` and moved into place, so `path` never
    holds a half-written export. A folder that holds other files than an earlier export's
    is refused (ValueError) unless `overwrite`, which replaces the export's entries only.

    Args:
        model: the training or inference model.
        path: the SavedModel folder.
        class_names: the names for `labels.txt` and `top_k_classes` (default "0", "1", ...).
        top_k: how many classes `serving_default` ranks.
        float32: compute in float32 whatever precision training used.
        preprocessing: the input convention the weights expect, "tf" or "caffe"
            (`choices.PREPROCESSING`); `serving_default` applies it.
        overwrite: write into a folder that holds other files too, keeping them.

    Returns:
        `path` as a `pathlib.Path`.
    """
    path = pathlib.Path(path)
    model = inference_model(model)
    if float32:
        model = as_float32(model)
    num_classes = model.outputs[0].shape[-1]
    class_names = [str(i) for i in range(num_classes)] if class_names is None else list(class_names)
    if len(class_names) != num_classes:
        raise ValueError(
            f"`class_names` must name the model's {num_classes} classes. Received: {len(class_names)} names"
        )
    preprocessing_lib.check_mode(preprocessing)
    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"`top_k` must be a positive integer. Received: top_k={top_k!r}")
    keep_others = check_target(path, overwrite)
    writing = files.temporary_beside(path) if keep_others else files.atomic_path(path)
    with tempfile.TemporaryDirectory() as scratch, writing as tmp:
        labels_path = pathlib.Path(scratch) / model_files.LABELS_FILE
        labels_path.write_text(model_files.labels_text(class_names))
        module = _Serving(model, class_names, top_k, labels_path, preprocessing)
        signatures = {"serving_default": module.serve, SIGNATURE_BYTES: module.serve_bytes, SIGNATURE_PREPROCESSED: module.classify}
        keras_fixes.track_captured_variables(module, model)
        tf.saved_model.save(
            module, str(tmp), signatures=signatures,
        )
        if keep_others:
            _place_entries(tmp, path)
    return path

