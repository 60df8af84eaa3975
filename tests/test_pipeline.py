"""Pipeline argument validation and failure reporting, on tiny notebooks in a temp dir."""
import json

import pytest

from occ3d_lib import pipeline
from tools.nbbuild import code, md, params, save


@pytest.fixture()
def series(tmp_path):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    save(nbdir / "01_first.ipynb", [md("# first"), params("profile = 'course'\nscale = 2"),
                                     code("import pathlib\npathlib.Path('first.txt').write_text(f'{profile} {scale}')")])
    save(nbdir / "02_second.ipynb", [params("profile = 'course'\nwords: str = 'hi'"), code("print(words)")])
    save(nbdir / "not_a_notebook_of_the_series.ipynb", [params("x = 1")])
    return nbdir


def run(series, tmp_path, *args):
    return pipeline.main([*args, "--notebooks-dir", str(series), "--runs-dir", str(tmp_path / "runs")])


def test_discovery_and_parameters(series):
    names = [p.name for p in pipeline.discover_notebooks(series)]
    assert names == ["01_first.ipynb", "02_second.ipynb"]
    assert list(pipeline.notebook_parameters(series / "01_first.ipynb")) == ["profile", "scale"]
    assert list(pipeline.notebook_parameters(series / "02_second.ipynb")) == ["profile", "words"]


def test_select_by_number_name_and_from(series):
    paths = pipeline.discover_notebooks(series)
    assert [p.stem for p in pipeline.select_notebooks(paths, only=["2"])] == ["02_second"]
    assert [p.stem for p in pipeline.select_notebooks(paths, only=["01_first"])] == ["01_first"]
    assert [p.stem for p in pipeline.select_notebooks(paths, start="02")] == ["02_second"]


def test_parse_overrides():
    assert pipeline.parse_overrides(["a=1", "b=x y", "c=[1, 2]", "d='s'"]) == {"a": 1, "b": "x y", "c": [1, 2], "d": "s"}
    with pytest.raises(pipeline.PipelineUsageError):
        pipeline.parse_overrides(["novalue"])
    with pytest.raises(pipeline.PipelineUsageError):
        pipeline.parse_overrides(["1bad=3"])


@pytest.mark.parametrize("args, message", [
    (["--profile", "fast"], "valid profiles: smoke, course, paper"),
    (["--profile", "smoke", "--only", "07"], "the series has: 01_first, 02_second"),
    (["--profile", "smoke", "-p", "nope=1"], "valid: profile, scale, words"),
    (["--profile", "smoke", "-p", "broken"], "key=value"),
])
def test_usage_errors_exit_2_and_list_what_exists(series, tmp_path, capsys, args, message):
    assert run(series, tmp_path, *args) == 2
    assert message in capsys.readouterr().out
    assert not (tmp_path / "runs" / "smoke" / "summary.json").exists()  # nothing ran


def test_parameter_of_an_unselected_notebook_is_an_error(series, tmp_path, capsys):
    assert run(series, tmp_path, "--profile", "smoke", "--only", "02", "-p", "scale=3") == 2
    assert "unknown parameter(s) ['scale']" in capsys.readouterr().out


def test_missing_parameters_cell_is_an_error(tmp_path, capsys):
    nbdir = tmp_path / "nb"
    nbdir.mkdir()
    save(nbdir / "01_x.ipynb", [code("x = 1")])
    assert pipeline.main(["--profile", "smoke", "--notebooks-dir", str(nbdir), "--runs-dir", str(tmp_path / "r")]) == 2
    assert "no cell tagged 'parameters'" in capsys.readouterr().out


def test_runs_in_order_injects_profile_and_writes_summary(series, tmp_path):
    assert run(series, tmp_path, "--profile", "smoke", "-p", "scale=5") == 0
    assert (series / "first.txt").read_text() == "smoke 5"  # executed with cwd = notebooks dir
    out = tmp_path / "runs" / "smoke"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["profile"] == "smoke"
    assert [summary["notebooks"][k]["status"] for k in ("01_first", "02_second")] == ["ok", "ok"]
    assert (out / "01_first.ipynb").exists() and (out / "02_second.ipynb").exists()
    assert not list(out.glob(".*partial*"))


