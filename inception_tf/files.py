"""Writing files so that a crash never leaves a half-written one at the target path."""

import contextlib
import errno
import fcntl
import os
import pathlib
import secrets
import shutil

LOCK_FILE = ".lock"
TMP_MARK = ".tmp-"  # in the name of every file being written, until it is renamed into place


class LockHeld(RuntimeError):
    """Another process holds the lock of a folder."""


class DiskFull(RuntimeError):
    """The device ran out of space (or quota) while writing `path`."""

    def __init__(self, path, detail=""):
        self.path = pathlib.Path(path)
        super().__init__(f"No space left on the device to write {path}{detail}")


def is_disk_full(error):
    """Whether `error`, or an error it was raised from, is a full disk or quota.

    TensorFlow and HDF5 wrap the system's error in their own, so their messages are read
    too."""
    return any(
        isinstance(e, DiskFull) or getattr(e, "errno", None) in _FULL or any(text in str(e) for text in _FULL_TEXTS)
        for e in error_chain(error)
    )


def error_chain(error):
    """`error` and the errors it was raised from (`__cause__`, else `__context__`), once each."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


_FULL = (errno.ENOSPC, errno.EDQUOT)
_FULL_TEXTS = tuple(os.strerror(code) for code in _FULL)


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yields a fresh path beside `path` to write a file or folder to; when the block
    ends it is renamed to `path`, and if the block fails it is removed.

    `path` therefore only ever holds a complete version. `suffix` keeps an extension a
    writer insists on (Keras wants `.keras`, `.weights.h5`). A full disk raises DiskFull
    naming `path`. Leftovers of a killed process match `.*{TMP_MARK}*`
    (`remove_leftovers`).
    """
    path = pathlib.Path(path)
    tmp = _temporary_name(path, suffix)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        move_into_place(tmp, path)
    except BaseException as error:
        remove(tmp)
        if is_disk_full(error) and not isinstance(error, DiskFull):
            raise DiskFull(path) from error
        if isinstance(error, OSError) and tmp.name in str(error):
            # The temporary name means nothing to the user: the error names what they asked for.
            named = type(error)(f"Cannot write {path}: {error.strerror or error}")
            named.errno = error.errno
            raise named from error
        raise


def _temporary_name(path, suffix=""):
    return path.parent / f".{path.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(3)}{suffix}"


@contextlib.contextmanager
def temporary_beside(path):
    """A fresh path beside `path`, named as `atomic_path`'s (so `remove_leftovers` finds
    it after a kill), removed when the block ends: for writers that move its parts into
    place themselves."""
    path = pathlib.Path(path)
    tmp = _temporary_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
    finally:
        remove(tmp)


def write_text_atomic(path, text):
    """Write `text` to `path` through `atomic_path`, synced to the disk before the rename."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def move_into_place(tmp, path):
    """Rename a finished file or folder `tmp` to `path`, replacing what was there.

    A folder cannot be renamed over a non-empty one, so the old one is moved aside
    first: at every instant `path` is either the old complete version, absent for the
    length of a rename, or the new complete version.
    """
    tmp, path = pathlib.Path(tmp), pathlib.Path(path)
    if path.is_dir() and not path.is_symlink():
        aside = path.parent / f".{path.name}{TMP_MARK}{os.getpid()}-old"
        os.replace(path, aside)
        os.replace(tmp, path)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(tmp, path)


def remove_leftovers(folder):
    """Removes what `atomic_path` writers killed mid-write left in `folder` and below;
    returns the paths removed. Call it holding the folder's `exclusive_lock`: another
    live writer's files would match too."""
    folder = pathlib.Path(folder)
    found = sorted(folder.rglob(f".*{TMP_MARK}*")) if folder.is_dir() else []
    for path in found:
        remove(path)
    return found


def remove(path):
    path = pathlib.Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


_HELD = set()  # the lock files this process holds


@contextlib.contextmanager
def exclusive_lock(folder):
    """Holds `folder/.lock` (creating the folder) for one process at a time.

    The lock is the kernel's (`flock`), not the file's existence: it goes with its process
    however that ends, SIGKILL included, so a lock file left behind is simply taken over.
    The file records the holder's PID for the message another process gets (LockHeld).
    A process that holds it already holds it again (the command line takes it before the
    run's start-up measurements, the run itself takes it too).
    """
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    key = str(path.resolve())
    if key in _HELD:  # released by the outer hold
        yield path
        return
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
        _HELD.add(key)
        yield path
    finally:
        _HELD.discard(key)
        os.close(fd)
