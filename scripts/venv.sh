#!/usr/bin/env bash
# Print the path of a venv holding exactly the pinned requirements file $1, creating it when missing.
# Venvs are cached by the file's content and the Python version under $HOLDFAST_VENV_CACHE (default
# /var/cache/holdfast-venvs when writable, else .tmp/venvs), so a changed pin makes a new venv and an unchanged
# one costs nothing. Used for the ansible-core version matrix and galaxy-importer (scripts/matrix.sh,
# scripts/release-check.sh), which must not share the main venv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
req="$(realpath "$1")"
python="${HOLDFAST_PYTHON:-python3}"
cache="${HOLDFAST_VENV_CACHE:-/var/cache/holdfast-venvs}"
mkdir -p "$cache" 2>/dev/null && [[ -w "$cache" ]] || cache="$ROOT/.tmp/venvs"
mkdir -p "$cache"
key="$( { cat "$req"; "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16)"
venv="$cache/$(basename "$req" .txt)-$key"
if [[ ! -f "$venv/.complete" ]]; then
  exec 9>"$venv.lock"
  flock 9   # two steps asking for the same venv at once: the second waits for the first
  if [[ ! -f "$venv/.complete" ]]; then
    printf '[venv] creating %s from %s\n' "$venv" "${req#"$ROOT"/}" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --no-deps -r "$req" 2> >(grep -v "is ignored: it is neither" >&2) >&2
    touch "$venv/.complete"
  fi
fi
echo "$venv"
