# -*- coding: utf-8 -*-
"""volume_backup and volume_restore on the real engine, real containers, real archives."""

from __future__ import annotations

import fcntl
import glob
import io
import json
import os
import subprocess
import tarfile
import time

import pytest
from ansible_runner import run_playbook
from containers import TEST_IMAGE, run_in_container
from procs import kill_tree
from trees import populate, snapshot


def backup(**args):
    return {'name': 'backup', 'holdfast.volumes.volume_backup': args}


def restore(**args):
    return {'name': 'restore', 'holdfast.volumes.volume_restore': args}


def data_dir(client, volume):
    return client.inspect_volume(volume)['Mountpoint']


@pytest.fixture
def dest(tmp_path):
    path = tmp_path / 'backups'
    path.mkdir()
    return str(path)


@pytest.fixture
def state_dir(tmp_path):
    return str(tmp_path / 'state')


def test_round_trip_preserves_everything(docker_client, prefix, dest, state_dir):
    src, dst = prefix + '_src', prefix + '_dst'
    docker_client.create_volume(src, labels={'app': 'shop'}, driver_opts={'type': 'none', 'o': 'bind',
                                                                          'device': dest + '-src'})
    os.makedirs(dest + '-src')
    populate(dest + '-src')
    before = snapshot(dest + '-src')
    acl = before[0][os.path.join('pgdata', 'base', 'table')]['xattrs']
    assert 'system.posix_acl_access' in acl and 'user.holdfast' in before[0]['.hidden']['xattrs']
    run = run_playbook([backup(volume=src, dest=dest)])
    assert run.rc == 0, run.stdout + run.stderr
    res = run.task('backup')
    assert res['changed'] and res['verified'] and res['file_count'] == len(before[0]) - 1
    manifest = json.load(open(res['manifest']))
    for key in ('format_version', 'volume', 'driver', 'driver_options', 'labels', 'created', 'file_count',
                'bytes_raw', 'bytes_stored', 'compression', 'encryption', 'sha256', 'collection_version'):
        assert key in manifest, key
    assert manifest['labels'] == {'app': 'shop'} and manifest['compression'] == 'zstd'
    assert manifest['bytes_stored'] == os.path.getsize(res['archive'])
    assert manifest['bytes_raw'] > manifest['bytes_stored']
    # the source changes after the backup; restoring into a NEW name must not touch it (the manifest records the
    # source's bind device, which the restore must not reuse: the new volume is a plain local one)
    with open(os.path.join(dest + '-src', 'after-backup'), 'w') as handle:
        handle.write('newer than the backup')
    changed_source = snapshot(dest + '-src')
    run = run_playbook([restore(archive=res['archive'], volume=dst, state_dir=state_dir)])
    assert run.rc == 0, run.stdout
    out = run.task('restore')
    assert out['changed'] and out['created_volume'] and out['manifest_used'] and out['route'] == 'host'
    assert snapshot(dest + '-src') == changed_source
    created = docker_client.inspect_volume(dst)
    assert created['Options'] in (None, {}) and created['Driver'] == 'local'
    assert created['Labels'] == {'io.holdfast.volumes.restored-from': src}
    assert snapshot(data_dir(docker_client, dst)) == before
    # and by hand, with plain tools
    manual = dest + '-manual'
    os.makedirs(manual)
    subprocess.run('zstd -d < %s | tar -x --numeric-owner -p --xattrs --xattrs-include="*" --acls -C %s'
                   % (res['archive'], manual), shell=True, check=True)
    assert snapshot(manual)[1] == before[1]
    assert dict((k, v) for k, v in snapshot(manual)[0].items() if k != '.') == \
        dict((k, v) for k, v in before[0].items() if k != '.')


