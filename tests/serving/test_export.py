"""SavedModel export: it serves in a process where inception_tf cannot be imported."""

import pathlib
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from inception_tf import GoogLeNet, export_saved_model
from inception_tf.modeling.image_input import preprocess_images
from inception_tf.serving.export import as_float32

from runs import command_here, env

CLASSES = ["zero", "one", "two", "three", "four"]
ROOT = pathlib.Path(__file__).resolve().parents[2]
PHOTOS = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")  # photographs matplotlib ships, of two sizes

# Runs in a fresh interpreter that refuses to import inception_tf.
STANDALONE = textwrap.dedent(
    """
    import sys
    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "inception_tf":
                raise ImportError("inception_tf must not be needed to serve")
    sys.meta_path.insert(0, Refuse())
    import numpy as np
    import tensorflow as tf
    batches = np.load(sys.argv[1])
    for export, out in zip(sys.argv[2::2], sys.argv[3::2]):
        loaded = tf.saved_model.load(export)
        serve = loaded.signatures["serving_default"]
        results = {}
        for key in batches.files:
            if key == "preprocessed":
                continue
            result = serve(images=tf.constant(batches[key]))
            for name, value in result.items():
                value = value.numpy()
                results[f"{key}/{name}"] = value.astype(str) if value.dtype == object else value
        pre = loaded.signatures["preprocessed"]
        results["preprocessed"] = pre(inputs=tf.constant(batches["preprocessed"]))["probabilities"].numpy()
        results["labels"] = np.array(open(export + "/assets/labels.txt").read().split())
        np.savez(out, **results)
    """
)


def _preprocessed():
    """Model input already at the model's size and normalised (the `preprocessed` signature's)."""
    return np.random.default_rng(1).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)


def _batches():
    rng = np.random.default_rng(0)
    return {
        "small": rng.integers(0, 256, (3, 40, 50, 3), dtype=np.uint8),
        "large": rng.integers(0, 256, (2, 300, 200, 3), dtype=np.uint8),
    }


