"""Atomic writes, manifests and config-hash caching of artifacts (datasets, checkpoints, tables).

Taught in notebook 00 ("Where things go"). Every file the series writes goes
through :func:`atomic_path` (write a temp file beside the target, then
``os.replace``), so a killed run never leaves a half-written file that a later
run would read as complete. Directories are finished by :func:`atomic_dir`.

Cached artifacts (datasets, face models, checkpoints, labels, evaluation sets) are
written with a *manifest*: ``<name>.manifest.json`` beside a file, ``MANIFEST.json``
inside a folder, holding each file's size and BLAKE2b hash, computed once at write
time. :func:`verify_file` / :func:`verify_dir` check them when the artifact is read
(one pass over the bytes), and :func:`load_cached` turns a damaged cache into a
warning naming the file and a rebuild. Temp files and folders left by a killed write
are swept at the next write beside them; written files and folders get the
permissions the umask allows (readable by the group when the umask says so).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import torch

T = TypeVar("T")
MANIFEST_SUFFIX = ".manifest.json"
DIR_MANIFEST = "MANIFEST.json"
_MANIFEST_FORMAT = "occ3d-manifest"
_CHUNK = 1 << 20
#: A temp file of a dead writer (or older than this many seconds) is swept at the next write.
STALE_TMP_SECONDS = 24 * 3600


class DamagedArtifact(ValueError):
    """A file or folder does not match the manifest written with it, or cannot be read.

    The message is one line naming the path, what is wrong and what to do.
    """

    def __init__(self, path: str | Path, problem: str, remedy: str | None = None) -> None:
        self.path = Path(path)
        self.problem = problem
        remedy = remedy or f"delete {self.path} and run again to rebuild it"
        super().__init__(f"{self.path} is damaged ({problem}); {remedy}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _share(path: Path, is_dir: bool = False) -> None:
    """Give ``path`` the permissions a plain ``open``/``mkdir`` would (0666 / 0777 minus the umask)."""
    with contextlib.suppress(OSError):
        os.chmod(path, (0o777 if is_dir else 0o666) & ~_umask())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def sweep_stale_tmp(path: str | Path, max_age: float = STALE_TMP_SECONDS) -> list[Path]:
    """Remove the temp files / folders that an interrupted write of ``path`` left beside it.

    Temp names are ``.<name>.<pid>.<random>.tmp``; one is stale when its writer process is gone
    (same machine) or it is older than ``max_age`` seconds. Returns what was removed.
    """
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    now = time.time()
    for cand in path.parent.glob(f".{path.name}.*.tmp"):
        parts = cand.name[len(path.name) + 2:].split(".")
        pid = int(parts[0]) if parts and parts[0].isdigit() else None
        try:
            old = now - cand.lstat().st_mtime > max_age
        except OSError:
            continue
        if (pid is not None and pid != os.getpid() and not _pid_alive(pid)) or old:
            if cand.is_dir() and not cand.is_symlink():
                shutil.rmtree(cand, ignore_errors=True)
            else:
                cand.unlink(missing_ok=True)
            removed.append(cand)
    return removed


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def _disk_full(path: Path, exc: BaseException) -> OSError | None:
    """A one-line ``OSError(ENOSPC)`` for ``exc`` when it means the disk is full, else None."""
    text = str(exc)
    full = (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or (
        isinstance(exc, RuntimeError) and ("inline_container" in text or "file write failed" in text
                                           or "No space left" in text))
    if not full:
        return None
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free"
    except OSError:
        free = "free space unknown"
    return OSError(errno.ENOSPC, f"disk full while writing {path} ({free}); free some space or point "
                   f"{CACHE_ENV} / the run folder at a larger disk, then run again")


def file_digest(path: str | Path) -> str:
    """BLAKE2b (128-bit) of a file's bytes, read in 1 MiB chunks (hex)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def manifest_path(path: str | Path) -> Path:
    """Where the manifest of the file ``path`` lives: ``<path>.manifest.json``."""
    path = Path(path)
    return path.with_name(path.name + MANIFEST_SUFFIX)


