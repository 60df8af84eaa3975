"""Committed notebooks follow the series' conventions (docs/contributing.md)."""
import json
from pathlib import Path

import pytest

from occ3d_lib import pipeline
from tools import notebook_outputs

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_series_is_numbered_from_00():
    assert NOTEBOOKS and NOTEBOOKS[0].name == "00_introduction.ipynb"
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    assert numbers == list(range(len(numbers)))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_conventions(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert notebook_outputs.offending_cells(nb) == [], "outputs committed: run `make strip-notebooks`"
    params = pipeline.notebook_parameters(path)
    assert "profile" in params and "OCC3D_PROFILE" in params["profile"], \
        "the parameters cell must default `profile` to os.environ OCC3D_PROFILE"
    text = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert "In this notebook you will" in text
    assert "## Summary" in text and "## Exercises" in text


TRACK_PARAMETERS = ("run_dir", "face_model", "dataset", "teacher", "facenet", "seed")


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.name[:2] != "00"], ids=lambda p: p.stem)
def test_series_notebooks_take_the_track_parameters(path):
    params = pipeline.notebook_parameters(path)
    missing = [k for k in TRACK_PARAMETERS if k not in params]
    assert not missing, f"{path.name}: parameters cell lacks {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_parses_every_parameter_line(path, caplog):
    """papermill's own parser must understand every line (it silently drops the ones it cannot)."""
    import nbformat
    from papermill.translators import PythonTranslator

    nb = nbformat.read(str(path), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", []))
    with caplog.at_level("WARNING"):
        found = PythonTranslator.inspect(cell)
    names = [p.name for p in found]
    assert sorted(names) == sorted(pipeline.notebook_parameters(path)), caplog.text


def test_output_check_detects_outputs(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": "1", "outputs": [{"output_type": "stream"}],
                     "execution_count": 1, "metadata": {}},
                    {"cell_type": "code", "source": "# NBVAL_CHECK_OUTPUT\n1", "outputs": [{}],
                     "execution_count": 2, "metadata": {}}], "metadata": {}}
    assert notebook_outputs.offending_cells(nb) == [0]
    assert notebook_outputs.offending_cells(notebook_outputs.strip(nb)) == []
    assert nb["cells"][1]["outputs"] == [{}]  # marked cell kept
