"""The runtime probe's processes, seen from the run that starts them: each loads
TensorFlow under one runtime setting (its environment), builds and traces the workload's
training step in each precision, then times a step on request. Their side is
`tasks.timing.probe_main`; the two speak in lines that start with RESULT_PREFIX."""

import dataclasses
import json
import os
import select
import subprocess
import sys
import tempfile
import time

PROBE_TIMEOUT_S = 900
RESULT_PREFIX = "runtime-probe-result: "
# The probe process's module: a training step timed as a run compiles it. Named, not
# imported: it sits above this package, with the model.
PROBE_MODULE = "inception_tf.tasks.timing"


class Probe:
    """A Python process that loads TensorFlow under `setting`, builds and traces the
    workload's training step in each of `precisions` and then times a step on request.
    With `screen` (when there are several precisions: the run asked for the fastest), a
    precision whose 3x3 convolution is over `tasks.timing.EMULATED` times slower than
    float32's is left out unbuilt; a precision the run names is always built.
    Its lines on stdout start with RESULT_PREFIX; stderr goes to a file, shown only when
    the process fails."""

    def __init__(self, setting, workload, precisions, screen):
        self.setting = setting
        request = {"workload": dataclasses.asdict(workload), "precisions": list(precisions),
                   "screen": screen, "jit_compile": setting.jit_compile}
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            [sys.executable, "-m", PROBE_MODULE, json.dumps(request)],
            env={**os.environ, **setting.environment()}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._stderr, preexec_fn=_end_with_parent if sys.platform.startswith("linux") else None,
        )
        self._buffer = b""

    def ready(self):
        """`{precision: why}` of the precisions left out, once the process is warm.
        Raises RuntimeError when it failed or loaded TensorFlow otherwise (which it
        says before it builds anything)."""
        loaded = self._message()["onednn"]
        if self.setting.onednn is not None and loaded != self.setting.onednn:
            raise RuntimeError(f"TensorFlow loaded with oneDNN {'on' if loaded else 'off'}")
        return self._message()["left_out"]

    def rate(self, policy, seconds):
        """images/s of a training step in `policy`, timed for at least `seconds`. Raises
        RuntimeError when the process failed."""
        try:
            self._process.stdin.write((json.dumps({"policy": policy, "seconds": seconds}) + "\n").encode())
            self._process.stdin.flush()
        except OSError:
            pass  # the process ended: _message says how
        return self._message()["images_per_second"]

    def _message(self):
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        while True:
            line, newline, rest = self._buffer.partition(b"\n")
            if newline:
                self._buffer = rest
                if line.startswith(RESULT_PREFIX.encode()):
                    return json.loads(line[len(RESULT_PREFIX):])
                continue
            if not select.select([self._process.stdout], [], [], max(deadline - time.monotonic(), 0))[0]:
                raise RuntimeError(f"no answer in {PROBE_TIMEOUT_S} s")
            chunk = os.read(self._process.stdout.fileno(), 1 << 16)
            if not chunk:
                raise RuntimeError(self._last_words())
            self._buffer += chunk

    def _last_words(self):
        code = self._process.wait()
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        return f"exit code {code}: {lines[-1] if lines else '(nothing)'}"

    def close(self):
        """Ends the process at once: it holds nothing to save, and TensorFlow's own exit
        takes seconds the run would wait for."""
        try:
            self._process.stdin.close()
        except OSError:
            pass
        self._process.kill()
        self._process.wait()
        self._stderr.close()


def _end_with_parent():
    """In a probe process, before it runs: Linux sends it SIGKILL when the process that
    started it ends, however that ends (SIGTERM or SIGKILL during the measurement):
    no probe outlives the run that asked for it."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1  # linux/prctl.h
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
