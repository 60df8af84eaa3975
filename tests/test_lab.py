"""make lab (tools/lab.py) and the kernel settings it shares with make run; the browser test drives the rest."""
import socket
import subprocess

import pytest
from jupyter_client import KernelManager
from traitlets.config import Config

from occ3d_lib.pipeline import kernel_manager_config
from tools.lab import HOST, NOTEBOOKS, free_port, lab_command, port_is_free, series_notebooks


def test_lab_command_binds_localhost_only_on_one_port_and_keeps_the_token_off_the_command_line(tmp_path):
    cmd = lab_command(tmp_path, 12345)
    assert "--ServerApp.ip=127.0.0.1" in cmd and "--ServerApp.port=12345" in cmd
    assert "--ServerApp.port_retries=0" in cmd and f"--ServerApp.root_dir={tmp_path}" in cmd
    assert not any("token" in a.lower() for a in cmd)
    assert "--KernelManager.transport_encryption=auto" in cmd


def test_free_port_keeps_a_free_preferred_port_and_avoids_a_taken_one():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        s.listen()
        taken = s.getsockname()[1]
        assert not port_is_free(taken)
        other = free_port(taken)
        assert other != taken and port_is_free(other)
    assert free_port(other) == other


def test_series_notebooks_are_the_numbered_ones_in_order():
    names = series_notebooks()
    assert names == sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")) and names[0].startswith("00_")


def test_kernels_started_with_the_shared_settings_are_encrypted_and_do_not_warn(tmp_path):
    assert kernel_manager_config(), "the pinned pyzmq is built with CurveZMQ"
    km = KernelManager(config=Config(kernel_manager_config()), kernel_name="python3")
    log = tmp_path / "kernel.log"
    with open(log, "w") as err:
        km.start_kernel(stderr=err, stdout=subprocess.DEVNULL)
    try:
        info = km.get_connection_info()
        assert info.get("curve_publickey") and info.get("curve_secretkey")
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        reply = kc.execute_interactive("x = 6 * 7", timeout=60)
        assert reply["content"]["status"] == "ok"
        kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)
    text = log.read_text()
    assert "without encryption" not in text, text


def _series_source(folder, name, body="print('hi')  # NBVAL_CHECK_OUTPUT"):
    path = folder / f"{name}.py"
    path.write_text(f"# %% [markdown]\n# # {name}\n\n# %%\n{body}\n")
    return path


def test_lab_trusts_only_the_series_notebooks_exactly_as_built(tmp_path, monkeypatch):
    import nbformat

    from tools import lab
    from tools.nbbuild import code, save
    from tools.notebooks import notebook_from_source

    sources, root = tmp_path / "sources", tmp_path / "notebooks"
    sources.mkdir()
    root.mkdir()
    html = nbformat.v4.new_output("display_data", data={"text/html": "<script>alert(1)</script>", "text/plain": "x"})
    for name in ("01_first", "03_third", "04_fourth"):
        nb = notebook_from_source(_series_source(sources, name))
        nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
        nb.cells[1].execution_count = 1
        if name == "03_third":
            nb.cells.append(nbformat.v4.new_code_cell("import os"))  # not what the source builds
        if name == "04_fourth":
            nb.cells[1].outputs.append(html)  # the source's own cells, with a rich output planted
        nbformat.write(nb, root / f"{name}.ipynb")
    foreign = save(root / "evil.ipynb", [code("1")])
    nb = nbformat.read(foreign, as_version=4)
    nb.cells[0].outputs = [html]
    nbformat.write(nb, foreign)
    save(root / "02_second.ipynb", [code("print(2)")])  # a series name, but no source of the series
    trusted, others = lab.trusted_notebooks(root, sources)
    assert [p.name for p in trusted] == ["01_first.ipynb"]
    assert others == {"02_second.ipynb": "no source 02_second.py of the series beside it",
                      "03_third.ipynb": "its content is not what `make notebooks` builds from 03_third.py",
                      "04_fourth.ipynb": "an output of it is not plain text (text/html, text/plain)",
                      "evil.ipynb": "not a notebook of the series (NN_name.ipynb)"}
    # start_lab signs those and nothing else
    signed = []
    monkeypatch.setattr(lab, "trust_notebooks", lambda paths, env: signed.extend(paths))
    monkeypatch.setattr(lab, "NOTEBOOKS", sources)

    def no_server(*a, **k):
        raise RuntimeError("not started in this test")

    monkeypatch.setattr(lab.subprocess, "Popen", no_server)
    with pytest.raises(RuntimeError, match="not started"):
        lab.start_lab(root, port=free_port())
    assert signed == [root / "01_first.ipynb"]
