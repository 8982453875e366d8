# -*- coding: utf-8 -*-
"""One model schema, enforced by every role (issue #13 item 3): a typo fails before anything changes, whichever
role runs first, and every role accepts what the model allows."""

from __future__ import annotations

import sys

from ansible_runner import run_playbook

ROLES = ('volumes', 'encryption', 'backup', 'restore')


def each_role(models):
    """One play: every role with every model, each in a block whose rescue records the failure."""
    tasks = []
    for label, model in models.items():
        for role in ROLES:
            tasks.append({'name': '%s %s' % (label, role), 'vars': {'holdfast_volumes': model}, 'block': [
                {'name': 'run %s %s' % (label, role),
                 'ansible.builtin.include_role': {'name': 'holdfast.volumes.' + role}}],
                'rescue': [{'name': 'failed %s %s' % (label, role),
                            'ansible.builtin.set_fact': {'failure': '{{ ansible_failed_result.msg }}'}},
                           {'name': 'msg %s %s' % (label, role),
                            'ansible.builtin.debug': {'msg': '{{ failure }}'}}]})
    return run_playbook(tasks, play_vars={'ansible_python_interpreter': sys.executable,
                                          'holdfast_volumes_install_dependencies': False,
                                          'holdfast_restore_volumes': ['none-of-them']})


def test_every_role_refuses_a_typo_before_any_change(docker_client, prefix, tmp_path):
    dest = tmp_path / 'backups'
    dest.mkdir()
    good = {'name': prefix + '_db', 'mode': '0700', 'backup': {'dest': str(dest)}}
    models = {
        'retension': [dict(good, backup={'dest': str(dest), 'retension': {'keep_last': 1}})],
        'intmode': [dict(good, mode=700)],
        'iter_tme': [dict(good, encryption={'path': str(tmp_path / 'm'), 'backing_file': str(tmp_path / 'f'),
                                            'pbkdf_iter_tme': 100})],
        'keep_dayly': [dict(good, backup={'dest': str(dest), 'retention': {'keep_dayly': 7}})],
        'offsite': [dict(good, backup={'dest': str(dest), 'offsite': {
            'remote': {'type': 'sftp', 'path': str(tmp_path / 'remote')}, 'retension': {'keep_last': 1}}})],
    }
    run = each_role(models)
    assert run.rc == 0, run.stdout + run.stderr
    for label, expected in (('retension', 'retension'), ('intmode', 'mode: "0700"'), ('iter_tme', 'pbkdf_iter_tme'),
                            ('keep_dayly', 'keep_dayly'), ('offsite', 'backup.offsite.retension')):
        for role in ROLES:
            message = run.task('msg %s %s' % (label, role))['msg']
            assert expected in message, (label, role, message)
    # nothing changed anywhere: no volume, no backup, no restore, no encrypted path
    assert not [v for v in (docker_client.volumes() or {}).get('Volumes') or [] if v['Name'].startswith(prefix)]
    assert list(dest.iterdir()) == [] and not (tmp_path / 'm').exists() and not (tmp_path / 'f').exists()
    assert not (tmp_path / 'remote').exists()


def test_every_role_accepts_the_whole_model(docker_client, prefix, tmp_path):
    """pbkdf_iter_time (read by the encryption role) was refused by the volumes role's spec."""
    model = [{'name': prefix + '_plain', 'labels': {'app': prefix}, 'owner': 999, 'mode': 'u=rwx,g=rx,o=',
              'backup': {'dest': str(tmp_path / 'backups'), 'compression': 'gzip', 'verify': True,
                         'pre_hooks': [{'container': 'x', 'command': ['true'], 'user': '0'}],
                         'retention': {'keep_last': 2, 'keep_within': '2d', 'timezone': 'Europe/Berlin'}}},
             {'name': prefix + '_secret', 'encryption': {'path': str(tmp_path / 'm'), 'backing_file': '/nonexistent',
                                                         'pbkdf_iter_time': 200, 'pbkdf_memory': 65536}}]
    tasks = [{'name': 'validate ' + role, 'ansible.builtin.validate_argument_spec': {
        'argument_spec': "{{ (lookup('ansible.builtin.file', '%s/roles/%s/meta/argument_specs.yml') | from_yaml)"
                         ".argument_specs.main.options }}" % (ROOT, role),
        'provided_arguments': {'holdfast_volumes': model}}} for role in ROLES]
    tasks.append({'name': 'filter', 'ansible.builtin.assert': {
        'that': "holdfast_volumes | holdfast.volumes.volume_model('check')"}, 'vars': {'holdfast_volumes': model}})
    run = run_playbook(tasks, play_vars={'ansible_python_interpreter': sys.executable})
    assert run.rc == 0, run.stdout + run.stderr
    assert all(run.status('validate ' + role) == 'ok' for role in ROLES)


ROOT = __import__('pathlib').Path(__file__).resolve().parents[2]
