"""A trained run exported four ways: accuracy, file size and batch-1 latency of each.

    python benchmarks/litert_formats.py --run-dir RUN_DIR --json results/litert/RUN.json

Exports RUN_DIR/model.keras as a SavedModel and as LiteRT float32, float16 and int8
(calibrated on `--calibration-images` training images of the run's data set, as
`python -m inception_tf export --tflite` does), then, in one process:
- test accuracy of each on the whole test split (single centre view, the same
  preprocessed inputs for all four; the run's own metrics.json may use 10 crops);
- how far each is from the SavedModel's probabilities (max absolute difference) and how
  often its top-1 agrees;
- file sizes;
- batch-1 latency on preprocessed input, the formats alternating call by call.
Prints a Markdown table; `--json` also writes the figures with the machine.
"""

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

from inception_tf.startup import loading  # noqa: E402  (loads nothing)

loading.quiet_import_tensorflow()  # TensorFlow's own runtime: the measured one is for training

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from inception_tf import choices, config  # noqa: E402
from inception_tf.dataloaders import catalog, data  # noqa: E402
from inception_tf.modeling.image_input import preprocess_each, preprocess_images  # noqa: E402
from inception_tf.modeling import model_files  # noqa: E402
from inception_tf.serving import export, litert  # noqa: E402
from inception_tf.startup import machine  # noqa: E402


def folder_bytes(path):
    path = pathlib.Path(path)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def export_all(run_dir, out, calibration_images):
    import keras

    model_path = run_dir / "model.keras"
    info = model_files.read_info(model_path)
    model = keras.models.load_model(model_path, compile=False)
    size = model.inputs[0].shape[1]
    run_data = config.data_beside(model_path)
    train = catalog.load_source(run_data["dataset"], data_dir=run_data.get("data_dir")).splits["train"]
    calibration = data.calibration_inputs(train, size, calibration_images, info.preprocessing)
    saved_model = export.export_saved_model(model, out / "saved_model", info.class_names, preprocessing=info.preprocessing)
    paths, seconds = {"SavedModel": saved_model}, {}
    for quantization in choices.LITERT_QUANTIZATIONS:
        start = time.perf_counter()
        paths[f"LiteRT {quantization}"] = litert.write_tflite(
            saved_model, litert.tflite_path(saved_model, quantization), quantization, calibration=calibration,
            class_names=info.class_names, preprocessing=info.preprocessing,
            calibrated_on=f"{len(calibration)} images of the {run_data['dataset']} training split",
        )
        seconds[f"LiteRT {quantization}"] = time.perf_counter() - start
    return paths, seconds, size, info.preprocessing, run_data


def runners(paths, threads):
    signature = tf.saved_model.load(str(paths["SavedModel"])).signatures[export.SIGNATURE_PREPROCESSED]
    found = {"SavedModel": lambda x: signature(inputs=tf.constant(x))["probabilities"].numpy()}
    for name, path in paths.items():
        if name != "SavedModel":
            found[name] = litert.LiteRTModel(path, num_threads=threads)
    return found


def test_probabilities(run, split, size, preprocessing, batch=250):
    rows = []
    for start in range(0, split.size, batch):
        images = data.images_at(split, range(start, min(start + batch, split.size)))
        inputs = preprocess_each(images, size, preprocessing)
        rows.append(run(inputs))
    return np.concatenate(rows)


def latencies(runs, sample, calls, rounds):
    """Median milliseconds per batch-1 call of each, the formats alternating."""
    times = {name: [] for name in runs}
    for run in runs.values():
        for _ in range(5):
            run(sample)
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            for _ in range(calls):
                run(sample)
            times[name].append(1000 * (time.perf_counter() - start) / calls)
    return {name: {"median_ms": statistics.median(t), "min_ms": min(t), "max_ms": max(t)} for name, t in times.items()}


def table(results):
    lines = ["| format | test accuracy | top-1 agrees with SavedModel | max abs diff from SavedModel | file size | batch-1 latency |",
             "|---|---|---|---|---|---|"]
    for name, r in results["formats"].items():
        lines.append(
            f"| {name} | {r['accuracy']:.4f} | {r['agreement']:.4f} | {r['max_abs_diff']:.2g} | "
            f"{r['bytes'] / 2**20:.1f} MiB | {r['latency']['median_ms']:.2f} ms ({r['latency']['min_ms']:.2f}-{r['latency']['max_ms']:.2f}) |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, type=pathlib.Path)
    parser.add_argument("--calibration-images", type=int, default=litert.CALIBRATION_IMAGES)
    parser.add_argument("--limit", type=int, help="test images to use (default: the whole test split)")
    parser.add_argument("--calls", type=int, default=50, help="batch-1 calls per format per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="LiteRT interpreter threads")
    parser.add_argument("--json", type=pathlib.Path, help="write the figures here too")
    args = parser.parse_args(argv)

    print(f"machine: {machine.describe_machine(machine.gpu_details())}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        paths, seconds, size, preprocessing, run_data = export_all(args.run_dir, pathlib.Path(scratch), args.calibration_images)
        runs = runners(paths, args.threads)
        test = catalog.load_source(run_data["dataset"], data_dir=run_data.get("data_dir"), limit=args.limit).splits["test"]
        probabilities = {name: test_probabilities(run, test, size, preprocessing) for name, run in runs.items()}
        sample = np.asarray(preprocess_images(data.images_at(test, [0])[0][None], size, preprocessing))
        timing = latencies(runs, sample, args.calls, args.rounds)
        reference = probabilities["SavedModel"]
        results = {
            "run_dir": str(args.run_dir), "test_images": int(test.size), "image_size": size,
            "calibration_images": args.calibration_images, "litert_threads": args.threads,
            "machine": machine.machine(), "conversion_seconds": seconds, "formats": {},
        }
        for name, found in probabilities.items():
            results["formats"][name] = {
                "accuracy": float((found.argmax(1) == test.labels).mean()),
                "agreement": float((found.argmax(1) == reference.argmax(1)).mean()),
                "max_abs_diff": float(np.abs(found - reference).max()),
                "bytes": folder_bytes(paths[name]),
                "latency": timing[name],
            }
    print(table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
