"""Training and inference throughput of GoogLeNet here, beside float32 and the machine's limit.

    python benchmarks/throughput.py --variants paper bn --image-size 224 --batch-size 32

For each variant: training steps (SGD, three heads, a synthetic batch held in memory, so
that only the model is timed: `benchmarks/pipeline.py` times the input side), Keras
inference of the main head, and the exported SavedModel (float32, the default export,
and bfloat16) at batch 1 and 64. Each figure is the median of `--repeats` timed runs
after warm-up, with their range; a training run's rate is that of its median step. The
same figures in float32, measured in the same run, give the ratio that holds on a shared
machine whose absolute speed drifts.

The precision is chosen as `train.py` chooses it (`--precision auto` times the candidates
on this machine for each variant, or reuses the stored answer) unless one is named; the
header names the machine: CPU model, cores and the instruction sets that decide the
precision.

Achieved TFLOP/s counts 2 FLOPs per multiply-accumulate (MACs from `inception_tf.modeling.summary`)
and 3 passes for a training step (forward, and the backward's two); the ceiling is a
4096x4096 matmul in the same precision.
"""

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time

from inception_tf.startup import runtime  # noqa: E402  (loads nothing)

if __name__ == "__main__":  # the runtime train.py would choose for this workload, before TensorFlow loads
    runtime.configure_from_flags(sys.argv[1:], variant="paper", image_size=224, batch_size=32, precision="auto")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from inception_tf import GoogLeNet, native_stderr  # noqa: E402
from inception_tf.modeling import summary  # noqa: E402
from inception_tf.choices import VARIANTS  # noqa: E402
from inception_tf.modeling.network import inference_model  # noqa: E402
from inception_tf.serving import export  # noqa: E402
from inception_tf.startup import machine, precision  # noqa: E402
from inception_tf.tasks import compiling, timing  # noqa: E402


def timed(run, images_per_call, repeats, seconds):
    """images/s of `run()` over `repeats` runs of at least `seconds` each: (median, low, high)."""
    run()  # warm-up: tracing, oneDNN primitive creation
    start = time.perf_counter()
    run()
    calls = max(1, int(seconds / max(time.perf_counter() - start, 1e-6)))
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            run()
        rates.append(calls * images_per_call / (time.perf_counter() - start))
    return statistics.median(rates), min(rates), max(rates)


class _StepEnds(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())


def timed_training(model, data, batch, repeats, seconds):
    """images/s of the training steps of `model.fit` (median, low, high over `repeats`
    fits of at least `seconds`). Each fit's rate comes from its median step, timed from
    one step's end to the next: fit's own start and end, and a step slowed by the
    machine for a moment, stay out of the figure."""
    probe = _StepEnds()
    model.fit(data, steps_per_epoch=3, epochs=1, verbose=0, shuffle=False, callbacks=[probe])
    steps = max(4, int(seconds / max(float(np.median(np.diff(probe.times))), 1e-6)) + 1)
    rates = []
    for _ in range(repeats):
        ends = _StepEnds()
        model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False, callbacks=[ends])
        rates.append(batch / float(np.median(np.diff(ends.times))))
    return statistics.median(rates), min(rates), max(rates)


def matmul_ceiling(dtype, repeats, seconds, n=4096):
    """TFLOP/s of an n x n matmul in `dtype` (median, low, high)."""
    with native_stderr.held():  # bfloat16 without AVX-512: TensorFlow's ERROR line for its fallback
        a = tf.random.uniform((n, n), dtype=tf.float32)
        a, b = tf.cast(a, dtype), tf.cast(tf.transpose(a), dtype)
        matmul = tf.function(lambda: tf.matmul(a, b))
        rates = timed(lambda: matmul().numpy(), 1, repeats, seconds)
    return tuple(rate * 2 * n**3 / 1e12 for rate in rates)


def synthetic_training(variant, policy, size, batch):
    """`(model, images, data)`: the compiled training model in `policy`, one random batch,
    and that batch repeated as a data set, so that a timed step is the model's alone."""
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    model = compiling.compile_for_training(GoogLeNet(10, (size, size, 3), variant=variant))
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (batch, size, size, 3)).astype("float32")
    labels = compiling.labels_for_heads(model, rng.integers(0, 10, batch))
    return model, images, tf.data.Dataset.from_tensors((images, labels)).repeat()


