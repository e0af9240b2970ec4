"""Stopping on a signal without losing work: SIGTERM (what schedulers and preemptible
machines send, with a grace period) and SIGINT (Ctrl-C).

The first signal only asks for a stop: training finishes the step it is in, backs up
(`callbacks.TrainingBackup`) and the run ends with `Preempted`. A second signal stops
the process at once, as the signal's default does: every backup is written atomically,
so the last complete one stays usable.
"""

import contextlib
import signal
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
def stop_on_signals():
    """Within the block, SIGTERM and SIGINT ask for a stop instead of ending the process.

    Yields a function that returns the name of the first signal received ("SIGTERM"),
    or None. Outside the main thread, where Python cannot handle signals, the signals
    keep their usual effect and the function always returns None.
    """
    received = []

    def handle(signum, frame):
        received.append(signal.Signals(signum).name)
        for sig in SIGNALS:  # the next one ends the process at once
            signal.signal(sig, signal.SIG_DFL)

    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    previous = {sig: signal.signal(sig, handle) for sig in SIGNALS}
    try:
        yield lambda: received[0] if received else None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