def test_failure_stops_and_names_notebook_and_cell(tmp_path, capsys):
    nbdir = tmp_path / "nb"
    nbdir.mkdir()
    save(nbdir / "01_ok.ipynb", [params("profile = 'course'"), code("a = 1")])
    save(nbdir / "02_broken.ipynb", [md("# broken"), params("profile = 'course'"), code("b = 2"),
                                     code("raise RuntimeError('deliberate failure')")])
    save(nbdir / "03_never.ipynb", [params("profile = 'course'"), code("c = 3")])
    rc = pipeline.main(["--profile", "smoke", "--notebooks-dir", str(nbdir), "--runs-dir", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert rc == 1
    assert "FAILED in notebook 02_broken" in out and "RuntimeError: deliberate failure" in out
    summary = json.loads((tmp_path / "runs" / "smoke" / "summary.json").read_text())["notebooks"]
    assert summary["01_ok"]["status"] == "ok" and summary["02_broken"]["status"] == "failed"
    assert "03_never" not in summary  # stopped at the first failure
    # papermill injects a cell after `parameters`, so the failing cell's index in the executed copy is 4
    assert summary["02_broken"]["cell"] is not None
    assert "cell " + str(summary["02_broken"]["cell"]) in out
    runs = tmp_path / "runs" / "smoke"
    assert (runs / "02_broken.failed.ipynb").exists() and not (runs / "02_broken.ipynb").exists()


def test_publish_copies_a_finished_run_and_refuses_a_partial_one(tmp_path):
    import json

    from occ3d_lib.publish import main, publish_run

    run = tmp_path / "repo" / "runs" / "course"
    (run / "figures").mkdir(parents=True)
    (run / "checkpoints" / "teacher-abcd").mkdir(parents=True)
    (run / "checkpoints" / "teacher-abcd" / "history.json").write_text(
        json.dumps({"history": [{"step": 400, "seconds": 240.0}]}))
    (run / "checkpoints" / "teacher-abcd" / "final.pt").write_bytes(b"x")
    (run / "figures" / "grid_none.png").write_bytes(b"png")
    (run / "figures" / "unused.png").write_bytes(b"png")
    (run / "report.md").write_text("# Report\n![grid](figures/grid_none.png)\n")
    books = {"00_introduction": {"status": "ok", "seconds": 5.0, "output": str(run / "00_introduction.ipynb")}}
    (run / "summary.json").write_text(json.dumps({"profile": "course", "notebooks": books}))
    docs = tmp_path / "repo" / "docs"
    publish_run(run, docs, "course", root=tmp_path / "repo", note="resumed once")
    summary = json.loads((docs / "course_summary.json").read_text())
    assert summary["note"] == "resumed once"
    assert summary["notebooks"]["00_introduction"]["output"] == "runs/course/00_introduction.ipynb"
    assert summary["stages"] == [{"stage": "teacher", "steps": 400, "seconds": 240.0, "s_per_step": 0.6}]
    assert (docs / "course_report.md").read_text() == "# Report\n![grid](course_figures/grid_none.png)\n"
    assert sorted(p.name for p in (docs / "course_figures").iterdir()) == ["grid_none.png"]

    books["04_mopi_multi_occlusion"] = {"status": "failed", "seconds": 60.0}
    (run / "summary.json").write_text(json.dumps({"profile": "course", "notebooks": books}))
    assert main(["--runs-dir", str(tmp_path / "repo" / "runs"), "--docs-dir", str(docs)]) == 2
    assert json.loads((docs / "course_summary.json").read_text())["notebooks"].keys() == {"00_introduction"}
