"""Where the data sets live and how their files are read.

Each loader returns a `Source`: class names and splits ("train", and where the data set
has them "validation" and "test"), each split holding images in memory, a list of image
files, or TFRecord shards. Here: what a split is, a folder of class subfolders and
TFRecord shards; the in-memory data sets are in `arrays`, ILSVRC-2012 in `ilsvrc`, a data
set by name in `catalog`. Decoding, augmentation and batching are in `data`.
"""

import dataclasses
import os
import pathlib
import struct
import warnings

import numpy as np

from inception_tf.modeling import model_files

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
LABEL_FEATURE = "image/class/label"
IMAGE_FEATURE = "image/encoded"


class DataNotFoundError(FileNotFoundError):
    """A data set was not found in any of the places looked in."""


class DataError(ValueError):
    """A data set was found but cannot be used as it is."""


@dataclasses.dataclass
class Split:
    """One split: `images` (uint8 [N, H, W, C]) in memory, image `files`, or TFRecord
    `shards` of which the records `record_range` are used, counted in shard order.
    `labels` are int32, in the order the examples are read without shuffling."""

    size: int
    images: np.ndarray = None
    labels: np.ndarray = None
    files: tuple = None
    shards: tuple = None
    record_range: tuple = None
    ignore_decode_errors: bool = False

    @property
    def kind(self):
        return "arrays" if self.images is not None else "files" if self.files is not None else "records"

    def slice(self, start, stop):
        """The examples [start, stop) of this split, in its fixed order."""
        start, stop = max(0, start), min(self.size, stop)
        first = self.record_range[0] if self.record_range else 0
        return dataclasses.replace(
            self,
            size=stop - start,
            images=None if self.images is None else self.images[start:stop],
            files=None if self.files is None else self.files[start:stop],
            record_range=(first + start, first + stop) if self.kind == "records" else None,
            labels=self.labels[start:stop],
        )


@dataclasses.dataclass
class Source:
    name: str
    class_names: tuple
    splits: dict
    location: str

    @property
    def num_classes(self):
        return len(self.class_names)


# --- A folder of class subfolders ------------------------------------------------------

