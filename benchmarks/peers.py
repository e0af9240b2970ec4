"""This project's defaults against GoogLeNet as the tutorials write it, on this machine.

    python benchmarks/peers.py --json results/peers/MACHINE.json

The peer is the Keras GoogLeNet of the tutorials (`tutorial_googlenet` below): Conv2D +
ReLU, no BatchNorm, no LRN, "same" padding, the same aux heads and loss weights, float32,
compiled as Keras compiles by default. Each figure is a training rate (the batch over the
median step inside one `fit`, on a batch held in memory) measured in a Python process of
its own, because the runtime settings are fixed when TensorFlow loads; the processes run
in turns (`--rounds`), so that a machine slowing down for a while slows them alike, and a
figure is the median of its rounds.

Per workload: the peer and both variants under TensorFlow's default runtime, then both
variants as `train.py` runs them (the runtime `inception_tf.startup.runtime` chooses, the
precision `--precision auto` chooses, both stored per machine), then torchvision's
googlenet in PyTorch (`benchmarks/torch_googlenet.py`: eager, channels_last, float32)
where a Python with `torch` and `torchvision` is found: `--torch-python`, else this one
when it has them (never a dependency of the project). The ratio is each figure over the
peer's under TensorFlow's default runtime.

`--avx2-stand-in` makes an AVX-512 CPU stand in for one with AVX2 and FMA only (AMD Zen 3
and most laptops): oneDNN's kernels are limited to AVX2 (`ONEDNN_MAX_CPU_ISA=AVX2`, in
every process, the runtime's and the precision's probes included) and TensorFlow's default
runtime is oneDNN off, which TensorFlow 2.21 picks on a CPU without AVX-512 VNNI, bfloat16
or AMX. TensorFlow's own kernels are compiled for AVX alone and run the same code on both
CPUs. The cores' speed still differs: the stand-in's ratios are its figures, not its rates.
"""

import argparse
import importlib.util
import json
import os
import pathlib
import statistics
import subprocess
import sys

from inception_tf import files  # noqa: E402  (neither loads TensorFlow)
from inception_tf.startup import machine as machine_lib
from inception_tf.startup import loading, precision, runtime, settings
from inception_tf.tasks import timing

RESULT = "peers-figure: "
STAND_IN_ISA = "AVX2"
MODELS = ("tutorial", "bn", "paper")
TORCH = "torchvision"  # the PyTorch peer's model name in a request
TORCH_SCRIPT = pathlib.Path(__file__).with_name("torch_googlenet.py")
TORCH_LABEL = "torchvision googlenet, PyTorch eager, channels_last"


def tutorial_googlenet(num_classes, size):
    """GoogLeNet as the Keras tutorials write it: Conv2D + ReLU, "same" everywhere."""
    import keras
    from keras import layers

    def conv(x, filters, kernel, strides=1):
        return layers.Conv2D(filters, kernel, strides=strides, padding="same", activation="relu")(x)

    def module(x, f1, f3r, f3, f5r, f5, fp):
        pool = layers.MaxPooling2D(3, strides=1, padding="same")(x)
        return layers.Concatenate()(
            [conv(x, f1, 1), conv(conv(x, f3r, 1), f3, 3), conv(conv(x, f5r, 1), f5, 5), conv(pool, fp, 1)]
        )

    def aux(x, name):
        grid = x.shape[1]
        stride = grid // 4
        x = layers.AveragePooling2D(grid - 3 * stride, strides=stride)(x)
        x = layers.Flatten()(conv(x, 128, 1))
        x = layers.Dropout(0.7)(layers.Dense(1024, activation="relu")(x))
        return layers.Dense(num_classes, activation="softmax", name=name)(x)

    inputs = keras.Input((size, size, 3))
    x = layers.MaxPooling2D(3, strides=2, padding="same")(conv(inputs, 64, 7, 2))
    x = layers.MaxPooling2D(3, strides=2, padding="same")(conv(conv(x, 64, 1), 192, 3))
    x = module(x, 64, 96, 128, 16, 32, 32)
    x = module(x, 128, 128, 192, 32, 96, 64)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = module(x, 192, 96, 208, 16, 48, 64)
    aux1 = aux(x, "aux1")
    x = module(module(module(x, 160, 112, 224, 24, 64, 64), 128, 128, 256, 24, 64, 64), 112, 144, 288, 32, 64, 64)
    aux2 = aux(x, "aux2")
    x = layers.MaxPooling2D(3, strides=2, padding="same")(module(x, 256, 160, 320, 32, 128, 128))
    x = module(module(x, 256, 160, 320, 32, 128, 128), 384, 192, 384, 48, 128, 128)
    x = layers.Dropout(0.4)(layers.GlobalAveragePooling2D()(x))
    main = layers.Dense(num_classes, activation="softmax", name="main")(x)
    model = keras.Model(inputs, [main, aux1, aux2])
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss={name: "sparse_categorical_crossentropy" for name in ("main", "aux1", "aux2")},
        loss_weights={"main": 1.0, "aux1": 0.3, "aux2": 0.3},
        metrics={"main": ["accuracy"]},
    )
    return model


