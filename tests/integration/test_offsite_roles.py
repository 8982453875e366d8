# -*- coding: utf-8 -*-
"""The backup role's offsite copies (issue #14, phase 3): backup.offsite per volume and the host-wide default
holdfast_backup_offsite, synced after the backups to real servers on 127.0.0.1 (`rclone serve s3`, and OpenSSH's
sshd for SFTP) and rotated there with the offsite retention; check mode predicts, a second run changes nothing,
and no secret reaches -vvv output, the recorded results or the process list."""

from __future__ import annotations

import json
import os
import subprocess
import threading

import pytest
from ansible_runner import run_named_playbook, run_playbook
from offsite_servers import RcloneS3, SFTPServer
from test_offsite import _sample_processes

ROLE = [{'name': 'backup role', 'ansible.builtin.include_role': {'name': 'holdfast.volumes.backup'}}]
SYNC = 'holdfast.volumes.backup : Copy the backups offsite, verified (one backup_sync per remote and destination)'
OFFSITE_ROTATION = 'holdfast.volumes.backup : Apply the retention policy (offsite)'


@pytest.fixture
def servers(tmp_path):
    s3 = RcloneS3(tmp_path / 'rclone-s3').start()
    sftp = SFTPServer(tmp_path / 'sftp').start()
    yield s3, sftp
    s3.stop()
    sftp.stop()


def changed(run):
    return [r['task'].split(' : ', 1)[-1] for r in run.records if r['status'] == 'ok' and (
        r['result'].get('changed') or any(i.get('changed') for i in r['result'].get('results', [])))]


def remote_archives(root):
    """{volume folder: sorted archive names that have their manifest} under a store root on the server's disk."""
    out = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        names = set(os.listdir(folder))
        out[folder.name] = sorted(n for n in names if n.endswith('.tar.zst')
                                  and n[:-len('.tar.zst')] + '.manifest.json' in names)
    return out


