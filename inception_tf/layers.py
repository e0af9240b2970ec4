"""Layers GoogLeNet needs that Keras does not ship."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="inception_tf")
class LocalResponseNormalization(keras.layers.Layer):
    """Local response normalization across channels, as Caffe and the paper define it.

    `y = x / (bias + alpha / size * sum(x_j ** 2)) ** beta`, the sum running over the
    `size = 2 * depth_radius + 1` channels centred on each channel (zero-padded at the
    edges). Caffe divides `alpha` by the window size; `tf.nn.local_response_normalization`
    does not, so this layer equals it with `alpha / size` in place of `alpha`.

    It is written with `keras.ops` and computes in float32 whatever the dtype policy:
    TensorFlow has no bfloat16 LRN kernel on CPU, and `bias + alpha / size * sum` sits
    within 1% of `bias`, below bfloat16's resolution.

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

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        r = self.depth_radius
        squared = ops.pad(ops.square(x), [[0, 0]] * (len(x.shape) - 1) + [[r, r]])
        channels = x.shape[-1] if x.shape[-1] is not None else ops.shape(x)[-1]
        window_sum = squared[..., 0:channels]
        for offset in range(1, 2 * r + 1):
            window_sum = window_sum + squared[..., offset : offset + channels]
        size = 2 * r + 1
        scale = ops.power(self.bias + (self.alpha / size) * window_sum, -self.beta)
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
