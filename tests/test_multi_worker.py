"""Two workers on 127.0.0.1 train one model with MultiWorkerMirroredStrategy.

Each test starts two `train.py` processes that differ only in TF_CONFIG's task, as two
machines would run them.
"""

import json
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

import runs

pytestmark = pytest.mark.slow

# The default rate (0.1) is set for batch 128: at batch 32 it makes the loss climb in a
# short run; 0.025 keeps the same rate per image.
ARGS = [*runs.TINY, "--batch-size", "32", "--learning-rate", "0.025", "--strategy", "multi_worker"]


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(run_dir, epochs, ports, *extra):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    for index in range(len(ports)):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        processes.append(
            subprocess.Popen(
                [sys.executable, str(runs.ROOT / "train.py"), *ARGS, "--epochs", str(epochs), "--run-dir", str(run_dir),
                 *extra],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                env={**runs.env(), "TF_CONFIG": tf_config},
            )
        )
    return processes


def _finish(processes, timeout=900):
    outputs = []
    try:
        for process in processes:
            output, _ = process.communicate(timeout=timeout)
            outputs.append(output)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    return [p.returncode for p in processes], outputs


def test_two_workers_train_one_model_and_only_the_chief_writes(tmp_path):
    run_dir = tmp_path / "run"
    codes, outputs = _finish(_start_workers(run_dir, 2, _free_ports(2)))
    assert codes == [0, 0], "\n\n".join(o[-3000:] for o in outputs)
    assert "worker: worker:0, 1 of 2" in outputs[0]
    # The replicas stayed in step: the same weights on both workers.
    assert runs.weights_digest(outputs[0]) == runs.weights_digest(outputs[1])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["workers"] == 2 and metrics["replicas"] == 2 and metrics["strategy"] == "multi_worker"
    assert metrics["weights_sha256"] == runs.weights_digest(outputs[0])
    # It learned: the training loss fell and training accuracy left chance (0.1) behind.
    # Not the test accuracy: after 60 steps BatchNorm's moving statistics (momentum 0.99)
    # are still half their initial values, and the test figure swings with them.
    history = runs.history(run_dir)
    assert history["loss"][1] < history["loss"][0] and history["main_accuracy"][1] > 0.2
    # The chief evaluated the whole (limited) test split once, not one worker's share or a
    # repeated shard: its confusion matrix counts each of the 1024 images once.
    confusion = metrics["confusion_matrix"]
    assert metrics["test_examples"] == sum(map(sum, confusion)) == 1024
    assert metrics["test_accuracy"] == pytest.approx(sum(confusion[i][i] for i in range(10)) / 1024, abs=1e-4)
    # Both workers took the same precision, decided on figures averaged across them.
    assert all(re.search(r"precision: \S+ \(.*averaged over the workers", output) for output in outputs)
    for name in ("config.json", "history.csv", "model.keras", "saved_model", "curves.png", "confusion_matrix.png"):
        assert (run_dir / name).exists(), name
    assert not (run_dir / "backup").exists()
    assert runs.history_epochs(run_dir) == [0, 1]
    # The other worker wrote only to its temporary directory, and removed it.
    temporary = re.search(r"writes to (\S+)", outputs[1]).group(1)
    assert not pathlib.Path(temporary).exists()
    assert "the chief evaluates and exports" in outputs[1]


def test_a_killed_worker_fails_the_job_and_the_same_command_resumes(tmp_path):
    run_dir = tmp_path / "run"
    ports = _free_ports(2)
    chief, other = _start_workers(run_dir, 3, ports)
    runs.wait_for_backup(run_dir, 1, chief)
    other.send_signal(signal.SIGKILL)
    other.communicate(timeout=60)
    # The chief's collectives lose their peer: it must fail, not hang.
    (code,), (output,) = _finish([chief], timeout=300)
    assert code != 0, output[-3000:]
    finished = json.loads((run_dir / "backup" / "state.json").read_text())["epoch"]
    assert finished >= 1

    codes, outputs = _finish(_start_workers(run_dir, 3, _free_ports(2)))
    assert codes == [0, 0], "\n\n".join(o[-3000:] for o in outputs)
    # Both resumed after the last finished epoch, not from the start.
    for output in outputs:
        assert f"Epoch {finished + 1}/3" in output and "Epoch 1/3" not in output
    assert runs.weights_digest(outputs[0]) == runs.weights_digest(outputs[1])
    assert runs.history_epochs(run_dir) == [0, 1, 2]
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 3


def test_sigterm_to_one_worker_stops_both_and_the_rerun_ends_as_if_never_stopped(tmp_path):
    codes, outputs = _finish(_start_workers(tmp_path / "uninterrupted", 3, _free_ports(2)))
    assert codes == [0, 0], "\n\n".join(o[-3000:] for o in outputs)
    uninterrupted = runs.weights_digest(outputs[0])

    run_dir = tmp_path / "run"
    chief, other = _start_workers(run_dir, 3, _free_ports(2), "--backup-every", "2")
    state = run_dir / "backup" / "state.json"
    while not (state.is_file() and (json.loads(state.read_text())["epoch"], json.loads(state.read_text())["step"]) >= (1, 2)):
        assert chief.poll() is None and other.poll() is None, (chief.poll(), other.poll())
        time.sleep(0.01)
    other.send_signal(signal.SIGTERM)  # the non-chief: the chief must stop with it
    codes, outputs = _finish([chief, other], timeout=300)
    assert codes == [75, 75], "\n\n".join(o[-3000:] for o in outputs)
    stopped = re.search(r"Stopped by SIGTERM at epoch 2 of 3, step (\d+) of \d+", outputs[1])
    assert stopped, outputs[1][-3000:]
    assert f"Stopped by a signal to another worker at epoch 2 of 3, step {stopped.group(1)} of" in outputs[0]
    assert json.loads(state.read_text())["step"] == int(stopped.group(1))

    codes, outputs = _finish(_start_workers(run_dir, 3, _free_ports(2), "--backup-every", "2"))
    assert codes == [0, 0], "\n\n".join(o[-3000:] for o in outputs)
    for output in outputs:
        assert f"resuming from epoch 2 of 3, step {stopped.group(1)} of" in output
    assert runs.weights_digest(outputs[0]) == runs.weights_digest(outputs[1]) == uninterrupted


def test_workers_under_different_runtimes_stop_with_one_line(tmp_path):
    """Each worker times its own machine; where their answers differ, both say so and stop."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    processes = [
        subprocess.Popen(
            [sys.executable, str(runs.ROOT / "train.py"), *ARGS, "--epochs", "1", "--run-dir", str(tmp_path / "run")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**runs.env(), "TF_ENABLE_ONEDNN_OPTS": onednn,
                 "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})},
        )
        for index, onednn in enumerate(("1", "0"))
    ]
    codes, outputs = _finish(processes, timeout=300)
    assert codes == [2, 2], "\n\n".join(o[-3000:] for o in outputs)
    for output, name in zip(outputs, ("oneDNN on", "oneDNN off")):
        assert "error: The workers loaded TensorFlow under different runtimes" in output
        assert output.rstrip().endswith(f"Received: this worker's runtime={name!r}"), output[-2000:]
        assert "Traceback" not in output
