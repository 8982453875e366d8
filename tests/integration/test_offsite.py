# -*- coding: utf-8 -*-
"""backup_sync against real servers on 127.0.0.1: `rclone serve s3`, moto's S3 server, and OpenSSH's sshd (SFTP),
each started by a fixture on a free port. Faults: a server killed mid-upload, wrong credentials, a missing bucket."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from ansible_runner import run_playbook
from offsite_servers import MotoS3, RcloneS3, SFTPServer

DEBIAN_RCLONE = '/usr/bin/rclone'  # Debian 12's rclone 1.60: the managed hosts' minimum


@pytest.fixture
def rclone_s3(tmp_path):
    server = RcloneS3(tmp_path / 'rclone-s3').start()
    yield server
    server.stop()


@pytest.fixture
def moto_s3(tmp_path):
    server = MotoS3(tmp_path / 'moto').start()
    yield server
    server.stop()


@pytest.fixture
def sftp_server(tmp_path):
    server = SFTPServer(tmp_path / 'sftp').start()
    yield server
    server.stop()


def sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def make_backup(dest, volume, when, size, payload_dir):
    """A real backup in the store's layout: a zstd-compressed tar of `size` random bytes, its manifest last."""
    folder = Path(dest) / volume
    folder.mkdir(parents=True, exist_ok=True)
    payload_dir.mkdir(parents=True, exist_ok=True)
    (payload_dir / 'data.bin').write_bytes(os.urandom(size))
    stamp = when.strftime('%Y%m%dT%H%M%SZ')
    archive = folder / ('%s-%s.tar.zst' % (volume, stamp))
    with open(archive, 'wb') as out:
        tar = subprocess.Popen(['tar', '-C', str(payload_dir), '-cf', '-', '.'], stdout=subprocess.PIPE)
        subprocess.run(['zstd', '-1', '-q', '-c'], stdin=tar.stdout, stdout=out, check=True)
        assert tar.wait() == 0
    manifest = dict(format='holdfast.volumes/backup', format_version=1, volume=volume, archive=archive.name,
                    sha256=sha256(archive), bytes_stored=archive.stat().st_size, compression='zstd',
                    created=when.strftime('%Y-%m-%dT%H:%M:%SZ'), file_count=1)
    (folder / ('%s-%s.manifest.json' % (volume, stamp))).write_text(json.dumps(manifest))
    return archive, manifest


def tree_state(root):
    """Every file under root with size, mtime and sha256: 'nothing local touched' compares two of these (the
    sync's own lock file aside)."""
    out = {}
    for base, _dirs, files in os.walk(root):
        for name in files:
            if name == '.holdfast-sync.lock':
                continue
            path = os.path.join(base, name)
            st = os.stat(path)
            out[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns, sha256(path))
    return out


def sync(**args):
    return {'name': 'sync', 'holdfast.volumes.backup_sync': args}


T0 = dt.datetime(2026, 3, 1, 2, 0, tzinfo=dt.timezone.utc)