def measure_model(variant, policy, args, saved_model=True):
    size, batch = args.image_size, args.batch_size
    model, images, data = synthetic_training(variant, policy, size, batch)
    rng = np.random.default_rng(1)
    train_macs = sum(stage.macs for stage in summary.profile(model))
    main = inference_model(model)
    infer_macs = sum(stage.macs for stage in summary.profile(main))

    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)  # trace once
    result = {"variant": variant, "precision": policy, "train_macs": train_macs, "inference_macs": infer_macs}
    result["train"] = timed_training(model, data, batch, args.repeats, args.seconds)
    forward = tf.function(lambda x: main(x, training=False))
    x = tf.constant(images)
    result["inference"] = timed(lambda: forward(x).numpy(), batch, args.repeats, args.seconds)
    result["train_tflops"] = result["train"][0] * 6 * train_macs / 1e12
    result["inference_tflops"] = result["inference"][0] * 2 * infer_macs / 1e12
    if saved_model:
        with tempfile.TemporaryDirectory() as tmp:
            for float32 in (True, False):
                name = "float32" if float32 else "bfloat16"
                loaded = tf.saved_model.load(
                    str(export.export_saved_model(model, f"{tmp}/{name}", float32=float32))
                ).signatures["serving_default"]
                for n in (1, 64):
                    pixels = tf.constant(rng.integers(0, 256, (n, size, size, 3)), tf.uint8)
                    result[f"saved_model_{name}_batch{n}"] = timed(
                        lambda: loaded(images=pixels)["probabilities"].numpy(), n, args.repeats, args.seconds
                    )
    return result


def _rate(triple, digits=1):
    median, low, high = triple
    return f"{median:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def report(results, ceilings, args, choices):
    lines = [
        f"GoogLeNet, {args.image_size}x{args.image_size}, batch {args.batch_size}, "
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}",
        f"machine: {machine.describe_machine(machine.gpu_details())}",
        f"matmul ceiling (4096^2): bfloat16 {_rate(ceilings['bfloat16'], 3)} TFLOP/s, "
        f"float32 {_rate(ceilings['float32'], 3)} TFLOP/s",
    ]
    lines += [f"precision for {variant}: {choice.value} ({choice.reason})" for variant, choice in choices.items()]
    lines += [
        "",
        "| variant | precision | train img/s | train TFLOP/s (% of ceiling) | train vs float32 "
        "| inference img/s | inference vs float32 | SavedModel f32 b1 / b64 | SavedModel bf16 b1 / b64 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for variant in args.variants:
        fast = results[(variant, choices[variant].value)]
        slow = results.get((variant, "float32")) if choices[variant].value != "float32" else None
        ceiling = ceilings["bfloat16" if "bfloat16" in fast["precision"] else "float32"][0]
        ratio_train = f"{fast['train'][0] / slow['train'][0]:.2f}x" if slow else "-"
        ratio_infer = f"{fast['inference'][0] / slow['inference'][0]:.2f}x" if slow else "-"
        saved = [
            " / ".join(f"{fast[f'saved_model_{name}_batch{n}'][0]:.1f}" for n in (1, 64))
            if f"saved_model_{name}_batch1" in fast else "-"
            for name in ("float32", "bfloat16")
        ]
        lines.append(
            f"| {variant} | {fast['precision']} | {_rate(fast['train'])} "
            f"| {fast['train_tflops']:.3f} ({fast['train_tflops'] / ceiling:.0%}) | {ratio_train} "
            f"| {_rate(fast['inference'])} | {ratio_infer} | {saved[0]} | {saved[1]} |"
        )
        if slow:
            lines.append(
                f"| {variant} | float32 | {_rate(slow['train'])} | {slow['train_tflops']:.3f} "
                f"({slow['train_tflops'] / ceilings['float32'][0]:.0%}) | 1.00x | {_rate(slow['inference'])} | 1.00x | | |"
            )
    macs = results[(args.variants[0], choices[args.variants[0]].value)]
    lines.append("")
    lines.append(
        f"MACs per image: {macs['train_macs'] / 1e9:.3f} G training (three heads), "
        f"{macs['inference_macs'] / 1e9:.3f} G inference (main head)"
    )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", default="auto", help="auto (as train.py chooses), float32, mixed_bfloat16, ...")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0, help="least duration of one timed run")
    parser.add_argument("--no-float32", action="store_true", help="skip the float32 reference")
    parser.add_argument("--no-saved-model", action="store_true")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.image_size < 49:
        parser.error(f"--image-size must be at least 49 (the aux heads). Received: {args.image_size}")
    choices = {
        variant: precision.choose_policy(
            args.precision, precision.Workload(variant, args.image_size, args.batch_size), timing.time_policies,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
        for variant in args.variants
    }

    ceilings = {
        dtype: matmul_ceiling(getattr(tf, dtype), args.repeats, args.seconds) for dtype in ("bfloat16", "float32")
    }
    results = {}
    for variant, choice in choices.items():
        print(f"measuring {variant} in {choice.value} ...", file=sys.stderr, flush=True)
        results[(variant, choice.value)] = measure_model(variant, choice.value, args, not args.no_saved_model)
        if not args.no_float32 and choice.value != "float32":
            print(f"measuring {variant} in float32 ...", file=sys.stderr, flush=True)
            results[(variant, "float32")] = measure_model(variant, "float32", args, saved_model=False)
    print(report(results, ceilings, args, choices))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"ceilings_tflops": ceilings, "results": list(results.values()), "args": vars(args),
                 "machine": machine.machine(machine.gpu_details()),
                 "precision": {variant: dataclasses.asdict(choice) for variant, choice in choices.items()}},
                f, indent=2,
            )


if __name__ == "__main__":
    main()
