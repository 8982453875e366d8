#!/usr/bin/env bash
# Set up everything and run the demo playbook against localhost.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/setup.sh
source "$ROOT/scripts/setup.sh"
export PATH="$HOLDFAST_VENV/bin:$PATH"
export ANSIBLE_LOCALHOST_WARNING=False
ansible-playbook -i "localhost," -c local -e "ansible_python_interpreter=$HOLDFAST_VENV/bin/python" \
  -e "holdfast_report_dir=$ROOT/.tmp/demo-report" -e "@$ROOT/demo/model.yml" "$ROOT/demo/demo.yml" "$@"
echo
echo "Report: $ROOT/.tmp/demo-report/holdfast-report.html (and holdfast-report.json)"
