"""A run survives what happens to processes: a second process on its run directory
(`test_preemption.py`: SIGTERM, SIGKILL with the half-written files it leaves, and Ctrl-C;
`test_disk_full.py`: a full disk, and a resume at an epoch's start)."""

import time

from runs import TINY, start_train, train


def test_a_second_process_on_the_run_dir_exits_naming_the_lock(tmp_path):
    run_dir = tmp_path / "locked"
    first = start_train(*TINY, "--epochs", "1", "--test-crops", "1", "--precision", "float32", "--run-dir", str(run_dir))
    lock = run_dir / ".lock"
    deadline = time.monotonic() + 600
    while not (lock.is_file() and lock.read_text().strip()):
        assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
        time.sleep(0.2)
    second = train(*TINY, "--epochs", "1", "--test-crops", "1", "--precision", "float32", "--run-dir", str(run_dir), check=False)
    assert first.poll() is None, "the second process should be refused while the first still trains"
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert f"{run_dir} is in use by process {first.pid} (it holds {lock})" in second.stderr
    output, _ = first.communicate(timeout=900)
    assert first.returncode == 0, output
    assert (run_dir / "metrics.json").is_file() and (run_dir / "saved_model" / "saved_model.pb").is_file()
