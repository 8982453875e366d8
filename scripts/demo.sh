#!/usr/bin/env bash
# Set up everything and run the demo playbook against localhost.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/setup.sh
source "$ROOT/scripts/setup.sh"
export PATH="$HOLDFAST_VENV/bin:$PATH"
export ANSIBLE_LOCALHOST_WARNING=False
exec ansible-playbook -i "localhost," -c local -e "ansible_python_interpreter=$HOLDFAST_VENV/bin/python" \
  "$ROOT/demo/demo.yml" "$@"
