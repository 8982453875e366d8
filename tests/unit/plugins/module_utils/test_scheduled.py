# -*- coding: utf-8 -*-
"""The scheduled runner's logic: defaults, refusals, one job's failure not stopping the next, the jobs file's
permissions. The real runner runs against the real engine in tests/integration/test_schedule.py and under systemd
in the VM tier."""
from __future__ import annotations

import json
import os

import pytest

from ansible_collections.holdfast.volumes.plugins.module_utils._backup import BACKUP_OPTIONS
from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._rotation import ROTATION_OPTIONS
from ansible_collections.holdfast.volumes.plugins.module_utils._scheduled import (
    load_jobs,
    load_plan,
    run_jobs,
    run_offsite,
    with_defaults,
)


def test_defaults_are_the_modules_own():
    params = with_defaults(BACKUP_OPTIONS, dict(volume='db', dest='/b'), 'job')
    assert params['compression'] == 'zstd' and params['quiesce'] == 'auto' and params['verify'] is True
    assert params['lock_timeout'] == 600 and params['encrypt_to'] is None
    rot = with_defaults(ROTATION_OPTIONS, dict(volume='db', dest='/b', keep_daily=7), 'job')
    assert rot['verify'] == 'sha256' and rot['keep_daily'] == 7 and rot['keep_last'] is None


def test_unknown_and_missing_options_are_refused():
    with pytest.raises(HoldfastError, match='unknown options: compresion'):
        with_defaults(BACKUP_OPTIONS, dict(volume='db', dest='/b', compresion='gzip'), 'job 0 backup')
    with pytest.raises(HoldfastError, match='lacks required options: dest'):
        with_defaults(BACKUP_OPTIONS, dict(volume='db'), 'job 0 backup')


def test_a_failing_job_does_not_stop_the_next_and_counts():
    seen, lines = [], []

    def backup(params):
        seen.append(params['volume'])
        if params['volume'] == 'bad':
            raise HoldfastError('Volume bad does not exist; nothing to back up.')
        if params['volume'] == 'crash':
            raise OSError(28, 'No space left on device')
        return dict(archive='/b/%s/x.tar.zst' % params['volume'], bytes_stored=10, file_count=2), ['slow']

    def rotate(params):
        return dict(kept=[1], removed=[1, 2], broken=[])

    jobs = [dict(backup=dict(volume='bad', dest='/b')),
            dict(backup=dict(volume='crash', dest='/b')),
            dict(backup=dict(volume='good', dest='/b'), rotation=dict(volume='good', dest='/b', keep_last=1)),
            dict(nothing=True)]
    failed = run_jobs(jobs, backup, rotate, BACKUP_OPTIONS, ROTATION_OPTIONS, lines.append)
    assert failed == 3 and seen == ['bad', 'crash', 'good']
    assert lines[0]['ok'] is False and 'does not exist' in lines[0]['msg']
    assert lines[1]['ok'] is False and 'No space left' in lines[1]['msg']
    assert lines[2]['ok'] is True and lines[2]['removed'] == 2 and lines[2]['warnings'] == ['slow']
    assert lines[3]['ok'] is False and "no 'backup'" in lines[3]['msg']
    json.dumps(lines)  # every line is JSON as written to the journal


def test_jobs_file_must_be_the_owners_alone(tmp_path):
    path = tmp_path / 'jobs.json'
    path.write_text(json.dumps({'jobs': [{'backup': {'volume': 'db', 'dest': '/b'}}]}))
    os.chmod(path, 0o600)
    assert load_jobs(str(path))[0]['backup']['volume'] == 'db'
    os.chmod(path, 0o620)
    with pytest.raises(HoldfastError, match='writable by its owner alone'):
        load_jobs(str(path))
    os.chmod(path, 0o600)
    path.write_text('{"jobs": 3}')
    with pytest.raises(HoldfastError, match="no list 'jobs'"):
        load_jobs(str(path))
    with pytest.raises(HoldfastError, match='Cannot read'):
        load_jobs(str(tmp_path / 'missing.json'))


REMOTE = {'type': 's3', 'path': 'b/p', 'options': {'secret_access_key': 'hf-s3cr3t'}}


def test_a_jobs_file_with_remotes_must_be_unreadable_to_others(tmp_path):
    path = tmp_path / 'jobs.json'
    path.write_text(json.dumps({'jobs': [], 'offsite_remotes': [REMOTE], 'offsite_syncs': []}))
    os.chmod(path, 0o644)
    with pytest.raises(HoldfastError, match='holds remote credentials and must be readable by its owner alone'):
        load_plan(str(path))
    os.chmod(path, 0o600)
    assert load_plan(str(path))['offsite_remotes'] == [REMOTE]
    path.write_text(json.dumps({'jobs': []}))
    os.chmod(path, 0o644)  # no remote, no secret: readable is fine (as before)
    assert load_plan(str(path)) == {'jobs': [], 'offsite_remotes': [], 'offsite_syncs': [], 'offsite_rotations': []}


def test_offsite_syncs_then_rotations_of_the_volumes_whose_sync_worked():
    from ansible_collections.holdfast.volumes.plugins.module_utils._offsite import SYNC_OPTIONS
    from ansible_collections.holdfast.volumes.plugins.module_utils._remote_store import REMOTE_STORE_OPTIONS

    plan = {'jobs': [], 'offsite_remotes': [REMOTE, dict(REMOTE, path='down')],
            'offsite_syncs': [{'dest': '/b', 'volumes': ['db', 'new'], 'host': 'web1', 'remote_id': 0, 'label': 'a'},
                              {'dest': '/b', 'volumes': ['files'], 'host': 'web1', 'remote_id': 1, 'label': 'b'}],
            'offsite_rotations': [{'volume': v, 'host': 'web1', 'remote_id': r, 'label': 'x', 'keep_last': 2}
                                  for v, r in (('db', 0), ('new', 0), ('files', 1))]}
    calls, lines = [], []

    def sync(params):
        calls.append(('sync', params['remote']['path'], params['volumes'], params['verify']))
        if params['remote']['path'] == 'down':
            raise HoldfastError('remote down')
        return dict(copied=[{}], present=1, bytes_copied=5)

    def rotate(params):
        calls.append(('rotate', params['volume'], params['keep_last'], params['remote']['path'], params['dest']))
        if params['volume'] == 'new':
            raise HoldfastError('No backups of new on remote s3:b/p under web1.')
        return dict(kept=[{}, {}], removed=[{}], broken=[]), []

    spec = dict(ROTATION_OPTIONS, dest=dict(type='path'), **REMOTE_STORE_OPTIONS)
    failed = run_offsite(plan, sync, rotate, SYNC_OPTIONS, spec, lines.append)
    assert failed == 1
    assert calls == [('sync', 'b/p', ['db', 'new'], 'auto'), ('sync', 'down', ['files'], 'auto'),
                     ('rotate', 'db', 2, 'b/p', None), ('rotate', 'new', 2, 'b/p', None)]
    assert [(line['ok'], line.get('copied'), line.get('removed'), line.get('skipped')) for line in lines] == [
        (True, 1, None, None), (False, None, None, None), (True, None, 1, None), (True, None, None, None),
        (True, None, None, 'its offsite sync did not run or failed')]
    assert 'hf-s3cr3t' not in json.dumps(lines)
