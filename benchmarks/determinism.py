"""Where training stops being reproducible, what the fix costs, and whether processes then
agree bit for bit.

    python benchmarks/determinism.py --rounds 3 --image-size 64 --batch-size 64

Two settings: "tf", TensorFlow's defaults; "fixed", TensorFlow loaded as every command of
this package loads it (`runtime.configure`, which turns Grappler's memory optimizer off:
`keras_fixes.deterministic_gradient_sums`). Each figure comes from a Python process of its
own (the setting holds for a whole process), under the runtime `train.py` loads here.

First, per setting, one process calls the same gradient step `--calls` times on the same
weights and batch (the aux heads' dropout set to 0) and names the variables whose gradient
ever differs from the first call's, the one nearest the loss first: where the sums stop
being fixed. Then, in turns (`--rounds`), one process per setting builds the bn variant
with seed 0, compiles it as `train.py` does (`compiling.compile_for_training`), fits
`--warmup` steps on a fixed batch of noise, times `--steps` more, and prints the training
rate (the batch over the median step), its peak resident memory and the sha256 of its
final weights. Ends with one line per setting: its median rate, its ratio to "tf", its
peak memory, and how many distinct weights its processes ended with (1: they agree).
"""

import argparse
import hashlib
import json
import resource
import statistics
import subprocess
import sys
import time

from inception_tf.startup import machine, precision, runtime, settings

RESULT = "determinism-figure: "
SETTINGS = ("tf", "fixed")


def _load(args):
    if args.child == "fixed":  # as every command of this package loads TensorFlow
        runtime.configure("bn", args.image_size, args.batch_size, log=lambda _: None)
    else:
        settings.apply(runtime.choose_setting(precision.Workload("bn", args.image_size, args.batch_size), log=lambda _: None))
    import keras
    import numpy as np

    from inception_tf import GoogLeNet

    keras.utils.set_random_seed(0)
    size, batch = args.image_size, args.batch_size
    model = GoogLeNet(10, (size, size, 3), variant="bn")
    rng = np.random.default_rng(0)
    return model, rng.uniform(-1, 1, (batch, size, size, 3)).astype("float32"), rng.integers(0, 10, batch)


def repeat_child(args):
    model, images, labels = _load(args)  # first: it chooses the runtime TensorFlow loads with
    import keras
    import numpy as np
    import tensorflow as tf

    for layer in model.layers:
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0  # otherwise each call draws another mask
    loss = keras.losses.SparseCategoricalCrossentropy()
    # Tensors, fed to the function as a batch is (numpy arrays would become constants in
    # its graph, which Grappler then schedules otherwise).
    images, labels = tf.constant(images), tf.constant(labels)

    @tf.function
    def gradients():
        with tf.GradientTape() as tape:
            total = sum(loss(labels, output) for output in model(images, training=True))
        return tape.gradient(total, model.trainable_variables)

    first = [g.numpy() for g in gradients()]
    differing = set()
    for _ in range(args.calls - 1):
        differing |= {i for i, (a, b) in enumerate(zip(first, gradients())) if not np.array_equal(a, b.numpy())}
    names = [v.path for v in model.trainable_variables]
    nearest = [names[i] for i in sorted(differing, reverse=True)]
    print(RESULT + json.dumps({"differing": len(differing), "variables": len(names), "nearest_loss": nearest[:4]}))


def fit_child(args):
    model, images, labels = _load(args)  # first: it chooses the runtime TensorFlow loads with
    import keras
    import numpy as np
    import tensorflow as tf

    from inception_tf.tasks import compiling

    model = compiling.compile_for_training(model, learning_rate=0.01)
    dataset = tf.data.Dataset.from_tensors((images, (labels, labels, labels))).repeat()
    model.fit(dataset, steps_per_epoch=args.warmup, epochs=1, verbose=0)
    times = []
    timer = keras.callbacks.LambdaCallback(
        on_train_batch_begin=lambda batch, logs: times.append(time.perf_counter()),
        on_train_end=lambda logs: times.append(time.perf_counter()),
    )
    model.fit(dataset, steps_per_epoch=args.steps, epochs=1, verbose=0, callbacks=[timer])
    steps = [b - a for a, b in zip(times, times[1:])]
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(w).tobytes() for w in model.get_weights())).hexdigest()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(RESULT + json.dumps({"rate": args.batch_size / statistics.median(steps), "sha256": digest,
                               "peak_gib": peak}), flush=True)


def run_child(setting, args, *extra):
    command = [sys.executable, __file__, "--child", setting, "--image-size", str(args.image_size),
               "--batch-size", str(args.batch_size), "--warmup", str(args.warmup), "--steps", str(args.steps),
               "--calls", str(args.calls), *extra]
    done = subprocess.run(command, capture_output=True, text=True)
    found = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode != 0 or not found:
        raise SystemExit(f"the {setting} process exited {done.returncode}:\n{done.stderr[-3000:]}")
    return json.loads(found[-1][len(RESULT):])


def compare_fits(args):
    figures = {setting: [] for setting in SETTINGS}
    for round_ in range(args.rounds):
        for setting in SETTINGS:
            figure = run_child(setting, args)
            figures[setting].append(figure)
            print(f"round {round_ + 1}, {setting}: {figure['rate']:.1f} images/s, peak {figure['peak_gib']:.2f} GiB, "
                  f"weights sha256 {figure['sha256'][:16]}", flush=True)
    base = statistics.median(f["rate"] for f in figures["tf"])
    for setting in SETTINGS:
        rate = statistics.median(f["rate"] for f in figures[setting])
        peak = max(f["peak_gib"] for f in figures[setting])
        digests = len({f["sha256"] for f in figures[setting]})
        print(f"{setting}: {rate:.1f} images/s ({rate / base:.2f}x tf), peak {peak:.2f} GiB, "
              f"{digests} distinct weights in {len(figures[setting])} processes")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--calls", type=int, default=12, help="gradient calls per process in the first part")
    parser.add_argument("--warmup", type=int, default=3, help="steps before the timed ones (tracing included)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per process")
    parser.add_argument("--child", choices=SETTINGS, help=argparse.SUPPRESS)
    parser.add_argument("--repeat", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return repeat_child(args) if args.repeat else fit_child(args)
    choice = runtime.choose_setting(precision.Workload("bn", args.image_size, args.batch_size), log=lambda _: None)
    print(f"machine: {machine.describe_machine()}; {choice.line}", flush=True)
    print(f"bn, {args.image_size}x{args.image_size}, batch {args.batch_size}, float32", flush=True)
    for setting in SETTINGS:
        found = run_child(setting, args, "--repeat")
        print(f"{setting}, {args.calls} calls of one gradient step: {found['differing']} of {found['variables']} "
              f"variables' gradients differ; nearest the loss: {', '.join(found['nearest_loss']) or 'none'}", flush=True)
    print(f"{args.rounds} rounds of {args.warmup} + {args.steps} training steps per process", flush=True)
    compare_fits(args)


if __name__ == "__main__":
    sys.exit(main())
