"""LRN forward and backward: TensorFlow's kernels against the XLA-compiled training path.

    python benchmarks/lrn.py --shapes 32x56x56x64 32x56x56x192

`LocalResponseNormalization` runs TensorFlow's `LRN` / `LRNGrad` kernels in inference
(`training=False`) and, in training on a machine without a GPU, its formula with a
hand-written gradient compiled by XLA. This times one forward and backward pass of each,
the two paths taking turns in one process (the machine's speed drifts), as the median of
`--repeats` calls in milliseconds, and prints the largest difference between their
outputs and input gradients, relative to the largest value.
"""

import argparse
import sys
import time

from inception_tf.startup import loading  # noqa: E402  (loads nothing)

loading.quiet_import_tensorflow()  # TensorFlow's own runtime: the measured one is for training

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from inception_tf.modeling.layers import LocalResponseNormalization  # noqa: E402


def shape_arg(text):
    try:
        shape = tuple(int(n) for n in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"a shape is NxHxWxC, e.g. 32x56x56x192. Received: {text!r}")
    return shape


def forward_backward(layer, training):
    @tf.function
    def step(x, upstream):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
        return y, tape.gradient(y, x, output_gradients=upstream)

    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", type=shape_arg, default=[(32, 56, 56, 64), (32, 56, 56, 192)])
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    policy = "mixed_bfloat16" if args.dtype == "bfloat16" else "float32"
    layer = LocalResponseNormalization(dtype=policy)  # the paper's constants
    paths = {"tensorflow kernels": forward_backward(layer, False), "xla compiled": forward_backward(layer, True)}
    print(f"LRN forward and backward, {args.dtype}, median of {args.repeats} (ms)")
    print("| shape | " + " | ".join(paths) + " | ratio | largest difference y / dx, of the largest value |")
    print("|---|" + "---|" * (len(paths) + 2))
    rng = np.random.default_rng(0)
    for shape in args.shapes:
        # ReLU outputs of the stem: non-negative, up to tens.
        x = tf.cast(np.abs(rng.normal(0, 20, shape)).astype("float32"), args.dtype)
        upstream = tf.cast(rng.normal(0, 1, shape).astype("float32"), args.dtype)
        outputs = {name: step(x, upstream) for name, step in paths.items()}  # compiles
        times = {name: [] for name in paths}
        for _ in range(args.repeats):
            for name, step in paths.items():
                start = time.perf_counter()
                step(x, upstream)[1].numpy()
                times[name].append(1000 * (time.perf_counter() - start))
        medians = [float(np.median(t)) for t in times.values()]
        (y0, dx0), (y1, dx1) = ([tf.cast(t, tf.float32).numpy() for t in pair] for pair in outputs.values())
        diff = f"{np.abs(y1 - y0).max() / np.abs(y0).max():.1g} / {np.abs(dx1 - dx0).max() / np.abs(dx0).max():.1g}"
        cells = " | ".join(f"{m:.1f}" for m in medians)
        print(f"| {'x'.join(map(str, shape))} | {cells} | {medians[0] / medians[1]:.2f}x | {diff} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
