# -*- coding: utf-8 -*-
"""The restore role from the offsite store (holdfast_restore_from: remote): a host that lost its volumes AND its
local backups gets them back from a real SFTP server (OpenSSH's sshd on a loopback port), by naming the host whose
backups they are, with the local path's safety: the consistency refusal, the replace rule and the quiesce."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from ansible_runner import run_named_playbook, run_playbook
from containers import TEST_IMAGE
from offsite_servers import SFTPServer
from trees import snapshot


@pytest.fixture
def sftp_server(tmp_path):
    server = SFTPServer(tmp_path / 'sftp').start()
    yield server
    server.stop()


RESTORE_TASK = 'Restore from the newest complete backup'


def changed_names(run):
    return sorted(r['item']['name'] for rec in run.records if rec['task'].endswith(RESTORE_TASK)
                  for r in rec['result'].get('results', []) if r.get('changed'))


def test_replacement_host_restores_a_lost_hosts_volumes_from_sftp(docker_client, prefix, sftp_server, tmp_path):
    db, live, scratch = prefix + '_db', prefix + '_live', prefix + '_scratch'
    backups = tmp_path / 'backups'
    (sftp_server.root / 'offsite').mkdir()
    remote = sftp_server.remote('offsite')
    model = [
        # the host-wide default holdfast_backup_offsite
        {'name': db, 'labels': {'app': prefix}, 'backup': {'dest': str(backups)}},
        # its own backup.offsite; backed up while a container writes to it, without quiescing: not consistent
        {'name': live, 'backup': {'dest': str(backups), 'quiesce': 'none', 'offsite': {'remote': remote}}},
        # opted out: local backups only
        {'name': scratch, 'backup': {'dest': str(backups), 'offsite': {'enabled': False}}},
    ]
    # the old host ("web1"): data, backups, offsite copies under its name
    for vol in (db, live, scratch):
        docker_client.create_volume(vol, labels={'app': prefix})
    db_dir = docker_client.inspect_volume(db)['Mountpoint']
    os.makedirs(os.path.join(db_dir, 'base'))
    with open(os.path.join(db_dir, 'base', 'table'), 'wb') as handle:
        handle.write(os.urandom(300000))
    os.chown(os.path.join(db_dir, 'base', 'table'), 999, 999)
    os.symlink('base/table', os.path.join(db_dir, 'current'))
    with open(os.path.join(docker_client.inspect_volume(live)['Mountpoint'], 'log'), 'w') as handle:
        handle.write('entry 1\n')
    writer = docker_client.create_container(TEST_IMAGE, 'sleep 600', name=prefix + '_writer',
                                            host_config=docker_client.create_host_config(binds=[live + ':/data']))
    docker_client.start(writer)
    before = snapshot(db_dir)
    run = run_playbook([
        {'name': 'backup', 'holdfast.volumes.volume_backup': {'volume': '{{ item.name }}', 'dest': str(backups),
                                                              'quiesce': '{{ item.backup.quiesce | default(omit) }}'},
         'loop': model},
        {'name': 'sync', 'holdfast.volumes.backup_sync': {'dest': str(backups), 'remote': remote, 'host': 'web1',
                                                          'volumes': [db, live]}},
    ])
    assert run.rc == 0, run.stdout + run.stderr
    assert sorted(c['volume'] for c in run.task('sync')['copied']) == sorted([db, live])
    docker_client.remove_container(writer, force=True)

    # web1 is lost: its volumes and its local backups. This host ("localhost") replaces it.
    for vol in (db, live, scratch):
        docker_client.remove_volume(vol)
    shutil.rmtree(backups)
    extra = {'holdfast_volumes': model, 'holdfast_backup_offsite': {'remote': remote},
             'holdfast_restore_from': 'remote', 'holdfast_restore_source_host': 'web1'}
    runs = []

    def restore(**more):
        runs.append(run_named_playbook('holdfast.volumes.restore', dict(extra, **more)))
        return runs[-1]

    # a volume named for the remote that has no offsite copy fails the role before anything is restored
    run = restore(holdfast_restore_volumes=[db, scratch])
    assert run.rc != 0
    assert '%s has no offsite copy' % scratch in run.stdout, run.stdout
    assert not docker_client.volumes(filters={'name': prefix})['Volumes']

    # every volume with an offsite copy: db comes back byte for byte; the inconsistent one is refused untouched
    run = restore()
    assert run.rc != 0
    assert 'NOT consistent' in run.stdout and live in run.stdout, run.stdout
    assert changed_names(run) == [db]
    db_dir = docker_client.inspect_volume(db)['Mountpoint']
    assert snapshot(db_dir) == before
    assert docker_client.inspect_volume(db)['Labels'] == {'app': prefix}  # the model's labels
    assert not docker_client.volumes(filters={'name': live})['Volumes']
    assert not docker_client.volumes(filters={'name': scratch})['Volumes'], 'no offsite copy: not selected'
    assert not backups.exists(), 'the remote restore wrote a local copy'

    # allowed explicitly: the inconsistent one too; db is not restored twice (same archive, content unchanged)
    run = restore(holdfast_restore_allow_inconsistent=True)
    assert run.rc == 0, run.stdout
    assert changed_names(run) == [live]
    assert open(os.path.join(docker_client.inspect_volume(live)['Mountpoint'], 'log')).read() == 'entry 1\n'

    # the replace rule: a volume that holds other data is refused and left as it is ...
    with open(os.path.join(db_dir, 'base', 'table'), 'wb') as handle:
        handle.write(b'written on the new host')
    changed = snapshot(db_dir)
    # (the source host taken from holdfast_backup_host, the name the backup role syncs under)
    extra.update(holdfast_restore_source_host=None, holdfast_backup_host='web1', holdfast_restore_volumes=[db])
    run = restore()
    assert run.rc != 0 and changed_names(run) == []
    assert 'replace' in run.stdout, run.stdout
    assert snapshot(db_dir) == changed
    # ... and replaced with holdfast_restore_replace, the container that uses it stopped and started again
    app = docker_client.create_container(TEST_IMAGE, ['sh', '-c', "trap 'exit 0' TERM; while :; do sleep 0.2; done"],
                                         name=prefix + '_app',
                                         host_config=docker_client.create_host_config(binds=[db + ':/db']))
    docker_client.start(app)
    started = docker_client.inspect_container(app)['State']['StartedAt']
    run = restore(holdfast_restore_replace=True)
    assert run.rc == 0, run.stdout
    assert changed_names(run) == [db]
    assert snapshot(docker_client.inspect_volume(db)['Mountpoint']) == before
    state = docker_client.inspect_container(app)['State']
    assert state['Running'] and state['StartedAt'] != started
    # the remote's secret (the SSH key) is in no output and no recorded result: the loop items hold no remote
    secret = remote['options']['key_pem'].split('\n')[1]
    assert len(runs) == 5 and all(secret not in r.stdout + r.stderr + json.dumps(r.records) for r in runs)