def test_role_syncs_and_rotates_offsite_without_leaking_secrets(docker_client, prefix, tmp_path, servers):
    s3, sftp = servers
    dest = tmp_path / 'backups'
    dest.mkdir()
    bucket = s3.bucket('holdfast-roles')
    (sftp.root / 'store').mkdir()
    a, b, c = prefix + '_a', prefix + '_b', prefix + '_c'
    for name in (a, b, c):
        docker_client.create_volume(name)
        with open(os.path.join(docker_client.inspect_volume(name)['Mountpoint'], 'data'), 'wb') as handle:
            handle.write(os.urandom(200000))
    model = [
        # the host-wide default (S3, keep_last 1 there as here)
        {'name': a, 'backup': {'dest': str(dest), 'retention': {'keep_last': 1}}},
        # its own remote (SFTP) and offsite retention (keep_last 3), 2 here
        {'name': b, 'backup': {'dest': str(dest), 'retention': {'keep_last': 2},
                               'offsite': {'remote': sftp.remote('store'), 'retention': {'keep_last': 3}}}},
        # opts out of the default
        {'name': c, 'backup': {'dest': str(dest), 'offsite': {'enabled': False}}},
    ]
    base = {'holdfast_volumes': model, 'holdfast_backup_host': 'web1',
            'holdfast_backup_offsite': {'remote': s3.remote(bucket + '/fleet'), 'retention': {'keep_last': 1}}}
    secrets = [s3.secret, s3.key_id, sftp.userkey.read_text().split('\n')[1]]

    offsite_only = dict(base, holdfast_backup_now=False, holdfast_backup_offsite_sync=True)  # copy what is there
    first = run_playbook(ROLE, play_vars=dict(base, holdfast_backup_offsite_sync=False))
    assert first.rc == 0, first.stdout
    assert SYNC not in [r['task'] for r in first.records if r['status'] != 'skipped']

    # check mode predicts the copies of a and b (not c), and copies nothing
    dry = run_playbook(ROLE, play_vars=offsite_only, check=True)
    assert dry.rc == 0, dry.stdout
    predicted = dry.task(SYNC)['results']
    assert [(r['item']['label'], r['item']['volumes'], len(r['copied'])) for r in predicted] == [
        ('s3:%s/fleet' % bucket, [a], 1), ('sftp:%s' % (sftp.root / 'store'), [b], 1)]
    assert all(r['changed'] for r in predicted)
    assert not (s3.root / bucket / 'fleet').exists() and os.listdir(sftp.root / 'store') == []

    # the real run, at -vvv, with the process list sampled: the copies arrive verified, nothing secret shows
    stop, seen = threading.Event(), dict(leaks=[], rclone_copy=0, rclone_env_has_secret=False, private_dirs=set())
    sampler = threading.Thread(target=_sample_processes, args=([s.encode() for s in secrets], stop, seen))
    sampler.start()
    try:
        real = run_playbook(ROLE, play_vars=offsite_only, verbosity=3, diff=True)
    finally:
        stop.set()
        sampler.join()
    assert real.rc == 0, real.stdout[-3000:]
    synced = real.task(SYNC)['results']
    assert [[(c['volume'], c['verified_by']) for c in r['copied']] for r in synced] == [
        [(a, 'remote md5')], [(b, 'remote md5')]]
    assert [r['host'] for r in synced] == ['web1', 'web1']
    # the S3 server's own command line holds its key (the test's server, not the managed host's tools)
    leaks = [leak for leak in seen['leaks'] if leak[1] != str(s3.proc.pid)]
    assert leaks == [] and seen['rclone_copy'] > 0, (leaks, seen['rclone_copy'])
    for secret in secrets:
        assert secret not in real.stdout + real.stderr, 'a secret in the -vvv output'
        assert secret not in json.dumps(real.records), 'a secret in the recorded results'
    assert remote_archives(s3.root / bucket / 'fleet' / 'web1').keys() == {a}
    assert remote_archives(sftp.root / 'store' / 'web1').keys() == {b}

    # a second run copies and rotates nothing
    again = run_playbook(ROLE, play_vars=offsite_only)
    assert again.rc == 0 and changed(again) == [], changed(again)
    assert [r['rclone_runs'] for r in again.task(SYNC)['results']] == [['lsjson'], ['lsjson']]

    # one more backup, copied, and each remote rotated with its volume's offsite retention
    run = run_playbook(ROLE, play_vars=base)
    assert run.rc == 0, run.stdout
    assert [[c['volume'] for c in r['copied']] for r in run.task(SYNC)['results']] == [[a], [b]]
    rotated = run.task(OFFSITE_ROTATION)['results']
    assert [(r['item']['volume'], len(r['kept']), len(r['removed'])) for r in rotated] == [(a, 1, 1), (b, 2, 0)]
    assert [r['changed'] for r in rotated] == [True, False]
    assert len(remote_archives(s3.root / bucket / 'fleet' / 'web1')[a]) == 1
    assert len(remote_archives(sftp.root / 'store' / 'web1')[b]) == 2
    assert [len([n for n in os.listdir(dest / v) if n.endswith('.tar.zst')]) for v in (a, b, c)] == [1, 2, 2]
    assert not (s3.root / bucket / 'fleet' / 'web1' / c).exists() and not (sftp.root / 'store' / 'web1' / c).exists()

    # the report: per volume with an offsite copy, the newest one on its remote, its age, and that it checks out
    report_dir = tmp_path / 'report'
    report = run_named_playbook('holdfast.volumes.report', dict(base, holdfast_report_dir=str(report_dir),
                                                                holdfast_report_verify='sha256'))
    assert report.rc == 0, report.stdout[-3000:]
    host = json.loads((report_dir / 'holdfast-report.json').read_text())['hosts'][0]
    offsite = dict((o['volume'], o) for o in host['offsite'])
    assert sorted(offsite) == [a, b] and host['offsite_problems'] == []
    assert (offsite[a]['count'], offsite[b]['count']) == (1, 2)
    for volume, label in ((a, 's3:%s/fleet' % bucket), (b, 'sftp:%s' % (sftp.root / 'store'))):
        newest = offsite[volume]['newest']
        assert (offsite[volume]['remote'], offsite[volume]['host']) == (label, 'web1')
        assert newest['verified'] and newest['verify'] == 'sha256' and 0 <= newest['age_seconds'] < 3600
        assert newest['archive'].endswith(sorted(os.listdir(dest / volume))[-1].replace('.manifest.json', '.tar.zst'))
    html = (report_dir / 'holdfast-report.html').read_text()
    assert '<th>offsite copy of</th>' in html and html.count('yes (sha256)') >= 2
    for secret in secrets:
        assert secret not in report.stdout + html + (report_dir / 'holdfast-report.json').read_text()


