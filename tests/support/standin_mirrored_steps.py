"""`python tests/support/standin_mirrored_steps.py STEPS [VARIANT [unsynchronized]]`: trains GoogLeNet
(VARIANT, default paper; three heads, no dropout) for STEPS steps of batch 64 on one device and with
MirroredStrategy over two logical CPU devices, on the same batches, and prints the largest
difference of a trainable weight tensor relative to that tensor's largest value.

With the bn variant the two replicas' BatchNorm layers are synchronized as `train.py`
synchronizes them (`distribute.synchronize_batchnorm`), so that both normalise by the
statistics of the global batch, as the one device does; unsynchronized, each would use its
own 32 images and the weights would part at once (`unsynchronized`, the control, shows by how
much: results/standin/). The moving statistics are left out of
the comparison: the one device's fused kernel keeps the unbiased variance (see
`layers.FusedBatchNormalization`)."""

import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from inception_tf import GoogLeNet, compile_for_training, keras_fixes, labels_for_heads  # noqa: E402
from inception_tf.tasks import distribute  # noqa: E402

steps = int(sys.argv[1])
variant = sys.argv[2] if len(sys.argv) > 2 else "paper"
synchronize = sys.argv[3:4] != ["unsynchronized"]
rng = np.random.default_rng(0)
images = rng.uniform(-1, 1, (64 * steps, 64, 64, 3)).astype("float32")
labels = np.eye(10, dtype="float32")[rng.integers(0, 10, 64 * steps)]


def build():
    keras.utils.set_random_seed(0)
    model = GoogLeNet(10, (64, 64, 3), variant=variant, dropout_rate=0.0, aux_dropout_rate=0.0)
    return compile_for_training(model, learning_rate=0.01, labels="categorical", label_smoothing=0.1, weight_decay=5e-3)


one = build()
data = tf.data.Dataset.from_tensor_slices((images, labels_for_heads(one, labels))).batch(64)
one.fit(data, epochs=1, verbose=0)
strategy = distribute.make_strategy("mirrored")
with strategy.scope():
    two = build()
print(f"synchronized {distribute.synchronize_batchnorm(two) if synchronize else 0} BatchNorm layers")
with keras_fixes.distributed_fit(two):
    two.fit(data, epochs=1, verbose=0)
print(f"replicas {strategy.num_replicas_in_sync}")
gaps = [np.abs(a.numpy() - b.numpy()).max() / np.abs(a.numpy()).max() for a, b in zip(one.trainable_weights, two.trainable_weights)]
print(f"largest relative difference {max(gaps):.3g}")
