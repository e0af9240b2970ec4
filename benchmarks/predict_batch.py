"""`predict` on a folder of image files: batches against one image per model call.

    python benchmarks/predict_batch.py --model RUN_DIR/saved_model --images 1000 --batch-size 32

Writes `--images` Fashion-MNIST test images as PNG files into a temporary folder (or
reads `--folder`), loads the model once, then times the whole `predict` path (reading
the files, the model, writing a CSV) at batch 1 and at `--batch-size`, alternating,
`--rounds` times each. Ends with one line:
`batch1_images/s=<float> batchN_images/s=<float> speedup=<float>` (medians).
"""

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

from inception_tf.startup import loading  # noqa: E402  (loads nothing)

loading.quiet_import_tensorflow()  # TensorFlow's own runtime: the measured one is for training

import cv2  # noqa: E402

from inception_tf.dataloaders import catalog  # noqa: E402
from inception_tf.serving import predict  # noqa: E402
from inception_tf.startup import machine  # noqa: E402


def write_images(folder, count):
    test = catalog.load_source("fashion_mnist", limit=count).splits["test"]
    for index, image in enumerate(test.images):
        cv2.imwrite(str(folder / f"{index:05d}.png"), image)
    return sorted(folder.glob("*.png"))


def timed(predictor, paths, batch_size, scratch):
    writer = predict.Writer(scratch / f"batch{batch_size}.csv", False, 5, sys.stdout)
    start = time.perf_counter()
    failed, total = predict.run(predictor, paths, batch_size, writer, err=open(os.devnull, "w"))
    elapsed = time.perf_counter() - start
    if failed:
        raise SystemExit(f"{failed} of {total} images could not be read")
    return total / elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a SavedModel folder, a .keras or a .tflite file")
    parser.add_argument("--images", type=int, default=1000, help="Fashion-MNIST test images to write")
    parser.add_argument("--folder", help="image files to read instead")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        scratch = pathlib.Path(scratch)
        if args.folder:
            paths = list(predict.expand([args.folder]))
        else:
            (scratch / "images").mkdir()
            paths = write_images(scratch / "images", args.images)
        predictor = predict.Predictor(args.model)
        print(f"predict on {len(paths)} image files, {args.model}, batch 1 against batch {args.batch_size}")
        print(f"machine: {machine.describe_machine(machine.gpu_details())}")
        for batch_size in (1, args.batch_size):  # warm-up: tracing, thread pool, file cache
            timed(predictor, paths[: 2 * args.batch_size], batch_size, scratch)
        rates = {1: [], args.batch_size: []}
        for round_ in range(args.rounds):
            for batch_size in rates:
                rates[batch_size].append(timed(predictor, paths, batch_size, scratch))
                print(f"round {round_ + 1}, batch {batch_size}: {rates[batch_size][-1]:.1f} images/s", flush=True)
    one, many = (statistics.median(rates[b]) for b in rates)
    print(f"batch1_images/s={one:.1f} batch{args.batch_size}_images/s={many:.1f} speedup={many / one:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
