"""Idle time between a run's epochs: wall time that no epoch counts.

    python benchmarks/epoch_gaps.py RUN_DIR [--limit 2]

Keras's TensorBoard callback writes each epoch's summaries when the epoch ends; their wall
times, minus the epoch's own `epoch_time_s` from `history.csv` (from the epoch's start to
its end, validation included), leave what passed between one epoch's end and the next
one's start. Exits with status 1 when a gap exceeds `--limit` seconds.
"""

import argparse
import csv
import pathlib
import sys

from inception_tf.startup import loading

loading.quiet_import_tensorflow()
import tensorflow as tf  # noqa: E402


def epoch_end_times(run_dir):
    """{epoch: wall time} of the training writer's first summary of each epoch."""
    ends = {}
    for path in sorted((pathlib.Path(run_dir) / "logs" / "train").glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            if any(value.tag.startswith("epoch_") for value in event.summary.value):
                ends.setdefault(event.step, event.wall_time)
    return ends


def gaps(run_dir):
    """[(epoch, seconds idle before it)] for every epoch after the first."""
    with open(pathlib.Path(run_dir) / "history.csv") as f:
        durations = {int(row["epoch"]): float(row["epoch_time_s"]) for row in csv.DictReader(f)}
    ends = epoch_end_times(run_dir)
    return [(epoch, ends[epoch] - ends[epoch - 1] - durations[epoch])
            for epoch in sorted(durations) if epoch - 1 in ends and epoch in ends]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--limit", type=float, default=2.0, help="the most seconds a boundary may idle")
    args = parser.parse_args(argv)
    found = gaps(args.run_dir)
    if not found:
        raise SystemExit(f"No two consecutive epochs in the run's TensorBoard logs. Received: run_dir={args.run_dir!r}")
    for epoch, seconds in found:
        print(f"before epoch {epoch + 1}: {seconds:.2f} s")
    worst = max(seconds for _, seconds in found)
    print(f"{len(found)} boundaries, largest gap {worst:.2f} s, total {sum(s for _, s in found):.1f} s (limit {args.limit:g} s)")
    return 0 if worst <= args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