def test_sync_real_backups_to_rclone_s3_check_diff_idempotent(docker_client, prefix, rclone_s3, tmp_path):
    vol = prefix + '_db'
    docker_client.create_volume(vol)
    with open(os.path.join(docker_client.inspect_volume(vol)['Mountpoint'], 'table'), 'w') as handle:
        handle.write('rows\n' * 1000)
    dest = str(tmp_path / 'backups')
    backup = {'name': 'backup', 'holdfast.volumes.volume_backup': {'volume': vol, 'dest': dest}}
    assert run_playbook([backup]).rc == 0
    time.sleep(1.1)  # a second backup with another timestamp
    assert run_playbook([backup]).rc == 0
    bucket = rclone_s3.bucket('offsite')
    remote = rclone_s3.remote(bucket + '/fleet')
    args = dict(dest=dest, remote=remote, source='host1')

    check = run_playbook([sync(**args)], check=True, diff=True)
    assert check.rc == 0, check.stdout
    res = check.task('sync')
    assert res['changed'] and len(res['copied']) == 2 and res['present'] == 0
    assert all(c['verified_by'] is None for c in res['copied'])
    assert not list((rclone_s3.root / bucket).rglob('*.json')), 'check mode uploaded something'

    run = run_playbook([sync(**args)], diff=True)
    assert run.rc == 0, run.stdout + run.stderr
    res = run.task('sync')
    assert res['changed'] and len(res['copied']) == 2 and res['bytes_copied'] > 0
    assert sorted(c['archive'] for c in res['copied']) == sorted(c['archive'] for c in check.task('sync')['copied'])
    assert all(c['verified_by'] == 'remote md5' for c in res['copied'])
    assert res['diff']['before'] == '' and res['diff']['after'].count('.manifest.json') == 2
    local_folder = Path(dest) / vol
    for entry in res['copied']:
        on_server = rclone_s3.object_path(bucket, 'fleet/' + entry['remote_archive'])
        assert sha256(on_server) == entry['sha256'] == sha256(local_folder / entry['archive'])
        manifest = rclone_s3.object_path(bucket, 'fleet/' + entry['remote_manifest'])
        assert json.loads(manifest.read_text())['sha256'] == entry['sha256']

    again = run_playbook([sync(**args)], diff=True)
    res = again.task('sync')
    assert again.rc == 0 and not res['changed'] and res['copied'] == [] and res['present'] == 2
    assert res['rclone_runs'] == ['lsjson'], 'a no-op sync lists the remote once and does nothing else'


def _sample_processes(secrets, stop, seen):
    """Until stop: every process's command line, and the environment of every process but rclone's."""
    while not stop.is_set():
        for pid in os.listdir('/proc'):
            if not pid.isdigit():
                continue
            try:
                cmdline = open('/proc/%s/cmdline' % pid, 'rb').read()
                environ = open('/proc/%s/environ' % pid, 'rb').read()
            except OSError:
                continue
            is_rclone = os.path.basename(cmdline.split(b'\0')[0]) == b'rclone'
            if is_rclone and b'copy' in cmdline.split(b'\0'):
                seen['rclone_copy'] += 1
                seen['rclone_env_has_secret'] |= any(s in environ for s in secrets)
            for secret in secrets:
                if secret in cmdline:
                    seen['leaks'].append(('cmdline', pid, cmdline[:200]))
                if not is_rclone and secret in environ:
                    seen['leaks'].append(('environ', pid, cmdline[:200]))
        time.sleep(0.01)


def test_moto_secrets_never_in_process_list_or_verbose_output(moto_s3, tmp_path):
    dest = tmp_path / 'backups'
    make_backup(dest, 'appdata', T0, 6 * 1024 * 1024, tmp_path / 'p')
    bucket = moto_s3.bucket('holdfast-offsite')
    remote = moto_s3.remote(bucket, session_token='hf-token-%s' % os.getpid())
    secrets = [moto_s3.secret.encode(), moto_s3.key_id.encode(), remote['options']['session_token'].encode()]
    stop, seen = threading.Event(), dict(leaks=[], rclone_copy=0, rclone_env_has_secret=False)
    sampler = threading.Thread(target=_sample_processes, args=(secrets, stop, seen))
    sampler.start()
    try:
        # slowed down so the sampler sees the upload (6 MiB at 3 MiB/s)
        run = run_playbook([sync(dest=str(dest), remote=remote, source='h1', bwlimit='3M')], verbosity=3,
                           diff=True)
    finally:
        stop.set()
        sampler.join()
    assert run.rc == 0, run.stdout[-3000:]
    res = run.task('sync')
    assert [c['verified_by'] for c in res['copied']] == ['remote md5']
    assert seen['rclone_copy'] > 0 and seen['rclone_env_has_secret'], 'the sampler never saw rclone at work'
    assert seen['leaks'] == [], seen['leaks']
    for secret in secrets:
        assert secret.decode() not in run.stdout + run.stderr
        assert secret.decode() not in json.dumps(run.records)
    # the private directory of the run is gone
    assert not [p for p in os.listdir('/tmp') if p.startswith('holdfast-rclone-') and
                os.stat(os.path.join('/tmp', p)).st_mtime > time.time() - 60]


