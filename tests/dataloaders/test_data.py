import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from inception_tf.dataloaders import arrays, augment, catalog, data, sources
from inception_tf.modeling import image_input
from inception_tf.dataloaders.augment import AugmentConfig

from fake_data import (
    label_from_pixels,
    write_cifar10,
    write_cifar100,
    write_idx_dataset,
    write_image_folder,
    write_mnist_npz,
    write_tfrecords,
)

TRAIN = np.arange(60) % 10
TEST = (np.arange(20) * 3) % 10
NO_PHOTOMETRIC = AugmentConfig(photometric=False)  # crops and flips keep a flat image flat


def _all(dataset):
    images, labels = [], []
    for x, y in dataset:
        images.append(x.numpy())
        labels.append(y.numpy() if not isinstance(y, dict) else y["main"].numpy())
    return np.concatenate(images), np.concatenate(labels)


@pytest.fixture
def idx_dir(tmp_path):
    return write_idx_dataset(tmp_path / "fmnist", TRAIN, TEST)


@pytest.fixture
def no_system_data(tmp_path, monkeypatch):
    """No OS package and an empty Keras cache, whatever this machine has installed."""
    monkeypatch.setattr(arrays, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "no-system-dir"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    return tmp_path / "keras-home" / "datasets"


def test_fashion_mnist_from_idx_files(idx_dir):
    source = catalog.load_source("fashion_mnist", data_dir=idx_dir)
    assert source.class_names[0] == "T-shirt/top" and source.num_classes == 10
    assert {k: s.size for k, s in source.splits.items()} == {"train": 60, "test": 20}
    images, labels = _all(data.make_dataset(source.splits["test"], data.InputSpec(64, 8)))
    assert images.shape == (20, 64, 64, 3) and images.dtype == np.float32
    assert images.min() >= -1.0 and images.max() <= 1.0
    np.testing.assert_array_equal(labels, TEST)
    np.testing.assert_array_equal(label_from_pixels(images), TEST)  # each image keeps its label


def test_uncompressed_idx_files_and_the_os_package_place(tmp_path, no_system_data, monkeypatch):
    system = write_idx_dataset(tmp_path / "system", TRAIN, TEST, gz=False)
    monkeypatch.setattr(arrays, "FASHION_MNIST_SYSTEM_DIR", str(system))
    source = catalog.load_source("fashion_mnist")
    assert source.location == str(system) and source.splits["train"].size == 60


def test_fashion_mnist_from_the_keras_cache(no_system_data):
    write_idx_dataset(no_system_data / "fashion-mnist", TRAIN, TEST)
    assert catalog.load_source("fashion_mnist").location == str(no_system_data / "fashion-mnist")


def test_missing_fashion_mnist_names_every_place_and_the_install_command(no_system_data, tmp_path):
    with pytest.raises(sources.DataNotFoundError) as error:
        catalog.load_source("fashion_mnist", download=False)
    message = str(error.value)
    assert str(tmp_path / "no-system-dir") in message
    assert str(no_system_data / "fashion-mnist") in message
    assert "apt-get install -y dataset-fashion-mnist" in message


def test_mnist_from_the_keras_cache(no_system_data):
    write_mnist_npz(no_system_data / "mnist.npz", TRAIN, TEST)
    source = catalog.load_source("mnist")
    images, labels = _all(data.make_dataset(source.splits["train"], data.InputSpec(32, 16, heads=None)))
    np.testing.assert_array_equal(label_from_pixels(images), TRAIN)
    assert source.class_names == tuple("0123456789")


def test_missing_mnist(no_system_data):
    with pytest.raises(sources.DataNotFoundError, match="mnist.npz"):
        catalog.load_source("mnist", download=False)


def test_cifar10_in_the_keras3_cache_layout(no_system_data):
    names = [f"c{i}" for i in range(10)]
    write_cifar10(no_system_data / "cifar-10-batches-py-target" / "cifar-10-batches-py", TRAIN, TEST, names)
    source = catalog.load_source("cifar10")
    assert source.class_names == tuple(names)
    assert source.splits["train"].images.shape == (60, 32, 32, 3)
    images, labels = _all(data.make_dataset(source.splits["train"], data.InputSpec(48, 7)))
    np.testing.assert_array_equal(labels, TRAIN)
    np.testing.assert_array_equal(label_from_pixels(images), TRAIN)


def test_cifar100_in_the_keras2_cache_layout(no_system_data):
    train = np.arange(50) * 2
    write_cifar100(no_system_data / "cifar-100-python", train, np.arange(10))
    source = catalog.load_source("cifar100")
    assert source.num_classes == 100 and source.class_names[3] == "fine3"
    np.testing.assert_array_equal(source.splits["train"].labels, train)


def test_missing_cifar_lists_both_cache_layouts(no_system_data):
    with pytest.raises(sources.DataNotFoundError) as error:
        catalog.load_source("cifar10", download=False)
    assert "cifar-10-batches-py-target" in str(error.value)
    assert str(no_system_data / "cifar-10-batches-py") in str(error.value)


def test_limit_and_validation_split(idx_dir):
    source = catalog.load_source("fashion_mnist", data_dir=idx_dir, limit=40, validation_split=0.25)
    sizes = {k: s.size for k, s in source.splits.items()}
    assert sizes == {"train": 30, "validation": 10, "test": 20}
    np.testing.assert_array_equal(source.splits["validation"].labels, TRAIN[30:40])


def _resized_reference(images, size):
    """What evaluation should feed the model, in numpy: the whole image sampled
    bilinearly at `size` points from the first pixel's centre to the last's (as
    crop_and_resize samples a box of the whole image), gray to RGB, [0, 255] to [-1, 1]."""
    images = images[..., None] if images.ndim == 3 else images
    height, width = images.shape[1:3]
    ys, xs = np.arange(size) * (height - 1) / (size - 1), np.arange(size) * (width - 1) / (size - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, height - 1), np.minimum(x0 + 1, width - 1)
    wy, wx = (ys - y0)[None, :, None, None], (xs - x0)[None, None, :, None]
    pixels = images.astype(np.float64)
    top = pixels[:, y0][:, :, x0] * (1 - wx) + pixels[:, y0][:, :, x1] * wx
    bottom = pixels[:, y1][:, :, x0] * (1 - wx) + pixels[:, y1][:, :, x1] * wx
    resized = top * (1 - wy) + bottom * wy
    return np.repeat(resized, 3, axis=-1) / 255.0 * 2.0 - 1.0


def test_eval_is_deterministic_and_never_augmented(idx_dir):
    split = catalog.load_source("fashion_mnist", data_dir=idx_dir).splits["train"]
    first = _all(data.make_dataset(split, data.InputSpec(40, 16)))
    second = _all(data.make_dataset(split, data.InputSpec(40, 16)))
    np.testing.assert_array_equal(first[0], second[0])
    # The export's function is the same pipeline.
    np.testing.assert_allclose(first[0], image_input.preprocess_images(split.images, 40).numpy(), atol=1e-6)
    # ... which resizes as it should: on noise, where every sample point tells.
    noise = np.random.default_rng(0).integers(0, 256, (6, 28, 28, 1), dtype=np.uint8)
    noisy = sources.Split(6, images=noise, labels=np.arange(6, dtype=np.int32))
    x, _ = _all(data.make_dataset(noisy, data.InputSpec(40, 4, heads=None)))
    np.testing.assert_allclose(x, _resized_reference(noise, 40), atol=1e-5)


def test_eval_views_hold_every_crop_of_each_image():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28, 1), dtype=np.uint8)
    split = sources.Split(5, images=images, labels=np.arange(5, dtype=np.int32))
    views = augment.test_view_boxes(10, AugmentConfig(policy="standard"))
    x, labels = _all(data.make_dataset(split, data.InputSpec(32, 2, heads=None), views=views))
    assert x.shape == (5, 10, 32, 32, 3)
    np.testing.assert_array_equal(labels, np.arange(5))
    np.testing.assert_allclose(x[:, 0], image_input.preprocess_images(images, 32).numpy(), atol=1e-6)
    np.testing.assert_allclose(x[:, 1], x[:, 0, :, ::-1], atol=1e-5)  # the mirror
    assert not np.allclose(x[:, 2], x[:, 0], atol=1e-3)  # a shifted corner view
    with pytest.raises(ValueError, match=r"Received: training=True"):
        data.make_dataset(split, data.InputSpec(32, 2), training=True, views=views)


