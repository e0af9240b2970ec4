"""`python -m inception_tf predict`: top-k classes of image files, in batches.

Files are read by a thread pool one batch ahead of the model (OpenCV releases the GIL),
and each batch goes to the model in one call per image size in it. Results go to the
terminal (text or JSON lines) or to a `.csv` / `.jsonl` file written whole or not at all.
"""

import concurrent.futures
import csv
import io
import json
import os
import pathlib
import sys
import threading
import time

import cv2
import numpy as np

from inception_tf import files, native_stderr
from inception_tf.serving import litert

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")


JPEG_NOISE = ("Premature end of JPEG", "Corrupt JPEG data")  # what libjpeg writes to the terminal itself
_QUIET = threading.Lock()  # one filtered decode at a time: file descriptor 2 is the process's


def _cut_short(data):
    """Whether `data` is a JPEG whose entropy-coded data has no end marker after it: a
    file cut short (a download or copy that stopped). Thumbnails come before the image's
    own scan, and trailers after its end marker, so neither misleads the check."""
    if not data.startswith(b"\xff\xd8\xff"):
        return False
    scan = data.rfind(b"\xff\xda")
    return scan >= 0 and data.find(b"\xff\xd9", scan) < 0


def read_rgb(path, warn=None):
    """An image file as uint8 RGB [height, width, 3]: grayscale, BGR, BGRA and 16-bit
    images are converted. Raises ValueError naming the file when OpenCV cannot read it;
    `warn(message)` hears of a damaged file that still decoded (a JPEG cut short, its
    missing rows gray), named in the project's words instead of libjpeg's."""
    data = pathlib.Path(path).read_bytes()
    if _cut_short(data):
        with _QUIET, native_stderr.filtered(JPEG_NOISE):
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # its decoder of memory refuses what the file one reads
        if image is not None and warn is not None:
            warn(f"{path} is damaged: its JPEG data ends early; predicted from the part that is there")
    else:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None and data.startswith(b"GIF8"):
        # OpenCV's decoder reads no GIF in some builds; its video reader does (only a GIF
        # goes there: on other files FFmpeg prints lines of its own).
        capture = cv2.VideoCapture(str(path))
        ok, image = capture.read()
        capture.release()
        image = image if ok else None
    if image is None:
        raise ValueError(f"cannot read an image from {path}")
    return _as_rgb(image, path)


def decode_rgb(encoded):
    """An encoded image (bytes) as uint8 RGB, converted as `read_rgb` converts; None when
    OpenCV cannot decode it."""
    image = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED)
    return None if image is None else _as_rgb(image, "the image")


