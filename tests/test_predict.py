import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from inception_tf import GoogLeNet, export_saved_model
from inception_tf.predict import read_rgb
from PIL import Image
from runs import env

CLASSES = ["zero", "one", "two", "three"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    model = GoogLeNet(num_classes=4, input_shape=(64, 64, 3))
    model.save(root / "model.keras")
    (root / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    export_saved_model(model, root / "saved_model", CLASSES)
    return root


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    color = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    cv2.imwrite(str(folder / "a.png"), color)
    cv2.imwrite(str(folder / "b.jpg"), rng.integers(0, 256, (120, 80, 3), dtype=np.uint8))
    cv2.imwrite(str(folder / "c.bmp"), color)
    cv2.imwrite(str(folder / "gray.png"), rng.integers(0, 256, (30, 30), dtype=np.uint8))
    cv2.imwrite(str(folder / "rgba.png"), rng.integers(0, 256, (20, 25, 4), dtype=np.uint8))
    cv2.imwrite(str(folder / "deep.png"), rng.integers(0, 65536, (16, 16, 3), dtype=np.uint16))
    Image.fromarray(color).save(folder / "e.gif")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    return folder


def test_read_rgb_converts_every_layout(images):
    bgr = cv2.imread(str(images / "a.png"))
    np.testing.assert_array_equal(read_rgb(images / "a.png"), bgr[..., ::-1])
    for name in ("gray.png", "rgba.png", "deep.png", "e.gif", "b.jpg"):
        image = read_rgb(images / name)
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8, name
    gray = read_rgb(images / "gray.png")
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
    with pytest.raises(ValueError, match="broken.jpg"):
        read_rgb(images / "broken.jpg")


@pytest.mark.parametrize("model", ["saved_model", "model.keras"])
def test_predict_command(models, images, model):
    result = subprocess.run(
        [sys.executable, "-m", "inception_tf", "predict", "--model", str(models / model), "--json", str(images)],
        capture_output=True, text=True, env=env(),
    )
    assert result.returncode == 1  # broken.jpg
    assert "broken.jpg" in result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(p["image"].rsplit("/", 1)[1] for p in lines) == sorted(
        ["a.png", "b.jpg", "c.bmp", "gray.png", "rgba.png", "deep.png", "e.gif"]
    )
    for prediction in lines:
        assert len(prediction["top"]) == 4
        assert {entry["class"] for entry in prediction["top"]} == set(CLASSES)
        assert sum(entry["score"] for entry in prediction["top"]) == pytest.approx(1.0, abs=1e-4)
    same = {p["image"].rsplit("/", 1)[1]: p["top"][0]["score"] for p in lines}
    assert same["a.png"] == pytest.approx(same["c.bmp"], abs=1e-6)  # same pixels, two formats


def test_predict_text_output_for_one_file(models, images):
    result = subprocess.run(
        [sys.executable, "-m", "inception_tf", "predict", "--model", str(models / "saved_model"), "--top-k", "2", str(images / "a.png")],
        capture_output=True, text=True, env=env(), check=True,
    )
    assert result.stdout.startswith(f"{images / 'a.png'}:") and "  2. " in result.stdout and "  3. " not in result.stdout


def test_a_folder_without_a_model_is_named(models, tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "saved_model").mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-m", "inception_tf", "predict", "--model", str(run_dir), str(tmp_path)],
        capture_output=True, text=True, env=env(),
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{run_dir} holds no SavedModel (saved_model.pb) (a run directory: pass RUN_DIR/saved_model" in result.stderr