def test_gzip_none_and_restore_from_dest_newest(docker_client, prefix, dest, state_dir):
    vol = prefix + '_v'
    docker_client.create_volume(vol)
    root = data_dir(docker_client, vol)
    with open(os.path.join(root, 'f'), 'w') as handle:
        handle.write('one')
    first = run_playbook([backup(volume=vol, dest=dest, compression='gzip')]).task('backup')
    assert first['archive'].endswith('.tar.gz')
    subprocess.run(['tar', 'tzf', first['archive']], check=True, capture_output=True)
    time.sleep(1.1)
    with open(os.path.join(root, 'f'), 'w') as handle:
        handle.write('two')
    second = run_playbook([backup(volume=vol, dest=dest, compression='none')]).task('backup')
    assert second['archive'].endswith('.tar')
    with open(os.path.join(root, 'f'), 'w') as handle:
        handle.write('three')
    refused = run_playbook([restore(dest=dest, volume=vol, state_dir=state_dir)])
    assert refused.rc != 0 and 'replace: true' in refused.task('restore')['msg']
    assert open(os.path.join(root, 'f')).read() == 'three'
    run = run_playbook([restore(dest=dest, volume=vol, replace=True, keep_previous=True, state_dir=state_dir)])
    assert run.rc == 0, run.stdout
    res = run.task('restore')
    assert res['archive'] == second['archive']
    assert open(os.path.join(data_dir(docker_client, vol), 'f')).read() == 'two'
    assert open(os.path.join(res['previous'], 'f')).read() == 'three'
    # idempotent: same archive, unchanged content
    again = run_playbook([restore(dest=dest, volume=vol, replace=True, state_dir=state_dir)]).task('restore')
    assert again['changed'] is False
    with open(os.path.join(data_dir(docker_client, vol), 'f'), 'w') as handle:
        handle.write('changed since')
    third = run_playbook([restore(dest=dest, volume=vol, replace=True, state_dir=state_dir)]).task('restore')
    assert third['changed'] is True
    assert open(os.path.join(data_dir(docker_client, vol), 'f')).read() == 'two'
    import shutil
    shutil.rmtree(res['previous'])


def test_check_mode_changes_nothing(docker_client, prefix, dest, state_dir):
    vol = prefix + '_c'
    docker_client.create_volume(vol)
    with open(os.path.join(data_dir(docker_client, vol), 'f'), 'w') as handle:
        handle.write('x')
    run = run_playbook([backup(volume=vol, dest=dest)], check=True)
    assert run.rc == 0 and run.task('backup')['changed'] is True
    assert os.listdir(dest) == []
    real = run_playbook([backup(volume=vol, dest=dest)]).task('backup')
    before = sorted(os.listdir(os.path.dirname(real['archive'])))
    new = prefix + '_new'
    run = run_playbook([restore(archive=real['archive'], volume=new, state_dir=state_dir)], check=True)
    assert run.rc == 0 and run.task('restore')['changed'] is True
    assert run.task('restore')['would_create_volume'] is True
    assert docker_client.volumes(filters={'name': new}).get('Volumes') in (None, [])
    assert sorted(os.listdir(os.path.dirname(real['archive']))) == before
    assert not os.path.exists(state_dir)


def test_quiesce_stop_with_writer_and_restart(docker_client, prefix, dest, state_dir):
    vol = prefix + '_db'
    docker_client.create_volume(vol)
    writer = docker_client.create_container(
        # like a database, it finishes its current write and exits cleanly on SIGTERM (docker stop)
        TEST_IMAGE, name=prefix + '_writer', command=['sh', '-c', "stop=; trap 'stop=1' TERM; i=0; "
                                                      'while [ -z "$stop" ]; do i=$((i+1)); '
                                                      'echo $i > /data/counter.tmp; mv /data/counter.tmp /data/counter;'
                                                      ' echo $i >> /data/log; sleep 0.01; done'],
        host_config=docker_client.create_host_config(binds={vol: {'bind': '/data'}}))
    docker_client.start(writer)
    paused = docker_client.create_container(
        TEST_IMAGE, name=prefix + '_reader', command=['sh', '-c', "trap 'exit 0' TERM; while :; do sleep 0.2; done"],
        host_config=docker_client.create_host_config(binds={vol: {'bind': '/data', 'mode': 'ro'}}))
    docker_client.start(paused)
    time.sleep(1)
    run = run_playbook([backup(volume=vol, dest=dest, quiesce='stop', stop_timeout=10)])
    assert run.rc == 0, run.stdout
    res = run.task('backup')
    assert sorted(c['name'] for c in res['containers']) == sorted([prefix + '_writer', prefix + '_reader'])
    assert all(c['restored'] for c in res['containers'])
    assert docker_client.inspect_container(writer)['State']['Running']
    assert docker_client.inspect_container(paused)['State']['Running']
    # consistent: the stopped writer's counter equals the last line of its log in the archive
    with subprocess.Popen(['zstd', '-dc', res['archive']], stdout=subprocess.PIPE) as proc:
        with tarfile.open(fileobj=proc.stdout, mode='r|') as tar:
            files = {}
            for member in tar:
                if member.isfile():
                    files[member.name] = tar.extractfile(member).read().decode()
    assert files['./counter'].strip() == files['./log'].strip().splitlines()[-1]
    # pause mode too
    run = run_playbook([backup(volume=vol, dest=dest, quiesce='pause')])
    assert run.rc == 0 and all(c['action'] == 'pause' for c in run.task('backup')['containers'])
    assert docker_client.inspect_container(writer)['State']['Paused'] is False


