"""Every series notebook stops at its first (context) cell with a helpful message when a real-track
parameter names a missing file, without training or rendering anything first."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").glob("0[1-5]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_missing_real_file_stops_at_the_context_cell(path, tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill")
    monkeypatch.setenv("OCC3D_CACHE", str(tmp_path / "cache"))
    # one notebook per track parameter is enough to cover all four; cycle through them
    params = [{"face_model": str(tmp_path / "BFM_model_front.mat")}, {"teacher": str(tmp_path / "epoch_20.pth")},
              {"dataset": f"celeba:{tmp_path / 'celeba'}"}, {"facenet": "vggface2"}]
    p = params[NOTEBOOKS.index(path) % len(params)]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no FaceNet weights there
    out = tmp_path / "out.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as e:
        papermill.execute_notebook(str(path), str(out), parameters={"profile": "smoke", "run_dir": str(tmp_path / "run"), **p},
                                   cwd=str(path.parent), progress_bar=False, kernel_name="python3")
    assert e.value.ename == "FileNotFoundError"
    assert "not found" in e.value.evalue and ("Download" in e.value.evalue or "download" in e.value.evalue)
    # it stopped at the first cell that builds the context: nothing after it ran
    import nbformat

    nb = nbformat.read(str(out), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    failed = [i for i, c in enumerate(code) if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert len(failed) == 1 and "make_context" in code[failed[0]].source
    assert all(c.get("execution_count") is None for c in code[failed[0] + 1:])
    assert not (tmp_path / "cache" / "synthetic").exists()
