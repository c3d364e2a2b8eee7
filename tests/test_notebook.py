"""notebooks/walkthrough.ipynb: stored without outputs, and it runs top to bottom in a fresh kernel."""
import glob
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))


def _read(path):
    nbformat = pytest.importorskip("nbformat", reason="nbformat (the test extra) reads notebooks")
    return nbformat.read(path, as_version=4)


def test_there_is_a_walkthrough():
    assert os.path.join(ROOT, "notebooks", "walkthrough.ipynb") in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_is_stored_without_outputs(path):
    """Outputs are made by running it, never committed: a diff then shows only code."""
    code = [c for c in _read(path).cells if c.cell_type == "code"]
    assert len(code) >= 8
    stored = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count") is not None]
    assert not stored, f"code cells {stored} of {os.path.basename(path)} have outputs; clear them before committing"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_top_to_bottom(path, monkeypatch):
    """Every cell in order in a fresh python3 kernel (this Python: jupyter_client runs a spec's `python` as
    sys.executable), on generated data shrunk by ELEC576_NOTEBOOK_QUICK=1; any error fails the test."""
    nbclient = pytest.importorskip("nbclient", reason="nbclient (the test extra) executes notebooks")
    pytest.importorskip("ipykernel", reason="ipykernel (the test extra) is the notebook's kernel")
    monkeypatch.setenv("ELEC576_NOTEBOOK_QUICK", "1")
    nb = _read(path)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": ROOT}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on the first error
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
