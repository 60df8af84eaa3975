"""What the notebooks' markdown may say: no word about how the project was organised (issues, the
tracker), no file outside the repository, and every repository path it names exists."""
from __future__ import annotations

import re
from pathlib import Path

import jupytext
import pytest

from occ3d_lib import pipeline
from tools import notebooks

ROOT = Path(__file__).resolve().parents[2]
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


#: Control characters other than newline: what a LaTeX backslash becomes in a Python string that is not raw
#: ("\\big" written as "\big" is a backspace and "ig"), and what no text of the series should hold.
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


def test_no_text_of_the_series_holds_a_control_character():
    texts = [*notebooks.sources(), *ROOT.glob("occ3d_lib/**/*.py"), *ROOT.glob("docs/*.md"), ROOT / "README.md"]
    bad = [f"{p.relative_to(ROOT)}:{i}" for p in texts for i, line in enumerate(p.read_text().splitlines(), 1)
           if CONTROL.search(line)]
    assert not bad, f"control characters (a LaTeX backslash in a non-raw string?) at {bad}"
    assert CONTROL.search("KL\x08ig(") and not CONTROL.search("KL\\big(")


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


# ------------------------------------------------------------------ numbers and verdicts come from the run
#: A number with two decimals, as the run prints its errors.
TWO_DECIMALS = re.compile(r"(?<![\d.])\d+\.\d\d(?!\d)")
#: A fenced code block inside markdown (an exercise's solution): its numbers are inputs, not results.
FENCED = re.compile(r"```.*?```", re.DOTALL)
#: A verdict named in the text: quoted or in italics, e.g. *too small to count* or "fails the sanity floor".
VERDICT_WORDS = re.compile(r"[*\"'](holds[^*\"']{0,30}|does not hold[^*\"']{0,10}|too small[^*\"']{0,15}|"
                           r"fails the[^*\"']{0,20}|not measured)[*\"']")


def _paper_numbers() -> set[str]:
    from occ3d_lib.evaluation.report import PAPER

    def flat(x):
        if isinstance(x, dict):
            for v in x.values():
                yield from flat(v)
        elif isinstance(x, (tuple, list)):
            for v in x:
                yield from flat(v)
        elif isinstance(x, (int, float)):
            yield x
    return {f"{v:.2f}" for v in flat(PAPER)}


def _markdown(src) -> str:
    nb = jupytext.read(src, fmt="py:percent")
    return FENCED.sub("", "\n".join(c.source for c in nb.cells if c.cell_type == "markdown"))


@pytest.mark.parametrize("src", notebooks.sources(), ids=lambda p: p.stem)
def test_no_result_of_the_published_run_is_typed_in(src):
    """The errors, ratios and spreads of the published course run belong in a cell's output, not in the text:
    a two-decimal number of docs/course_report.md that is not one of the paper's may not appear in markdown."""
    published = ROOT / "docs" / "course_report.md"
    if not published.is_file():
        pytest.skip("no published course report")
    results = set(TWO_DECIMALS.findall(published.read_text())) - _paper_numbers()
    typed = sorted(set(TWO_DECIMALS.findall(_markdown(src))) & results)
    assert not typed, f"{src.name} types in result(s) of the published run {typed}: print them from a cell"


@pytest.mark.parametrize("src", notebooks.sources(), ids=lambda p: p.stem)
def test_the_verdicts_the_text_names_are_the_librarys(src):
    """A verdict the markdown names (a minimum effect's "too small to count", the sanity floor's "fails the
    sanity floor", ...) is one the library gives (occ3d_lib.evaluation.claims.VERDICTS)."""
    from occ3d_lib.evaluation.claims import VERDICTS

    named = {" ".join(m.group(1).split()).rstrip(",.;") for m in VERDICT_WORDS.finditer(_markdown(src))}
    unknown = sorted(v for v in named if v not in VERDICTS)
    assert not unknown, f"{src.name} names verdict(s) the library does not give: {unknown}"


def test_the_result_and_verdict_checkers_catch_what_they_should():
    assert TWO_DECIMALS.findall("SOPI 4.57 vs 4.15 px, ratio 1.1, 12.345") == ["4.57", "4.15"]
    assert FENCED.sub("", "a 0.46\n```python\nx = 0.83\n```\n") == "a 0.46\n\n"
    named = [m.group(1) for m in VERDICT_WORDS.finditer('is *too small to count*; "fails the floor" or "holds"')]
    assert named == ["too small to count", "fails the floor", "holds"]
