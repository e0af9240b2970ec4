"""The GPU paths, run for real through `train.py` on CPU stand-ins.

No machine here has TensorFlow on a GPU. What differs on one is the strategy (one device
with prefetching, several replicas with a split batch and synchronized BatchNorm) and
the precision (float16 with loss scaling): both run on a CPU as well. Two logical CPU
devices stand in for two GPUs (`standin_two_cpus.py`).
"""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import inception_tf.modeling.layers  # noqa: F401  (registers the custom layers for load_model)

import runs

pytestmark = pytest.mark.slow

# A short run on 512 images in float32 (the probe is tested in test_precision.py).
SHORT = [
    "--dataset", "fashion_mnist", "--image-size", "64", "--batch-size", "64", "--limit", "512", "--epochs", "1",
    "--test-crops", "1", "--precision", "float32",
]


def _on_two_cpus(*args):
    result = subprocess.run(
        [sys.executable, str(runs.ROOT / "tests" / "support" / "standin_two_cpus.py"), *args],
        capture_output=True, text=True, env=runs.env(), timeout=1500,
    )
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _finished(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for name in ("model.keras", "saved_model", "curves.png", "confusion_matrix.png", "labels.txt"):
        assert (run_dir / name).exists(), name
    assert not (run_dir / "backup").exists()
    return metrics


# bn: synchronized, one step parts the weights by a twentieth to a tenth of a tensor's largest
# value (the BatchNorm betas, near 0 after one step), unsynchronized by about 2: the figures,
# per machine, with their commands, are in results/standin/. Why synchronized does not reach
# the paper variant's rounding is not yet known (issue #37's closing note). The bound tells
# the two apart.
@pytest.mark.parametrize("variant, steps, tolerance", [("paper", 1, 1e-5), ("paper", 7, 1e-2), ("bn", 1, 0.3)])
def test_standin_mirrored_two_replicas_train_the_weights_of_one_device(variant, steps, tolerance):
    # The same global batches split over two replicas: the same gradients, summed in
    # another order. After one step the weights agree to float32 rounding; over more
    # steps rounding flips a few max-pool and ReLU decisions and the gap grows
    # (results/standin/). With BatchNorm, only if the replicas normalise by the global
    # batch's statistics as the one device does.
    result = subprocess.run(
        [sys.executable, str(runs.ROOT / "tests" / "support" / "standin_mirrored_steps.py"), str(steps), variant],
        capture_output=True, text=True, env=runs.env(), timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "replicas 2" in result.stdout
    assert ("synchronized 59 BatchNorm layers" if variant == "bn" else "synchronized 0 BatchNorm layers") in result.stdout
    gap = float(result.stdout.split("largest relative difference ")[1])
    assert gap < tolerance


def test_standin_mirrored_run_end_to_end(tmp_path):
    args = [*SHORT, "--variant", "paper", "--learning-rate", "0.01"]
    two = _on_two_cpus(*args, "--strategy", "mirrored", "--run-dir", str(tmp_path / "two"))
    assert "mirrored (asked for), 2 replica(s)" in two.stdout
    assert "batch: 64 global, 32 on each of 2 replicas" in two.stdout
    metrics = _finished(tmp_path / "two")
    assert metrics["replicas"] == 2 and metrics["strategy"] == "mirrored" and np.isfinite(metrics["test_loss"])
    assert np.isfinite(runs.history(tmp_path / "two")["loss"]).all()


def test_standin_mirrored_synchronizes_batchnorm_over_the_global_batch(tmp_path):
    # The default variant and heads (BatchNorm, aux heads, dropout) on two replicas.
    result = _on_two_cpus(*SHORT, "--variant", "bn", "--strategy", "mirrored", "--run-dir", str(tmp_path / "run"))
    assert "BatchNorm: 59 layers compute their statistics over the global batch" in result.stdout
    metrics = _finished(tmp_path / "run")
    assert metrics["replicas"] == 2 and np.isfinite(metrics["test_loss"])
    assert np.isfinite(runs.history(tmp_path / "run")["loss"]).all()


def test_standin_mixed_float16_on_one_device_end_to_end(tmp_path):
    # What a one-GPU machine runs: float16 with loss scaling, OneDeviceStrategy.
    run_dir = tmp_path / "run"
    args = [*SHORT[:-1], "mixed_float16", "--variant", "paper", "--learning-rate", "0.01", "--strategy", "one_device"]
    result = runs.train(*args, "--run-dir", str(run_dir))
    assert "precision: mixed_float16 (asked for)" in result.stdout
    assert "strategy: one_device (asked for), 1 replica(s)" in result.stdout
    assert "loss scaling: dynamic (LossScaleOptimizer), from 32768" in result.stdout
    history = runs.history(run_dir)
    assert np.isfinite(history["loss"]).all() and np.isfinite(history["val_main_loss"]).all()
    metrics = _finished(run_dir)
    assert metrics["precision"] == "mixed_float16" and np.isfinite(metrics["test_loss"])

    keras.config.set_dtype_policy("mixed_float16")
    model = keras.models.load_model(run_dir / "model.keras")
    keras.config.set_dtype_policy("float32")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.get_layer("inception_3a_1x1_conv").compute_dtype == "float16"
    probabilities = model(np.zeros((1, 64, 64, 3), "float32"))
    assert all(p.dtype == "float32" for p in probabilities)  # softmax in float32

    # The export serves in float32 whatever the training precision.
    loaded = tf.saved_model.load(str(run_dir / "saved_model"))
    serve = loaded.signatures["serving_default"]
    assert serve.variables and {v.dtype for v in serve.variables} == {tf.float32}
    served = serve(images=tf.zeros((1, 64, 64, 3), tf.uint8))
    assert served["probabilities"].dtype == tf.float32
    assert np.isfinite(served["probabilities"].numpy()).all()