def image_file_problem(path):
    """Why `path` is not a complete JPEG, PNG, BMP or GIF file, or None if it looks whole.

    Reads the first and last bytes only: enough to catch empty, truncated and non-image
    files before training starts, without decoding a whole data set.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(16)
            f.seek(max(0, size - 16))
            tail = f.read(16)
    except OSError as error:
        return f"cannot be read ({error.strerror})"
    if size == 0:
        return "empty file"
    if head.startswith(b"\xff\xd8\xff"):
        return None if b"\xff\xd9" in tail else "truncated JPEG (no end-of-image marker)"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return None if b"IEND" in tail else "truncated PNG (no IEND chunk)"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return None if tail.rstrip(b"\0").endswith(b";") else "truncated GIF (no trailer)"
    if head.startswith(b"BM") and len(head) >= 6:
        declared = struct.unpack("<I", head[2:6])[0]
        return None if declared <= size else f"truncated BMP ({size} of {declared} bytes)"
    return "not a JPEG, PNG, BMP or GIF file"


def class_folders(root):
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_images(folder):
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


def _folder_split(root, class_names, skip_corrupt, seed=0):
    files, labels, problems = [], [], []
    for label, name in enumerate(class_names):
        folder = root / name
        images = list_images(folder) if folder.is_dir() else []
        for path in images:
            problem = image_file_problem(path)
            if problem is None:
                files.append(str(path))
                labels.append(label)
            else:
                problems.append(f"{path} ({problem})")
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        if not skip_corrupt:
            raise DataError(
                f"{len(problems)} file(s) under {root} are not readable images:\n{listed}{more}\n"
                "Remove them, or pass --skip-corrupt to leave them out."
            )
        warnings.warn(
            f"Left out {len(problems)} unreadable image file(s) under {root}:\n{listed}{more}", stacklevel=3
        )
    # A fixed pseudo-random order, so --limit and the validation split cover every class.
    order = np.random.default_rng(seed).permutation(len(files))
    return Split(
        len(files),
        files=tuple(files[i] for i in order),
        labels=np.asarray(labels, np.int32)[order],
        ignore_decode_errors=skip_corrupt,
    )


SPLIT_FOLDERS = {"train": ("train",), "validation": ("validation", "val"), "test": ("test",)}


def load_folder_source(data_dir, skip_corrupt=False):
    """A folder of class subfolders of images, or `train/` (+ `validation/` or `val/`,
    `test/`) folders of class subfolders. Class names are the sorted folder names."""
    if data_dir is None:
        raise DataError("The folder data set needs --data-dir (data_dir) to point at it. Received: data_dir=None")
    root = pathlib.Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(f"The image folder does not exist. Received: data_dir={str(root)!r}")
    split_roots = {}
    for split, names in SPLIT_FOLDERS.items():
        for name in names:
            if (root / name).is_dir():
                split_roots[split] = root / name
                break
    if "train" not in split_roots:
        split_roots = {"train": root}
    class_names = tuple(p.name for p in class_folders(split_roots["train"]))
    if len(class_names) < 2:
        raise DataError(
            "An image folder needs at least two class subfolders. "
            f"Received: {split_roots['train']} with {len(class_names)}: {list(class_names)}"
        )
    empty = [name for name in class_names if not list_images(split_roots["train"] / name)]
    if empty:
        raise DataError(
            f"Class folder(s) without images ({', '.join(IMAGE_EXTENSIONS)}) under "
            f"{split_roots['train']}: {empty}"
        )
    for split, folder in split_roots.items():
        unknown = sorted(set(p.name for p in class_folders(folder)) - set(class_names))
        if unknown:
            raise DataError(f"{folder} has class folders that the training folder lacks: {unknown}")
    splits = {split: _folder_split(folder, class_names, skip_corrupt) for split, folder in split_roots.items()}
    return Source("folder", class_names, splits, str(root))


# --- TFRecord shards -------------------------------------------------------------------

SHARD_PREFIXES = {"train": ("train",), "validation": ("validation", "val"), "test": ("test",)}


def _scan_labels(shards):
    """Every label of `shards`, read without decoding images."""
    import tensorflow as tf

    features = {LABEL_FEATURE: tf.io.FixedLenFeature([], tf.int64)}
    dataset = tf.data.TFRecordDataset(list(shards)).batch(4096)
    dataset = dataset.map(lambda records: tf.io.parse_example(records, features)[LABEL_FEATURE])
    try:
        parts = [batch.numpy() for batch in dataset]
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as error:
        raise DataError(
            f"Cannot read the labels of the TFRecord shards {[str(s) for s in shards]}: each record must be a "
            f"tf.train.Example with an int64 '{LABEL_FEATURE}' and a bytes '{IMAGE_FEATURE}'. "
            f"TensorFlow said: {error.message.splitlines()[0]}"
        ) from None
    return np.concatenate(parts) if parts else np.zeros([0], np.int64)


def load_tfrecord_source(data_dir):
    """Shards named `train*`, `validation*` / `val*`, `test*` of tf.train.Example records
    (`image/encoded`, `image/class/label`, the ImageNet convention, labels from 0).
    Class names from `labels.txt` beside them (one per line), else "0", "1", ..."""
    if data_dir is None:
        raise DataError("The tfrecord data set needs --data-dir (data_dir) to point at it. Received: data_dir=None")
    root = pathlib.Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(f"The TFRecord folder does not exist. Received: data_dir={str(root)!r}")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.name != model_files.LABELS_FILE)
    shards = {}
    for split, prefixes in SHARD_PREFIXES.items():
        matched = [p for p in files if any(p.name.startswith(prefix) for prefix in prefixes)]
        if matched:
            shards[split] = tuple(str(p) for p in matched)
    if "train" not in shards:
        raise DataNotFoundError(f"No TFRecord shards named train* in {root}. Found: {[p.name for p in files]}")
    labels_file = root / model_files.LABELS_FILE
    class_names = None
    if labels_file.is_file():
        class_names = tuple(model_files.parse_labels(labels_file.read_text()))
    scanned = {split: _scan_labels(paths) for split, paths in shards.items()}
    if class_names is None:
        top = max(int(labels.max()) for labels in scanned.values() if labels.size)
        class_names = tuple(str(i) for i in range(top + 1))
    splits = {}
    for split, labels in scanned.items():
        check_labels(labels, len(class_names), f"TFRecord {split} shards in {root}")
        splits[split] = Split(len(labels), shards=shards[split], labels=labels.astype(np.int32))
    return Source("tfrecord", class_names, splits, str(root))


def check_labels(labels, num_classes, where):
    """Labels must be integers in [0, num_classes)."""
    labels = np.asarray(labels)
    if labels.size == 0:
        raise DataError(f"No examples in the {where}.")
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        values = sorted(set(labels[bad].tolist()))[:10]
        raise DataError(
            f"Labels outside [0, {num_classes}) in the {where}: {bad.sum()} example(s), values {values}. "
            f"Received: num_classes={num_classes}"
        )