def test_training_shuffles_and_augments_reproducibly(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (32, 28, 28, 1), dtype=np.uint8)
    split = sources.Split(32, images=images, labels=np.arange(32, dtype=np.int32) % 10)
    train = lambda seed: _all(data.make_dataset(split, data.InputSpec(40, 8, heads=None), training=True, seed=seed))  # noqa: E731
    a, b, c = train(7), train(7), train(8)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[1], np.arange(32) % 10)  # shuffled
    assert not np.array_equal(a[0], c[0])
    evaluated = image_input.preprocess_images(images, 40).numpy()
    order = [int(np.argmin(np.abs(evaluated - x).sum(axis=(1, 2, 3)))) for x in a[0]]
    assert not np.allclose(a[0], evaluated[order], atol=1e-3)  # augmentation changed them
    for policy in ("standard", "none"):
        x, _ = _all(data.make_dataset(split, data.InputSpec(40, 8, heads=None),
            training=True, seed=1, augment=AugmentConfig(policy=policy)))
        assert x.shape == (32, 40, 40, 3) and x.min() >= -1 and x.max() <= 1


def test_training_pipeline_erases_after_resizing():
    flat = sources.Split(16, images=np.full((16, 28, 28, 1), 255, np.uint8), labels=np.zeros(16, np.int32))
    erase = AugmentConfig(policy="standard", crop=False, flip=False, erasing=1.0)
    images, _ = _all(data.make_dataset(flat, data.InputSpec(48, 8, heads=None), training=True, seed=0, augment=erase))
    noise = images < 1.0
    assert noise.any(axis=(1, 2, 3)).all() and noise.mean() < 0.45
    # Grayscale noise, erased before the channels are repeated: the three stay equal.
    np.testing.assert_array_equal(images[..., 0], images[..., 2])


