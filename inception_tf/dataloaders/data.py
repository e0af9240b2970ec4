"""tf.data pipelines: decode -> (train: shuffle, augment) -> resize -> 3 channels ->
normalize -> batch -> one label per head -> prefetch.

Nothing is resized ahead of time: images stay uint8 at their own size until the batch
they are in is resized (CIFAR-10 at 224x224 in float32 would be 30 GB). Images of one
size (the in-memory data sets) are batched first and resized a whole batch at a time;
image files, of any size, are resized one by one and then batched.
"""

import dataclasses
import secrets

import numpy as np
import tensorflow as tf

from inception_tf import choices
from inception_tf.dataloaders import augment as augment_lib
from inception_tf.dataloaders import sources
from inception_tf.modeling import network
from inception_tf.modeling import preprocessing as preprocessing_lib
from inception_tf.modeling.image_input import decode_image, preprocess_each, preprocess_images

SHUFFLE_BUFFER_RECORDS = 4096  # encoded images (ImageNet's are ~110 KB each)


# --- Pipelines ------------------------------------------------------------------------

def _decode_file(path):
    return decode_image(tf.io.read_file(path))


def _decode_record(record):
    features = tf.io.parse_single_example(
        record,
        {
            sources.IMAGE_FEATURE: tf.io.FixedLenFeature([], tf.string),
            sources.LABEL_FEATURE: tf.io.FixedLenFeature([], tf.int64),
        },
    )
    return decode_image(features[sources.IMAGE_FEATURE]), tf.cast(features[sources.LABEL_FEATURE], tf.int32)


def images_at(split, indices):
    """The uint8 images of `split` at `indices` (in its fixed evaluation order), as a list."""
    if split.kind == "arrays":
        return [split.images[i] for i in indices]
    if split.kind == "files" and not split.ignore_decode_errors:  # random access: decode those files only
        return [decode_image(tf.io.read_file(split.files[int(i)])).numpy() for i in indices]
    # Records are read in order, and with unreadable files skipped a position counts the
    # readable images: one pass, up to the last position wanted.
    wanted, found = {int(i) for i in indices}, {}
    for position, (image, _) in enumerate(_ordered_examples(split)):
        if position in wanted:
            found[position] = image.numpy()
        if len(found) == len(wanted):
            break
    return [found[int(i)] for i in indices]


def calibration_inputs(split, image_size, count, preprocessing="tf", seed=0):
    """`count` images of `split` (drawn at random, never more than it holds), resized and
    normalised as evaluation does: float32 [count, size, size, 3] (int8 calibration)."""
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"`count` must be a positive integer. Received: count={count!r}")
    indices = np.sort(np.random.default_rng(seed).permutation(split.size)[: min(count, split.size)])
    return preprocess_each(images_at(split, indices), image_size, preprocessing)


def _ordered_examples(split, shard=None):
    """(uint8 image, int32 label) pairs of `split` in its fixed order (evaluation); image
    files of this worker's `shard` only (`_by_file`)."""
    autotune = tf.data.AUTOTUNE
    if split.kind == "arrays":
        return tf.data.Dataset.from_tensor_slices((split.images, split.labels))
    if split.kind == "files":
        dataset = tf.data.Dataset.from_tensor_slices((list(split.files), split.labels))
        if _by_file(split, shard, training=False):
            dataset = dataset.shard(*shard)
        return _read_files(dataset, split)
    # Shard after shard, as the labels were counted.
    return _record_range(split, tf.data.TFRecordDataset(list(split.shards))).map(
        _decode_record, num_parallel_calls=autotune
    )


def _read_files(paths_and_labels, split):
    """(path, label) -> (uint8 image, label), unreadable files left out where the split
    says so."""
    decoded = paths_and_labels.map(lambda path, label: (_decode_file(path), label), num_parallel_calls=tf.data.AUTOTUNE)
    return decoded.ignore_errors(log_warning=True) if split.ignore_decode_errors else decoded


