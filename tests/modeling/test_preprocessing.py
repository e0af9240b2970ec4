"""The two input conventions, ImageNet's class names, and what a saved model records."""

import numpy as np
import pytest
import tensorflow as tf

from inception_tf import GoogLeNet, decode_predictions, preprocess_input
from inception_tf.config import RunConfig
from inception_tf.modeling import image_input
from inception_tf.modeling import imagenet, model_files
from inception_tf.tasks.experiment import resolve


def _images():
    return np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)


def test_caffe_mode_is_bgr_minus_the_imagenet_mean():
    images = _images()
    got = preprocess_input(images, mode="caffe")
    assert got.dtype == np.float32 and got.shape == images.shape
    np.testing.assert_allclose(got[..., 0], images[..., 2] - 104.0, atol=1e-4)
    np.testing.assert_allclose(got[..., 1], images[..., 1] - 117.0, atol=1e-4)
    np.testing.assert_allclose(got[..., 2], images[..., 0] - 123.0, atol=1e-4)


def test_tf_mode_is_minus_one_to_one_and_tensors_work():
    images = _images()
    np.testing.assert_allclose(preprocess_input(images), images / 127.5 - 1.0, atol=1e-6)
    tensor = preprocess_input(tf.constant(images), mode="caffe")
    np.testing.assert_allclose(np.asarray(tensor), preprocess_input(images, mode="caffe"), atol=1e-4)


@pytest.mark.parametrize("mode", ["tf", "caffe"])
def test_the_pipeline_and_the_public_function_agree(mode):
    """The export, evaluation and training path (`image_input.preprocess_images`) is `preprocess_input`."""
    images = _images()
    np.testing.assert_allclose(image_input.preprocess_images(images, 8, mode).numpy(), preprocess_input(images, mode), atol=1e-4)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: preprocess_input(_images(), mode="torch"), r"Received: mode='torch'"),
        (lambda: preprocess_input(np.zeros((2, 8, 8, 1))), r"Received: shape=\(2, 8, 8, 1\)"),
        (lambda: decode_predictions(np.zeros((2, 10))), r"Received: shape=\(2, 10\)"),
        (lambda: decode_predictions(np.zeros((1, 1000)), top=0), r"Received: top=0"),
    ],
)
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_decode_predictions_names_imagenet_classes():
    probabilities = np.full((2, 1000), 1e-4)
    probabilities[0, 281], probabilities[0, 207], probabilities[1, 0] = 0.7, 0.2, 0.9
    decoded = decode_predictions(probabilities, top=2)
    assert decoded[0] == [("n02123045", "tabby", pytest.approx(0.7)), ("n02099601", "golden_retriever", pytest.approx(0.2))]
    assert decoded[1][0][:2] == ("n01440764", "tench")
    assert len(imagenet.class_names()) == 1000 and imagenet.class_names()[-1] == "toilet_tissue"


def test_a_keras_file_carries_its_classes_and_mode(tmp_path):
    model = GoogLeNet(num_classes=3, input_shape=(32, 32, 3), aux_heads=False)
    path = model_files.save_keras(model, tmp_path / "m.keras", ["a", "b", "c"], preprocessing="caffe")
    info = model_files.read_info(path)
    assert (info.class_names, info.preprocessing) == (["a", "b", "c"], "caffe")
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]  # no temporary file left
    model.save(tmp_path / "plain.keras")  # saved by Keras alone: the defaults
    assert model_files.read_info(tmp_path / "plain.keras") == model_files.ModelInfo(None, "tf")
    caffemodel = model_files.read_info(tmp_path / "bvlc_googlenet.caffemodel")
    assert caffemodel.preprocessing == "caffe" and caffemodel.class_names == imagenet.class_names()


def test_a_run_from_converted_weights_takes_their_mode(tmp_path):
    model = GoogLeNet(num_classes=3, input_shape=(64, 64, 3), aux_heads=False)
    path = model_files.save_keras(model, tmp_path / "m.keras", preprocessing="caffe")
    config = RunConfig().replace(**{"init_from": str(path), "train.precision": "float32", "run_dir": str(tmp_path / "r")})
    resolved = resolve(config, tf.distribute.get_strategy(), log=lambda message: None)
    assert resolved.model.preprocessing == "caffe"
    assert resolve(config.replace(init_from=None), tf.distribute.get_strategy(), log=lambda m: None).model.preprocessing == "tf"
    explicit = config.replace(**{"model.preprocessing": "tf"})
    assert resolve(explicit, tf.distribute.get_strategy(), log=lambda m: None).model.preprocessing == "tf"


def test_weights_files_load_by_name_or_name_what_does_not_fit(tmp_path):
    from inception_tf.modeling.weights import WeightsError

    source = GoogLeNet(num_classes=3, input_shape=(64, 64, 3))
    source.save_weights(tmp_path / "w.weights.h5")
    same = GoogLeNet(num_classes=3, input_shape=(64, 64, 3), weights=tmp_path / "w.weights.h5")
    for ours, theirs in zip(same.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    with pytest.raises(WeightsError, match=r"does not fit this model \(A total of 3 objects could not be loaded.*\)\. Received: weights='.*w.weights.h5'"):
        GoogLeNet(num_classes=4, input_shape=(64, 64, 3), weights=tmp_path / "w.weights.h5")
    source.save(tmp_path / "m.keras")
    # Another input size and number of classes: the three classifiers start fresh, the rest is copied.
    target = GoogLeNet(num_classes=4, input_shape=(96, 96, 3), weights=tmp_path / "m.keras")
    np.testing.assert_array_equal(target.get_layer("conv2_3x3_conv").get_weights()[0], source.get_layer("conv2_3x3_conv").get_weights()[0])
    with pytest.raises(WeightsError, match=r"Layer 'conv1_7x7_conv' of .* has shapes \[\(7, 7, 3, 64\), \(64,\)\]"):
        GoogLeNet(num_classes=3, input_shape=(64, 64, 3), variant="bn", weights=tmp_path / "m.keras")
