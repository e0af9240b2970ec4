"""`train.py` whose N-th weights file meets a full disk: the stand-in for a small tmpfs
where this machine cannot mount one.

The N-th `save_weights` writes part of its file, as HDF5 does before the device
refuses more, then raises the error the system gives (errno ENOSPC).

    python tests/full_disk_train.py N TRAIN_ARGS...
"""

import errno
import os
import sys

import keras

from inception_tf import cli

fail_at = int(sys.argv.pop(1))
calls = 0
save_weights = keras.Model.save_weights


def failing_save_weights(self, filepath, *args, **kwargs):
    global calls
    calls += 1
    if calls < fail_at:
        return save_weights(self, filepath, *args, **kwargs)
    with open(filepath, "wb") as f:
        f.write(b"\x89HDF\r\n\x1a\n" + bytes(4096))
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filepath))


keras.Model.save_weights = failing_save_weights
sys.exit(cli.train_main())
