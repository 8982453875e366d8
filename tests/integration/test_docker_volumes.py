# -*- coding: utf-8 -*-
"""docker_volumes and volume_info against the real engine, through real ansible-playbook runs."""

from __future__ import annotations

import os
import subprocess
import sys

from ansible_runner import run_playbook

TEST_IMAGE = 'holdfast-test/busybox:1'


def converge(volumes, **opts):
    args = dict(volumes=volumes)
    args.update(opts)
    return {'name': 'converge', 'holdfast.volumes.docker_volumes': args, 'register': 'out'}


def names(client, prefix):
    return sorted(v['Name'] for v in (client.volumes() or {}).get('Volumes') or [] if v['Name'].startswith(prefix))


def mountpoint(client, name):
    return client.inspect_volume(name)['Mountpoint']


def test_create_then_noop(docker_client, prefix):
    vols = [{'name': '%s_a' % prefix, 'labels': {'tier': 'db'}},
            {'name': '%s_b' % prefix, 'driver_options': {'type': 'tmpfs', 'device': 'tmpfs'}}]
    first = run_playbook([converge(vols)])
    assert first.rc == 0, first.stdout
    res = first.task('converge')
    assert res['changed'] is True
    assert 'diff' not in res  # the diff is only returned in diff mode
    assert sorted(res['created']) == ['%s_a' % prefix, '%s_b' % prefix]
    assert names(docker_client, prefix) == ['%s_a' % prefix, '%s_b' % prefix]
    assert docker_client.inspect_volume('%s_a' % prefix)['Labels'] == {'tier': 'db'}
    assert docker_client.inspect_volume('%s_b' % prefix)['Options'] == {'type': 'tmpfs', 'device': 'tmpfs'}
    assert [v['Name'] for v in res['volumes']] == ['%s_a' % prefix, '%s_b' % prefix]
    second = run_playbook([converge(vols)])
    res2 = second.task('converge')
    assert second.rc == 0 and res2['changed'] is False
    assert res2['created'] == [] and res2['drift'] == []


def test_check_mode_predicts_and_changes_nothing(docker_client, prefix):
    vols = [{'name': '%s_c%d' % (prefix, i)} for i in range(3)]
    checked = run_playbook([converge(vols)], check=True)
    res = checked.task('converge')
    assert checked.rc == 0 and res['changed'] is True
    assert names(docker_client, prefix) == []
    real = run_playbook([converge(vols)]).task('converge')
    assert real['created'] == res['created']
    again = run_playbook([converge(vols)], check=True).task('converge')
    assert again['changed'] is False


def test_drift_reported_also_for_removed_keys(docker_client, prefix):
    name = '%s_d' % prefix
    docker_client.create_volume(name, labels={'owner': 'alice', 'tier': 'db'}, driver_opts={'type': 'tmpfs',
                                                                                            'device': 'tmpfs'})
    run = run_playbook([converge([{'name': name, 'labels': {'tier': 'web'}}])])
    res = run.task('converge')
    assert run.rc == 0 and res['changed'] is False
    assert len(res['drift']) == 1
    drift = res['drift'][0]
    fields = dict((d['field'], d) for d in drift['differences'])
    assert fields['labels']['removed'] == {'owner': 'alice'}
    assert fields['labels']['changed'] == {'tier': {'before': 'db', 'after': 'web'}}
    assert fields['driver_options']['removed'] == {'type': 'tmpfs', 'device': 'tmpfs'}
    assert any('differs from its definition' in w for w in res.get('warnings', []))
    assert '[WARNING]' in run.stdout + run.stderr
    # untouched
    assert docker_client.inspect_volume(name)['Labels'] == {'owner': 'alice', 'tier': 'db'}


def test_recreate_refused_on_data_allowed_with_flag(docker_client, prefix):
    name = '%s_r' % prefix
    docker_client.create_volume(name, labels={'v': '1'})
    with open(os.path.join(mountpoint(docker_client, name), '.hidden'), 'w') as handle:
        handle.write('precious')
    vols = [{'name': name, 'labels': {'v': '2'}}]
    refused = run_playbook([converge(vols, recreate='options-changed')])
    assert refused.rc != 0
    res = refused.task('converge')
    assert 'holds files' in res['msg'] and 'allow_data_loss' in res['msg'] and 'nothing was changed' in res['msg']
    assert docker_client.inspect_volume(name)['Labels'] == {'v': '1'}
    assert os.path.exists(os.path.join(mountpoint(docker_client, name), '.hidden'))
    # check mode refuses the same way
    assert run_playbook([converge(vols, recreate='options-changed')], check=True).rc != 0
    allowed = run_playbook([converge(vols, recreate='options-changed', allow_data_loss=True)])
    res = allowed.task('converge')
    assert allowed.rc == 0 and res['recreated'] == [name] and res['changed'] is True
    assert docker_client.inspect_volume(name)['Labels'] == {'v': '2'}
    assert os.listdir(mountpoint(docker_client, name)) == []


