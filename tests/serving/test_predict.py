import contextlib
import csv
import io
import json
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from inception_tf import GoogLeNet, export_saved_model
from inception_tf.serving.predict import read_rgb

from runs import command_here, env

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


# The SavedModel through a real `python -m inception_tf` process; the .keras file in this one.
@pytest.mark.parametrize("model", ["saved_model", "model.keras"])
def test_predict_command(models, images, model):
    args = ["--model", models / model, "--json", images]
    if model == "saved_model":
        result = _predict(*args)
        code, out, err = result.returncode, result.stdout, result.stderr
    else:
        code, out, err = _predict_here(*args)
    assert code == 1  # broken.jpg
    assert "broken.jpg" in err
    lines = [json.loads(line) for line in out.splitlines()]
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
    code, out, _ = _predict_here("--model", models / "saved_model", "--top-k", "2", images / "a.png")
    assert code == 0
    assert out.startswith(f"{images / 'a.png'}:") and "  2. " in out and "  3. " not in out


def test_a_folder_without_a_model_is_named(models, tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "saved_model").mkdir(parents=True)
    code, _, err = _predict_here("--model", run_dir, tmp_path)
    assert code == 2 and "Traceback" not in err
    assert f"{run_dir} holds no SavedModel (saved_model.pb) (a run directory: pass RUN_DIR/saved_model" in err


def test_a_folder_without_images_is_refused_naming_it(models, tmp_path):
    empty = tmp_path / "notes"
    empty.mkdir()
    (empty / "readme.txt").write_text("no image here")
    code, out, err = _predict_here("--model", models / "model.keras", empty)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"error: The folder {empty} holds no image file (looked for .jpg, .jpeg, .png")


READABLE = ["a.png", "b.jpg", "c.bmp", "deep.png", "e.gif", "gray.png", "rgba.png"]


def _predict(*args):
    return subprocess.run([sys.executable, "-m", "inception_tf", "predict", *map(str, args)],
                          capture_output=True, text=True, env=env())


def _predict_here(*args):
    """The predict command in this process: `(code, out, err)`."""
    return command_here("predict", *args)


def test_batched_csv_has_one_row_per_image_and_matches_one_at_a_time(models, images, tmp_path):
    code, out, err = _predict_here("--model", models / "saved_model", "--batch-size", "3",
                                   "--output", tmp_path / "p.csv", images)
    assert code == 1 and "broken.jpg" in err  # the rest are still predicted
    assert "7 images predicted, 1 unreadable" in out
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "class", "score", "top5_classes", "top5_scores", "error"]
    by_name = {pathlib.Path(row["path"]).name: row for row in rows}
    assert sorted(by_name) == sorted([*READABLE, "broken.jpg"])
    assert by_name["broken.jpg"]["error"].startswith("cannot read an image") and by_name["broken.jpg"]["class"] == ""
    _, single, _ = _predict_here("--model", models / "saved_model", "--batch-size", "1", "--json", images)
    for line in map(json.loads, single.splitlines()):
        row = by_name[pathlib.Path(line["image"]).name]
        classes, scores = row["top5_classes"].split(";"), [float(s) for s in row["top5_scores"].split(";")]
        assert classes[0] == row["class"] and len(classes) == 4  # four classes: top-5 is all of them
        assert scores == pytest.approx([t["score"] for t in line["top"]], abs=1e-5)
        assert float(row["score"]) == scores[0] and scores == sorted(scores, reverse=True)


