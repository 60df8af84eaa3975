"""Atomic writes, manifests and config-hash caching of artifacts (datasets, checkpoints, tables).

Taught in notebook 00 ("Where things go"). Every file the series writes goes
through :func:`atomic_path` (write a temp file beside the target, then
``os.replace``), so a killed run never leaves a half-written file that a later
run would read as complete. Directories are finished by :func:`atomic_dir`.

Cached artifacts (datasets, face models, checkpoints, labels, evaluation sets) are
written with a *manifest*: ``<name>.manifest.json`` beside a file, ``MANIFEST.json``
inside a folder, holding each file's size and BLAKE2b hash, computed once at write
time, its name, and the settings it was built with (``settings``: the seed, the profile fields of its
hash). :func:`verify_file` / :func:`verify_dir` check them when the artifact is read
(one pass over the bytes), so a file copied or renamed from another cache entry, or built with other
settings, is not taken for this one; :func:`load_cached` turns a damaged or foreign cache into a
warning naming the file and a rebuild. Files are read with ``weights_only=True``
(:func:`torch_load`): a file holding anything but tensors and plain values is refused unread, so a
planted file cannot run code. Temp files and folders left by a killed write
are swept at the next write beside them; written files and folders get the
permissions the umask allows (readable by the group when the umask says so).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import pickle
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

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

    verdict = "is damaged"

    def __init__(self, path: str | Path, problem: str, remedy: str | None = None) -> None:
        self.path = Path(path)
        self.problem = problem
        remedy = remedy or f"delete {self.path} and run again to rebuild it"
        super().__init__(f"{self.path} {self.verdict} ({problem}); {remedy}")


class ForeignArtifact(DamagedArtifact):
    """A sound file whose manifest says it was built under another name or with other settings."""

    verdict = "was built for something else"


class UnsafeArtifact(DamagedArtifact):
    """A file that holds Python objects beyond tensors and plain values: refused without running them."""

    verdict = "is refused"


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


#: numpy's error for a short write (``ndarray.tofile`` on a full disk): "<n> requested and <m> written".
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


def disk_full(path: str | Path, exc: BaseException) -> OSError | None:
    """A one-line ``OSError(ENOSPC)`` naming ``path`` for ``exc`` when it means the disk is full
    (``ENOSPC``/``EDQUOT``, torch's failed zip write, numpy's short write), else None."""
    path = Path(path)
    text = str(exc)
    full = (isinstance(exc, OSError) and (exc.errno in (errno.ENOSPC, errno.EDQUOT)
                                          or (exc.errno is None and bool(_SHORT_WRITE.search(text))))) or (
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


def file_digest(path: str | Path, algorithm: str = "blake2b") -> str:
    """A file's digest (hex), read in 1 MiB chunks: BLAKE2b (128-bit), the manifests' digest, by default;
    ``algorithm`` names another of :mod:`hashlib`'s (``"sha256"``: torchvision's file names)."""
    h = hashlib.blake2b(digest_size=16) if algorithm == "blake2b" else hashlib.new(algorithm)
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


def _canonical(settings: Any) -> Any:
    """``settings`` as JSON stores them (keys sorted, tuples as lists, other objects as text)."""
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def _settings_difference(have: Any, want: Any) -> str | None:
    """None when the recorded settings equal the wanted ones, else the first difference in words."""
    have, want = _canonical(have), _canonical(want)
    if have == want:
        return None
    if isinstance(have, dict) and isinstance(want, dict):
        for k in sorted(set(have) | set(want), key=str):
            if have.get(k, "<none>") != want.get(k, "<none>"):
                return f"built with {k}={have.get(k, '<none>')!r}, this run needs {k}={want.get(k, '<none>')!r}"
    return f"built with settings {have!r}, this run needs {want!r}"


def _check_settings(path: Path, data: dict[str, Any], name: str | None, settings: Any) -> None:
    """Raise :class:`ForeignArtifact` when a manifest names another file or records other settings.

    A manifest without recorded settings (written before they were recorded) passes the settings
    check; its file name is still compared.
    """
    if name is not None and data.get("file") != name:
        raise ForeignArtifact(path, f"its manifest describes {data.get('file')!r}: copied or renamed from "
                                    "another cache entry")
    if settings is not None and "settings" in data:
        diff = _settings_difference(data["settings"], settings)
        if diff:
            raise ForeignArtifact(path, diff)


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


def verify_file(path: str | Path, remedy: str | None = None, settings: Any = None) -> Path:
    """Check ``path`` against ``<path>.manifest.json`` (the file name it records, the ``settings`` it
    records when given, size, then BLAKE2b); returns the path.

    Raises :class:`DamagedArtifact` naming the file when the manifest is missing or does not match
    (:class:`ForeignArtifact` when it describes another file or other settings).
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
    if not isinstance(entry, dict):
        raise DamagedArtifact(path, f"manifest {mpath.name} is not a manifest", remedy)
    _check_settings(path, entry, path.name, settings)
    problem = _check(path, entry)
    if problem:
        raise DamagedArtifact(path, problem, remedy)
    return path


