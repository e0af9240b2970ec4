"""TensorFlow Serving's JSON, both ways, without a model or a server."""

import base64
import json

import numpy as np
import pytest

from inception_tf.serving import rest_api
from inception_tf.serving.rest_api import RestError, Spec

SIGNATURES = {
    "serving_default": {"images": Spec("DT_UINT8", (-1, -1, -1, 3))},
    "image_bytes": {"image_bytes": Spec("DT_STRING", (-1,))},
    "preprocessed": {"inputs": Spec("DT_FLOAT", (-1, 2, 2, 3))},
    "two": {"a": Spec("DT_INT32", (-1, 2)), "b": Spec("DT_FLOAT", (-1,))},
}


def parse(document):
    return rest_api.parse_predict(json.dumps(document).encode(), SIGNATURES)


def test_rows_become_one_batch_of_the_signatures_dtype():
    pixels = np.arange(2 * 3 * 4 * 3).reshape(2, 3, 4, 3) % 256
    request = parse({"instances": pixels.tolist()})
    assert (request.signature_name, request.format, request.rows) == ("serving_default", "instances", 2)
    assert request.inputs["images"].dtype == np.uint8
    np.testing.assert_array_equal(request.inputs["images"], pixels)


def test_columnar_and_named_rows_read_the_same_tensors():
    a, b = [[1, 2], [3, 4], [5, 6]], [0.5, 1.5, -2.0]
    columnar = parse({"signature_name": "two", "inputs": {"a": a, "b": b}})
    rows = parse({"signature_name": "two", "instances": [{"a": x, "b": y} for x, y in zip(a, b)]})
    for request in (columnar, rows):
        assert request.inputs["a"].dtype == np.int32 and request.inputs["b"].dtype == np.float32
        np.testing.assert_array_equal(request.inputs["a"], a)
        np.testing.assert_array_equal(request.inputs["b"], b)
    assert (columnar.format, rows.format) == ("inputs", "instances")


def test_b64_objects_become_bytes_exactly():
    payloads = [b"\x89PNG\r\n\x1a\n\x00\x00", b"\xff\xd8\xff\x00"]  # trailing zero bytes kept
    request = parse({"signature_name": "image_bytes", "instances": [{"b64": base64.b64encode(p).decode()} for p in payloads]})
    assert list(request.inputs["image_bytes"]) == payloads
    single = parse({"signature_name": "image_bytes", "inputs": [{"b64": base64.b64encode(payloads[0]).decode()}]})
    assert list(single.inputs["image_bytes"]) == payloads[:1]


@pytest.mark.parametrize(
    "document, message",
    [
        ({"instances": [[[[1, 2, 3]]]], "inputs": [[[[1, 2, 3]]]]}, "only one of 'inputs' or 'instances'"),
        ({"signature_name": "nope", "instances": [1]}, 'signature name: "nope" not found'),
        ({"signature_name": 3, "instances": [1]}, "'signature_name' key must be a string"),
        ({"instance": [1]}, "Missing 'inputs' or 'instances' key"),
        ({"instances": []}, "No values in 'instances'"),
        ({"instances": {"images": 1}}, "Excepting 'instances' to be an list/array"),
        ({"instances": [{"pixels": [[[1, 2, 3]]]}]}, r"keys must be equal to: images"),
        ({"inputs": {"pixels": [[[[1, 2, 3]]]]}}, "does not have named input: pixels"),
        ({"signature_name": "two", "inputs": {"a": [[1, 2]]}}, "Missing named input: b"),
        ({"instances": [[[[1.5, 2, 3]]]]}, r"element: 0 of 'instances' list. Error: JSON Value: 1.5 is not of expected type: uint8"),
        ({"instances": [[[[300, 2, 3]]]]}, r"JSON Value: 300 is out of the range of uint8 \[0, 255\]"),
        ({"instances": [[[[1, 2, 3]]], [[[1, 2, 3], [4, 5, 6]]]]}, r"Expecting shape \[1, 1, 3\] but got: \[1, 2, 3\]"),
        ({"instances": [[[1, 2], [3]]]}, "Encountered list at unexpected size"),
        ({"instances": [[1, 2, 3]]}, r"takes shape \[-1,-1,-1,3\].*Received: shape \[1,3\]"),
        ({"signature_name": "preprocessed", "inputs": [[[[0.0] * 3] * 2] * 3]}, r"Received: shape \[1,3,2,3\]"),
        ({"signature_name": "image_bytes", "instances": [{"b64": "not base64!"}]}, "Unable to base64 decode"),
        ({"signature_name": "image_bytes", "instances": [7]}, "is not of expected type: string"),
        ({"signature_name": "two", "inputs": {"a": [[1, 2]], "b": [1.0, 2.0]}}, "different batch sizes"),
    ],
)
def test_bad_requests_are_refused_with_what_is_wrong(document, message):
    with pytest.raises(RestError, match=message) as raised:
        parse(document)
    assert raised.value.status == 400
    assert json.loads(raised.value.body()) == {"error": str(raised.value)}


