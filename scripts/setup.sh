#!/usr/bin/env bash
# Set up everything geo_lead needs on a fresh Debian machine with Python >= 3.11:
# a virtual environment in .venv with the package and its test tools, and (for the
# browser tests and the offline-map checks) Debian's chromium when we are root.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
echo "[setup] installing geo_lead and its dependencies into .venv"
.venv/bin/python -m pip install -q -e ".[test]"
if [ "${GEO_LEAD_SKIP_APT:-0}" != "1" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing Debian's chromium for the browser tests"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "[setup] chromium not found and not root: browser tests will skip"
  fi
fi
echo "[setup] done"
