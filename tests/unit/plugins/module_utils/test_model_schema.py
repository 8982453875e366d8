# -*- coding: utf-8 -*-
"""The one definition of the holdfast_volumes model, and every role's argument spec generated from it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._model_schema import (
    role_option,
    validate_model,
)

ROOT = Path(__file__).resolve().parents[4]


@pytest.mark.parametrize('role', ['volumes', 'encryption', 'backup', 'restore'])
def test_every_role_validates_the_same_model(role):
    spec = yaml.safe_load((ROOT / 'roles' / role / 'meta' / 'argument_specs.yml').read_text())
    option = spec['argument_specs']['main']['options']['holdfast_volumes']
    assert option['options'] == role_option('')['options'], "run python3 scripts/model-spec.py"
    assert option['type'] == 'list' and option['elements'] == 'dict'
    tasks = yaml.safe_load((ROOT / 'roles' / role / 'tasks' / 'main.yml').read_text())
    assert "volume_model('check'" in tasks[0]['ansible.builtin.assert']['that'] and tasks[0]['tags'] == ['always']


def test_the_backup_role_names_the_retention_rules_once_and_as_the_model_does():
    """Its one backup_rotation task (tasks/rotate.yml, for the local store and the remotes) passes every rule of
    the model's retention, under the same names; no other task of the role names one."""
    from ansible_collections.holdfast.volumes.plugins.module_utils._model_schema import MODEL, OFFSITE

    rules = set(MODEL['backup']['options']['retention']['options'])
    assert rules == set(OFFSITE['retention']['options'])
    task = yaml.safe_load((ROOT / 'roles' / 'backup' / 'tasks' / 'rotate.yml').read_text())[0]
    args = task['holdfast.volumes.backup_rotation']
    assert rules <= set(args) and set(args) - rules == {'dest', 'remote', 'host', 'volume', 'verify'}
    for name in rules:
        assert args[name] == '{{ item.%s | default(omit) }}' % name
    for other in (ROOT / 'roles' / 'backup' / 'tasks').glob('*.yml'):
        if other.name != 'rotate.yml':
            assert 'keep_daily' not in other.read_text(), other


def test_the_whole_model_is_accepted():
    validate_model([
        {'name': 'db', 'driver': 'local', 'driver_options': {}, 'labels': {'app': 'shop'}, 'state': 'present',
         'owner': 999, 'group': 'root', 'mode': '0700', 'recurse': False,
         'seed': {'src': '/srv/seed', 'owner': 999, 'group': 999},
         'backup': {'dest': '/b', 'compression': 'zstd', 'quiesce': 'stop', 'encrypt_to': ['age1x'],
                    'compression_level': 3, 'stop_timeout': 30, 'verify': True,
                    'pre_hooks': [{'container': 'db', 'command': 'pg_dump', 'user': 'postgres'}], 'post_hooks': [],
                    'retention': {'keep_last': 3, 'keep_daily': 7, 'keep_within': '2d', 'keep_within_daily': '1m',
                                  'timezone': 'Europe/Berlin'}}},
        {'name': 'secret', 'mode': 'u=rwx,g=,o=', 'encryption': {
            'path': '/srv/enc', 'backing_file': '/srv/enc.img', 'size': '1G', 'keyfile': '/etc/k', 'persistent': True,
            'fstype': 'xfs', 'pbkdf_memory': 65536, 'pbkdf_iter_time': 200}},
    ])


@pytest.mark.parametrize('entry, expected', [
    ({'name': 'db', 'backup': {'dest': '/b', 'retension': {'keep_last': 1}}}, 'unknown key(s) backup.retension'),
    ({'name': 'db', 'lables': {}}, 'unknown key(s) lables'),
    ({'name': 'db', 'seed': {'src': '/s', 'ownr': 1}}, 'seed.ownr'),
    ({'name': 'db', 'encryption': {'path': '/p', 'device': '/dev/x', 'pbkdf_iter_tme': 1}}, 'pbkdf_iter_tme'),
    ({'name': 'db', 'backup': {'dest': '/b', 'retention': {'keep_dayly': 7}}}, 'keep_dayly'),
    ({'name': 'db', 'backup': {'dest': '/b', 'retention': {'keep_daily': -5}}}, 'keep_daily must be a positive'),
    ({'name': 'db', 'backup': {'dest': '/b', 'pre_hooks': [{'container': 'c', 'cmd': 'x'}]}}, 'cmd'),
    ({'name': 'db', 'backup': {'quiesce': 'stop'}}, 'dest'),
    ({'name': 'db', 'backup': {'dest': '/b', 'quiesce': 'freeze'}}, 'quiesce must be one of'),
    ({'name': 'db', 'mode': 700}, 'mode: "0700"'),
    ({'name': 'db', 'mode': 'rwx'}, 'neither octal'),
    ({'name': 'db', 'labels': {'port': 80}}, 'quote it'),
    ({'name': '/etc'}, 'invalid volume name'),
    ({'name': 'db', 'encryption': {'path': '/p'}}, 'exactly one of backing_file and device'),
    ({'name': 'db', 'state': 'gone'}, 'state must be one of'),
    ({'driver': 'local'}, 'name'),
])
def test_a_mistake_anywhere_in_an_entry_is_named(entry, expected):
    with pytest.raises(HoldfastError) as caught:
        validate_model([{'name': 'ok'}, entry])
    assert expected in caught.value.msg and 'nothing was changed' in caught.value.msg, caught.value.msg


def test_every_problem_is_listed_at_once_and_duplicates_are_refused():
    with pytest.raises(HoldfastError) as caught:
        validate_model([{'name': 'db', 'mode': 755}, {'name': 'db', 'backup': {'dest': '/b', 'retension': {}}}])
    assert len(caught.value.details['problems']) == 3, caught.value.details


def test_not_a_list():
    with pytest.raises(HoldfastError, match='must be a list'):
        validate_model({'name': 'db'})
    assert validate_model(None) == []
