"""A data set by name (`load_source`): where it is found, its splits cut (a limit, a
held-out validation fraction) and its labels checked."""

import dataclasses

from inception_tf import choices
from inception_tf.dataloaders import arrays, ilsvrc, sources
from inception_tf.dataloaders.sources import DataError


def load_source(name, data_dir=None, validation_split=0.0, limit=None, skip_corrupt=False, download=True):
    """A data set by name, with its splits cut and checked.

    Args:
        name: one of `choices.SOURCES`, or "imagenet" (the ILSVRC-2012 validation set, `ilsvrc`).
        data_dir: where to look instead of the default places (required for "folder"
            and "tfrecord").
        validation_split: fraction of the training split held out as "validation"
            (its last examples), when the data set has no validation split of its own.
        limit: keep the first `limit` examples of each split (quick runs).
        skip_corrupt: leave unreadable image files out (with a warning) instead of
            raising an error that names them.
        download: let Keras download mnist / cifar / fashion_mnist when not found.

    Returns:
        A `sources.Source`.
    """
    if name not in choices.EVALUATION_SOURCES:
        raise ValueError(f"`name` must be one of {choices.EVALUATION_SOURCES}. Received: name={name!r}")
    if not 0 <= validation_split < 1:
        raise ValueError(f"`validation_split` must be in [0, 1). Received: validation_split={validation_split!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"`limit` must be a positive integer or None. Received: limit={limit!r}")
    if name == "folder":
        source = sources.load_folder_source(data_dir, skip_corrupt=skip_corrupt)
    elif name == "tfrecord":
        source = sources.load_tfrecord_source(data_dir)
    elif name == "imagenet":
        source = ilsvrc.load_validation_set(data_dir)
    else:
        source = arrays.load_arrays(name, data_dir, download=download)
    splits = dict(source.splits)
    if limit is not None:
        splits = {key: split.slice(0, limit) for key, split in splits.items()}
    if validation_split and "validation" not in splits:
        train = splits["train"]
        held_out = int(round(train.size * validation_split))
        if held_out < 1 or held_out >= train.size:
            raise DataError(
                f"validation_split={validation_split} of {train.size} training examples leaves "
                f"{held_out} for validation and {train.size - held_out} for training."
            )
        splits["train"] = train.slice(0, train.size - held_out)
        splits["validation"] = train.slice(train.size - held_out, train.size)
    for key, split in splits.items():
        sources.check_labels(split.labels, source.num_classes, f"{key} split of {source.name} ({source.location})")
    return dataclasses.replace(source, splits=splits)
