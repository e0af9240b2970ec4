import keras
import numpy as np
import pytest

from inception_tf import GoogLeNet, compile_for_training, labels_for_heads


def _batch(n=6, size=64, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (n, size, size, 3)).astype("float32"), rng.integers(0, classes, n)


def _cross_entropy(probabilities, labels):
    return float(np.mean(-np.log(probabilities[np.arange(len(labels)), labels])))


def test_total_loss_is_main_plus_0_3_of_each_aux_head():
    model = compile_for_training(GoogLeNet(num_classes=4, input_shape=(64, 64, 3)))
    x, y = _batch()
    # Random weights give three heads with clearly different losses.
    main, aux1, aux2 = (np.asarray(o) for o in model(x, training=False))
    by_hand = [_cross_entropy(p, y) for p in (main, aux1, aux2)]
    assert len({round(v, 4) for v in by_hand}) == 3
    results = model.evaluate(x, labels_for_heads(model, y), verbose=0, return_dict=True)
    assert results["loss"] == pytest.approx(by_hand[0] + 0.3 * by_hand[1] + 0.3 * by_hand[2], rel=1e-5)
    assert results["main_loss"] == pytest.approx(by_hand[0], rel=1e-5)
    assert results["aux1_loss"] == pytest.approx(by_hand[1], rel=1e-5)
    accuracy = np.mean(np.argmax(main, -1) == y)
    assert results["main_accuracy"] == pytest.approx(accuracy)
    assert results["main_top4_accuracy"] == pytest.approx(1.0)  # k = min(5, classes)


def test_compiled_optimizer_is_sgd_with_momentum():
    model = compile_for_training(GoogLeNet(num_classes=10, input_shape=(64, 64, 3)), learning_rate=0.05)
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert model.optimizer.momentum == 0.9
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)


def test_categorical_labels_with_smoothing_and_logits():
    model = GoogLeNet(num_classes=4, input_shape=(64, 64, 3), classifier_activation=None, aux_heads=False)
    compile_for_training(model, labels="categorical", label_smoothing=0.1)
    x, y = _batch()
    logits = np.asarray(model(x, training=False))
    smooth = np.full((len(y), 4), 0.1 / 4) + 0.9 * np.eye(4)[y]
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = float(np.mean(-(smooth * log_p).sum(-1)))
    results = model.evaluate(x, np.eye(4)[y], verbose=0, return_dict=True)
    assert results["loss"] == pytest.approx(expected, rel=1e-5)
    assert set(results) >= {"accuracy", "top4_accuracy"}


@pytest.mark.parametrize("variant, labels", [("paper", "sparse"), ("bn", "categorical")])
def test_a_few_steps_trace_once_and_lower_the_loss_on_a_fixed_batch(variant, labels):
    """Compiled, the model has every variable training creates (the optimizer's, the
    metrics', each head's loss tracker): a `tf.function` whose first trace creates
    variables is traced twice, and the training step is a run's costliest trace."""
    model = compile_for_training(
        GoogLeNet(num_classes=4, input_shape=(64, 64, 3), variant=variant, dropout_rate=0.0, aux_dropout_rate=0.0),
        learning_rate=0.01, labels=labels,
    )
    variables = lambda: {v.path for v in model.variables + model.optimizer.variables + model.metrics_variables}
    compiled, traced, step = variables(), [], model.train_step
    model.train_step = lambda data: traced.append(data) or step(data)  # runs once per trace
    x, y = _batch(8)
    y = y if labels == "sparse" else np.eye(4)[y]
    history = model.fit(x, labels_for_heads(model, y), epochs=8, batch_size=8, verbose=0)
    assert variables() == compiled and len(traced) == 1
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(labels="onehot"), r"Received: labels='onehot'"),
        (dict(learning_rate=0), r"Received: learning_rate=0"),
        (dict(momentum=1.0), r"Received: momentum=1.0"),
        (dict(label_smoothing=0.1), r"labels='categorical'.*Received: labels='sparse', label_smoothing=0.1"),
        (dict(aux_loss_weight=-1), r"Received: aux_loss_weight=-1"),
    ],
)
def test_bad_compile_arguments(kwargs, message):
    model = GoogLeNet(num_classes=4, input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match=message):
        compile_for_training(model, **kwargs)


def test_an_optimizer_setting_it_does_not_know_is_named():
    model = GoogLeNet(num_classes=4, input_shape=(49, 49, 3), aux_heads=False)
    with pytest.raises(TypeError, match=r"settings are weight_decay, ema_momentum, beta_rate, lookahead_steps. Received: lookahead=5"):
        compile_for_training(model, lookahead=5)


