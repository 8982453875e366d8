# -*- coding: utf-8 -*-
"""backup_sync against real servers on 127.0.0.1: `rclone serve s3`, moto's S3 server, and OpenSSH's sshd (SFTP),
each started by a fixture on a free port. Faults: a server killed mid-upload, wrong credentials, a missing bucket, a
copy corrupted on the server's disk, a restore cut off midway, a remote that is full (a small tmpfs under the
server) and one that is read-only (`rclone serve s3 --read-only`, `internal-sftp -R`)."""

from __future__ import annotations

import datetime as dt
import glob
import hashlib
import json
import os
import shutil
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
    args = dict(dest=dest, remote=remote, host='host1')

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
    # the md5 rclone compared right after each upload (the server's ETag): the remote is not asked again
    assert res['rclone_runs'] == ['lsjson', 'copy', 'copy'], res['rclone_runs']
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
            if is_rclone and b'copy' in cmdline.split(b'\0') and any(s in environ for s in secrets):
                seen['rclone_copy'] += 1
                seen['rclone_env_has_secret'] = True
                for var in environ.split(b'\0'):
                    if var.startswith(b'RCLONE_CONFIG='):
                        seen['private_dirs'].add(os.path.dirname(var.split(b'=', 1)[1].decode()))
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
    stop, seen = threading.Event(), dict(leaks=[], rclone_copy=0, rclone_env_has_secret=False, private_dirs=set())
    sampler = threading.Thread(target=_sample_processes, args=(secrets, stop, seen))
    sampler.start()
    try:
        # slowed down so the sampler sees the upload (6 MiB at 3 MiB/s)
        run = run_playbook([sync(dest=str(dest), remote=remote, host='h1', bwlimit='3M')], verbosity=3,
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
    # the private directory of the run (config, lists) is gone
    assert seen['private_dirs'] and not [d for d in seen['private_dirs'] if os.path.exists(d)]


def test_sftp_with_debian_rclone_and_read_back(sftp_server, tmp_path):
    dest = tmp_path / 'backups'
    make_backup(dest, 'vol_a', T0, 200000, tmp_path / 'p')
    make_backup(dest, 'vol_b', T0, 100000, tmp_path / 'p')
    (sftp_server.root / 'store').mkdir()
    remote = sftp_server.remote('store')
    assert os.path.exists(DEBIAN_RCLONE), 'scripts/setup.sh installs Debian rclone (the minimum version)'
    run = run_playbook([sync(dest=str(dest), remote=remote, host='h2', rclone_path=DEBIAN_RCLONE,
                             volumes=['vol_a'])])
    assert run.rc == 0, run.stdout
    res = run.task('sync')
    assert [c['verified_by'] for c in res['copied']] == ['remote md5']
    assert 'hashsum' not in res['rclone_runs'], 'md5sum on the server ran within the copy'
    run = run_playbook([sync(dest=str(dest), remote=remote, host='h2', verify='read')])
    res = run.task('sync')
    assert run.rc == 0 and [(c['volume'], c['verified_by']) for c in res['copied']] == [('vol_b',
                                                                                         'read back sha256')]
    assert res['present'] == 1
    for vol in ('vol_a', 'vol_b'):
        local = next((dest / vol).glob('*.tar.zst'))
        assert sha256(sftp_server.root / 'store' / 'h2' / vol / local.name) == sha256(local)
    assert remote['options']['key_pem'].split('\n')[1] not in run.stdout
    assert not res.get('warnings'), res.get('warnings')
    # without known_hosts_file rclone accepts any host key: every module says so, in a failed run too
    unchecked = dict(remote, options=dict((k, v) for k, v in remote['options'].items() if k != 'known_hosts_file'))
    run = run_playbook([info(remote=unchecked, host='h2'),
                        {'name': 'rotate', 'ignore_errors': True, 'holdfast.volumes.backup_rotation': dict(
                            remote=unchecked, host='h2', volume='never_synced', keep_last=1)}])
    assert run.task('info')['backups'] and run.status('rotate') == 'failed', run.stdout
    for name in ('info', 'rotate'):
        assert [w for w in run.task(name).get('warnings') or [] if 'known_hosts_file' in w], run.task(name)


def test_killed_server_mid_upload_leaves_no_manifest_and_next_run_completes(rclone_s3, tmp_path):
    dest = tmp_path / 'backups'
    archive, manifest = make_backup(dest, 'big', T0, 24 * 1024 * 1024, tmp_path / 'p')
    bucket = rclone_s3.bucket('offsite')
    args = dict(dest=str(dest), remote=rclone_s3.remote(bucket), host='h1', bwlimit='4M')
    before = tree_state(dest)
    killer = threading.Thread(target=kill_when_running, args=(rclone_s3, 'copy', 1, 1.0))  # 1 s into 6 s of upload
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
    run = run_playbook([sync(**{**args, 'bwlimit': None})])
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
    run = run_playbook([sync(dest=str(dest), remote=bad, host='h1')], verbosity=3)
    assert run.rc != 0
    msg = run.task('sync')['msg']
    assert 'refused the credentials' in msg, msg
    assert bad['options']['secret_access_key'] not in run.stdout + run.stderr
    run = run_playbook([sync(dest=str(dest), remote=rclone_s3.remote('no-such-bucket/x'), host='h1')])
    msg = run.task('sync')['msg']
    assert run.rc != 0 and 'does not exist' in msg and 'no-such-bucket' in msg, msg
    assert not (rclone_s3.root / 'no-such-bucket').exists(), 'backup_sync created a bucket'
    assert tree_state(dest) == before
    assert list((rclone_s3.root / bucket).rglob('*')) == []


def info(**args):
    return {'name': 'info', 'holdfast.volumes.backup_info': args}


def restore(**args):
    return {'name': 'restore', 'holdfast.volumes.volume_restore': args}


def flip_byte(path, offset=None):
    data = bytearray(path.read_bytes())
    pos = len(data) // 2 if offset is None else offset
    data[pos] ^= 0xFF
    path.write_bytes(bytes(data))


def test_remote_info_restore_and_a_copy_corrupted_on_the_server(docker_client, prefix, rclone_s3, tmp_path):
    vol, target = prefix + '_src', prefix + '_dst'
    docker_client.create_volume(vol)
    src_dir = docker_client.inspect_volume(vol)['Mountpoint']
    for i in range(20):
        Path(src_dir, 'f%02d' % i).write_bytes(os.urandom(2048) * 8)
    os.symlink('f00', os.path.join(src_dir, 'link'))
    dest = str(tmp_path / 'backups')
    assert run_playbook([{'name': 'b', 'holdfast.volumes.volume_backup': {'volume': vol, 'dest': dest}}]).rc == 0
    bucket = rclone_s3.bucket('offsite')
    remote = rclone_s3.remote(bucket + '/fleet')
    assert run_playbook([sync(dest=dest, remote=remote, host='web1')]).rc == 0

    run = run_playbook([info(remote=remote, host='web1', verify='sha256')])
    assert run.rc == 0, run.stdout
    state = run.task('info')['backups']
    assert [(s['volume'], s['count']) for s in state] == [(vol, 1)]
    assert state[0]['newest']['verified'] and state[0]['newest']['problem'] is None

    # a replacement host restores web1's newest copy, streamed from the remote, byte for byte
    docker_client.create_volume(target)
    dst_dir = docker_client.inspect_volume(target)['Mountpoint']
    Path(dst_dir, 'old').write_text('previous content')
    run = run_playbook([restore(remote=remote, host='web1', source=vol, volume=target, replace=True)])
    assert run.rc == 0, run.stdout
    assert sorted(os.listdir(dst_dir)) == sorted(os.listdir(src_dir))
    for name in os.listdir(src_dir):
        if name != 'link':
            assert sha256(os.path.join(dst_dir, name)) == sha256(os.path.join(src_dir, name))
    assert os.readlink(os.path.join(dst_dir, 'link')) == 'f00'

    # the object damaged on the server's disk (same size): backup_info with sha256 and the restore detect it
    archive = next((rclone_s3.root / bucket / 'fleet' / 'web1' / vol).glob('*.tar.zst'))
    flip_byte(archive)
    state = run_playbook([info(remote=remote, host='web1', verify='sha256')]).task('info')['backups'][0]
    assert not state['newest']['verified'] and 'does not match the manifest' in state['newest']['problem']
    Path(dst_dir, 'after').write_text('content since the restore')
    before = tree_state(dst_dir)
    run = run_playbook([restore(remote=remote, host='web1', source=vol, volume=target, replace=True, force=True)])
    assert run.rc != 0
    assert 'does not match its manifest' in run.task('restore')['msg'] or 'cannot be read' in run.task(
        'restore')['msg'], run.task('restore')['msg']
    assert tree_state(dst_dir) == before, 'a refused restore touched the target'


def kill_when_running(server, command, nth=1, delay=0.3, timeout=120):
    """Kill the server `delay` seconds after the nth `rclone <command>` process appeared."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        for pid in os.listdir('/proc'):
            try:
                argv = open('/proc/%s/cmdline' % pid, 'rb').read().split(b'\0')
            except OSError:
                continue
            if len(argv) > 2 and os.path.basename(argv[0]) == b'rclone' and argv[1] == command.encode() and \
                    pid not in seen:
                seen.append(pid)
                if len(seen) == nth:
                    time.sleep(delay)
                    server.kill()
                    return
        time.sleep(0.01)


def kill_when_staged(server, parent, least=4 * 1024 * 1024, timeout=120):
    """Kill the server once the restore's staging directory under `parent` holds `least` bytes: midway by what
    arrived, not by a delay (on an idle machine 96 MiB arrive within any fixed delay)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for stage in glob.glob(os.path.join(parent, '.holdfast-restore-*')):
            try:
                staged = sum(os.lstat(os.path.join(root, name)).st_size
                             for root, _dirs, names in os.walk(stage) for name in names)
            except OSError:
                continue
            if staged >= least:
                server.kill()
                return
        time.sleep(0.005)


def test_remote_restore_cut_off_midway_leaves_target_untouched(docker_client, prefix, rclone_s3, tmp_path):
    vol = prefix + '_big'
    docker_client.create_volume(vol)
    src_dir = docker_client.inspect_volume(vol)['Mountpoint']
    Path(src_dir, 'blob').write_bytes(os.urandom(96 * 1024 * 1024))
    dest = tmp_path / 'backups'
    run = run_playbook([{'name': 'b', 'holdfast.volumes.volume_backup': {'volume': vol, 'dest': str(dest),
                                                                         'compression': 'none'}}])
    assert run.rc == 0
    bucket = rclone_s3.bucket('offsite')
    # the server's objects are files: place the store there directly (backup_sync is tested above)
    shutil.copytree(dest / vol, rclone_s3.root / bucket / 'web1' / vol)
    time.sleep(1.2)  # the server's directory cache
    Path(src_dir, 'blob').write_bytes(b'changed since the backup')
    before = tree_state(src_dir)
    killer = threading.Thread(target=kill_when_staged, args=(rclone_s3, os.path.dirname(src_dir)))
    killer.start()
    run = run_playbook([restore(remote=rclone_s3.remote(bucket), host='web1', volume=vol, replace=True)])
    killer.join()
    assert run.rc != 0, 'the restore finished before the server was killed'
    msg = run.task('restore')['msg']
    assert 'not touched' in msg, msg
    assert tree_state(src_dir) == before
    assert not [n for n in os.listdir(os.path.dirname(src_dir)) if n.startswith('.holdfast')], \
        os.listdir(os.path.dirname(src_dir))


def test_remote_rotation_same_policy_and_safety(rclone_s3, tmp_path):
    dest = tmp_path / 'backups'
    made = [make_backup(dest, 'app', T0 - dt.timedelta(days=d), 4000 + d, tmp_path / 'p') for d in range(5)]
    bucket = rclone_s3.bucket('offsite')
    remote = rclone_s3.remote(bucket)
    assert run_playbook([sync(dest=str(dest), remote=remote, host='h1')]).rc == 0
    folder = rclone_s3.root / bucket / 'h1' / 'app'
    rotate = {'name': 'rotate', 'holdfast.volumes.backup_rotation': dict(
        remote=remote, host='h1', keep_last=2, now='2026-03-02T00:00:00Z')}
    check = run_playbook([rotate], check=True, diff=True)
    res = check.task('rotate')
    assert check.rc == 0 and res['changed'] and len(res['removed']) == 3 and len(res['kept']) == 2, check.stdout
    assert len(list(folder.glob('*.manifest.json'))) == 5, 'check mode removed something'
    # the newest copy is damaged on the server: reported broken, kept, and the newest sound one stays
    flip_byte(folder / made[0][0].name)
    run = run_playbook([rotate], diff=True)
    res = run.task('rotate')
    assert run.rc == 0, run.stdout
    assert [b['archive'].rsplit('/', 1)[1] for b in res['broken']] == [made[0][0].name]
    assert not res['broken'][0]['removed']
    kept = sorted(k['archive'].rsplit('/', 1)[1] for k in res['kept'])
    assert kept == sorted([made[1][0].name, made[2][0].name])
    left = sorted(p.name for p in folder.iterdir())
    assert left == sorted([m[0].name for m in made[:3]] + [m[0].name.replace('.tar.zst', '.manifest.json')
                                                           for m in made[:3]])
    assert 'broken backup' in run.stdout or any('broken' in w for w in res.get('warnings', []))
    again = run_playbook([rotate])
    assert again.rc == 0 and not again.task('rotate')['changed']


@pytest.fixture
def small_disk():
    """mount(path, size): a tmpfs of that size over path (the server's storage), grown again by grow(path, size)."""
    mounted = []

    def mount(path, size):
        os.makedirs(path, exist_ok=True)
        subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%s,mode=0755' % size, 'holdfast-full', str(path)],
                       check=True)
        mounted.append(str(path))
        return path

    mount.grow = lambda path, size: subprocess.run(['mount', '-o', 'remount,size=%s' % size, str(path)], check=True)
    yield mount
    for path in reversed(mounted):
        subprocess.run(['umount', '--lazy', path], check=False)


