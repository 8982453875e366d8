# -*- coding: utf-8 -*-
"""RETURN documents exactly what each module returns.

Every module runs in its main situations (real run, check mode, diff mode, nothing to do) in real ansible-playbook
processes on the real engine, and each successful result is compared with the module's RETURN: every returned key
is documented (also inside documented `contains`), and every key documented as returned `always` (or `success`)
is returned. The check is general: a key added to a module without documentation fails here."""

from __future__ import annotations

import ast
import os
import subprocess
from pathlib import Path

import yaml
from ansible_runner import run_playbook

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (ROOT / 'plugins' / 'modules').glob('*.py') if p.stem != '__init__')
# keys Ansible itself adds to module results (not the module's business to document)
COMMON = {'changed', 'failed', 'invocation', 'warnings', 'deprecations', 'diff', 'skipped', 'skip_reason',
          'exception', 'attempts', 'ansible_facts', 'item', 'ansible_loop_var'}
# AnsibleModule.exit_json adds these file attributes to any result with a `path` (add_path_info)
PATH_INFO = {'uid', 'gid', 'owner', 'group', 'mode', 'state', 'size', 'secontext', 'xattrs'}
REQUIRED = ('always', 'success')


def return_doc(module):
    """The RETURN of plugins/modules/<module>.py, parsed without importing the module."""
    tree = ast.parse((ROOT / 'plugins' / 'modules' / ('%s.py' % module)).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == 'RETURN' for t in node.targets):
            return yaml.safe_load(node.value.value) or {}
    raise AssertionError('%s has no RETURN' % module)


def compare(doc, result, where, top=True):
    """Problems between a returned mapping and its documentation (recursing into documented `contains`)."""
    problems = []
    for key, value in result.items():
        if top and (key in COMMON or key.startswith('_ansible') or ('path' in result and key in PATH_INFO)):
            continue
        if key not in doc:
            problems.append('%s: returns %r, which RETURN does not document' % (where, key))
            continue
        contains = doc[key].get('contains')
        if not contains or value is None:
            continue
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            if isinstance(item, dict):
                problems += compare(contains, item, '%s.%s[%d]' % (where, key, index), top=False)
    for key, spec in doc.items():
        if str(spec.get('returned', '')).strip() in REQUIRED and key not in result:
            problems.append('%s: does not return %r, documented as returned %r' % (where, key, spec['returned']))
    return problems


def test_compare_catches_both_directions():
    doc = {'a': {'returned': 'always'}, 'b': {'returned': 'when asked'},
           'c': {'returned': 'always', 'contains': {'x': {'returned': 'always'}}}}
    assert compare(doc, {'a': 1, 'c': [{'x': 1}], 'changed': False}, 'm') == []
    problems = compare(doc, {'b': 1, 'c': [{'y': 1}], 'z': 2}, 'm')
    assert any("'z'" in p for p in problems) and any("'a'" in p for p in problems)
    assert any("m.c[0]: returns 'y'" in p for p in problems) and any("m.c[0]: does not return 'x'" in p
                                                                     for p in problems)


def luks_file(path, keyfile):
    """A LUKS container in a plain file (luksFormat works without device-mapper; opening it does not)."""
    subprocess.run(['truncate', '-s', '20M', str(path)], check=True)
    keyfile.write_bytes(os.urandom(32))
    keyfile.chmod(0o600)
    subprocess.run(['cryptsetup', 'luksFormat', '-q', '--type', 'luks2', '--pbkdf', 'pbkdf2',
                    '--pbkdf-force-iterations', '1000', '--key-file', str(keyfile), str(path)], check=True)


