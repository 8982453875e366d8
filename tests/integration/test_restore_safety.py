# -*- coding: utf-8 -*-
"""Restores that a hostile manifest, a second local user or a remote engine cannot turn against the host
(issue 11 sections 1, 4 and 5; issue 13 item 7). Real engine, real archives, a real second user."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import socketserver
import stat
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid

import pytest
from ansible_runner import run_playbook
from containers import TEST_IMAGE, run_in_container
from trees import snapshot


def task(module, **args):
    return {'name': module, 'holdfast.volumes.%s' % module: args}


@pytest.fixture
def state_dir(tmp_path):
    return str(tmp_path / 'state')


@pytest.fixture
def public_dir():
    """A directory other users can traverse (pytest's tmp_path is root's alone)."""
    path = tempfile.mkdtemp(prefix='holdfast-safety-', dir='/var/tmp')
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def other_user():
    """A real unprivileged local user: (name, uid, gid)."""
    name = 'hfr%s' % uuid.uuid4().hex[:8]
    subprocess.run(['useradd', '--system', '--no-create-home', '--shell', '/usr/sbin/nologin', name], check=True)
    import pwd
    entry = pwd.getpwnam(name)
    yield name, entry.pw_uid, entry.pw_gid
    subprocess.run(['userdel', name], check=False)


def _tar(members, root=True):
    """A plain tar: members are (name, kind, data_or_target, mode)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.GNU_FORMAT) as tar:
        if root:
            info = tarfile.TarInfo('.')
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, kind, data, mode in members:
            info = tarfile.TarInfo(name)
            info.mode = mode
            if kind == 'dir':
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _sha256(path):
    import hashlib
    return hashlib.sha256(open(path, 'rb').read()).hexdigest()


@pytest.fixture(scope='module')
def _one_backup(docker_client, tmp_path_factory):
    """One real backup (archive + manifest) of a plain volume, made once for the tests of this file."""
    vol = 'hft%s_orig' % uuid.uuid4().hex[:8]
    docker_client.create_volume(vol)
    try:
        with open(os.path.join(docker_client.inspect_volume(vol)['Mountpoint'], 'restored.txt'), 'wb') as handle:
            handle.write(b'from the archive')
        dest = str(tmp_path_factory.mktemp('one-backup'))
        run = run_playbook([task('volume_backup', volume=vol, dest=dest)])
        assert run.rc == 0, run.stdout
        return run.task('volume_backup')
    finally:
        docker_client.remove_volume(vol, force=True)


@pytest.fixture
def backup_copy(_one_backup, tmp_path):
    """That backup, copied into this test's own store: dict(archive, manifest, dest)."""
    folder = tmp_path / 'store' / 'copy'
    folder.mkdir(parents=True)
    out = dict(dest=str(tmp_path / 'store'))
    for key in ('archive', 'manifest'):
        out[key] = str(folder / os.path.basename(_one_backup[key]))
        shutil.copy2(_one_backup[key], out[key])
    return out


# -- 1. the manifest decides nothing outside the target -------------------------------------------------------------
def test_forged_manifest_bind_device_is_ignored(docker_client, prefix, tmp_path, state_dir, backup_copy):
    """A manifest naming a bind device (correct sha256: easy to forge) must not make a restore into a NEW volume
    write into that directory; the new volume is a plain local one."""
    res = backup_copy
    victim = tmp_path / 'victim'
    victim.mkdir()
    (victim / 'precious').write_text('do not touch')
    before = snapshot(str(victim))
    manifest = json.load(open(res['manifest']))
    manifest.update(driver='local', driver_options={'type': 'none', 'o': 'bind', 'device': str(victim)})
    with open(res['manifest'], 'w') as handle:
        json.dump(manifest, handle)
    new = prefix + '_new'
    run = run_playbook([task('volume_restore', archive=res['archive'], volume=new, state_dir=state_dir)])
    assert run.rc == 0, run.stdout
    assert snapshot(str(victim)) == before
    vol = docker_client.inspect_volume(new)
    assert vol['Options'] in (None, {}) and vol['Mountpoint'] != str(victim)
    assert open(os.path.join(vol['Mountpoint'], 'restored.txt')).read() == 'from the archive'


