#!/usr/bin/env bash
# The test command: the harness's own tests, then the conformance suites against every
# reference backend this machine can run. Each pytest run uses 2 xdist workers.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest -n 2 tests
for backend in memory sqlite; do
  python -m pytest -n 2 suites --backend="$backend" --helios-results=".helios/results/$backend.json"
done
