"""The weights' sources: BVLC's ImageNet weights ("imagenet"), a `.keras` model, a
`.weights.h5` file or BVLC's caffemodel, loaded into a GoogLeNet.

Layers are matched by name. A classifier whose number of classes differs keeps its fresh
initialisation (fine-tuning on other classes), and so does a head the source lacks; any
other layer must be there with the same shapes, or loading stops naming the first one that
is not.

"imagenet" is BVLC's caffemodel, downloaded once, checked against its sha1 and cached, as
`keras.applications` does with its weights. The cache is Keras's: `$KERAS_HOME/models`
(default `~/.keras/models`); the download is written under a temporary name and renamed
into place only when whole and of the expected sha1, so a cut or corrupt file is never
left as if whole. `INCEPTION_TF_IMAGENET_URL` and `INCEPTION_TF_IMAGENET_SHA1` replace the
address and the sha1: a company mirror, or a local copy
(`file:///path/bvlc_googlenet.caffemodel`). `convert` keeps its `.keras` conversion for
the commands that take a model file.

Importing this module loads no TensorFlow: the command line names `DownloadError` before
it chooses the runtime TensorFlow loads with.
"""

import hashlib
import http.client
import os
import pathlib
import re
import urllib.request

from inception_tf import files
from inception_tf.modeling import caffe
from inception_tf.modeling import imagenet

URL = "http://dl.caffe.berkeleyvision.org/bvlc_googlenet.caffemodel"
SHA1 = "405fc5acd08a3bb12de8ee5e23a96bec22f08204"
URL_VARIABLE, SHA1_VARIABLE = "INCEPTION_TF_IMAGENET_URL", "INCEPTION_TF_IMAGENET_SHA1"
CAFFEMODEL = "bvlc_googlenet.caffemodel"
TIMEOUT_S = 60  # without a byte for this long, a download fails
CHUNK = 1 << 20
SUFFIXES = (".keras", ".weights.h5", ".caffemodel")


class WeightsError(ValueError):
    """A weights file that does not fit the model."""


class DownloadError(RuntimeError):
    """The ImageNet weights could not be fetched whole."""


def source():
    """`(url, sha1)`: the environment's mirror, else BVLC's address. Raises ValueError
    for a sha1 that is not 40 hexadecimal digits."""
    sha1 = (os.environ.get(SHA1_VARIABLE) or SHA1).lower()
    if not re.fullmatch(r"[0-9a-f]{40}", sha1):
        raise ValueError(f"{SHA1_VARIABLE} must be a sha1: 40 hexadecimal digits. "
                         f"Received: {SHA1_VARIABLE}={os.environ.get(SHA1_VARIABLE)!r}")
    return os.environ.get(URL_VARIABLE) or URL, sha1


def cache_dir():
    """Where Keras caches weights: `$KERAS_HOME/models`, else `~/.keras/models`."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return pathlib.Path(home) / "models"


# --- Loading ------------------------------------------------------------------------------

def _heads(model):
    """{head: its classifier}: the model's outputs, each a head whose layers carry its name
    as prefix and whose last layer with weights is its classifier."""
    heads = {}
    for head in model.output_names:
        weighted = [layer.name for layer in model.layers if layer.name.startswith(f"{head}_") and layer.weights]
        if weighted:
            heads[head] = weighted[-1]
    return heads


def _copy_by_name(source, model, path):
    names, heads = {layer.name for layer in source.layers}, _heads(model)
    copied, fresh = 0, []
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in names:
            if layer.name.startswith(tuple(f"{head}_" for head in heads)):
                fresh.append(layer.name)
                continue
            raise WeightsError(f"{path} has no layer {layer.name!r}: another variant or layout? Received: weights={str(path)!r}")
        weights = source.get_layer(layer.name).get_weights()
        want = [tuple(v.shape) for v in layer.weights]
        if [w.shape for w in weights] != want:
            if layer.name in heads.values():
                fresh.append(layer.name)
                continue
            raise WeightsError(
                f"Layer {layer.name!r} of {path} has shapes {[w.shape for w in weights]}, the model's are {want}. "
                f"Received: weights={str(path)!r}"
            )
        layer.set_weights(weights)
        copied += 1
    return copied, fresh


def load(model, source, log=print):
    """Copies the weights of `source` (a path, or "imagenet": BVLC's caffemodel, fetched on
    first use) into `model`; returns (layers copied, layers left fresh)."""
    import keras  # loaded already: `model` is a Keras model (see the module's docstring)

    path = download(log) if str(source) == imagenet.WEIGHTS else pathlib.Path(source)
    name = path.name.lower()
    if not name.endswith(SUFFIXES):
        raise WeightsError(
            f"`weights` must be None, \"imagenet\" or a path ending in {', '.join(SUFFIXES)}. Received: weights={str(path)!r}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"No weights file at {path}. Received: weights={str(path)!r}")
    if name.endswith(".caffemodel"):
        return caffe.load_into(model, path, classifiers=set(_heads(model).values()))
    if name.endswith(".keras"):
        return _copy_by_name(keras.models.load_model(path, compile=False), model, path)
    try:
        model.load_weights(path)
    except ValueError as error:
        first_line = str(error).strip().splitlines()[0]
        raise WeightsError(f"{path} does not fit this model ({first_line}). Received: weights={str(path)!r}") from None
    return len([layer for layer in model.layers if layer.weights]), []


# --- The ImageNet download ----------------------------------------------------------------

def download(log=print):
    """The caffemodel in the cache, fetched if it is missing or its sha1 is not the
    expected one. Raises `DownloadError` naming the address, the cache and the way round."""
    url, sha1 = source()
    path = cache_dir() / CAFFEMODEL
    if path.is_file():
        if _sha1(path) == sha1:
            return path
        log(f"{path} does not have the sha1 {sha1}: fetching it again")
        path.unlink()
    log(f"downloading {url} to {path}")
    try:
        with files.atomic_path(path) as tmp:
            got_sha1, count, size = _fetch(url, tmp)
            if size is not None and count != size:
                raise DownloadError(f"the download stopped after {count:,} of {size:,} bytes")
            if got_sha1 != sha1:
                raise DownloadError(f"the file has the sha1 {got_sha1}, not {sha1}")
    except (DownloadError, OSError, http.client.HTTPException, ValueError) as error:  # URLError is an OSError
        reason = getattr(error, "reason", None) or error
        raise DownloadError(
            f"Could not download the ImageNet weights from {url}: {reason}. Nothing was kept in {path.parent}. "
            f"Download {CAFFEMODEL} elsewhere (sha1 {sha1}) and pass its path instead (weights=PATH, "
            f"--init-from PATH, --model PATH), or set {URL_VARIABLE} (and {SHA1_VARIABLE}) to a mirror."
        ) from None
    return path


def _fetch(url, out):
    """Streams `url` into `out`; returns its sha1, its bytes, and the size the server
    announced (or None)."""
    digest, count = hashlib.sha1(), 0
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(out, "wb") as f:
        size = response.headers.get("Content-Length")
        while chunk := response.read(CHUNK):
            digest.update(chunk)
            count += len(chunk)
            f.write(chunk)
    return digest.hexdigest(), count, int(size) if size else None


def _sha1(path):
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