def test_failing_hook_aborts_and_restarts(docker_client, prefix, dest):
    vol = prefix + '_h'
    docker_client.create_volume(vol)
    app = docker_client.create_container(TEST_IMAGE, name=prefix + '_app', command=['sleep', '3600'],
                                         host_config=docker_client.create_host_config(binds={vol: {'bind': '/d'}}))
    docker_client.start(app)
    run = run_playbook([backup(volume=vol, dest=dest, quiesce='stop', stop_timeout=1,
                               pre_hooks=[{'container': prefix + '_app',
                                           'command': ['sh', '-c', 'echo dumping > /d/dump']}],
                               post_hooks=[{'container': prefix + '_app', 'command': ['sh', '-c', 'exit 3']}])])
    assert run.rc != 0
    msg = run.task('backup')['msg']
    assert 'post hook' in msg and 'exit code 3' in msg
    assert docker_client.inspect_container(app)['State']['Running']
    folder = os.path.join(dest, vol)
    assert [f for f in os.listdir(folder) if f != '.lock'] == []  # no archive, no temporary
    assert open(os.path.join(data_dir(docker_client, vol), 'dump')).read() == 'dumping\n'
    run = run_playbook([backup(volume=vol, dest=dest, pre_hooks=[{'container': prefix + '_app',
                                                                  'command': 'false'}])])
    assert run.rc != 0 and 'pre hook' in run.task('backup')['msg']
    assert [f for f in os.listdir(folder) if f != '.lock'] == []


def test_kill_9_midway_leaves_previous_intact(docker_client, prefix, dest, tmp_path):
    vol = prefix + '_k'
    docker_client.create_volume(vol)
    root = data_dir(docker_client, vol)
    with open(os.path.join(root, 'small'), 'w') as handle:
        handle.write('first')
    first = run_playbook([backup(volume=vol, dest=dest)]).task('backup')
    first_sha = first['sha256']
    for i in range(6):
        with open(os.path.join(root, 'big%d' % i), 'wb') as handle:
            handle.write(os.urandom(64 * 1024 * 1024))
    folder = os.path.join(dest, vol)
    play = tmp_path / 'slow.yml'
    import yaml
    play.write_text(yaml.safe_dump([{'hosts': 'all', 'gather_facts': False, 'tasks': [
        backup(volume=vol, dest=dest, compression='zstd', compression_level=19)]}]))
    import sys

    from ansible_runner import ansible_env
    inv = tmp_path / 'inv'
    inv.write_text('localhost ansible_connection=local ansible_python_interpreter=%s\n' % sys.executable)
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', str(inv),
                             str(play)], env=ansible_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and not [f for f in os.listdir(folder) if f.startswith('.holdfast-tmp-')
                                          and f.endswith('.zst') and os.path.getsize(os.path.join(folder, f))]:
        time.sleep(0.05)
    # kill -9 the whole playbook at once: the module, its tar and zstd (only this test's processes, never by
    # name: the README's user path backs up beside this test)
    killed = kill_tree(proc.pid)
    proc.wait()
    assert {'tar', 'zstd'} <= set(killed.values()), 'the pipeline was not running: %s' % sorted(killed.values())
    time.sleep(0.5)
    temps = [f for f in os.listdir(folder) if f.startswith('.holdfast-tmp-')]
    assert temps, 'the kill came too late to leave a temporary file'
    complete = [f for f in os.listdir(folder) if f.endswith('.manifest.json')]
    assert complete == [os.path.basename(first['manifest'])]
    assert run_playbook([{'name': 'sha', 'ansible.builtin.stat': {'path': first['archive'],
                                                                  'checksum_algorithm': 'sha256'}}]
                        ).task('sha')['stat']['checksum'] == first_sha
    for i in range(6):
        os.unlink(os.path.join(root, 'big%d' % i))
    nxt = run_playbook([backup(volume=vol, dest=dest)]).task('backup')
    assert sorted(nxt['cleaned']) == sorted(temps)
    assert not [f for f in os.listdir(folder) if f.startswith('.holdfast-tmp-')]


