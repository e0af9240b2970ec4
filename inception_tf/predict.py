"""`python -m inception_tf predict`: top-k classes of image files."""

import json
import pathlib
import sys

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")


def read_rgb(path):
    """An image file as uint8 RGB [height, width, 3]: grayscale, BGR, BGRA and 16-bit
    images are converted. Raises ValueError naming the file when OpenCV cannot read it."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        # OpenCV's imread reads no GIF in some builds; its video reader does.
        capture = cv2.VideoCapture(str(path))
        ok, image = capture.read()
        capture.release()
        if not ok:
            raise ValueError(f"cannot read an image from {path}")
    if image.dtype == np.uint16:
        image = (image / 257).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"unsupported pixel type {image.dtype} in {path}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if image.shape[2] == 1:
        return cv2.cvtColor(image[..., 0], cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def expand(paths):
    """Files as given, and the image files inside given folders (sorted)."""
    for path in map(pathlib.Path, paths):
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield path


class Predictor:
    """Probabilities for one uint8 RGB image, from a SavedModel folder or a .keras file."""

    def __init__(self, model_path):
        from inception_tf import model_files

        model_path = pathlib.Path(model_path)
        if not model_path.exists():
            raise FileNotFoundError(f"No model at {model_path}. Received: model={str(model_path)!r}")
        if model_path.is_dir() and not (model_path / "saved_model.pb").is_file():
            hint = " (a run directory: pass RUN_DIR/saved_model or RUN_DIR/model.keras)" if (model_path / "saved_model").is_dir() else ""
            raise FileNotFoundError(
                f"{model_path} holds no SavedModel (saved_model.pb){hint}. Received: model={str(model_path)!r}"
            )
        info = model_files.read_info(model_path)
        self.class_names = info.class_names
        if model_path.is_dir():
            import tensorflow as tf

            self._serve = tf.saved_model.load(str(model_path)).signatures["serving_default"]
            self._call = lambda batch: self._serve(images=tf.constant(batch))["probabilities"].numpy()
        else:
            import keras

            from inception_tf import data
            from inception_tf.model import inference_model

            model = inference_model(keras.models.load_model(model_path, compile=False))
            size = model.inputs[0].shape[1]
            self._call = lambda batch: np.asarray(
                model(data.preprocess_images(batch, size, info.preprocessing), training=False)
            )

    def __call__(self, image):
        return self._call(image[None])[0].astype(np.float64)

    def name(self, index):
        return self.class_names[index] if self.class_names and index < len(self.class_names) else str(index)


def main(model_path, paths, top_k=5, as_json=False, out=sys.stdout, err=sys.stderr):
    """Prints the top-k classes of each image; returns 1 if any image could not be read."""
    predictor = Predictor(model_path)
    failed = 0
    for path in expand(paths):
        try:
            probabilities = predictor(read_rgb(path))
        except ValueError as error:
            failed += 1
            print(f"error: {error}", file=err)
            continue
        order = np.argsort(-probabilities)[:top_k]
        top = [{"class": predictor.name(i), "index": int(i), "score": float(probabilities[i])} for i in order]
        if as_json:
            print(json.dumps({"image": str(path), "top": top}), file=out)
        else:
            print(f"{path}:", file=out)
            for rank, entry in enumerate(top, start=1):
                print(f"  {rank}. {entry['class']:<20} {entry['score']:.4f}", file=out)
    return 1 if failed else 0
