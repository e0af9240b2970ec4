"""LiteRT (TensorFlow Lite) flatbuffers of the main head, and running them.

A `.tflite` file holds the SavedModel's `preprocessed` signature: float32
[batch, size, size, 3] already normalised (`preprocessing.normalize`) in,
`probabilities` out. LiteRT has LRN as a builtin but not `crop_and_resize`, so decoding
and resizing stay with the caller; `predict` uses `image_input.preprocess_images`, the function
evaluation and the SavedModel use.

Quantizations (`choices.LITERT_QUANTIZATIONS`):
- "float32": the SavedModel's arithmetic.
- "float16": weights stored in float16, computed in float32 (half the file).
- "int8": full-integer: weights and activations in int8, int8 input and output,
  calibrated on training images passed through the model's own preprocessing.

The file carries what a runtime needs beside it, in a flatbuffer metadata entry named
`METADATA` (JSON, `read_info`): class names, preprocessing mode, image size,
quantization, and the int8 input/output scale and zero point (also in the tensors' own
quantization parameters, where any LiteRT runtime reads them).
"""

import json
import os
import pathlib
import warnings

import numpy as np

from inception_tf import choices, files
from inception_tf.modeling import preprocessing as preprocessing_lib

CALIBRATION_IMAGES = 300  # TensorFlow's guide suggests 100-500; the ranges settle well before 300
METADATA = "inception_tf"
SUFFIX = ".tflite"
INSTALL_HINT = "pip install 'inception_tf[tflite]' (the ai-edge-litert package)"


class LiteRTMissing(ImportError):
    """The `ai_edge_litert` interpreter is not installed."""


def check_quantization(quantization):
    if quantization not in choices.LITERT_QUANTIZATIONS:
        raise ValueError(f"`quantization` must be one of {choices.LITERT_QUANTIZATIONS}. Received: quantization={quantization!r}")
    return quantization


def tflite_path(saved_model, quantization):
    """Where the export command writes a quantization: beside the SavedModel folder,
    `exported/googlenet` -> `exported/googlenet-int8.tflite`."""
    saved_model = pathlib.Path(saved_model)
    return saved_model.with_name(f"{saved_model.name}-{check_quantization(quantization)}{SUFFIX}")


# --- Conversion -------------------------------------------------------------------------

def to_flatbuffer(saved_model, quantization="float32", calibration=None):
    """The flatbuffer (bytes) of the `preprocessed` signature of an inference SavedModel
    written by `export.export_saved_model`.

    Args:
        saved_model: the SavedModel folder.
        quantization: one of `choices.LITERT_QUANTIZATIONS`.
        calibration: for "int8", float32 [n, size, size, 3] preprocessed inputs
            (`data.calibration_inputs`) over which the activation ranges are measured.
    """
    import tensorflow as tf

    from inception_tf.serving.export import PREPROCESSED_INPUT, SIGNATURE_PREPROCESSED

    check_quantization(quantization)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=[SIGNATURE_PREPROCESSED])
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        if calibration is None or np.ndim(calibration) != 4 or len(calibration) == 0:
            raise ValueError(
                "int8 quantization needs calibration inputs, float32 [n, size, size, 3]. "
                f"Received: calibration with shape {None if calibration is None else np.shape(calibration)}"
            )
        calibration = np.asarray(calibration, np.float32)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            {PREPROCESSED_INPUT: calibration[i : i + 1]} for i in range(len(calibration))
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    with warnings.catch_warnings():
        # int8 calibration runs TensorFlow's own deprecated tf.lite.Interpreter inside the converter.
        warnings.filterwarnings("ignore", message=r"(?s).*tf.lite.Interpreter is deprecated")
        return converter.convert()


def _tensor_quantization(model, tensor_index):
    quantization = model.subgraphs[0].tensors[tensor_index].quantization
    if quantization is None or quantization.scale is None or len(quantization.scale) == 0:
        return None
    return {"scale": float(quantization.scale[0]), "zero_point": int(quantization.zeroPoint[0])}