def test_destination_full(docker_client, prefix, tmp_path):
    vol = prefix + '_full'
    docker_client.create_volume(vol)
    img = tmp_path / 'small.img'
    mnt = tmp_path / 'mnt'
    mnt.mkdir()
    subprocess.run(['truncate', '-s', '8M', str(img)], check=True)
    subprocess.run(['mkfs.ext4', '-q', '-F', str(img)], check=True)
    subprocess.run(['mount', '-o', 'loop', str(img), str(mnt)], check=True)
    try:
        root = data_dir(docker_client, vol)
        with open(os.path.join(root, 'small'), 'w') as handle:
            handle.write('fits')
        first = run_playbook([backup(volume=vol, dest=str(mnt))])
        assert first.rc == 0
        with open(os.path.join(root, 'random'), 'wb') as handle:
            handle.write(os.urandom(16 * 1024 * 1024))
        run = run_playbook([backup(volume=vol, dest=str(mnt))])
        assert run.rc != 0
        assert 'destination is full' in run.task('backup')['msg']
        folder = os.path.join(str(mnt), vol)
        names = sorted(f for f in os.listdir(folder) if f != '.lock')
        assert len(names) == 2 and not [f for f in names if f.startswith('.holdfast-tmp-')]
        assert subprocess.run(['zstd', '-t', first.task('backup')['archive']], capture_output=True,
                              check=False).returncode == 0
    finally:
        subprocess.run(['umount', str(mnt)], check=False)


def test_lock_serialises_backups(docker_client, prefix, dest):
    vol = prefix + '_l'
    docker_client.create_volume(vol)
    with open(os.path.join(data_dir(docker_client, vol), 'f'), 'w') as handle:
        handle.write('x')
    folder = os.path.join(dest, vol)
    os.makedirs(folder)
    fd = os.open(os.path.join(folder, '.lock'), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        run = run_playbook([backup(volume=vol, dest=dest, lock_timeout=1)])
        assert run.rc != 0 and 'holds the lock' in run.task('backup')['msg']
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    # two at once: both succeed, one after the other, with distinct names
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _index: run_playbook([backup(volume=vol, dest=dest)]), range(2)))
    assert all(r.rc == 0 for r in runs)
    archives = set(r.task('backup')['archive'] for r in runs)
    assert len(archives) == 2 and all(os.path.exists(a) for a in archives)


