"""The walkthrough notebook runs as written, with its parameters made small."""

import json
import pathlib

import nbformat
from nbclient import NotebookClient

from inception_tf.startup import measured
from inception_tf.startup.precision import Workload
from runs import store_precision_answer

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "googlenet_walkthrough.ipynb"


def _parameters_cell(notebook):
    cells = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(cells) == 1, "the notebook needs exactly one cell tagged 'parameters'"
    return cells[0]


def test_notebook_runs_every_cell_with_small_parameters(tmp_path, monkeypatch):
    # The kernel finds its precision stored (the run's own is `precision="auto"`): the
    # timing is test_precision.py's.
    monkeypatch.setenv(measured.CACHE_ENV, str(tmp_path / "cache"))
    store_precision_answer(tmp_path / "cache", Workload(variant="bn", image_size=49, batch_size=32))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    cell = _parameters_cell(notebook)
    # Injected after the defaults, as papermill does: the cell itself stays as committed.
    cell.source += "\n" + "\n".join([
        "LIMIT = 320",
        "EPOCHS = 1",
        "IMAGE_SIZE = 49",
        "BATCH_SIZE = 32",
        f"RUN_DIR = {str(tmp_path / 'run')!r}",
    ])
    client = NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    outputs = "".join(
        output.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    )
    assert "120.4M" in outputs and "12.4M" in outputs  # the paper's example, computed
    assert "test accuracy" in outputs
    images = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # the augmentation grid, curves, confusion matrix, predictions
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"] == 1


def test_committed_notebook_holds_the_outputs_of_a_run():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs for cell in code[1:]), "run the notebook and commit it with its outputs"
    counts = [cell.execution_count for cell in code]
    assert counts == sorted(counts) and None not in counts, "outputs from one top-to-bottom run"