def test_jsonl_output_keeps_errors_and_bad_outputs_are_refused(models, images, tmp_path):
    code, _, _ = _predict_here("--model", models / "model.keras", "--output", tmp_path / "p.jsonl", images)
    assert code == 1
    lines = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(lines) == 8 and sum("error" in line for line in lines) == 1
    code, _, err = _predict_here("--model", models / "model.keras", "--output", tmp_path / "p.txt", images)
    assert code == 2 and "Traceback" not in err
    assert "`output` must end in one of ('.csv', '.jsonl'). Received: output=" in err
    assert not (tmp_path / "p.txt").exists()
    # A place that cannot hold the file: the error names the file asked for, not the temporary one.
    code, _, err = _predict_here("--model", models / "saved_model", "--output", "/proc/predictions.csv", images / "a.png")
    assert code == 2 and err.strip() == "error: Cannot write /proc/predictions.csv: No such file or directory", err


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_terminal_only(models, images):
    from inception_tf.serving import predict

    terminal, out = _Terminal(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(terminal):
        assert predict.main(models / "saved_model", [images], batch_size=2) == 1
    assert "\r8/8 images, " in terminal.getvalue() and terminal.getvalue().endswith(" images/s\n")
    assert "\r2/8 images, " in terminal.getvalue()
    # broken.jpg is read in the second batch: its error starts a line of its own.
    assert "images/s\nerror: cannot read an image from " in terminal.getvalue()
    quiet = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(quiet):
        predict.main(models / "saved_model", [images / "a.png"])
    assert quiet.getvalue() == ""


def test_explain_writes_one_overlay_per_image(models, images, tmp_path):
    code, _, _ = _predict_here("--model", models / "model.keras", "--explain", tmp_path / "cam", images, images / "a.png")
    assert code == 1
    written = sorted(p.name for p in (tmp_path / "cam").iterdir())
    assert written == sorted([*(n.rsplit(".", 1)[0] + ".png" for n in READABLE), "a-2.png"])
    # Enlarged by a whole factor to at least 224 on the short side, a 24-pixel caption band on top.
    assert cv2.imread(str(tmp_path / "cam" / "a.png")).shape == (37 * 7 + 24, 53 * 7, 3)
    assert cv2.imread(str(tmp_path / "cam" / "b.png")).shape == (120 * 3 + 24, 80 * 3, 3)
    assert cv2.imread(str(tmp_path / "cam" / "gray.png")).shape == (30 * 8 + 24, 30 * 8, 3)
    code, _, err = _predict_here("--model", models / "saved_model", "--explain", tmp_path / "cam2", images)
    assert code == 2 and "pass a .keras model" in err and not (tmp_path / "cam2").exists()


def test_gradcam_is_hot_where_the_evidence_is():
    """A stand-in with GoogLeNet's layer names whose features are the pixels: the map and
    the overlay are hot on the bright patch (top right) and cold elsewhere."""
    import keras

    from inception_tf.serving import gradcam

    inputs = keras.Input((32, 32, 3))
    features = keras.layers.Conv2D(4, 1, activation="relu", kernel_initializer="ones", name="inception_5b")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    logits = keras.layers.Dense(2, kernel_initializer="ones", name="main_classifier")(pooled)
    model = keras.Model(inputs, keras.layers.Activation("softmax", name="main")(logits))
    image = np.zeros((1, 32, 32, 3), np.float32)
    image[:, 2:10, 20:30] = 1.0
    maps, classes, scores = gradcam.heatmaps(gradcam.probe(model), image)
    assert maps.shape == (1, 32, 32) and maps[0, 2:10, 20:30].min() == 1.0 and maps[0, 16:, :16].max() == 0.0
    assert classes.tolist() == [0] and scores == pytest.approx([0.5])
    picture = gradcam.overlay(np.zeros((32, 32, 3), np.uint8), maps[0], "x")
    assert picture.shape == (24 + 224, 224, 3)
    hot, cold = picture[24 + 6 * 7, 25 * 7].astype(int), picture[24 + 28 * 7, 4 * 7].astype(int)
    assert hot[0] > hot[2] + 50 and cold[2] > cold[0] + 50  # JET: red where hot, blue where cold
    with pytest.raises(ValueError, match="Grad-CAM needs a GoogLeNet with layers 'inception_5b'"):
        gradcam.probe(keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)]))


def test_damaged_files_are_named_in_one_line_each_and_no_library_speaks(models, tmp_path):
    """A JPEG cut short is predicted with one warning naming it (libjpeg's own "Premature
    end of JPEG file" left out); a text file named .jpg gets the one error line, without
    FFmpeg's lines from the GIF fallback."""
    folder = tmp_path / "damaged"
    folder.mkdir()
    whole = cv2.imencode(".jpg", np.random.default_rng(3).integers(0, 256, (64, 80, 3), dtype=np.uint8))[1].tobytes()
    (folder / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "whole.jpg").write_bytes(whole)
    (folder / "notes.jpg").write_text("these are my notes, not a photo\n")
    result = _predict("--model", models / "saved_model", folder)
    assert result.returncode == 1  # notes.jpg
    assert result.stderr.splitlines() == [
        f"warning: {folder / 'cut.jpg'} is damaged: its JPEG data ends early; predicted from the part that is there",
        f"error: cannot read an image from {folder / 'notes.jpg'}",
    ], result.stderr
    assert f"{folder / 'cut.jpg'}:" in result.stdout and f"{folder / 'whole.jpg'}:" in result.stdout
