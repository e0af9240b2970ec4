"""TensorFlow Serving's REST API, as JSON in and out: no TensorFlow, no HTTP here.

The request and response shapes, the `b64` convention and the wording of the errors
follow TensorFlow Serving's `json_tensor.cc` and its REST API documentation
(https://www.tensorflow.org/tfx/serving/api_rest), so that a client written for
TensorFlow Serving reads the same answers from `serve`:

- row format: `{"signature_name": ..., "instances": [ROW, ...]}` -> `{"predictions": [...]}`,
  each row a value (one input) or an object of named inputs; a prediction is a value
  (one output) or an object of named outputs.
- columnar format: `{"inputs": VALUE or {NAME: VALUE}}` -> `{"outputs": VALUE or {NAME: VALUE}}`.
- binary strings travel as `{"b64": "..."}`; a string output whose name ends in `_bytes`
  is written that way, other strings as text.

Stricter than TensorFlow Serving in one way: a request's shapes, dtypes and input names
are checked against the signature before it runs, so a bad request is refused on its own
and never joins a batch with good ones (`batching`).
"""

import base64
import binascii
import dataclasses
import json

import numpy as np

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
ROW, COLUMNAR = "instances", "inputs"
BYTES_SUFFIX = "_bytes"

# TensorFlow's DataType names -> what a JSON value of that type becomes.
NUMPY_DTYPES = {
    "DT_FLOAT": np.float32, "DT_DOUBLE": np.float64, "DT_HALF": np.float16,
    "DT_UINT8": np.uint8, "DT_INT8": np.int8, "DT_INT16": np.int16, "DT_INT32": np.int32, "DT_INT64": np.int64,
    "DT_BOOL": np.bool_, "DT_STRING": object,
}


class RestError(Exception):
    """An answer other than 200: `status` (400, 404, 413, ...) and TensorFlow Serving's
    `{"error": message}` body."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status

    def body(self):
        return json.dumps({"error": str(self)}).encode()


@dataclasses.dataclass(frozen=True)
class Spec:
    """One tensor of a signature: its DataType name and shape (-1 where any size goes; the
    first dimension is the batch)."""

    dtype: str
    shape: tuple

    def shape_text(self):
        return "[" + ",".join(str(d) for d in self.shape) + "]"


@dataclasses.dataclass
class Request:
    """A parsed `:predict` body: the signature's name, the format to answer in, and one
    array per named input, all with the same number of rows."""

    signature_name: str
    format: str
    inputs: dict

    @property
    def rows(self):
        return len(next(iter(self.inputs.values())))


def _json_text(value, limit=80):
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_b64(value):
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _decode_b64(value):
    try:
        return base64.b64decode(value["b64"] + "=" * (-len(value["b64"]) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise RestError("Unable to base64 decode") from None


def _strings(value):
    """A (nested) list of strings and `{"b64": ...}` objects as an object array of bytes."""
    if isinstance(value, list):
        return [_strings(item) for item in value]
    if _is_b64(value):
        return _decode_b64(value)
    if isinstance(value, str):
        return value.encode()
    raise RestError(f"JSON Value: {_json_text(value)} Type: {type(value).__name__} is not of expected type: string")


def _first_bad_number(value, integer):
    """The first leaf of a nested list that is not a JSON number (an integer when
    `integer`), or None: only on the error path, where its text goes into the message."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, bool) or not isinstance(item, int if integer else (int, float)):
            return item
    return None


RAGGED = "Encountered list at unexpected size: the lists of one level must have equal lengths"


def _rectangular(value):
    """`value` as a NumPy array, refusing ragged lists as TensorFlow Serving does."""
    try:
        return np.array(value)
    except ValueError:
        raise RestError(RAGGED) from None


