"""The ILSVRC-2012 validation set, for `evaluate --dataset imagenet`, in its common layouts,
every label in the class order of BVLC's model (`imagenet.class_index`: sorted WordNet IDs).

- One folder per WordNet ID (`n01440764/ILSVRC2012_val_00000293.JPEG`), as the PyTorch and
  Keras preparation scripts leave it.
- The flat folder of `ILSVRC2012_val_00000001.JPEG` ... with Caffe's `val.txt`
  (`ILSVRC2012_val_00000001.JPEG 65`), whose labels are already BVLC's.
- The flat folder with the devkit's `ILSVRC2012_validation_ground_truth.txt` (line i: the
  class of image i, as an ILSVRC2012_ID) and `meta.mat`. Those IDs (1-1000) are NOT in
  WordNet-ID order: each is mapped through its synset's WNID.

Label files are looked for in the folder, its parent, and the devkit's `data/` folder
(`ILSVRC2012_devkit_t12/data`) under either. The classes are named by WordNet ID, so a
per-class report is keyed by them. Images may be of any size, grayscale or CMYK (the
decoder makes RGB of each).
"""

import pathlib
import re

import numpy as np

from inception_tf.dataloaders import sources
from inception_tf.dataloaders.sources import DataError, DataNotFoundError
from inception_tf.modeling import imagenet

CAFFE_LABELS = "val.txt"
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
META = "meta.mat"
DEVKIT_DATA = "ILSVRC2012_devkit_t12/data"
WNID = re.compile(r"n\d{8}")
IMAGE_NUMBER = re.compile(r"ILSVRC2012_val_(\d{8})\.", re.IGNORECASE)


def load_validation_set(data_dir):
    """A `sources.Source` named "imagenet" with one split, "validation"."""
    if data_dir is None:
        raise DataError("--dataset imagenet needs --data-dir: the ILSVRC-2012 validation images. Received: data_dir=None")
    root = pathlib.Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(f"The ImageNet validation folder does not exist. Received: data_dir={str(root)!r}")
    wnids = [wnid for wnid, _ in imagenet.class_index()]
    index = {wnid: i for i, wnid in enumerate(wnids)}
    folders = [p for p in sources.class_folders(root) if WNID.fullmatch(p.name)]
    if folders:
        files, labels, layout = _by_folder(folders, index)
    else:
        files, labels, layout = _flat(root, index)
    if not files:
        raise DataNotFoundError(f"No ImageNet validation images ({', '.join(sources.IMAGE_EXTENSIONS)}) in {root}")
    split = sources.Split(len(files), files=tuple(files), labels=np.asarray(labels, np.int32))
    return sources.Source("imagenet", tuple(wnids), {"validation": split}, f"{root} ({layout})")


def _by_folder(folders, index):
    unknown = [p.name for p in folders if p.name not in index]
    if unknown:
        raise DataError(f"Folders named like WordNet IDs that are not ILSVRC-2012 classes: {unknown[:5]}")
    files, labels = [], []
    for folder in folders:
        for path in sources.list_images(folder):
            files.append(str(path))
            labels.append(index[folder.name])
    return files, labels, "a folder per WordNet ID"


def _flat(root, index):
    # Keyed by the image's number: the label files name the images, in one case or another.
    images = {_number(path.name): path for path in sources.list_images(root) if IMAGE_NUMBER.match(path.name)}
    places = [root, root.parent, root / DEVKIT_DATA, root.parent / DEVKIT_DATA]
    caffe = _first(places, CAFFE_LABELS)
    if caffe is not None:
        by_number = _caffe_labels(caffe)
        layout = f"labels from {caffe}"
    else:
        truth, meta = _first(places, GROUND_TRUTH), _first(places, META)
        if truth is None or meta is None:
            raise DataNotFoundError(
                f"{root} has no WordNet-ID folders, and no {CAFFE_LABELS} (Caffe's) or {GROUND_TRUTH} with {META} "
                f"(the devkit's) in it, its parent, or {DEVKIT_DATA} under either, to label its images"
            )
        by_number = _devkit_labels(truth, meta, index)
        layout = f"labels from {truth} and {meta}"
    unlabelled = sorted(set(images) - set(by_number))
    if unlabelled:
        raise DataError(
            f"{len(unlabelled)} images in {root} have no label in the label file, e.g. {images[unlabelled[0]].name}"
        )
    numbers = sorted(images)
    return [str(images[n]) for n in numbers], [by_number[n] for n in numbers], layout


def _number(name):
    return int(IMAGE_NUMBER.match(name).group(1))


def _first(places, name):
    return next((place / name for place in places if (place / name).is_file()), None)


def _caffe_labels(path):
    labels = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].isdigit() or not 0 <= int(parts[1]) < imagenet.NUM_CLASSES:
            raise DataError(f"Line {number} of {path} is not 'FILE LABEL' with a label in [0, 1000). Received: {line!r}")
        if IMAGE_NUMBER.match(parts[0]):
            labels[_number(parts[0])] = int(parts[1])
    return labels


def _devkit_labels(truth, meta, index):
    """{image number: BVLC label}: ground truth IDs mapped through meta.mat's WNIDs."""
    from scipy.io import loadmat

    try:
        synsets = loadmat(str(meta), squeeze_me=True)["synsets"]
        by_id = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets}
    except (KeyError, ValueError, TypeError, OSError) as error:
        raise DataError(f"{meta} is not the devkit's meta.mat (a 'synsets' struct with ILSVRC2012_ID and WNID): {error}") from None
    labels = {}
    for number, line in enumerate(truth.read_text().split(), 1):
        wnid = by_id.get(int(line))
        if wnid not in index:
            raise DataError(f"Line {number} of {truth} names class {line}, which {meta} does not map to an ILSVRC-2012 class")
        labels[number] = index[wnid]
    return labels
