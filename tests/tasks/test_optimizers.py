"""The optimizer's levers: a higher rate for BatchNorm's offsets, and Lookahead."""

import keras
import numpy as np
import pytest

from inception_tf.tasks import optimizers


def _tiny(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(3, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    outputs = keras.layers.Dense(2, name="fc")(keras.layers.Flatten()(x))
    return keras.Model(inputs, outputs)


def _trained(steps, **options):
    model = _tiny()
    model.compile(optimizer=optimizers.SGD(learning_rate=0.1, **options), loss="mse")
    data = np.random.default_rng(1).normal(size=(8, 6, 6, 2)).astype("float32")
    target = np.random.default_rng(2).normal(size=(8, 2)).astype("float32")
    for _ in range(steps):
        model.train_on_batch(data, target)
    return {v.path: v.numpy() for v in model.trainable_variables}, model


def test_beta_rate_multiplies_the_step_of_batchnorm_offsets_alone():
    start, _ = _trained(0)
    plain, _ = _trained(1, momentum=0.9)
    faster, _ = _trained(1, momentum=0.9, beta_rate=8.0)
    for path in start:
        step, fast_step = plain[path] - start[path], faster[path] - start[path]
        if path.endswith("beta"):
            assert np.abs(step).max() > 0
            np.testing.assert_allclose(fast_step, 8 * step, rtol=1e-4)
        else:
            np.testing.assert_array_equal(fast_step, step)


def test_lookahead_moves_half_way_back_every_k_steps():
    start, _ = _trained(0)
    one, _ = _trained(1)
    plain_two, _ = _trained(2)
    one_ahead, _ = _trained(1, lookahead_steps=2)
    two_ahead, _ = _trained(2, lookahead_steps=2)
    for path in start:
        np.testing.assert_array_equal(one_ahead[path], one[path])  # between synchronisations: SGD
        np.testing.assert_allclose(two_ahead[path], start[path] + 0.5 * (plain_two[path] - start[path]), rtol=1e-5, atol=1e-7)
    assert not np.allclose(two_ahead["fc/kernel"], plain_two["fc/kernel"])


def test_the_slow_weights_are_saved_and_loaded_with_the_model(tmp_path):
    _, model = _trained(3, lookahead_steps=2, beta_rate=2.0)
    assert len(model.optimizer.slow_weights) == len(model.trainable_variables)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, optimizers.SGD)
    assert (loaded.optimizer.beta_rate, loaded.optimizer.lookahead_steps) == (2.0, 2)
    for saved, back in zip(model.optimizer.slow_weights, loaded.optimizer.slow_weights):
        np.testing.assert_array_equal(back.numpy(), saved.numpy())


@pytest.mark.parametrize(
    "options, message",
    [({"beta_rate": 0}, r"Received: beta_rate=0"), ({"lookahead_steps": 0}, r"Received: lookahead_steps=0")],
)
def test_bad_levers_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        optimizers.SGD(**options)
