# -*- coding: utf-8 -*-
"""volume_permissions and volume_seed on the real engine, with containers running as other users."""

from __future__ import annotations

import io
import os
import stat
import tarfile

import pytest
from ansible_runner import run_playbook
from containers import run_in_container


def perms(**args):
    return {'name': 'perms', 'holdfast.volumes.volume_permissions': args}


def seed(**args):
    return {'name': 'seed', 'holdfast.volumes.volume_seed': args}


def as_user(client, volume, uid, command):
    return run_in_container(client, volume, command, uid=uid)


def test_uid_999_can_write_after_and_second_run_is_noop(docker_client, prefix):
    vol = prefix + '_pg'
    docker_client.create_volume(vol)
    root = docker_client.inspect_volume(vol)['Mountpoint']
    os.makedirs(os.path.join(root, 'base', 'sub'))
    for i in range(50):
        open(os.path.join(root, 'base', 'f%d' % i), 'w').close()
    code, _output = as_user(docker_client, vol, 999, 'touch /data/base/new')
    assert code != 0
    task = perms(volume=vol, owner=999, group=999, mode='0700', recurse=True)
    check = run_playbook([task], check=True)
    res = check.task('perms')
    assert check.rc == 0 and res['changed'] and res['changed_entries'] == 53 and len(res['sample']) == 20
    assert os.stat(root).st_uid == 0  # check mode changed nothing
    run = run_playbook([task], diff=True)
    res = run.task('perms')
    assert run.rc == 0 and res['changed_entries'] == 53 and res['route'] == 'host'
    assert 'mode: 0700' in run.stdout
    code, out = as_user(docker_client, vol, 999, 'touch /data/base/new && echo ok')
    assert code == 0 and 'ok' in out
    again = run_playbook([task]).task('perms')
    assert again['changed'] is False and again['changed_entries'] == 0
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700


def test_symlinks_are_never_followed(docker_client, prefix, tmp_path):
    vol = prefix + '_ln'
    docker_client.create_volume(vol)
    root = docker_client.inspect_volume(vol)['Mountpoint']
    outside = tmp_path / 'outside.txt'
    outside.write_text('host file')
    os.chmod(outside, 0o644)
    os.symlink(str(outside), os.path.join(root, 'escape'))
    os.symlink(str(tmp_path), os.path.join(root, 'escape-dir'))
    run = run_playbook([perms(volume=vol, owner=999, group=999, recurse=True, file_mode='0600', dir_mode='0700')])
    assert run.rc == 0, run.stdout
    st = os.stat(outside)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o644)
    assert os.stat(tmp_path).st_uid == 0
    assert os.lstat(os.path.join(root, 'escape')).st_uid == 999  # the link itself
    assert run_playbook([perms(volume=vol, owner=999, group=999, recurse=True, file_mode='0600',
                               dir_mode='0700')]).task('perms')['changed'] is False


def test_symbolic_modes_and_keep_exec(prefix, tmp_path):
    root = tmp_path / 'site'
    (root / 'bin').mkdir(parents=True)
    (root / 'bin' / 'run.sh').write_text('#!/bin/sh\n')
    os.chmod(root / 'bin' / 'run.sh', 0o777)
    (root / 'index.html').write_text('<p>')
    os.chmod(root / 'index.html', 0o666)
    task = perms(path=str(root), group='root', recurse=True, dir_mode='u=rwx,g=rx,o=',
                 file_mode='u=rw,g=r,o=', keep_file_exec_bits=True)
    run = run_playbook([task])
    assert run.rc == 0, run.stdout
    # u=rw,g=r,o= gives 0640; keep_file_exec_bits puts back the x bits it had (all three): 0751
    assert stat.S_IMODE(os.stat(root / 'bin' / 'run.sh').st_mode) == 0o751
    assert stat.S_IMODE(os.stat(root / 'index.html').st_mode) == 0o640
    assert stat.S_IMODE(os.stat(root / 'bin').st_mode) == 0o750
    assert run_playbook([task]).task('perms')['changed'] is False


def test_bad_input(docker_client, prefix, tmp_path):
    cases = [
        (perms(volume=prefix + '_missing', owner=1), 'does not exist'),
        (perms(path=str(tmp_path), owner=-1), 'out of range'),
        (perms(path=str(tmp_path), owner=4294967295), 'out of range'),
        (perms(path=str(tmp_path), owner='no-such-user-here'), 'does not exist on this host'),
        (perms(path=str(tmp_path), mode='rwxr-x'), 'neither octal'),
        (perms(path=str(tmp_path), mode='0999'), 'neither octal'),
        (perms(path=str(tmp_path), file_mode='0644'), 'recurse'),
        (perms(path=str(tmp_path)), 'Nothing to manage'),
    ]
    before = os.stat(tmp_path)
    for task, expected in cases:
        run = run_playbook([task])
        assert run.rc != 0, task
        assert expected in run.task('perms')['msg'], run.task('perms')['msg']
        assert 'Traceback' not in run.stdout
    after = os.stat(tmp_path)
    assert (after.st_uid, after.st_mode) == (before.st_uid, before.st_mode)


@pytest.fixture
def loop_volume(loop_volume_factory):
    return loop_volume_factory('loop')