def test_training_keeps_labels_with_their_images(idx_dir):
    split = catalog.load_source("fashion_mnist", data_dir=idx_dir).splits["train"]
    images, labels = _all(data.make_dataset(split, data.InputSpec(32, 8), training=True, seed=3, augment=NO_PHOTOMETRIC))
    assert sorted(labels) == sorted(TRAIN)
    np.testing.assert_array_equal(label_from_pixels(images), labels)


def test_heads_get_the_same_labels(idx_dir):
    split = catalog.load_source("fashion_mnist", data_dir=idx_dir).splits["test"]
    _, labels = next(iter(data.make_dataset(split, data.InputSpec(32, 4))))
    assert set(labels) == {"main", "aux1", "aux2"}
    for head in ("aux1", "aux2"):
        np.testing.assert_array_equal(labels[head], labels["main"])
    assert labels["main"].dtype == tf.int32


def test_folder_source(tmp_path):
    root = write_image_folder(tmp_path / "images", per_class=6)
    source = catalog.load_source("folder", data_dir=root, validation_split=1 / 3)
    assert source.class_names == ("cat", "dog", "emu")
    assert {k: s.size for k, s in source.splits.items()} == {"train": 12, "validation": 6}
    assert set(source.splits["validation"].labels) == {0, 1, 2}  # the fixed order mixes classes
    for key in ("train", "validation"):
        dataset = data.make_dataset(source.splits[key], data.InputSpec(36, 5, heads=None))
        assert dataset.cardinality().numpy() == -(-source.splits[key].size // 5)
        images, labels = _all(dataset)
        assert images.shape == (source.splits[key].size, 36, 36, 3)
        np.testing.assert_array_equal(label_from_pixels(images), labels)
    images, labels = _all(data.make_dataset(source.splits["train"], data.InputSpec(36, 5),
        training=True, seed=0, augment=NO_PHOTOMETRIC))
    np.testing.assert_array_equal(label_from_pixels(images), labels)


def test_folder_with_train_and_test_subfolders(tmp_path):
    write_image_folder(tmp_path / "d" / "train", per_class=4)
    write_image_folder(tmp_path / "d" / "test", per_class=2)
    source = catalog.load_source("folder", data_dir=tmp_path / "d")
    assert {k: s.size for k, s in source.splits.items()} == {"train": 12, "test": 6}


def test_folder_errors(tmp_path):
    with pytest.raises(sources.DataError, match=r"at least two class subfolders.*\['cat'\]"):
        catalog.load_source("folder", data_dir=write_image_folder(tmp_path / "one", 2, classes=("cat",)))
    root = write_image_folder(tmp_path / "empty", 2)
    (root / "fox").mkdir()
    with pytest.raises(sources.DataError, match=r"without images.*\['fox'\]"):
        catalog.load_source("folder", data_dir=root)
    with pytest.raises(sources.DataNotFoundError, match=r"Received: data_dir="):
        catalog.load_source("folder", data_dir=tmp_path / "nowhere")
    with pytest.raises(sources.DataError, match=r"needs --data-dir"):
        catalog.load_source("folder")


def test_corrupt_files_are_named_or_skipped(tmp_path):
    root = write_image_folder(tmp_path / "images", per_class=3)
    good = (root / "cat" / "cat_0.png").read_bytes()
    (root / "cat" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "dog" / "notes.jpg").write_text("not an image")
    (root / "emu" / "empty.gif").write_bytes(b"")
    with pytest.raises(sources.DataError) as error:
        catalog.load_source("folder", data_dir=root)
    message = str(error.value)
    for name, why in (("truncated.png", "truncated PNG"), ("notes.jpg", "not a JPEG"), ("empty.gif", "empty file")):
        assert f"{name} ({why}" in message
    assert "--skip-corrupt" in message
    with pytest.warns(UserWarning, match=r"Left out 3 unreadable image file"):
        source = catalog.load_source("folder", data_dir=root, skip_corrupt=True)
    images, labels = _all(data.make_dataset(source.splits["train"], data.InputSpec(32, 4)))
    assert len(labels) == 9
    np.testing.assert_array_equal(label_from_pixels(images), labels)


def test_tfrecord_source(tmp_path):
    labels = np.arange(30) % 4
    root = write_tfrecords(tmp_path / "tfr", labels, shards=3, names=["a", "b", "c", "d"])
    write_tfrecords(root, np.arange(8) % 4, prefix="validation", shards=1)
    source = catalog.load_source("tfrecord", data_dir=root)
    assert source.class_names == ("a", "b", "c", "d")
    assert {k: s.size for k, s in source.splits.items()} == {"train": 30, "validation": 8}
    images, got = _all(data.make_dataset(source.splits["train"], data.InputSpec(32, 8)))
    np.testing.assert_array_equal(got, labels)  # shard order, then record order
    np.testing.assert_array_equal(label_from_pixels(images), got)
    images, got = _all(data.make_dataset(source.splits["train"], data.InputSpec(32, 8),
        training=True, seed=0, augment=NO_PHOTOMETRIC))
    assert sorted(got) == sorted(labels)
    np.testing.assert_array_equal(label_from_pixels(images), got)


def test_tfrecord_limit_and_validation_split_without_labels_file(tmp_path):
    root = write_tfrecords(tmp_path / "tfr", np.arange(20) % 5, shards=2)
    source = catalog.load_source("tfrecord", data_dir=root, limit=15, validation_split=0.2)
    assert source.class_names == ("0", "1", "2", "3", "4")
    assert {k: s.size for k, s in source.splits.items()} == {"train": 12, "validation": 3}
    _, got = _all(data.make_dataset(source.splits["validation"], data.InputSpec(32, 2, heads=None)))
    np.testing.assert_array_equal(got, source.splits["validation"].labels)


def test_labels_outside_the_classes_are_refused_before_training(tmp_path):
    root = write_tfrecords(tmp_path / "tfr", [0, 1, 2, 7], shards=1, names=["a", "b", "c"])
    with pytest.raises(sources.DataError, match=r"outside \[0, 3\).*values \[7\]"):
        catalog.load_source("tfrecord", data_dir=root)
    bad = tmp_path / "bad"
    bad.mkdir()
    with tf.io.TFRecordWriter(str(bad / "train-0")) as writer:
        writer.write(tf.train.Example().SerializeToString())
    with pytest.raises(sources.DataError, match=r"image/class/label"):
        catalog.load_source("tfrecord", data_dir=bad)


def test_labels_outside_the_classes_in_memory(tmp_path):
    write_idx_dataset(tmp_path / "f", [0, 1, 12], [0])
    with pytest.raises(sources.DataError, match=r"outside \[0, 10\).*values \[12\]"):
        catalog.load_source("fashion_mnist", data_dir=tmp_path / "f")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: catalog.load_source("imagenet21k"), r"Received: name='imagenet21k'"),
        (lambda s: catalog.load_source("imagenet"), r"--dataset imagenet needs --data-dir.*Received: data_dir=None"),
        (lambda s: catalog.load_source("fashion_mnist", validation_split=1.0), r"Received: validation_split=1.0"),
        (lambda s: catalog.load_source("fashion_mnist", limit=0), r"Received: limit=0"),
        (lambda s: data.make_dataset(s, data.InputSpec(0, 8)), r"Received: image_size=0"),
        (lambda s: data.make_dataset(s, data.InputSpec(32, 0)), r"Received: batch_size=0"),
        (lambda s: data.replica_batch_size(30, 4), r"4 replicas. Received: batch_size=30"),
        (lambda s: AugmentConfig(policy="autoaugment"), r"Received: policy='autoaugment'"),
        (lambda s: AugmentConfig(area_range=(0.0, 1.0)), r"Received: area_range=\(0.0, 1.0\)"),
        (lambda s: AugmentConfig(erasing=1.5), r"Received: erasing=1.5"),
        (lambda s: AugmentConfig(erasing_aspect=(2.0, 1.0)), r"Received: erasing_aspect=\(2.0, 1.0\)"),
    ],
)
def test_bad_arguments(call, message):
    split = sources.Split(2, images=np.zeros((2, 28, 28, 1), np.uint8), labels=np.zeros(2, np.int32))
    with pytest.raises(ValueError, match=message):
        call(split)


