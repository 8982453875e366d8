# -*- coding: utf-8 -*-
"""One subprocess environment (the C locale) for every command the collection runs."""

from __future__ import annotations

import ast
import os
from pathlib import Path

from ansible_collections.holdfast.volumes.plugins.module_utils._process import command_env

ROOT = Path(__file__).resolve().parents[4]
SPAWNERS = {'run', 'Popen', 'call', 'check_call', 'check_output', 'getoutput', 'getstatusoutput'}
OS_SPAWNERS = {'system', 'popen', 'spawnv', 'spawnvp', 'execv', 'execvp', 'execve', 'posix_spawn'}


def test_command_env_is_the_c_locale_whatever_the_user_speaks(monkeypatch):
    for key, value in (('LANG', 'de_DE.UTF-8'), ('LANGUAGE', 'de:en'), ('LC_ALL', 'de_DE.UTF-8'),
                       ('LC_MESSAGES', 'de_DE.UTF-8'), ('LC_NUMERIC', 'de_DE.UTF-8'), ('PATH', '/usr/bin:/bin')):
        monkeypatch.setenv(key, value)
    env = command_env()
    assert env['LC_ALL'] == 'C' and env['LANG'] == 'C'
    assert 'LANGUAGE' not in env and not [k for k in env if k.startswith('LC_') and k != 'LC_ALL']
    assert env['PATH'] == '/usr/bin:/bin'  # everything else is kept
    assert command_env({'X': '1'})['X'] == '1' and os.environ['LANG'] == 'de_DE.UTF-8'  # a copy


def _spawn_calls(tree):
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if not isinstance(func, ast.Attribute) or not isinstance(func.value, ast.Name):
            continue
        if func.value.id == 'subprocess' and func.attr in SPAWNERS:
            yield node, 'subprocess.' + func.attr
        elif func.value.id == 'os' and func.attr in OS_SPAWNERS:
            yield node, 'os.' + func.attr


def test_every_subprocess_of_the_collection_gets_command_env():
    """A new call site without env=command_env() would run the tool in the user's language again."""
    found, wrong = [], []
    for path in sorted((ROOT / 'plugins').rglob('*.py')) + sorted((ROOT / 'roles').rglob('*.py')):
        tree = ast.parse(path.read_text(), str(path))
        for node, name in _spawn_calls(tree):
            where = '%s:%d %s' % (path.relative_to(ROOT), node.lineno, name)
            found.append(where)
            env = [kw.value for kw in node.keywords if kw.arg == 'env']
            ok = name.startswith('subprocess.') and env and isinstance(env[0], ast.Call) \
                and getattr(env[0].func, 'id', None) == 'command_env'
            if not ok:
                wrong.append(where)
    assert len(found) >= 5, found  # the scan sees the call sites (tar, zstd, age, cryptsetup, ...)
    assert not wrong, "run these with env=command_env() (plugins/module_utils/_process.py): %s" % wrong
