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
def held():
    """Within the block, what is written to file descriptor 2 (native code's logs, and
    Python's stderr once flushed) is kept aside, and shown only if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            sys.stderr.flush()
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