def test_replica_batch_size():
    assert data.replica_batch_size(64, 2) == 32


def test_pipeline_benchmark_prints_its_line(idx_dir):
    result = subprocess.run(
        [sys.executable, "benchmarks/pipeline.py", "--data-dir", str(idx_dir), "--image-size", "64",
         "--batch-size", "8", "--batches", "3", "--warmup", "1"],
        capture_output=True, text=True, check=True,
    )
    described, last = result.stdout.strip().splitlines()[-2:]
    assert "batches=3 shape=(8, 64, 64, 3)" in described  # the batches a step takes, at the asked size
    rate, rss = map(float, re.match(r"images/s=([\d.]+) peak_rss_mb=([\d.]+)$", last).groups())
    assert rate > 0 and 100 < rss < 8000  # TensorFlow alone holds a few hundred MB: kB or bytes read as MB would fail


def _labels_of_two_workers(split, batch_size):
    """The labels each of two workers reads; together they must be the split's, once each."""
    parts = [
        _all(data.make_dataset(split, data.InputSpec(32, batch_size, heads=None, shard=(2, index)), training=True, seed=0))[1]
        for index in (0, 1)
    ]
    assert sorted(np.concatenate(parts).tolist()) == sorted(split.labels.tolist())
    return [len(part) for part in parts]


