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
from ansible_collections.holdfast.volumes.plugins.module_utils._scheduled import load_jobs, run_jobs, with_defaults


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