def test_weight_decay_shrinks_kernels_but_not_biases_or_batchnorm():
    model = GoogLeNet(num_classes=4, input_shape=(64, 64, 3), variant="bn", aux_heads=False)
    compile_for_training(model, learning_rate=0.1, momentum=0.0, weight_decay=0.5)
    before = [v.numpy().copy() for v in model.trainable_variables]
    # Zero gradients: whatever changes is the decay alone.
    model.optimizer.apply_gradients([(np.zeros(v.shape, "float32"), v) for v in model.trainable_variables])
    names = set()
    for variable, old in zip(model.trainable_variables, before):
        names.add(variable.name)
        factor = 1.0 if variable.name in ("bias", "gamma", "beta") else 1 - 0.1 * 0.5
        np.testing.assert_allclose(variable.numpy(), old * factor, rtol=1e-6, err_msg=variable.path)
    assert {"kernel", "bias", "gamma", "beta"} <= names


def test_negative_weight_decay_is_refused():
    with pytest.raises(ValueError, match="Received: weight_decay=-0.1"):
        compile_for_training(GoogLeNet(num_classes=4, input_shape=(64, 64, 3), aux_heads=False), weight_decay=-0.1)


class _Resolver:
    def __init__(self, cluster, task_type, task_id):
        self.task_type, self.task_id, self._cluster = task_type, task_id, cluster

    def cluster_spec(self):
        import tensorflow as tf

        return tf.train.ClusterSpec(self._cluster)


class _Strategy:
    def __init__(self, resolver):
        self.cluster_resolver = resolver


@pytest.mark.parametrize(
    "cluster, task, expected",
    [
        ({"worker": ["a:1", "b:1"]}, ("worker", 0), (0, 2, True)),
        ({"worker": ["a:1", "b:1"]}, ("worker", 1), (1, 2, False)),
        ({"chief": ["c:1"], "worker": ["a:1", "b:1"]}, ("chief", 0), (0, 3, True)),
        ({"chief": ["c:1"], "worker": ["a:1", "b:1"]}, ("worker", 0), (1, 3, False)),
    ],
)
def test_worker_roles_from_the_cluster(cluster, task, expected):
    from inception_tf.tasks.distribute import worker_role

    role = worker_role(_Strategy(_Resolver(cluster, *task)))
    assert (role.index, role.count, role.is_chief) == expected
    assert role.name == f"{task[0]}:{task[1]}"


def test_one_process_is_its_own_chief():
    import tensorflow as tf

    from inception_tf.tasks.distribute import worker_role

    role = worker_role(tf.distribute.get_strategy())
    assert role.is_chief and role.count == 1 and role.name == "single process"


def test_multi_worker_needs_tf_config(monkeypatch):
    from inception_tf.tasks.distribute import make_strategy

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs TF_CONFIG.*Received: TF_CONFIG=None"):
        make_strategy("multi_worker")


def test_the_weight_average_is_held_out_of_the_model_until_the_end():
    """With `ema_momentum`, the model trains on its own weights through any number of
    `fit` calls inside `weight_average_held` (Keras's `fit` would copy the average in at
    its end), then takes the average: after two steps, m * w1 + (1 - m) * w2."""
    from inception_tf import keras_fixes

    keras.utils.set_random_seed(0)
    model = compile_for_training(
        GoogLeNet(num_classes=4, input_shape=(49, 49, 3), variant="bn", aux_heads=False), ema_momentum=0.75
    )
    kernel = model.get_layer("main_classifier").kernel
    seen = []
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(kernel.numpy().copy()))
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 1, (4, 49, 49, 3)).astype("float32"), rng.integers(0, 4, 4)
    with keras_fixes.weight_average_held(model):
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[record])
        np.testing.assert_array_equal(kernel.numpy(), seen[0])  # still the trained weights
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[record])
        np.testing.assert_array_equal(kernel.numpy(), seen[1])
    assert not np.allclose(seen[0], seen[1])
    model.optimizer.finalize_variable_values(model.trainable_variables)
    np.testing.assert_allclose(kernel.numpy(), 0.75 * seen[0] + 0.25 * seen[1], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=r"Received: ema_momentum=1.0"):
        compile_for_training(GoogLeNet(num_classes=4, input_shape=(49, 49, 3), aux_heads=False), ema_momentum=1.0)
