import json
import os
import re
import runpy
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

import runs

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # two minutes of tracing; the script's own flags are checked by test_readme
def test_profile_step_prints_the_ops_of_a_training_step():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/profile_step.py"), "--variant", "paper", "--image-size", "64",
         "--batch-size", "2", "--steps", "1", "--top", "60"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    runtime_line, *lines = result.stdout.strip().splitlines()
    assert runtime_line == runs.RUNTIME_LINE
    assert lines[0].startswith("paper, 64x64, batch 2, ")
    assert lines[1].startswith("machine: ") and " cores, " in lines[1]
    assert re.match(r"wall \d+ ms per step \([\d.]+ images/s", lines[2])
    assert re.match(r"summed op time \d+ ms per step", lines[3])
    rows = [re.match(r"\s*([\d.]+) ms\s+([\d.]+)%  (\S+)$", line) for line in lines[4:]]
    assert len(rows) > 10 and all(rows), lines
    shares = [float(row.group(2)) for row in rows]
    assert shares == sorted(shares, reverse=True) and 90 < sum(shares) <= 100.1
    op_types = {row.group(3) for row in rows}
    # The paper variant's step: convolutions, and LRN with its gradient compiled by XLA
    # (see LocalResponseNormalization); no executor frames.
    assert "XlaCompiledFunction" in op_types and any("Conv2DBackpropFilter" in op for op in op_types)
    assert not {"LRN", "LRNGrad"} & op_types
    assert not any("::" in op or op.startswith("__") for op in op_types)


def test_throughput_prints_a_row_per_variant_with_its_ceiling():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/throughput.py"), "--variants", "bn", "--image-size", "64",
         "--batch-size", "2", "--repeats", "1", "--seconds", "0.2", "--no-float32", "--no-saved-model",
         "--precision", "float32"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    runtime_line, *lines = result.stdout.strip().splitlines()
    assert runtime_line == runs.RUNTIME_LINE
    assert result.stderr == "measuring bn in float32 ...\n"  # TensorFlow's start-up lines are not there
    assert lines[0].startswith("GoogLeNet, 64x64, batch 2, ")
    assert re.match(r"machine: .+, \d+ cores, ", lines[1])
    assert re.match(r"matmul ceiling \(4096\^2\): bfloat16 [\d.]+ ", lines[2])
    assert lines[3] == "precision for bn: float32 (asked for)"
    row = next(line for line in lines if line.startswith("| bn | float32 |"))
    train, low, high, tflops = map(float, re.match(
        r"\| bn \| float32 \| ([\d.]+) \(([\d.]+)-([\d.]+)\) \| ([\d.]+) \(\d+%\)", row).groups())
    assert low <= train <= high  # the median of the rounds, between their extremes
    macs = float(re.match(r"MACs per image: ([\d.]+) G training \(three heads\)", lines[-1]).group(1))
    # A training step is 3 passes (forward, two backward) of 2 FLOPs per MAC.
    assert tflops == pytest.approx(train * 6 * macs * 1e9 / 1e12, rel=0.02, abs=2e-3)


def test_lrn_benchmark_times_both_paths_and_they_agree():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/lrn.py"), "--shapes", "2x4x4x12", "--repeats", "2"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    row = result.stdout.strip().splitlines()[-1]
    match = re.match(r"\| 2x4x4x12 \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)x \| ([\d.e+-]+) / ([\d.e+-]+) \|$", row)
    assert match, row
    # bfloat16 outputs: the two paths differ by rounding, within bfloat16's resolution.
    assert float(match.group(4)) < 1e-2 and float(match.group(5)) < 2e-2


def test_lrn_benchmark_rejects_a_bad_shape(capsys):
    # Its parser, in this process (not as __main__): the refusal needs no TensorFlow start.
    lrn = runpy.run_path(str(ROOT / "benchmarks/lrn.py"))
    with pytest.raises(SystemExit) as exited:
        lrn["main"](["--shapes", "32x56x56"])
    assert exited.value.code == 2 and "Received: '32x56x56'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A run directory as training leaves it: model.keras (untrained) and config.json."""
    from inception_tf import GoogLeNet, export_saved_model
    from inception_tf.modeling import model_files

    run_dir = tmp_path_factory.mktemp("run")
    model = GoogLeNet(num_classes=10, input_shape=(64, 64, 3), variant="bn")
    model_files.save_keras(model, run_dir / "model.keras", [f"class {i}" for i in range(10)])
    export_saved_model(model, run_dir / "saved_model")
    (run_dir / "config.json").write_text('{"data": {"dataset": "fashion_mnist", "data_dir": null}}\n')
    return run_dir