def _one_by_one(transform):
    """`transform` (of a batch) for one image of any size: resized alone, then batched."""

    def transform_one(image, label, pair):
        images, labels = transform(image[None], label, pair)
        return images[0], labels

    return transform_one


def _batch_count(size, batch_size, drop_remainder):
    return size // batch_size if drop_remainder else -(-size // batch_size)


def _record_range(split, records):
    if split.record_range is None:
        return records
    start, stop = split.record_range
    return records.skip(start).take(stop - start)


# --- Training: every epoch a function of (seed, epoch) ------------------------------------

def _by_file(split, shard, training=True):
    """Whether a worker's `shard` (count, index) of `split` is cut by file, before reading:
    image files always, TFRecord shards in training when every worker gets at least one
    (else tf.distribute shards by data, keeping every count-th batch)."""
    if not shard or shard[0] < 2:
        return False
    if split.kind == "files":
        return True
    return training and split.kind == "records" and split.record_range is None and shard[0] <= len(split.shards)


def _tables(split, shard):
    """What every epoch of training gathers from, as tensors made once, outside the
    per-epoch functions (which would otherwise embed them): the images and labels of
    in-memory arrays, else this worker's file names (image files or TFRecord shards),
    with the labels of image files."""
    if split.kind == "arrays":
        return tf.constant(split.images), tf.constant(split.labels)
    names = list(split.files if split.kind == "files" else split.shards)
    labels = split.labels if split.kind == "files" else np.zeros(len(names), np.int32)
    if _by_file(split, shard):
        count, index = shard
        names, labels = names[index::count], labels[index::count]
    return tf.constant(names), tf.constant(labels)


def _draws(epoch_seed, start):
    """The augmentation seed of each batch (in-memory arrays) or image (files, records) of
    an epoch, from the `start`-th on: `stateless_fold_in` of the epoch's seed and the
    position, so that a resumed epoch draws what it would have drawn."""
    return tf.data.Dataset.counter(start).map(lambda i: tf.random.experimental.stateless_fold_in(epoch_seed, i))


def _epoch_batches(plan, tables, epoch, skip):
    """One epoch of training batches, the first `skip` left out: the order is a stateless
    shuffle keyed by (`plan.seed`, `epoch`), the augmentation draws `_draws`. `epoch` may
    be a tensor (`make_dataset(epoch=None)` draws one per pass)."""
    autotune = tf.data.AUTOTUNE
    split, batch_size, transform = plan.split, plan.batch_size, plan.transform
    epoch_seed = tf.stack([tf.constant(plan.seed, tf.int64), tf.cast(epoch, tf.int64)])
    skip = tf.cast(skip, tf.int64)
    if split.kind == "arrays":  # one size: gather and resize whole batches
        images, labels = tables
        order = tf.random.experimental.stateless_shuffle(tf.range(split.size, dtype=tf.int64), epoch_seed)
        batches = tf.data.Dataset.from_tensor_slices(order[skip * batch_size:]).batch(batch_size, plan.drop_remainder)
        def gathered(indices, pair):
            batch = (tf.gather(images, indices), tf.gather(labels, indices), pair)
            if plan.alternate_flips:
                return transform(*batch, augment_lib.alternate_mirrors(plan.seed, split.size, indices, epoch))
            return transform(*batch)

        return tf.data.Dataset.zip(batches, _draws(epoch_seed, skip)).map(gathered, num_parallel_calls=autotune)
    first = skip * batch_size  # the first example kept
    examples, read_skipped = _epoch_examples(split, tables, epoch_seed, first)
    if read_skipped:  # the skipped examples were read: count the readable ones
        examples = tf.data.Dataset.zip(examples, _draws(epoch_seed, 0)).skip(first)
    else:
        examples = tf.data.Dataset.zip(examples, _draws(epoch_seed, first))
    one = _one_by_one(transform)
    examples = examples.map(lambda example, pair: one(*example, pair), num_parallel_calls=autotune)
    return examples.batch(batch_size, drop_remainder=plan.drop_remainder, num_parallel_calls=autotune)


