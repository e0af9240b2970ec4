"""Stopped by a signal at any step, a run resumes exactly: the same history and the same
final weights as the same run uninterrupted (`callbacks.TrainingBackup`,
`preemption.stop_on_signals`, `data.make_dataset(epoch=, skip=)`), its moving average of
the weights (`--ema`) included; while that uninterrupted run trains, a second process on
its run directory is refused (`files.exclusive_lock`); and it evaluates and exports the
average. `test_disk_full.py` has the full disk and a resume at an epoch's start."""

import concurrent.futures
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest

from inception_tf import files
from inception_tf.tasks import preemption
from runs import command_here, env, history_without_times, kill, start_train, train, weights_digest

# 15 steps an epoch (230 training images, batch 16): room for a stop well inside epoch 1;
# the smallest input the aux heads take. The precision is named, not measured
# (test_experiment.py runs the measured choice): a stop proves the same either way. The
# moving average and Lookahead's slow weights (every 3 steps: a stop falls between two
# synchronisations) are the optimizer's state that a resume must restore besides the
# weights; the alternating flips depend on the epoch; the other levers ride along.
ARGS = ["--dataset", "fashion_mnist", "--image-size", "49", "--batch-size", "16", "--limit", "256",
        "--variant", "bn", "--epochs", "2", "--test-crops", "1", "--ema", "0.9", "--lookahead", "3",
        "--alternate-flips", "--beta-rate", "4", "--schedule", "linear", "--precision", "float32"]
STEPS = 15


def _state(run_dir):
    path = run_dir / "backup" / "state.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not there yet (a rename is atomic: never half-written)
        return None


def _backed_up(run_dir, epoch, step):
    """The backup's state if it is at (epoch finished epochs, `step` or more steps), or later; else None."""
    state = _state(run_dir)
    return state if state and (state["epoch"], state["step"]) >= (epoch, step) else None


def _wait_for_step(run_dir, epoch, step, process, timeout=600):
    """Blocks until the backup is at (epoch finished epochs, `step` or more steps), or later."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state := _backed_up(run_dir, epoch, step):
            return state
        assert process.poll() is None, f"training ended before epoch {epoch + 1}, step {step}:\n{process.stdout.read()}"
        time.sleep(0.01)
    raise AssertionError(f"no backup of epoch {epoch + 1}, step {step} within {timeout} s")


def _refused_while_training(run_dir, finished):
    """Once the run in this process holds `run_dir`'s lock: the same command in a second
    process, and whether this one was still training when that process ended."""
    lock = run_dir / ".lock"
    deadline = time.monotonic() + 600
    while not (lock.is_file() and lock.read_text().strip()):
        if finished.is_set() or time.monotonic() > deadline:
            return None, False
        time.sleep(0.05)
    second = train(*ARGS, "--run-dir", str(run_dir), check=False)
    return second, not finished.is_set()


def _train_here_while(args, beside, *beside_args):
    """`train ARGS` in this process (which has TensorFlow loaded already) while
    `beside(*beside_args, finished)` runs in a thread, `finished` set once the training has
    returned: `((code, stdout, stderr), what beside returned)`."""
    finished = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(beside, *beside_args, finished)
        try:
            result = command_here("train", *args)
        finally:
            finished.set()
        return result, future.result()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The run never stopped, in this process (which has TensorFlow loaded already); while
    it trains, the same command on its run directory in a second process."""
    run_dir = tmp_path_factory.mktemp("preemption") / "uninterrupted"
    (code, output, stderr), (second, first_still_training) = _train_here_while(
        [*ARGS, "--run-dir", run_dir], _refused_while_training, run_dir)
    assert code == 0, output + stderr
    return {"digest": weights_digest(output), "history": history_without_times(run_dir), "run_dir": run_dir,
            "pid": os.getpid(), "second": second, "first_still_training": first_still_training, "output": output}


def test_a_second_process_on_the_run_dir_exits_naming_the_lock(uninterrupted):
    run_dir, second = uninterrupted["run_dir"], uninterrupted["second"]
    assert second is not None, "the run ended before it held its lock"
    assert uninterrupted["first_still_training"], "the second process should be refused while the first still trains"
    assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr
    assert f"{run_dir} is in use by process {uninterrupted['pid']} (it holds {run_dir / '.lock'})" in second.stderr
    # Refused before it chose a runtime or loaded TensorFlow (the lock comes first).
    assert "runtime:" not in second.stdout and "strategy:" not in second.stdout, second.stdout
    # The refused process left the run alone: it ended complete.
    assert (run_dir / "metrics.json").is_file() and (run_dir / "saved_model" / "saved_model.pb").is_file()


