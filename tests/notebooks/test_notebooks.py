"""The notebooks execute top to bottom without an error (small budgets; outputs are not checked).

Each notebook runs in a fresh kernel (nbclient + ipykernel) with a temporary working
directory, so nothing is written into the repository; figures render through the kernel's
inline backend (Agg, no display). A cell
error fails the test with the cell's traceback. The notebooks are committed without
outputs; this test never writes them back.
"""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 600  # seconds per cell: a guard against a hang, not a performance assertion

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS][:3] == [
        "01_quickstart.ipynb", "02_inspect_run.ipynb", "03_extend_dsl.ipynb"
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: strip its outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch):
    monkeypatch.delenv("MECHSYNTH_RUN", raising=False)  # 02 makes its own small run
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
