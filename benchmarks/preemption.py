"""What a SIGTERM costs a run: the grace it needs, and whether the resumed run ends as
the uninterrupted one does.

    python benchmarks/preemption.py --rounds 2 -- --dataset fashion_mnist --limit 2048 \
        --epochs 3 --batch-size 64 --image-size 64 --test-crops 1

Runs `train.py ARGS` uninterrupted, then, `--rounds` times, the same command stopped by
SIGTERM at a random step of epoch 2 (of at least 3) and run again. Prints per round the
step it stopped at, the seconds from the signal to the process's exit (the grace period a
scheduler must allow), and whether the final weights (sha256, as the run prints them)
and the history (wall times aside) equal the uninterrupted run's. Ends with one line:
`grace_s_max=<float> identical=<k>/<rounds>`.
"""

import argparse
import json
import pathlib
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

from inception_tf.startup import machine  # noqa: E402  (loads nothing)

ROOT = pathlib.Path(__file__).resolve().parents[1]


def start(args, run_dir):
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args, "--run-dir", str(run_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def finish(process):
    output, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"train.py exited {process.returncode}:\n{output[-3000:]}")
    return output


def digest(output):
    return re.search(r"weights after training: sha256 ([0-9a-f]{64})", output).group(1)


def history(run_dir):
    lines = (run_dir / "history.csv").read_text().splitlines()
    drop = lines[0].split(",").index("epoch_time_s")
    return [[cell for i, cell in enumerate(line.split(",")) if i != drop] for line in lines]


def epoch_two_started(run_dir, process):
    """Blocks until epoch 1's backup is written (epoch 2 is starting)."""
    state = run_dir / "backup" / "state.json"
    while not (state.is_file() and json.loads(state.read_text())["epoch"] >= 1):
        if process.poll() is not None:
            raise SystemExit(f"train.py ended before epoch 2:\n{process.stdout.read()[-3000:]}")
        time.sleep(0.01)


def stopped_round(args, run_dir, epoch_seconds, rng):
    process = start(args, run_dir)
    epoch_two_started(run_dir, process)
    time.sleep(rng.uniform(0.2, 0.7) * epoch_seconds)  # a random step of epoch 2
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate()
    grace = time.monotonic() - signalled
    where = re.search(r"Stopped by SIGTERM at (.*?), backed up", output)
    if process.returncode != 75 or not where:
        raise SystemExit(f"expected exit 75 and the stop's line, got {process.returncode}:\n{output[-3000:]}")
    return where.group(1), grace, finish(start(args, run_dir))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=None, help="of the stops' timing")
    parser.add_argument("train_args", nargs="+", help="train.py's flags, after --")
    args = parser.parse_args(argv)
    print(f"machine: {machine.describe_machine()}", flush=True)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = pathlib.Path(scratch)
        reference_dir = scratch / "uninterrupted"
        reference = finish(start(args.train_args, reference_dir))
        times = [float(t) for t in re.findall(r"epoch_time_s: ([0-9.]+)", reference)]
        print(f"uninterrupted: sha256 {digest(reference)}, epoch times {', '.join(f'{t:.1f}' for t in times)} s")
        graces, identical = [], 0
        for index in range(args.rounds):
            run_dir = scratch / f"stopped-{index}"
            where, grace, rerun = stopped_round(args.train_args, run_dir, times[1], rng)
            same = digest(rerun) == digest(reference) and history(run_dir) == history(reference_dir)
            graces.append(grace)
            identical += same
            print(f"round {index + 1}: SIGTERM at {where}; exit after {grace:.2f} s; rerun sha256 {digest(rerun)}; "
                  f"history and weights {'identical' if same else 'DIFFERENT'}", flush=True)
    print(f"grace_s_max={max(graces):.2f} identical={identical}/{args.rounds}")
    return 0 if identical == args.rounds else 1


if __name__ == "__main__":
    sys.exit(main())
