"""Writing files so that a crash never leaves a half-written one at the target path."""

import contextlib
import fcntl
import os
import pathlib
import shutil
import tempfile

LOCK_FILE = ".lock"


class LockHeld(RuntimeError):
    """Another process holds the lock of a folder."""


def write_text_atomic(path, text):
    """Write `text` to a temporary file beside `path`, then rename it into place."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temporary_sibling(path, suffix=""):
    """A fresh path beside `path` for writing something that is moved into place later.

    `suffix` keeps an extension that a writer insists on (Keras wants `.keras`,
    `.weights.h5`)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent / f".{path.name}.tmp-{os.getpid()}{suffix}"


def move_into_place(tmp, path):
    """Rename a finished file or folder `tmp` to `path`, replacing what was there.

    A folder cannot be renamed over a non-empty one, so the old one is moved aside
    first: at every instant `path` is either the old complete version, absent for the
    length of a rename, or the new complete version.
    """
    tmp, path = pathlib.Path(tmp), pathlib.Path(path)
    if path.is_dir() and not path.is_symlink():
        aside = path.parent / f".{path.name}.old-{os.getpid()}"
        os.replace(path, aside)
        os.replace(tmp, path)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(tmp, path)


def remove(path):
    path = pathlib.Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def exclusive_lock(folder):
    """Holds `folder/.lock` (creating the folder) for one process at a time.

    The lock is the kernel's (`flock`), not the file's existence: it goes with its process
    however that ends, SIGKILL included, so a lock file left behind is simply taken over.
    The file records the holder's PID for the message another process gets (LockHeld).
    """
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise LockHeld(f"{folder} is in use by process {holder} (it holds {path})") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)