def test_sftp_with_debian_rclone_and_read_back(sftp_server, tmp_path):
    dest = tmp_path / 'backups'
    make_backup(dest, 'vol_a', T0, 200000, tmp_path / 'p')
    make_backup(dest, 'vol_b', T0, 100000, tmp_path / 'p')
    (sftp_server.root / 'store').mkdir()
    remote = sftp_server.remote('store')
    assert os.path.exists(DEBIAN_RCLONE), 'scripts/setup.sh installs Debian rclone (the minimum version)'
    run = run_playbook([sync(dest=str(dest), remote=remote, source='h2', rclone_path=DEBIAN_RCLONE,
                             volumes=['vol_a'])])
    assert run.rc == 0, run.stdout
    res = run.task('sync')
    assert [c['verified_by'] for c in res['copied']] == ['remote md5']
    run = run_playbook([sync(dest=str(dest), remote=remote, source='h2', verify='read')])
    res = run.task('sync')
    assert run.rc == 0 and [(c['volume'], c['verified_by']) for c in res['copied']] == [('vol_b',
                                                                                         'read back sha256')]
    assert res['present'] == 1
    for vol in ('vol_a', 'vol_b'):
        local = next((dest / vol).glob('*.tar.zst'))
        assert sha256(sftp_server.root / 'store' / 'h2' / vol / local.name) == sha256(local)
    assert remote['options']['key_pem'].split('\n')[1] not in run.stdout


def test_killed_server_mid_upload_leaves_no_manifest_and_next_run_completes(rclone_s3, tmp_path):
    dest = tmp_path / 'backups'
    archive, manifest = make_backup(dest, 'big', T0, 24 * 1024 * 1024, tmp_path / 'p')
    bucket = rclone_s3.bucket('offsite')
    args = dict(dest=str(dest), remote=rclone_s3.remote(bucket), source='h1', bwlimit='4M')
    before = tree_state(dest)
    killer = threading.Timer(2.0, rclone_s3.kill)
    killer.start()
    started = time.monotonic()
    run = run_playbook([sync(**args)])
    killer.join()
    assert time.monotonic() - started < 60
    assert run.rc != 0 and run.status('sync') == 'failed'
    msg = run.task('sync')['msg']
    assert 'did not answer' in msg or 'connection refused' in msg.lower(), msg
    assert not list((rclone_s3.root / bucket).rglob('*.manifest.json')), 'a manifest without a verified archive'
    assert tree_state(dest) == before
    rclone_s3.start()
    run = run_playbook([sync(**dict(args, bwlimit=None))])
    assert run.rc == 0, run.stdout
    res = run.task('sync')
    assert [c['archive'] for c in res['copied']] == [archive.name]
    assert sha256(rclone_s3.object_path(bucket, 'h1/big/' + archive.name)) == manifest['sha256']
    assert tree_state(dest) == before


def test_wrong_credentials_and_missing_bucket_touch_nothing(rclone_s3, tmp_path):
    dest = tmp_path / 'backups'
    make_backup(dest, 'v', T0, 1000, tmp_path / 'p')
    bucket = rclone_s3.bucket('offsite')
    before = tree_state(dest)
    bad = rclone_s3.remote(bucket, secret_access_key='wrong-secret-%d' % os.getpid())
    run = run_playbook([sync(dest=str(dest), remote=bad, source='h1')], verbosity=3)
    assert run.rc != 0
    msg = run.task('sync')['msg']
    assert 'refused the credentials' in msg, msg
    assert bad['options']['secret_access_key'] not in run.stdout + run.stderr
    run = run_playbook([sync(dest=str(dest), remote=rclone_s3.remote('no-such-bucket/x'), source='h1')])
    msg = run.task('sync')['msg']
    assert run.rc != 0 and 'does not exist' in msg and 'no-such-bucket' in msg, msg
    assert not (rclone_s3.root / 'no-such-bucket').exists(), 'backup_sync created a bucket'
    assert tree_state(dest) == before
    assert list((rclone_s3.root / bucket).rglob('*')) == []
