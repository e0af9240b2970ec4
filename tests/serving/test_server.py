"""`python -m inception_tf serve`: TensorFlow Serving's REST API, answered as the
signatures answer when called directly, its errors, batching, SIGTERM, and the page in a
real browser. One server process serves every test that needs one; the last test stops it.
"""

import base64
import concurrent.futures
import http.client
import json
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from inception_tf import GoogLeNet, export_saved_model
from inception_tf.modeling import model_files
from inception_tf.serving import servable

from runs import ROOT, command_here, env

CLASSES = ["tee", "trouser", "pullover", "dress", "coat"]
LIMIT = 3_000_000  # --max-request-bytes of the shared server
CHROMIUM = "/usr/bin/chromium"  # Debian's; .ci/run installs it
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--no-first-run"]
SCREENSHOT = ROOT / "docs" / "serve_page.png"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory as training leaves it, as far as `serve` reads one."""
    run = tmp_path_factory.mktemp("serve") / "tiny-run"
    run.mkdir()
    model = GoogLeNet(num_classes=len(CLASSES), input_shape=(64, 64, 3), variant="bn", aux_heads=False)
    model_files.save_keras(model, run / "model.keras", CLASSES)
    export_saved_model(model, run / "saved_model", CLASSES)
    (run / "config.json").write_text("{}\n")
    return run


class Server:
    def __init__(self, run_dir, log):
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "inception_tf", "serve", str(run_dir), "--port", "0", "--max-request-bytes", str(LIMIT)],
            stdout=subprocess.PIPE, stderr=log.open("w"), text=True, env=env(), cwd=ROOT,
        )
        self.url = self.process.stdout.readline().strip()
        assert self.url.startswith("http://127.0.0.1:"), (self.url, log.read_text()[-3000:])
        self.port = int(self.url.rstrip("/").rsplit(":", 1)[1])
        self.banner = self.process.stdout.readline()

    def call(self, method, path, body=None):
        """`(status, parsed JSON)` of one request; `body` a dict (sent as JSON) or bytes."""
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(self.url.rstrip("/") + path, data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def predict(self, body, name="tiny-run"):
        return self.call("POST", f"/v1/models/{name}:predict", body)


@pytest.fixture(scope="module")
def server(run_dir, tmp_path_factory):
    started = Server(run_dir, tmp_path_factory.mktemp("serve-log") / "stderr.txt")
    yield started
    if started.process.poll() is None:
        started.process.kill()
        started.process.wait(60)


@pytest.fixture(scope="module")
def signatures(run_dir):
    """The export's signatures called directly in TensorFlow: the answers to match."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(run_dir / "saved_model"))

    def call(name, **inputs):
        outputs = loaded.signatures[name](**{key: tf.constant(value) for key, value in inputs.items()})
        return {key: value.numpy() for key, value in outputs.items()}

    return call


