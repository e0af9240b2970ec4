"""A full disk under a run: one clear error, exit code 1, no temporary files, and the
last finished epoch intact and resumable."""

import contextlib
import errno
import json
import os
import subprocess

import h5py
import pytest

from inception_tf import files

from runs import MINIMAL, command_here, history_epochs

# Each weights file holds the weights and the optimizer's state (~83 MB for the bn
# variant): one epoch's best + backup fit in 220 MB, a second epoch's next file does not.
TMPFS_SIZE = "220m"
ARGS = [*MINIMAL, "--epochs", "2", "--test-crops", "1"]  # float32: the weights' size is what counts


def test_atomic_path_removes_its_file_and_names_the_target_on_a_full_disk(tmp_path):
    target = tmp_path / "out" / "metrics.json"
    target.parent.mkdir()
    target.write_text("old")
    with pytest.raises(files.DiskFull, match=f"No space left on the device to write {target}"):
        with files.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]


def test_a_full_disk_is_recognised_through_the_errors_that_wrap_it():
    try:
        try:
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
        except OSError as error:
            raise RuntimeError("Can't write data") from error
    except RuntimeError as wrapped:
        assert files.is_disk_full(wrapped)
    assert files.is_disk_full(RuntimeError("Failed to write: No space left on device"))
    assert not files.is_disk_full(OSError(errno.EACCES, os.strerror(errno.EACCES)))


def test_any_other_failure_removes_the_file_and_passes_through(tmp_path):
    target = tmp_path / "model.keras"
    with pytest.raises(ZeroDivisionError):
        with files.atomic_path(target, suffix=".keras") as tmp:
            tmp.write_text("half")
            1 / 0
    assert list(tmp_path.iterdir()) == []


@contextlib.contextmanager
def small_disk(tmp_path):
    """A 220 MB tmpfs. Mounting one needs root (CI runs as root); without it the test fails
    with the reason: a stand-in that raises ENOSPC from one call would leave untried the
    other writers (TensorBoard, CSV, HDF5's own buffers) that meet a real full disk."""
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(mount)], capture_output=True, text=True)
    except FileNotFoundError as error:
        pytest.fail(f"a full disk is tested on a small tmpfs, and `mount` is missing: {error}")
    if done.returncode != 0:
        pytest.fail(f"a full disk is tested on a small tmpfs, which needs root to mount: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_stops_the_run_cleanly_and_a_rerun_resumes(tmp_path):
    with small_disk(tmp_path) as disk:
        run_dir = disk / "run"
        args = [*ARGS, "--run-dir", str(run_dir)]
        # In this process, which has TensorFlow loaded already: a failed run must also let go
        # of every file it opened there, or the disk could not be unmounted below.
        code, stdout, stderr = command_here("train", *args)
        assert code == 1, stdout + stderr
        assert "Traceback" not in stderr
        assert f"error: No space left on the device to write {run_dir}" in stderr
        assert f"The state at the end of epoch 1 of 2 is saved in {run_dir / 'backup'}" in stderr
        assert not list(run_dir.rglob("*.tmp-*")), sorted(run_dir.rglob("*"))

        state = json.loads((run_dir / "backup" / "state.json").read_text())
        assert state["epoch"] == 1
        with h5py.File(run_dir / "backup" / state["weights"], "r") as weights:  # complete, not cut short
            assert "layers" in weights and "optimizer" in weights

        # room for the rest
        subprocess.run(["mount", "-o", "remount,size=1g", str(disk)], check=True)
        code, stdout, stderr = command_here("train", *args)  # in this process: it has TensorFlow loaded
        assert code == 0, stderr
        assert "resuming" in stdout and "Epoch 2/2" in stdout and "Epoch 1/2" not in stdout
        assert history_epochs(run_dir) == [0, 1]
        assert (run_dir / "metrics.json").is_file()
