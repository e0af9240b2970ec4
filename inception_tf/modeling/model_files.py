"""What travels with a saved model: its class names and its input convention.

A `.keras` file is a zip archive (config.json, metadata.json, model.weights.h5); Keras
reads the entries it knows and leaves others alone, so `inception_tf.json` inside it
carries the class names and the preprocessing mode: one file to copy, and `predict`,
`evaluate`, `export` and `--init-from` know how to feed it. Files saved before it
existed fall back to `labels.txt` beside them and the "tf" mode.
"""

import dataclasses
import json
import pathlib
import zipfile

from inception_tf import files, keras_fixes
from inception_tf.modeling import imagenet
from inception_tf.modeling import preprocessing as preprocessing_lib

INFO_ENTRY = "inception_tf.json"
LABELS_FILE = "labels.txt"  # beside a .keras file, in a run directory and a SavedModel's assets


@dataclasses.dataclass
class ModelInfo:
    class_names: list = None
    preprocessing: str = "tf"


def labels_text(class_names):
    return "".join(f"{name}\n" for name in class_names)


def parse_labels(text):
    return [line.strip() for line in text.splitlines() if line.strip()]


def save_keras(model, path, class_names=None, preprocessing="tf"):
    """`model.save(path)` with the info entry, through `files.atomic_path`."""
    preprocessing_lib.check_mode(preprocessing)
    path = pathlib.Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"A model file must end in .keras. Received: path={str(path)!r}")
    with files.atomic_path(path, suffix=".keras") as tmp, keras_fixes.closing_failed_h5_writes():
        model.save(tmp)
        info = {"preprocessing": preprocessing, "class_names": None if class_names is None else list(class_names)}
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(INFO_ENTRY, json.dumps(info, indent=1))
    return path


def read_info(path):
    """The `ModelInfo` of a .keras file, a SavedModel folder (class names in assets), or
    BVLC's weights ("imagenet" or a caffemodel: ImageNet's classes, "caffe")."""
    path = pathlib.Path(path)
    if str(path) == imagenet.WEIGHTS or path.suffix == ".caffemodel":
        return ModelInfo(imagenet.class_names(), "caffe")
    info = ModelInfo()
    if path.is_dir():
        labels = path / "assets" / LABELS_FILE
        if labels.is_file():
            info.class_names = parse_labels(labels.read_text())
        return info
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if INFO_ENTRY in archive.namelist():
                stored = json.loads(archive.read(INFO_ENTRY))
                info.preprocessing = preprocessing_lib.check_mode(stored.get("preprocessing", "tf"))
                info.class_names = stored.get("class_names")
    if info.class_names is None and path.with_name(LABELS_FILE).is_file():
        info.class_names = parse_labels(path.with_name(LABELS_FILE).read_text())
    return info
