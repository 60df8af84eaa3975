"""The series as learners meet it: JupyterLab from the project's venv, driven by a headless Chromium.

Checks that the launcher offers the series and the project's kernel, that notebook 01's face explorer,
notebook 02's occlusion explorer and notebook 05's photo explorer render as live widgets (no "Error
displaying widget") with the installed ipywidgets / jupyterlab-widgets, that moving a slider or picking
an occluder redraws the picture, and that a file that is not a photo is one line. Run with
``make test-browser`` (a few minutes); screenshots go to runs/browser/ (``SCREENSHOTS=docs``
refreshes the ones docs/jupyterlab.md shows). Every wait is on a DOM or kernel condition.
"""
from __future__ import annotations

import base64
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from selenium.common.exceptions import JavascriptException, StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tools.lab import LabServer, project_kernel_problem, series_notebooks

KERNEL_DISPLAY_NAME = "Python 3 (ipykernel)"
WIDGET_ERROR = "Error displaying widget"
SHOT_WIDTH = 760  # px of the PNGs kept in docs/

# The page's JupyterLab application object (exposed by --LabApp.expose_app_in_browser).
JS_NOTEBOOK_READY = """
const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
const k = w && w.context && w.context.path === arguments[0] && w.sessionContext && w.sessionContext.session
          && w.sessionContext.session.kernel;
return k && k.status === 'idle' && w.content.widgets.length > 0
       ? {kernel: k.name, display: w.sessionContext.kernelDisplayName, dialog: !!document.querySelector('.jp-Dialog')}
       : null;
"""
# Select every cell from the first to the one containing arguments[0], start running them (the notebook's
# "Run Selected Cells") and return at once; window.__occ3dRun gets the outcome (errors included) once they
# all finished. Polled by run_through: one long blocking call would outlast the WebDriver's HTTP timeout.
JS_RUN_THROUGH = """
const marker = arguments[0];
const nb = window.jupyterapp.shell.currentWidget.content;
window.__occ3dRun = null;
const idx = nb.widgets.findIndex(c => c.model.type === 'code' && c.model.sharedModel.getSource().includes(marker));
if (idx < 0) { window.__occ3dRun = {error: 'no code cell contains ' + marker}; return; }
nb.activeCellIndex = 0;
nb.deselectAll();
nb.extendContiguousSelectionTo(idx);
window.jupyterapp.commands.execute('notebook:run-cell').then(ok => {
  const errors = [];
  nb.widgets.slice(0, idx + 1).forEach((c, i) => {
    if (c.model.type !== 'code') return;
    for (const o of c.model.outputs.toJSON())
      if (o.output_type === 'error') errors.push('cell ' + i + ': ' + o.ename + ': ' + o.evalue);
  });
  nb.activeCellIndex = idx;
  nb.deselectAll();
  Promise.resolve(nb.scrollToItem(idx, 'start')).then(() => { window.__occ3dRun = {idx: idx, ok: ok, errors: errors}; });
}, e => { window.__occ3dRun = {error: String(e)}; });
"""
JS_CELL_NODE = "return window.jupyterapp.shell.currentWidget.content.widgets[arguments[0]].node;"
JS_KERNEL_IDLE = """
const w = window.jupyterapp.shell.currentWidget;
const k = w.sessionContext.session && w.sessionContext.session.kernel;
return !!k && k.status === 'idle';
"""


def wait_for(driver: Any, what: str, cond: Callable[[Any], Any], timeout: float = 120.0) -> Any:
    """``cond(driver)`` once it is truthy (polled); fails naming ``what`` (and the last page-side error,
    if any) after ``timeout`` seconds."""
    last: list[Exception] = []

    def guarded(d: Any) -> Any:
        try:
            return cond(d)
        except (StaleElementReferenceException, JavascriptException) as e:  # e.g. an output being redrawn
            last[:] = [e]
            return None

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(guarded)
    except TimeoutException:
        why = f" (last error: {str(last[0]).splitlines()[0]})" if last else ""
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{why}") from None