def _sigterm_at_step(run_dir, step, finished):
    """Once the backup is at `step` of epoch 1 or later, SIGTERM to this process, if its
    run still handles the signal (else it would end the process): when it was sent."""
    while not finished.is_set():
        if _backed_up(run_dir, 0, step):
            if getattr(signal.getsignal(signal.SIGTERM), "__module__", None) != preemption.__name__:
                return None
            sent = time.monotonic()
            os.kill(os.getpid(), signal.SIGTERM)
            return sent
        time.sleep(0.01)
    return None


def test_sigterm_mid_epoch_then_sigkill_after_a_step_backup_resume_exactly(tmp_path, uninterrupted):
    run_dir = tmp_path / "stopped"
    args = [*ARGS, "--run-dir", str(run_dir), "--backup-every", "2"]
    # A random step of epoch 1 (a backup's), drawn from a seed that is printed: rerun a
    # failure with INCEPTION_TF_TEST_SEED=that seed.
    seed = int(os.environ.get("INCEPTION_TF_TEST_SEED") or random.randrange(2**32))
    wanted = random.Random(seed).randrange(4, STEPS - 8, 2)
    # The signal's way in is the same in any process (`preemption.stop_on_signals`): this
    # one, which has TensorFlow loaded already, takes it, in the main thread that trains.
    (returncode, stdout, stderr), sent = _train_here_while(args, _sigterm_at_step, run_dir, wanted)
    grace = time.monotonic() - (sent or math.inf)
    print(f"stop step {wanted} of epoch 1 (INCEPTION_TF_TEST_SEED={seed})")  # after the run's output is read
    output = stdout + stderr
    assert returncode == 75, output
    match = re.search(rf"Stopped by SIGTERM at epoch 1 of 2, step (\d+) of {STEPS}, backed up in (\S+): run the same command again", output)
    assert match, output
    stopped = int(match.group(1))
    assert wanted <= stopped < STEPS and match.group(2) == str(run_dir / "backup")
    assert (_state(run_dir)["epoch"], _state(run_dir)["step"]) == (0, stopped)
    assert grace < 60, f"{grace:.1f} s from SIGTERM to exit"
    assert "Traceback" not in output

    # The rerun resumes at that step, and finishes epoch 1 (its history row); a SIGKILL in
    # epoch 2 while a step backup is being written leaves its file half-written under its
    # temporary name ...
    process = start_train(*args)
    _wait_for_step(run_dir, 1, 4, process)
    backup = run_dir / "backup"
    deadline = time.monotonic() + 300
    while not any(files.TMP_MARK in path.name for path in backup.iterdir()):  # no sleep: a write is short
        assert process.poll() is None and time.monotonic() < deadline, "no backup write in epoch 2"
    returncode, output = kill(process, signal.SIGKILL)
    assert returncode == -signal.SIGKILL
    assert f"resuming from epoch 1 of 2, step {stopped} of {STEPS}" in output, output
    half_written = [path for path in backup.iterdir() if files.TMP_MARK in path.name]
    assert half_written, "the kill came after the backup's rename: nothing was left half-written"
    killed_at = _state(run_dir)
    assert killed_at["epoch"] == 1 and killed_at["step"] >= 4
    # ... as a kill during the run's last writes would leave these (files.atomic_path's names) ...
    planted = [run_dir / ".metrics.json.tmp-99999-0a1b2c", run_dir / ".saved_model.tmp-99999-0a1b2c" / "variables"]
    for path in planted:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")

    # ... and the one after it (in this process, which has TensorFlow loaded already): the
    # same history, and the same weights (the average, that --ema exports) as the run never
    # stopped.
    code, stdout, stderr = command_here("train", *args)
    assert code == 0, stdout + stderr
    assert f"removed {len(half_written) + len(planted)} unfinished file(s) a killed run left" in stdout
    assert not list(run_dir.rglob("*.tmp-*"))
    assert f"resuming from epoch 2 of 2, step {killed_at['step']} of {STEPS}" in stdout
    digest, history = uninterrupted["digest"], uninterrupted["history"]
    assert history_without_times(run_dir) == history
    assert weights_digest(stdout) == digest
    assert json.loads((run_dir / "metrics.json").read_text())["weights_sha256"] == digest


