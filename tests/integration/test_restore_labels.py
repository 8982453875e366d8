# -*- coding: utf-8 -*-
"""Restored volumes and `exclusive` get along (issue #13 item 5): the getting-started drill (restore a copy next
to the original) used to copy the backup's labels, so the next converge with `exclusive` refused the whole host."""

from __future__ import annotations

import sys

from ansible_runner import run_playbook
from containers import run_in_container

RESTORED_FROM = 'io.holdfast.volumes.restored-from'


def test_drill_copies_stay_out_of_exclusive_and_disaster_recovery_converges(docker_client, prefix, tmp_path):
    src = prefix + '_db'
    selector = {'managed-by': 'holdfast-' + prefix}
    labels = dict(selector, app='shop')
    docker_client.create_volume(src, labels=labels)
    assert run_in_container(docker_client, src, 'echo 42 > /data/answer')[0] == 0
    dest = str(tmp_path / 'backups')
    state = str(tmp_path / 'state')
    converge = {'name': 'converge', 'holdfast.volumes.docker_volumes': {
        'volumes': [{'name': src, 'labels': labels}], 'exclusive': selector}}
    pyvars = {'ansible_python_interpreter': sys.executable}
    run = run_playbook([
        {'name': 'backup', 'holdfast.volumes.volume_backup': {'volume': src, 'dest': dest}},
        {'name': 'drill', 'holdfast.volumes.volume_restore': {'dest': dest, 'source': src, 'volume': src + '_drill',
                                                              'state_dir': state}},
        {'name': 'own labels', 'holdfast.volumes.volume_restore': {
            'dest': dest, 'source': src, 'volume': src + '_drill2', 'labels': {'purpose': 'drill'},
            'state_dir': state}},
        converge,
    ], play_vars=pyvars)
    assert run.rc == 0, run.stdout + run.stderr
    assert run.task('drill')['labels'] == {RESTORED_FROM: src} and run.task('drill')['created_volume']
    assert docker_client.inspect_volume(src + '_drill')['Labels'] == {RESTORED_FROM: src}
    assert docker_client.inspect_volume(src + '_drill2')['Labels'] == {'purpose': 'drill'}
    assert not run.task('converge')['changed']  # the copies hold data and match nothing: left alone
    for copy in (src + '_drill', src + '_drill2'):
        assert run_in_container(docker_client, copy, 'cat /data/answer') == (0, '42\n')

    # disaster: the volume is gone; restored under its own name it comes back with its labels and converges
    docker_client.remove_volume(src)
    run = run_playbook([
        {'name': 'recover', 'holdfast.volumes.volume_restore': {'dest': dest, 'volume': src, 'state_dir': state}},
        converge,
    ], play_vars=pyvars)
    assert run.rc == 0, run.stdout + run.stderr
    assert run.task('recover')['labels'] == labels
    assert docker_client.inspect_volume(src)['Labels'] == labels
    assert not run.task('converge')['changed'] and not run.task('converge').get('drift')
    assert run_in_container(docker_client, src, 'cat /data/answer') == (0, '42\n')
