"""Start JupyterLab on the notebook series: the ``make lab`` command (also used by ``tests/browser``).

``make lab`` runs JupyterLab from the project's virtual environment on 127.0.0.1 only, with a
random token, on port 8888 (or a free one), serving ``notebooks/``. When the server answers it
prints one URL, which opens the series' first notebook with the project's kernel (the ``python3``
kernelspec of the venv's ipykernel), and opens it in the desktop browser if there is one.
The server prints only warnings and errors, and none of the ones it would print otherwise at every
start: its kernels get CurveZMQ keys from the kernel manager (``occ3d_lib.pipeline.kernel_manager_config``),
the series' own notebooks (and only they, :func:`trusted_notebooks`) are signed as trusted, kernel websockets
skip keep-alive pings (see :func:`lab_command`).
Ctrl-C stops the server and its kernels.

    python tools/lab.py [--port N] [--no-browser]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import webbrowser
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO_ROOT / "notebooks"
HOST = "127.0.0.1"
if str(REPO_ROOT) not in sys.path:  # `python tools/lab.py` puts tools/ on the path, not the repository
    sys.path.insert(0, str(REPO_ROOT))
#: Outputs a trusted notebook may carry: plain text only (the NBVAL-checked cells' printed lines).
TEXT_OUTPUTS = {"stream", "error"}


def series_notebooks(root: Path = NOTEBOOKS) -> list[str]:
    """File names of the series' notebooks (``NN_name.ipynb``) in ``root``, in order."""
    from occ3d_lib.pipeline import discover_notebooks

    return [p.name for p in discover_notebooks(root)]