def _epoch_examples(split, tables, epoch_seed, first):
    """(uint8 image, int32 label) of an epoch of image files or records, in the epoch's
    order, and whether the `first` examples to skip are still in it. Files are left
    unread where a file is an example; unreadable files, left out, must be read to be
    counted. Records are skipped before they are decoded."""
    autotune = tf.data.AUTOTUNE
    names, labels = tables
    order = tf.random.experimental.stateless_shuffle(tf.range(tf.size(names, out_type=tf.int64)), epoch_seed)
    names = tf.gather(names, order)
    if split.kind == "files":
        examples = tf.data.Dataset.from_tensor_slices((names, tf.gather(labels, order)))
        if not split.ignore_decode_errors:
            examples = examples.skip(first)
        return _read_files(examples, split), split.ignore_decode_errors
    if split.record_range is None and len(split.shards) > 1:
        files = tf.data.Dataset.from_tensor_slices(names)
        records = files.interleave(tf.data.TFRecordDataset, cycle_length=min(len(split.shards), 8), num_parallel_calls=autotune)
    else:  # a record range counts records shard after shard
        records = _record_range(split, tf.data.TFRecordDataset(list(split.shards)))
    shuffle_seed = tf.random.stateless_uniform([], epoch_seed, minval=None, maxval=None, dtype=tf.int64)
    records = records.shuffle(SHUFFLE_BUFFER_RECORDS, seed=shuffle_seed).skip(first)
    return records.map(_decode_record, num_parallel_calls=autotune), False


def batches_per_epoch(split, batch_size, drop_remainder=False, shard=None):
    """How many batches an epoch of training on `split` holds for this worker, or None
    where only reading tells (unreadable files left out; TFRecord shards split by file)."""
    if split.kind == "files" and split.ignore_decode_errors:
        return None
    if _by_file(split, shard):
        if split.kind == "records":
            return None
        count, index = shard
        size = len(split.files[index::count])
    else:
        size = split.size
    return _batch_count(size, batch_size, drop_remainder)


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What every batch of one data set shares."""

    split: sources.Split
    batch_size: int
    drop_remainder: bool
    shard: tuple
    transform: object  # (images, labels, pair_seed[, mirrored]) -> (images, labels)
    seed: int = 0
    alternate_flips: bool = False


def _training_batches(plan, epoch, skip):
    """The batches of the epochs numbered `epoch` (an int, or a `range` of them), or,
    with None, of a fresh one drawn at each pass (what `fit(dataset, epochs=N)` expects
    of a data set)."""
    tables = _tables(plan.split, plan.shard)

    def keyed(epochs):  # whole epochs, each keyed by its number (a tensor)
        return epochs.flat_map(lambda key: _epoch_batches(plan, tables, key, 0))

    if epoch is None:
        dataset = keyed(tf.data.Dataset.random(seed=plan.seed, rerandomize_each_iteration=True).take(1))
    else:
        epochs = epoch if isinstance(epoch, range) else range(epoch, epoch + 1)
        dataset = _epoch_batches(plan, tables, epochs.start, skip)
        if len(epochs) > 1:  # the next epochs follow in one iterator, each keyed as if alone
            dataset = dataset.concatenate(keyed(tf.data.Dataset.range(epochs.start + 1, epochs.stop)))
    batches = batches_per_epoch(plan.split, plan.batch_size, plan.drop_remainder, plan.shard)
    if batches is not None:
        count = 1 if epoch is None else len(epochs)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(batches * count - skip))
    return dataset


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What a model takes from a data set, batch by batch: its input side, the batch, its
    label layout and input convention, and where the batches go. Checked when built.

    Args:
        image_size: the model's input side.
        batch_size: the global batch (tf.distribute divides it among replicas).
        heads: output names to repeat the labels for (a dict per batch), or None for
            plain label tensors.
        one_hot: the number of classes, to give one-hot float32 labels (for label
            smoothing) instead of int32 class ids.
        preprocessing: the model's input convention, "tf" or "caffe" (`choices.PREPROCESSING`).
        drop_remainder: drop the last, smaller batch.
        shard: `(count, index)` of this worker under a multi-worker strategy. Image
            files, and TFRecord shards when there are at least `count` of them, are
            split by file before anything is read; in-memory arrays (and too few
            TFRecord files) are split by data, tf.distribute keeping every count-th
            batch. Leave `batch_size` global either way.
        device: prefetch batches to this device (e.g. "/gpu:0") when one trains there
            without a tf.distribute strategy that distributes the data set itself.
    """

    image_size: int
    batch_size: int
    heads: tuple = network.HEADS
    one_hot: int = None
    preprocessing: str = "tf"
    drop_remainder: bool = False
    shard: tuple = None
    device: str = None

    def __post_init__(self):
        _check_sizes(self.image_size, self.batch_size, self.shard, self.preprocessing)


