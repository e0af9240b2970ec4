"""What TensorFlow's C++ code writes to the terminal, held back where it tells a user nothing.

TensorFlow writes some lines to file descriptor 2 whatever `TF_CPP_MIN_LOG_LEVEL` says (its
start-up lines: oneDNN, the CUDA stubs, absl), and TensorFlow 2.21 logs at ERROR a fallback
that is no error: on a CPU without AVX-512, the first bfloat16 op under oneDNN prints
"oneDNN supports DT_BFLOAT16 only on platforms with AVX-512. Falling back to the default
Eigen-based implementation". The package runs such code on purpose (the precision probe
times bfloat16 to learn that it is slow here) and says what it found in its own words.
Importing this module loads nothing.
"""

import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def _captured(on_end):
    """Within the block, file descriptor 2 (and Python's stderr once flushed) goes to a
    temporary file; once it is the terminal's again, `on_end(text, failed)` gets what was
    written and whether the block raised."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            on_end(captured.read().decode(errors="replace"), failed)


def _write(text):
    sys.stderr.write(text)
    sys.stderr.flush()


def held():
    """Within the block, what is written to file descriptor 2 (native code's logs, and
    Python's stderr once flushed) is kept aside, and shown only if the block raises."""
    return _captured(lambda text, failed: _write(text) if failed else None)


def filtered(noise):
    """Within the block, what is written to file descriptor 2 is kept aside; when it ends,
    the lines that hold none of the strings in `noise` are written, the others dropped
    (a library's own warning that the caller says better, naming the file)."""
    return _captured(lambda text, failed: _write(
        "".join(line for line in text.splitlines(keepends=True) if not any(part in line for part in noise))
    ))
