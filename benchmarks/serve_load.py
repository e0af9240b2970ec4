"""`serve` under load: concurrent clients against batching on and off, one server each.

    python benchmarks/serve_load.py --clients 16 --seconds 60

Starts `python -m inception_tf serve MODEL --port 0` once per setting (default: batching
off, then the defaults' batching; `--setting max_batch_size:timeout_ms` adds others), lets
`--clients` threads send one 64x64 image per request for `--seconds` each (closed loop:
a client sends its next request when the last is answered; the bodies are encoded
before the clock starts), and prints per setting: requests/s, images/s, p50 and p99
latency, errors, the server's memory after the warm-up and every 10 s after, and the
model calls it made. MODEL defaults to the default job's network (bn, 10 classes, 64x64),
untrained, exported into a temporary folder: the weights do not change the speed.
Ends with one line: `off_images/s=<float> on_images/s=<float> ratio=<float>`.
"""

import argparse
import base64
import http.client
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from inception_tf.startup import machine

ROOT = pathlib.Path(__file__).resolve().parents[1]
MEMORY_EVERY = 10  # seconds between readings of the server's memory


def export_default_model(folder):
    """The default job's network, untrained, exported in a process of its own."""
    script = (
        "import sys; from inception_tf import GoogLeNet, export_saved_model; "
        "export_saved_model(GoogLeNet(num_classes=10, input_shape=(64, 64, 3), variant='bn'), sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", script, str(folder)], check=True, capture_output=True)
    return folder


def request_bodies(signature, image_size, count):
    """`count` JSON bodies of one image each: Fashion-MNIST-like noise is enough, the
    model's cost does not depend on the pixels."""
    import cv2

    rng = np.random.default_rng(0)
    bodies = []
    for _ in range(count):
        image = rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
        if signature == "image_bytes":
            png = cv2.imencode(".png", image)[1].tobytes()
            body = {"signature_name": "image_bytes", "instances": [{"b64": base64.b64encode(png).decode()}]}
        else:
            body = {"instances": [image.tolist()]}
        bodies.append(json.dumps(body).encode())
    return bodies


def rss_mib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    """`python -m inception_tf serve` in a child process, on a free port."""

    def __init__(self, model, flags):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "inception_tf", "serve", str(model), "--port", "0", *flags],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
        )
        url = self.process.stdout.readline().strip()
        if not url.startswith("http://"):
            raise SystemExit(f"serve did not start: {url!r}")
        self.host, self.port = url[len("http://"):].rstrip("/").rsplit(":", 1)
        self.banner = self.process.stdout.readline().strip()

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        rest = self.process.communicate(timeout=120)[0]
        return self.process.returncode, rest.strip()


def client(server, path, bodies, stop_at, record):
    connection = http.client.HTTPConnection(server.host, int(server.port), timeout=60)
    index = 0
    while time.perf_counter() < stop_at:
        body = bodies[index % len(bodies)]
        index += 1
        started = time.perf_counter()
        try:
            connection.request("POST", path, body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            connection.close()
            connection = http.client.HTTPConnection(server.host, int(server.port), timeout=60)
        record.append((time.perf_counter() - started, ok))
    connection.close()


def load(server, model_name, bodies, clients, seconds, memory=None):
    """`clients` threads for `seconds`; the server's RSS appended to `memory` every
    `MEMORY_EVERY` seconds while they run."""
    path = f"/v1/models/{model_name}:predict"
    records = [[] for _ in range(clients)]
    stop_at = time.perf_counter() + seconds
    threads = [threading.Thread(target=client, args=(server, path, bodies, stop_at, records[i])) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    while memory is not None and time.perf_counter() < stop_at:
        time.sleep(min(MEMORY_EVERY, max(0.0, stop_at - time.perf_counter())))
        memory.append(rss_mib(server.process.pid))
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    done = [entry for record in records for entry in record]
    latencies = sorted(seconds for seconds, ok in done if ok)
    errors = sum(1 for _, ok in done if not ok)
    return {
        "requests/s": len(latencies) / elapsed, "images/s": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "errors": errors, "requests": len(done),
    }


def run_setting(model, name, flags, bodies, args):
    server = Server(model, flags)
    load(server, name, bodies, args.clients, args.warmup)  # tracing, the batch shapes, the threads
    memory = [rss_mib(server.process.pid)]
    figures = load(server, name, bodies, args.clients, args.seconds, memory)
    figures["rss_start_mib"], figures["rss_end_mib"], figures["rss_mib"] = memory[0], memory[-1], memory
    code, closing = server.stop()
    figures["exit"] = code
    return server.banner, figures, closing


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a SavedModel folder or run directory (default: the default job's network, untrained)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--signature", choices=("serving_default", "image_bytes"), default="serving_default")
    parser.add_argument("--setting", action="append", default=[], metavar="MAX_BATCH:TIMEOUT_MS",
                        help="a batching setting to measure besides off and the defaults (repeatable)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        model = pathlib.Path(args.model) if args.model else export_default_model(pathlib.Path(scratch) / "googlenet")
        name = "googlenet"
        bodies = request_bodies(args.signature, args.image_size, 64)
        settings = {"off": ["--no-batching"], "on": []}
        for setting in args.setting:
            size, timeout = setting.split(":")
            settings[f"on {size}/{timeout}ms"] = ["--max-batch-size", size, "--batch-timeout-ms", timeout]
        print(f"serve under load: {args.clients} clients, {args.seconds:g} s per setting, one {args.image_size}x"
              f"{args.image_size} image per request ({args.signature}, {len(bodies[0]) / 1024:.0f} KiB bodies)")
        print(f"machine: {machine.describe_machine()}")
        print(f"python: {sys.version.split()[0]}, pid {os.getpid()}")
        results = {}
        for label, flags in settings.items():
            banner, figures, closing = run_setting(model, name, ["--model-name", name, *flags], bodies, args)
            results[label] = figures
            print(f"{label}: {banner}")
            print(f"  {figures['requests/s']:.1f} requests/s, {figures['images/s']:.1f} images/s, p50 "
                  f"{figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, errors {figures['errors']} of "
                  f"{figures['requests']}, server memory {figures['rss_start_mib']:.0f} -> {figures['rss_end_mib']:.0f} MiB, "
                  f"exit {figures['exit']}", flush=True)
            print(f"  server memory every {MEMORY_EVERY} s, MiB: {' '.join(f'{m:.0f}' for m in figures['rss_mib'])}")
            print(f"  {closing}", flush=True)
    off, on = results["off"]["images/s"], results["on"]["images/s"]
    print(f"off_images/s={off:.1f} on_images/s={on:.1f} ratio={on / off:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