NEVER = '0 0 31 2 *'  # 31 February: cron never fires it by itself; the test runs its command


def test_scheduled_runner_backs_up_then_syncs_then_rotates_the_remote(docker_client, prefix, tmp_path, servers):
    _s3, sftp = servers
    volume = prefix + '_sched'
    docker_client.create_volume(volume)
    with open(os.path.join(docker_client.inspect_volume(volume)['Mountpoint'], 'orders.csv'), 'w') as handle:
        handle.write('1,widget\n')
    (tmp_path / 'backups').mkdir()
    (sftp.root / 'store').mkdir()
    remote = sftp.remote('store')
    secret = remote['options']['key_pem'].split('\n')[1]
    jobs = tmp_path / 'etc' / 'holdfast' / 'backup-jobs.json'
    role_vars = {
        'holdfast_volumes': [{'name': volume, 'backup': {'dest': str(tmp_path / 'backups'),
                                                         'offsite': {'remote': remote,
                                                                     'retention': {'keep_last': 1}}}}],
        'holdfast_backup_host': 'web2', 'holdfast_backup_now': False,
        'holdfast_backup_schedule_state': 'present', 'holdfast_backup_schedule_cron': NEVER,
        'holdfast_backup_schedule_lib': str(tmp_path / 'lib'), 'holdfast_backup_schedule_jobs': str(jobs),
    }
    cron = '/etc/cron.d/holdfast-backup'
    try:
        run = run_playbook(ROLE, play_vars=role_vars, diff=True, verbosity=3)
        assert run.rc == 0, run.stdout[-3000:]
        assert secret not in run.stdout + run.stderr and secret not in json.dumps(run.records)
        # the jobs file: root's, 0600 (its directory stays 0755: it may be a shared one); remotes by index
        info, folder = os.stat(jobs), os.stat(jobs.parent)
        assert (info.st_uid, info.st_mode & 0o777, folder.st_uid, folder.st_mode & 0o777) == (0, 0o600, 0, 0o755)
        plan = json.loads(jobs.read_text())
        assert plan['offsite_remotes'] == [remote]
        assert plan['offsite_syncs'] == [{'dest': str(tmp_path / 'backups'), 'volumes': [volume], 'host': 'web2',
                                          'remote_id': 0, 'label': 'sftp:%s' % remote['path']}]
        line = [entry for entry in open(cron).read().splitlines() if entry.startswith(NEVER)][0]
        assert secret not in line and str(jobs) in line
        command = line[len(NEVER):].strip()[len('root '):]
        log = '/var/log/holdfast-backup.log'
        for _run in range(2):  # as cron runs it, with a Python that has no Ansible; Debian's rclone on its PATH
            start = os.path.getsize(log) if os.path.exists(log) else 0
            proc = subprocess.run(['sh', '-c', command], capture_output=True, text=True, timeout=300, check=False)
            with open(log) as handle:
                handle.seek(start)
                lines = [json.loads(entry) for entry in handle.read().splitlines()]
            assert proc.returncode == 0, lines
        assert secret not in json.dumps(lines)
        job, synced, rotated, summary = lines[-4:]
        assert job['ok'] and job['volume'] == volume
        assert synced['ok'] and synced['copied'] == 1 and synced['present'] == 1 and synced['host'] == 'web2'
        assert rotated['ok'] and (rotated['volume'], rotated['kept'], rotated['removed']) == (volume, 1, 1)
        assert summary == {'summary': True, 'jobs': 1, 'failed': 0, 'offsite_syncs': 1, 'offsite_failed': 0,
                           'ok': True}
        on_server = sorted(os.listdir(sftp.root / 'store' / 'web2' / volume))
        local = sorted(os.listdir(tmp_path / 'backups' / volume))
        assert [n for n in on_server if n.endswith('.tar.zst')] == [n for n in local if n.endswith('.tar.zst')][-1:]
        # a jobs file with credentials that others can read is refused before anything runs
        os.chmod(jobs, 0o644)
        proc = subprocess.run(['sh', '-c', command], capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 1
        assert 'holds remote credentials' in open(log).read().splitlines()[-1]
    finally:
        gone = run_playbook(ROLE, play_vars=dict(role_vars, holdfast_backup_schedule_state='absent'))
    assert gone.rc == 0, gone.stdout
    assert not os.path.exists(cron) and not jobs.exists()