def figure(request):
    """One figure, in this process: the model of `request` trained on one random batch."""
    loading.quiet_import_tensorflow()
    import keras
    import numpy as np
    import tensorflow as tf
    from throughput import timed_training

    from inception_tf import GoogLeNet
    from inception_tf.tasks import compiling

    size, batch = request["image_size"], request["batch_size"]
    keras.utils.set_random_seed(0)
    if request["model"] == "tutorial":
        policy, model = "float32", tutorial_googlenet(10, size)
    else:
        workload = precision.Workload(variant=request["model"], image_size=size, batch_size=batch)
        policy = precision.choose_policy(request["precision"], workload, timing.time_policies, log=lambda _: None).value
        keras.config.set_dtype_policy(policy)
        model = compiling.compile_for_training(
            GoogLeNet(10, (size, size, 3), variant=request["model"]), jit_compile=request["jit_compile"]
        )
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (batch, size, size, 3)).astype("float32")
    labels = compiling.labels_for_heads(model, rng.integers(0, 10, batch))
    data = tf.data.Dataset.from_tensors((images, labels)).repeat()
    rate = timed_training(model, data, batch, 1, request["seconds"])[0]
    print(RESULT + json.dumps({"images_per_second": rate, "precision": policy, "onednn": settings.onednn_enabled()}))


def _run_figure(request, environment, torch_python=None):
    env = {name: value for name, value in os.environ.items() if name not in settings.VARIABLES}
    if request["model"] == TORCH:
        command = [torch_python, str(TORCH_SCRIPT), json.dumps(request)]
    else:
        command = [sys.executable, __file__, "--figure", json.dumps(request)]
    done = subprocess.run(command, env={**env, **environment}, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT):])
    raise SystemExit(f"a figure failed ({request}): {done.stderr.strip().splitlines()[-1:]}")


def plan(args):
    """`[(label, request, environment)]` for every figure, in the order they run."""
    found = []
    tensorflow_default = {settings.ONEDNN: "0"} if args.avx2_stand_in else {}
    for size, batch in args.workloads:
        base = {"image_size": size, "batch_size": batch, "seconds": args.seconds, "jit_compile": False}
        for model in MODELS:
            found.append((f"{model}, TensorFlow's default runtime, float32",
                          {**base, "model": model, "precision": "float32"}, tensorflow_default))
        for model in MODELS[1:]:
            choice = runtime.choose_setting(precision.Workload(model, size, batch), precision="auto", log=print)
            print(f"{model} at {size}/{batch}: {choice.line}", flush=True)
            request = {**base, "model": model, "precision": "auto", "jit_compile": choice.value.jit_compile}
            found.append((f"{model}, this project's defaults ({choice.value.name})", request,
                          choice.value.environment()))
        if args.torch_python:
            found.append((TORCH_LABEL, {**base, "model": TORCH, "precision": "float32"}, {}))
    return found


def torch_python(given):
    """The Python that runs the PyTorch figures: `given`, else this one when it has torch
    and torchvision, else None (the table leaves PyTorch out and says so)."""
    if given:
        return given
    if all(importlib.util.find_spec(name) for name in ("torch", "torchvision")):
        return sys.executable
    print("PyTorch: torch and torchvision are not importable here, left out (--torch-python PYTHON names one that has them)")
    return None


def report(figures, rates, machine):
    lines = [f"machine: {machine['cpu']}, {machine['cores']} cores, {' '.join(machine['cpu_features'])}"
             f"{machine_lib.onednn_limit(machine)}; "
             f"TensorFlow {machine['tensorflow']}", ""]
    for size, batch in sorted({(r["image_size"], r["batch_size"]) for _, r, _ in figures}, reverse=True):
        peer = statistics.median(rates[f"tutorial, TensorFlow's default runtime, float32 @{size}/{batch}"])
        lines += [f"{size}x{size}, batch {batch}: training images/s (rounds), vs the tutorial model on TensorFlow's defaults",
                  "| model and runtime | precision | oneDNN | images/s | rounds | vs the tutorial |", "|---|---|---|---|---|---|"]
        for label, request, _ in figures:
            if (request["image_size"], request["batch_size"]) != (size, batch):
                continue
            key = f"{label} @{size}/{batch}"
            found = rates[key]
            lines.append(f"| {label} | {rates[key + ' precision']} | {'on' if rates[key + ' onednn'] else 'off'} | "
                         f"{statistics.median(found):.1f} | {' / '.join(f'{r:.1f}' for r in found)} | "
                         f"{statistics.median(found) / peer:.2f}x |")
        lines.append("")
    return "\n".join(lines)


def _workload(text):
    size, _, batch = text.partition("/")
    return int(size), int(batch)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", nargs="+", type=_workload, default=[(224, 32), (64, 128)], metavar="SIZE/BATCH")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0, help="timed training per figure and round")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--avx2-stand-in", action="store_true",
                        help="time this CPU as one with AVX2 and no AVX-512 (see the module's text)")
    parser.add_argument("--torch-python", help="a Python with torch and torchvision for the PyTorch peer "
                        "(default: this one, when it has them)")
    parser.add_argument("--figure", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.figure:
        return figure(json.loads(args.figure))
    args.torch_python = torch_python(args.torch_python)
    if args.avx2_stand_in:
        os.environ[machine_lib.ONEDNN_ISA] = STAND_IN_ISA
    figures = plan(args)
    rates = {}
    for turn in range(args.rounds):
        for label, request, environment in figures:
            key = f"{label} @{request['image_size']}/{request['batch_size']}"
            result = _run_figure(request, environment, args.torch_python)
            rates.setdefault(key, []).append(result["images_per_second"])
            rates[key + " precision"], rates[key + " onednn"] = result["precision"], result["onednn"]
            print(f"round {turn + 1}: {key}: {result['images_per_second']:.1f} images/s", flush=True)
    machine = machine_lib.cpu_machine()
    text = report(figures, rates, machine)
    print("\n" + text)
    if args.json:
        files.write_text_atomic(args.json, json.dumps({"machine": machine, "command": sys.argv, "rates": rates,
                                                       "table": text}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
