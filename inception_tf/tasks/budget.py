"""What a run's training cost, in units that do not depend on the machine.

An epoch-equivalent is one pass over the run's training split at `REFERENCE_SIZE` x
`REFERENCE_SIZE` pixels. A convolutional network's work grows with the pixels, so an
epoch at side `s` counts `(s / REFERENCE_SIZE) ** 2` of one: 30 epochs at 64x64 are 30,
17 epochs at 49x49 about 10. Accuracy against epoch-equivalents compares recipes run on
different machines; the seconds they took do not.
"""

REFERENCE_SIZE = 64  # the default job's input side


def epoch_equivalents(epoch_sizes, reference_size=REFERENCE_SIZE):
    """The epoch-equivalents of whole epochs trained at the input sides `epoch_sizes`,
    one entry per epoch."""
    total = 0.0
    for size in epoch_sizes:
        if not size > 0:
            raise ValueError(f"An input side must be positive. Received: epoch_sizes={list(epoch_sizes)!r}")
        total += (size / reference_size) ** 2
    return total


def projected_seconds(equivalents, train_examples, images_per_second):
    """Seconds of training that `equivalents` take at `images_per_second`, a rate measured
    at `REFERENCE_SIZE` on `train_examples` images an epoch."""
    return equivalents * train_examples / images_per_second
