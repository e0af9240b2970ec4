"""Where a GoogLeNet training step spends its time: TensorFlow's profiler, summed per op.

    python benchmarks/profile_step.py --variant paper --image-size 224 --batch-size 32

Builds the model as `benchmarks/throughput.py` does, with its `synthetic_training` (SGD, three heads, a synthetic batch
held in memory), warms it up, traces `--steps` training steps with
`tf.profiler.experimental` and prints the ops that took the most time per step, grouped
by op type (`--by type`) or one line per op of the graph (`--by op`). Op times overlap
where TensorFlow runs two ops at once, so the shares are of the summed op time, not of
the wall time, which is printed first.
"""

import argparse
import collections
import pathlib
import sys
import tempfile
import time

from inception_tf.startup import runtime  # noqa: E402  (loads nothing)

if __name__ == "__main__":  # the runtime train.py would choose for this workload, before TensorFlow loads
    runtime.configure_from_flags(sys.argv[1:], variant="paper", image_size=224, batch_size=32, precision="auto")

import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402
from throughput import synthetic_training  # noqa: E402  (this script's folder is on sys.path)

from inception_tf.choices import VARIANTS  # noqa: E402
from inception_tf.startup import machine  # noqa: E402
from inception_tf.startup import precision as precision_lib  # noqa: E402
from inception_tf.tasks import timing  # noqa: E402

XLA_RUN = "CpuExecutable::ExecuteAsyncOnStream"
XLA_CLUSTER = "XlaCompiledFunction"


def op_times(xspace_path, by="type"):
    """{op type or op name: summed microseconds} of the TensorFlow ops in a host trace."""
    space = xplane_pb2.XSpace()
    space.ParseFromString(pathlib.Path(xspace_path).read_bytes())
    totals = collections.Counter()
    for plane in space.planes:
        if "host:CPU" not in plane.name:
            continue
        for line in plane.lines:
            for event in line.events:
                # An op's event is named "op name:op type"; the executor's own frames
                # ("ExecutorState::Process", "EagerLocalExecute: ...") are left out.
                name = plane.event_metadata[event.metadata_id].name
                op_name, _, op_type = name.rpartition(":")
                if name == XLA_RUN:
                    # An XLA-compiled function (training LRN) shows up as its executable's
                    # run on the calling thread, not as an op event.
                    op_name = op_type = XLA_CLUSTER
                elif not op_name or "::" in name or op_type.startswith(" "):
                    continue
                totals[op_type if by == "type" or op_type == XLA_CLUSTER else name] += event.duration_ps / 1e6
    return totals


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", choices=VARIANTS, default="paper")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", default="auto", help="auto (as train.py chooses), float32, mixed_bfloat16, ...")
    parser.add_argument("--steps", type=int, default=3, help="training steps traced")
    parser.add_argument("--top", type=int, default=25, help="lines printed")
    parser.add_argument("--by", choices=("type", "op"), default="type")
    args = parser.parse_args(argv)
    size, batch = args.image_size, args.batch_size
    choice = precision_lib.choose_policy(args.precision, precision_lib.Workload(args.variant, size, batch), timing.time_policies,
                                         log=lambda _: None)
    precision, reason = choice.value, choice.reason
    model, _, data = synthetic_training(args.variant, precision, size, batch)
    model.fit(data, steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)  # tracing and oneDNN set-up

    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        model.fit(data, steps_per_epoch=args.steps, epochs=1, verbose=0, shuffle=False)
        wall = time.perf_counter() - start
        tf.profiler.experimental.stop()
        (trace,) = pathlib.Path(logdir).rglob("*.xplane.pb")
        totals = op_times(trace, args.by)

    print(f"{args.variant}, {size}x{size}, batch {batch}, {precision} ({reason})")
    print(f"machine: {machine.describe_machine(machine.gpu_details())}")
    print(f"wall {1000 * wall / args.steps:.0f} ms per step ({args.steps * batch / wall:.1f} images/s, profiler on)")
    summed = sum(totals.values())
    if not summed:
        raise SystemExit("The profiler recorded no TensorFlow op: no host trace was written.")
    print(f"summed op time {summed / 1000 / args.steps:.0f} ms per step")
    for key, micros in totals.most_common(args.top):
        print(f"{micros / 1000 / args.steps:8.1f} ms {100 * micros / summed:5.1f}%  {key}")


if __name__ == "__main__":
    main()
