"""`weights="imagenet"`: BVLC's GoogLeNet, downloaded once, checked against its sha1,
converted once, and cached, as `keras.applications` does with its weights.

The cache is Keras's: `$KERAS_HOME/models` (default `~/.keras/models`). It holds the
download, `bvlc_googlenet.caffemodel`, and its conversion, a `.keras` file (paper variant,
three heads, the ImageNet names, "caffe" preprocessing) named after the download's sha1,
so that another mirror's file is converted afresh. Both are written under temporary
names and renamed into place only when whole (and, for the download, only when its sha1
is the expected one): a cut or corrupt file is never left as if whole.

`INCEPTION_TF_IMAGENET_URL` and `INCEPTION_TF_IMAGENET_SHA1` replace the address and the
sha1: a company mirror, or a local copy (`file:///path/bvlc_googlenet.caffemodel`).
"""

import hashlib
import http.client
import os
import pathlib
import re
import urllib.request

from inception_tf import files

NAME = "imagenet"  # the word every place that takes a model file takes too
URL = "http://dl.caffe.berkeleyvision.org/bvlc_googlenet.caffemodel"
SHA1 = "405fc5acd08a3bb12de8ee5e23a96bec22f08204"
URL_VARIABLE, SHA1_VARIABLE = "INCEPTION_TF_IMAGENET_URL", "INCEPTION_TF_IMAGENET_SHA1"
CAFFEMODEL = "bvlc_googlenet.caffemodel"
TIMEOUT_S = 60  # without a byte for this long, a download fails
CHUNK = 1 << 20


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


def resolve(path, log=print):
    """`path`, or for "imagenet" the cached conversion of BVLC's weights (fetched and
    converted on first use)."""
    return model_file(log) if str(path) == NAME else path


def model_file(log=print):
    """The `.keras` conversion of BVLC's caffemodel, made once per download."""
    _, sha1 = source()
    path = cache_dir() / f"bvlc_googlenet-{sha1[:12]}.keras"
    if path.is_file():
        return path
    caffemodel = download(log)
    from inception_tf.modeling import caffe

    log(f"converting {caffemodel} to {path} (once)")
    return caffe.convert_caffemodel(caffemodel, path, log=log)


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