def test_recreate_empty_volume_needs_no_flag(docker_client, prefix):
    name = '%s_e' % prefix
    docker_client.create_volume(name, labels={'v': '1'})
    run = run_playbook([converge([{'name': name}], recreate='options-changed')], diff=True)
    assert run.rc == 0, run.stdout
    assert run.task('converge')['recreated'] == [name]
    assert docker_client.inspect_volume(name)['Labels'] in (None, {})
    assert '-labels:' in run.stdout and '+labels: {}' in run.stdout


def test_in_use_refused_even_with_allow_data_loss(docker_client, prefix):
    name = '%s_u' % prefix
    docker_client.create_volume(name)
    docker_client.create_container(TEST_IMAGE, name='%s_user' % prefix, command=['true'],
                                   host_config=docker_client.create_host_config(binds={name: {'bind': '/data'}}))
    run = run_playbook([converge([{'name': name, 'state': 'absent'}], allow_data_loss=True)])
    assert run.rc != 0
    msg = run.task('converge')['msg']
    assert '%s_user' % prefix in msg and 'used by container' in msg
    assert names(docker_client, prefix) == [name]


def test_absent_and_exclusive_prune(docker_client, prefix):
    keep, stray, other, gone = ('%s_%s' % (prefix, s) for s in ('keep', 'stray', 'other', 'gone'))
    docker_client.create_volume(stray, labels={'managed-by': prefix})
    docker_client.create_volume(other, labels={'managed-by': 'someone-else'})
    docker_client.create_volume(gone)
    vols = [{'name': keep, 'labels': {'managed-by': prefix}}, {'name': gone, 'state': 'absent'}]
    run = run_playbook([converge(vols, exclusive={'managed-by': prefix})])
    res = run.task('converge')
    assert run.rc == 0, run.stdout
    assert sorted(res['removed']) == sorted([stray, gone])
    assert res['created'] == [keep]
    assert names(docker_client, prefix) == sorted([keep, other])
    assert run_playbook([converge(vols, exclusive={'managed-by': prefix})]).task('converge')['changed'] is False


def test_exclusive_prune_refuses_data(docker_client, prefix):
    stray = '%s_stray' % prefix
    docker_client.create_volume(stray, labels={'managed-by': prefix})
    with open(os.path.join(mountpoint(docker_client, stray), 'file'), 'w') as handle:
        handle.write('x')
    run = run_playbook([converge([], exclusive={'managed-by': prefix})])
    assert run.rc != 0 and stray in run.task('converge')['msg']
    assert names(docker_client, prefix) == [stray]


def test_bind_volume_data_is_seen_on_its_device(docker_client, prefix, tmp_path):
    name = '%s_bind' % prefix
    (tmp_path / 'data.txt').write_text('on the device')
    docker_client.create_volume(name, driver_opts={'type': 'none', 'o': 'bind', 'device': str(tmp_path)})
    run = run_playbook([converge([{'name': name, 'state': 'absent'}])])
    assert run.rc != 0 and 'holds files' in run.task('converge')['msg']
    assert (tmp_path / 'data.txt').exists()


def test_engine_route_for_tmpfs_volume(docker_client, prefix):
    # Reached through the Engine (no host directory holds a tmpfs volume's data): empty, so removable.
    name = '%s_tmp' % prefix
    docker_client.create_volume(name, driver_opts={'type': 'tmpfs', 'device': 'tmpfs'})
    run = run_playbook([converge([{'name': name, 'state': 'absent'}])])
    assert run.rc == 0, run.stdout
    assert run.task('converge')['removed'] == [name]
    # this volume's helpers only: other tests (and the README's user path) run helpers beside this one
    helpers = docker_client.containers(all=True, filters={'label': 'io.holdfast.volumes.helper=%s' % name})
    assert helpers == []