def test_with_ema_the_averaged_weights_are_evaluated_and_exported(uninterrupted):
    """`--ema`: the run evaluates and exports the moving average, not the best epoch's
    weights (which best.weights.h5 still holds, from the epochs' validation)."""
    run_dir, output = uninterrupted["run_dir"], uninterrupted["output"]
    assert "weights: the moving average of the steps (momentum 0.9), evaluated and exported" in output
    assert "best epoch:" not in output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["best_epoch"] is None and json.loads((run_dir / "config.json").read_text())["train"]["ema"] == 0.9
    model = keras.models.load_model(run_dir / "model.keras")
    exported = model.get_weights()
    model.load_weights(run_dir / "best.weights.h5")
    assert any(not np.array_equal(a, b) for a, b in zip(exported, model.get_weights()))


@pytest.mark.slow  # the first test covers the exact resume; this adds the second signal
def test_a_second_sigterm_during_the_backup_write_keeps_the_previous_backup(tmp_path, uninterrupted):
    run_dir = tmp_path / "twice"
    args = [*ARGS, "--run-dir", str(run_dir), "--backup-every", "2"]
    process = start_train(*args)
    previous = _wait_for_step(run_dir, 0, 4, process)
    process.send_signal(signal.SIGTERM)
    backup = run_dir / "backup"
    deadline = time.monotonic() + 120
    while not any(".tmp-" in path.name for path in backup.iterdir()):  # the stop's backup is being written
        assert process.poll() is None and time.monotonic() < deadline, "no backup write after SIGTERM"
        previous = _state(run_dir) or previous
    process.send_signal(signal.SIGTERM)
    returncode, output = kill(process, signal.SIGTERM)
    assert returncode == 128 + signal.SIGTERM, output  # ended at once, as the signal's default is seen
    state = _state(run_dir)
    assert (f"Stopped at once by a second SIGTERM: the last complete backup (epoch 1 of 2, step {state['step']} of "
            f"{STEPS}) is in {run_dir / 'backup'}; run the same command again to resume from there.") in output, output
    assert (state["epoch"], state["step"]) == (previous["epoch"], previous["step"])
    assert (backup / state["weights"]).is_file()
    result = train(*args)
    assert f"resuming from epoch 1 of 2, step {state['step']} of {STEPS}" in result.stdout
    assert "removed 1 unfinished file(s)" in result.stdout
    digest, history = uninterrupted["digest"], uninterrupted["history"]
    assert weights_digest(result.stdout) == digest and history_without_times(run_dir) == history


@pytest.mark.slow  # SIGINT takes SIGTERM's path (preemption.SIGNALS)
def test_ctrl_c_stops_after_the_step_and_says_how_to_resume(tmp_path, uninterrupted):
    run_dir = tmp_path / "interrupted"
    args = [*ARGS, "--run-dir", str(run_dir)]
    process = start_train(*args)
    _wait_for_step(run_dir, 1, 0, process)  # epoch 1 backed up: epoch 2 is starting
    returncode, output = kill(process, signal.SIGINT)
    assert returncode == 75, output
    assert re.search(rf"Stopped by SIGINT at epoch 2 of 2, step \d+ of {STEPS}", output), output
    result = train(*args)
    assert weights_digest(result.stdout) == uninterrupted["digest"]


SECOND_SIGNAL = """
import sys, time
from inception_tf.tasks import preemption
with preemption.stop_on_signals(lambda: "the last complete backup is in RUN_DIR/backup") as stop_requested:
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
        if stop_requested():
            print("first:", stop_requested(), flush=True)
            time.sleep(60)  # a long step, or a backup being written
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_ends_at_once_saying_where_the_backup_is(sig):
    process = subprocess.Popen([sys.executable, "-c", SECOND_SIGNAL], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env())
    assert process.stdout.readline() == "ready\n"
    process.send_signal(sig)
    assert process.stdout.readline() == f"first: {sig.name}\n"  # the first only asks for a stop
    started = time.monotonic()
    process.send_signal(sig)
    out, err = process.communicate(timeout=30)
    assert time.monotonic() - started < 10  # not after the minute the block still had to go
    assert process.returncode == 128 + sig
    assert err.strip() == f"Stopped at once by a second {sig.name}: the last complete backup is in RUN_DIR/backup."