def _serve_elsewhere(export_dirs, tmp_path):
    """What each SavedModel in `export_dirs` serves in one fresh process, by folder."""
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, **_batches(), preprocessed=_preprocessed())
    script = tmp_path / "serve.py"
    script.write_text(STANDALONE)
    outs = {export_dir: tmp_path / f"served-{i}.npz" for i, export_dir in enumerate(export_dirs)}
    subprocess.run(
        [sys.executable, str(script), str(inputs), *[str(arg) for pair in outs.items() for arg in pair]],
        check=True, capture_output=True, text=True, env=env(), cwd=tmp_path,
    )
    return {export_dir: dict(np.load(out)) for export_dir, out in outs.items()}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A float32 and a mixed-bfloat16 GoogLeNet, exported, and what their exports serve in
    one process without the package (a process each would load TensorFlow twice)."""
    root = tmp_path_factory.mktemp("served")
    keras.config.set_dtype_policy("mixed_bfloat16")
    mixed = GoogLeNet(num_classes=5, input_shape=(64, 64, 3))
    keras.config.set_dtype_policy("float32")
    models = {"float32": GoogLeNet(num_classes=5, input_shape=(64, 64, 3)), "mixed_bfloat16": mixed}
    exports = {name: export_saved_model(model, root / name, CLASSES) for name, model in models.items()}
    outputs = _serve_elsewhere(list(exports.values()), root)
    return {name: (models[name], exports[name], outputs[exports[name]]) for name in models}


def _reference(model, images):
    return np.asarray(model(preprocess_images(images, 64), training=False)[0], np.float32)


def test_export_serves_without_the_package(served):
    model, export_dir, served = served["float32"]
    for key, images in _batches().items():
        probabilities = served[f"{key}/probabilities"]
        assert probabilities.shape == (len(images), 5) and probabilities.dtype == np.float32
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(probabilities, _reference(model, images), atol=1e-5)
        top = served[f"{key}/top_k_indices"]
        np.testing.assert_array_equal(top[:, 0], probabilities.argmax(axis=1))
        assert list(served[f"{key}/top_k_classes"][0]) == [CLASSES[i] for i in top[0]]
    # `preprocessed` takes the model's input as it is: the Keras model's main head on it.
    expected = np.asarray(model(_preprocessed(), training=False)[0], np.float32)
    np.testing.assert_allclose(served["preprocessed"], expected, atol=1e-5)
    assert list(served["labels"]) == CLASSES
    # The main head's weights, once: not the aux heads', not the Keras wrappers' copy.
    stored = sum(p.stat().st_size for p in (export_dir / "variables").iterdir())
    assert 4 * model.count_params() * 0.5 < stored < 4 * GoogLeNet(num_classes=5, input_shape=(64, 64, 3), aux_heads=False).count_params() * 1.05


def test_a_mixed_bfloat16_model_exports_to_float32(served):
    model, _, served = served["mixed_bfloat16"]
    assert model.get_layer("inception_3a_1x1_conv").compute_dtype == "bfloat16"
    float_model = as_float32(model)
    assert {layer.compute_dtype for layer in float_model.layers} == {"float32"}
    for key, images in _batches().items():
        probabilities = served[f"{key}/probabilities"]
        np.testing.assert_allclose(probabilities, _reference(float_model, images), atol=1e-5)
        np.testing.assert_allclose(probabilities, _reference(model, images), atol=2e-2)  # bfloat16's own


@pytest.fixture(scope="module")
def headless(tmp_path_factory):
    """The export of a model without aux heads, which the tests below only read."""
    model = GoogLeNet(num_classes=5, input_shape=(64, 64, 3), aux_heads=False)
    return export_saved_model(model, tmp_path_factory.mktemp("headless") / "saved_model", CLASSES)


def test_saved_model_cli_lists_both_signatures(headless):
    cli = shutil.which("saved_model_cli", path=str(pathlib.Path(sys.executable).parent))
    assert cli, "TensorFlow's pip package installs saved_model_cli beside python; the README's serving line needs it"
    export_dir = headless
    shown = subprocess.run([cli, "show", "--dir", str(export_dir), "--all"], capture_output=True, text=True, env=env(), check=True).stdout
    assert "signature_def['serving_default']" in shown and "signature_def['preprocessed']" in shown
    assert "dtype: DT_UINT8" in shown and "shape: (-1, -1, -1, 3)" in shown
    assert "shape: (-1, 5)" in shown
    assert "dtype: DT_FLOAT" in shown and "shape: (-1, 64, 64, 3)" in shown  # the preprocessed signature


def test_an_export_replaces_the_old_one_whole(tmp_path):
    target = tmp_path / "export"
    export_saved_model(GoogLeNet(num_classes=5, input_shape=(64, 64, 3)), target)
    (target / "assets" / "stale.txt").write_text("from the old export")  # inside the export's own entries
    export_saved_model(GoogLeNet(num_classes=3, input_shape=(64, 64, 3)), target, CLASSES[:3])
    assert not (target / "assets" / "stale.txt").exists()
    assert (target / "assets" / "labels.txt").read_text().split() == CLASSES[:3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temporary left behind
    import tensorflow as tf

    served = tf.saved_model.load(str(target)).signatures["serving_default"](images=tf.constant(_batches()["small"]))
    assert served["probabilities"].shape == (3, 3)  # the new model's graph, not the old one's
    assert set(served["top_k_classes"].numpy().ravel().astype(str)) <= set(CLASSES[:3])


def test_an_export_never_deletes_a_users_files(tmp_path):
    import tensorflow as tf

    target = tmp_path / "mine"
    target.mkdir()
    (target / "keep.txt").write_text("the user's")
    model = GoogLeNet(num_classes=3, input_shape=(64, 64, 3), aux_heads=False)
    with pytest.raises(ValueError, match=r"mine holds files an export does not write \(keep.txt\): .*`--overwrite`"):
        export_saved_model(model, target, CLASSES[:3])
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]
    for _ in range(2):  # into the folder, then over that export: the user's file stays
        export_saved_model(model, target, CLASSES[:3], overwrite=True)
        assert (target / "keep.txt").read_text() == "the user's"
        assert sorted(p.name for p in target.iterdir()) == ["assets", "fingerprint.pb", "keep.txt", "saved_model.pb", "variables"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temporary left beside it
    served = tf.saved_model.load(str(target)).signatures["serving_default"](images=tf.constant(_batches()["small"]))
    assert served["probabilities"].shape == (3, 3)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"goes into a folder, and .*file is a file"):
        export_saved_model(model, tmp_path / "file")


def test_export_command_refuses_a_folder_of_other_files_before_loading(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("the user's")
    code, out, err = command_here("export", "--model", tmp_path / "missing.keras", "--out", tmp_path / "out")
    assert (code, out) == (2, "") and "holds files an export does not write (keep.txt)" in err  # not the missing model
    assert err.count("\n") == 1 and (tmp_path / "out" / "keep.txt").is_file()


def test_export_rejects_wrong_class_names(tmp_path):
    with pytest.raises(ValueError, match=r"name the model's 5 classes. Received: 2 names"):
        export_saved_model(GoogLeNet(num_classes=5, input_shape=(64, 64, 3)), tmp_path / "e", ["a", "b"])
    assert not (tmp_path / "e").exists()


def test_export_command(tmp_path):
    model = GoogLeNet(num_classes=5, input_shape=(64, 64, 3))
    model.save(tmp_path / "model.keras")
    (tmp_path / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    # In this process: test_export_serves_without_the_package serves from a fresh one.
    code, out, err = command_here("export", "--model", tmp_path / "model.keras", "--out", tmp_path / "sm")
    assert code == 0, err
    assert str(tmp_path / "sm") in out
    assert (tmp_path / "sm" / "assets" / "labels.txt").read_text().split() == CLASSES
    # The folder serves the saved model's main head, not a fresh one.
    import tensorflow as tf

    images = _batches()["small"]
    served = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_allclose(served["probabilities"].numpy(), _reference(model, images), atol=1e-5)


def _readme_lines(prefix):
    readme = (ROOT / "README.md").read_text()
    lines = [line.split("  #")[0].strip() for line in readme.splitlines() if line.startswith(prefix)]
    assert lines, f"the README shows no `{prefix}` line"
    return lines[0]


def test_the_bytes_signature_serves_photos_of_two_sizes_as_serving_default_does(headless, tmp_path):
    import matplotlib.cbook
    import tensorflow as tf

    photos = [pathlib.Path(matplotlib.cbook.get_sample_data(name, asfileobj=False)) for name in PHOTOS]
    export_dir = headless
    loaded = tf.saved_model.load(str(export_dir))
    encoded = [path.read_bytes() for path in photos]
    by_bytes = loaded.signatures["image_bytes"](image_bytes=tf.constant(encoded))
    shapes = set()
    for i, data in enumerate(encoded):
        pixels = tf.io.decode_image(data, channels=3, expand_animations=False)[None]
        shapes.add(tuple(pixels.shape[1:3]))
        by_pixels = loaded.signatures["serving_default"](images=pixels)
        np.testing.assert_allclose(by_bytes["probabilities"][i], by_pixels["probabilities"][0], atol=1e-5)
        assert by_bytes["top_k_classes"][i].numpy().tolist() == by_pixels["top_k_classes"][0].numpy().tolist()
    assert len(shapes) == 2, "the two photos must differ in size"

    # The README's saved_model_cli line, as written, on the same two photos.
    for path, name in zip(photos, ("a.jpg", "b.png")):
        shutil.copy(path, tmp_path / name)
    make_inputs = _readme_lines("python -c \"import numpy as np; np.save('photos.npy'")
    subprocess.run(make_inputs, shell=True, check=True, cwd=tmp_path, env={**env(), "PATH": f"{pathlib.Path(sys.executable).parent}:{env()['PATH']}"})
    command = _readme_lines("saved_model_cli run").replace("RUN_DIR/saved_model", str(export_dir))
    shown = subprocess.run(
        command, shell=True, check=True, cwd=tmp_path, capture_output=True, text=True,
        env={**env(), "PATH": f"{pathlib.Path(sys.executable).parent}:{env()['PATH']}"},
    ).stdout
    assert "top_k_classes" in shown and CLASSES[int(by_bytes["top_k_indices"][0, 0])] in shown