def test_bad_input_changes_nothing(docker_client, prefix):
    good = '%s_good' % prefix
    cases = [
        ([{'name': good}, {'name': '-bad'}], 'invalid volume name'),
        ([{'name': good}, {'name': good}], 'duplicate'),
        ([{'name': good, 'labels': {'version': 3}}], 'must be a string'),
        ([{'name': good, 'driver': 'nosuchdriver'}], 'Unknown volume driver'),
        ([{'name': good, 'stat': 'absent'}], 'stat'),
    ]
    for vols, expected in cases:
        run = run_playbook([converge(vols)])
        assert run.rc != 0
        res = run.task('converge')
        assert expected in res['msg'], res['msg']
        assert 'Traceback' not in run.stdout + run.stderr
        assert names(docker_client, prefix) == []
    run = run_playbook([converge([{'name': good}], exclusive={})])
    assert run.rc != 0 and 'at least one label' in run.task('converge')['msg']


def test_unreachable_engine_and_action_group(docker_client, prefix):
    defaults = {'group/holdfast.volumes.docker': {'docker_host': 'unix:///nonexistent/docker.sock'}}
    tasks = [{'name': 'grouped', 'module_defaults': defaults, 'holdfast.volumes.volume_info': {}}]
    run = run_playbook(tasks)
    assert run.rc != 0
    msg = run.task('grouped')['msg']
    assert 'Cannot reach the Docker Engine at unix:///nonexistent/docker.sock' in msg and 'dockerd' in msg


def test_missing_sdk_gives_clear_message(prefix, tmp_path):
    venv = tmp_path / 'nosdk'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
    run = run_playbook([converge([{'name': '%s_x' % prefix}])], interpreter=str(venv / 'bin' / 'python'))
    assert run.rc != 0
    msg = run.task('converge')['msg']
    assert 'Docker SDK for Python is not installed' in msg and 'python3-docker' in msg
    assert 'Traceback' not in msg


def test_debian_sdk_5_0_3(docker_client, prefix):
    """Debian 12's python3-docker (SDK 5.0.3) on /usr/bin/python3, the interpreter managed hosts have."""
    out = subprocess.run(['/usr/bin/python3', '-c', 'import docker; print(docker.__version__)'],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.strip().startswith('5.'), out.stderr
    vols = [{'name': '%s_deb' % prefix, 'labels': {'a': 'b'}}]
    first = run_playbook([converge(vols), {'name': 'info', 'holdfast.volumes.volume_info': {
        'names': ['%s_deb' % prefix], 'usage': True, 'containers': True}}], interpreter='/usr/bin/python3')
    assert first.rc == 0, first.stdout + first.stderr
    assert first.task('converge')['created'] == ['%s_deb' % prefix]
    assert first.task('info')['volumes'][0]['size_bytes'] == 0
    assert run_playbook([converge(vols)], interpreter='/usr/bin/python3').task('converge')['changed'] is False


def test_volume_info_filters_usage_and_containers(docker_client, prefix):
    used, idle, other = ('%s_%s' % (prefix, s) for s in ('used', 'idle', 'other'))
    docker_client.create_volume(used, labels={'app': prefix})
    docker_client.create_volume(idle, labels={'app': prefix})
    docker_client.create_volume(other, driver_opts={'type': 'tmpfs', 'device': 'tmpfs'})
    with open(os.path.join(mountpoint(docker_client, used), 'blob'), 'wb') as handle:
        handle.write(os.urandom(1024 * 1024))
    docker_client.create_container(TEST_IMAGE, name='%s_c' % prefix, command=['true'],
                                   host_config=docker_client.create_host_config(binds={used: {'bind': '/d'}}))
    tasks = [
        {'name': 'by_label',
         'holdfast.volumes.volume_info': {'labels': {'app': prefix}, 'usage': True, 'containers': True}},
        {'name': 'dangling', 'holdfast.volumes.volume_info': {'labels': {'app': prefix}, 'dangling': True}},
        {'name': 'by_name', 'holdfast.volumes.volume_info': {'names': [other, '%s_missing' % prefix]}},
    ]
    run = run_playbook(tasks, check=True)
    assert run.rc == 0, run.stdout
    vols = dict((v['Name'], v) for v in run.task('by_label')['volumes'])
    assert sorted(vols) == sorted([used, idle])
    assert vols[used]['size_bytes'] >= 1024 * 1024
    assert vols[used]['containers'][0]['name'] == '%s_c' % prefix
    assert vols[used]['containers'][0]['running'] is False
    assert vols[idle]['containers'] == [] and vols[idle]['in_use'] is False
    assert [v['Name'] for v in run.task('dangling')['volumes']] == [idle]
    by_name = run.task('by_name')
    assert [v['Name'] for v in by_name['volumes']] == [other]
    assert by_name['missing'] == ['%s_missing' % prefix]
