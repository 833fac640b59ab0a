"""Every notebook runs top to bottom through a real Jupyter kernel, as a user runs it: the
installed vidmix package, the notebook's own folder layout (figures go to a scratch copy of
`docs/images`), a fresh HOME for the data it generates."""

import glob
import os

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))


def run_notebook(path, tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "docs" / "images").mkdir(parents=True)
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    # one device, the installed package, and the kernel's own (inline) figures, as a user has
    for key in ("XLA_FLAGS", "PYTHONPATH", "MPLBACKEND"):
        monkeypatch.delenv(key, raising=False)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path / "notebooks")}})
    client.execute()
    return nb


def errors(nb) -> list[str]:
    return [f"{o.get('ename')}: {o.get('evalue')}" for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if o.get("output_type") == "error"]


def test_notebooks_exist_and_do_not_patch_sys_path():
    names = [os.path.basename(p) for p in NOTEBOOKS]
    assert "00_quickstart.ipynb" in names, names
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert "sys.path" not in source, path  # they import the installed package


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_in_a_kernel(path, tmp_path, monkeypatch):
    nb = run_notebook(path, tmp_path, monkeypatch)  # raises CellExecutionError on a failing cell
    assert not errors(nb)
    assert list((tmp_path / "docs" / "images").glob("*.png"))  # its figures were drawn
    shown = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
             if "image/png" in o.get("data", {})]
    assert shown, "the notebook shows no figure"