def _as_rgb(image, source):
    if image.dtype == np.uint16:
        image = (image / 257).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"unsupported pixel type {image.dtype} in {source}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if image.shape[2] == 1:
        return cv2.cvtColor(image[..., 0], cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def expand(paths):
    """Files as given, and the image files inside given folders (sorted). Raises
    ValueError for a folder that holds none: nothing would be predicted, silently."""
    found = []
    for path in map(pathlib.Path, paths):
        if not path.is_dir():
            found.append(path)
            continue
        images = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise ValueError(
                f"The folder {path} holds no image file (looked for {', '.join(IMAGE_SUFFIXES)}, in subfolders too). "
                f"Received: paths={[str(p) for p in paths]}"
            )
        found += images
    return found


OUTPUT_SUFFIXES = (".csv", ".jsonl")


def check_arguments(top_k, batch_size, output, explain, model_path):
    for name, value in (("top_k", top_k), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    if output is not None and pathlib.Path(output).suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"`output` must end in one of {OUTPUT_SUFFIXES}. Received: output={str(output)!r}")
    if explain is not None and pathlib.Path(model_path).suffix != ".keras":
        raise ValueError(
            "Grad-CAM (`explain`) takes gradients through the Keras layers: pass a .keras model "
            f"(a run directory's model.keras). Received: model={str(model_path)!r}"
        )


def _check_model_path(model_path):
    if not model_path.exists():
        raise FileNotFoundError(f"No model at {model_path}. Received: model={str(model_path)!r}")
    if model_path.is_dir() and not (model_path / "saved_model.pb").is_file():
        hint = " (a run directory: pass RUN_DIR/saved_model or RUN_DIR/model.keras)" if (model_path / "saved_model").is_dir() else ""
        raise FileNotFoundError(
            f"{model_path} holds no SavedModel (saved_model.pb){hint}. Received: model={str(model_path)!r}"
        )


def by_shape(images, call):
    """`call` on each group of same-shaped images stacked (one model call per size in the
    batch), the rows put back in the order of `images`."""
    groups = {}
    for index, image in enumerate(images):
        groups.setdefault(image.shape, []).append(index)
    rows = [None] * len(images)
    for indices in groups.values():
        for index, row in zip(indices, call(np.stack([images[i] for i in indices]))):
            rows[index] = row
    return np.stack(rows).astype(np.float64)


class Predictor:
    """Probabilities for lists of uint8 RGB images of any sizes, from a SavedModel folder
    (its `serving_default`), a .keras file or a .tflite file (`litert.LiteRTModel`), all
    three preprocessing as evaluation does (`image_input.preprocess_images`)."""

    def __init__(self, model_path):
        from inception_tf.modeling import model_files

        model_path = pathlib.Path(model_path)
        _check_model_path(model_path)
        self.keras_model = None
        if model_path.suffix == litert.SUFFIX:
            self._call = self._litert(model_path)
        elif model_path.is_dir():
            self.class_names = model_files.read_info(model_path).class_names
            self._call = self._saved_model(model_path)
        else:
            info = model_files.read_info(model_path)
            self.class_names = info.class_names
            self._call = self._keras(model_path, info.preprocessing)

    def _litert(self, model_path):
        import tensorflow as tf

        from inception_tf.modeling import image_input

        model = litert.LiteRTModel(model_path)
        self.class_names = model.info["class_names"]
        size, mode = model.image_size, model.info["preprocessing"]
        # Traced once: eager ops cost a third of a LiteRT call at batch 1.
        preprocess = tf.function(lambda batch: image_input.preprocess_images(batch, size, mode), reduce_retracing=True)
        return lambda batch: model(preprocess(tf.constant(batch)).numpy())

    def _saved_model(self, model_path):
        import tensorflow as tf

        serve = tf.saved_model.load(str(model_path)).signatures["serving_default"]
        return lambda batch: serve(images=tf.constant(batch))["probabilities"].numpy()

    def _keras(self, model_path, preprocessing):
        import keras
        import tensorflow as tf

        from inception_tf.modeling.network import inference_model
        from inception_tf.modeling.image_input import preprocess_images

        self.keras_model = inference_model(keras.models.load_model(model_path, compile=False))
        self.preprocessing = preprocessing
        size = self.keras_model.inputs[0].shape[1]
        model = self.keras_model
        forward = tf.function(lambda batch: model(preprocess_images(batch, size, preprocessing), training=False),
                              reduce_retracing=True)
        return lambda batch: forward(tf.constant(batch)).numpy()

    def __call__(self, images):
        """float64 [len(images), num_classes] for a list of uint8 RGB [h, w, 3] images."""
        return by_shape(images, self._call)

    def name(self, index):
        return self.class_names[index] if self.class_names and index < len(self.class_names) else str(index)


def _read(path):
    """`(path, image or None, error or None, warnings)`."""
    warnings = []
    try:
        return path, read_rgb(path, warnings.append), None, warnings
    except (ValueError, OSError) as error:
        return path, None, str(error), warnings


def read_batches(paths, batch_size, pool):
    """Lists of `_read`'s `(path, image or None, error or None, warnings)`, `batch_size` at
    a time, the next batch read by `pool` while the caller works on this one."""
    paths = iter(paths)

    def submit():
        chunk = [path for _, path in zip(range(batch_size), paths)]
        return [pool.submit(_read, path) for path in chunk]

    pending = submit()
    while pending:
        upcoming = submit()
        yield [future.result() for future in pending]
        pending = upcoming


class Progress:
    """`done/total images, rate` on one line of a terminal; silent elsewhere."""

    def __init__(self, total, stream):
        self.total, self.stream, self.done = total, stream, 0
        self.active = total > 0 and hasattr(stream, "isatty") and stream.isatty()
        self.start = time.perf_counter()

    def update(self, count):
        self.done += count
        if self.active:
            rate = self.done / max(time.perf_counter() - self.start, 1e-9)
            end = "\n" if self.done >= self.total else ""
            self.stream.write(f"\r{self.done}/{self.total} images, {rate:.1f} images/s{end}")
            self.stream.flush()

    def break_line(self):
        """Ends the bar's line so that a message printed next starts on its own."""
        if self.active and 0 < self.done < self.total:
            self.stream.write("\n")


class Writer:
    """Where the predictions go: `out` as text or JSON lines, or a `.csv` / `.jsonl`
    file (one row per image, unreadable ones with their error) moved into place whole."""

    def __init__(self, output, as_json, top_k, out):
        self.output, self.top_k = output, top_k
        self.format = pathlib.Path(output).suffix if output else ".jsonl" if as_json else "text"
        self.stream = io.StringIO() if output else out
        if self.format == ".csv":
            self.csv = csv.writer(self.stream)
            self.csv.writerow(["path", "class", "score", f"top{top_k}_classes", f"top{top_k}_scores", "error"])

    def prediction(self, path, top):
        if self.format == ".csv":
            names, scores = ";".join(t["class"] for t in top), ";".join(f"{t['score']:.6f}" for t in top)
            self.csv.writerow([path, top[0]["class"], f"{top[0]['score']:.6f}", names, scores, ""])
        elif self.format == ".jsonl":
            print(json.dumps({"image": str(path), "top": top}), file=self.stream)
        else:
            print(f"{path}:", file=self.stream)
            for rank, entry in enumerate(top, start=1):
                print(f"  {rank}. {entry['class']:<20} {entry['score']:.4f}", file=self.stream)

    def error(self, path, message):
        if self.format == ".csv":
            self.csv.writerow([path, "", "", "", "", message])
        elif self.format == ".jsonl" and self.output:
            print(json.dumps({"image": str(path), "error": message}), file=self.stream)

    def close(self):
        if self.output:
            files.write_text_atomic(self.output, self.stream.getvalue())


def ranked(probabilities, top_k, name):
    order = np.argsort(-probabilities, kind="stable")[:top_k]
    return [{"class": name(i), "index": int(i), "score": float(probabilities[i])} for i in order]


def main(model_path, paths, top_k=5, as_json=False, batch_size=32, output=None, explain=None):
    """Predicts every image file in `paths` (files and folders), `batch_size` per model
    call; returns 1 if any could not be read (an error line each, the rest predicted).

    `output` (.csv or .jsonl) collects the rows in a file instead of standard output;
    `explain` names a folder for one Grad-CAM overlay PNG per image (.keras models).
    Errors and the progress bar go to standard error.
    """
    out, err = sys.stdout, sys.stderr  # looked up now: tests and callers redirect them
    check_arguments(top_k, batch_size, output, explain, model_path)
    predictor = Predictor(model_path)
    explainer = None
    if explain is not None:
        from inception_tf.serving import gradcam

        explainer = gradcam.Explainer(predictor.keras_model, predictor.preprocessing, explain, predictor.name)
    writer = Writer(output, as_json, top_k, out)
    failed, total = run(predictor, expand(paths), batch_size, writer, explainer, err)
    if output:
        print(f"{total - failed} images predicted, {failed} unreadable: {output}", file=out)
    return 1 if failed else 0


def run(predictor, paths, batch_size, writer, explainer=None, err=None):
    """Predicts `paths` (image files) into `writer`, `batch_size` per model call, with a
    progress bar on `err` when it is a terminal; returns `(unreadable, total)`."""
    err = err or sys.stderr
    progress = Progress(len(paths), err)
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for batch in read_batches(paths, batch_size, pool):
            for path, _, message, warnings in batch:
                for warning in warnings:
                    progress.break_line()
                    print(f"warning: {warning}", file=err)
                if message is not None:
                    failed += 1
                    progress.break_line()
                    print(f"error: {message}", file=err)
                    writer.error(path, message)
            readable = [(path, image) for path, image, message, _ in batch if message is None]
            if readable:
                probabilities = predictor([image for _, image in readable])
                for (path, _), row in zip(readable, probabilities):
                    writer.prediction(path, ranked(row, writer.top_k, predictor.name))
                if explainer is not None:
                    explainer.write(readable)
            progress.update(len(batch))
    writer.close()
    return failed, len(paths)
