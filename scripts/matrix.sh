#!/usr/bin/env bash
# The oldest ansible-core versions that meta/runtime.yml claims (requires_ansible), tested like the main one:
#   scripts/matrix.sh 2.17 [2.18 ...]
# For each version, in its own cached venv (requirements/ansible-<version>.txt, built by scripts/venv.sh):
# ansible-test sanity (every test but pylint and pep8, which judge style and run on the main version), the unit
# tests, and a smoke test of real ansible-playbook runs: every module against its RETURN, every plugin's docs as
# ansible-doc renders them, the site/backup/restore playbooks, the action group. Logs: .tmp/matrix/<version>.log.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SMOKE=(tests/integration/test_return_docs.py tests/integration/test_plugin_docs.py
       "tests/integration/test_roles.py::test_site_backup_destroy_restore"
       "tests/integration/test_docker_volumes.py::test_unreachable_engine_and_action_group")
mkdir -p .tmp/matrix
for version in "$@"; do
  log=".tmp/matrix/$version.log"
  started=$SECONDS
  (
    venv="$(scripts/venv.sh "requirements/ansible-$version.txt")"
    actual="$("$venv/bin/python" -c 'from ansible.release import __version__ as v; print(v)')"
    [[ "$actual" == "$version".* ]] || { echo "venv $venv has ansible-core $actual, not $version"; exit 1; }
    echo "== ansible-core $actual: sanity"
    sanity_log=".tmp/matrix/$version-sanity.log"
    HOLDFAST_VENV="$venv" scripts/sanity.sh --skip-test pylint --skip-test pep8 >"$sanity_log" 2>&1 \
        || { cat "$sanity_log"; exit 1; }
    cat "$sanity_log"
    # ansible-test exits 0 when it finds no target at all (e.g. a TMPDIR inside a git work tree): not a pass
    if grep -q "All targets skipped" "$sanity_log"; then echo "ansible-test found nothing to test"; exit 1; fi
    echo "== ansible-core $actual: unit tests and the smoke tests"
    "$venv/bin/python" -m pytest -p no:cacheprovider -q tests/unit "${SMOKE[@]}"
  ) >"$log" 2>&1 || { tail -n 60 "$log"; echo "ansible-core $version: FAILED (log: $log)"; exit 1; }
  echo "ansible-core $version: sanity, unit and smoke tests passed in $((SECONDS - started)) s (log: $log)"
done