def with_info(flatbuffer, info):
    """`flatbuffer` with `info` (a JSON-able dict) in its metadata entry METADATA, with
    the input size and the input and output quantization read from its tensors added."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    graph = model.subgraphs[0]
    info = dict(
        info,
        image_size=int(graph.tensors[graph.inputs[0]].shape[1]),
        input=_tensor_quantization(model, graph.inputs[0]),
        output=_tensor_quantization(model, graph.outputs[0]),
    )
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(info, indent=1).encode(), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in model.metadata or [] if _name(m.name) != METADATA] + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _name(name):
    return name.decode() if isinstance(name, bytes) else name


def read_info(path):
    """The METADATA dict of a `.tflite` file written by `write_tflite`; raises ValueError
    naming the file when it has none."""
    from tensorflow.lite.python import schema_py_generated as schema

    path = pathlib.Path(path)
    content = path.read_bytes()
    try:
        model = schema.Model.GetRootAs(content, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if _name(entry.Name()) == METADATA:
                return json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
    except Exception as error:  # flatbuffers raises struct/index errors on foreign bytes
        raise ValueError(f"{path} is not a LiteRT flatbuffer ({error}). Received: model={str(path)!r}") from None
    raise ValueError(
        f"{path} carries no {METADATA!r} metadata (class names, preprocessing): write it with "
        f"`python -m inception_tf export --tflite`. Received: model={str(path)!r}"
    )


def write_tflite(saved_model, path, quantization="float32", calibration=None, class_names=None, preprocessing="tf",
                 calibrated_on=None):
    """Converts the SavedModel (`to_flatbuffer`) and writes `path` atomically with its info.

    `class_names` default to the SavedModel's `assets/labels.txt`; `calibrated_on` (a
    short description of the calibration images) is recorded for int8.
    """
    from inception_tf.modeling import model_files

    preprocessing_lib.check_mode(preprocessing)
    if class_names is None:
        class_names = model_files.read_info(saved_model).class_names
    flatbuffer = to_flatbuffer(saved_model, quantization, calibration)
    info = {
        "format": 1,
        "quantization": quantization,
        "preprocessing": preprocessing,
        "class_names": None if class_names is None else list(class_names),
        "calibrated_on": calibrated_on if quantization == "int8" else None,
    }
    path = pathlib.Path(path)
    with files.atomic_path(path, suffix=SUFFIX) as tmp:
        pathlib.Path(tmp).write_bytes(with_info(flatbuffer, info))
    return path


# --- Running ------------------------------------------------------------------------------

class LiteRTModel:
    """Probabilities of a `.tflite` file written by `write_tflite`, with the
    `ai_edge_litert` interpreter: `model(inputs)` takes preprocessed float32
    [n, size, size, 3] and returns float32 [n, num_classes], quantizing and dequantizing
    int8 with the scales the file records.
    """

    def __init__(self, path, num_threads=None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise LiteRTMissing(f"Running a .tflite model needs LiteRT: {INSTALL_HINT}.") from None
        self.info = read_info(path)
        self.image_size = self.info["image_size"]
        self._interpreter = Interpreter(model_path=str(path), num_threads=num_threads or os.cpu_count())
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._batch = None

    def _resize(self, batch):
        if batch != self._batch:
            self._interpreter.resize_tensor_input(self._input["index"], [batch, self.image_size, self.image_size, 3])
            self._interpreter.allocate_tensors()
            self._output = self._interpreter.get_output_details()[0]
            self._batch = batch

    def __call__(self, inputs):
        inputs = np.asarray(inputs, np.float32)
        self._resize(len(inputs))
        self._interpreter.set_tensor(self._input["index"], _quantize(inputs, self._input))
        self._interpreter.invoke()
        return _dequantize(self._interpreter.get_tensor(self._output["index"]), self._output)


def _quantize(values, details):
    if details["dtype"] == np.float32:
        return values
    scale, zero_point = details["quantization"]
    limits = np.iinfo(details["dtype"])
    return np.clip(np.round(values / scale) + zero_point, limits.min, limits.max).astype(details["dtype"])


def _dequantize(values, details):
    if details["dtype"] == np.float32:
        return values
    scale, zero_point = details["quantization"]
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)
