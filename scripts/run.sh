#!/usr/bin/env bash
# The README's main-job command: set up what the main job needs (no test tools), then run the
# whole pipeline on the shipped data. A rerun with nothing new says "nothing changed".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh main
exec .venv/bin/geo-lead run "$@"
