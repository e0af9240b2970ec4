"""What a run's training cost, in units that do not depend on the machine.

A compute-epoch is the work of one pass over `REFERENCE_IMAGES` images (Fashion-MNIST's
training split) through the default network at `REFERENCE_SIZE` x `REFERENCE_SIZE`:
`REFERENCE_MACS` multiply-accumulates per image, as `python -m inception_tf summary`
counts them (convolutions and dense layers, aux heads included). An epoch counts the
images it saw times the multiply-accumulates of one image at its own input size, so a
smaller input counts what it costs the network, not its share of the pixels: every side
from 49 to 64 keeps the same maps from inception (4a) on, and 49x49 costs 0.84 of 64x64,
not 0.59. Accuracy against compute-epochs compares recipes run on different machines;
the seconds they took do not.
"""

REFERENCE_SIZE = 64  # the default job's input side
REFERENCE_IMAGES = 54_000  # Fashion-MNIST's training split, its validation held out
# The default network (bn, aux heads, 10 classes) at 64x64; tests/tasks/test_budget.py counts it again.
REFERENCE_MACS = 135_469_056


def training_macs(model):
    """Multiply-accumulates of one image through `model` as it trains (every head)."""
    from inception_tf.modeling import summary  # Keras, only where a model is counted

    return sum(stage.macs for stage in summary.profile(model))


def compute_epochs(epochs):
    """The compute-epochs of `epochs`, one `(images, macs_per_image)` pair per epoch."""
    total = 0
    for images, macs in epochs:
        if not (images >= 0 and macs > 0):
            raise ValueError(
                "Each epoch needs a count of images (0 or more) and a positive count of multiply-accumulates per image. "
                f"Received: epochs={list(epochs)!r}"
            )
        total += images * macs
    return total / (REFERENCE_IMAGES * REFERENCE_MACS)


def projected_seconds(compute, images_per_second):
    """Seconds of training that `compute` compute-epochs take at `images_per_second`, a
    rate measured with the default network at `REFERENCE_SIZE`."""
    return compute * REFERENCE_IMAGES / images_per_second
