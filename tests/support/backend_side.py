"""The model builder's checks on another Keras backend, in a process of its own:
`KERAS_BACKEND=jax python tests/support/backend_side.py CASES.json OUT.npz` (tests/test_other_backends.py).

CASES.json lists what the TensorFlow side built and saved; this side builds the same here
(from the saved weights: `weights=` a .keras file or a caffemodel, and `load_model`), runs
each on the inputs, trains one model three steps, saves it, and writes every output to
OUT.npz for the TensorFlow side to compare.
"""

import json
import sys

import numpy as np


def build(case, weights):
    from inception_tf import GoogLeNet

    return GoogLeNet(weights=weights, **case["kwargs"])


def outputs(model, x):
    import keras

    predicted = model(x, training=False)
    predicted = predicted if isinstance(predicted, (list, tuple)) else [predicted]
    return [np.asarray(keras.ops.convert_to_numpy(p), np.float32) for p in predicted]


def fit_three_steps(folder):
    """The main head's loss on a batch before and after three training steps on it (the
    paper variant compiled by the package, dropout off in both readings), and the model
    saved for TensorFlow to load."""
    import keras

    from inception_tf import GoogLeNet, compile_for_training, labels_for_heads

    keras.utils.set_random_seed(0)
    model = compile_for_training(GoogLeNet(num_classes=4, input_shape=(64, 64, 3), variant="paper"), learning_rate=0.01)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (8, 64, 64, 3)).astype(np.float32)
    y = np.arange(8) % 4
    labels = labels_for_heads(model, y)

    def main_loss():
        return model.evaluate(x, labels, verbose=0, return_dict=True)["main_loss"]

    before = main_loss()
    for _ in range(3):
        model.train_on_batch(x, labels)
    losses = np.array([before, main_loss()], np.float32)
    model.save(f"{folder}/trained_here.keras")
    return losses, outputs(model, x)


def main(cases_path, out_path):
    import keras

    import inception_tf  # noqa: F401  (registers the layers, as a user's import does)

    with open(cases_path) as f:
        spec = json.load(f)
    x = np.load(spec["inputs"])
    results = {"backend": np.array(keras.backend.backend())}
    for name, case in spec["cases"].items():
        size = case["kwargs"].get("input_shape", (64, 64, 3))
        inputs = x["module"] if name == "module" else x[f"side{size[0]}"]
        loaded = keras.models.load_model(case["file"])
        for index, value in enumerate(outputs(loaded, inputs)):
            results[f"{name}/loaded/{index}"] = value
        if name == "module":
            from inception_tf import inception_module

            start = keras.Input(inputs.shape[1:])
            model = keras.Model(start, inception_module(start, **case["module"]))
            model.set_weights(loaded.get_weights())
        else:
            model = build(case, case.get("weights"))
        for index, value in enumerate(outputs(model, inputs)):
            results[f"{name}/{index}"] = value
    losses, trained = fit_three_steps(spec["folder"])
    results["fit/losses"] = losses
    for index, value in enumerate(trained):
        results[f"fit/{index}"] = value
    results["fit/inputs"] = np.random.default_rng(0).uniform(0, 1, (8, 64, 64, 3)).astype(np.float32)
    np.savez(out_path, **results)


if __name__ == "__main__":
    main(*sys.argv[1:3])