def test_workers_split_image_files_by_file(tmp_path):
    root = write_image_folder(tmp_path / "images", per_class=5)
    split = catalog.load_source("folder", data_dir=str(root)).splits["train"]
    assert _labels_of_two_workers(split, 4) == [8, 7]
    options = data.make_dataset(split, data.InputSpec(32, 4, shard=(2, 1))).options()
    assert options.experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.OFF


def test_workers_split_tfrecord_files_when_there_are_enough(tmp_path):
    folder = write_tfrecords(tmp_path / "records", np.arange(40) % 4, shards=4, names=["a", "b", "c", "d"])
    split = catalog.load_source("tfrecord", data_dir=str(folder)).splits["train"]
    assert _labels_of_two_workers(split, 5) == [20, 20]
    # More workers than files: split by data, by tf.distribute.
    options = data.make_dataset(split, data.InputSpec(32, 5, shard=(5, 0)), training=True, seed=0).options()
    assert options.experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA


def test_in_memory_arrays_are_split_by_data(idx_dir):
    split = catalog.load_source("fashion_mnist", data_dir=str(idx_dir)).splits["train"]
    dataset = data.make_dataset(split, data.InputSpec(32, 8, shard=(2, 1)), training=True, seed=0)
    assert dataset.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA
    assert len(_all(dataset)[1]) == split.size  # tf.distribute shards it, not the pipeline