def test_task_bind_device_gets_the_same_checks(docker_client, prefix, tmp_path, state_dir, backup_copy):
    """driver_options given by the task: the device directory is the target and is checked like any other
    (not empty without replace: refused; used by a running container: refused without quiesce)."""
    res = backup_copy
    device = tmp_path / 'device'
    device.mkdir()
    (device / 'live').write_text('live data')
    new = prefix + '_bound'
    opts = {'type': 'none', 'o': 'bind', 'device': str(device)}
    run = run_playbook([task('volume_restore', archive=res['archive'], volume=new, driver_options=opts,
                             state_dir=state_dir)])
    assert run.rc != 0 and 'holds data' in run.task('volume_restore')['msg']
    assert (device / 'live').read_text() == 'live data'
    assert not docker_client.volumes(filters={'name': new}).get('Volumes')
    # a container uses that directory through a bind mount: refused without quiesce, even with replace
    app = docker_client.create_container(TEST_IMAGE, name=prefix + '_app', command=['sleep', '3600'],
                                         host_config=docker_client.create_host_config(binds={str(device): {
                                             'bind': '/d'}}))
    docker_client.start(app)
    run = run_playbook([task('volume_restore', archive=res['archive'], volume=new, driver_options=opts,
                             replace=True, state_dir=state_dir)])
    assert run.rc != 0 and prefix + '_app' in run.task('volume_restore')['msg'], run.stdout
    assert (device / 'live').read_text() == 'live data'
    docker_client.remove_container(app, force=True)
    run = run_playbook([task('volume_restore', archive=res['archive'], volume=new, driver_options=opts,
                             replace=True, state_dir=state_dir)])
    assert run.rc == 0, run.stdout
    assert (device / 'restored.txt').read_text() == 'from the archive' and not (device / 'live').exists()
    assert docker_client.inspect_volume(new)['Options']['device'] == str(device)


# -- 5. what a path restore must also see -------------------------------------------------------------------------
def test_path_restore_sees_containers_through_bind_volumes(docker_client, prefix, tmp_path, state_dir,
                                                           backup_copy):
    res = backup_copy
    device = tmp_path / 'db'
    device.mkdir()
    (device / 'live').write_text('live data')
    vol = prefix + '_dbvol'
    docker_client.create_volume(vol, driver_opts={'type': 'none', 'o': 'bind', 'device': str(device)})
    app = docker_client.create_container(TEST_IMAGE, name=prefix + '_db', command=['sleep', '3600'],
                                         host_config=docker_client.create_host_config(binds={vol: {'bind': '/d'}}))
    docker_client.start(app)
    run = run_playbook([task('volume_restore', archive=res['archive'], path=str(device), replace=True,
                             state_dir=state_dir)])
    assert run.rc != 0, run.stdout
    assert prefix + '_db' in run.task('volume_restore')['msg'] and 'quiesce' in run.task('volume_restore')['msg']
    assert (device / 'live').read_text() == 'live data'
    run = run_playbook([task('volume_restore', archive=res['archive'], path=str(device), replace=True,
                             quiesce='stop', stop_timeout=1, state_dir=state_dir)])
    assert run.rc == 0, run.stdout
    assert [c['name'] for c in run.task('volume_restore')['containers']] == [prefix + '_db']
    assert docker_client.inspect_container(app)['State']['Running']
    out = docker_client.exec_start(docker_client.exec_create(app, ['cat', '/d/restored.txt']))
    assert out == b'from the archive'


