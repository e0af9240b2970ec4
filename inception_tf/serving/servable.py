"""What `serve` serves: one version of one model, its signatures and what the page shows.

`MODEL` may be:
- a SavedModel folder (version 1);
- a model base path as TensorFlow Serving reads it, numbered folders of SavedModels: the
  highest number is served, as its default version policy does;
- a run directory: its `saved_model/`, with Grad-CAM from its `model.keras`;
- a `.keras` file or "imagenet" (BVLC's weights): exported first into a temporary
  folder by `export.export_saved_model`, so that what is served is what an export would
  serve, with Grad-CAM from the Keras model.
"""

import dataclasses
import pathlib
import re
import shutil
import tempfile

from inception_tf.serving import rest_api

SAVED_MODEL_FILE = "saved_model.pb"
RUN_CONFIG = "config.json"  # what marks a run directory
RUN_MODEL, RUN_EXPORT = "model.keras", "saved_model"
INIT_SIGNATURE = "__saved_model_init_op"  # TensorFlow's, listed in the metadata, not callable
BYTES_SIGNATURE = "image_bytes"  # export.SIGNATURE_BYTES, named here without loading TensorFlow
# The formats `image_input.decode_image` reads, by their first bytes.
IMAGE_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"GIF87a": "GIF", b"GIF89a": "GIF", b"BM": "BMP"}


class ModelNotLoaded(ValueError):
    """MODEL names nothing `serve` can load; the message says what was looked for."""


@dataclasses.dataclass
class Source:
    """Where the served version comes from: the SavedModel folder, its version, the
    model's own name, and a .keras file for Grad-CAM (or None)."""

    saved_model: pathlib.Path
    version: int
    name: str
    keras_file: pathlib.Path = None


def _clean_name(text):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "googlenet"


def _versions(path):
    return sorted(
        (int(child.name), child) for child in path.iterdir()
        if child.is_dir() and child.name.isdigit() and (child / SAVED_MODEL_FILE).is_file()
    )


def locate(model):
    """The `Source` for MODEL as the command line gives it; ModelNotLoaded when none."""
    from inception_tf.modeling import imagenet

    if str(model) == imagenet.WEIGHTS:
        return Source(None, 1, "googlenet", keras_file=imagenet.WEIGHTS)
    path = pathlib.Path(model)
    if not path.exists():
        raise ModelNotLoaded(f"No model at {path}. Received: model={str(model)!r}")
    if path.is_file():
        if path.suffix != ".keras":
            raise ModelNotLoaded(
                f"serve takes a SavedModel folder, a run directory, a .keras file or imagenet. Received: model={str(model)!r}"
            )
        name = path.parent.name if (path.parent / RUN_CONFIG).is_file() else path.stem
        return Source(None, 1, _clean_name(name), keras_file=path)
    if (path / SAVED_MODEL_FILE).is_file():
        in_run = path.name == RUN_EXPORT and (path.parent / RUN_CONFIG).is_file()
        keras_file = path.parent / RUN_MODEL if in_run and (path.parent / RUN_MODEL).is_file() else None
        return Source(path, 1, _clean_name(path.parent.name if in_run else path.name), keras_file)
    if (path / RUN_EXPORT / SAVED_MODEL_FILE).is_file():
        keras_file = path / RUN_MODEL if (path / RUN_MODEL).is_file() else None
        return Source(path / RUN_EXPORT, 1, _clean_name(path.resolve().name), keras_file)
    versions = _versions(path)
    if versions:
        version, folder = versions[-1]
        return Source(folder, version, _clean_name(path.resolve().name))
    raise ModelNotLoaded(
        f"{path} holds no SavedModel ({SAVED_MODEL_FILE}), no run directory's {RUN_EXPORT}/ and no numbered "
        f"version folders. Received: model={str(model)!r}"
    )


