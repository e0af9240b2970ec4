import keras
import numpy as np
import pytest
import tensorflow as tf

from inception_tf.modeling.layers import FusedBatchNormalization, LocalResponseNormalization


def test_lrn_matches_caffe_definition_through_tf_nn():
    x = np.random.default_rng(0).normal(scale=30.0, size=(2, 5, 5, 16)).astype("float32")
    ours = LocalResponseNormalization(depth_radius=2, alpha=1e-4, beta=0.75)(x)
    # Caffe divides alpha by the window size (5); tf.nn does not.
    reference = tf.nn.local_response_normalization(x, depth_radius=2, bias=1.0, alpha=2e-5, beta=0.75)
    np.testing.assert_allclose(np.asarray(ours), reference.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", ["fused", "composed"])
def test_lrn_by_hand_at_the_channel_edges(path):
    x = np.arange(1, 7, dtype="float32").reshape(1, 1, 1, 6) * 40.0
    layer = LocalResponseNormalization(depth_radius=1, bias=2.0, alpha=3e-3, beta=0.5)
    y = np.asarray(layer(x) if path == "fused" else layer.composed(x))
    sq = np.pad(x[0, 0, 0] ** 2, 1)
    expected = x[0, 0, 0] / (2.0 + 3e-3 / 3 * (sq[:-2] + sq[1:-1] + sq[2:])) ** 0.5
    np.testing.assert_allclose(y[0, 0, 0], expected, rtol=1e-6)


def test_lrn_fused_and_composed_paths_agree_with_their_gradients():
    layer = LocalResponseNormalization()
    x = tf.constant(np.random.default_rng(2).normal(scale=30.0, size=(2, 4, 4, 12)).astype("float32"))
    grads = []
    for call in (layer, layer.composed):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = call(x)
            loss = tf.reduce_sum(y * tf.range(12, dtype=tf.float32))
        grads.append((y.numpy(), tape.gradient(loss, x).numpy()))
    np.testing.assert_allclose(grads[0][0], grads[1][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grads[0][1], grads[1][1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_lrn_training_path_matches_the_fused_kernel_with_its_gradient(dtype):
    # training=True runs the XLA-compiled formula and hand-written gradient (no GPU here).
    policy = "mixed_bfloat16" if dtype == "bfloat16" else "float32"
    layer = LocalResponseNormalization(depth_radius=2, bias=1.5, alpha=3e-3, beta=0.75, dtype=policy)
    x = tf.cast(np.random.default_rng(3).normal(scale=30.0, size=(2, 3, 3, 10)).astype("float32"), dtype)
    weights = tf.cast(tf.range(1, 11, dtype=tf.float32) - 5.0, dtype)
    results = []
    for training in (False, True):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(tf.cast(y * weights, tf.float32))
        results.append([tf.cast(t, tf.float32).numpy() for t in (y, tape.gradient(loss, x))])
        assert y.dtype == x.dtype
    tolerance = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(results[1][0], results[0][0], **tolerance)
    np.testing.assert_allclose(results[1][1], results[0][1], **tolerance)


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


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_fused_batchnorm_matches_keras_batchnorm(policy):
    keras.config.set_dtype_policy(policy)
    x = np.random.default_rng(3).normal(2.0, 3.0, size=(8, 5, 5, 6)).astype("float32")
    fused = FusedBatchNormalization(momentum=0.9, epsilon=1e-3)
    plain = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3)
    for layer in (fused, plain):
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 2.0, 6))
        layer.beta.assign(np.linspace(-1.0, 1.0, 6))
    tolerance = 1e-4 if policy == "float32" else 5e-2
    # Training: normalised by the batch statistics, moving statistics updated.
    a, b = (np.asarray(keras.ops.cast(layer(x, training=True), "float32")) for layer in (fused, plain))
    np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(fused.moving_mean.numpy(), plain.moving_mean.numpy(), rtol=1e-5, atol=1e-5)
    n = x.size // 6  # the kernel keeps the unbiased variance
    np.testing.assert_allclose(
        fused.moving_variance.numpy() - 0.9, (plain.moving_variance.numpy() - 0.9) * n / (n - 1), rtol=1e-3
    )
    # Inference: normalised by the moving statistics.
    fused.moving_variance.assign(plain.moving_variance.numpy())
    a, b = (np.asarray(keras.ops.cast(layer(x, training=False), "float32")) for layer in (fused, plain))
    np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance)


def test_fused_batchnorm_round_trips_and_falls_back_when_synchronized():
    layer = FusedBatchNormalization(momentum=0.9, name="bn")
    clone = FusedBatchNormalization.from_config(layer.get_config())
    assert clone.momentum == 0.9 and clone.name == "bn"
    layer.synchronized = True
    x = np.ones((2, 3, 3, 4), "float32")
    layer.build(x.shape)
    assert not layer._fused(keras.ops.convert_to_tensor(x), None)
    np.testing.assert_allclose(np.asarray(layer(x, training=True)), 0.0, atol=1e-6)


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_standin_lrn_gpu_branch_trains_through_the_kernel(policy, monkeypatch):
    # With a GPU visible, training runs TensorFlow's LRN kernel (cuDNN's there) and its
    # registered gradient instead of the XLA-compiled pair: the same kernel runs on a CPU.
    from inception_tf.modeling import layers

    layer = LocalResponseNormalization(depth_radius=2, bias=1.5, alpha=3e-3, beta=0.75, dtype=policy)
    x = tf.constant(np.random.default_rng(4).normal(scale=30.0, size=(2, 3, 3, 10)).astype("float32"))
    weights = tf.range(1, 11, dtype=tf.float32) - 5.0
    results = {}
    for gpu in (False, True):
        monkeypatch.setattr(layers, "_gpu_visible", lambda gpu=gpu: gpu)
        compiled = []
        monkeypatch.setattr(layers, "_compiled_lrn", lambda *a, real=layers._compiled_lrn: compiled.append(a) or real(*a))
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * weights)
        assert bool(compiled) == (not gpu)
        assert y.dtype == layer.compute_dtype
        results[gpu] = [tf.cast(t, tf.float32).numpy() for t in (y, tape.gradient(loss, x))]
    tolerance = dict(rtol=1e-5, atol=1e-6) if policy == "float32" else dict(rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(results[True][0], results[False][0], **tolerance)
    np.testing.assert_allclose(results[True][1], results[False][1], **tolerance)