def _killed_restore(archive, target, key, state_dir):
    """A restore really killed (SIGKILL) after its extraction, before its swap: returns when it is dead."""
    import signal

    from ansible_collections.holdfast.volumes.plugins.module_utils._restore_swap import HostRestore, restore_host
    ready = os.pipe()
    pid = os.fork()
    if pid == 0:  # the restore, which stops before the swap until it is killed
        try:
            os.close(ready[0])

            def stop(_path):
                os.write(ready[1], b'x')
                time.sleep(120)
            restore_host(dict(state_dir=state_dir, lock_timeout=5), archive, target,
                         HostRestore(key=key, before_swap=stop))
        finally:
            os._exit(1)
    os.close(ready[1])
    assert os.read(ready[0], 1) == b'x'
    os.close(ready[0])
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def test_killed_restore_leftovers_cleaned_only_when_provably_ours(docker_client, prefix, tmp_path, state_dir,
                                                                  backup_copy):
    from ansible_collections.holdfast.volumes.plugins.module_utils._safe_fs import Staging, open_dir
    dest, res = backup_copy['dest'], backup_copy
    base = tmp_path / 'srv'
    base.mkdir()
    target = base / 'app'
    target.mkdir()
    (target / 'old').write_text('old')
    key = 'path:%s' % target
    _killed_restore(res['archive'], str(target), key, state_dir)
    killed = [n for n in os.listdir(base) if n.startswith('.holdfast-restore-app-')]
    assert len(killed) == 1 and (base / killed[0] / 'data' / 'restored.txt').exists()
    assert (target / 'old').read_text() == 'old'
    fd = open_dir(str(base))
    try:
        other = Staging(fd, 'app', 'path:/somewhere/else')  # another target's: not ours to remove
        os.close(other.data_fd)
        os.close(other.fd)
    finally:
        os.close(fd)
    planted = base / '.holdfast-restore-app-planted'  # no marker: not provably ours
    planted.mkdir()
    (planted / 'keep').write_text('x')
    leftovers = sorted(str(base / n) for n in (killed[0], other.name, planted.name))
    info = [task('backup_info', dest=dest, state_dir=state_dir, verify='none')]
    dry = run_playbook([task('volume_restore', archive=res['archive'], path=str(target), replace=True,
                             state_dir=state_dir)] + info, check=True)
    assert dry.rc == 0 and dry.task('volume_restore')['leftovers'] == leftovers
    assert [(x['target'], x['staging']) for x in dry.task('backup_info')['restore_leftovers']] == [
        (key, str(base / killed[0]))]
    assert sorted(str(base / n) for n in os.listdir(base) if n.startswith('.holdfast-restore-')) == leftovers
    run = run_playbook([task('volume_restore', archive=res['archive'], path=str(target), replace=True,
                             state_dir=state_dir)] + info)
    assert run.rc == 0, run.stdout
    out = run.task('volume_restore')
    assert out['cleaned_leftovers'] == [str(base / killed[0])]
    assert out['leftovers'] == sorted(str(base / n) for n in (other.name, planted.name))
    assert run.task('backup_info')['restore_leftovers'] == []
    assert sorted(n for n in os.listdir(base) if n.startswith('.holdfast-')) == sorted([other.name, planted.name])
    assert (planted / 'keep').read_text() == 'x' and (target / 'restored.txt').exists()


def test_volume_names_are_validated(docker_client, prefix, tmp_path):
    (tmp_path / 'x.tar').write_bytes(_tar([]))
    bad = '../../containers/json'
    cases = (('volume_restore', dict(archive=str(tmp_path / 'x.tar'), volume=bad)),
             ('volume_backup', dict(volume=bad, dest=str(tmp_path))),
             ('volume_permissions', dict(volume=bad, owner=1)),
             ('volume_seed', dict(volume=bad, src=str(tmp_path))))
    run = run_playbook([dict(task(module, **args), ignore_errors=True) for module, args in cases])
    for module, _args in cases:
        result = run.task(module)
        assert run.status(module) == 'failed' and 'not a valid Docker volume name' in result['msg'], module