def _object_array(nested):
    """Nested lists of bytes as an object array: NumPy's own bytes arrays would drop
    trailing zero bytes, which binary data may end with."""
    shape, probe = [], nested
    while isinstance(probe, list):
        shape.append(len(probe))
        probe = probe[0] if probe else None
    array = np.empty(shape, object)

    def fill(index, item):
        if len(index) == len(shape):
            if isinstance(item, list):
                raise RestError(RAGGED)
            array[index] = item
            return
        if not isinstance(item, list) or len(item) != shape[len(index)]:
            raise RestError(RAGGED)
        for position, inner in enumerate(item):
            fill(index + (position,), inner)

    fill((), nested)
    return array


def to_array(value, spec, name):
    """A JSON value (nested lists of numbers, strings or b64 objects) as an array of
    `spec`'s dtype; RestError names the value that does not fit."""
    dtype = NUMPY_DTYPES.get(spec.dtype)
    if dtype is None:
        raise RestError(f"Conversion of JSON values to type {spec.dtype} (input {name!r}) is not supported")
    if dtype is object:
        return _object_array(_strings(value))
    array = _rectangular(value)
    integer = np.issubdtype(dtype, np.integer)
    if dtype is np.bool_:
        wrong_kind = array.dtype != bool
    else:
        wrong_kind = array.dtype.kind not in ("iu" if integer else "iuf")
    if wrong_kind:
        bad = _first_bad_number(value, integer) if dtype is not np.bool_ else value
        raise RestError(f"JSON Value: {_json_text(bad)} is not of expected type: {spec.dtype[3:].lower()}")
    if integer and array.size:
        info = np.iinfo(dtype)
        low, high = array.min(), array.max()
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise RestError(f"JSON Value: {bad} is out of the range of {spec.dtype[3:].lower()} [{info.min}, {info.max}]")
    return array.astype(dtype)


def check_shape(array, spec, name, signature_name):
    """`array` (batch first) against the signature's shape for input `name`."""
    fits = array.ndim == len(spec.shape) and all(want in (-1, got) for want, got in zip(spec.shape, array.shape))
    if not fits:
        got = "[" + ",".join(str(d) for d in array.shape) + "]"
        raise RestError(
            f"Input {name!r} of signature {signature_name!r} takes shape {spec.shape_text()} "
            f"(-1: any size; the first is the batch). Received: shape {got}"
        )


def _parse_body(body):
    import orjson  # the serve extra's, loaded with the first request: the command line starts without it

    if not body:
        raise RestError("JSON Parse error: The document is empty")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise RestError(f"JSON Parse error: {error}") from None
    if not isinstance(document, dict):
        raise RestError(f"JSON Value: {_json_text(document)} Is not object")
    return document


def _signature(document, signatures):
    name = document.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(name, str):
        raise RestError(
            f"JSON Value: {_json_text(document)} not formatted correctly. 'signature_name' key must be a string value."
        )
    name = name or DEFAULT_SIGNATURE
    if name not in signatures or not signatures[name]:
        known = ", ".join(sorted(n for n, inputs in signatures.items() if inputs))
        raise RestError(f"Serving signature name: \"{name}\" not found in signature def (signatures: {known})")
    return name


def _from_instances(instances, inputs):
    if not isinstance(instances, list):
        raise RestError("Excepting 'instances' to be an list/array")
    if not instances:
        raise RestError("No values in 'instances' array")
    named = isinstance(instances[0], dict) and not _is_b64(instances[0])
    if not named and len(inputs) > 1:
        raise RestError("instances is a plain list, but expecting list of objects as multiple input tensors required")
    columns = {name: [] for name in inputs}
    for index, row in enumerate(instances):
        if named != (isinstance(row, dict) and not _is_b64(row)):
            kind = "object" if named else "value/list"
            raise RestError(f"Expecting {kind} at item {index} of input list, like item 0")
        items = row if named else {next(iter(inputs)): row}
        if set(items) != set(inputs):
            raise RestError(
                f"Failed to process element: {index} of 'instances' list. JSON object: {_json_text(row)} "
                f"keys must be equal to: {','.join(sorted(inputs))}"
            )
        for name, value in items.items():
            try:
                array = to_array(value, inputs[name], name)
            except RestError as error:
                where = f"{index} key: {name}" if named else f"{index}"
                raise RestError(f"Failed to process element: {where} of 'instances' list. Error: {error}") from None
            if columns[name] and array.shape != columns[name][0].shape:
                raise RestError(
                    f"Expecting shape {list(columns[name][0].shape)} but got: {list(array.shape)} "
                    f"(element {index} key: {name} of 'instances' list)"
                )
            columns[name].append(array)
    return {name: np.stack(arrays) for name, arrays in columns.items()}


