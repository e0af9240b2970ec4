"""The run directory's lock (`files.exclusive_lock`): one holder at a time, taken again
by the process that holds it (the command line before the run's start-up, then the run)."""

import fcntl
import os

import pytest

from inception_tf import files


def _free(folder):
    """Whether another holder could take the lock now (a second open file: flock locks
    belong to open files, so this process counts as another holder)."""
    fd = os.open(folder / files.LOCK_FILE, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_a_hold_inside_a_hold_keeps_the_lock_until_the_outer_one_ends(tmp_path):
    with files.exclusive_lock(tmp_path / "run") as path:
        assert path.read_text() == f"{os.getpid()}\n"
        with files.exclusive_lock(tmp_path / "run"):
            assert not _free(tmp_path / "run")
        assert not _free(tmp_path / "run")  # the inner hold released nothing
    assert _free(tmp_path / "run")


def test_another_holder_is_refused_naming_the_process(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    fd = os.open(folder / files.LOCK_FILE, os.O_RDWR | os.O_CREAT)
    os.write(fd, b"4242\n")
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with pytest.raises(files.LockHeld, match=rf"{folder} is in use by process 4242 \(it holds {folder / files.LOCK_FILE}\)"):
            with files.exclusive_lock(folder):
                pass
    finally:
        os.close(fd)
    with files.exclusive_lock(folder):  # free again once its holder let go
        pass
