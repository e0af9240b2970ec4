"""Stopping on a signal without losing work: SIGTERM (what schedulers and preemptible
machines send, with a grace period) and SIGINT (Ctrl-C).

The first signal only asks for a stop: training finishes the step it is in, backs up
(`callbacks.TrainingBackup`) and the run ends with `Preempted`. A second signal stops
the process at once, even in the middle of a step or a backup write, saying where the
last complete backup is (every backup is written atomically, so it stays usable) and
exiting as the signal's default would be seen: 143 for SIGTERM, 130 for SIGINT.
"""

import contextlib
import os
import signal
import socket
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)
EXIT_CODE = 75  # EX_TEMPFAIL (sysexits.h): stopped on request, the same command resumes


class Preempted(RuntimeError):
    """Training stopped on a signal at `position` (a `callbacks.Position`), backed up
    there; `signal_name` names the signal ("SIGTERM")."""

    def __init__(self, position, signal_name, message=None):
        super().__init__(message or f"Stopped by {signal_name} at {position}")
        self.position, self.signal_name = position, signal_name


@contextlib.contextmanager
def stop_on_signals(describe_backup=None):
    """Within the block, SIGTERM and SIGINT ask for a stop instead of ending the process.

    Yields a function that returns the name of the first signal received ("SIGTERM"),
    or None. A second signal ends the process at once, printing `describe_backup()` (where
    the last complete backup is) on the way. Outside the main thread, where Python cannot
    handle signals, the signals keep their usual effect and the function always returns None.
    """
    received = []

    def handle(signum, frame):
        received.append(signal.Signals(signum).name)

    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    previous = {sig: signal.signal(sig, handle) for sig in SIGNALS}
    # Python runs `handle` in the main thread between bytecodes, which a long step in
    # TensorFlow's C++ holds off; the wake-up byte each signal writes reaches this thread
    # at once, so the second signal ends the process whatever the main thread is doing.
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    watcher = threading.Thread(target=_end_on_second_signal, args=(reader, describe_backup), daemon=True)
    watcher.start()
    try:
        yield lambda: received[0] if received else None
    finally:
        signal.set_wakeup_fd(previous_fd)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        writer.close()  # the watcher's read ends
        watcher.join()
        reader.close()


def _end_on_second_signal(reader, describe_backup):
    count = 0
    while data := reader.recv(64):
        for signum in data:
            if signum not in SIGNALS:
                continue
            count += 1
            if count < 2:
                continue
            name = signal.Signals(signum).name
            where = describe_backup() if describe_backup else "the last complete backup is kept"
            os.write(2, f"\nStopped at once by a second {name}: {where}.\n".encode())
            os._exit(128 + signum)
