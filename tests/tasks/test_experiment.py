"""The main job, end to end: `python train.py ...` on real Fashion-MNIST (a small part)."""

import json
import runpy

import keras
import numpy as np
import pytest

from inception_tf import GoogLeNet
from inception_tf.startup import precision
from inception_tf.tasks import budget
from inception_tf.tasks.task import transfer_weights

from runs import (MINIMAL, ROOT, SMALL, command_here, env_with_store, history_epochs, store_precision_answer,
                  store_runtime_answer, train)

# The training writer's files: the graph's, written when the model is set, and one per `fit`.
FIT_WRITER_FILES = 2
# SMALL's --limit of each split, and its training split less the 10% validation split.
TEST_EXAMPLES, TRAIN_EXAMPLES = 1024, 922
RUN_FILES = ["config.json", "history.csv", "metrics.json", "curves.png", "confusion_matrix.png", "mistakes.png", "model.keras", "saved_model", "labels.txt"]


def compute_epochs():
    """The run's compute: 2 epochs of its training images at 49x49, in compute-epochs."""
    macs = budget.training_macs(GoogLeNet(num_classes=10, input_shape=(49, 49, 3), variant="bn", weights=None))
    return 2 * TRAIN_EXAMPLES * macs / (budget.REFERENCE_IMAGES * budget.REFERENCE_MACS)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """The run, trained under the runtime `train.py` chooses (not the tests' "default"): a
    stored answer, faked to say oneDNN on and float32, is what it must load TensorFlow with."""
    run_dir = tmp_path_factory.mktemp("run") / "run"
    cache = tmp_path_factory.mktemp("cache")
    workload = precision.Workload(variant="bn", image_size=49, batch_size=32)
    store_runtime_answer(cache, workload, "auto", "oneDNN on")
    store_precision_answer(cache, workload)
    environ = env_with_store(cache)
    # 2 test views (the image and its mirror): the multi-view path at a fifth of 10's cost,
    # and not the evaluate command's default of 1, so that reading the run's value shows.
    result = train(*SMALL, "--epochs", "2", "--learning-rate", "0.02", "--test-crops", "2", "--run-dir", str(run_dir),
                   environ=environ)
    return run_dir, result


def test_a_stored_off_answer_is_what_tensorflow_runs_under(tmp_path):
    """The fixture's answer says oneDNN on, which TensorFlow turns on by itself on CPUs with
    AVX-512 VNNI or bf16, or AMX; an answer saying off, end to end, fails there when the
    answer is ignored, as the fixture's fails where TensorFlow leaves oneDNN off (AVX2)."""
    cache = tmp_path / "cache"
    store_runtime_answer(cache, precision.Workload(variant="bn", image_size=49, batch_size=32), "float32", "oneDNN off")
    environ = env_with_store(cache)
    result = train(*MINIMAL, "--epochs", "1", "--test-crops", "1", "--run-dir", str(tmp_path / "off"), environ=environ)
    assert "runtime: oneDNN off (measured on this machine" in result.stdout
    assert json.loads((tmp_path / "off" / "metrics.json").read_text())["runtime"] == "oneDNN off"  # TensorFlow's own report


def test_a_run_leaves_every_artifact(run_dir):
    run_dir, result = run_dir
    for name in RUN_FILES:
        assert (run_dir / name).exists(), name
    assert not (run_dir / "backup").exists()
    assert history_epochs(run_dir) == [0, 1]
    header = (run_dir / "history.csv").read_text().splitlines()[0].split(",")
    assert {"learning_rate", "epoch_time_s", "val_main_accuracy", "aux1_loss"} <= set(header)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.3  # chance is 0.1
    assert metrics["test_top5_accuracy"] >= metrics["test_accuracy"]
    assert metrics["test_examples"] == TEST_EXAMPLES and metrics["epochs"] == 2
    assert metrics["compute_epochs"] == pytest.approx(compute_epochs())
    assert metrics["test_crops"] == 2 and metrics["test_single_crop_accuracy"] > 0.3
    # Training time is the epochs' wall time as history.csv has it (not the evaluation's or
    # the process's), and the rate counts each training image once per epoch.
    epoch_times = [float(line.split(",")[header.index("epoch_time_s")]) for line in (run_dir / "history.csv").read_text().splitlines()[1:]]
    assert metrics["training_time_s"] == pytest.approx(sum(epoch_times), rel=1e-6) and min(epoch_times) > 1
    assert metrics["train_examples"] == TRAIN_EXAMPLES
    assert metrics["train_images_per_second"] == pytest.approx(TRAIN_EXAMPLES * 2 / sum(epoch_times), rel=1e-6)
    # The runtime TensorFlow ran under, as it reports it: the stored answer's.
    assert metrics["runtime"] == "oneDNN on"
    assert "runtime: oneDNN on (measured on this machine" in result.stdout
    assert [row["class"] for row in metrics["per_class"]][:2] == ["T-shirt/top", "Trouser"]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["train"]["precision"] == "float32"
    assert "precision: float32 (measured on this machine" in result.stdout
    assert config["data"]["augment"] == "standard" and config["train"]["epochs"] == 2
    assert "precision: " in result.stdout and "T-shirt/top" in result.stdout
    model = keras.models.load_model(run_dir / "model.keras")
    assert model.output_names == ["main", "aux1", "aux2"]
    from PIL import Image

    assert Image.open(run_dir / "mistakes.png").size == (880, 990)  # evaluation.draw_mistakes's 8x9 in at 110 dpi