def make_dataset(split, spec, training=False, augment=None, seed=None, views=None, epoch=None, skip=0):
    """Batches of (images, labels) for a model of input `spec.image_size` x `spec.image_size` x 3.

    Args:
        split: a `sources.Split` (from `catalog.load_source(...).splits[...]`).
        spec: an `InputSpec`: the model's input side, the batch, the labels' layout.
        training: shuffle and augment; evaluation is neither, and deterministic.
        augment: an `augment.AugmentConfig` (default: the paper's policy).
        seed: fixes the shuffle order and every augmentation draw.
        views: evaluation only: boxes of multi-crop testing (`augment.test_view_boxes`);
            each batch then holds every view of each image, [b, views, size, size, 3].
        epoch: training only: the epoch's number. Its order and augmentation draws
            depend on `seed` and `epoch` alone, so that a run resumed at any epoch sees
            what it would have seen. A `range` of numbers gives those epochs one after
            the other, each as it is alone (one `fit` with `steps_per_epoch` trains
            them without a new iterator at each epoch). None: every pass over the data
            set is a new epoch, with fresh draws (for `fit(dataset, epochs=N)`).
        skip: with `epoch`: how many of its (first) batches to leave out, the ones a run that
            stopped mid-epoch had trained (`batches_per_epoch` counts them all). Image
            files and records are skipped unread, where their count allows it.

    Returns:
        A `tf.data.Dataset` of `(float32 [b, size, size, 3], labels)`, normalised.
    """
    if not isinstance(spec, InputSpec):
        raise TypeError(f"`spec` must be a `data.InputSpec`. Received: spec={spec!r}")
    _check_epochs(training, views, epoch, skip)
    augment = augment if augment is not None else augment_lib.AugmentConfig()
    transform = _transform(spec.image_size, training, augment, views, spec.preprocessing)
    shard = spec.shard
    if training:
        seed = secrets.randbelow(2**31) if seed is None else seed
        plan = _Plan(split, spec.batch_size, spec.drop_remainder, shard, transform, seed, _alternates(augment, split))
        dataset = _training_batches(plan, epoch, skip)
    else:
        dataset = _evaluation_batches(_Plan(split, spec.batch_size, spec.drop_remainder, shard, transform))
    return _delivered(dataset, split, spec, training)


def _delivered(dataset, split, spec, training):
    """The labels as the model's heads take them, the batches sharded and prefetched."""
    if spec.one_hot:
        dataset = dataset.map(lambda images, labels: (images, tf.one_hot(labels, spec.one_hot)))
    if spec.heads:
        dataset = dataset.map(lambda images, labels: (images, {head: labels for head in spec.heads}))
    if spec.shard is not None and spec.shard[0] > 1:
        dataset = dataset.with_options(_shard_options(split, spec.shard, training))
    if spec.device is not None:
        return dataset.apply(tf.data.experimental.prefetch_to_device(spec.device))
    return dataset.prefetch(tf.data.AUTOTUNE)