def offsite_server(kind, workdir, read_only=False):
    """(server, remote, directory on the server's disk that holds the remote path) of a fresh server."""
    if kind == 's3':
        server = RcloneS3(workdir, read_only=read_only)
        return server, server.remote(server.bucket('offsite')), server.root / 'offsite'
    server = SFTPServer(workdir, read_only=read_only)
    (server.root / 'store').mkdir()
    return server, server.remote('store'), server.root / 'store'


@pytest.mark.parametrize('kind', ['s3', 'sftp'])
def test_remote_full_fails_clearly_and_the_next_run_after_space_is_freed_completes(kind, small_disk, tmp_path):
    dest = tmp_path / 'backups'
    small, _m = make_backup(dest, 'small', T0, 1 << 20, tmp_path / 'p')
    big, big_manifest = make_backup(dest, 'big', T0, 12 << 20, tmp_path / 'p')
    server, remote, disk = offsite_server(kind, tmp_path / kind)
    small_disk(disk, '6m')  # room for the small backup, not for the big one
    server.start()
    try:
        before = tree_state(dest)
        args = dict(dest=str(dest), remote=remote, host='h1')
        run = run_playbook([sync(**args)])
        assert run.rc != 0 and run.status('sync') == 'failed'
        res = run.task('sync')
        msg = res['msg']
        assert big.name in msg and 'full' in msg, msg
        assert [c['archive'] for c in res['copied']] == [small.name]
        assert [c['archive'] for c in res['not_copied']] == [big.name]
        assert [p.name for p in disk.rglob('*.manifest.json')] == [small.name.replace('.tar.zst', '.manifest.json')]
        assert sha256(disk / 'h1' / 'small' / small.name) == sha256(small)
        assert tree_state(dest) == before
        small_disk.grow(disk, '64m')
        run = run_playbook([sync(**args)])
        assert run.rc == 0, run.stdout
        res = run.task('sync')
        assert [c['archive'] for c in res['copied']] == [big.name] and res['present'] == 1
        assert res['copied'][0]['verified_by'] == 'remote md5'
        assert sha256(disk / 'h1' / 'big' / big.name) == big_manifest['sha256']
        assert tree_state(dest) == before
    finally:
        server.stop()


