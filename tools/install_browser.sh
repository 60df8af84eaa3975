#!/usr/bin/env bash
# Make sure a headless Chromium and its chromedriver are there for `make test-browser`.
# Accepts $OCC3D_CHROMIUM / $OCC3D_CHROMEDRIVER, else Debian's (or any on PATH). If they are missing it
# installs Debian's `chromium` and `chromium-driver` packages with apt-get, non-interactively, as root or
# with password-less sudo. Anything it cannot do ends in one line saying how to install them.
# (tests/browser/conftest.py finds the same binaries and checks that their versions match.)
set -uo pipefail
HOW="install them with 'sudo apt-get install -y chromium chromium-driver' (Debian/Ubuntu), or set OCC3D_CHROMIUM and OCC3D_CHROMEDRIVER to a Chromium and its chromedriver of the same version"
die() { echo "occ3d browser: $*" >&2; exit 1; }

have() {
  local browser=${OCC3D_CHROMIUM:-$(command -v /usr/lib/chromium/chromium chromium chromium-browser 2>/dev/null | head -1)}
  local driver=${OCC3D_CHROMEDRIVER:-$(command -v chromedriver 2>/dev/null)}
  [ -n "$browser" ] && [ -x "$browser" ] && [ -n "$driver" ] && [ -x "$driver" ]
}

have && exit 0
if [ -n "${OCC3D_CHROMIUM:-}${OCC3D_CHROMEDRIVER:-}" ]; then
  die "OCC3D_CHROMIUM='${OCC3D_CHROMIUM:-}' or OCC3D_CHROMEDRIVER='${OCC3D_CHROMEDRIVER:-}' is not an executable file; $HOW."
fi
command -v apt-get >/dev/null 2>&1 || die "Chromium and chromedriver are not installed and there is no apt-get here; $HOW."
if [ "$(id -u)" = 0 ]; then SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=(sudo -n)
else die "Chromium and chromedriver are not installed and installing them needs root; $HOW."; fi
log=$(mktemp)
echo "occ3d browser: installing Debian's chromium and chromium-driver with apt-get (first time: about a minute)"
if ! { "${SUDO[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq \
       --no-install-recommends chromium chromium-driver fonts-dejavu-core; } </dev/null >"$log" 2>&1; then
  die "apt-get could not install chromium and chromium-driver (log: $log); $HOW."
fi
rm -f "$log"
have || die "chromium and chromium-driver were installed but chromium or chromedriver is not on PATH; $HOW."
