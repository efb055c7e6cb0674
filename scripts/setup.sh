#!/usr/bin/env bash
# Set up geo_lead on a fresh Debian machine with Python >= 3.11, in .venv:
#   bash scripts/setup.sh        the package and what the main job (geo-lead run) needs
#   bash scripts/setup.sh test   + the test tools (pytest, playwright, dask...) and, as root,
#                                Debian's chromium for the browser tests
# Prints one short line per step. A step whose inputs (pyproject.toml, the extras) are
# unchanged since it last succeeded is skipped (stamp in .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHAT=${1:-main}
case "$WHAT" in main|test) ;; *) echo "usage: scripts/setup.sh [main|test]" >&2; exit 2 ;; esac
START=$SECONDS
say() { printf '[setup %3ds] %s\n' "$((SECONDS - START))" "$*"; }
# -qq: errors only (pip still fails loudly); the steps print their own progress lines
PIP=(.venv/bin/python -m pip --disable-pip-version-check -qq)

if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $($PY --version 2>&1)"
  $PY -m venv .venv
  "${PIP[@]}" install --progress-bar off --upgrade pip
fi

SPEC="."
[ "$WHAT" = "test" ] && SPEC=".[test]"
STAMP=".venv/.geo_lead-setup-$WHAT-$( (cat pyproject.toml; echo "$SPEC") | sha256sum | cut -c1-16)"
if [ -f "$STAMP" ]; then
  say "geo_lead ($WHAT) already installed for this pyproject.toml"
else
  say "installing geo_lead ($WHAT: $SPEC) and its dependencies (a few minutes the first time)"
  "${PIP[@]}" install --progress-bar off -e "$SPEC"
  touch "$STAMP"
  say "installed"
fi

# The package is installed editable, so pip byte-compiles nothing, and where
# PYTHONDONTWRITEBYTECODE is set Python writes no .pyc either: every geo-lead command would
# compile the package's sources again (~0.3-0.8 s of CPU across a run's processes). Compiled
# here (only files changed since their .pyc; a second time is a no-op).
.venv/bin/python -m compileall -q geo_lead
say "geo_lead byte-compiled"

if [ "$WHAT" = "test" ] && [ "${GEO_LEAD_SKIP_APT:-0}" != "1" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian's chromium for the browser tests"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    say "chromium not found and not root: browser tests will skip"
  fi
fi
say "done"