def pixels(count, height=40, width=50, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def png(image):
    return cv2.imencode(".png", image[..., ::-1])[1].tobytes()


def b64(data):
    return {"b64": base64.b64encode(data).decode()}


def assert_same(answer_rows, expected):
    """Rows of a JSON answer against a signature's outputs: numbers to 1e-6, names equal."""
    for name, values in expected.items():
        got = np.array([row[name] for row in answer_rows])
        if values.dtype == object:
            np.testing.assert_array_equal(got, values.astype(str))
        else:
            np.testing.assert_allclose(got, values, rtol=0, atol=1e-6)


def test_the_first_line_is_the_page_and_the_page_names_the_model(server):
    assert "model tiny-run version 1" in server.banner and "batching up to 16 rows" in server.banner
    with urllib.request.urlopen(server.url, timeout=60) as response:
        page = response.read().decode()
    assert response.headers["content-type"].startswith("text/html")
    assert '"name": "tiny-run"' in page and '"classes": ["tee", "trouser"' in page and '"explains": true' in page


def test_model_status_and_metadata_as_tensorflow_serving_gives_them(server):
    for path in ("/v1/models/tiny-run", "/v1/models/tiny-run/versions/1"):
        assert server.call("GET", path) == (200, {"model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})
    status, metadata = server.call("GET", "/v1/models/tiny-run/metadata")
    assert status == 200 and metadata["model_spec"] == {"name": "tiny-run", "signature_name": "", "version": "1"}
    defs = metadata["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "image_bytes", "preprocessed"} <= set(defs)
    images = defs["serving_default"]["inputs"]["images"]
    assert images["dtype"] == "DT_UINT8" and [d["size"] for d in images["tensor_shape"]["dim"]] == ["-1", "-1", "-1", "3"]
    assert defs["image_bytes"]["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert defs["serving_default"]["method_name"] == "tensorflow/serving/predict"
    assert set(defs["serving_default"]["outputs"]) == {"probabilities", "top_k_classes", "top_k_indices", "top_k_scores"}


def test_the_row_format_answers_what_serving_default_answers(server, signatures):
    images = pixels(3)
    status, answer = server.predict({"instances": images.tolist()})
    assert status == 200 and len(answer["predictions"]) == 3
    assert_same(answer["predictions"], signatures("serving_default", images=images))
    # A request to the version path, and `signature_name` given, answer the same.
    status, versioned = server.call("POST", "/v1/models/tiny-run/versions/1:predict",
                                    {"signature_name": "serving_default", "instances": images.tolist()})
    assert status == 200 and versioned == answer


def test_the_columnar_format_answers_in_columns(server, signatures):
    images = pixels(2, 64, 30, seed=1)
    status, answer = server.predict({"inputs": {"images": images.tolist()}})
    assert status == 200 and set(answer) == {"outputs"}
    expected = signatures("serving_default", images=images)
    np.testing.assert_allclose(answer["outputs"]["probabilities"], expected["probabilities"], rtol=0, atol=1e-6)
    assert answer["outputs"]["top_k_classes"] == expected["top_k_classes"].astype(str).tolist()
    status, plain = server.predict({"inputs": images.tolist()})  # one input: the value itself
    assert status == 200 and plain == answer


def test_b64_images_of_several_sizes_answer_what_image_bytes_answers(server, signatures):
    files = [png(pixels(1, 40, 50, seed=2)[0]), cv2.imencode(".jpg", pixels(1, 90, 70, seed=3)[0])[1].tobytes()]
    status, answer = server.predict({"signature_name": "image_bytes", "instances": [{"image_bytes": b64(f)} for f in files]})
    assert status == 200
    assert_same(answer["predictions"], signatures("image_bytes", image_bytes=np.array(files, object)))
    status, columns = server.predict({"signature_name": "image_bytes", "inputs": [b64(f) for f in files]})
    assert status == 200 and columns["outputs"]["top_k_classes"] == [row["top_k_classes"] for row in answer["predictions"]]


def test_the_preprocessed_signature_answers_probabilities(server, signatures):
    inputs = np.random.default_rng(4).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    status, answer = server.predict({"signature_name": "preprocessed", "instances": inputs.tolist()})
    assert status == 200
    expected = signatures("preprocessed", inputs=inputs)["probabilities"]
    np.testing.assert_allclose(answer["predictions"], expected, rtol=0, atol=1e-6)  # one output: bare rows


GOOD = {"instances": pixels(1, 8, 8).tolist()}
BROKEN_PNG = b"\x89PNG\r\n\x1a\n" + b"not the rest of a png" * 4


@pytest.mark.parametrize(
    "body, status, message",
    [
        (b"{\"instances\": [1, 2", 400, "JSON Parse error"),
        ({**GOOD, "inputs": GOOD["instances"]}, 400, "only one of 'inputs' or 'instances' keys"),
        ({**GOOD, "signature_name": "classify"}, 400, 'Serving signature name: "classify" not found'),
        ({"instances": [{"pixels": GOOD["instances"][0]}]}, 400, "keys must be equal to: images"),
        ({"inputs": {"pixels": GOOD["instances"]}}, 400, "does not have named input: pixels"),
        ({"signature_name": "image_bytes", "instances": [{"b64": "%%%"}]}, 400, "Unable to base64 decode"),
        ({"signature_name": "image_bytes", "instances": [b64(b"GIF? no, text")]}, 400, "element: 0 .*not a JPEG, PNG, GIF or BMP"),
        ({"signature_name": "image_bytes", "instances": [b64(BROKEN_PNG)]}, 400, "(?i)png"),
        ({"instances": pixels(1, 8, 8)[..., :2].tolist()}, 400, r"takes shape \[-1,-1,-1,3\].*Received: shape \[1,8,8,2\]"),
        ({"instances": [[[[0.5, 1, 2]]]]}, 400, "JSON Value: 0.5 is not of expected type: uint8"),
        ({"signature_name": "preprocessed", "instances": [[["x"]]]}, 400, "is not of expected type: float"),
    ],
)
def test_bad_requests_get_tensorflow_servings_error(server, body, status, message):
    got_status, answer = server.predict(body)
    assert got_status == status and set(answer) == {"error"}
    assert re.search(message, answer["error"]), answer["error"]


def test_other_models_versions_and_verbs_are_not_found(server):
    assert server.predict(GOOD, name="resnet") == (404, {"error": "Servable not found for request: Latest(resnet)"})
    status, answer = server.call("POST", "/v1/models/tiny-run/versions/2:predict", GOOD)
    assert status == 404 and answer["error"] == "Servable not found for request: Specific(tiny-run, 2)"
    assert server.call("GET", "/v1/models/resnet")[0] == 404
    assert server.call("POST", "/v1/models/tiny-run:classify", GOOD)[0] == 404
    assert server.call("GET", "/v1/nothing/here") == (404, {"error": "Malformed request: GET /v1/nothing/here"})


def test_a_body_over_the_limit_is_refused_before_it_is_read(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.putrequest("POST", "/v1/models/tiny-run:predict")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(LIMIT + 1))
    connection.endheaders(b'{"instances": [')  # the rest never comes: the answer cannot wait for it
    response = connection.getresponse()
    assert response.status == 413
    assert f"over the limit of {LIMIT} bytes" in json.loads(response.read())["error"]
    connection.close()
    # Without a Content-Length (chunked), the limit stops the reading as it passes.
    chunks = (b"[" + b"0," * 65536 for _ in range(LIMIT // 131072 + 2))
    request = urllib.request.Request(server.url + "v1/models/tiny-run:predict", data=chunks, method="POST",
                                     headers={"Transfer-Encoding": "chunked"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 413


def test_concurrent_requests_are_batched_and_a_bad_one_disturbs_none(server, signatures):
    images = pixels(12, 32, 32, seed=5)
    files = [png(image) for image in images]
    expected = signatures("image_bytes", image_bytes=np.array(files, object))

    def send(index):
        if index % 4 == 3:  # a PNG header on a broken body: it fails inside the model's graph
            return index, server.predict({"signature_name": "image_bytes", "instances": [b64(BROKEN_PNG)]})
        return index, server.predict({"signature_name": "image_bytes", "instances": [b64(files[index])]})

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = dict(pool.map(send, range(12)))
    for index, (status, answer) in answers.items():
        if index % 4 == 3:
            assert status == 400 and "png" in answer["error"].lower(), answer
        else:
            assert status == 200, answer
            assert_same(answer["predictions"], {k: v[index:index + 1] for k, v in expected.items()})


def test_the_page_in_chromium_shows_the_top_class_the_api_gives(server, tmp_path):
    from playwright.sync_api import sync_playwright

    assert pathlib.Path(CHROMIUM).exists(), "the page's test needs Debian's chromium: apt-get install chromium (.ci/run does)"
    from inception_tf.dataloaders import catalog

    # A Fashion-MNIST test image as a user would have it: a grayscale PNG file.
    image = catalog.load_source("fashion_mnist", limit=8).splits["test"].images[0]
    picture = tmp_path / "ankle_boot.png"
    picture.write_bytes(cv2.imencode(".png", cv2.resize(image, (112, 112), interpolation=cv2.INTER_NEAREST))[1].tobytes())
    status, answer = server.predict({"signature_name": "image_bytes", "instances": [b64(picture.read_bytes())]})
    assert status == 200
    with sync_playwright() as playwright:
        # Playwright starts the browser with a new, empty profile folder of its own.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 640})
            page.goto(server.url)
            assert "tiny-run" in page.inner_text("#title")
            page.set_input_files("#files", str(picture))
            page.wait_for_selector(".result[data-state=done]", timeout=60_000)
            shown = page.get_attribute(".result", "data-top-class")
            rows = page.locator(".result .row").all_inner_texts()
            page.wait_for_selector(".result img.gradcam", timeout=60_000)
            if not SCREENSHOT.exists():  # committed once; delete it to take a new one
                page.screenshot(path=str(SCREENSHOT))
        finally:
            browser.close()
    assert shown == answer["predictions"][0]["top_k_classes"][0]
    assert len(rows) == 5 and rows[0].startswith(shown)
    assert f"{answer['predictions'][0]['top_k_scores'][0]:.3f}" in rows[0]


def test_sigterm_finishes_the_requests_in_flight_and_exits_0(server):
    """Last: it stops the shared server."""
    body = json.dumps({"instances": pixels(32, 64, 64, seed=7).tolist()}).encode()  # a while in the model
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    connection.request("POST", "/v1/models/tiny-run:predict", body, {"Content-Type": "application/json"})
    time.sleep(0.2)  # the body is sent; the server is reading or running it
    server.process.terminate()
    response = connection.getresponse()
    assert response.status == 200 and len(json.loads(response.read())["predictions"]) == 32
    connection.close()
    out, _ = server.process.communicate(timeout=120)
    assert server.process.returncode == 0, server.log.read_text()[-3000:]
    # The 32 rows went to the model in slices of --max-batch-size (16); the suite's
    # requests were all counted by this process.
    closing = out.strip().splitlines()[-1]
    assert re.fullmatch(r"stopped: \d+ predict requests, \d+ of them joined with others; \d+ model calls of \d+ rows, "
                        r"the largest 16", closing), closing


def test_a_model_that_cannot_load_exits_2_with_one_line(tmp_path):
    code, out, err = command_here("serve", tmp_path / "missing")
    assert (code, out) == (2, "") and err.strip().count("\n") == 0 and "No model at" in err
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "saved_model.pb").write_bytes(b"not a protobuf")
    code, out, err = command_here("serve", tmp_path / "broken", "--port", "0")
    assert (code, out) == (2, "") and "Cannot load the SavedModel" in err and "Traceback" not in err
    code, _, err = command_here("serve", tmp_path, "--port", "0")
    assert code == 2 and "holds no SavedModel" in err


def test_a_port_in_use_exits_2_naming_it(run_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = command_here("serve", run_dir / "saved_model", "--port", port)
    assert (code, out) == (2, "") and f"Cannot listen on 127.0.0.1:{port}" in err and "--port" in err


def test_where_each_kind_of_model_is_found(run_dir, tmp_path):
    assert servable.locate(run_dir) == servable.Source(run_dir / "saved_model", 1, "tiny-run", run_dir / "model.keras")
    assert servable.locate(run_dir / "saved_model").name == "tiny-run"
    assert servable.locate(run_dir / "model.keras").keras_file == run_dir / "model.keras"
    base = tmp_path / "googlenet"
    for version in ("1", "3", "20"):
        shutil.copytree(run_dir / "saved_model", base / version)
    (base / "notes").mkdir()
    assert servable.locate(base) == servable.Source(base / "20", 20, "googlenet")  # the highest, as TensorFlow Serving
    with pytest.raises(servable.ModelNotLoaded, match="serve takes a SavedModel folder"):
        servable.locate(run_dir / "config.json")
    # BVLC's weights: converted once to .keras (as every command takes the word), then exported.
    assert servable.locate("imagenet") == servable.Source(None, 1, "googlenet", keras_file="imagenet")


def test_a_keras_file_is_served_as_its_export_would_be(run_dir, signatures):
    model = servable.Servable(servable.locate(run_dir / "model.keras"), log=lambda line: None)
    try:
        scratch = model.source.saved_model
        assert scratch.is_dir() and model.class_names == CLASSES and model.explains
        images = pixels(2)
        got = model.call("serving_default", {"images": images})
        np.testing.assert_allclose(got["probabilities"], signatures("serving_default", images=images)["probabilities"], atol=1e-6)
        overlay = model.explain(images[0])
        assert overlay.dtype == np.uint8 and overlay.shape[2] == 3 and overlay.shape[0] > 224
    finally:
        model.close()
    assert not scratch.exists()  # the temporary export goes with the server
