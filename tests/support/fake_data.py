"""Small data sets in the real on-disk formats, written by the tests themselves.

Every image is one flat grey level that encodes its label (`level(label)`), so a test can
read the label back from the pixels at the end of a pipeline.
"""

import gzip
import io
import pickle
import struct

import cv2
import numpy as np
import tensorflow as tf
from PIL import Image


def level(label):
    return (20 * int(label) + 10) % 256


def label_from_pixels(images):
    """Labels read back from model-input images in [-1, 1]."""
    values = (np.asarray(images).mean(axis=(1, 2, 3)) + 1.0) / 2.0 * 255.0
    return np.round((values - 10.0) / 20.0).astype(int)


def flat_images(labels, height, width, channels=1):
    labels = np.asarray(labels)
    return np.ones((len(labels), height, width, channels), np.uint8) * np.array(
        [level(y) for y in labels], np.uint8
    ).reshape(-1, 1, 1, 1)


def _idx_bytes(array):
    header = b"\0\0\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dataset(folder, train_labels, test_labels, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, labels in (("train", train_labels), ("t10k", test_labels)):
        labels = np.asarray(labels, np.uint8)
        for kind, array in (("images-idx3", flat_images(labels, 28, 28)[..., 0]), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte"
            if gz:
                with gzip.open(folder / f"{name}.gz", "wb") as f:
                    f.write(_idx_bytes(array))
            else:
                (folder / name).write_bytes(_idx_bytes(array))
    return folder


def write_mnist_npz(path, train_labels, test_labels):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        x_train=flat_images(train_labels, 28, 28)[..., 0], y_train=np.asarray(train_labels, np.uint8),
        x_test=flat_images(test_labels, 28, 28)[..., 0], y_test=np.asarray(test_labels, np.uint8),
    )


def _cifar_pickle(path, labels, label_key):
    images = flat_images(labels, 32, 32, 3).transpose(0, 3, 1, 2).reshape(len(labels), -1)
    with open(path, "wb") as f:
        pickle.dump({b"data": images, label_key.encode(): list(map(int, labels))}, f, protocol=4)


def write_cifar10(folder, train_labels, test_labels, names=None):
    folder.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(np.array_split(np.asarray(train_labels), 5), start=1):
        _cifar_pickle(folder / f"data_batch_{i}", part, "labels")
    _cifar_pickle(folder / "test_batch", test_labels, "labels")
    if names:
        with open(folder / "batches.meta", "wb") as f:
            pickle.dump({b"label_names": [n.encode() for n in names]}, f, protocol=4)


def write_cifar100(folder, train_labels, test_labels):
    folder.mkdir(parents=True, exist_ok=True)
    _cifar_pickle(folder / "train", train_labels, "fine_labels")
    _cifar_pickle(folder / "test", test_labels, "fine_labels")
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"fine{i}".encode() for i in range(100)]}, f, protocol=4)


FORMATS = ("png", "jpg", "bmp", "gif")


def encode_image(label, height, width, fmt, gray=False):
    image = flat_images([label], height, width, 1 if gray else 3)[0]
    if fmt == "gif":
        buffer = io.BytesIO()
        Image.fromarray(image[..., 0] if gray else image).save(buffer, format="GIF")
        return buffer.getvalue()
    ok, encoded = cv2.imencode(f".{fmt}", image)
    assert ok
    return encoded.tobytes()


def write_image_folder(root, per_class, classes=("cat", "dog", "emu")):
    """`per_class` images of every class, in every format, of several sizes; one grey."""
    for label, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            fmt = FORMATS[i % len(FORMATS)]
            height, width = 20 + 7 * i, 30 + 5 * label
            (folder / f"{name}_{i}.{fmt}").write_bytes(encode_image(label, height, width, fmt, gray=i == 1))
    return root


def write_tfrecords(folder, labels, prefix="train", shards=2, names=None):
    folder.mkdir(parents=True, exist_ok=True)
    parts = np.array_split(np.asarray(labels), shards)
    for shard, part in enumerate(parts):
        with tf.io.TFRecordWriter(str(folder / f"{prefix}-{shard:05d}-of-{shards:05d}")) as writer:
            for i, label in enumerate(part):
                encoded = encode_image(label, 24 + i % 3, 36, "jpg" if i % 2 else "png")
                example = tf.train.Example(features=tf.train.Features(feature={
                    "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
                    "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
                }))
                writer.write(example.SerializeToString())
    if names:
        (folder / "labels.txt").write_text("\n".join(names) + "\n")
    return folder
