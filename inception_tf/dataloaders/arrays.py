"""The data sets held in memory: fashion_mnist and mnist (IDX files, Keras's mnist.npz),
cifar10 and cifar100 (the Python version's pickles), found in a given folder, the OS
package, the Keras cache, or else downloaded by Keras."""

import gzip
import os
import pathlib
import pickle
import struct

import numpy as np

from inception_tf.dataloaders.sources import DataError, DataNotFoundError, Source, Split

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


def load_arrays(name, data_dir=None, download=True):
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