def _entry(path: Path) -> dict[str, Any]:
    return {"size": path.stat().st_size, "blake2b": file_digest(path)}


def _write_manifest_file(target: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(target), suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        _share(Path(tmp))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _check(path: Path, entry: Any) -> str | None:
    """None when ``path`` matches its manifest entry, else what is wrong."""
    if not isinstance(entry, dict) or "size" not in entry or "blake2b" not in entry:
        return "its manifest entry is unreadable"
    if not path.is_file():
        return "file missing"
    size = path.stat().st_size
    if size != entry["size"]:
        return f"{size} bytes, the manifest says {entry['size']} (truncated or overwritten)"
    if file_digest(path) != entry["blake2b"]:
        return "content hash differs from its manifest (bytes changed on disk)"
    return None


def verify_file(path: str | Path, remedy: str | None = None) -> Path:
    """Check ``path`` against ``<path>.manifest.json`` (size, then BLAKE2b); returns the path.

    Raises :class:`DamagedArtifact` naming the file when the manifest is missing or does not match.
    """
    path = Path(path)
    mpath = manifest_path(path)
    try:
        entry = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise DamagedArtifact(path, f"no manifest {mpath.name} (written by an interrupted or older run)",
                              remedy) from None
    except (OSError, ValueError) as exc:
        raise DamagedArtifact(path, f"manifest {mpath.name} unreadable: {exc}", remedy) from None
    problem = _check(path, entry)
    if problem:
        raise DamagedArtifact(path, problem, remedy)
    return path


def verify_dir(path: str | Path, remedy: str | None = None) -> Path:
    """Check every file listed in ``<path>/MANIFEST.json`` (size, then BLAKE2b); returns the path."""
    path = Path(path)
    try:
        files = json.loads((path / DIR_MANIFEST).read_text())["files"]
    except FileNotFoundError:
        raise DamagedArtifact(path, f"no {DIR_MANIFEST} (written by an interrupted or older run)", remedy) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DamagedArtifact(path, f"{DIR_MANIFEST} unreadable: {exc}", remedy) from None
    for rel, entry in sorted(files.items()):
        problem = _check(path / rel, entry)
        if problem:
            raise DamagedArtifact(path / rel, problem, remedy or f"delete the folder {path} and run again to rebuild it")
    return path


def remove_artifact(path: str | Path) -> None:
    """Delete a cached file (and its manifest) or folder."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    manifest_path(path).unlink(missing_ok=True)


def load_cached(path: str | Path, load: Callable[[Path], T], what: str = "cached file") -> T | None:
    """Reuse a cached artifact written with a manifest: ``load(path)`` after :func:`verify_file`.

    Returns None when there is nothing to reuse: the file is missing, or it is damaged (manifest
    missing or not matching, or ``load`` fails), in which case a one-line warning names it, it is
    deleted and the caller rebuilds it.
    """
    path = Path(path)
    if not path.exists():
        manifest_path(path).unlink(missing_ok=True)
        return None
    try:
        verify_file(path)
        return load(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable cache is rebuilt, and said so
        reason = exc.problem if isinstance(exc, DamagedArtifact) else f"{type(exc).__name__}: {_first_line(exc)}"
        warnings.warn(f"{what} {path} is damaged ({reason}); deleting it and rebuilding", stacklevel=2)
        remove_artifact(path)
        return None


def load_or_build(path: str | Path, load: Callable[[Path], T], build: Callable[[], T],
                  save: Callable[[T, Path], Any], what: str = "cached file",
                  accept: Callable[[T], bool] | None = None) -> T:
    """The series' one cached-artifact pattern: reuse ``path`` or build it and write it.

    ``load(path)`` when the file verifies against its manifest (:func:`load_cached`) and
    ``accept(value)`` (if given) holds; otherwise ``build()``, then ``save(value, path)`` (which
    must write atomically with a manifest, e.g. :func:`torch_save`), and the new value is returned.
    A damaged file is named in a one-line warning and rebuilt. Used for the face model, the
    teacher's labels, the MOPI label pool and the evaluation sets (notebooks 01-05).
    """
    path = Path(path)
    cached = load_cached(path, load, what)
    if cached is not None and (accept is None or accept(cached)):
        return cached
    value = build()
    save(value, path)
    return value


def _first_line(exc: BaseException, limit: int = 120) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[:limit - 3] + "..."


def torch_load(path: str | Path, remedy: str | None = None, *, map_location: Any = "cpu",
               weights_only: bool = True) -> Any:
    """``torch.load`` with a one-line :class:`DamagedArtifact` naming the file when it cannot be read."""
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - truncated zip, bad pickle, wrong format
        raise DamagedArtifact(path, f"cannot read it with torch.load: {type(exc).__name__}: {_first_line(exc)}",
                              remedy) from None

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
REPO_ROOT = PACKAGE_ROOT.parent
CACHE_ENV = "OCC3D_CACHE"


def cache_dir() -> Path:
    """Root of the artifact cache: ``$OCC3D_CACHE`` or ``<repo>/data/cache``."""
    d = Path(os.environ.get(CACHE_ENV) or REPO_ROOT / "data" / "cache")
    _mkdir(d)
    return d


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise PermissionError(f"cannot create the folder {path} (permission denied); choose a writable "
                              "location or fix its permissions") from None


@contextlib.contextmanager
def atomic_path(path: str | Path, manifest: bool = False) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success rename it onto ``path``, on error delete it.

    With ``manifest`` the size and hash of the finished file go to ``<path>.manifest.json`` (written
    before the rename, so a file without a matching manifest is never taken as complete).
    """
    path = Path(path)
    _mkdir(path.parent)
    sweep_stale_tmp(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent)
    except PermissionError:
        raise PermissionError(f"cannot write in {path.parent} (permission denied); choose a writable "
                              "location or fix its permissions") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
            _share(tmp_path)
            if manifest:
                _write_manifest_file(manifest_path(path), {"format": _MANIFEST_FORMAT, "file": path.name,
                                                           **_entry(tmp_path)})
            os.replace(tmp_path, path)
        except (OSError, RuntimeError) as exc:
            full = _disk_full(path, exc)
            if full is not None:
                raise full from None
            raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path, manifest: bool = False) -> Iterator[Path]:
    """Yield a temp directory beside ``path``; on success it replaces ``path`` whole.

    With ``manifest`` the size and hash of every file in it go to ``<path>/MANIFEST.json``.
    """
    path = Path(path)
    _mkdir(path.parent)
    sweep_stale_tmp(path)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        try:
            yield tmp
            for sub, dirs, files in os.walk(tmp):
                _share(Path(sub), is_dir=True)
                for f in files:
                    _share(Path(sub) / f)
            if manifest:
                entries = {str(f.relative_to(tmp)): _entry(f) for f in sorted(tmp.rglob("*"))
                           if f.is_file() and f.name != DIR_MANIFEST}
                (tmp / DIR_MANIFEST).write_text(json.dumps({"format": _MANIFEST_FORMAT, "files": entries}, indent=1))
                _share(tmp / DIR_MANIFEST)
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        except (OSError, RuntimeError) as exc:
            full = _disk_full(path, exc)
            if full is not None:
                raise full from None
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def torch_save(obj: Any, path: str | Path, manifest: bool = True) -> Path:
    """``torch.save`` atomically, with a manifest (see :func:`verify_file`) unless told otherwise."""
    with atomic_path(path, manifest=manifest) as tmp:
        torch.save(obj, tmp)
    return Path(path)


RUN_DIR_ENV = "OCC3D_RUN_DIR"


def run_dir(profile: str, override: str | Path | None = None) -> Path:
    """Where a notebook writes this run's outputs: ``override``, else ``$OCC3D_RUN_DIR``
    (set by the pipeline), else ``<repo>/runs/<profile>``. Created if missing."""
    d = Path(override or os.environ.get(RUN_DIR_ENV) or REPO_ROOT / "runs" / profile)
    _mkdir(d)
    return d
