"""LiteRT export: float32 / float16 / int8 flatbuffers of the main head, their metadata,
and `predict --model FILE.tflite`."""

import json
import shutil

import cv2
import numpy as np
import pytest

from inception_tf import GoogLeNet, choices, export_saved_model
from inception_tf.dataloaders import catalog, data
from inception_tf.modeling import image_input, model_files
from inception_tf.serving import litert

from runs import command_here


CLASSES = ["zero", "one", "two", "three"]
SIZE = 64


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A GoogLeNet with confident (random) predictions, its SavedModel, and its three
    LiteRT files; int8 calibrated on 32 Fashion-MNIST training images."""
    root = tmp_path_factory.mktemp("litert")
    keras_model = GoogLeNet(num_classes=4, input_shape=(SIZE, SIZE, 3), aux_heads=False, variant="bn")
    classifier = keras_model.get_layer("main_classifier")
    kernel, bias = classifier.get_weights()
    classifier.set_weights([kernel * 40, bias])  # softmax far from uniform: top-1 means something
    model_files.save_keras(keras_model, root / "model.keras", CLASSES)
    saved_model = export_saved_model(keras_model, root / "googlenet", CLASSES)
    split = catalog.load_source("fashion_mnist").splits["train"]
    calibration = data.calibration_inputs(split, SIZE, 32)
    paths = {
        q: litert.write_tflite(saved_model, litert.tflite_path(saved_model, q), q, calibration=calibration,
                               class_names=CLASSES, calibrated_on="32 test images")
        for q in choices.LITERT_QUANTIZATIONS
    }
    test = catalog.load_source("fashion_mnist", limit=64).splits["test"]
    inputs = np.asarray(image_input.preprocess_images(test.images, SIZE))
    # The files are compared with the Keras model itself, not with the SavedModel they were
    # converted from (test_export checks that signature against the model too).
    reference = np.asarray(keras_model(inputs, training=False), np.float32)
    return {"root": root, "saved_model": saved_model, "paths": paths, "inputs": inputs,
            "reference": reference, "test": test}


def test_calibration_inputs_are_preprocessed_training_images():
    split = catalog.load_source("fashion_mnist", limit=500).splits["train"]
    inputs = data.calibration_inputs(split, SIZE, 40, seed=3)
    assert inputs.shape == (40, SIZE, SIZE, 3) and inputs.dtype == np.float32
    assert -1.0 <= inputs.min() < -0.9 and 0.5 < inputs.max() <= 1.0  # "tf" mode: [-1, 1]
    np.testing.assert_array_equal(inputs, data.calibration_inputs(split, SIZE, 40, seed=3))
    assert len(data.calibration_inputs(split, SIZE, 10_000)) == 500  # never more than the split
    with pytest.raises(ValueError, match="Received: count=0"):
        data.calibration_inputs(split, SIZE, 0)


def test_files_sit_beside_the_saved_model_and_shrink_with_quantization(exported):
    paths = exported["paths"]
    assert paths["int8"].name == "googlenet-int8.tflite" and paths["int8"].parent == exported["saved_model"].parent
    sizes = {q: p.stat().st_size for q, p in paths.items()}
    assert 0.45 < sizes["float16"] / sizes["float32"] < 0.55
    assert 0.2 < sizes["int8"] / sizes["float32"] < 0.3
    assert not list(exported["root"].glob(".*tmp*"))


def test_float32_matches_the_saved_model_within_1e_4(exported):
    model = litert.LiteRTModel(exported["paths"]["float32"])
    whole = model(exported["inputs"])
    assert np.abs(whole - exported["reference"]).max() < 1e-4
    one = np.concatenate([model(exported["inputs"][i : i + 1]) for i in range(5)])  # the batch is resized
    np.testing.assert_allclose(one, whole[:5], atol=1e-5)


def test_float16_and_int8_stay_close_to_float32(exported):
    reference = exported["reference"]
    half = litert.LiteRTModel(exported["paths"]["float16"])(exported["inputs"])
    assert np.abs(half - reference).max() < 2e-2
    int8 = litert.LiteRTModel(exported["paths"]["int8"])(exported["inputs"])
    assert (int8.argmax(1) == reference.argmax(1)).mean() >= 0.85
    assert np.abs(int8 - reference).mean() < 0.05


def test_int8_is_full_integer_with_its_scales_recorded(exported):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(exported["paths"]["int8"]))
    tensor_in, tensor_out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert tensor_in["dtype"] == np.int8 and tensor_out["dtype"] == np.int8
    info = litert.read_info(exported["paths"]["int8"])
    assert (info["input"]["scale"], info["input"]["zero_point"]) == pytest.approx(tensor_in["quantization"])
    assert (info["output"]["scale"], info["output"]["zero_point"]) == pytest.approx(tensor_out["quantization"])
    assert info["input"]["scale"] == pytest.approx(2 / 255, rel=1e-3)  # [-1, 1] in 255 steps
    assert {k: info[k] for k in ("quantization", "image_size", "preprocessing", "class_names", "calibrated_on")} == {
        "quantization": "int8", "image_size": SIZE, "preprocessing": "tf", "class_names": CLASSES,
        "calibrated_on": "32 test images",
    }
    float_info = litert.read_info(exported["paths"]["float32"])
    assert float_info["input"] is None and float_info["calibrated_on"] is None


def test_int8_needs_calibration_and_quantizations_are_checked(exported):
    with pytest.raises(ValueError, match=r"calibration inputs.*Received: calibration with shape None"):
        litert.to_flatbuffer(exported["saved_model"], "int8")
    with pytest.raises(ValueError, match=r"Received: quantization='int4'"):
        litert.to_flatbuffer(exported["saved_model"], "int4")


def test_files_without_our_metadata_are_named(exported, tmp_path):
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(exported["paths"]["float16"]))
    model.metadata = [m for m in model.metadata if m.name not in (b"inception_tf", "inception_tf")]
    plain = tmp_path / "plain.tflite"
    flatbuffer_utils.write_model(model, str(plain))
    with pytest.raises(ValueError, match=r"carries no 'inception_tf' metadata.*Received: model="):
        litert.read_info(plain)
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ValueError, match=r"junk.tflite is not a LiteRT flatbuffer"):
        litert.read_info(junk)


def test_predict_runs_a_tflite_file_like_the_saved_model(exported, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(exported["test"].images[:6]):
        cv2.imwrite(str(folder / f"{i}.png"), image)

    def predict(model):
        code, out, err = command_here("predict", "--model", model, "--json", "--batch-size", "4", folder)
        assert code == 0, err
        return [json.loads(line) for line in out.splitlines()]

    lite, full = predict(exported["paths"]["float32"]), predict(exported["saved_model"])
    assert [p["image"] for p in lite] == [p["image"] for p in full] and len(lite) == 6
    for a, b in zip(lite, full):
        assert [t["class"] for t in a["top"]][:1] == [t["class"] for t in b["top"]][:1]
        assert a["top"][0]["score"] == pytest.approx(b["top"][0]["score"], abs=1e-4)


def test_export_command_writes_the_files_and_refuses_int8_without_data(exported, tmp_path):
    model = tmp_path / "run" / "model.keras"
    model.parent.mkdir()
    shutil.copy(exported["root"] / "model.keras", model)
    code, _, err = command_here("export", "--model", model, "--out", tmp_path / "m", "--tflite", "int8")
    assert code == 2 and "Traceback" not in err
    assert "int8 calibration needs training images: name their data set with --dataset" in err
    assert not (tmp_path / "m").exists()  # refused before anything was written
    (model.parent / "config.json").write_text(json.dumps({"data": {"dataset": "fashion_mnist", "data_dir": None}}))
    code, out, err = command_here(
        "export", "--model", model, "--out", tmp_path / "m", "--tflite", "int8", "--calibration-images", "16"
    )
    assert code == 0, err
    assert "LiteRT int8 written to" in out and (tmp_path / "m" / "saved_model.pb").is_file()
    info = litert.read_info(tmp_path / "m-int8.tflite")
    assert info["calibrated_on"] == "16 images of the fashion_mnist training split"
    assert info["class_names"] == CLASSES
