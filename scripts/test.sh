#!/usr/bin/env bash
# Set up everything and run every test: lint (ruff, yamllint, ansible-lint), unit and integration
# tests against a real Docker Engine (pytest), the collection build + ansible-doc, ansible-test sanity.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/setup.sh
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
export PATH="$HOLDFAST_VENV/bin:$PATH"
step() { printf '\n==> %s\n' "$*"; }

step "ruff"
ruff check plugins tests
step "yamllint"
yamllint -s .
step "ansible-lint (production profile)"
ansible-lint --profile production --offline -q
step "ansible-test sanity"
"$ROOT/scripts/sanity.sh"
step "pytest: unit, collection build, integration on the real engine and in the VM tier"
python -m pytest -p no:cacheprovider tests/unit tests/integration "$@"
step "molecule: default scenario on this host (converge, idempotence, testinfra verify)"
(cd "$ROOT/extensions" && HOLDFAST_PYTHON="$HOLDFAST_VENV/bin/python" molecule test -s default)
