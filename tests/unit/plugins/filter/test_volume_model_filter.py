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


S3 = {'type': 's3', 'path': 'bucket/prod', 'options': {'secret_access_key': 'hf-s3cr3t'}}
SFTP = {'type': 'sftp', 'path': '/srv/offsite', 'options': {'host': 'b', 'pass': 'hf-pa55'}}


def test_offsite_host_default_own_setting_opt_out_and_retention_fallbacks():
    model = [
        {'name': 'db', 'backup': {'dest': '/b', 'retention': {'keep_last': 3}}},  # default remote, local retention
        {'name': 'files', 'backup': {'dest': '/b', 'offsite': {'retention': {'keep_daily': 30}}}},  # own retention
        {'name': 'logs', 'backup': {'dest': '/c', 'offsite': {'remote': SFTP}}},  # own remote, default retention
        {'name': 'cache', 'backup': {'dest': '/b', 'offsite': {'enabled': False}}},  # opts out
        {'name': 'plain'},
    ]
    default = {'remote': S3, 'retention': None}
    jobs = volume_model(model, 'backup_jobs', offsite=default, host='web1')
    assert [j['offsite'] and (j['offsite']['remote_id'], j['offsite']['retention']) for j in jobs] == [
        (0, {'keep_last': 3}), (0, {'keep_daily': 30}), (1, None), None]
    assert jobs[0]['offsite']['host'] == 'web1' and jobs[0]['offsite']['label'] == 's3:bucket/prod'
    assert volume_model(model, 'offsite_remotes', offsite=default, host='web1') == [S3, SFTP]
    syncs = volume_model(model, 'offsite_syncs', offsite=default, host='web1')
    assert syncs == [{'dest': '/b', 'volumes': ['db', 'files'], 'host': 'web1', 'remote_id': 0,
                      'label': 's3:bucket/prod'},
                     {'dest': '/c', 'volumes': ['logs'], 'host': 'web1', 'remote_id': 1,
                      'label': 'sftp:/srv/offsite'}]
    rotations = volume_model(model, 'offsite_rotations', offsite=default, host='web1')
    assert [(r['volume'], r['remote_id'], r.get('keep_last'), r.get('keep_daily')) for r in rotations] == [
        ('db', 0, 3, None), ('files', 0, None, 30)]
    # what a task loops over never holds a secret (the remotes are named by index)
    for secret in ('hf-s3cr3t', 'hf-pa55'):
        assert secret not in repr(jobs) + repr(syncs) + repr(rotations)
    # the host default with a retention of its own wins over the local retention
    jobs = volume_model(model, 'backup_jobs', offsite={'remote': S3, 'retention': {'keep_weekly': 8}}, host='h')
    assert jobs[0]['offsite']['retention'] == {'keep_weekly': 8}
    # no default: only the volumes with an offsite setting of their own, and that one needs a remote
    assert [j['offsite'] is not None for j in volume_model(model[2:], 'backup_jobs', host='h')] == [True, False]
    with pytest.raises(AnsibleFilterError, match=r'\(files\): backup.offsite needs a remote'):
        volume_model(model, 'backup_jobs', host='h')
    with pytest.raises(AnsibleFilterError, match="host name .* got 'web/1'"):
        volume_model(model, 'offsite_syncs', offsite=default, host='web/1')
    schedule = volume_model(model, 'schedule', offsite=default, host='web1')
    assert sorted(schedule) == ['jobs', 'offsite_remotes', 'offsite_rotations', 'offsite_syncs']


@pytest.mark.parametrize('model, default, expected', [
    ([{'name': 'db', 'backup': {'dest': '/b', 'offsite': {'remote': S3, 'retension': {}}}}], None,
     r'\(db\): unknown key\(s\) backup.offsite.retension'),
    ([{'name': 'db', 'backup': {'dest': '/b', 'offsite': {'remote': S3, 'retention': {'keep_dayly': 1}}}}], None,
     r'\(db\): backup.offsite.retention: Unknown retention rule'),
    ([{'name': 'db', 'backup': {'dest': '/b', 'offsite': {'remote': {'type': 's3'}}}}], None, 'path'),
    ([{'name': 'db', 'backup': {'dest': '/b'}}], {'remote': S3, 'retention': {'keep_daily': -2}},
     'holdfast_backup_offsite.retention: keep_daily must be a positive'),
    ([{'name': 'db', 'backup': {'dest': '/b'}}], {'remot': S3}, r'holdfast_backup_offsite: unknown key\(s\) remot'),
])
def test_offsite_typos_fail_before_any_backup(model, default, expected):
    for facet in ('check', 'backup_jobs'):
        with pytest.raises(AnsibleFilterError, match=expected):
            volume_model(model, facet, offsite=default, host='h')


@pytest.mark.parametrize('facet', ['all', 'backups', 'seeds', 'permissions', 'encrypted'])
def test_facets_that_roles_loop_over_carry_no_remote_secret(facet):
    """A loop item lands whole in each per-item result and registered variable (no_log on a module option does not
    reach it): a volume's own backup.offsite remote keeps its type and path there, never its options."""
    secret = 'AKIA-s3cr3t-value-9f2c'
    remote = {'type': 's3', 'path': 'bucket/fleet', 'options': {'secret_access_key': secret}}
    encryption = {'path': '/srv/luks/db', 'backing_file': '/srv/luks/db.img', 'size': '1G', 'keyfile': '/etc/k'}
    model = [{'name': 'db', 'owner': 999, 'encryption': encryption, 'seed': {'src': '/srv/seed'},
              'backup': {'dest': '/srv/backups', 'offsite': {'remote': remote, 'retention': {'keep_last': 3}}}}]
    items = volume_model(model, facet)
    assert [item['name'] for item in items] == ['db']
    assert secret not in repr(items)
    assert items[0]['backup']['offsite']['remote'] == {'type': 's3', 'path': 'bucket/fleet'}
    # the job facets still reach the remote (by remote_id, for the modules' no_log options)
    assert volume_model(model, 'offsite_remotes', host='web1')[0]['options'] == {'secret_access_key': secret}
    assert model[0]['backup']['offsite']['remote']['options'] == {'secret_access_key': secret}  # input untouched


def test_remote_rotations_check_sizes_not_every_byte():
    """The role's and the runner's remote rotation must not download the whole offsite history on every run: the
    copies were verified when they arrived; a deep check is backup_info/the report with verify: sha256."""
    remote = {'type': 'sftp', 'path': '/srv/offsite', 'options': {'host': 'backup1'}}
    offsite = {'remote': remote, 'retention': {'keep_last': 3}}
    model = [{'name': 'db', 'backup': {'dest': '/srv/backups', 'offsite': offsite}}]
    rotations = volume_model(model, 'offsite_rotations', host='web1')
    assert [(r['volume'], r['verify'], r['keep_last']) for r in rotations] == [('db', 'size', 3)]