@pytest.mark.parametrize('kind', ['s3', 'sftp'])
def test_read_only_remote_sync_and_rotation_fail_clearly_and_touch_nothing(kind, tmp_path):
    dest = tmp_path / 'backups'
    made = [make_backup(dest, 'app', T0 - dt.timedelta(days=d), 3000 + d, tmp_path / 'p') for d in range(1, 4)]
    server, remote, disk = offsite_server(kind, tmp_path / kind, read_only=True)
    shutil.copytree(dest, disk / 'h1')  # the remote has these three; the newest local backup is new
    new, _m = make_backup(dest, 'app', T0, 2000, tmp_path / 'p')
    server.start()
    try:
        local_before, remote_before = tree_state(dest), tree_state(disk)
        rotate = {'name': 'rotate', 'ignore_errors': True, 'holdfast.volumes.backup_rotation': dict(
            remote=remote, host='h1', keep_last=1, now='2026-03-02T00:00:00Z')}
        run = run_playbook([dict(sync(dest=str(dest), remote=remote, host='h1'), ignore_errors=True), rotate])
        assert run.status('sync') == 'failed' and run.status('rotate') == 'failed', run.stdout
        msg = run.task('sync')['msg']
        assert msg.startswith('Uploading 1 archive(s)') and new.name in msg and 'read-only' in msg, msg
        res = run.task('rotate')
        assert 'removed no backup' in res['msg'] and 'read-only' in res['msg'], res['msg']
        assert res['removed'] == [] and any(m[0].name.replace('.tar.zst', '.manifest.json') in res['msg']
                                            for m in made[1:]), res['msg']
        assert tree_state(dest) == local_before
        assert tree_state(disk) == remote_before
    finally:
        server.stop()
