#!/usr/bin/env bash
# ansible-test sanity on a copy of the collection under ansible_collections/holdfast/volumes.
# ansible-test bootstraps pip in its venvs from a script it downloads from a host this machine
# cannot reach; when the cached copy is missing we put a stand-in there that uses ensurepip.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HOLDFAST_VENV:-$ROOT/.venv}"
PYVER="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
# The pip version ansible-test bootstraps (a literal in python_requirements.get_venv_packages).
PIP_VER="$("$VENV/bin/python" - <<'PY'
import os, re, ansible_test
src = open(os.path.join(os.path.dirname(ansible_test.__file__), '_internal', 'python_requirements.py')).read()
print(' '.join(sorted(set(re.findall(r"pip='([0-9.]+)'", src)))))
PY
)"
CACHE="$HOME/.ansible/test/cache"
mkdir -p "$CACHE"
for ver in $PIP_VER; do
  f="$CACHE/get_pip_${ver//./_}.py"
  [[ -f "$f" ]] || cat >"$f" <<'PY'
# Stand-in for get-pip.py (written by holdfast.volumes scripts/sanity.sh): bootstrap pip with
# ensurepip, then run "pip install" with the arguments ansible-test gave. ensurepip drops PIP_*
# settings (which carry this machine's CA bundle), so the environment is saved and restored.
import ensurepip
import os
import runpy
import sys

saved = dict(os.environ)
ensurepip.bootstrap(upgrade=True)
os.environ.clear()
os.environ.update(saved)
args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
sys.argv = ['pip', 'install'] + args
runpy.run_module('pip', run_name='__main__', alter_sys=True)
PY
done
# one work tree per ansible-core version, so that the version matrix can run them side by side
CORE_VER="$("$VENV/bin/python" -c 'from ansible.release import __version__ as v; print(".".join(v.split(".")[:2]))')"
SANITY_BASE="${TMPDIR:-/tmp}/holdfast-sanity-$(id -u)-$CORE_VER"
WORK="$SANITY_BASE/ansible_collections/holdfast/volumes"
rm -rf "$SANITY_BASE"
mkdir -p "$WORK"
tar -C "$ROOT" --exclude=./.venv --exclude=./.tmp --exclude=./.git --exclude='*.tar.gz' \
    --exclude=__pycache__ --exclude=.pytest_cache --exclude=.ruff_cache -c . | tar -C "$WORK" -x
cd "$WORK"
export PATH="$VENV/bin:$PATH"
ansible-test sanity --venv --python "$PYVER" --color no "$@"
