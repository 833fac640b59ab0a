"""Every notebook's code runs top to bottom (figures go to a scratch folder)."""

import glob
import json
import os

import matplotlib
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb"))))
def test_notebook_runs(path, tmp_path, monkeypatch):
    matplotlib.use("Agg")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "docs" / "images").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "notebooks")
    with open(path) as f:
        cells = [c for c in json.load(f)["cells"] if c["cell_type"] == "code"]
    assert cells
    namespace = {}
    for cell in cells:
        exec(compile("".join(cell["source"]), path, "exec"), namespace)
    assert list((tmp_path / "docs" / "images").glob("*.png"))
