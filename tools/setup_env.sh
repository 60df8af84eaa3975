#!/usr/bin/env bash
# Create $VENV and install everything the series uses, with exact pins from constraints.txt.
# Called by `make setup`; prints one clear line (not a traceback) when something basic is missing.
set -uo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
die() { echo "occ3d setup: $*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null 2>&1 || die "no '$PYTHON' on PATH; install Python 3.10 or newer (or run: make PYTHON=/path/to/python3.11 ...)."
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null \
  || die "Python 3.10 or newer is needed; '$PYTHON' is $("$PYTHON" -c 'import platform; print(platform.python_version())' 2>/dev/null || echo unknown). Run: make PYTHON=/path/to/python3.11 ..."
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || die "'$PYTHON' lacks the venv/ensurepip modules (Debian/Ubuntu: apt-get install python3-venv)."

if [ ! -x "$VENV/bin/python" ]; then
  echo "occ3d setup: creating $VENV with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv "$VENV" || die "could not create the virtual environment $VENV."
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
log=$(mktemp)
echo "occ3d setup: installing pinned packages into $VENV (first time: ~2-3 min, ~6.5 GB on disk)"
if ! "${PIP[@]}" install -q -c constraints.txt -e ".[notebooks,dev]" >"$log" 2>&1; then
  if grep -qi 'No space left on device' "$log"; then
    die "the disk is full: the environment needs about 6.5 GB free where $VENV lives (see $log); free some space and run 'make setup' again."
  fi
  if grep -qiE 'connection|network|resolve|timed out|No matching distribution|Could not find a version' "$log"; then
    die "pip could not reach the package registry or find a pinned package (see $log); check your network/proxy and run 'make setup' again."
  fi
  die "pip install failed (full log: $log)."
fi
if ! "${PIP[@]}" install -q --no-deps "facenet-pytorch==2.6.0" >>"$log" 2>&1; then
  die "could not install facenet-pytorch 2.6.0 (see $log); check your network and run 'make setup' again."
fi
# PyTorch3D: the official project ships no Linux wheel for CPython 3.11; easypytorch3d is PyTorch3D 0.7.9
# built for it against torch 2.12 (its C++ extension does not load with torch 2.13+).
if ! "${PIP[@]}" install -q --no-deps "easypytorch3d==0.7.9.post1" >>"$log" 2>&1; then
  die "could not install PyTorch3D (easypytorch3d 0.7.9.post1, see $log); check your network and run 'make setup' again."
fi
"$VENV/bin/python" -c 'import torch, torchvision, facenet_pytorch, dlib, papermill, nbval, occ3d_lib' >>"$log" 2>&1 \
  || die "installed, but an import failed (see $log)."
"$VENV/bin/python" -c 'import pytorch3d, pytorch3d.renderer; from pytorch3d import _C' >>"$log" 2>&1 \
  || die "PyTorch3D is installed but does not load with this torch (see $log); it needs torch 2.12.x as pinned in constraints.txt: delete $VENV and run 'make setup' again."
rm -f "$log"
echo "occ3d setup: done ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
