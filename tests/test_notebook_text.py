"""What the notebooks' markdown may say: no word about how the project was organised (issues, the
tracker), no file outside the repository, and every repository path it names exists."""
from __future__ import annotations

import re
from pathlib import Path

import jupytext
import pytest

from occ3d_lib import pipeline
from tools import notebooks

ROOT = Path(__file__).resolve().parents[1]
#: Files the series writes itself and keeps in the repository once a course run has made them.
WRITTEN_BY_A_RUN = {pipeline.COURSE_SUMMARY.resolve().relative_to(ROOT).as_posix()}
#: Words that belong to how the work was organised, never to a learner's text.
PROJECT_WORDS = re.compile(r"\b(issues?|tracker|helpers?|" r"refer" r"ence sec(tion)?\.?)\b(\s*#?\d+)?", re.IGNORECASE)
#: Paths that leave the repository: absolute paths, a home directory, a parent directory.
OUTSIDE = re.compile(r"(?<![\w.])(/" r"work/|/home/|/tmp/|~/|\.\./)|shared/" r"(paper|reference)")
#: A repository path in backticks, such as `docs/course_study.md` or `tests/test_train.py`.
REPO_PATH = re.compile(r"`((?:[\w.\-]+/)+[\w.\-]+\.[A-Za-z]{1,5})`")


def problems(markdown: str) -> list[str]:
    """The offending phrases of one markdown text (empty when it is clean)."""
    out = [f"names the project's organisation: {m.group(0)!r}" for m in PROJECT_WORDS.finditer(markdown)]
    out += [f"names a place outside the repository: {m.group(0)!r}" for m in OUTSIDE.finditer(markdown)]
    for m in REPO_PATH.finditer(markdown):
        path = m.group(1)
        if not path.startswith(("runs/", "data/cache/")) and path not in WRITTEN_BY_A_RUN and not (ROOT / path).exists():
            out.append(f"names a file that is not in the repository: {path!r}")
    return out


@pytest.mark.parametrize("src", notebooks.sources(), ids=lambda p: p.stem)
def test_notebook_markdown_speaks_of_the_series_only(src):
    nb = jupytext.read(src, fmt="py:percent")
    bad = [f"cell {i}: {p}" for i, c in enumerate(nb.cells) if c.cell_type == "markdown" for p in problems(c.source)]
    assert not bad, f"{src.name}: " + "; ".join(bad)


#: The forbidden phrases are assembled from pieces, so that this file itself does not say them.
_TRACKER_ITEM = "iss" + "ue 6"
_EXTERNAL_SECTION = "refer" + "ence sec. 7"
_OUTSIDE_PATH = "/" + "work/" + "shared/" + "paper/x.txt"


@pytest.mark.parametrize("text, n", [
    (f"As {_TRACKER_ITEM} asks, the embedder must reach 90 %.", 1),
    (f"see {_EXTERNAL_SECTION} for the alignment", 1),
    (f"the paper is in {_OUTSIDE_PATH}", 2),
    ("`docs/no_such_file.md` explains it", 1),
    ("`docs/course_study.md` and `runs/course/report.md` explain it", 0),
    ("The tissue of the lip is rendered.", 0),
])
def test_the_checker_catches_what_it_should(text, n):
    assert len(problems(text)) == n, problems(text)
