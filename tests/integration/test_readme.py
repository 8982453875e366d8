# -*- coding: utf-8 -*-
"""The README's user path, verbatim: its section "Use it" is run block by block, as a new user would, in a fresh
home directory (shell blocks as they are, in one shell; a block announced by a line "`name`:" written to that
file). It installs ansible-core from the package index into its own venv, builds and installs the collection
from the tarball, and runs the first converge, backup and restore against this host. Then the shell options that
sourcing scripts/setup.sh leaves behind."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r'^```(\w*)\n(.*?)^```\n', re.M | re.S)
VOLUME, BACKUPS = 'notes_data', '/var/backups/holdfast'


def user_path():
    """[(kind, file name or None, body)] of the README's section "Use it"."""
    readme = (ROOT / 'README.md').read_text()
    start = readme.index('\n## Use it')
    section = readme[start:readme.index('\n## ', start + 1)]
    steps = []
    for match in FENCE.finditer(section):
        paragraph = section[:match.start()].rstrip('\n').rsplit('\n\n', 1)[-1]
        named = re.match(r'`([\w./-]+)`', paragraph)
        if named and paragraph.endswith(':'):
            steps.append(('file', named.group(1), match.group(2)))
        else:
            assert match.group(1) == 'sh', 'a block that is neither a file nor shell: %r' % match.group(0)[:80]
            steps.append(('sh', None, match.group(2)))
    return steps


def script(steps):
    lines = ['set -e -o pipefail', 'PS4="+ [\\${SECONDS}s] "', 'set -x']
    for kind, name, body in steps:
        if kind == 'sh':
            lines.append(body)
        else:
            lines += ['mkdir -p "$(dirname %s)"' % name, "cat > %s <<'HOLDFAST_README_EOF'" % name,
                      body + 'HOLDFAST_README_EOF']
    return '\n'.join(lines) + '\n'


def docker(*args):
    return subprocess.run(['docker'] + list(args), capture_output=True, text=True, check=False)


def test_user_path_is_found():
    steps = user_path()
    files = [step[1] for step in steps if step[0] == 'file']
    assert files == ['ansible.cfg', 'inventory.ini', 'group_vars/docker_hosts.yml', 'site.yml']
    commands = ''.join(step[2] for step in steps if step[0] == 'sh')
    for needed in ('collection build', 'collection install', 'ansible-playbook site.yml',
                   'holdfast.volumes.backup', 'holdfast.volumes.restore'):
        assert needed in commands, needed
    assert 'ansible_python_interpreter=' in dict(step[1:] for step in steps)['inventory.ini']


def test_readme_user_path_verbatim(docker_client, tmp_path):
    if docker('volume', 'inspect', VOLUME).returncode == 0 or os.path.exists(os.path.join(BACKUPS, VOLUME)):
        pytest.fail('volume %s or %s/%s exists already: this test would touch data it did not create'
                    % (VOLUME, BACKUPS, VOLUME))
    home = tmp_path / 'home'
    home.mkdir()
    # a new user's shell: no venv, no Ansible settings of the harness, their own home
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(('ANSIBLE_', 'HOLDFAST_', 'VIRTUAL_ENV', 'PYTHON'))}
    env['PATH'] = ':'.join(p for p in os.environ['PATH'].split(':')
                           if p and not os.path.exists(os.path.join(p, 'activate')))
    env.update(HOME=str(home), PIP_CACHE_DIR=os.path.expanduser('~/.cache/pip'))
    (tmp_path / 'user-path.sh').write_text(script(user_path()))
    try:
        proc = subprocess.run(['bash', str(tmp_path / 'user-path.sh')], cwd=str(ROOT), env=env,
                              capture_output=True, text=True, timeout=900, check=False)
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-6000:]
        assert proc.stdout.rstrip().endswith('first note'), log[-3000:]
        recaps = re.findall(r'^localhost\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0', proc.stdout, re.M)
        assert len(recaps) == 5, log[-3000:]
        assert recaps[2] == '0', 'the second converge changed something:\n' + log[-3000:]
        assert (home / 'infra' / 'collections' / 'ansible_collections' / 'holdfast' / 'volumes' /
                'MANIFEST.json').is_file()
        made = os.listdir(os.path.join(BACKUPS, VOLUME))
        assert [n for n in made if n.endswith('.tar.zst')] and [n for n in made if n.endswith('.manifest.json')]
    finally:
        docker('volume', 'rm', '-f', VOLUME)
        shutil.rmtree(os.path.join(BACKUPS, VOLUME), ignore_errors=True)
        try:
            os.rmdir(BACKUPS)
        except OSError:
            pass


@pytest.mark.parametrize('caller', ['set +euo pipefail', 'set -euo pipefail', 'set -u'])
def test_sourcing_setup_keeps_the_callers_shell_options(caller):
    env = dict(os.environ, HOLDFAST_VENV=os.environ.get('HOLDFAST_VENV', str(ROOT / '.venv')))
    probe = 'echo "flags=${-//[^eu]/} $(set -o | grep -E "^pipefail" | tr -s " \\t" " ")"'
    want = subprocess.run(['bash', '-c', '%s; %s' % (caller, probe)], capture_output=True, text=True,
                          check=True).stdout
    proc = subprocess.run(['bash', '-c', '%s; source scripts/setup.sh 2>/dev/null; %s; echo "$ANSIBLE_COLLECTIONS_PATH"'
                           % (caller, probe)], cwd=str(ROOT), env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got, exported = proc.stdout.splitlines()[:2]
    assert got == want.strip()
    assert exported == str(ROOT / '.tmp' / 'collections')
