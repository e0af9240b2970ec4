"""BVLC GoogLeNet weights: a caffemodel written here in BVLC's layout (random weights), run
by OpenCV 4's Caffe importer as the reference, against the converted Keras model."""

import json
import subprocess
import sys

import cv2
import keras
import matplotlib.cbook
import numpy as np
import pytest
import tensorflow as tf

from inception_tf import GoogLeNet, decode_predictions, export_saved_model, inference_model, preprocess_input
from inception_tf.modeling import image_input
from inception_tf.modeling import caffe, convert, imagenet, model_files
from inception_tf.modeling.weights import WeightsError

from caffe_files import bvlc_deploy_prototxt, random_blobs, write_caffemodel
from fake_data import write_image_folder
from runs import env, train

PHOTOS = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")  # photographs matplotlib ships
PROBS = ("prob", "loss1/prob", "loss2/prob")
LOGITS = ("loss3/classifier", "loss1/classifier", "loss2/classifier")


def photo_paths():
    return [matplotlib.cbook.get_sample_data(name, asfileobj=False) for name in PHOTOS]


def photos(size):
    """The photographs as uint8 RGB, size x size."""
    images = []
    for path in photo_paths():
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        images.append(cv2.cvtColor(cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
    return np.stack(images)


def opencv_forward(prototxt, caffemodel, rgb, outputs):
    """Caffe's semantics as OpenCV 4 implements them: BGR, minus the mean, NCHW."""
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.enableWinograd(False)  # exact float32 convolutions
    blob = cv2.dnn.blobFromImages(list(rgb[..., ::-1]), 1.0, rgb.shape[1:3], (104, 117, 123), False, False)
    net.setInput(blob)
    return [np.asarray(out) for out in net.forward(list(outputs))]


@pytest.fixture(scope="module")
def bvlc(tmp_path_factory):
    # Fails, not skips, without OpenCV 4: the test extra pins it (OpenCV 5 has no Caffe importer).
    assert cv2.__version__.startswith("4.") and hasattr(cv2.dnn, "readNetFromCaffe"), cv2.__version__
    folder = tmp_path_factory.mktemp("bvlc")
    blobs = random_blobs(seed=0)
    path = write_caffemodel(folder / "bvlc_googlenet.caffemodel", blobs)
    prototxt = folder / "deploy.prototxt"
    prototxt.write_text(bvlc_deploy_prototxt())  # BVLC's, typed in the test's files: never the package's
    rgb = photos(224)
    reference = opencv_forward(prototxt, path, rgb, PROBS + LOGITS)
    return {"path": path, "blobs": blobs, "prototxt": prototxt, "rgb": rgb, "reference": reference, "folder": folder}


@pytest.fixture(scope="module")
def converted(bvlc):
    return GoogLeNet(weights=bvlc["path"])


def test_three_heads_match_caffe(bvlc, converted):
    outputs = [np.asarray(o) for o in converted(preprocess_input(bvlc["rgb"], mode="caffe"), training=False)]
    for head, ours, theirs in zip(PROBS, outputs, bvlc["reference"][:3]):
        assert np.abs(ours - theirs).max() < 1e-4, head
        assert theirs.max() > 0.03 and theirs.max() < 0.9, "softmax neither flat nor saturated"
    # And before the softmax: logits of a few units' spread agree to float32 rounding.
    logits = keras.Model(converted.input, [converted.get_layer(f"{h}_classifier").output for h in ("main", "aux1", "aux2")])
    for ours, theirs in zip(logits(preprocess_input(bvlc["rgb"], mode="caffe")), bvlc["reference"][3:]):
        np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-4)


def test_the_aux_heads_need_the_channel_first_flatten(bvlc, monkeypatch):
    """The check above can fail: read loss1/fc as if Caffe flattened channel-last, and the
    aux heads part from Caffe's."""
    monkeypatch.setattr(caffe, "_fc_after_chw", lambda weights, **_: weights.reshape(weights.shape[0], -1).T)
    model = GoogLeNet(weights=bvlc["path"])
    main, aux1, _ = model(preprocess_input(bvlc["rgb"], mode="caffe"), training=False)
    assert np.abs(np.asarray(main) - bvlc["reference"][0]).max() < 1e-4
    assert np.abs(np.asarray(aux1) - bvlc["reference"][1]).max() > 1e-3


def test_odd_input_sizes_follow_caffes_geometry(bvlc):
    """At 227 pool2 sees a 57x57 map, where a "same" pool would give 29 rows, Caffe 28."""
    prototxt = bvlc["folder"] / "features-227.prototxt"
    prototxt.write_text(bvlc_deploy_prototxt(227, include_top=False))
    rgb = photos(227)
    (theirs,) = opencv_forward(prototxt, bvlc["path"], rgb, ["inception_5b/output"])
    model = GoogLeNet(input_shape=(227, 227, 3), include_top=False, pooling=None, weights=bvlc["path"])
    ours = np.asarray(model(preprocess_input(rgb, mode="caffe")))
    assert ours.shape == (2, 7, 7, 1024)
    np.testing.assert_allclose(ours, theirs.transpose(0, 2, 3, 1), atol=1e-4 * np.abs(theirs).max())


def test_the_saved_model_serves_the_same_top5(bvlc, converted, tmp_path):
    probabilities = np.asarray(converted(preprocess_input(bvlc["rgb"], mode="caffe"), training=False)[0])
    export_dir = export_saved_model(converted, tmp_path / "export", imagenet.class_names(), preprocessing="caffe")
    served = tf.saved_model.load(str(export_dir)).signatures["serving_default"](images=tf.constant(bvlc["rgb"]))
    expected = np.argsort(-probabilities, axis=1)[:, :5]
    np.testing.assert_array_equal(served["top_k_indices"].numpy(), expected)
    np.testing.assert_array_equal(np.argsort(-bvlc["reference"][0], axis=1)[:, :5], expected)
    names = [[name for _, name, _ in row] for row in decode_predictions(probabilities)]
    assert served["top_k_classes"].numpy().astype(str).tolist() == names


def test_other_classes_sizes_and_no_top_load_what_fits(bvlc):
    blobs = bvlc["blobs"]
    five = GoogLeNet(num_classes=5, weights=bvlc["path"])
    kernel = five.get_layer("inception_4e_5x5_conv").get_weights()[0]
    np.testing.assert_array_equal(kernel, blobs["inception_4e/5x5"][0].transpose(2, 3, 1, 0))
    assert five.get_layer("main_classifier").get_weights()[0].shape == (1024, 5)
    small = GoogLeNet(input_shape=(160, 160, 3), weights=bvlc["path"])  # aux heads: 2048 features still
    # Caffe's loss2/fc reads its 128x4x4 input channel-first; Keras's Flatten, channel-last:
    # row (h, w, c) of the Keras kernel is Caffe's column c*16 + h*4 + w.
    fc = blobs["loss2/fc"][0]
    rows = [fc[:, c * 16 + h * 4 + w] for h in range(4) for w in range(4) for c in range(128)]
    np.testing.assert_array_equal(small.get_layer("aux2_fc").get_weights()[0], np.stack(rows))
    features = GoogLeNet(include_top=False, weights=bvlc["path"])
    np.testing.assert_array_equal(features.get_layer("conv1_7x7_conv").get_weights()[1], blobs["conv1/7x7_s2"][1])


def test_the_old_v1_layout_reads_the_same(bvlc, tmp_path):
    subset = {name: bvlc["blobs"][name] for name in ("conv1/7x7_s2", "loss1/fc", "loss3/classifier")}
    v1 = caffe.read_blobs(write_caffemodel(tmp_path / "v1.caffemodel", subset, v1=True))
    assert list(v1) == list(subset)
    for name, arrays in subset.items():
        for got, want in zip(v1[name], arrays):
            np.testing.assert_array_equal(got.reshape(want.shape), want)


def test_files_of_another_layout_name_the_first_layer_that_differs(bvlc, tmp_path):
    blobs = dict(bvlc["blobs"])
    del blobs["inception_3b/3x3"]
    missing = write_caffemodel(tmp_path / "missing.caffemodel", blobs)
    with pytest.raises(caffe.CaffeFormatError, match=r"no layer 'inception_3b/3x3' \(for inception_3b_3x3_conv\)"):
        GoogLeNet(weights=missing)
    blobs = dict(bvlc["blobs"])
    blobs["conv2/3x3"] = [np.zeros((192, 64, 5, 5), np.float32), np.zeros(192, np.float32)]
    other = write_caffemodel(tmp_path / "other.caffemodel", blobs)
    with pytest.raises(caffe.CaffeFormatError, match=r"Layer 'conv2/3x3' .* Caffe blobs \[\[192, 64, 5, 5\], \[192\]\]"):
        GoogLeNet(weights=other)
    with pytest.raises(caffe.CaffeFormatError, match=r"paper variant.*Received: variant=\"bn\""):
        GoogLeNet(variant="bn", weights=bvlc["path"])
    garbage = tmp_path / "garbage.caffemodel"
    garbage.write_bytes(b"\xff" * 64)
    with pytest.raises(caffe.CaffeFormatError, match=r"not a readable caffemodel"):
        GoogLeNet(weights=garbage)
    with pytest.raises(WeightsError, match=r"Received: weights='model.pt'"):
        GoogLeNet(weights="model.pt")
    prototxt = tmp_path / "deploy.prototxt"
    prototxt.write_text(bvlc_deploy_prototxt().replace("num_output: 208", "num_output: 200"))
    with pytest.raises(caffe.CaffeFormatError, match=r"Layer 'inception_4a/3x3' .* is .*'num_output': 200"):
        convert.check_prototxt(prototxt)


def test_convert_then_predict_prints_imagenet_names(bvlc, converted, tmp_path, capsys):
    out = tmp_path / "googlenet_imagenet.keras"
    subprocess.run(  # the command as a user runs it
        [sys.executable, "-m", "inception_tf", "convert", "--caffemodel", str(bvlc["path"]),
         "--prototxt", str(bvlc["prototxt"]), "--out", str(out)],
        check=True, capture_output=True, text=True, env=env(),
    )
    photo = photo_paths()[0]
    from inception_tf import cli

    assert cli.main(["predict", "--model", str(out), "--json", str(photo)]) == 0  # here: one TensorFlow start fewer
    stdout = capsys.readouterr().out
    # predict reads the file with its own decoder and resizes in the graph: the same
    # photograph, other pixels than `photos()`, so compare with the model on its input.
    from inception_tf.serving import predict

    image = predict.read_rgb(photo)
    probabilities = np.asarray(converted(image_input.preprocess_images(image[None], 224, "caffe"), training=False)[0])
    expected = [name for _, name, _ in decode_predictions(probabilities)[0]]
    top = json.loads(stdout.splitlines()[-1])["top"]
    assert [entry["class"] for entry in top] == expected
    assert all(entry["class"] in imagenet.class_names() for entry in top)


@pytest.mark.slow  # a whole train.py run; the conversion itself is checked above
def test_fine_tuning_from_converted_weights_trains_and_serves_in_their_mode(bvlc, tmp_path):
    start = model_files.save_keras(
        GoogLeNet(input_shape=(64, 64, 3), weights=bvlc["path"]), tmp_path / "imagenet-64.keras",
        imagenet.class_names(), preprocessing="caffe",
    )
    photos_dir = write_image_folder(tmp_path / "photos", per_class=4)
    run_dir = tmp_path / "run"
    result = train(
        "--dataset", "folder", "--data-dir", str(photos_dir), "--validation-split", "0.25", "--init-from", str(start),
        "--variant", "paper", "--image-size", "64", "--epochs", "1", "--batch-size", "4", "--learning-rate", "0.001",
        "--precision", "float32", "--test-crops", "1", "--run-dir", str(run_dir),
    )
    assert f"preprocessing: caffe (the input {start} expects)" in result.stdout
    assert "61 layers copied, new: main_classifier, aux1_classifier, aux2_classifier" in result.stdout
    assert json.loads((run_dir / "config.json").read_text())["model"]["preprocessing"] == "caffe"
    info = model_files.read_info(run_dir / "model.keras")
    assert (info.preprocessing, info.class_names) == ("caffe", ["cat", "dog", "emu"])
    model = inference_model(keras.models.load_model(run_dir / "model.keras", compile=False))
    images = photos(64)
    expected = np.asarray(model(image_input.preprocess_images(images, 64, "caffe"), training=False))
    served = tf.saved_model.load(str(run_dir / "saved_model")).signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)
