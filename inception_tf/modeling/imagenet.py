"""The 1000 ILSVRC-2012 classes, in the order of the BVLC model's outputs (sorted WordNet
IDs, as Caffe's `synset_words.txt` and Keras's `imagenet_class_index.json`)."""

import functools
import importlib.resources

import numpy as np

CLASSES_FILE = "imagenet_classes.txt"  # "wnid lemma, lemma, ..." per line
NUM_CLASSES = 1000
WEIGHTS = "imagenet"  # BVLC's weights: the word every place that takes weights or a model file takes too


@functools.cache
def class_index():
    """[(wnid, name)], the name being the first lemma with underscores, as Keras names them."""
    text = importlib.resources.files("inception_tf.modeling").joinpath(CLASSES_FILE).read_text()
    rows = []
    for line in text.splitlines():
        wnid, _, lemmas = line.partition(" ")
        rows.append((wnid, lemmas.split(",")[0].strip().replace(" ", "_")))
    if len(rows) != NUM_CLASSES:
        raise RuntimeError(f"{CLASSES_FILE} lists {len(rows)} classes, not {NUM_CLASSES}")
    return tuple(rows)


def class_names():
    return [name for _, name in class_index()]


def decode_predictions(preds, top=5):
    """The `top` ImageNet classes of each row of probabilities, as Keras decodes them.

    Args:
        preds: `(batch, 1000)` probabilities (or logits).
        top: how many classes per row.

    Returns:
        One list per row of `(wnid, name, score)` tuples, best first.
    """
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != NUM_CLASSES:
        raise ValueError(
            f"`decode_predictions` expects a batch of ImageNet predictions (batch, {NUM_CLASSES}). "
            f"Received: shape={preds.shape}"
        )
    if not isinstance(top, int) or isinstance(top, bool) or not 1 <= top <= NUM_CLASSES:
        raise ValueError(f"`top` must be an integer in [1, {NUM_CLASSES}]. Received: top={top!r}")
    index = class_index()
    results = []
    for row in preds:
        order = np.argsort(-row, kind="stable")[:top]
        results.append([(*index[i], float(row[i])) for i in order])
    return results
