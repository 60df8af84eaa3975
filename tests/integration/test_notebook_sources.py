"""Every notebook is authored as a jupytext percent-format script notebooks/NN_*.py; the committed
.ipynb must match it cell for cell (`make notebooks` rebuilds them)."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tools import notebooks

ROOT = Path(__file__).resolve().parents[2]
IPYNB = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", IPYNB, ids=lambda p: p.stem)
def test_every_notebook_has_a_percent_source(path):
    src = path.with_suffix(".py")
    assert src.is_file(), f"{path.name} has no source {src.name}; write it (jupytext --to py:percent) and commit it"
    assert "format_name: percent" in src.read_text(), f"{src.name} is not a percent-format script"


@pytest.mark.parametrize("src", notebooks.sources(), ids=lambda p: p.stem)
def test_committed_notebook_matches_its_source(src):
    assert not notebooks.differences(src), "\n".join(notebooks.differences(src))


def test_a_changed_source_is_detected(tmp_path, monkeypatch):
    src = notebooks.sources()[0]
    copy = tmp_path / src.name
    copy.write_text(src.read_text().replace("# %% [markdown]", "# %% [markdown]\n# an extra line", 1))
    (tmp_path / src.with_suffix(".ipynb").name).write_text(src.with_suffix(".ipynb").read_text())
    monkeypatch.setattr(notebooks, "ROOT", tmp_path)
    problems = notebooks.differences(copy)
    assert problems and "cell 0" in problems[0]


def test_build_keeps_stored_outputs_of_unchanged_cells():
    src = next(p for p in notebooks.sources() if p.name.startswith("04_"))
    old = nbformat.read(src.with_suffix(".ipynb"), as_version=4)
    new = notebooks.notebook_from_source(src, old)
    assert [c.get("outputs") for c in new.cells] == [c.get("outputs") for c in old.cells]
    assert any(c.get("outputs") for c in new.cells)
