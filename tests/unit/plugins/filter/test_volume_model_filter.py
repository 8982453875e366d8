# -*- coding: utf-8 -*-
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.holdfast.volumes.plugins.filter.volume_model import volume_model


def test_backup_jobs_carry_module_parameters_and_the_whole_policy():
    model = [
        {'name': 'db', 'backup': {'dest': '/b', 'quiesce': 'stop', 'compression': 'gzip',
                                  'retention': {'keep_daily': 7, 'keep_within_weekly': '2m', 'timezone': 'UTC'}}},
        {'name': 'cache'},
        {'name': 'old', 'state': 'absent', 'backup': {'dest': '/b'}},
        {'name': 'files', 'backup': {'dest': '/c', 'encrypt_to': ['age1x']}},
    ]
    jobs = volume_model(model, 'backup_jobs')
    assert [j['name'] for j in jobs] == ['db', 'files']
    assert jobs[0]['backup'] == {'volume': 'db', 'dest': '/b', 'quiesce': 'stop', 'compression': 'gzip'}
    assert jobs[0]['rotation'] == {'volume': 'db', 'dest': '/b', 'keep_daily': 7, 'keep_within_weekly': '2m',
                                   'timezone': 'UTC'}
    assert jobs[1]['rotation'] is None and jobs[1]['backup']['encrypt_to'] == ['age1x']


def test_a_typo_in_the_policy_fails_before_any_backup():
    with pytest.raises(AnsibleFilterError, match=r'\(db\): backup.retention: Unknown retention rule'):
        volume_model([{'name': 'db', 'backup': {'dest': '/b', 'retention': {'keep_dayly': 7}}}], 'backup_jobs')
    with pytest.raises(AnsibleFilterError, match='missing required arguments: dest'):
        volume_model([{'name': 'db', 'backup': {'quiesce': 'stop'}}], 'backup_jobs')


@pytest.mark.parametrize('facet', ['all', 'check', 'volumes', 'encrypted', 'backups', 'backup_jobs', 'seeds',
                                   'permissions'])
def test_every_facet_checks_the_whole_model_first(facet):
    """backup: {retension: ...} was backed up and silently never rotated (unbounded growth)."""
    with pytest.raises(AnsibleFilterError, match='retension'):
        volume_model([{'name': 'other'}, {'name': 'db', 'backup': {'dest': '/b', 'retension': {'keep_last': 1}}}],
                     facet)
    assert volume_model([{'name': 'db'}], 'check') is True