def verify_dir(path: str | Path, remedy: str | None = None, settings: Any = None) -> Path:
    """Check every file listed in ``<path>/MANIFEST.json`` (size, then BLAKE2b) and, when given, the
    ``settings`` the folder records; returns the path."""
    path = Path(path)
    try:
        data = json.loads((path / DIR_MANIFEST).read_text())
        files = data["files"]
    except FileNotFoundError:
        raise DamagedArtifact(path, f"no {DIR_MANIFEST} (written by an interrupted or older run)", remedy) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DamagedArtifact(path, f"{DIR_MANIFEST} unreadable: {exc}", remedy) from None
    _check_settings(path, data, None, settings)
    for rel, entry in sorted(files.items()):
        problem = _check(path / rel, entry)
        if problem:
            raise DamagedArtifact(path / rel, problem, remedy or f"delete the folder {path} and run again to rebuild it")
    return path


class ReadOnlyCache(PermissionError):
    """A damaged or foreign cached artifact that cannot be deleted (a read-only cache); one line naming it."""


def remove_artifact(path: str | Path, what: str = "cached file", reason: str = "") -> None:
    """Delete a cached file (and its manifest, when there is one) or folder.

    Where that is not allowed (a read-only cache) raises :class:`ReadOnlyCache`, one line naming
    ``path`` and ``reason`` (why it has to go) and saying what to do.
    """
    path = Path(path)
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        mpath = manifest_path(path)
        if mpath.exists() or mpath.is_symlink():
            mpath.unlink()
    except OSError as exc:
        why = f" ({reason})" if reason else ""
        raise ReadOnlyCache(errno.EACCES, f"{what} {path} must be rebuilt{why} but cannot be deleted "
                            f"({exc.strerror or exc}): the cache is read-only; delete it by hand or set "
                            f"{CACHE_ENV} to a writable folder") from None


