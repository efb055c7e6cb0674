#!/usr/bin/env bash
# The README's main-job command: set up, then run the whole pipeline on the shipped data.
set -euo pipefail
cd "$(dirname "$0")/.."
GEO_LEAD_SKIP_APT=${GEO_LEAD_SKIP_APT:-1} bash scripts/setup.sh
exec .venv/bin/geo-lead run "$@"