def test_the_epochs_share_one_fit_and_the_table_reads_the_run(run_dir):
    """One `fit` for both epochs: the training writer opens its files once (a `fit` per
    epoch opened new ones each epoch, after the wait that `benchmarks/epoch_gaps.py`
    measures); and the accuracy-against-compute table reads the run's own figures."""
    run_dir, _ = run_dir
    gaps = runpy.run_path(str(ROOT / "benchmarks" / "epoch_gaps.py"))
    ends = gaps["epoch_end_times"](run_dir)
    assert sorted(ends) == [0, 1] and ends[1] > ends[0]
    assert [epoch for epoch, _ in gaps["gaps"](run_dir)] == [1]
    opened = sorted(path.name.split(".")[3] for path in (run_dir / "logs" / "train").glob("events.out.tfevents.*"))
    assert len(opened) == FIT_WRITER_FILES, opened
    table = runpy.run_path(str(ROOT / "benchmarks" / "accuracy_vs_compute.py"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    row = table["row"](run_dir, 88.0)
    assert row["run"] == str(run_dir) and row["compute_epochs"] == round(compute_epochs(), 3)
    assert row["test_accuracy"] == metrics["test_accuracy"]
    assert row["projected_hours"] == pytest.approx(compute_epochs() * budget.REFERENCE_IMAGES / 88 / 3600)
    assert "--epochs 2" in row["settings"] and "--image-size 49" in row["settings"]


def test_the_same_command_again_finds_the_run_complete(run_dir):
    run_dir, _ = run_dir
    code, stdout, stderr = command_here("train", *SMALL, "--epochs", "2", "--learning-rate", "0.02", "--test-crops", "2",
                                        "--run-dir", run_dir)
    assert code == 0 and "is complete" in stdout, stderr
    assert history_epochs(run_dir) == [0, 1]


def test_another_configuration_is_refused(run_dir):
    run_dir, _ = run_dir
    code, _, stderr = command_here("train", *SMALL, "--epochs", "3", "--learning-rate", "0.05", "--run-dir", run_dir)
    assert code == 2
    assert "train.epochs: 2 -> 3" in stderr and "--overwrite" in stderr


def test_evaluate_command_writes_the_same_report(run_dir, tmp_path):
    run_dir, _ = run_dir
    out = tmp_path / "eval"
    code, stdout, stderr = command_here("evaluate", "--model", str(run_dir / "model.keras"), "--dataset", "fashion_mnist",
                                 "--limit", str(TEST_EXAMPLES), "--out", str(out))
    assert code == 0, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    original = json.loads((run_dir / "metrics.json").read_text())
    # The run's 2 crops and its policy, read from the config.json beside the model.
    for key in ("test_accuracy", "test_single_crop_accuracy", "test_loss"):
        assert metrics[key] == pytest.approx(original[key], abs=1e-6), key
    assert (out / "confusion_matrix.png").is_file()
    assert "weighted avg" in stdout


def test_evaluate_names_its_figures_by_the_split(run_dir, tmp_path):
    run_dir, _ = run_dir
    code, stdout, stderr = command_here("evaluate", "--model", str(run_dir / "model.keras"), "--split", "validation",
                                 "--validation-split", "0.5", "--limit", "256", "--test-crops", "1", "--out", str(tmp_path))
    assert code == 0, stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["evaluated_split"] == "validation" and metrics["validation_examples"] == 128
    assert "validation_accuracy" in metrics and not any(key.startswith("test_") for key in metrics)
    assert "validation accuracy" in stdout


def test_fine_tuning_replaces_the_heads_for_other_classes(run_dir):
    run_dir, _ = run_dir
    model = GoogLeNet(num_classes=3, input_shape=(64, 64, 3), variant="bn")
    copied, replaced = transfer_weights(run_dir / "model.keras", model, log=lambda message: None)
    assert sorted(replaced) == ["aux1_classifier", "aux2_classifier", "main_classifier"]
    source = keras.models.load_model(run_dir / "model.keras")
    np.testing.assert_array_equal(
        model.get_layer("inception_5b_5x5_conv").get_weights()[0],
        source.get_layer("inception_5b_5x5_conv").get_weights()[0],
    )


def test_unknown_values_list_the_choices():
    result = train("--dataset", "imagenet21k", check=False)
    assert result.returncode == 2
    assert "invalid choice: 'imagenet21k'" in result.stderr and "fashion_mnist" in result.stderr
    result = train("--image-size", "40", check=False)
    assert result.returncode == 2 and "Received: image_size=40" in result.stderr


def test_a_diverging_run_stops_with_a_clear_message(tmp_path):
    code, out, err = command_here("train", *MINIMAL, "--epochs", "2", "--learning-rate", "1e12", "--run-dir", str(tmp_path / "nan"))
    assert code == 3, out + err
    assert "stopped being finite" in err


def test_an_input_too_large_for_the_memory_is_refused_before_anything(tmp_path):
    code, out, err = command_here("train", *MINIMAL, "--image-size", "100000", "--run-dir", tmp_path / "huge")
    assert (code, out) == (2, "") and err.count("\n") == 1 and "Traceback" not in err
    assert "`image_size` 100000 needs 596 GiB for one image's first feature map alone" in err
    assert "lower --image-size. Received: image_size=100000" in err and not (tmp_path / "huge").exists()


def test_out_of_memory_in_a_run_ends_in_one_line_naming_what_to_lower(tmp_path, monkeypatch):
    import tensorflow as tf

    from inception_tf.tasks import task

    def allocate(self):  # what TensorFlow raises when a tensor does not fit
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[32,64,25,25] and type float")

    monkeypatch.setattr(task.TrainingTask, "train", allocate)
    code, out, err = command_here("train", *MINIMAL, "--run-dir", tmp_path / "oom")
    assert code == 1 and "Traceback" not in err
    assert err.strip() == (
        "error: Out of memory at --batch-size 32 and --image-size 49 (OOM when allocating tensor with shape[32,64,25,25] "
        "and type float): lower either and start again with --overwrite or another --run-dir; nothing was backed up yet."
    )


def test_a_run_is_validated_once_and_its_paths_resolved_once(tmp_path, monkeypatch):
    """From the flags to the first step: one `validate`, one run directory, one set of the
    chief's paths, and one workload for both probes, per process."""
    import tensorflow as tf

    from inception_tf import config
    from inception_tf.tasks import task

    calls = {"validate": 0, "resolved_run_dir": 0, "chief": 0}

    def counted(name, function):
        def call(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return call

    monkeypatch.setattr(config.RunConfig, "validate", counted("validate", config.RunConfig.validate))
    monkeypatch.setattr(config.RunConfig, "resolved_run_dir", counted("resolved_run_dir", config.RunConfig.resolved_run_dir))
    monkeypatch.setattr(task.RunPaths, "chief", classmethod(counted("chief", task.RunPaths.chief.__func__)))

    def stop(self):  # the run is resolved by now: stop where training would start
        assert self.run.chief.run_dir == self.paths.run_dir == tmp_path / "once"
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[1] and type float")

    monkeypatch.setattr(task.TrainingTask, "train", stop)
    code, out, err = command_here("train", *MINIMAL, "--run-dir", tmp_path / "once")
    assert code == 1 and "Out of memory" in err, out + err
    assert calls == {"validate": 1, "resolved_run_dir": 1, "chief": 1}
    assert config.RunConfig().replace(**{"train.batch_size": 128}).workload(2) == precision.Workload("bn", 64, 64)
