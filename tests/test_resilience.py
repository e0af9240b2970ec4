"""A run survives what happens to processes: a second process on its run directory, a
SIGKILL (`test_preemption.py`: SIGTERM and Ctrl-C; `test_disk_full.py`: a full disk)."""

import json
import signal
import time

from runs import TINY, history_epochs, kill, start_train, train, wait_for_backup


def test_a_second_process_on_the_run_dir_exits_naming_the_lock(tmp_path):
    run_dir = tmp_path / "locked"
    first = start_train(*TINY, "--epochs", "1", "--test-crops", "1", "--run-dir", str(run_dir))
    lock = run_dir / ".lock"
    deadline = time.monotonic() + 600
    while not (lock.is_file() and lock.read_text().strip()):
        assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
        time.sleep(0.2)
    second = train(*TINY, "--epochs", "1", "--test-crops", "1", "--run-dir", str(run_dir), check=False)
    assert first.poll() is None, "the second process should be refused while the first still trains"
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert f"{run_dir} is in use by process {first.pid} (it holds {lock})" in second.stderr
    output, _ = first.communicate(timeout=900)
    assert first.returncode == 0, output
    assert (run_dir / "metrics.json").is_file() and (run_dir / "saved_model" / "saved_model.pb").is_file()


def test_sigkill_after_the_first_epoch_resumes_at_the_second(tmp_path):
    run_dir = tmp_path / "killed"
    args = [*TINY, "--epochs", "3", "--run-dir", str(run_dir)]
    process = start_train(*args)
    assert wait_for_backup(run_dir, 1, process) == 1
    kill(process, signal.SIGKILL)
    assert history_epochs(run_dir) in ([0], [0, 1])  # a kill may land between the row and the backup
    # What a kill in the middle of writing leaves (files.atomic_path's names):
    leftovers = [
        run_dir / "backup" / ".epoch-2.weights.h5.tmp-99999-0a1b2c.weights.h5",
        run_dir / ".metrics.json.tmp-99999-0a1b2c",
        run_dir / ".saved_model.tmp-99999-0a1b2c" / "variables",
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    result = train(*args)
    assert "removed 3 unfinished file(s) a killed run left" in result.stdout
    assert not list(run_dir.rglob("*.tmp-*"))
    assert "resuming" in result.stdout
    assert "Epoch 2/3" in result.stdout and "Epoch 1/3" not in result.stdout
    assert history_epochs(run_dir) == [0, 1, 2]
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 3