def test_a_bad_shard_is_refused(idx_dir):
    split = catalog.load_source("fashion_mnist", data_dir=str(idx_dir)).splits["train"]
    with pytest.raises(ValueError, match=r"Received: shard=\(2, 2\)"):
        data.make_dataset(split, data.InputSpec(32, 8, shard=(2, 2)))


def _splits_of_every_kind(tmp_path, idx_dir):
    folder = write_image_folder(tmp_path / "images", per_class=6)
    records = write_tfrecords(tmp_path / "records", np.arange(36) % 4, shards=3, names=["a", "b", "c", "d"])
    return {
        "arrays": catalog.load_source("fashion_mnist", data_dir=str(idx_dir)).splits["train"],
        "files": catalog.load_source("folder", data_dir=str(folder)).splits["train"],
        "records": catalog.load_source("tfrecord", data_dir=str(records)).splits["train"],
    }


@pytest.mark.parametrize("kind", ["arrays", "files", "records"])
def test_an_epoch_is_a_function_of_seed_and_epoch_and_skip_leaves_out_its_first_batches(tmp_path, idx_dir, kind):
    """What an exact mid-epoch resume rests on: epoch 1 from its batch 2 is epoch 1 without
    its first two batches, images (augmentation draws included) and labels alike."""
    split = _splits_of_every_kind(tmp_path, idx_dir)[kind]

    def epoch(number, skip=0, seed=3):
        return _all(data.make_dataset(split, data.InputSpec(32, 4, heads=None),
            training=True, seed=seed, epoch=number, skip=skip))

    images, labels = epoch(1)
    assert data.batches_per_epoch(split, 4) == -(-split.size // 4) and len(labels) == split.size
    again_images, again_labels = epoch(1)
    np.testing.assert_array_equal(images, again_images)
    np.testing.assert_array_equal(labels, again_labels)
    rest_images, rest_labels = epoch(1, skip=2)
    np.testing.assert_array_equal(rest_images, images[8:])
    np.testing.assert_array_equal(rest_labels, labels[8:])
    other_epoch, other_seed = epoch(2)[1], epoch(1, seed=4)[1]
    assert sorted(other_epoch) == sorted(labels)  # every example once an epoch
    assert (other_epoch != labels).any() and (other_seed != labels).any()
    # Epochs 1-2 in one data set (one `fit` for both) are the two epochs one after the other.
    both_images, both_labels = epoch(range(1, 3), skip=2)
    np.testing.assert_array_equal(both_images, np.concatenate([images[8:], epoch(2)[0]]))
    np.testing.assert_array_equal(both_labels, np.concatenate([labels[8:], other_epoch]))
    span = data.make_dataset(split, data.InputSpec(32, 4, heads=None), training=True, seed=3, epoch=range(1, 3), skip=2)
    assert span.cardinality().numpy() == 2 * data.batches_per_epoch(split, 4) - 2


def test_without_an_epoch_each_pass_is_a_new_epoch(idx_dir):
    split = catalog.load_source("fashion_mnist", data_dir=str(idx_dir)).splits["train"]
    dataset = data.make_dataset(split, data.InputSpec(32, 8, heads=None), training=True, seed=0)
    first, second = _all(dataset)[1], _all(dataset)[1]
    assert sorted(first) == sorted(second) and (first != second).any()
    assert dataset.cardinality().numpy() == data.batches_per_epoch(split, 8)
    with pytest.raises(ValueError, match=r"`skip` counts batches of a numbered epoch. Received: skip=2, epoch=None"):
        data.make_dataset(split, data.InputSpec(32, 8), training=True, skip=2)
    with pytest.raises(ValueError, match=r"Received: epoch=1, training=False"):
        data.make_dataset(split, data.InputSpec(32, 8), epoch=1)
    for bad in (range(2, 2), range(0, 6, 2), -1):
        with pytest.raises(ValueError, match=re.escape(f"or a range of them. Received: epoch={bad!r}, training=True")):
            data.make_dataset(split, data.InputSpec(32, 8), training=True, epoch=bad)


def _mirrored_each_epoch(alternate, epochs=4, skip=0):
    """Per epoch, which of 40 left-to-right ramps came out mirrored (index = label)."""
    ramps = np.tile(np.linspace(0, 255, 28, dtype=np.uint8)[None, None, :, None], (40, 28, 1, 1))
    split = sources.Split(40, images=ramps, labels=np.arange(40, dtype=np.int32))
    config = AugmentConfig(policy="standard", crop=False, photometric=False, alternate_flips=alternate)
    seen = []
    for epoch in range(epochs):
        x, labels = _all(data.make_dataset(split, data.InputSpec(28, 8, heads=None),
            training=True, augment=config, seed=3, epoch=epoch, skip=skip))
        mirrored = np.zeros(40, bool)
        mirrored[labels] = x[:, 0, 0, 0] > x[:, 0, -1, 0]  # the ramp falls left to right
        seen.append((mirrored, set(labels.tolist())))
    return seen


def test_alternating_flips_mirror_each_image_in_every_other_epoch():
    seen = _mirrored_each_epoch(alternate=True)
    first = seen[0][0]
    assert 10 < first.sum() < 30  # a random half in the first epoch
    for epoch, (mirrored, _) in enumerate(seen):
        np.testing.assert_array_equal(mirrored, first if epoch % 2 == 0 else ~first)
    # A resumed epoch draws the same mirrors for the batches it still trains.
    for (mirrored, kept), (full, _) in zip(_mirrored_each_epoch(alternate=True, skip=2), seen):
        assert len(kept) == 24 and all(mirrored[i] == full[i] for i in kept)
    # At random, some image is mirrored in two epochs in a row.
    random = _mirrored_each_epoch(alternate=False)
    assert any((a & b).any() for (a, _), (b, _) in zip(random, random[1:]))


def test_alternating_flips_refuse_splits_without_indices(tmp_path):
    split = catalog.load_source("folder", data_dir=write_image_folder(tmp_path / "images", per_class=2)).splits["train"]
    with pytest.raises(ValueError, match=r"`alternate_flips` needs each image's index.*Received: a split of image files"):
        data.make_dataset(split, data.InputSpec(49, 4), training=True, augment=AugmentConfig(alternate_flips=True), epoch=0)
