"""`python -m inception_tf serve MODEL`: TensorFlow Serving's REST API and a page to try it.

One process, Starlette on uvicorn: the routes of TensorFlow Serving's REST API for the one
model it loads (`rest_api` speaks its JSON, `batching` joins concurrent requests into one
model call), and at `/` a page that classifies the images a user drops on it. The model
is loaded before the port opens; SIGTERM or Ctrl-C stops taking connections, finishes the
requests in flight and exits 0.
"""

import base64
import dataclasses
import json
import pathlib
import re
import signal
import socket
import sys
import traceback

from inception_tf.serving import batching, rest_api, servable as servable_lib

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501  # TensorFlow Serving's REST port
# Measured with benchmarks/serve_load.py (results/serving/): 16 clients of one 64x64
# image each keep the model thread busy with batches of this size and wait.
DEFAULT_MAX_BATCH_SIZE = 16
DEFAULT_BATCH_TIMEOUT_MS = 5.0
DEFAULT_MAX_REQUEST_BYTES = 16 * 2**20
INLINE_PARSE_BYTES = 256 * 2**10  # larger bodies are parsed off the event loop
PAGE = pathlib.Path(__file__).with_name("page.html")

PREDICT_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(\w+)")
MODEL_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?(/metadata)?")

# TensorFlow's error codes -> HTTP, as TensorFlow Serving's REST handler maps them.
HTTP_STATUS = {1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 10: 409, 11: 400, 12: 501,
               13: 500, 14: 503, 15: 500, 16: 401}


