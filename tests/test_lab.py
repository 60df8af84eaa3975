"""make lab (tools/lab.py) and the kernel settings it shares with make run; the browser test drives the rest."""
import socket
import subprocess

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