def _from_inputs(value, inputs):
    if not isinstance(value, dict) or _is_b64(value):
        if len(inputs) > 1:
            raise RestError("inputs is a plain value/list, but expecting an object as multiple input tensors required")
        value = {next(iter(inputs)): value}
    unknown = sorted(set(value) - set(inputs))
    if unknown:
        raise RestError(f"JSON object: does not have named input: {unknown[0]} (the inputs: {', '.join(sorted(inputs))})")
    arrays = {}
    for name in inputs:
        if name not in value:
            raise RestError(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = to_array(value[name], inputs[name], name)
    batch = {array.shape[0] if array.ndim else None for array in arrays.values()}
    if len(batch) > 1:
        raise RestError(f"The inputs have different batch sizes: {sorted(map(str, batch))}")
    return arrays


def parse_predict(body, signatures):
    """A `:predict` body (bytes) -> `Request`. `signatures` maps each signature's name to
    its inputs ({name: Spec}); RestError (400) says what does not fit."""
    document = _parse_body(body)
    name = _signature(document, signatures)
    inputs = signatures[name]
    if ROW in document and COLUMNAR in document:
        raise RestError("Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist")
    if ROW in document:
        arrays, format_ = _from_instances(document[ROW], inputs), ROW
    elif COLUMNAR in document:
        arrays, format_ = _from_inputs(document[COLUMNAR], inputs), COLUMNAR
    else:
        raise RestError("Missing 'inputs' or 'instances' key")
    for input_name, array in arrays.items():
        check_shape(array, inputs[input_name], input_name, name)
    return Request(name, format_, arrays)


def _jsonable(name, array):
    """An output array as JSON values: float32 as the shortest decimal that reads back to
    the same float32 (as TensorFlow Serving writes them), strings as text or b64."""
    array = np.asarray(array)
    if array.dtype == object or array.dtype.kind == "S":
        encode = (lambda b: {"b64": base64.b64encode(b).decode()}) if name.endswith(BYTES_SUFFIX) else (
            lambda b: b.decode("utf-8", "replace"))
        flat = [encode(bytes(item)) for item in array.ravel()]
        return np.array(flat + [None], object)[:-1].reshape(array.shape).tolist()
    if array.dtype in (np.float32, np.float16):
        return array.astype(str).astype(np.float64).tolist()
    return array.tolist()


def format_predict(outputs, format_):
    """The JSON body (bytes) answering a request in `format_` with `outputs` ({name: array},
    batch first)."""
    names = sorted(outputs)
    columns = {name: _jsonable(name, outputs[name]) for name in names}
    if format_ == COLUMNAR:
        answer = {"outputs": columns[names[0]] if len(names) == 1 else columns}
    elif len(names) == 1:
        answer = {"predictions": columns[names[0]]}
    else:
        rows = len(columns[names[0]])
        answer = {"predictions": [{name: columns[name][row] for name in names} for row in range(rows)]}
    return json.dumps(answer).encode()


def model_status(version):
    """`GET /v1/models/NAME[/versions/N]`: the one version served, AVAILABLE."""
    return {
        "model_version_status": [
            {"version": str(version), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }


def model_metadata(name, version, signature_defs):
    """`GET /v1/models/NAME[/versions/N]/metadata`: `signature_defs` is the SignatureDefMap
    as JSON, field names as in the proto."""
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(version)},
        "metadata": {"signature_def": {"signature_def": signature_defs}},
    }