def save_png(png: bytes, path: Path, width: int = SHOT_WIDTH, trim: bool = False) -> None:
    """Write a screenshot (``trim``: without its white right and bottom margins) scaled to at most
    ``width`` px and reduced to 128 colours, small enough for docs/."""
    im = Image.open(io.BytesIO(png)).convert("RGB")
    if trim:  # columns / rows with more than a hairline of non-white pixels
        ink = (np.asarray(im) < 245).any(axis=2)
        cols, rows = np.flatnonzero(ink.sum(axis=0) > 3), np.flatnonzero(ink.sum(axis=1) > 3)
        if len(cols) and len(rows):
            im = im.crop((0, 0, min(im.width, cols[-1] + 12), min(im.height, rows[-1] + 12)))
    if im.width > width:
        im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
    im.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


def img_pixels(src: str) -> np.ndarray:
    """(H, W, 3) uint8 pixels of a ``data:image/png;base64,...`` image."""
    assert src.startswith("data:image/png;base64,"), f"the explorer's picture is not an inline PNG: {src[:60]!r}"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"))


def open_notebook(driver: Any, lab: LabServer, name: str) -> None:
    """Open ``name`` in its own fresh workspace; wait until its kernel is idle; check it is the project's."""
    driver.set_window_size(1280, 1400)  # tall enough for a whole explorer in one element screenshot
    driver.get(lab.url(f"lab/workspaces/{name.split('_')[0]}/tree/{name}"))
    info = wait_for(driver, f"{name} to open with an idle kernel", lambda d: d.execute_script(JS_NOTEBOOK_READY, name))
    assert not info["dialog"], f"opening {name} shows a dialog (kernel selection?): expected the python3 kernel"
    assert info["kernel"] == "python3" and info["display"] == KERNEL_DISPLAY_NAME, info
    kernels = [p for p in lab.kernel_processes() if "ipykernel_launcher" in " ".join(p.cmdline())]
    assert kernels, "no ipykernel process under the JupyterLab server"
    for p in kernels:
        assert Path(p.cmdline()[0]).absolute() == Path(sys.executable).absolute(), (
            f"the kernel runs {p.cmdline()[0]}, not the project's {sys.executable}")


def run_through(driver: Any, marker: str, timeout: float = 900.0) -> WebElement:
    """Run the notebook's cells up to the code cell containing ``marker`` (at most ``timeout`` seconds);
    return that cell's node."""
    driver.execute_script(JS_RUN_THROUGH, marker)
    res = wait_for(driver, f"the cells up to {marker!r} to run", lambda d: d.execute_script("return window.__occ3dRun;"),
                   timeout)
    assert "error" not in res, res.get("error")
    assert res["ok"] and not res["errors"], f"cells failed before the explorer: {res['errors']}"
    return driver.execute_script(JS_CELL_NODE, res["idx"])


def rendered_widget(driver: Any, cell: WebElement, selector: str) -> WebElement:
    """The widget matching ``selector`` in ``cell``'s output once it shows its picture; fails at once on
    "Error displaying widget", and with the output's text if the widget never renders."""
    def ready(_: Any) -> WebElement | None:
        text = cell.text
        assert WIDGET_ERROR not in text, f"the widget did not render: {text[text.index(WIDGET_ERROR):][:200]!r}"
        found = cell.find_elements(By.CSS_SELECTOR, selector)
        return found[0] if found and found[0].find_elements(By.CSS_SELECTOR, ".widget-output img") else None

    try:
        return wait_for(driver, f"the widget {selector} to render", ready, timeout=90)
    except AssertionError as e:
        out = cell.find_elements(By.CSS_SELECTOR, ".jp-OutputArea")
        raise AssertionError(f"{e}; the cell's output reads: {(out[0].text if out else '')[:400]!r}") from None


def slider(widget: WebElement, label: str) -> WebElement:
    """The ipywidgets slider whose description is ``label``."""
    return widget.find_element(By.XPATH, f".//div[contains(@class, 'widget-slider')]"
                                         f"[.//label[normalize-space()='{label}']]")


