#!/usr/bin/env bash
# The lint gates, run by CI before the tests (.ci/run) and by tests/test_gates.py:
#   ruff (pyproject.toml's rules, with C901 at complexity 15 and PLR0913 at 8 arguments) on
#   geo_lead, tests, benchmarks and scripts, and mypy on geo_lead (strict for store, zone,
#   sources and scoring), each minus the existing findings listed with reasons in
#   scripts/gate_exceptions.toml; a listed finding that is gone fails too (the list only shrinks).
# Needs the test extras (ruff, mypy): bash scripts/setup.sh test
#   bash scripts/lint.sh          both gates
#   bash scripts/lint.sh ruff     one of them (ruff | mypy)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=${PYTHON:-python3}
exec "$PY" scripts/gates.py "$@"
