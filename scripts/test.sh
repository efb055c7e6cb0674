#!/usr/bin/env bash
# The README's test command: set up with the test extras (and, as root, Debian's chromium),
# then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
echo "[test] running pytest"
exec .venv/bin/python -m pytest "$@"
