"""Helpers for tests that run the command line in a subprocess."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
# The bn variant learns in a few dozen steps, where the paper variant needs hundreds: at
# the smallest input the aux heads take, 58 steps of 32 (2 epochs at learning rate 0.02)
# leave chance (0.1) far behind.
SMALL = ["--dataset", "fashion_mnist", "--image-size", "49", "--batch-size", "32", "--limit", "1024", "--variant", "bn"]
# for runs whose accuracy nobody reads
TINY = ["--dataset", "fashion_mnist", "--image-size", "64", "--batch-size", "64", "--limit", "1024", "--variant", "bn"]
# For runs that only need to start training: the smallest input the aux heads take, and
# the precision named (measuring it builds and traces the model once per candidate;
# test_experiment's run loads a measured answer, test_precision.py times one).
MINIMAL = ["--dataset", "fashion_mnist", "--image-size", "49", "--batch-size", "32", "--limit", "256", "--variant", "bn",
           "--precision", "float32"]


# The runtime line a command prints under the tests' environment (conftest.py), written out:
# computing it with the code under test would agree with any change to that code.
RUNTIME_LINE = "runtime: oneDNN on (INCEPTION_TF_RUNTIME=default; TF_ENABLE_ONEDNN_OPTS=1 set by you)"


def env_with_store(cache):
    """`env()` reading stored answers from `cache`, without the conftest's runtime variables:
    a run there loads TensorFlow as the stored answer says."""
    from inception_tf.startup import measured, settings

    environ = {**env(), measured.CACHE_ENV: str(cache)}
    for name in (settings.MODE, settings.ONEDNN):
        environ.pop(name, None)
    return environ


def store_runtime_answer(cache, workload, precision, choice):
    """A stored runtime answer for `workload` trained in `precision` ("auto" or a policy) in
    the store at `cache`, as if measured here: `choice` ("oneDNN on" or "oneDNN off") twice
    as fast as the other, both in float32. A run that finds it times nothing."""
    import dataclasses

    from inception_tf.startup import machine, measured

    other = "oneDNN off" if choice == "oneDNN on" else "oneDNN on"
    asked = measured.Question(pathlib.Path(cache) / measured.CACHE_FILE, "runtime", machine.cpu_machine(),
                              {**dataclasses.asdict(workload), "precision": precision, "given": {}})
    measured.store(asked.path, measured.new_entry(
        asked, {other: 10.0, choice: 20.0}, choice, precisions={other: "float32", choice: "float32"},
    ))


def store_precision_answer(cache, workload, policy="float32"):
    """A stored precision answer for `workload` in the store at `cache`, as if measured
    here (`policy` timed, the other CPU precisions left out): a run that finds it times
    nothing (the timing itself is tested in test_precision.py)."""
    import dataclasses

    from inception_tf.startup import machine, measured, precision

    asked = measured.Question(pathlib.Path(cache) / measured.CACHE_FILE, "precision", machine.machine([]),
                              dataclasses.asdict(workload))
    left_out = {other: "faked" for other in precision.policies([]) if other != policy}
    measured.store(asked.path, measured.new_entry(asked, {policy: 20.0}, policy, left_out=left_out))


def command_here(*args):
    """`python -m inception_tf ARGS` in this process, which has TensorFlow loaded already
    (a process of its own would spend its start loading it again): `(exit code, stdout,
    stderr)`. Captured here, not by pytest's `capsys`, which module fixtures cannot take;
    when the command raises, what it wrote goes to pytest's report. Tests that need a
    fresh process start one."""
    import contextlib
    import io

    from inception_tf import cli

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main([str(arg) for arg in args])
    except BaseException:
        sys.stdout.write(out.getvalue())
        sys.stderr.write(err.getvalue())
        raise
    return code, out.getvalue(), err.getvalue()


def env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


def train(*args, check=True, timeout=900, environ=None):
    """`train.py ARGS` in a new process, under `env()` or `environ`."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True, env=environ or env(),
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"train.py {args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def start_train(*args):
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env(),
    )


def wait_for_backup(run_dir, epoch, process, timeout=600):
    """Block until RUN_DIR/backup/state.json records `epoch` finished epochs (a step
    backup after them counts too)."""
    state = pathlib.Path(run_dir) / "backup" / "state.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state.is_file() and json.loads(state.read_text())["epoch"] >= epoch:
            return json.loads(state.read_text())["epoch"]
        if process.poll() is not None:
            raise AssertionError(f"training ended before epoch {epoch}:\n{process.stdout.read()}")
        time.sleep(0.05)
    raise AssertionError(f"no backup of epoch {epoch} within {timeout} s")


def kill(process, sig=signal.SIGKILL):
    process.send_signal(sig)
    output, _ = process.communicate(timeout=600)  # a loaded machine may still be evaluating and exporting
    return process.returncode, output


def history_epochs(run_dir):
    lines = (pathlib.Path(run_dir) / "history.csv").read_text().splitlines()
    return [int(line.split(",")[0]) for line in lines[1:]]


def history(run_dir):
    """history.csv as {column: numpy array}."""
    import numpy as np

    lines = (pathlib.Path(run_dir) / "history.csv").read_text().splitlines()
    names, rows = lines[0].split(","), [line.split(",") for line in lines[1:]]
    return {name: np.array([float(row[i]) for row in rows]) for i, name in enumerate(names)}


def weights_digest(output):
    """The sha256 of the final weights a run printed (its last, where several ran)."""
    found = re.findall(r"weights after training: sha256 ([0-9a-f]{64})", output)
    assert found, output[-3000:]
    return found[-1]


def history_without_times(run_dir):
    """history.csv, each row as written, without the wall-time column: what an exact
    resume must reproduce."""
    lines = (pathlib.Path(run_dir) / "history.csv").read_text().splitlines()
    drop = lines[0].split(",").index("epoch_time_s")
    return [[cell for i, cell in enumerate(line.split(",")) if i != drop] for line in lines]