def check_encoded_images(request, inputs):
    """Refuses, before any model call, an `image_bytes` request holding a file that is not
    an image `decode_image` reads, naming the element; the graph would fail the whole
    call without saying which."""
    if request.signature_name != BYTES_SIGNATURE:
        return
    for name, array in request.inputs.items():
        if inputs[request.signature_name][name].dtype != "DT_STRING":
            continue
        for index, encoded in enumerate(array.ravel()):
            if not any(bytes(encoded).startswith(magic) for magic in IMAGE_MAGIC):
                raise rest_api.RestError(
                    f"Failed to process element: {index} of input {name!r}: not a JPEG, PNG, GIF or BMP image "
                    f"(its first bytes: {bytes(encoded)[:8]!r}). Received: {len(encoded)} bytes"
                )


def _spec(tensor_spec):
    from tensorflow.core.framework import types_pb2

    shape = tuple(-1 if d is None else d for d in tensor_spec.shape.as_list())
    return rest_api.Spec(types_pb2.DataType.Name(tensor_spec.dtype.as_datatype_enum), shape)


def signature_defs(saved_model):
    """The SignatureDefMap of a SavedModel folder as JSON, field names as in the proto and
    every field written, as TensorFlow Serving's metadata answer has it."""
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((pathlib.Path(saved_model) / SAVED_MODEL_FILE).read_bytes())
    defs = proto.meta_graphs[0].signature_def
    return {
        name: json_format.MessageToDict(
            defs[name], preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        for name in sorted(defs)
    }


class Servable:
    """A loaded SavedModel: `inputs` / `outputs` ({signature: {name: rest_api.Spec}}),
    `call(signature, arrays)` -> {name: array}, and what the page shows."""

    def __init__(self, source, log=print):
        import tensorflow as tf

        from inception_tf.modeling import model_files

        self.source, self.name, self.version = source, source.name, source.version
        self._scratch = None
        if source.saved_model is None:
            source.saved_model = self._export(source.keras_file, log)
        try:
            self.loaded = tf.saved_model.load(str(source.saved_model))
        except Exception as error:  # noqa: BLE001: TensorFlow's several kinds of unreadable file
            raise ModelNotLoaded(f"Cannot load the SavedModel in {source.saved_model}: {error}") from None
        self.signatures = dict(self.loaded.signatures)
        self.inputs = {name: {k: _spec(s) for k, s in f.structured_input_signature[1].items()} for name, f in self.signatures.items()}
        self.outputs = {name: {k: _spec(s) for k, s in f.structured_outputs.items()} for name, f in self.signatures.items()}
        self.signature_defs = signature_defs(source.saved_model)
        self.class_names = model_files.read_info(source.saved_model).class_names or []
        images = self.inputs.get("preprocessed", {}).get("inputs")
        self.image_size = images.shape[1] if images else None
        self._explainer = None

    def _export(self, keras_file, log):
        import keras

        from inception_tf.modeling import convert, model_files
        from inception_tf.serving import export

        keras_file = convert.resolve(keras_file, log=log)
        self.source.keras_file = pathlib.Path(keras_file)
        try:
            model = keras.models.load_model(keras_file, compile=False)
        except Exception as error:  # noqa: BLE001: Keras's several kinds of unreadable file
            raise ModelNotLoaded(f"Cannot load the Keras model {keras_file}: {error}") from None
        info = model_files.read_info(keras_file)
        self._scratch = tempfile.mkdtemp(prefix="inception_tf-serve-")
        log(f"exporting {keras_file} to a SavedModel (served from {self._scratch})")
        return export.export_saved_model(
            model, pathlib.Path(self._scratch) / RUN_EXPORT, info.class_names, preprocessing=info.preprocessing
        )

    def callable_inputs(self):
        """{signature: inputs} of the signatures a request may name."""
        return {name: specs for name, specs in self.inputs.items() if name != INIT_SIGNATURE}

    def call(self, signature_name, arrays):
        import tensorflow as tf

        outputs = self.signatures[signature_name](**{name: tf.constant(value) for name, value in arrays.items()})
        return {name: value.numpy() for name, value in outputs.items()}

    @property
    def explains(self):
        return self.source.keras_file is not None

    def explain(self, image):
        """A Grad-CAM overlay (uint8 RGB) of one uint8 RGB image, from the Keras model."""
        from inception_tf.serving import gradcam

        if self._explainer is None:
            self._explainer = gradcam.InMemory(self.source.keras_file, self.class_names)
        return self._explainer(image)

    def close(self):
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
