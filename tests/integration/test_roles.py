# -*- coding: utf-8 -*-
"""The roles and playbooks, end to end on the real engine: provision, idempotence, backup, destroy, restore."""

from __future__ import annotations

import os
import sys

import yaml
from ansible_runner import run_named_playbook
from trees import snapshot


def model(prefix, tmp_path):
    seed = tmp_path / 'seed'
    (seed / 'conf').mkdir(parents=True)
    (seed / 'conf' / 'app.ini').write_text('[app]\nport=8080\n')
    return [
        {'name': prefix + '_db', 'labels': {'app': prefix}, 'owner': 999, 'group': 999, 'mode': '0700',
         'backup': {'dest': str(tmp_path / 'backups'), 'quiesce': 'stop', 'retention': {'keep_last': 2}}},
        {'name': prefix + '_conf', 'labels': {'app': prefix}, 'seed': {'src': str(seed), 'owner': 1000}},
    ]


def changed_tasks(run):
    return [r['task'] for r in run.records if r['status'] == 'ok' and (
        r['result'].get('changed') or any(i.get('changed') for i in r['result'].get('results', [])))]


def test_site_backup_destroy_restore(docker_client, prefix, tmp_path):
    vols = model(prefix, tmp_path)
    extra = {'holdfast_volumes': vols, 'holdfast_volumes_install_dependencies': False,
             'holdfast_volumes_exclusive': {'app': prefix}}
    # check mode predicts the provisioning and changes nothing
    dry = run_named_playbook('holdfast.volumes.site', extra, check=True)
    assert dry.rc == 0, dry.stdout
    assert 'holdfast.volumes.volumes : Converge the volumes (one engine listing for all of them)' in changed_tasks(dry)
    assert not [v for v in (docker_client.volumes() or {}).get('Volumes') or [] if v['Name'].startswith(prefix)]
    site = run_named_playbook('holdfast.volumes.site', extra)
    assert site.rc == 0, site.stdout + site.stderr
    db = docker_client.inspect_volume(prefix + '_db')['Mountpoint']
    conf = docker_client.inspect_volume(prefix + '_conf')['Mountpoint']
    assert os.stat(db).st_uid == 999 and oct(os.stat(db).st_mode & 0o777) == '0o700'
    assert open(os.path.join(conf, 'conf', 'app.ini')).read() == '[app]\nport=8080\n'
    again = run_named_playbook('holdfast.volumes.site', extra)
    assert again.rc == 0 and changed_tasks(again) == [], changed_tasks(again)
    with open(os.path.join(db, 'table'), 'wb') as handle:
        handle.write(os.urandom(100000))
    os.chown(os.path.join(db, 'table'), 999, 999)
    before = snapshot(db)
    backup = run_named_playbook('holdfast.volumes.backup', extra)
    assert backup.rc == 0, backup.stdout
    assert prefix + '_db' in backup.stdout and '.tar.zst' in backup.stdout
    # disaster: the volume is gone
    docker_client.remove_volume(prefix + '_db')
    restore = run_named_playbook('holdfast.volumes.restore', extra)
    assert restore.rc == 0, restore.stdout
    db = docker_client.inspect_volume(prefix + '_db')['Mountpoint']
    assert snapshot(db) == before
    assert docker_client.inspect_volume(prefix + '_db')['Labels'] == {'app': prefix}
    again = run_named_playbook('holdfast.volumes.restore', extra)
    assert again.rc == 0 and changed_tasks(again) == []


def test_typo_in_the_model_fails_before_any_change(docker_client, prefix, tmp_path):
    vols = model(prefix, tmp_path)
    vols[0]['ownr'] = 999
    run = run_named_playbook('holdfast.volumes.site', {'holdfast_volumes': vols,
                                                       'holdfast_volumes_install_dependencies': False})
    assert run.rc != 0
    assert 'ownr' in run.stdout + run.stderr
    assert not [v for v in (docker_client.volumes() or {}).get('Volumes') or [] if v['Name'].startswith(prefix)]


def test_a_failing_host_does_not_stop_the_others(docker_client, prefix, tmp_path):
    """restore runs one host at a time: Ansible ends a play when a whole batch fails, unless the playbook
    rescues it. The healthy host after the broken one is still restored, and the run still fails."""
    (tmp_path / 'backups').mkdir()
    healthy = [{'name': prefix + '_ok', 'backup': {'dest': str(tmp_path / 'backups')}}]
    broken = [{'name': prefix + '_gone', 'backup': {'dest': str(tmp_path / 'nowhere')}}]
    local = {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable}
    inventory = tmp_path / 'fleet.yml'
    inventory.write_text(yaml.safe_dump({'all': {'hosts': {
        'broken': dict(local, holdfast_volumes=broken), 'healthy': dict(local, holdfast_volumes=healthy)}}}))
    docker_client.create_volume(prefix + '_ok')
    mount = docker_client.inspect_volume(prefix + '_ok')['Mountpoint']
    with open(os.path.join(mount, 'ledger'), 'w') as handle:
        handle.write('balance=42\n')
    backup = run_named_playbook('holdfast.volumes.backup', {'holdfast_target': 'healthy'}, inventory=str(inventory))
    assert backup.rc == 0, backup.stdout
    docker_client.remove_volume(prefix + '_ok')
    restore = run_named_playbook('holdfast.volumes.restore', {}, inventory=str(inventory))
    assert restore.rc != 0
    assert 'broken: FAILED in Restore from the newest complete backup: ' in restore.stdout, restore.stdout
    assert 'nowhere' in restore.stdout.split('broken: FAILED in')[1].split('\n')[0]  # the module's own message
    assert 'healthy: restored %s_ok' % prefix in restore.stdout
    mount = docker_client.inspect_volume(prefix + '_ok')['Mountpoint']
    assert open(os.path.join(mount, 'ledger')).read() == 'balance=42\n'
