"""The machine a measured answer holds for, read without loading TensorFlow: the CPU's
model and the instruction sets that decide how fast float32 and bfloat16 run, its cores,
the TensorFlow installed, oneDNN's instruction-set limit and the GPUs."""

import importlib.metadata
import os
import pathlib
import platform
import sys

# The instruction sets that decide how fast float32 and bfloat16 run on a CPU.
CPU_FEATURES = (
    "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16",
)
# oneDNN's own limit on the instruction sets its kernels use (unset: all the CPU has).
ONEDNN_ISA = "ONEDNN_MAX_CPU_ISA"


def cpu_info():
    """`(model name, sorted features of CPU_FEATURES this CPU reports)`."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    return model, sorted(flags & set(CPU_FEATURES))


def has_gpu():
    """An NVIDIA driver reports a GPU (read without loading TensorFlow)."""
    try:
        return any(pathlib.Path("/proc/driver/nvidia/gpus").iterdir())
    except OSError:
        return False


def gpu_details():
    """`[{"name", "compute_capability"}]` of each GPU TensorFlow sees (loads TensorFlow)."""
    import tensorflow as tf

    details = []
    for gpu in tf.config.list_physical_devices("GPU"):
        found = tf.config.experimental.get_device_details(gpu)
        details.append(
            {"name": found.get("device_name", gpu.name), "compute_capability": list(found.get("compute_capability") or (0, 0))}
        )
    return details


def cpu_machine():
    """The CPU, its cores and the TensorFlow installed, read without loading TensorFlow
    (the runtime's answers hold for these)."""
    model, features = cpu_info()
    try:
        version = importlib.metadata.version("tensorflow")
    except importlib.metadata.PackageNotFoundError:
        version = getattr(sys.modules.get("tensorflow"), "__version__", None)
    found = {"cpu": model, "cpu_features": features, "cores": os.cpu_count(), "tensorflow": version}
    if os.environ.get(ONEDNN_ISA):
        # oneDNN then runs other kernels (an AVX-512 CPU limited to AVX2 times as an AVX2
        # one does), so the answers measured without the limit do not hold.
        found["onednn_max_cpu_isa"] = os.environ[ONEDNN_ISA]
    return found


def machine(gpus=None):
    """What a measured precision holds for: another CPU, core count, GPU or TensorFlow
    measures again. `gpus` as `gpu_details()` gives them."""
    return {
        **cpu_machine(),
        "gpus": [f"{g['name']} (compute capability {'.'.join(map(str, g['compute_capability']))})" for g in gpus or []],
    }


def describe_machine(gpus=None):
    """One line for benchmark headers: CPU model, cores, instruction sets, GPUs."""
    found = machine(gpus)
    features = " ".join(found["cpu_features"]) or f"none of {', '.join(CPU_FEATURES)}"
    line = f"{found['cpu']}, {found['cores']} cores, {features}{onednn_limit(found)}"
    return line + (f"; GPUs: {', '.join(found['gpus'])}" if found["gpus"] else "; no GPU")


def onednn_limit(found):
    """` (oneDNN limited to AVX2 by ONEDNN_MAX_CPU_ISA)` for a machine (as `cpu_machine`
    gives it) measured under that limit, else ""."""
    limit = found.get("onednn_max_cpu_isa")
    return f" (oneDNN limited to {limit} by {ONEDNN_ISA})" if limit else ""
