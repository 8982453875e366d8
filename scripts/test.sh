#!/usr/bin/env bash
# Set up everything and run every test: lint (ruff, yamllint, ansible-lint), unit and integration
# tests against a real Docker Engine (pytest), the collection build + ansible-doc + galaxy-importer, ansible-test
# sanity, the README's user path, and the version matrix (ansible-core 2.17 and 2.18, scripts/matrix.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/setup.sh
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
export PATH="$HOLDFAST_VENV/bin:$PATH"
step() { printf '\n==> %s\n' "$*"; }

# The VM tier boots once: three guests shared by the VM tests (first host) and Molecule's fleet scenario (all).
# They boot in the background while the linters run and are stopped however this script ends.
FLEET_DIR="$ROOT/.tmp/fleet"
mkdir -p "$FLEET_DIR"
export HOLDFAST_FLEET_INVENTORY="$FLEET_DIR/fleet.ini"
step "VM fleet: booting 3 guests in the background (log: .tmp/fleet/up.log)"
python3 "$ROOT/tests/vm/fleet" up --hosts 3 --inventory "$HOLDFAST_FLEET_INVENTORY" >"$FLEET_DIR/up.log" 2>&1 &
FLEET_PID=$!
trap 'python3 "$ROOT/tests/vm/fleet" down >/dev/null 2>&1 || true' EXIT

step "ruff"
ruff check plugins tests
step "yamllint"
yamllint -s .
step "ansible-lint (production profile)"
ansible-lint --profile production --offline -q
step "ansible-test sanity"
"$ROOT/scripts/sanity.sh"
step "VM fleet: waiting for the guests"
if ! wait "$FLEET_PID"; then
    cat "$FLEET_DIR/up.log"
    exit 1
fi
tail -n 1 "$FLEET_DIR/up.log"

# In the background, side by side with pytest below (the VM tests leave a core idle), waited for at the end:
# the release checks (the tarball and galaxy-importer, the README's user path verbatim) and the older ansible-core
# versions that meta/runtime.yml claims (scripts/matrix.sh: sanity, unit and smoke tests in their own venvs).
# The check-mode test compares the host before and after (the helper image included): it runs before anything
# else runs beside pytest, so that no other test's work can look like a change made in check mode.
step "pytest: check mode changes nothing (alone on the engine)"
python -m pytest -p no:cacheprovider tests/integration/test_check_mode.py

RELEASE_TESTS=(tests/integration/test_collection_build.py tests/integration/test_readme.py)
step "release checks and ansible-core 2.17 and 2.18 in the background (log: .tmp/matrix/run.log)"
mkdir -p "$ROOT/.tmp/matrix"
{ python -m pytest -p no:cacheprovider -q "${RELEASE_TESTS[@]}" && "$ROOT/scripts/matrix.sh" 2.17 2.18; } \
    >"$ROOT/.tmp/matrix/run.log" 2>&1 &
MATRIX_PID=$!
step "pytest: unit, collection build, integration on the real engine and in the VM tier"
python -m pytest -p no:cacheprovider tests/unit tests/integration "${RELEASE_TESTS[@]/#/--deselect=}" \
    --deselect=tests/integration/test_check_mode.py "$@"
step "molecule: default scenario on this host (converge, idempotence, testinfra verify)"
(cd "$ROOT/extensions" && HOLDFAST_PYTHON="$HOLDFAST_VENV/bin/python" molecule test -s default)
step "molecule: fleet scenario on 3 VM hosts (site, idempotence, backup, destroy, restore, report, testinfra)"
# reset: Molecule remembers "prepared" across runs, but these guests are new
(cd "$ROOT/extensions" && molecule reset -s fleet && molecule test -s fleet)
step "release checks and ansible-core 2.17 and 2.18: waiting for them"
if ! wait "$MATRIX_PID"; then
    cat "$ROOT/.tmp/matrix/run.log"
    exit 1
fi
cat "$ROOT/.tmp/matrix/run.log"
