# -*- coding: utf-8 -*-
"""The roles and playbooks, end to end on the real engine: provision, idempotence, backup, destroy, restore."""

from __future__ import annotations

import os

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