def port_is_free(port: int) -> bool:
    """True if nothing listens on ``127.0.0.1:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: TIME_WAIT is no obstacle
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None) -> int:
    """``preferred`` if it is free on 127.0.0.1, else a free port chosen by the OS."""
    if preferred and port_is_free(preferred):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def lab_command(root_dir: Path, port: int, extra_args: Sequence[str] = ()) -> list[str]:
    """The ``jupyter lab`` command line: this interpreter's JupyterLab, bound to 127.0.0.1:``port``
    (no retry on another port), serving ``root_dir``, quiet below warnings, kernels encrypted.
    The token comes from ``$JUPYTER_TOKEN`` (see :func:`start_lab`), so it is not on the command line."""
    from occ3d_lib.pipeline import kernel_manager_config

    args = [sys.executable, "-m", "jupyterlab", f"--ServerApp.ip={HOST}", f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root_dir}", "--ServerApp.open_browser=False",
            "--ServerApp.log_level=WARN", "--LabApp.log_level=WARN",
            # Kernel websockets: jupyter_server's keep-alive pings need a pong timeout longer than their interval,
            # which tornado >= 6.5 refuses with a warning at the first connection. On a server reached only from
            # 127.0.0.1 no proxy drops idle connections, so no pings at all (and no warning).
            f"--ServerApp.tornado_settings={json.dumps({'ws_ping_interval': 0})}"]
    for cls, traits in kernel_manager_config().items():
        args += [f"--{cls}.{name}={value}" for name, value in traits.items()]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--ServerApp.allow_root=True")  # containers and CI run as root
    return args + list(extra_args)


@dataclass
class LabServer:
    """A running JupyterLab server started by :func:`start_lab`; :meth:`stop` ends it and its kernels."""

    root_dir: Path
    port: int
    token: str
    proc: subprocess.Popen
    log_path: Path | None = None
    _log: IO[str] | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def url(self, path: str = "lab", with_token: bool = True) -> str:
        """``http://127.0.0.1:port/<path>``, with ``?token=...`` appended when ``with_token``."""
        sep = "&" if "?" in path else "?"
        return f"{self.base}/{path.lstrip('/')}" + (f"{sep}token={self.token}" if with_token else "")

    def api(self, path: str, method: str = "GET", timeout: float = 10.0) -> Any:
        """JSON answer of the server's REST API at ``/api/<path>`` (authenticated with the token)."""
        req = urllib.request.Request(f"{self.base}/api/{path.lstrip('/')}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def log_tail(self, n: int = 40) -> str:
        """The last ``n`` lines the server wrote (when started with a log file)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def kernel_processes(self) -> list[Any]:
        """``psutil.Process`` of every process the server started (its kernels)."""
        import psutil

        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 20.0) -> None:
        """Shut the server and its kernels down (REST shutdown, then SIGTERM, then SIGKILL); idempotent."""
        import psutil

        children = self.kernel_processes()
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.api("shutdown", method="POST", timeout=5)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        for child in children:  # a kernel that outlived its server
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        psutil.wait_procs(children, timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LabServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _untrusted_reason(path: Path, sources: Path) -> str | None:
    """None when ``path`` is a notebook of the series exactly as it is built; else why it is not."""
    import re

    import nbformat

    from tools.notebooks import notebook_from_source

    if not re.fullmatch(r"\d\d_[A-Za-z0-9_]+\.ipynb", path.name):
        return "not a notebook of the series (NN_name.ipynb)"
    src = sources / f"{path.stem}.py"
    if not src.is_file():
        return f"no source {src.name} of the series beside it"
    try:
        nb = nbformat.read(str(path), as_version=4)
        built = notebook_from_source(src, nb)
    except Exception as exc:  # noqa: BLE001 - unreadable JSON, a source jupytext cannot read
        return f"unreadable ({type(exc).__name__})"
    if built != nb:
        return f"its content is not what `make notebooks` builds from {src.name}"
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind not in TEXT_OUTPUTS and set(out.get("data", {})) - {"text/plain"}:
                return f"an output of it is not plain text ({', '.join(sorted(out.get('data', {})))})"
    return None


def trusted_notebooks(root: Path = NOTEBOOKS, sources: Path | None = None) -> tuple[list[Path], dict[str, str]]:
    """(the notebooks in ``root`` that ``make lab`` signs as trusted, {name: why not} for the others).

    Only the series' own are trusted: ``NN_name.ipynb`` whose percent-format source ``NN_name.py`` is in
    ``sources`` (default: the repository's notebooks/) and whose content is exactly what ``make notebooks`` builds
    from it (cells, tags, metadata; :func:`tools.notebooks.notebook_from_source`), with no outputs but plain
    text. A foreign notebook dropped into the folder, or a series notebook changed or saved with rich
    outputs (HTML, JavaScript, images), is not signed, so JupyterLab does not run its stored outputs' code.
    """
    trusted, others = [], {}
    for path in sorted(Path(root).glob("*.ipynb")):
        why = _untrusted_reason(path, Path(sources or NOTEBOOKS))
        if why is None:
            trusted.append(path)
        else:
            others[path.name] = why
    return trusted, others


def trust_notebooks(paths: Sequence[Path], env: Mapping[str, str]) -> None:
    """Sign ``paths`` in the user's notebook trust store (``jupyter trust``), so that JupyterLab does
    not warn "Notebook ... is not trusted" each time one is opened. Pass only the series' own notebooks
    (:func:`trusted_notebooks`), kept without outputs but a few small checked text cells: the code they
    hold is what the learner runs anyway. A failure to sign is not an error (JupyterLab then only warns)."""
    if paths:
        subprocess.run([sys.executable, "-m", "nbformat.sign", *map(str, paths)], env=dict(env),
                       stdin=subprocess.DEVNULL, capture_output=True, check=False)


def start_lab(root_dir: Path, *, port: int | None = None, token: str | None = None,
              env: Mapping[str, str] | None = None, extra_args: Sequence[str] = (), log_path: Path | None = None,
              new_session: bool = True, ready_timeout: float = 120.0) -> LabServer:
    """Start JupyterLab on ``root_dir`` and return once its REST API answers.

    ``port``: a free one if not given; ``token``: a random one if not given; ``env``: the server's
    (and so its kernels') environment, default ``os.environ``; ``log_path``: where its output goes
    (default: inherited). Raises ``RuntimeError`` with the server's last output if it does not start.
    """
    port = port or free_port()
    token = token or secrets.token_hex(24)
    full_env = dict(os.environ if env is None else env, JUPYTER_TOKEN=token)
    trust_notebooks(trusted_notebooks(Path(root_dir))[0], full_env)
    log = open(log_path, "w") if log_path is not None else None  # noqa: SIM115 - closed by stop()
    proc = subprocess.Popen(lab_command(root_dir, port, extra_args), env=full_env, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT if log else None, start_new_session=new_session)
    server = LabServer(Path(root_dir), port, token, proc, log_path, log)
    deadline = time.monotonic() + ready_timeout
    while True:
        if proc.poll() is not None:
            server.stop()
            raise RuntimeError(f"JupyterLab exited with code {proc.returncode} before it answered on port {port}:\n"
                               + server.log_tail())
        try:
            server.api("status", timeout=2)
            return server
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"JupyterLab did not answer on port {port} within {ready_timeout:.0f} s:\n"
                               + server.log_tail())
        time.sleep(0.25)


def project_kernel_problem(server: LabServer) -> str | None:
    """None if the server's default kernel is the ``python3`` kernelspec that starts this venv's
    interpreter; else what is wrong, in one line."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    default = server.api("kernelspecs").get("default")
    if default != "python3":
        return f"the default kernel is {default!r}, not the project's 'python3' (ipykernel of {sys.prefix})"
    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        return f"no 'python3' kernelspec is visible; run 'make setup' again to reinstall ipykernel in {sys.prefix}"
    exe = spec.argv[0] if spec.argv else ""
    # jupyter_client starts a kernelspec whose argv[0] is plain 'python' with the server's own interpreter.
    if exe not in ("python", "python3") and Path(exe).resolve() != Path(sys.executable).resolve():
        return (f"the 'python3' kernel in {spec.resource_dir} runs {exe}, not this project's {sys.executable}; "
                f"remove it ('jupyter kernelspec remove python3' outside the venv)")
    return None


def _desktop_browser() -> bool:
    """True where ``webbrowser`` can open a graphical browser (not on a headless server)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        webbrowser.get()
    except webbrowser.Error:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make lab", description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=int(os.environ.get("LAB_PORT", "8888")),
                    help="port on 127.0.0.1 (default 8888, or a free one if it is taken)")
    ap.add_argument("--no-browser", action="store_true", help="only print the URL")
    a = ap.parse_args(argv)
    first = series_notebooks()[0]
    print("occ3d lab: starting JupyterLab ...", flush=True)
    # Own session: Ctrl-C reaches only this process, which then shuts the server down cleanly
    # (JupyterLab's own Ctrl-C handler would ask for a confirmation on stdin).
    server = start_lab(NOTEBOOKS, port=free_port(a.port), new_session=True)

    def _stop(*_: Any) -> None:
        raise KeyboardInterrupt

    for sig in ("SIGINT", "SIGTERM", "SIGHUP"):  # SIGINT too: a shell may have started us with it ignored
        if hasattr(signal, sig):
            signal.signal(getattr(signal, sig), _stop)
    try:
        problem = project_kernel_problem(server)
        if problem:
            print(f"occ3d lab: warning: {problem}", flush=True)
        url = server.url(f"lab/tree/{first}")
        print(f"occ3d lab: JupyterLab serves {NOTEBOOKS} at (open in a browser):\n\n    {url}\n\n"
              f"occ3d lab: kernel 'Python 3 (ipykernel)' from {sys.prefix}; Ctrl-C stops the server and its kernels.",
              flush=True)
        if not a.no_browser and _desktop_browser():
            webbrowser.open(url)
        server.proc.wait()
        print(f"occ3d lab: JupyterLab exited (code {server.proc.returncode})")
        return server.proc.returncode or 0
    except KeyboardInterrupt:
        print("\nocc3d lab: stopping JupyterLab and its kernels ...", flush=True)
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