def _shard_options(split, shard, training):
    """How tf.distribute splits the data set among workers: by file where the pipeline
    already did (OFF), else every count-th batch (DATA)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF if _by_file(split, shard, training)
        else tf.data.experimental.AutoShardPolicy.DATA
    )
    return options


def _check_sizes(image_size, batch_size, shard, preprocessing):
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"`image_size` must be a positive integer. Received: image_size={image_size!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}")
    if shard is not None:
        count, index = shard
        if not (isinstance(count, int) and isinstance(index, int) and 0 <= index < count):
            raise ValueError(f"`shard` must be (count, index) with 0 <= index < count. Received: shard={shard!r}")
    preprocessing_lib.check_mode(preprocessing)


def _alternates(augment, split):
    """Whether training flips alternately (`AugmentConfig.alternate_flips`), which needs
    each image's index: in-memory arrays keep it."""
    alternate = augment.active and augment.flip and augment.alternate_flips
    if alternate and split.kind != "arrays":
        raise ValueError(
            "`alternate_flips` needs each image's index in the split, which only the in-memory data sets "
            f"keep ({', '.join(choices.SMALL_IMAGE_SOURCES)}). Received: a split of image {split.kind}"
        )
    return alternate


def _check_epochs(training, views, epoch, skip):
    if views is not None and training:
        raise ValueError("`views` are for evaluation: pass training=False. Received: training=True")
    numbers = epoch if isinstance(epoch, range) else [epoch]
    if epoch is not None and (
        not training or not numbers or not all(isinstance(n, int) and n >= 0 for n in numbers)
        or isinstance(epoch, range) and epoch.step != 1
    ):
        raise ValueError(
            "`epoch` is a training epoch's number, 0 or more, or a range of them. "
            f"Received: epoch={epoch!r}, training={training}"
        )
    if skip and (epoch is None or not isinstance(skip, int) or skip < 0):
        raise ValueError(f"`skip` counts batches of a numbered epoch. Received: skip={skip!r}, epoch={epoch!r}")


def _transform(image_size, training, augment, views, preprocessing):
    """`(images, labels, pair_seed) -> (images, labels)`: augmented, multi-view or plain."""
    if training and augment.active:
        def transform(images, labels, pair_seed, mirrored=None):
            return augment_lib.augment_images(images, image_size, augment, pair_seed, preprocessing, mirrored), labels
    elif views is not None:
        def transform(images, labels, pair_seed):
            return augment_lib.view_images(images, image_size, views, preprocessing), labels
    else:
        def transform(images, labels, pair_seed):
            return preprocess_images(images, image_size, preprocessing), labels
    return transform


def _evaluation_batches(plan):
    """The split in its fixed order, batched and transformed."""
    autotune = tf.data.AUTOTUNE
    split, batch_size, drop_remainder, shard, transform = (
        plan.split, plan.batch_size, plan.drop_remainder, plan.shard, plan.transform
    )
    dataset = _ordered_examples(split, shard)
    if split.kind == "arrays":  # one size: resize whole batches
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=autotune)
        return dataset.map(lambda images, labels: transform(images, labels, None), num_parallel_calls=autotune)
    one = _one_by_one(transform)
    dataset = dataset.map(lambda image, label: one(image, label, None), num_parallel_calls=autotune)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=autotune)
    if not split.ignore_decode_errors and not _by_file(split, shard, training=False):
        batches = _batch_count(split.size, batch_size, drop_remainder)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(batches))
    return dataset


def replica_batch_size(global_batch_size, num_replicas):
    """The batch each replica sees: the global batch divided evenly among replicas."""
    if global_batch_size % num_replicas:
        raise ValueError(
            f"The global batch size must divide evenly among {num_replicas} replicas. "
            f"Received: batch_size={global_batch_size}"
        )
    return global_batch_size // num_replicas