def test_predict_batch_times_both_paths_on_the_same_files(small_run):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/predict_batch.py"), "--model", str(small_run / "saved_model"),
         "--images", "24", "--batch-size", "8", "--rounds", "2"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("predict on 24 image files, ") and lines[0].endswith("batch 1 against batch 8")
    assert re.match(r"machine: .+, \d+ cores, ", lines[1])
    assert sum(bool(re.match(r"round \d, batch (1|8): [\d.]+ images/s$", line)) for line in lines) == 4
    one, many, speedup = map(float, re.match(
        r"batch1_images/s=([\d.]+) batch8_images/s=([\d.]+) speedup=([\d.]+)$", lines[-1]).groups())
    rounds = {b: [float(x) for x in re.findall(rf"round \d, batch {b}: ([\d.]+) images/s", result.stdout)] for b in (1, 8)}
    assert one == pytest.approx(statistics.median(rounds[1]), abs=0.051)
    assert many == pytest.approx(statistics.median(rounds[8]), abs=0.051)
    assert speedup == pytest.approx(many / one, rel=0.01)


@pytest.mark.slow  # three LiteRT conversions and a SavedModel export: two minutes
def test_litert_formats_reports_every_format(small_run, tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/litert_formats.py"), "--run-dir", str(small_run), "--limit", "40",
         "--calibration-images", "8", "--calls", "2", "--rounds", "2", "--json", str(tmp_path / "f.json")],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert [row.split(" | ")[0] for row in rows[1:]] == ["| SavedModel", "| LiteRT float32", "| LiteRT float16", "| LiteRT int8"]
    figures = json.loads((tmp_path / "f.json").read_text())
    assert figures["test_images"] == 40 and figures["formats"]["SavedModel"]["max_abs_diff"] == 0.0
    assert figures["formats"]["LiteRT float32"]["max_abs_diff"] < 1e-4
    assert figures["formats"]["LiteRT int8"]["bytes"] < figures["formats"]["LiteRT float32"]["bytes"] / 3
    assert all(f["latency"]["median_ms"] > 0 for f in figures["formats"].values())


@pytest.mark.slow  # three short training runs; tests/tasks/test_preemption.py checks the same resume
def test_preemption_stops_resumes_and_compares(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/preemption.py"), "--rounds", "1", "--seed", "0", "--",
         "--dataset", "fashion_mnist", "--limit", "1024", "--epochs", "3", "--batch-size", "32",
         "--image-size", "64", "--test-crops", "1"],
        capture_output=True, text=True, cwd=ROOT, timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("machine: ") and re.match(r"uninterrupted: sha256 [0-9a-f]{64}", lines[1])
    assert re.match(r"round 1: SIGTERM at epoch 2 of 3, step \d+ of 29; exit after [\d.]+ s; .* identical$", lines[2])
    assert re.match(r"grace_s_max=[\d.]+ identical=1/1$", lines[-1])


def test_peers_stand_in_times_tensorflows_default_as_an_avx2_cpu_gets_it(monkeypatch):
    monkeypatch.setenv("INCEPTION_TF_RUNTIME", "default")  # nothing to time
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as `python benchmarks/peers.py` has it
    import peers

    args = peers.argparse.Namespace(workloads=[(64, 2)], seconds=1.0, avx2_stand_in=True, torch_python=None)
    figures = peers.plan(args)
    defaults = [environment for label, _, environment in figures if "TensorFlow's default runtime" in label]
    assert defaults == [{"TF_ENABLE_ONEDNN_OPTS": "0"}] * 3  # the peer and both variants
    args.avx2_stand_in = False
    assert [environment for label, _, environment in peers.plan(args) if "default runtime" in label] == [{}] * 3
    assert not [label for label, _, _ in figures if "PyTorch" in label]