def test_every_module_returns_what_return_documents(docker_client, prefix, tmp_path):
    seed = tmp_path / 'seed'
    (seed / 'conf').mkdir(parents=True)
    (seed / 'conf' / 'app.ini').write_text('[app]\nx = 1\n')
    dest, state, hostdir = tmp_path / 'backups', tmp_path / 'state', tmp_path / 'hostdir'
    hostdir.mkdir()
    (hostdir / 'f').write_text('data')
    (tmp_path / 'offsite').mkdir()
    remote = {'type': 'local', 'path': str(tmp_path / 'offsite')}  # rclone's local backend
    luks, keyfile = tmp_path / 'luks.img', tmp_path / 'luks.key'
    luks_file(luks, keyfile)
    vol, seeded, copy = prefix + '_a', prefix + '_seeded', prefix + '_copy'
    volumes = [{'name': vol, 'labels': {'test': prefix}}, {'name': seeded}]
    tasks = [
        ('docker_volumes', {'volumes': volumes}, 'check'),
        ('docker_volumes', {'volumes': volumes}, 'diff'),
        ('docker_volumes', {'volumes': [dict(volumes[0], labels={'test': 'drift'}), volumes[1]]}, 'diff'),
        ('docker_volumes', {'volumes': [{'name': prefix + '_gone', 'state': 'absent'}]}, 'run'),
        ('volume_info', {'names': [vol, prefix + '_missing'], 'usage': True, 'containers': True}, 'run'),
        ('volume_info', {'labels': {'test': prefix}, 'dangling': True}, 'run'),
        ('volume_permissions', {'volume': vol, 'owner': 1000, 'group': 1000, 'mode': '0750'}, 'check'),
        ('volume_permissions', {'volume': vol, 'owner': 1000, 'group': 1000, 'mode': '0750', 'recurse': True},
         'diff'),
        ('volume_permissions', {'path': str(hostdir), 'mode': '0700'}, 'diff'),
        ('volume_seed', {'volume': seeded, 'src': str(seed), 'owner': 1000}, 'check'),
        ('volume_seed', {'volume': seeded, 'src': str(seed), 'owner': 1000}, 'diff'),
        ('volume_seed', {'volume': seeded, 'src': str(seed), 'owner': 1000}, 'run'),
        ('volume_backup', {'volume': seeded, 'dest': str(dest)}, 'check'),
        ('volume_backup', {'volume': seeded, 'dest': str(dest)}, 'diff'),
        ('volume_backup', {'volume': seeded, 'dest': str(dest), 'compression': 'gzip'}, 'run'),
        ('volume_backup', {'path': str(hostdir), 'dest': str(dest)}, 'run'),
        ('volume_restore', {'dest': str(dest), 'source': seeded, 'volume': copy, 'state_dir': str(state)}, 'check'),
        ('volume_restore', {'dest': str(dest), 'source': seeded, 'volume': copy, 'state_dir': str(state)}, 'diff'),
        ('volume_restore', {'dest': str(dest), 'source': seeded, 'volume': copy, 'state_dir': str(state)}, 'run'),
        ('volume_restore', {'dest': str(dest), 'source': str(hostdir), 'path': str(tmp_path / 'restored'),
                            'state_dir': str(state)}, 'run'),
        ('backup_rotation', {'dest': str(dest), 'keep_last': 1}, 'check'),
        ('backup_rotation', {'dest': str(dest), 'keep_last': 1}, 'diff'),
        ('backup_rotation', {'dest': str(dest), 'volume': seeded, 'keep_last': 1}, 'run'),
        ('backup_sync', {'dest': str(dest), 'remote': remote, 'host': 'h1'}, 'check'),
        ('backup_sync', {'dest': str(dest), 'remote': remote, 'host': 'h1', 'volumes': [seeded]}, 'diff'),
        ('backup_sync', {'dest': str(dest), 'remote': remote, 'host': 'h1'}, 'run'),
        ('backup_info', {'dest': str(dest), 'verify': 'sha256'}, 'run'),
        ('backup_info', {'dest': str(dest), 'volumes': [seeded]}, 'check'),
        ('luks_path', {'path': str(tmp_path / 'mnt'), 'backing_file': str(luks), 'keyfile': str(keyfile),
                       'state': 'unmounted'}, 'check'),
        ('luks_path', {'path': str(tmp_path / 'mnt'), 'backing_file': str(luks), 'keyfile': str(keyfile),
                       'state': 'unmounted'}, 'diff'),
        ('luks_path', {'path': str(tmp_path / 'mnt2'), 'backing_file': str(tmp_path / 'none.img'),
                       'state': 'absent'}, 'run'),
    ]
    play = []
    for index, (module, args, mode) in enumerate(tasks):
        task = {'name': '%d %s %s' % (index, module, mode), 'holdfast.volumes.%s' % module: args}
        if mode == 'check':
            task['check_mode'] = True
        if mode == 'diff':
            task['diff'] = True
        play.append(task)
    try:
        run = run_playbook(play)
        assert run.rc == 0, run.stdout + run.stderr
        assert sorted({task[0] for task in tasks}) == MODULES, 'a module without a scenario here'
        problems = []
        for index, (module, _args, mode) in enumerate(tasks):
            name = '%d %s %s' % (index, module, mode)
            assert run.status(name) == 'ok', run.task(name)
            problems += compare(return_doc(module), run.task(name), name)
        assert not problems, '\n'.join(problems)
    finally:
        for name in (vol, seeded, copy):
            try:
                docker_client.remove_volume(name, force=True)
            except Exception:
                pass
