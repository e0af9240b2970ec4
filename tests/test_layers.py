import numpy as np
import pytest
import tensorflow as tf

import keras
from inception_tf import LocalResponseNormalization


def test_lrn_matches_caffe_definition_through_tf_nn():
    x = np.random.default_rng(0).normal(scale=30.0, size=(2, 5, 5, 16)).astype("float32")
    ours = LocalResponseNormalization(depth_radius=2, alpha=1e-4, beta=0.75)(x)
    # Caffe divides alpha by the window size (5); tf.nn does not.
    reference = tf.nn.local_response_normalization(x, depth_radius=2, bias=1.0, alpha=2e-5, beta=0.75)
    np.testing.assert_allclose(np.asarray(ours), reference.numpy(), rtol=1e-5, atol=1e-6)


def test_lrn_by_hand_at_the_channel_edges():
    x = np.arange(1, 7, dtype="float32").reshape(1, 1, 1, 6) * 40.0
    y = np.asarray(LocalResponseNormalization(depth_radius=1, bias=2.0, alpha=3e-3, beta=0.5)(x))
    sq = np.pad(x[0, 0, 0] ** 2, 1)
    expected = x[0, 0, 0] / (2.0 + 3e-3 / 3 * (sq[:-2] + sq[1:-1] + sq[2:])) ** 0.5
    np.testing.assert_allclose(y[0, 0, 0], expected, rtol=1e-6)


def test_lrn_runs_under_mixed_bfloat16():
    keras.config.set_dtype_policy("mixed_bfloat16")
    layer = LocalResponseNormalization()
    x = np.random.default_rng(1).normal(size=(1, 4, 4, 8)).astype("float32")
    y = layer(keras.ops.cast(x, "bfloat16"))
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    reference = tf.nn.local_response_normalization(x, depth_radius=2, alpha=2e-5, beta=0.75)
    np.testing.assert_allclose(np.asarray(keras.ops.cast(y, "float32")), reference.numpy(), rtol=2e-2, atol=2e-2)


def test_lrn_config_round_trip():
    layer = LocalResponseNormalization(depth_radius=3, bias=2.0, alpha=1e-3, beta=0.5, name="n")
    clone = LocalResponseNormalization.from_config(layer.get_config())
    assert (clone.depth_radius, clone.bias, clone.alpha, clone.beta) == (3, 2.0, 1e-3, 0.5)
    assert keras.saving.get_registered_object("inception_tf>LocalResponseNormalization") is LocalResponseNormalization


def test_lrn_rejects_a_bad_radius():
    with pytest.raises(ValueError, match=r"Received: depth_radius=-1"):
        LocalResponseNormalization(depth_radius=-1)