def test_encrypted_round_trip(docker_client, prefix, dest, tmp_path, state_dir):
    vol = prefix + '_enc'
    docker_client.create_volume(vol)
    with open(os.path.join(data_dir(docker_client, vol), 'secret.txt'), 'w') as handle:
        handle.write('personal data')
    key = tmp_path / 'key.txt'
    subprocess.run(['age-keygen', '-o', str(key)], check=True, capture_output=True)
    secret_line = [line for line in key.read_text().splitlines() if line.startswith('AGE-SECRET-KEY-')][0]
    recipient = [line for line in key.read_text().splitlines() if 'public key' in line][0].split(': ')[1]
    run = run_playbook([backup(volume=vol, dest=dest, encrypt_to=[recipient])], verbosity=3)
    assert run.rc == 0, run.stdout
    res = run.task('backup')
    assert res['archive'].endswith('.tar.zst.age')
    assert open(res['archive'], 'rb').read(21) == b'age-encryption.org/v1'
    assert b'personal data' not in open(res['archive'], 'rb').read()
    assert json.load(open(res['manifest']))['encryption']['recipients'] == [recipient]
    no_id = run_playbook([restore(archive=res['archive'], volume=prefix + '_dec', state_dir=state_dir)])
    assert no_id.rc != 0 and 'give identity' in no_id.task('restore')['msg']
    run2 = run_playbook([restore(archive=res['archive'], volume=prefix + '_dec', identity=str(key),
                                 state_dir=state_dir)], verbosity=3)
    assert run2.rc == 0, run2.stdout
    assert open(os.path.join(data_dir(docker_client, prefix + '_dec'), 'secret.txt')).read() == 'personal data'
    for out in (run.stdout, run.stderr, run2.stdout, run2.stderr):
        assert secret_line not in out


def test_foreign_archive_from_docker_recipe(docker_client, prefix, tmp_path, state_dir):
    vol = prefix + '_legacy'
    docker_client.create_volume(vol)
    root = data_dir(docker_client, vol)
    populate(root)
    expected = snapshot(root)
    out = tmp_path / 'out'
    out.mkdir()
    # the widely documented recipe, with our local busybox image
    subprocess.run(['docker', 'run', '--rm', '-v', '%s:/data' % vol, '-v', '%s:/backup' % out, TEST_IMAGE,
                    'tar', 'cf', '/backup/backup.tar', '-C', '/data', '.'], check=True, capture_output=True)
    run = run_playbook([restore(archive=str(out / 'backup.tar'), volume=prefix + '_copy', state_dir=state_dir)])
    assert run.rc == 0, run.stdout
    assert run.task('restore')['manifest_used'] is False
    copy = snapshot(data_dir(docker_client, prefix + '_copy'))
    # busybox tar keeps owners, modes, links and contents (not xattrs, and the sparse file is dense)
    for path, item in expected[0].items():
        got = copy[0][path]
        for key in ('type', 'mode', 'uid', 'gid', 'sha256', 'target'):
            assert got.get(key) == item.get(key), (path, key)


def _make_tar(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.GNU_FORMAT) as tar:
        root = tarfile.TarInfo('.')
        root.type = tarfile.DIRTYPE
        root.mode = 0o755
        tar.addfile(root)
        for name, kind, extra in members:
            info = tarfile.TarInfo(name)
            data = None
            if kind == 'file':
                data = extra or b'evil'
                info.size = len(data)
            elif kind == 'dir':
                info.type = tarfile.DIRTYPE
            elif kind == 'sym':
                info.type = tarfile.SYMTYPE
                info.linkname = extra
            elif kind == 'hard':
                info.type = tarfile.LNKTYPE
                info.linkname = extra
            elif kind == 'chr':
                info.type = tarfile.CHRTYPE
                info.devmajor, info.devminor = 1, 3
            elif kind == 'fifo':
                info.type = tarfile.FIFOTYPE
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


MALICIOUS = {
    'absolute': [('/tmp/holdfast-evil-abs', 'file', None)],
    'dotdot': [('../holdfast-evil-up', 'file', None)],
    'nested-dotdot': [('a/../../holdfast-evil-up2', 'file', None)],
    'write-through-symlink': [('link', 'sym', '/tmp'), ('link/holdfast-evil-sym', 'file', None)],
    'symlink-to-parent': [('up', 'sym', '..'), ('up/holdfast-evil-parent', 'file', None)],
    'dir-then-symlink': [('d', 'dir', None), ('d', 'sym', '/tmp'), ('d/holdfast-evil-swap', 'file', None)],
    'hardlink-outside': [('h', 'hard', '/etc/passwd')],
    'hardlink-to-later': [('h', 'hard', 'later'), ('later', 'file', b'x')],
    'hardlink-to-symlink': [('s', 'sym', '/etc/passwd'), ('h', 'hard', 's')],
    'device': [('null', 'chr', None)],
    'fifo': [('pipe', 'fifo', None)],
}


