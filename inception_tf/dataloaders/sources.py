"""Where the data sets live and how their files are read.

Each loader returns a `Source`: class names and splits ("train", and where the data set
has them "validation" and "test"), each split holding images in memory, a list of image
files, or TFRecord shards. Decoding, augmentation and batching are in `data.py`.
"""

import dataclasses
import gzip
import os
import pathlib
import pickle
import struct
import warnings

import numpy as np

from inception_tf.modeling import model_files

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
MNIST_CLASSES = tuple(str(digit) for digit in range(10))
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_INSTALL = "apt-get install -y dataset-fashion-mnist"
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


def keras_datasets_dirs():
    """Keras's cache folders: $KERAS_HOME/datasets, else ~/.keras/datasets, and the
    /tmp/.keras/datasets Keras falls back to when the home folder is read-only."""
    if "KERAS_HOME" in os.environ:
        return [pathlib.Path(os.environ["KERAS_HOME"]) / "datasets"]
    return [pathlib.Path("~/.keras/datasets").expanduser(), pathlib.Path("/tmp/.keras/datasets")]


# --- IDX (MNIST-style) files -------------------------------------------------------------

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find_idx(folder, stem):
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def read_idx(path):
    """An IDX file (gzip or raw) as a numpy array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0:2] != b"\0\0" or data[2] != 0x08:
        raise DataError(f"Not an IDX file of unsigned bytes: {path}")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(dims)):
        raise DataError(f"IDX file {path} holds {array.size} values where its header promises {dims}")
    return array.reshape(dims)


def _idx_splits(folder):
    """Train and test splits from the four IDX files in `folder`, or None if one is missing."""
    paths = {split: [_find_idx(folder, stem) for stem in stems] for split, stems in IDX_FILES.items()}
    if any(p is None for pair in paths.values() for p in pair):
        return None
    splits = {}
    for split, (images_path, labels_path) in paths.items():
        images, labels = read_idx(images_path), read_idx(labels_path)
        if len(images) != len(labels):
            raise DataError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
        splits[split] = Split(len(images), images=images[..., None], labels=labels.astype(np.int32))
    return splits


# --- Keras-format caches ---------------------------------------------------------------

class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR batches are pickles: let them build numpy arrays and nothing else."""

    def find_class(self, module, name):
        if module.split(".")[0] == "numpy" and name in ("_reconstruct", "ndarray", "dtype", "scalar"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


def _load_pickle(path):
    with open(path, "rb") as f:
        return {
            (k.decode() if isinstance(k, bytes) else k): v
            for k, v in _NumpyOnlyUnpickler(f, encoding="bytes").load().items()
        }


def _cifar_batch(path, label_key):
    batch = _load_pickle(path)
    images = np.asarray(batch["data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, np.asarray(batch[label_key], np.int32)


def _cifar_folder(folder, files, label_key):
    splits = {}
    for split, names in files.items():
        parts = [_cifar_batch(folder / name, label_key) for name in names]
        images = np.concatenate([p[0] for p in parts])
        splits[split] = Split(len(images), images=images, labels=np.concatenate([p[1] for p in parts]))
    return splits


CIFAR_LAYOUTS = {
    # name: (folder inside the archive, Keras 3 cache folder, files per split, meta file, meta key)
    "cifar10": (
        "cifar-10-batches-py",
        "cifar-10-batches-py-target",
        {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
        "batches.meta",
        "label_names",
    ),
    "cifar100": (
        "cifar-100-python",
        "cifar-100-python-target",
        {"train": ["train"], "test": ["test"]},
        "meta",
        "fine_label_names",
    ),
}


def _cifar_candidates(name, data_dir):
    inner, target, _, _, _ = CIFAR_LAYOUTS[name]
    if data_dir is not None:
        return [data_dir, data_dir / inner]
    candidates = []
    for cache in keras_datasets_dirs():
        candidates += [cache / target / inner, cache / inner]
    return candidates


def _default_class_names(name):
    """CIFAR-10's names; CIFAR-100's come from its meta file, else `class_0` ..."""
    return CIFAR10_CLASSES if name == "cifar10" else tuple(f"class_{i}" for i in range(100))


def _load_cifar(name, folder):
    inner, _, files, meta_file, meta_key = CIFAR_LAYOUTS[name]
    label_key = "labels" if name == "cifar10" else "fine_labels"
    splits = _cifar_folder(folder, files, label_key)
    class_names = _default_class_names(name)
    if (folder / meta_file).is_file():
        names = _load_pickle(folder / meta_file).get(meta_key)
        if names:
            class_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    return class_names, splits


def _from_keras_download(name):
    """Keras's own loader, which downloads into its cache."""
    import keras

    module = getattr(keras.datasets, name)
    (x_train, y_train), (x_test, y_test) = module.load_data()

    def split(x, y):
        x = np.asarray(x, np.uint8)
        return Split(len(x), images=x if x.ndim == 4 else x[..., None], labels=np.asarray(y, np.int32).reshape(-1))

    return {"train": split(x_train, y_train), "test": split(x_test, y_test)}


def _not_found(title, looked_in, download_error, install):
    places = "\n".join(f"  - {place}" for place in looked_in)
    message = f"{title} was not found. Looked in:\n{places}"
    if download_error is not None:
        message += f"\n  - Keras's download: {download_error}"
    message += f"\n{install}"
    return DataNotFoundError(message)


def load_array_source(name, data_dir=None, download=True):
    """fashion_mnist, mnist, cifar10, cifar100: from `data_dir`, the OS package
    (fashion_mnist), the Keras cache, else Keras's download."""
    data_dir = pathlib.Path(data_dir).expanduser() if data_dir is not None else None
    looked_in = []
    class_names = {"fashion_mnist": FASHION_MNIST_CLASSES, "mnist": MNIST_CLASSES}.get(name)
    if name == "fashion_mnist":
        if data_dir is not None:
            candidates = [data_dir]
        else:
            candidates = [pathlib.Path(FASHION_MNIST_SYSTEM_DIR)]
            candidates += [cache / "fashion-mnist" for cache in keras_datasets_dirs()]
        for folder in candidates:
            looked_in.append(f"{folder} (train-images-idx3-ubyte.gz and the three other IDX files)")
            splits = _idx_splits(folder)
            if splits is not None:
                return Source(name, class_names, splits, str(folder))
        install = (
            f"Install it with `{FASHION_MNIST_INSTALL}` (Debian, Ubuntu), "
            "or pass --data-dir to a folder that holds the four IDX files."
        )
    elif name == "mnist":
        candidates = [data_dir / "mnist.npz"] if data_dir else [c / "mnist.npz" for c in keras_datasets_dirs()]
        for path in candidates:
            looked_in.append(str(path))
            if path.is_file():
                with np.load(path, allow_pickle=False) as f:
                    splits = {
                        split: Split(len(f[f"x_{split}"]), images=f[f"x_{split}"][..., None].astype(np.uint8),
                                     labels=f[f"y_{split}"].astype(np.int32))
                        for split in ("train", "test")
                    }
                return Source(name, class_names, splits, str(path))
        install = "Put Keras's mnist.npz in one of these places, or pass --data-dir to its folder."
    elif name in CIFAR_LAYOUTS:
        for folder in _cifar_candidates(name, data_dir):
            looked_in.append(str(folder))
            if (folder / CIFAR_LAYOUTS[name][2]["test"][0]).is_file():
                class_names, splits = _load_cifar(name, folder)
                return Source(name, class_names, splits, str(folder))
        install = (
            f"Put the extracted {CIFAR_LAYOUTS[name][0]} folder of the Python version in one of "
            "these places, or pass --data-dir to it."
        )
    else:
        raise ValueError(f"Unknown in-memory data set. Received: name={name!r}")

    download_error = "not tried (a --data-dir was given)" if data_dir is not None else "not tried"
    if download and data_dir is None:
        try:
            splits = _from_keras_download(name)
        except Exception as error:  # urllib and Keras raise several kinds
            download_error = f"failed ({error})"
        else:
            names = class_names or _default_class_names(name)
            return Source(name, names, splits, "Keras download")
    raise _not_found(name, looked_in, download_error, install)


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


def _class_folders(root):
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _list_images(folder):
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


def _folder_split(root, class_names, skip_corrupt, seed=0):
    files, labels, problems = [], [], []
    for label, name in enumerate(class_names):
        folder = root / name
        images = _list_images(folder) if folder.is_dir() else []
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
    class_names = tuple(p.name for p in _class_folders(split_roots["train"]))
    if len(class_names) < 2:
        raise DataError(
            "An image folder needs at least two class subfolders. "
            f"Received: {split_roots['train']} with {len(class_names)}: {list(class_names)}"
        )
    empty = [name for name in class_names if not _list_images(split_roots["train"] / name)]
    if empty:
        raise DataError(
            f"Class folder(s) without images ({', '.join(IMAGE_EXTENSIONS)}) under "
            f"{split_roots['train']}: {empty}"
        )
    for split, folder in split_roots.items():
        unknown = sorted(set(p.name for p in _class_folders(folder)) - set(class_names))
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