def test_a_body_that_is_not_json_or_not_an_object():
    for body, message in ((b"", "The document is empty"), (b"{bad", "JSON Parse error"), (b"[1, 2]", "Is not object")):
        with pytest.raises(RestError, match=message):
            rest_api.parse_predict(body, SIGNATURES)


def test_answers_in_the_requests_format():
    outputs = {
        "probabilities": np.array([[0.1, 0.9], [0.7, 0.3]], np.float32),
        "top_k_classes": np.array([[b"cat", b"dog"], [b"dog", b"cat"]], object),
        "top_k_indices": np.array([[1, 0], [0, 1]], np.int32),
    }
    rows = json.loads(rest_api.format_predict(outputs, "instances"))
    assert rows == {"predictions": [
        {"probabilities": [0.1, 0.9], "top_k_classes": ["cat", "dog"], "top_k_indices": [1, 0]},
        {"probabilities": [0.7, 0.3], "top_k_classes": ["dog", "cat"], "top_k_indices": [0, 1]},
    ]}
    columns = json.loads(rest_api.format_predict(outputs, "inputs"))
    assert columns["outputs"]["probabilities"] == [[0.1, 0.9], [0.7, 0.3]]
    one = json.loads(rest_api.format_predict({"probabilities": outputs["probabilities"]}, "instances"))
    assert one == {"predictions": [[0.1, 0.9], [0.7, 0.3]]}  # one output: the values themselves
    assert json.loads(rest_api.format_predict({"probabilities": outputs["probabilities"]}, "inputs")) == {
        "outputs": [[0.1, 0.9], [0.7, 0.3]]}


def test_float32_is_written_as_the_shortest_decimal_that_reads_back():
    values = np.array([[0.1, 1 / 3, 1e-8, 123456.79]], np.float32)
    text = rest_api.format_predict({"p": values}, "instances").decode()
    assert "0.1," in text and "0.33333334" in text and "0.10000000149" not in text
    np.testing.assert_array_equal(np.array(json.loads(text)["predictions"], np.float32), values)


def test_string_outputs_named_bytes_travel_as_b64():
    answer = json.loads(rest_api.format_predict({"thumbnail_bytes": np.array([b"\x00\xff"], object)}, "instances"))
    assert answer == {"predictions": [{"b64": base64.b64encode(b"\x00\xff").decode()}]}


def test_status_and_metadata_shapes():
    assert rest_api.model_status(3)["model_version_status"] == [
        {"version": "3", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
    metadata = rest_api.model_metadata("googlenet", 3, {"serving_default": {"method_name": "tensorflow/serving/predict"}})
    assert metadata["model_spec"] == {"name": "googlenet", "signature_name": "", "version": "3"}
    assert metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]["method_name"] == "tensorflow/serving/predict"
