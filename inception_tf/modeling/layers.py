"""Layers GoogLeNet needs that Keras does not ship."""

import functools

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="inception_tf")
class LocalResponseNormalization(keras.layers.Layer):
    """Local response normalization across channels, as Caffe and the paper define it.

    `y = x / (bias + alpha / size * sum(x_j ** 2)) ** beta`, the sum running over the
    `size = 2 * depth_radius + 1` channels centred on each channel (zero-padded at the
    edges). Caffe divides `alpha` by the window size; `tf.nn.local_response_normalization`
    does not, so this layer equals it with `alpha / size` in place of `alpha`.

    It computes in float32 whatever the dtype policy: TensorFlow has no bfloat16 LRN
    kernel on CPU, and `bias + alpha / size * sum` sits within 1% of `bias`, below
    bfloat16's resolution.

    On TensorFlow it runs three ways. Inference uses the fused `tf.nn` kernel, so an
    exported SavedModel needs nothing more. Training on a machine without a GPU uses the
    same formula and its hand-written gradient compiled by XLA into a few loops:
    TensorFlow's CPU `LRNGrad` kernel is a scalar loop with a `pow` per element, and the
    compiled pair is 2.2x to 2.6x faster forward and backward (`benchmarks/lrn.py`).
    With a GPU, training keeps cuDNN's kernel.
    Other backends use the `keras.ops` composition in `composed`.

    Args:
        depth_radius: half-width of the channel window (Caffe `local_size = 2r + 1`).
        bias: the additive constant `k`.
        alpha: the scale, Caffe's convention (divided by the window size).
        beta: the exponent.
    """

    def __init__(self, depth_radius=2, bias=1.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(depth_radius, int) or depth_radius < 0:
            raise ValueError(
                "`depth_radius` must be a non-negative integer. "
                f"Received: depth_radius={depth_radius!r}"
            )
        self.depth_radius = depth_radius
        self.bias = float(bias)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def call(self, inputs, training=None):
        if keras.backend.backend() != "tensorflow":
            return self.composed(inputs)
        import tensorflow as tf

        alpha = self.alpha / (2 * self.depth_radius + 1)
        if training and not _gpu_visible():
            compiled = _compiled_lrn(self.depth_radius, self.bias, alpha, self.beta)
            return tf.cast(compiled(inputs), self.compute_dtype)
        y = tf.nn.local_response_normalization(
            tf.cast(inputs, tf.float32),
            depth_radius=self.depth_radius,
            bias=self.bias,
            alpha=alpha,
            beta=self.beta,
        )
        return tf.cast(y, self.compute_dtype)

    def composed(self, inputs):
        """The same normalisation written with `keras.ops` (any backend)."""
        x = ops.cast(inputs, "float32")
        size = 2 * self.depth_radius + 1
        window = _channel_window_sum(ops.square(x), self.depth_radius)
        scale = ops.power(self.bias + (self.alpha / size) * window, -self.beta)
        return ops.cast(x * scale, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            depth_radius=self.depth_radius,
            bias=self.bias,
            alpha=self.alpha,
            beta=self.beta,
        )
        return config


def _gpu_visible():
    """Whether training runs cuDNN's LRN kernel (a GPU) or the compiled pair (none)."""
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


def _channel_window_sum(x, radius):
    """Sum over the `2 * radius + 1` channels centred on each channel, zero-padded."""
    padded = ops.pad(x, [[0, 0]] * (len(x.shape) - 1) + [[radius, radius]])
    channels = x.shape[-1] if x.shape[-1] is not None else ops.shape(x)[-1]
    total = padded[..., 0:channels]
    for offset in range(1, 2 * radius + 1):
        total = total + padded[..., offset : offset + channels]
    return total


@functools.lru_cache(maxsize=None)
def _compiled_lrn(depth_radius, bias, alpha, beta):
    """LRN (tf.nn's convention: `alpha` not divided by the window) with its gradient,
    both compiled by XLA. One function per set of constants, shared by the layers."""
    import tensorflow as tf

    @tf.custom_gradient
    def lrn(inputs):
        x = tf.cast(inputs, tf.float32)
        norm = bias + alpha * _channel_window_sum(tf.square(x), depth_radius)
        scale = tf.pow(norm, -beta)
        y = x * scale

        def grad(upstream):
            # d/dx_k sum_j g_j x_j norm_j^-beta
            #   = g_k scale_k - 2 alpha beta x_k sum_{j near k} g_j y_j / norm_j;
            # the window is symmetric, so the same window sum serves.
            g = tf.cast(upstream, tf.float32)
            window = _channel_window_sum(g * y / norm, depth_radius)
            return tf.cast(g * scale - (2.0 * alpha * beta) * x * window, inputs.dtype)

        return tf.cast(y, inputs.dtype), grad

    return tf.function(lrn, jit_compile=True, reduce_retracing=True)


@keras.saving.register_keras_serializable(package="inception_tf")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`BatchNormalization` through TensorFlow's fused kernel, as tf.keras 2 did with
    `fused=True`.

    Keras 3 composes batch normalisation from moments, casts and arithmetic, which under
    mixed_bfloat16 on a CPU costs three times the fused kernel's time (forward and
    backward, measured on a 32x56x56x192 batch). The results are the same but for the
    moving variance, which the kernel updates with the unbiased batch variance
    (n / (n - 1) times Keras's), as tf.keras and PyTorch do.

    Falls back to Keras's own computation for other backends, an axis other than the
    last, masks, `synchronized=True` and batch renormalisation.
    """

    def _fused(self, inputs, mask):
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and not self.synchronized
            and not getattr(self, "renorm", False)
            and self.axis in (-1, len(inputs.shape) - 1)
            and len(inputs.shape) == 4
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fused(inputs, mask) or not isinstance(training, (bool, type(None))):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        scale = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels], tf.float32)
        offset = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels], tf.float32)
        x = tf.cast(inputs, self.compute_dtype)
        mean = tf.cast(self.moving_mean, tf.float32)
        variance = tf.cast(self.moving_variance, tf.float32)
        if training and self.trainable:
            y, new_mean, new_variance = tf.compat.v1.nn.fused_batch_norm(
                x, scale, offset, mean=mean, variance=variance, epsilon=self.epsilon,
                is_training=True, exponential_avg_factor=1.0 - self.momentum,
            )
            self.moving_mean.assign(tf.cast(new_mean, self.moving_mean.dtype))
            self.moving_variance.assign(tf.cast(new_variance, self.moving_variance.dtype))
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, scale, offset, mean=mean, variance=variance, epsilon=self.epsilon, is_training=False
            )
        return y