# -- 4. nothing by name where others can write ------------------------------------------------------------------
RACER = r'''
import os, sys, time
parent, aim, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
deadline = time.time() + seconds
swapped = set()
while time.time() < deadline:
    for name in os.listdir(parent):
        if name.startswith('.holdfast-restore-') and name not in swapped and not name.endswith('.moved'):
            try:
                os.rename(os.path.join(parent, name), os.path.join(parent, name + '.moved'))
                os.symlink(aim, os.path.join(parent, name))
                swapped.add(name)
                print('swapped', name, flush=True)
            except OSError as exc:
                print('failed', name, exc, flush=True)
'''


def test_second_user_cannot_redirect_staging(public_dir, other_user, tmp_path, state_dir):
    """The target's parent belongs to another user, who swaps the staging directory for a symlink to a root-only
    directory while the restore runs: nothing outside the target is written, chmodded or becomes the target."""
    _name, uid, gid = other_user
    parent = os.path.join(public_dir, 'home')
    os.mkdir(parent)
    os.chown(parent, uid, gid)
    target = os.path.join(parent, 'data')
    os.mkdir(target)
    os.chown(target, uid, gid)
    secret = os.path.join(public_dir, 'root-only')
    os.mkdir(secret, 0o700)
    with open(os.path.join(secret, 'shadow'), 'w') as handle:
        handle.write('root only')
    before = snapshot(secret)
    # no root member (a foreign archive): the restore sets the new root's owner and mode itself; big enough that
    # the extraction gives the racer time
    archive = tmp_path / 'foreign.tar'
    archive.write_bytes(_tar([('big', 'file', os.urandom(48 * 1024 * 1024), 0o644),
                              ('small', 'file', b'hello', 0o600)], root=False))
    racer = subprocess.Popen(['/usr/bin/python3', '-c', RACER, parent, secret, '60'], user=uid, group=gid,
                             extra_groups=[], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        run = run_playbook([task('volume_restore', archive=str(archive), path=target, replace=True,
                                 state_dir=state_dir)])
    finally:
        racer.kill()
        log = racer.communicate()[0]
    assert 'swapped' in log, log  # the attack really happened
    assert snapshot(secret) == before
    assert stat.S_IMODE(os.lstat(secret).st_mode) == 0o700
    assert not os.path.islink(target) and os.path.isdir(target)
    # the restore itself goes through, by descriptors (or, when the racer replaced the staging directory before it
    # was even opened, time after time, it stops with a clear message)
    assert run.rc == 0 or 'keeps replacing the staging directory' in run.task('volume_restore')['msg'], run.stdout
    if run.rc == 0:
        assert open(os.path.join(target, 'small')).read() == 'hello'
        assert os.lstat(target).st_uid == uid  # the old root's owner, set through the descriptor
        assert any('could be changed by another user' in w for w in run.task('volume_restore').get('warnings', []))
    # whatever the attacker renamed away holds nothing of root's that another user could read
    for name in os.listdir(parent):
        path = os.path.join(parent, name)
        if name.endswith('.moved') and os.path.isdir(path) and not os.path.islink(path):
            assert os.lstat(path).st_uid == 0 and stat.S_IMODE(os.lstat(path).st_mode) == 0o700


def _renaming_parent(public_dir):
    """A root-owned parent that every user may write (no sticky bit), holding a root-owned important/ directory."""
    parent = os.path.join(public_dir, 'shared')
    os.mkdir(parent)
    os.chmod(parent, 0o777)
    important = os.path.join(parent, 'important')
    os.mkdir(important, 0o700)
    with open(os.path.join(important, 'keep'), 'w') as handle:
        handle.write('root data')
    return parent, important


@pytest.mark.parametrize('target_existed', [True, False])
def test_name_renamed_onto_the_target_is_never_removed(public_dir, other_user, tmp_path, state_dir,
                                                       target_existed):
    """Another user who can write the target's parent renames the target away and root's important/ onto its name
    before the swap (or, when there was no target, puts important/ there): the restore fails with a clear message
    and important/ survives untouched under the target's name (before the fix it went into staging/old and was
    deleted with staging)."""
    from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
    from ansible_collections.holdfast.volumes.plugins.module_utils._restore_swap import HostRestore, restore_host
    _name, uid, gid = other_user
    parent, important = _renaming_parent(public_dir)
    target = os.path.join(parent, 'target')
    if target_existed:
        os.mkdir(target)
        with open(os.path.join(target, 'old'), 'w') as handle:
            handle.write('old')
    before = snapshot(important)
    archive = tmp_path / 'a.tar'
    archive.write_bytes(_tar([('f', 'file', b'new', 0o644)]))
    moves = ('mv target target.moved; ' if target_existed else '') + 'mv important target'

    def attack(_path):
        subprocess.run(['/bin/sh', '-c', 'cd "$1" && ' + moves, 'sh', parent], user=uid, group=gid,
                       extra_groups=[], check=True)

    with pytest.raises(HoldfastError) as caught:
        restore_host(dict(state_dir=state_dir, lock_timeout=5), str(archive), target,
                     HostRestore(before_swap=attack))
    assert ('no longer the directory the restore began with' if target_existed else 'appeared while the restore ran'
            ) in str(caught.value)
    assert snapshot(target) == before and os.lstat(target).st_uid == 0
    assert not os.path.exists(os.path.join(target, 'f'))
    if target_existed:
        assert open(os.path.join(parent, 'target.moved', 'old')).read() == 'old'
    assert not [n for n in os.listdir(parent) if n.startswith('.holdfast-')]


def test_foreign_directory_kept_beside_when_its_name_is_taken_again(tmp_path, monkeypatch):
    """The double race: a foreign directory was moved aside and, before it can be put back, the name holds a
    non-empty directory again. The foreign one is kept beside the target (never left in staging to be removed)."""
    from ansible_collections.holdfast.volumes.plugins.module_utils import _restore_swap
    from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
    from ansible_collections.holdfast.volumes.plugins.module_utils._safe_fs import Staging, open_dir
    parent = tmp_path / 'p'
    parent.mkdir()
    (parent / 'target').mkdir()
    expected = os.lstat(parent / 'target')
    os.rename(parent / 'target', parent / 'target.moved')
    (parent / 'target').mkdir()  # the foreign directory now at the name
    (parent / 'target' / 'keep').write_text('foreign')
    real_stat_at = _restore_swap.stat_at

    def stat_at(fd, name):
        found = real_stat_at(fd, name)
        if name == 'old':  # right after the move aside: the name is taken again, by a non-empty directory
            (parent / 'target').mkdir()
            (parent / 'target' / 'again').write_text('x')
        return found
    monkeypatch.setattr(_restore_swap, 'stat_at', stat_at)
    fd = open_dir(str(parent))
    staging = Staging(fd, 'target', 'path:%s' % (parent / 'target'))
    try:
        with pytest.raises(HoldfastError, match='back untouched at .*holdfast-kept-target-'):
            _restore_swap.swap_dir(fd, 'target', staging, (expected.st_dev, expected.st_ino), str(parent / 'target'))
    finally:
        staging.remove()
        os.close(fd)
    kept = [n for n in os.listdir(parent) if n.startswith('.holdfast-kept-target-')]
    assert len(kept) == 1 and (parent / kept[0] / 'keep').read_text() == 'foreign'


def test_symlink_planted_by_another_user_is_not_followed(public_dir, other_user, tmp_path, state_dir):
    """The target's name, in a directory another user owns, is swapped for a symlink to a root-only directory
    before the restore: the restore refuses to follow it (it would have replaced that directory)."""
    _name, uid, gid = other_user
    parent = os.path.join(public_dir, 'alice')
    os.mkdir(parent)
    os.chown(parent, uid, gid)
    secret = os.path.join(public_dir, 'root-only')
    os.mkdir(secret, 0o700)
    with open(os.path.join(secret, 'shadow'), 'w') as handle:
        handle.write('root only')
    before = snapshot(secret)
    link = os.path.join(parent, 'data')
    os.symlink(secret, link)
    os.lchown(link, uid, gid)
    archive = tmp_path / 'a.tar'
    archive.write_bytes(_tar([('f', 'file', b'x', 0o644)]))
    run = run_playbook([task('volume_restore', archive=str(archive), path=link, replace=True, state_dir=state_dir)])
    assert run.rc != 0 and 'refusing to follow it' in run.task('volume_restore')['msg'], run.stdout
    assert snapshot(secret) == before and os.path.islink(link)


def test_store_folder_of_another_user_refused(docker_client, prefix, other_user, public_dir):
    _name, uid, gid = other_user
    vol = prefix + '_st'
    docker_client.create_volume(vol)
    dest = os.path.join(public_dir, 'store')
    os.mkdir(dest)
    folder = os.path.join(dest, vol)
    os.mkdir(folder)
    os.chown(folder, uid, gid)
    run = run_playbook([task('volume_backup', volume=vol, dest=dest)])
    assert run.rc != 0 and 'could be changed by another user' in run.task('volume_backup')['msg']
    assert os.listdir(folder) == []
    os.chown(folder, 0, 0)
    os.chmod(folder, 0o770)
    run = run_playbook([task('volume_backup', volume=vol, dest=dest)])
    assert run.rc != 0 and 'group/other write' in run.task('volume_backup')['msg']
    os.chmod(folder, 0o700)
    run = run_playbook([task('volume_backup', volume=vol, dest=dest)])
    assert run.rc == 0, run.stdout
    # a destination others can write (no sticky bit) is refused, in check mode too, before anything is written:
    # they could rename the folder between its check and its use (it was only a warning)
    made = sorted(os.listdir(folder))
    os.chmod(dest, 0o777)
    run = run_playbook([dict(task('volume_backup', volume=vol, dest=dest), check_mode=True, ignore_errors=True),
                        dict(task('volume_backup', volume=vol, dest=dest), ignore_errors=True)])
    results = [r for r in run.records if r['task'] == 'volume_backup']
    assert [r['status'] for r in results] == ['failed', 'failed'], run.stdout
    for record in results:
        assert 'chmod go-w %s' % dest in record['result']['msg'], record
    assert sorted(os.listdir(folder)) == made


# -- issue 13 item 7: a remote engine ------------------------------------------------------------------------------
class _Pump(socketserver.BaseRequestHandler):
    def handle(self):
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect('/var/run/docker.sock')

        def pump(src, dst):
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        back = threading.Thread(target=pump, args=(upstream, self.request), daemon=True)
        back.start()
        pump(self.request, upstream)
        back.join()
        upstream.close()


class _TCPProxy(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _UnixProxy(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def remote_engines(tmp_path):
    """The local engine exposed as if it were another machine's: on a loopback TCP port and on another socket."""
    tcp = _TCPProxy(('127.0.0.1', 0), _Pump)
    sock = str(tmp_path / 'forwarded-docker.sock')
    unix = _UnixProxy(sock, _Pump)
    for server in (tcp, unix):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield 'tcp://127.0.0.1:%d' % tcp.server_address[1], 'unix://' + sock
    for server in (tcp, unix):
        server.shutdown()
        server.server_close()


def test_remote_engine_end_to_end(docker_client, prefix, tmp_path, state_dir, remote_engines):
    """Through a docker_host that is not this host's socket, backup, restore, seed and permissions take the
    Engine route (never a host path the remote engine reported)."""
    tcp, other_socket = remote_engines
    src = prefix + '_rsrc'
    docker_client.create_volume(src)
    code, _out = run_in_container(docker_client, src, 'echo remote > /data/f && mkdir /data/sub && '
                                                      'chown 999:999 /data/sub')
    assert code == 0
    dest = str(tmp_path / 'store')
    seed_dir = tmp_path / 'seed'
    seed_dir.mkdir()
    (seed_dir / 'config.ini').write_text('[seeded]\n')
    copy, seeded = prefix + '_rcopy', prefix + '_rseed'
    docker_client.create_volume(seeded)
    defaults = {'group/holdfast.volumes.docker': {'docker_host': tcp}}
    tasks = [task('volume_backup', volume=src, dest=dest),
             task('volume_restore', archive='{{ backup_result.archive }}', volume=copy, state_dir=state_dir),
             task('volume_seed', volume=seeded, src=str(seed_dir)),
             task('volume_permissions', volume=copy, owner=1234, group=1234, recurse=True)]
    tasks[0]['register'] = 'backup_result'
    run = run_playbook([dict(t, module_defaults=defaults) for t in tasks])
    assert run.rc == 0, run.stdout
    assert run.task('volume_backup')['source']['route'] == 'engine'
    restored = run.task('volume_restore')
    assert restored['route'] == 'engine' and restored['created_volume'] and restored['changed']
    assert run.task('volume_seed')['route'] == 'engine' and run.task('volume_seed')['seeded']
    perms = run.task('volume_permissions')
    assert perms['route'] == 'engine' and perms['changed_owner'] >= 3
    code, listing = run_in_container(docker_client, copy, 'cat /data/f; stat -c "%u %g %n" /data /data/f /data/sub')
    assert code == 0 and listing.split() == ['remote', '1234', '1234', '/data', '1234', '1234', '/data/f',
                                             '1234', '1234', '/data/sub']
    code, listing = run_in_container(docker_client, seeded, 'cat /data/config.ini')
    assert code == 0 and listing == '[seeded]\n'
    # another socket than this host's own (it may be forwarded from another machine): the Engine route too
    run = run_playbook([task('volume_backup', volume=src, dest=dest, docker_host=other_socket)])
    assert run.rc == 0, run.stdout
    assert run.task('volume_backup')['source']['route'] == 'engine'
    time.sleep(0)


def test_strip_setuid(tmp_path, state_dir):
    archive = tmp_path / 'suid.tar'
    archive.write_bytes(_tar([('bin', 'dir', None, 0o755), ('bin/rootshell', 'file', b'#!/bin/sh\n', 0o6755),
                              ('plain', 'file', b'x', 0o644)]))
    kept, stripped = str(tmp_path / 'kept'), str(tmp_path / 'stripped')
    run = run_playbook([dict(task('volume_restore', archive=str(archive), path=kept, state_dir=state_dir),
                             name='kept'),
                        dict(task('volume_restore', archive=str(archive), path=stripped, strip_setuid=True,
                                  state_dir=state_dir), name='stripped')])
    assert run.rc == 0, run.stdout
    assert stat.S_IMODE(os.lstat(os.path.join(kept, 'bin', 'rootshell')).st_mode) == 0o6755
    assert stat.S_IMODE(os.lstat(os.path.join(stripped, 'bin', 'rootshell')).st_mode) == 0o755
    assert run.task('stripped')['setuid_stripped'] == 1 and run.task('kept')['setuid_stripped'] == 0


def test_engine_route_gates_what_it_writes(docker_client, prefix, tmp_path):
    """The Engine route reads the archive twice (verify, then write): a store writer who swaps the file in between
    must not get an unchecked member (here a fifo) into the volume."""
    from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
    from ansible_collections.holdfast.volumes.plugins.module_utils._restore_engine import restore_engine
    from ansible_collections.holdfast.volumes.plugins.module_utils._restore_read import verify_archive
    archive = tmp_path / 'a.tar'
    archive.write_bytes(_tar([('ok', 'file', b'fine', 0o644)]))
    checked = verify_archive(str(archive), None, None)
    buf = io.BytesIO()  # the swapped archive: a fifo after a harmless file
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo('ok')
        info.size = 4
        tar.addfile(info, io.BytesIO(b'evil'))
        fifo = tarfile.TarInfo('pipe')
        fifo.type = tarfile.FIFOTYPE
        tar.addfile(fifo)
    archive.write_bytes(buf.getvalue())
    vol = prefix + '_eng'
    docker_client.create_volume(vol)
    with pytest.raises(HoldfastError, match='unsafe member|changed|refused to write'):
        restore_engine(docker_client, {}, str(archive), docker_client.inspect_volume(vol), checked)
    assert 'pipe' not in os.listdir(docker_client.inspect_volume(vol)['Mountpoint'])
