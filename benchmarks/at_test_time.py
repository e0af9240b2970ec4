"""Issue #35, what is left at test time: on one trained run's model.keras, the test split's
accuracy as trained, with the main and aux heads' softmax averaged, and after BatchNorm's
moving statistics are recomputed (reset, then a cumulative average over training batches,
as SWA's `update_bn` does), from plain and from augmented training images.

    python benchmarks/at_test_time.py RUN_DIR [BATCHES]

RUN_DIR: a Fashion-MNIST run directory (its model.keras and config.json). The output, with
the machine and the command, is in results/recipes/test_time_probe.txt.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import inception_tf  # noqa: E402,F401  (registers the custom layers)
from inception_tf.dataloaders import augment, catalog  # noqa: E402
from inception_tf.dataloaders import data as data_lib  # noqa: E402
from inception_tf.tasks import evaluation  # noqa: E402

BATCH = 128


def accuracies(model, split, size, views):
    probabilities, labels, _ = evaluation.predict(model, split, data_lib.InputSpec(size, 500), views=views)
    main_head = probabilities["main"].mean(1)
    aux = probabilities["aux1"].mean(1) + probabilities["aux2"].mean(1)
    # argmax, as `evaluation.evaluate` scores a run (a tie goes to the first class)
    return {
        name: float(np.mean(averaged.argmax(-1) == labels)) for name, averaged in (
            ("single crop", probabilities["main"][:, 0]), (f"{len(views)} crops", main_head),
            ("+ 0.3 x aux heads", main_head + 0.3 * aux), ("+ aux heads", main_head + aux),
        )
    }


def recompute_batchnorm(model, dataset, batches):
    """Each BatchNorm's moving mean and variance: the average over `batches` batches."""
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momentum = [layer.momentum for layer in layers]
    for layer in layers:
        layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, np.float32))
        layer.moving_variance.assign(np.ones(layer.moving_variance.shape, np.float32))
    for count, (images, _) in enumerate(dataset.take(batches), 1):
        for layer in layers:
            layer.momentum = 1.0 - 1.0 / count  # the k-th batch weighs 1/k: a plain average
        model(images, training=True)
    for layer, value in zip(layers, momentum):
        layer.momentum = value


def main(run_dir, batches=200):
    with open(os.path.join(run_dir, "config.json")) as file:
        data = json.load(file)["data"]
    size, split = data["image_size"], data["validation_split"]
    print(f"run: {run_dir} ({size} px, validation split {split}); recomputing over {batches} batches of {BATCH}")
    source = catalog.load_source("fashion_mnist", validation_split=split)
    model = keras.models.load_model(os.path.join(run_dir, "model.keras"), compile=False)
    views = evaluation.test_views("fashion_mnist", data["test_crops"], data["augment"])
    train, test = source.splits["train"], source.splits["test"]
    plain = data_lib.make_dataset(train, data_lib.InputSpec(size, BATCH, heads=None)).shuffle(64, seed=1)
    # The run's own training augmentation, as `tasks.task` builds it.
    augmented = data_lib.make_dataset(train, data_lib.InputSpec(size, BATCH, heads=None), training=True, seed=3, epoch=0,
                                      augment=augment.AugmentConfig(policy=data["augment"], erasing=data["random_erasing"]))
    for name, dataset in (("as trained", None), ("BatchNorm from plain images", plain),
                          ("BatchNorm from augmented images", augmented)):
        start = time.perf_counter()
        if dataset is not None:
            recompute_batchnorm(model, dataset, batches)
        figures = accuracies(model, test, size, views)
        print(f"{name:32s} " + "  ".join(f"{key} {value:.4f}" for key, value in figures.items())
              + f"  ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], *(int(arg) for arg in sys.argv[2:]))
