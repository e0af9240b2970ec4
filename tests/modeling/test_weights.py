"""`weights="imagenet"` without a network: a caffemodel in BVLC's layout served by a small
HTTP server on 127.0.0.1, reached through INCEPTION_TF_IMAGENET_URL / _SHA1."""

import contextlib
import hashlib
import http.server
import json
import socket
import subprocess
import sys
import threading

import cv2
import keras
import numpy as np
import pytest

from inception_tf import GoogLeNet, cli, inference_model
from inception_tf.modeling import convert, imagenet, model_files, weights

from caffe_files import random_blobs, write_caffemodel
from runs import ROOT, env


@pytest.fixture(scope="module")
def caffemodel(tmp_path_factory):
    path = write_caffemodel(tmp_path_factory.mktemp("bvlc") / "served.caffemodel", random_blobs(seed=3))
    return path, hashlib.sha1(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def serving(body, announced=None):
    """Serves `body` at http://127.0.0.1:PORT/bvlc_googlenet.caffemodel, announcing
    `announced` bytes (a download cut short when it is more); yields the URL and the
    list of paths requested."""
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(announced or len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{weights.CAFFEMODEL}", requests
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def mirror(monkeypatch, tmp_path, caffemodel):
    """A fresh Keras cache, and the environment pointing at the test's server."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    path, sha1 = caffemodel
    monkeypatch.setenv(weights.SHA1_VARIABLE, sha1)

    def use(url):
        monkeypatch.setenv(weights.URL_VARIABLE, url)

    return use


def _cache(tmp_path):
    folder = tmp_path / "keras-home" / "models"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _heads(model, x):
    outputs = model(x, training=False)
    return [np.asarray(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]


@pytest.mark.parametrize("aux_heads", [True, False])
def test_imagenet_downloads_once_and_the_commands_convert_once(mirror, caffemodel, tmp_path, aux_heads):
    """The factory loads the cached download; the commands that take a model file get its
    `.keras` conversion, made once (`convert.resolve`)."""
    path, sha1 = caffemodel
    with serving(path.read_bytes()) as (url, requests):
        mirror(url)
        model = GoogLeNet(num_classes=1000, weights="imagenet", aux_heads=aux_heads)
    assert requests == [f"/{weights.CAFFEMODEL}"]
    assert _cache(tmp_path) == [weights.CAFFEMODEL]
    again = GoogLeNet(num_classes=1000, weights="imagenet", aux_heads=aux_heads)  # the server is gone
    reference = GoogLeNet(num_classes=1000, weights=str(path), aux_heads=aux_heads)  # the caffemodel itself
    converted = convert.resolve("imagenet")
    assert _cache(tmp_path) == sorted([weights.CAFFEMODEL, f"bvlc_googlenet-{sha1[:12]}.keras"])
    stamp = converted.stat().st_mtime_ns
    assert convert.resolve("imagenet") == converted and converted.stat().st_mtime_ns == stamp  # not converted again
    from_file = keras.models.load_model(converted, compile=False)
    if not aux_heads:
        from_file = inference_model(from_file)
    x = np.random.default_rng(0).uniform(-120, 130, (2, 224, 224, 3)).astype("float32")
    expected = _heads(reference, x)
    assert len(expected) == (3 if aux_heads else 1)
    for built in (model, again, from_file):
        for got, want in zip(_heads(built, x), expected, strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5)
    assert model_files.read_info(converted).preprocessing == "caffe"


def test_without_the_top_any_accepted_size_loads_and_new_classes_start_fresh(mirror, caffemodel):
    path, _ = caffemodel
    with serving(path.read_bytes()) as (url, _):
        mirror(url)
        features = GoogLeNet(include_top=False, input_shape=(96, 96, 3), weights="imagenet")
    reference = GoogLeNet(include_top=False, input_shape=(96, 96, 3), weights=str(path))
    x = np.random.default_rng(1).uniform(-120, 130, (1, 96, 96, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(features(x)), np.asarray(reference(x)), atol=1e-5)
    ten = GoogLeNet(num_classes=10, input_shape=(96, 96, 3))  # --init-from imagenet
    copied, fresh = weights.load(ten, "imagenet")
    assert fresh == ["main_classifier", "aux1_classifier", "aux2_classifier"] and copied > 50


@pytest.mark.parametrize("kwargs, message", [
    ({"variant": "bn"}, "variant \"bn\" has none. Received: variant='bn'"),
    ({"num_classes": 10}, "`num_classes` must be 1000 (to fine-tune"),
])
def test_a_wrong_combination_fails_before_any_download(mirror, tmp_path, kwargs, message):
    with serving(b"never fetched") as (url, requests):
        mirror(url)
        with pytest.raises(ValueError) as raised:
            GoogLeNet(weights="imagenet", **kwargs)
    assert message in str(raised.value) and requests == [] and _cache(tmp_path) == []


def test_a_sha1_that_is_not_one_is_refused_before_any_download(mirror, tmp_path, monkeypatch):
    with serving(b"never fetched") as (url, requests):
        mirror(url)
        monkeypatch.setenv(weights.SHA1_VARIABLE, "zzz")
        with pytest.raises(ValueError) as raised:
            GoogLeNet(weights="imagenet")
    assert str(raised.value) == ("INCEPTION_TF_IMAGENET_SHA1 must be a sha1: 40 hexadecimal digits. "
                                 "Received: INCEPTION_TF_IMAGENET_SHA1='zzz'")
    assert requests == [] and _cache(tmp_path) == []


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_cut_download_a_wrong_hash_and_a_refused_connection_leave_nothing(mirror, caffemodel, tmp_path):
    path, _ = caffemodel
    body = path.read_bytes()
    cases = [
        (body[: len(body) // 2], len(body), "the download stopped after"),
        (body[:-1] + b"x", None, "the file has the sha1"),
    ]
    for served, announced, reason in cases:
        with serving(served, announced) as (url, _):
            mirror(url)
            with pytest.raises(weights.DownloadError) as raised:
                GoogLeNet(weights="imagenet")
        assert reason in str(raised.value), str(raised.value)
        assert _cache(tmp_path) == [], _cache(tmp_path)
    url = f"http://127.0.0.1:{_free_port()}/{weights.CAFFEMODEL}"
    mirror(url)
    with pytest.raises(weights.DownloadError) as raised:
        GoogLeNet(weights="imagenet")
    message = str(raised.value)
    assert f"Could not download the ImageNet weights from {url}: " in message and "Connection refused" in message
    assert f"Nothing was kept in {tmp_path / 'keras-home' / 'models'}" in message and "weights=PATH" in message
    assert _cache(tmp_path) == []
    with serving(body) as (url, _):  # a later call, with the server back, completes
        mirror(url)
        GoogLeNet(weights="imagenet", aux_heads=False)
    assert _cache(tmp_path) == [weights.CAFFEMODEL]


def test_a_corrupt_cached_download_is_fetched_again(mirror, caffemodel, tmp_path):
    path, _ = caffemodel
    cache = tmp_path / "keras-home" / "models"
    cache.mkdir(parents=True)
    (cache / weights.CAFFEMODEL).write_bytes(path.read_bytes()[:1000])  # a copy cut short
    with serving(path.read_bytes()) as (url, requests):
        mirror(url)
        GoogLeNet(weights="imagenet", aux_heads=False)
    assert len(requests) == 1 and (cache / weights.CAFFEMODEL).read_bytes() == path.read_bytes()


def test_the_command_line_says_how_to_do_without_a_network(tmp_path, caffemodel):
    url = f"http://127.0.0.1:{_free_port()}/{weights.CAFFEMODEL}"
    result = subprocess.run(
        [sys.executable, "-m", "inception_tf", "predict", "--model", "imagenet", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**env(), "KERAS_HOME": str(tmp_path / "home"), weights.URL_VARIABLE: url},
    )
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: Could not download the ImageNet weights from {url}")


def test_predict_takes_the_word_imagenet(mirror, caffemodel, tmp_path, capsys):
    path, _ = caffemodel
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.random.default_rng(0).integers(0, 255, (80, 120, 3), dtype=np.uint8))
    with serving(path.read_bytes()) as (url, _):
        mirror(url)
        assert cli.main(["predict", "--model", "imagenet", "--json", str(photo)]) == 0
    (line,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    names = set(imagenet.class_names())
    assert len(line["top"]) == 5 and all(entry["class"] in names for entry in line["top"]), line