@dataclasses.dataclass
class ServeOptions:
    """The `serve` command's flags."""

    model: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    model_name: str = None
    batching: bool = True
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    batch_timeout_ms: float = DEFAULT_BATCH_TIMEOUT_MS
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES

    def check(self):
        for name in ("port", "max_batch_size", "max_request_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (0 if name == "port" else 1):
                raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
        if self.port > 65535:
            raise ValueError(f"`port` must be at most 65535. Received: port={self.port}")
        if not self.batch_timeout_ms >= 0:
            raise ValueError(f"`batch_timeout_ms` must be 0 or more. Received: batch_timeout_ms={self.batch_timeout_ms!r}")
        if self.model_name is not None and not re.fullmatch(r"[^/:\s]+", self.model_name):
            raise ValueError(f"`model_name` cannot hold '/', ':' or spaces (it goes in URLs). Received: model_name={self.model_name!r}")
        return self


def tf_error_message(error):
    """TensorFlow's message without its graph and node trail."""
    message = getattr(error, "message", str(error))
    message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", message)
    return message.split("\n\t [[")[0].split(" [Op:")[0].strip()


class Api:
    """The routes, over one `Servable` and its batcher (None when batching is off)."""

    def __init__(self, model, name, options):
        self.model, self.name, self.options = model, name, options
        self.batcher = (
            batching.Batcher(model.call, options.max_batch_size, options.batch_timeout_ms / 1000) if options.batching else None
        )
        self.requests = 0

    def _check_model(self, name, version, label):
        if label is not None:
            raise rest_api.RestError(f"Unrecognized servable version label: {label}", 404)
        if name != self.name or (version is not None and int(version) != self.model.version):
            spec = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise rest_api.RestError(f"Servable not found for request: {spec}", 404)

    async def predict(self, request, match):
        name, version, label, verb = match.groups()
        self._check_model(name, version, label)
        if verb != "predict":
            raise rest_api.RestError(f"Malformed request: POST {request.url.path} (this server answers :predict)", 404)
        body = await _read_body(request, self.options.max_request_bytes)
        from starlette.concurrency import run_in_threadpool

        inputs = self.model.callable_inputs()
        if len(body) > INLINE_PARSE_BYTES:
            parsed = await run_in_threadpool(rest_api.parse_predict, body, inputs)
        else:
            parsed = rest_api.parse_predict(body, inputs)
        servable_lib.check_encoded_images(parsed, self.model.inputs)
        self.requests += 1
        try:
            if self.batcher is not None:
                outputs = await self.batcher.run(parsed.signature_name, parsed.inputs)
            else:
                outputs = await run_in_threadpool(self.model.call, parsed.signature_name, parsed.inputs)
        except Exception as error:
            code = getattr(error, "error_code", None)
            if code is None:
                raise
            raise rest_api.RestError(tf_error_message(error), HTTP_STATUS.get(code, 500)) from None
        return rest_api.format_predict(outputs, parsed.format)

    def status_or_metadata(self, match):
        name, version, label, metadata = match.groups()
        if label is None and name != self.name and version is None and not metadata:
            raise rest_api.RestError(f"Could not find any versions of model {name}", 404)
        self._check_model(name, version, label)
        if metadata:
            answer = rest_api.model_metadata(self.name, self.model.version, self.model.signature_defs)
        else:
            answer = rest_api.model_status(self.model.version)
        return json.dumps(answer, indent=1).encode()

    def page(self):
        facts = {
            "name": self.name, "version": self.model.version, "classes": self.model.class_names,
            "image_size": self.model.image_size, "explains": self.model.explains,
            "predict_url": f"/v1/models/{self.name}:predict",
        }
        embedded = json.dumps(facts).replace("</", "<\\/")  # safe inside <script>
        return PAGE.read_text().replace("/*MODEL*/null", embedded)

    async def explain(self, request):
        """The page's Grad-CAM overlay of one image: `{"b64": IMAGE}` -> `{"overlay": {"b64": PNG}}`."""
        if not self.model.explains:
            raise rest_api.RestError("Grad-CAM needs the Keras model: serve a run directory or a .keras file", 404)
        from starlette.concurrency import run_in_threadpool

        body = await _read_body(request, self.options.max_request_bytes)
        try:
            encoded = base64.b64decode(json.loads(body)["b64"], validate=True)
        except (ValueError, KeyError, TypeError):
            raise rest_api.RestError('The body must be {"b64": "BASE64 OF AN IMAGE FILE"}') from None
        png = await run_in_threadpool(_overlay_png, self.model, encoded)
        return json.dumps({"overlay": {"b64": base64.b64encode(png).decode()}}).encode()


def _overlay_png(model, encoded):
    import cv2

    from inception_tf.serving import predict

    try:
        image = predict.decode_rgb(encoded)
    except ValueError:
        image = None
    if image is None:
        raise rest_api.RestError("The image does not decode (JPEG, PNG, BMP, GIF, WebP or TIFF expected)")
    _, png = cv2.imencode(".png", model.explain(image)[..., ::-1])
    return png.tobytes()


async def _read_body(request, limit):
    """The body, refused with 413 past `limit` bytes: by its Content-Length before any of
    it is read, else as the chunks pass the limit."""
    declared = request.headers.get("content-length", "")
    too_large = f"The request body is over the limit of {limit} bytes (serve --max-request-bytes)"
    if declared.isdigit() and int(declared) > limit:
        raise rest_api.RestError(f"{too_large}. Received: Content-Length {declared}", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise rest_api.RestError(too_large, 413)
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(api):
    """The Starlette application of `api`."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, Response
    from starlette.routing import Route

    def answer(body, status=200):
        return Response(body, status_code=status, media_type="application/json")

    async def answering(handle):
        """`handle()`'s body, or the error as TensorFlow Serving writes one: every failure
        answers its own request in JSON, and the server goes on."""
        try:
            return answer(await handle())
        except rest_api.RestError as error:
            return answer(error.body(), error.status)
        except Exception as error:  # noqa: BLE001: a bug must not cost the other requests their answers
            traceback.print_exc()
            return answer(rest_api.RestError(f"Internal error: {type(error).__name__}: {error}").body(), 500)

    async def models(request):
        path = request.url.path

        async def handle():
            if request.method == "POST" and (match := PREDICT_PATH.fullmatch(path)):
                return await api.predict(request, match)
            if request.method == "GET" and (match := MODEL_PATH.fullmatch(path)):
                return api.status_or_metadata(match)
            raise rest_api.RestError(f"Malformed request: {request.method} {path}", 404)

        return await answering(handle)

    async def page(request):
        return HTMLResponse(api.page())

    async def explain(request):
        return await answering(lambda: api.explain(request))

    return Starlette(routes=[
        Route("/", page), Route("/explain", explain, methods=["POST"]),
        Route("/v1/{rest:path}", models, methods=["GET", "POST"]),
    ])


def listen(host, port):
    """A listening socket on `host:port` (port 0: a free one); ValueError names what failed."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        raise ValueError(f"Cannot listen on {host}:{port}: {error.strerror or error}. Choose another with --port / --host. "
                         f"Received: host={host!r}, port={port}") from None
    return sock


def page_url(sock):
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(options, out=None, err=None):
    """Loads the model, opens the port, prints the page's URL first, and serves until
    SIGTERM or Ctrl-C; returns the exit code (0)."""
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as error:
        raise ValueError(f"serve needs {error.name}: pip install 'inception_tf[serve]'") from None
    out, err = out or sys.stdout, err or sys.stderr
    options.check()
    model = servable_lib.Servable(servable_lib.locate(options.model), log=lambda line: print(line, file=err, flush=True))
    api = Api(model, options.model_name or model.name, options)
    try:
        sock = listen(options.host, options.port)
        print(page_url(sock), file=out, flush=True)
        batching_line = (f"batching up to {options.max_batch_size} rows, {options.batch_timeout_ms:g} ms"
                         if options.batching else "batching off")
        print(f"model {api.name} version {model.version} ({', '.join(sorted(model.callable_inputs()))}); "
              f"{batching_line}; SIGTERM or Ctrl-C stops", file=out, flush=True)
        config = uvicorn.Config(build_app(api), log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=60)
        server = uvicorn.Server(config)
        stopped_by = []
        # uvicorn raises the signal again once it has shut down; these handlers, restored
        # then, take it, so that a stop after a clean shutdown exits 0.
        previous = {sig: signal.signal(sig, lambda number, frame: stopped_by.append(number))
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            server.run(sockets=[sock])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        print(_closing_line(api), file=out, flush=True)
    finally:
        if api.batcher is not None:
            api.batcher.close()
        model.close()
    return 0


def _closing_line(api):
    if api.batcher is None:
        return f"stopped: {api.requests} predict requests, batching off"
    stats = api.batcher.stats
    return (f"stopped: {api.requests} predict requests, {stats['joined']} of them joined with others; "
            f"{stats['calls']} model calls of {stats['rows']} rows, the largest {stats['largest']}")