def test_engine_route(docker_client, loop_volume):
    images_before = sorted(t for i in docker_client.images() for t in (i.get('RepoTags') or []))
    code, _output = as_user(docker_client, loop_volume, 0, 'mkdir -p /data/a/b && touch /data/a/b/f /data/g')
    assert code == 0
    task = perms(volume=loop_volume, owner=999, group=999, recurse=True, mode='0750', dir_mode='0750',
                 file_mode='0640')
    check = run_playbook([task], check=True)
    assert check.rc == 0, check.stdout
    res = check.task('perms')
    # looking inside needs a helper container run: check mode runs none, so it says it cannot tell
    assert res['route'] == 'engine' and res['changed'] and res['changed_owner'] == 'unknown'
    assert 'Check mode cannot tell' in check.stdout + check.stderr
    _ignored, out = as_user(docker_client, loop_volume, 0, 'stat -c %u /data/a/b/f')
    assert out.strip() == '0'
    assert sorted(t for i in docker_client.images() for t in (i.get('RepoTags') or [])) == images_before
    run = run_playbook([task])
    assert run.rc == 0 and run.task('perms')['changed']
    _ignored, out = as_user(docker_client, loop_volume, 0, 'stat -c "%u %g %a" /data/a/b/f /data/a /data')
    assert out.split('\n')[:3] == ['999 999 640', '999 999 750', '999 999 750']
    assert run_playbook([task]).task('perms')['changed'] is False
    sym = run_playbook([perms(volume=loop_volume, mode='u=rwx')])
    assert sym.rc != 0 and 'octal' in sym.task('perms')['msg']


def test_seed_only_when_empty(docker_client, prefix, tmp_path):
    vol = prefix + '_seed'
    docker_client.create_volume(vol)
    src = tmp_path / 'seed'
    (src / 'conf').mkdir(parents=True)
    (src / 'conf' / 'app.ini').write_text('[app]\nport=8080\n')
    os.symlink('conf/app.ini', src / 'current.ini')
    task = seed(volume=vol, src=str(src), owner=1000, group=1000)
    check = run_playbook([task], check=True).task('seed')
    root = docker_client.inspect_volume(vol)['Mountpoint']
    assert check['changed'] and os.listdir(root) == []
    res = run_playbook([task]).task('seed')
    root = docker_client.inspect_volume(vol)['Mountpoint']
    assert res['changed'] and res['seeded'] and res['entries'] == 3
    assert open(os.path.join(root, 'conf', 'app.ini')).read() == '[app]\nport=8080\n'
    assert os.stat(os.path.join(root, 'conf', 'app.ini')).st_uid == 1000
    assert os.lstat(os.path.join(root, 'current.ini')).st_uid == 1000
    code, out = as_user(docker_client, vol, 1000, 'echo changed > /data/conf/app.ini && cat /data/current.ini')
    assert code == 0 and out.strip() == 'changed'
    again = run_playbook([task]).task('seed')
    assert again['changed'] is False and again['seeded'] is False
    assert open(os.path.join(root, 'conf', 'app.ini')).read() == 'changed\n'
    forced = run_playbook([seed(volume=vol, src=str(src), force=True)]).task('seed')
    assert forced['changed']
    root = docker_client.inspect_volume(vol)['Mountpoint']
    assert open(os.path.join(root, 'conf', 'app.ini')).read() == '[app]\nport=8080\n'


def _tar_gz(path, members):
    with tarfile.open(path, 'w:gz') as tar:
        for name, kind, extra in members:
            info = tarfile.TarInfo(name)
            if kind == 'sym':
                info.type, info.linkname = tarfile.SYMTYPE, extra
                tar.addfile(info)
            else:
                info.size = len(extra)
                tar.addfile(info, io.BytesIO(extra))


def test_seed_from_archive_and_refusals(docker_client, prefix, tmp_path):
    vol = prefix + '_sa'
    docker_client.create_volume(vol)
    good = tmp_path / 'good.tar.gz'
    _tar_gz(good, [('data.txt', 'file', b'hello'), ('rel-link', 'sym', 'data.txt')])
    res = run_playbook([seed(volume=vol, src=str(good))]).task('seed')
    root = docker_client.inspect_volume(vol)['Mountpoint']
    assert res['seeded'] and open(os.path.join(root, 'data.txt')).read() == 'hello'
    empty = prefix + '_se'
    docker_client.create_volume(empty)
    for name, members in [('abs', [('/etc/evil', 'file', b'x')]),
                          ('dotdot', [('../evil', 'file', b'x')]),
                          ('link-out', [('ok', 'file', b'x'), ('l', 'sym', '/etc/passwd')]),
                          ('link-up', [('d/l', 'sym', '../../outside')])]:
        bad = tmp_path / ('%s.tar.gz' % name)
        _tar_gz(bad, members)
        run = run_playbook([seed(volume=empty, src=str(bad))])
        assert run.rc != 0 and 'Refusing' in run.task('seed')['msg'], name
        assert os.listdir(docker_client.inspect_volume(empty)['Mountpoint']) == []
    missing = run_playbook([seed(volume=empty, src=str(tmp_path / 'nope'))])
    assert missing.rc != 0 and 'does not exist' in missing.task('seed')['msg']