def move_slider(driver: Any, widget: WebElement, label: str, dx: int) -> tuple[str, str]:
    """Drag slider ``label``'s handle by ``dx`` px as a user would; returns its readout before and after."""
    s = slider(widget, label)
    readout = s.find_element(By.CSS_SELECTOR, ".widget-readout")
    before = readout.text
    handle = s.find_element(By.CSS_SELECTOR, ".noUi-handle")
    ActionChains(driver).move_to_element(handle).click_and_hold().move_by_offset(dx // 2, 0) \
        .move_by_offset(dx - dx // 2, 0).release().perform()
    after = wait_for(driver, f"slider {label!r} to move", lambda _: readout.text != before and readout.text, 20)
    return before, after


def picture(widget: WebElement) -> str | None:
    """The ``src`` (an inline PNG) of the picture the widget's output shows; None while the output is
    being replaced (the element found went stale before its ``src`` could be read)."""
    try:
        return widget.find_element(By.CSS_SELECTOR, ".widget-output img").get_attribute("src")
    except StaleElementReferenceException:
        return None


def redrawn(driver: Any, widget: WebElement, old: str | None = None) -> str:
    """The widget's picture once it differs from ``old`` (any picture when ``old`` is None) and stays the
    same over two polls 0.5 s apart with an idle kernel (a dragged slider with continuous updates queues
    several redraws, and an explorer may redraw once after it first appears)."""
    last: dict[str, Any] = {"src": None, "since": 0.0}

    def settled(d: Any) -> str | None:
        src = picture(widget)
        if not src or src == old or not d.execute_script(JS_KERNEL_IDLE):
            last["src"] = None
            return None
        if src != last["src"]:
            last.update(src=src, since=time.monotonic())
            return None
        return src if time.monotonic() - last["since"] >= 0.5 else None

    return wait_for(driver, "the picture to be redrawn", settled, timeout=90)


def widget_screenshot(driver: Any, widget: WebElement, path: Path) -> None:
    """Scroll the notebook so that ``widget`` starts at the top of the view, then save its screenshot."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", widget)
    wait_for(driver, "the widget to be in view", lambda d: d.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight;", widget), 10)
    save_png(widget.screenshot_as_png, path, trim=True)


def check_changed(before: str, after: str, what: str) -> None:
    """Fail unless more than 1 % of the pixels of two same-sized pictures differ visibly."""
    a, b = img_pixels(before), img_pixels(after)
    assert a.shape == b.shape, f"{what}: picture size changed {a.shape} -> {b.shape}"
    changed = (np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 16).mean()
    assert changed > 0.01, f"{what}: only {changed:.2%} of the picture's pixels changed"


def test_launcher_offers_the_series_and_the_project_kernel(driver: Any, lab: LabServer, screenshots: Path) -> None:
    assert project_kernel_problem(lab) is None, project_kernel_problem(lab)
    driver.set_window_size(1440, 900)
    driver.get(lab.url("lab/workspaces/launcher"))
    card = wait_for(driver, "the launcher's notebook card", lambda d: d.find_elements(
        By.CSS_SELECTOR, f".jp-Launcher .jp-LauncherCard[title='{KERNEL_DISPLAY_NAME}']"))
    assert card[0].get_attribute("data-category") == "Notebook"
    names = series_notebooks()
    listed = wait_for(driver, "the file browser to list the series", lambda d: [
        e.text for e in d.find_elements(By.CSS_SELECTOR, ".jp-DirListing-item .jp-DirListing-itemText")
        if e.text.endswith(".ipynb")] == names and names)
    assert listed == names
    # widen the file browser, as a user would, until the notebooks' names show in full
    handle = driver.find_element(By.CSS_SELECTOR, "#jp-main-split-panel > .lm-SplitPanel-handle:not(.lm-mod-hidden)")
    ActionChains(driver).move_to_element(handle).click_and_hold().move_by_offset(130, 0).move_by_offset(130, 0) \
        .release().perform()
    wait_for(driver, "the notebooks' names to show in full", lambda d: d.execute_script(
        "return [...document.querySelectorAll('.jp-DirListing-item .jp-DirListing-itemText')]"
        ".every(e => e.scrollWidth <= e.clientWidth);"), 20)
    save_png(driver.get_screenshot_as_png(), screenshots / "lab_launcher.png", width=960)


def test_face_explorer_of_notebook_01(driver: Any, lab: LabServer, screenshots: Path) -> None:
    name = series_notebooks()[1]
    assert name.startswith("01_")
    open_notebook(driver, lab, name)
    cell = run_through(driver, "explorers.face_explorer(show)")
    w = rendered_widget(driver, cell, ".widget-interact")
    labels = [e.text for e in w.find_elements(By.CSS_SELECTOR, ".widget-slider .widget-label")]
    assert len(labels) == 13 and {"yaw", "smile", "skin_tone"} <= set(labels), labels
    old = redrawn(driver, w)  # the first picture, once it has settled
    before, after = move_slider(driver, w, "yaw", -30)
    new = redrawn(driver, w, old)
    check_changed(old, new, f"face explorer, yaw {before} -> {after}")
    assert "Traceback" not in cell.text
    widget_screenshot(driver, w, screenshots / "lab_face_explorer.png")


def test_occlusion_explorer_of_notebook_02(driver: Any, lab: LabServer, screenshots: Path) -> None:
    name = series_notebooks()[2]
    assert name.startswith("02_")
    open_notebook(driver, lab, name)
    cell = run_through(driver, "explorers.occlusion_explorer(")
    w = rendered_widget(driver, cell, ".occ3d-occlusion-explorer")
    labels = [e.text for e in w.find_elements(By.CSS_SELECTOR, ".widget-slider .widget-label")]
    assert {"size", "position x", "position y", "seed"} <= set(labels), labels
    old = redrawn(driver, w)  # the first picture, once it has settled
    before, after = move_slider(driver, w, "size", 60)
    new = redrawn(driver, w, old)
    check_changed(old, new, f"occlusion explorer, size {before} -> {after}")
    assert "Traceback" not in cell.text
    widget_screenshot(driver, w, screenshots / "lab_occlusion_explorer.png")


def choose(driver: Any, widget: WebElement, label: str, option: str) -> None:
    """Pick ``option`` in the ipywidgets dropdown whose description is ``label``, as a user would."""
    from selenium.webdriver.support.ui import Select

    box = widget.find_element(By.XPATH, f".//div[contains(@class, 'widget-dropdown')]"
                                        f"[.//label[normalize-space()='{label}']]")
    Select(box.find_element(By.TAG_NAME, "select")).select_by_visible_text(option)


def message(widget: WebElement) -> str:
    """The one-line message the photo explorer shows under its controls."""
    return widget.find_element(By.CSS_SELECTOR, ".widget-html").text


def test_photo_explorer_of_notebook_05(driver: Any, lab: LabServer, screenshots: Path, tmp_path: Path) -> None:
    """Section 11b: a shipped photo reconstructed by the teacher and SOPI, an occluder picked from the menu
    redraws it, and a file of the learner's that is not an image is one line, not a traceback."""
    name = series_notebooks()[5]
    assert name.startswith("05_")
    open_notebook(driver, lab, name)
    cell = run_through(driver, "photo.photo_explorer(")
    w = rendered_widget(driver, cell, ".occ3d-photo-explorer")
    old = redrawn(driver, w)
    assert "face found by" in message(w), message(w)
    choose(driver, w, "occluder", "sunglasses")
    new = redrawn(driver, w, old)
    check_changed(old, new, "photo explorer, occluder none -> sunglasses")
    widget_screenshot(driver, w, screenshots / "lab_photo_explorer.png")
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("these are notes, not a photo\n")
    choose(driver, w, "photo", "my file")
    box = w.find_element(By.CSS_SELECTOR, ".widget-text input")
    box.send_keys(str(not_an_image) + "\n")
    try:
        text = wait_for(driver, "the photo explorer's message about the file",
                        lambda _: str(not_an_image) in message(w) and message(w), 60)
    except AssertionError as e:
        raise AssertionError(f"{e}; the message reads {message(w)!r}, the file box {box.get_attribute('value')!r}") from None
    assert "\n" not in text.strip() and "Traceback" not in cell.text, text
    assert picture(w) == new, "the picture changed although the file was refused"


def test_server_output_is_quiet(lab: LabServer) -> None:
    """What `make lab` prints comes from this server (same command line): no warnings, no errors."""
    log = lab.log_path.read_text(errors="replace") if lab.log_path else ""
    noisy = [ln for ln in log.splitlines() if "without encryption" in ln or "Traceback" in ln
             or ln.startswith(("[W ", "[E ", "[C ")) or " WARNING " in ln or " ERROR " in ln]
    assert not noisy, "JupyterLab's output has lines a user would take for errors:\n" + "\n".join(noisy[:10])