@pytest.mark.parametrize('case', sorted(MALICIOUS))
def test_malicious_archives_refused_nothing_written(docker_client, prefix, tmp_path, state_dir, case):
    vol = prefix + '_m'
    docker_client.create_volume(vol)
    root = data_dir(docker_client, vol)
    with open(os.path.join(root, 'keep'), 'w') as handle:
        handle.write('intact')
    before = snapshot(root)
    archive = tmp_path / ('%s.tar' % case)
    archive.write_bytes(_make_tar(MALICIOUS[case]))
    run = run_playbook([restore(archive=str(archive), volume=vol, replace=True, state_dir=state_dir)])
    assert run.rc != 0, case
    msg = run.task('restore')['msg']
    assert 'Refusing to restore' in msg and 'Nothing was written' in msg, msg
    assert snapshot(root) == before
    assert not glob.glob('/tmp/holdfast-evil-*') and not glob.glob(os.path.join(os.path.dirname(root), '..',
                                                                                'holdfast-evil-*'))
    assert not glob.glob(os.path.join(os.path.dirname(root), '.holdfast-restore-*'))


def test_corrupted_and_truncated_archives(docker_client, prefix, dest, state_dir):
    vol = prefix + '_cor'
    docker_client.create_volume(vol)
    root = data_dir(docker_client, vol)
    populate(root)
    res = run_playbook([backup(volume=vol, dest=dest)]).task('backup')
    target = prefix + '_target'
    docker_client.create_volume(target)
    troot = data_dir(docker_client, target)
    with open(os.path.join(troot, 'keep'), 'w') as handle:
        handle.write('intact')
    before = snapshot(troot)
    data = open(res['archive'], 'rb').read()
    # one flipped byte in the middle: the manifest's sha256 catches it
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    open(res['archive'], 'wb').write(bytes(flipped))
    run = run_playbook([restore(archive=res['archive'], volume=target, replace=True, state_dir=state_dir)])
    assert run.rc != 0 and 'not touched' in run.task('restore')['msg']
    assert snapshot(troot) == before
    # truncated, and without a manifest (a foreign copy): the decompressor catches it
    lone = os.path.join(dest, 'copy.tar.zst')
    open(lone, 'wb').write(data[: len(data) // 2])
    run = run_playbook([restore(archive=lone, volume=target, replace=True, state_dir=state_dir)])
    assert run.rc != 0 and 'not touched' in run.task('restore')['msg']
    # a plain tar cut at a block boundary (no end-of-archive blocks)
    plain = subprocess.run(['zstd', '-dc'], input=data, capture_output=True, check=True).stdout
    cut = os.path.join(dest, 'cut.tar')
    open(cut, 'wb').write(plain[:len(plain) // 2 // 512 * 512])
    run = run_playbook([restore(archive=cut, volume=target, replace=True, state_dir=state_dir)])
    assert run.rc != 0 and 'not touched' in run.task('restore')['msg']
    assert snapshot(troot) == before
    assert not glob.glob(os.path.join(os.path.dirname(troot), '.holdfast-restore-*'))


def test_restore_refuses_running_users_unless_quiesce(docker_client, prefix, dest, state_dir):
    vol = prefix + '_run'
    docker_client.create_volume(vol)
    with open(os.path.join(data_dir(docker_client, vol), 'v'), 'w') as handle:
        handle.write('backed up')
    res = run_playbook([backup(volume=vol, dest=dest)]).task('backup')
    with open(os.path.join(data_dir(docker_client, vol), 'v'), 'w') as handle:
        handle.write('later')
    app = docker_client.create_container(TEST_IMAGE, name=prefix + '_app', command=['sleep', '3600'],
                                         host_config=docker_client.create_host_config(binds={vol: {'bind': '/d'}}))
    docker_client.start(app)
    run = run_playbook([restore(archive=res['archive'], volume=vol, replace=True, state_dir=state_dir)])
    assert run.rc != 0 and 'quiesce: stop' in run.task('restore')['msg']
    run = run_playbook([restore(archive=res['archive'], volume=vol, replace=True, quiesce='stop', stop_timeout=1,
                                state_dir=state_dir)])
    assert run.rc == 0, run.stdout
    assert run.task('restore')['containers'][0]['restored'] is True
    assert docker_client.inspect_container(app)['State']['Running']
    out = docker_client.exec_start(docker_client.exec_create(app, ['cat', '/d/v']))
    assert out == b'backed up'


def test_engine_route_backup_and_restore(docker_client, prefix, dest, state_dir, loop_volume_factory):
    """Volumes on ext4 loop devices have no host directory: backup and restore go through the Engine."""
    src = loop_volume_factory('src')
    setup = ('mkdir -p /data/sub && echo via-engine > /data/sub/f && chown 999:998 /data/sub/f && '
             'chmod 640 /data/sub/f && ln -s sub/f /data/link')
    code, _output = run_in_container(docker_client, src, setup)
    assert code == 0
    res = run_playbook([backup(volume=src, dest=dest)])
    assert res.rc == 0, res.stdout
    out = res.task('backup')
    assert out['source']['route'] == 'engine' and out['file_count'] >= 3
    target = loop_volume_factory('dst')
    run = run_playbook([restore(archive=out['archive'], volume=target, state_dir=state_dir)])
    assert run.rc == 0, run.stdout
    check = 'stat -c "%u %g %a" /data/sub/f && cat /data/sub/f && readlink /data/link'
    code, listing = run_in_container(docker_client, target, check)
    assert code == 0 and listing.split() == ['999', '998', '640', 'via-engine', 'sub/f']
    # replacing the content of such a volume cannot be swapped atomically: refused, content intact
    refused = run_playbook([restore(archive=out['archive'], volume=target, replace=True, state_dir=state_dir)])
    assert refused.rc != 0 and 'cannot be swapped atomically' in refused.task('restore')['msg']


def test_restore_into_a_mount_point(prefix, tmp_path, state_dir):
    """A mount point (e.g. an encrypted luks_path volume) cannot be renamed: its entries are swapped instead."""
    img, mnt = tmp_path / 'fs.img', tmp_path / 'mnt'
    mnt.mkdir()
    subprocess.run(['truncate', '-s', '32M', str(img)], check=True)
    subprocess.run(['mkfs.ext4', '-q', '-F', str(img)], check=True)
    subprocess.run(['mount', '-o', 'loop', str(img), str(mnt)], check=True)
    try:
        populate(str(mnt / 'app'))
        os.chown(mnt, 999, 999)
        os.chmod(mnt, 0o750)
        before = snapshot(str(mnt))
        dest = str(tmp_path / 'backups')
        res = run_playbook([backup(path=str(mnt), dest=dest)]).task('backup')
        # damage the data, then restore over the mount point
        import shutil
        shutil.rmtree(mnt / 'app' / 'pgdata')
        (mnt / 'stray').write_text('written after the backup')
        os.chmod(mnt, 0o777)
        # a damaged archive first: the mount point keeps its content
        bad = tmp_path / 'bad.tar.zst'
        bad.write_bytes(open(res['archive'], 'rb').read()[:4000])
        failed = run_playbook([restore(archive=str(bad), path=str(mnt), replace=True, state_dir=state_dir)])
        assert failed.rc != 0 and (mnt / 'stray').exists()
        assert not [n for n in os.listdir(mnt) if n.startswith('.holdfast-')]
        run = run_playbook([restore(archive=res['archive'], path=str(mnt), replace=True, state_dir=state_dir)])
        assert run.rc == 0, run.stdout
        assert snapshot(str(mnt)) == before
        assert not [n for n in os.listdir(mnt) if n.startswith('.holdfast-')]
        assert os.path.ismount(mnt)
    finally:
        subprocess.run(['umount', str(mnt)], check=False)