def test_peers_finds_pytorch_only_where_it_is_importable(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import peers

    assert peers.torch_python("/venv/bin/python") == "/venv/bin/python"
    monkeypatch.setattr(peers.importlib.util, "find_spec", lambda name: None)
    assert peers.torch_python(None) is None and "torch and torchvision are not importable here" in capsys.readouterr().out
    monkeypatch.setattr(peers.importlib.util, "find_spec", lambda name: object())
    assert peers.torch_python(None) == sys.executable


@pytest.mark.slow  # five training processes
def test_peers_reports_every_figure_against_the_tutorial_model(tmp_path):
    out = tmp_path / "peers.json"
    # A stand-in for a Python with PyTorch: it answers as benchmarks/torch_googlenet.py does.
    fake_torch = tmp_path / "torch-python"
    fake_torch.write_text('#!/bin/sh\necho \'peers-figure: {"images_per_second": 12.5, "precision": "float32", "onednn": true}\'\n')
    fake_torch.chmod(0o755)
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/peers.py"), "--workloads", "64/2", "--rounds", "1", "--seconds", "0.3",
         "--avx2-stand-in", "--json", str(out), "--torch-python", str(fake_torch)],
        capture_output=True, text=True, check=True, cwd=ROOT,
        env={**os.environ, "INCEPTION_TF_RUNTIME": "default", "INCEPTION_TF_CACHE_DIR": str(tmp_path)},
    )
    assert "(oneDNN limited to AVX2 by ONEDNN_MAX_CPU_ISA)" in result.stdout
    rows = [line.split(" | ") for line in result.stdout.splitlines() if line.startswith("| ") and "images/s" not in line
            and not line.startswith("|---")]
    assert len(rows) == 6, result.stdout
    by_label = {row[0].lstrip("| "): row for row in rows}
    tutorial = float(by_label["tutorial, TensorFlow's default runtime, float32"][3])
    assert by_label["torchvision googlenet, PyTorch eager, channels_last"][1:4] == ["float32", "on", "12.5"]
    for label, row in by_label.items():
        if "TensorFlow's default runtime" in label:
            assert row[1:3] == ["float32", "off"]  # the stand-in's TensorFlow default: oneDNN off
        # Both rates printed to 0.1 (at ~15 images/s, 0.3% each) and the ratio to 0.01.
        assert float(row[5].rstrip("x |")) == pytest.approx(float(row[3]) / tutorial, abs=0.011)
    saved = json.loads(out.read_text())
    assert saved["machine"]["onednn_max_cpu_isa"] == "AVX2" and saved["table"] in result.stdout


def test_serve_load_measures_batching_off_and_on_with_the_same_clients(small_run):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/serve_load.py"), "--model", str(small_run / "saved_model"),
         "--clients", "4", "--seconds", "2", "--warmup", "0.5", "--signature", "image_bytes"],
        capture_output=True, text=True, check=True, cwd=ROOT, timeout=600,
    )
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("serve under load: 4 clients, 2 s per setting, one 64x64 image per request (image_bytes")
    assert re.match(r"machine: .+, \d+ cores, ", lines[1])
    rates = {}
    for setting, banner in (("off", "batching off"), ("on", "batching up to 16 rows, 5 ms")):
        at = lines.index(next(line for line in lines if line.startswith(f"{setting}: ")))
        assert banner in lines[at]
        figures = re.match(r"  ([\d.]+) requests/s, ([\d.]+) images/s, p50 ([\d.]+) ms, p99 ([\d.]+) ms, errors 0 of (\d+), "
                           r"server memory \d+ -> \d+ MiB, exit 0$", lines[at + 1])
        assert figures, lines[at + 1]
        rates[setting] = float(figures.group(2))
        assert float(figures.group(3)) <= float(figures.group(4)) and int(figures.group(5)) > 0
        assert lines[at + 3].startswith("  stopped: ")
    off, on, ratio = map(float, re.match(r"off_images/s=([\d.]+) on_images/s=([\d.]+) ratio=([\d.]+)$", lines[-1]).groups())
    assert (off, on) == (pytest.approx(rates["off"], abs=0.051), pytest.approx(rates["on"], abs=0.051))
    assert ratio == pytest.approx(on / off, rel=0.01)