def load_cached(path: str | Path, load: Callable[[Path], T], what: str = "cached file",
                settings: Any = None) -> T | None:
    """Reuse a cached artifact written with a manifest: ``load(path)`` after :func:`verify_file`.

    Returns None when there is nothing to reuse: the file is missing, or it is damaged or foreign
    (manifest missing or not matching, ``settings`` not those it records, or ``load`` fails, e.g.
    on a file :func:`torch_load` refuses), in which case it is deleted, a one-line warning names it
    and the caller rebuilds it (:class:`ReadOnlyCache` when it cannot be deleted).
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        verify_file(path, settings=settings)
        return load(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable cache is rebuilt, and said so
        reason = exc.problem if isinstance(exc, DamagedArtifact) else f"{type(exc).__name__}: {_first_line(exc)}"
        verdict = exc.verdict if isinstance(exc, DamagedArtifact) else DamagedArtifact.verdict
        remove_artifact(path, what, reason)
        warnings.warn(f"{what} {path} {verdict} ({reason}); deleted it, rebuilding", stacklevel=2)
        return None


def load_or_build(path: str | Path, load: Callable[[Path], T], build: Callable[[], T],
                  save: Callable[[T, Path], Any], what: str = "cached file",
                  accept: Callable[[T], bool] | None = None, settings: Any = None) -> T:
    """The series' one cached-artifact pattern: reuse ``path`` or build it and write it.

    ``load(path)`` when the file verifies against its manifest (:func:`load_cached`, which also
    compares the ``settings`` it records) and ``accept(value)`` (if given) holds; otherwise
    ``build()``, then ``save(value, path)`` (which must write atomically with a manifest recording
    the same ``settings``, e.g. :func:`torch_save`), and the new value is returned.
    A damaged file is named in a one-line warning and rebuilt. Used for the face model, the
    teacher's labels, the MOPI label pool and the evaluation sets (notebooks 01-05).
    """
    path = Path(path)
    cached = load_cached(path, load, what, settings)
    if cached is not None and (accept is None or accept(cached)):
        return cached
    value = build()
    save(value, path)
    return value


def _first_line(exc: BaseException, limit: int = 120) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[:limit - 3] + "..."


def torch_load(path: str | Path, remedy: str | None = None, *, map_location: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)`` with a one-line :class:`DamagedArtifact` naming the file when it
    cannot be read. Every file the series reads goes through it: only tensors and plain values
    (numbers, strings, lists, dicts, tuples) are unpickled; a file holding other objects, whose
    unpickling could run code, is refused unread (:class:`UnsafeArtifact`)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as exc:
        text = str(exc)
        found = re.search(r"GLOBAL ([\w.]+)", text)  # the weights-only unpickler met an object it does not allow
        if found is None:
            detail = next((ln.strip() for ln in text.splitlines() if ln.strip().startswith("Unsupported")),
                          _first_line(exc))
            raise DamagedArtifact(path, f"cannot read it with torch.load: {type(exc).__name__}: {detail}",
                                  remedy) from None
        raise UnsafeArtifact(path, f"it holds Python objects other than tensors and plain values ({found.group(1)}), "
                                   "whose loading could run code; it was not loaded",
                             remedy or f"delete {Path(path)}; a file of the series holds only tensors and plain "
                                       "values") from None
    except Exception as exc:  # noqa: BLE001 - truncated zip, bad pickle, wrong format
        raise DamagedArtifact(path, f"cannot read it with torch.load: {type(exc).__name__}: {_first_line(exc)}",
                              remedy) from None

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
REPO_ROOT = PACKAGE_ROOT.parent
CACHE_ENV = "OCC3D_CACHE"


def cache_dir() -> Path:
    """Root of the artifact cache: ``$OCC3D_CACHE`` or ``<repo>/data/cache``.

    Returns:
        The folder as a ``Path``; it is created if missing.
    """
    d = Path(os.environ.get(CACHE_ENV) or REPO_ROOT / "data" / "cache")
    _mkdir(d)
    return d


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise PermissionError(f"cannot create the folder {path} (permission denied); choose a writable "
                              "location or fix its permissions") from None


_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def _cannot_write(path: Path, exc: OSError) -> PermissionError:
    """One line for a write refused by the file system (permissions, read-only mount), naming ``path``."""
    return PermissionError(exc.errno or errno.EACCES, f"cannot write {path.name} in {path.parent} "
                           f"({exc.strerror or exc}); choose a writable location (set {CACHE_ENV} for caches, "
                           "or another run folder) or fix its permissions")


@contextlib.contextmanager
def atomic_path(path: str | Path, manifest: bool = False, settings: Any = None) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success rename it onto ``path``, on error delete it.

    With ``manifest`` the name, size and hash of the finished file and the ``settings`` it was built
    with (JSON values) go to ``<path>.manifest.json`` (written before the rename, so a file without a
    matching manifest is never taken as complete).
    """
    path = Path(path)
    _mkdir(path.parent)
    sweep_stale_tmp(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as exc:
        full = disk_full(path, exc)
        if full is not None:
            raise full from None
        if exc.errno in _NOT_WRITABLE:
            raise _cannot_write(path, exc) from None
        raise
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
            _share(tmp_path)
            if manifest:
                extra = {} if settings is None else {"settings": _canonical(settings)}
                _write_manifest_file(manifest_path(path), {"format": _MANIFEST_FORMAT, "file": path.name,
                                                           **_entry(tmp_path), **extra})
            os.replace(tmp_path, path)
        except (OSError, RuntimeError) as exc:
            full = disk_full(path, exc)
            if full is not None:
                raise full from None
            if isinstance(exc, OSError) and exc.errno in _NOT_WRITABLE:
                raise _cannot_write(path, exc) from None
            raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path, manifest: bool = False, settings: Any = None) -> Iterator[Path]:
    """Yield a temp directory beside ``path``; on success it replaces ``path`` whole.

    With ``manifest`` the size and hash of every file in it, and the ``settings`` it was built with,
    go to ``<path>/MANIFEST.json``.
    """
    path = Path(path)
    _mkdir(path.parent)
    sweep_stale_tmp(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent))
    except OSError as exc:
        if exc.errno in _NOT_WRITABLE:
            raise _cannot_write(path, exc) from None
        raise
    try:
        try:
            yield tmp
            for sub, _dirs, files in os.walk(tmp):
                _share(Path(sub), is_dir=True)
                for f in files:
                    _share(Path(sub) / f)
            if manifest:
                entries = {str(f.relative_to(tmp)): _entry(f) for f in sorted(tmp.rglob("*"))
                           if f.is_file() and f.name != DIR_MANIFEST}
                extra = {} if settings is None else {"settings": _canonical(settings)}
                (tmp / DIR_MANIFEST).write_text(json.dumps({"format": _MANIFEST_FORMAT, "files": entries, **extra},
                                                           indent=1))
                _share(tmp / DIR_MANIFEST)
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        except (OSError, RuntimeError) as exc:
            full = disk_full(path, exc)
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


def torch_save(obj: Any, path: str | Path, manifest: bool = True, settings: Any = None) -> Path:
    """``torch.save`` atomically, with a manifest recording ``settings`` (see :func:`verify_file`) unless
    told otherwise."""
    with atomic_path(path, manifest=manifest, settings=settings) as tmp:
        torch.save(obj, tmp)
    return Path(path)


RUN_DIR_ENV = "OCC3D_RUN_DIR"


def run_dir(profile: str, override: str | Path | None = None) -> Path:
    """Where a notebook writes this run's outputs, created if missing.

    The folder is ``override``, else ``$OCC3D_RUN_DIR`` (set by the pipeline), else ``<repo>/runs/<profile>``.

    Args:
        profile: the profile's name, the last part of the default folder ``<repo>/runs/<profile>``.
        override: a folder to use instead; None (or empty) falls back to ``$OCC3D_RUN_DIR``, then the default.

    Returns:
        The folder as a ``Path``; it exists after the call.
    """
    d = Path(override or os.environ.get(RUN_DIR_ENV) or REPO_ROOT / "runs" / profile)
    _mkdir(d)
    return d
