"""A/B of the paper variant's Caffe-rounded max pools, in one process.

    python benchmarks/pool_padding.py --image-size 224 --batch-size 32

"padded": a ZeroPadding2D of one row and column, then a valid 3x3/2 pool (how the model
built them before); "same": the pool with "same" padding, which pads the same row and
column after an even side, with -inf for zero. The two models share their weights; the
script checks that they give the same outputs and gradients, then times training steps
of each in turns (`--rounds`), each figure the batch over the median step.
"""

import argparse
import statistics
import sys
import time

from inception_tf.startup import runtime
from inception_tf.startup import settings

if __name__ == "__main__":
    runtime.configure_from_flags(sys.argv[1:], variant="paper", image_size=224, batch_size=32, precision="auto")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from inception_tf.modeling import network  # noqa: E402
from inception_tf.startup import machine, measured, precision  # noqa: E402
from inception_tf.tasks import compiling, timing  # noqa: E402


def _padded_pool(x, variant, name):
    padding = tuple((0, network.caffe_pool_padding(side)) for side in x.shape[1:3])
    if any(after for _, after in padding):
        x = keras.layers.ZeroPadding2D(padding, name=f"{name}_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, padding="valid", name=name)(x)


def build(form, size):
    same_pool = network._max_pool
    if form == "padded":
        network._max_pool = _padded_pool
    try:
        return network.GoogLeNet(10, (size, size, 3), variant="paper")
    finally:
        network._max_pool = same_pool


def gradients(model, images, labels):
    with tf.GradientTape() as tape:
        outputs = model(images, training=False)
        loss = sum(tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(labels, o)) for o in outputs)
    return [o.numpy() for o in outputs], [g.numpy() for g in tape.gradient(loss, model.trainable_weights)]


def check_same(models, size):
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(-1, 1, (2, size, size, 3)).astype("float32"))
    labels = tf.constant(rng.integers(0, 10, 2))
    (out_a, grad_a), (out_b, grad_b) = (gradients(m, images, labels) for m in models)
    outputs = max(float(np.max(np.abs(a - b))) for a, b in zip(out_a, out_b))
    grads = max(float(np.max(np.abs(a - b))) for a, b in zip(grad_a, grad_b))
    return outputs, grads


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per form and round")
    args = parser.parse_args(argv)
    size, batch = args.image_size, args.batch_size
    print(f"machine: {machine.describe_machine()}; {(settings.applied() or measured.Choice('runtime', settings.Setting(), '')).line}")
    keras.utils.set_random_seed(0)
    models = {form: build(form, size) for form in ("padded", "same")}
    models["same"].set_weights(models["padded"].get_weights())
    outputs, grads = check_same(list(models.values()), size)
    print(f"float32, same weights: largest difference of the outputs {outputs:.3g}, of the gradients {grads:.3g}")
    policy = precision.choose_policy(args.precision, precision.Workload("paper", size, batch), timing.time_policies,
                                    log=lambda _: None).value
    keras.config.set_dtype_policy(policy)
    rng = np.random.default_rng(1)
    images = rng.uniform(-1, 1, (batch, size, size, 3)).astype("float32")
    steps = {}
    for form in models:
        model = compiling.compile_for_training(build(form, size), jit_compile=settings.jit_compile())
        labels = compiling.labels_for_heads(model, rng.integers(0, 10, batch))
        steps[form] = lambda model=model, labels=labels: model.train_on_batch(images, labels)
        steps[form]()
    times = {form: [] for form in steps}
    for _ in range(args.rounds):
        for form, step in steps.items():
            for _ in range(args.steps):
                start = time.perf_counter()
                step()
                times[form].append(time.perf_counter() - start)
    rates = {form: batch / statistics.median(t) for form, t in times.items()}
    print(f"{size}x{size}, batch {batch}, {policy}, {args.rounds} rounds of {args.steps} steps: "
          + ", ".join(f"{form} {rate:.1f} images/s" for form, rate in rates.items())
          + f"; same / padded {rates['same'] / rates['padded']:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
