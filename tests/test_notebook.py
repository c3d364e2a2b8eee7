"""notebooks/walkthrough.ipynb: stored with the outputs of one clean top-to-bottom run (so that GitHub and Colab show
its figures and numbers), and it runs top to bottom in a fresh kernel."""
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
def test_stored_outputs_come_from_one_clean_run(path):
    """Every code cell ran once, in order, in one kernel (execution counts 1, 2, 3, ...), none raised, and the
    figures are there: what a reader sees on GitHub is what running it top to bottom gives."""
    code = [c for c in _read(path).cells if c.cell_type == "code"]
    assert len(code) >= 8
    counts = [c.get("execution_count") for c in code]
    assert counts == list(range(1, len(code) + 1)), f"execution counts {counts}: rerun it top to bottom, then save"
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3  # Figure 1, the filters, the projections


def test_the_notebook_opens_with_a_colab_badge():
    first = _read(NOTEBOOKS[0]).cells[0]
    assert first.cell_type == "markdown" and "colab.research.google.com/github/" in first.source


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
