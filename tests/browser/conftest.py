"""Fixtures for the browser test: a JupyterLab server from the project's venv and a headless Chromium.

These tests run only when asked for (``make test-browser``, or ``pytest tests/browser``), not with
``pytest tests``: they need Chromium and take a few minutes.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.lab import NOTEBOOKS, REPO_ROOT, LabServer, series_notebooks, start_lab

HERE = Path(__file__).resolve().parent
HOW = ("install them with 'sudo apt-get install -y chromium chromium-driver' (Debian/Ubuntu), or set "
       "OCC3D_CHROMIUM and OCC3D_CHROMEDRIVER to a Chromium and its chromedriver of the same version")
# The kernel's view of the run: the smoke profile, a front end that shows widgets.
NOT_INHERITED = ("CI", "OCC3D_PROGRESS", "OCC3D_INTERACTIVE", "MPLBACKEND", "JUPYTER_TOKEN", "JUPYTER_PATH",
                 "JUPYTER_CONFIG_PATH")
LAB_SETTINGS = {  # no news / update toasts over the screenshots
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
}


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Collect these tests only when a command-line path points into tests/browser (or OCC3D_BROWSER_TEST=1)."""
    if os.environ.get("OCC3D_BROWSER_TEST") == "1":
        return None
    for arg in config.args:
        p = Path(arg.split("::")[0]).resolve()
        if p == HERE or HERE in p.parents:
            return None
    return True


def find_browser() -> tuple[str, str]:
    """(chromium, chromedriver) executables: ``$OCC3D_CHROMIUM`` / ``$OCC3D_CHROMEDRIVER``, else
    Debian's (the real binary behind the ``chromium`` wrapper script), else what is on PATH."""
    browser = (os.environ.get("OCC3D_CHROMIUM")
               or next((p for p in ("/usr/lib/chromium/chromium",) if os.access(p, os.X_OK)), None)
               or shutil.which("chromium") or shutil.which("chromium-browser"))
    driver = os.environ.get("OCC3D_CHROMEDRIVER") or shutil.which("chromedriver")
    if not browser or not driver or not os.access(browser, os.X_OK) or not os.access(driver, os.X_OK):
        pytest.fail(f"no Chromium/chromedriver found (chromium: {browser}, chromedriver: {driver}); {HOW}.",
                    pytrace=False)
    versions = []
    for exe in (browser, driver):
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60).stdout
        versions.append(next((w.split(".")[0] for w in out.split() if w[:1].isdigit()), "?"))
    if versions[0] != versions[1] or versions[0] == "?":
        pytest.fail(f"Chromium {browser} (major {versions[0]}) and chromedriver {driver} (major {versions[1]}) "
                    f"do not match; {HOW}.", pytrace=False)
    return browser, driver


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where the screenshots go: ``$OCC3D_SCREENSHOTS`` (``make test-browser SCREENSHOTS=docs``) or runs/browser."""
    d = Path(os.environ.get("OCC3D_SCREENSHOTS") or REPO_ROOT / "runs" / "browser")
    d = d if d.is_absolute() else REPO_ROOT / d
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """JupyterLab (``tools/lab.py``, as ``make lab`` starts it) on a copy of notebooks/, so that
    running cells never writes into the repository's notebooks; Jupyter's config, runtime and
    settings directories are fresh temporary ones. Stopped, with its kernels, whatever happens."""
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "notebooks"
    root.mkdir()
    for name in series_notebooks():
        shutil.copy2(NOTEBOOKS / name, root / name)
    settings = tmp / "settings"
    for rel, value in LAB_SETTINGS.items():
        (settings / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings / rel).write_text(json.dumps(value))
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env.update(OCC3D_PROFILE="smoke", JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"))
    server = start_lab(root, env=env, log_path=tmp / "jupyterlab.log",
                       extra_args=["--LabApp.expose_app_in_browser=True"])
    try:
        yield server
    finally:
        kernels = server.kernel_processes()
        server.stop()
        left = [p.pid for p in kernels if p.is_running() and p.status() != "zombie"]
        assert server.proc.poll() is not None, "the JupyterLab server is still running after stop()"
        assert not left, f"processes left behind by JupyterLab: {left}"


@pytest.fixture(scope="session")
def driver() -> Iterator[webdriver.Chrome]:  # noqa: F821
    """A headless Chromium driven by Selenium through Debian's matching chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, chromedriver = find_browser()
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1000",
              "--force-device-scale-factor=1", "--hide-scrollbars", "--no-first-run", "--disable-extensions"):
        opts.add_argument(a)
    d = webdriver.Chrome(options=opts, service=Service(executable_path=chromedriver))
    d.set_script_timeout(600)
    try:
        yield d
    finally:
        d.quit()
