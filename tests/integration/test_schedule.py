# -*- coding: utf-8 -*-
"""Backups on the host's own clock: the backup role installs the runner, its jobs file and a cron entry (here, a
host without systemd) or a systemd timer (the VM guest under systemd), and the runner makes real backups with
Python and the Docker SDK alone, no Ansible."""
from __future__ import annotations

import json
import os
import re
import subprocess
import zipfile

from ansible_runner import run_playbook

ROLE = [{'name': 'backup role', 'ansible.builtin.include_role': {'name': 'holdfast.volumes.backup'}}]
NEVER = '0 0 31 2 *'  # 31 February: a cron entry that cron on this machine would never fire by itself


def changed(run):
    """Names (without the role prefix) of the tasks that reported a change."""
    return [r['task'].split(' : ', 1)[-1] for r in run.records if r['status'] == 'ok' and (
        r['result'].get('changed') or any(i.get('changed') for i in r['result'].get('results', [])))]


def scheduler(run):
    return run.task('holdfast.volumes.backup : Choose the scheduler')['ansible_facts']['holdfast_backup_scheduler']


def role_vars(tmp_path, volume, **extra):
    out = {
        'holdfast_volumes': [{'name': volume, 'backup': {'dest': str(tmp_path / 'backups'),
                                                         'retention': {'keep_last': 1}}}],
        'holdfast_backup_now': False,
        'holdfast_backup_schedule_state': 'present',
        'holdfast_backup_schedule_cron': NEVER,
        'holdfast_backup_schedule_lib': str(tmp_path / 'lib'),
        'holdfast_backup_schedule_jobs': str(tmp_path / 'etc' / 'backup-jobs.json'),
    }
    out.update(extra)
    return out


def test_cron_schedule_runs_backups_without_ansible(docker_client, prefix, tmp_path):
    volume = prefix + '_sched'
    docker_client.create_volume(volume)
    data = docker_client.inspect_volume(volume)['Mountpoint']
    with open(os.path.join(data, 'orders.csv'), 'w') as handle:
        handle.write('1,widget\n')
    (tmp_path / 'backups').mkdir()
    cron = '/etc/cron.d/holdfast-backup'
    try:
        # check mode predicts the changes and writes nothing
        dry = run_playbook(ROLE, play_vars=role_vars(tmp_path, volume), check=True)
        assert dry.rc == 0, dry.stdout
        predicted = [name.split(' (')[0] for name in changed(dry)]
        assert predicted == ['Runner directories', 'Runner code on the host', 'Jobs file', 'Cron entry']
        assert not os.path.exists(cron) and not (tmp_path / 'lib').exists()

        # another local user plants the names a predictable controller path would use (in a sticky, world-writable
        # temporary directory like /tmp): the zip is built in a private directory and nothing is written through them
        ctl_tmp = tmp_path / 'controller-tmp'
        ctl_tmp.mkdir()
        os.chmod(ctl_tmp, 0o1777)
        victim = tmp_path / 'victim'
        victim.write_text('precious')
        planted = []
        for user in set(['root', 'user', os.environ.get('USER') or 'user']):
            for suffix in ('.zip', '.zip.tmp'):
                link = ctl_tmp / ('holdfast-volumes-runner-%s%s' % (user, suffix))
                link.symlink_to(victim)
                planted.append(link.name)
        run = run_playbook(ROLE, play_vars=role_vars(tmp_path, volume), env={'TMPDIR': str(ctl_tmp)})
        assert run.rc == 0, run.stdout
        assert scheduler(run) == 'cron'
        assert victim.read_text() == 'precious'
        assert sorted(os.listdir(ctl_tmp)) == sorted(planted)  # the private directory is gone too
        with zipfile.ZipFile(tmp_path / 'lib' / 'holdfast-volumes.zip') as packed:
            assert 'ansible_collections/holdfast/volumes/plugins/module_utils/_backup.py' in packed.namelist()
        jobs = tmp_path / 'etc' / 'backup-jobs.json'
        assert oct(os.stat(jobs).st_mode & 0o777) == '0o600'
        assert json.loads(jobs.read_text())['jobs'][0]['rotation'] == {
            'volume': volume, 'dest': str(tmp_path / 'backups'), 'keep_last': 1}
        assert not os.listdir(tmp_path / 'backups')  # holdfast_backup_now: false

        again = run_playbook(ROLE, play_vars=role_vars(tmp_path, volume))
        assert again.rc == 0 and changed(again) == [], changed(again)

        # run the entry's command as cron would, with a Python that has no Ansible
        line = [entry for entry in open(cron).read().splitlines() if entry.startswith(NEVER)][0]
        command = line[len(NEVER):].strip()
        assert command.startswith('root ')
        assert subprocess.run(['/usr/bin/python3', '-c', 'import ansible'], capture_output=True,
                              check=False).returncode != 0
        assert ' LC_ALL=C LANG=C ' in command  # the runner's own environment: the C locale
        # as cron runs it on a German host (Debian's cron passes /etc/default/locale on)
        german = dict(os.environ, LANG='de_DE.UTF-8', LANGUAGE='de', LC_ALL='de_DE.UTF-8')
        for _run in range(2):
            proc = subprocess.run(['sh', '-c', command[len('root '):]], capture_output=True, text=True, timeout=300,
                                  check=False, env=german)
            assert proc.returncode == 0, open('/var/log/holdfast-backup.log').read()[-2000:]
        log = [json.loads(entry) for entry in open('/var/log/holdfast-backup.log').read().splitlines()[-4:]]
        job, summary = log[-2], log[-1]
        assert summary == {'summary': True, 'jobs': 1, 'failed': 0, 'ok': True}
        assert job['ok'] and job['volume'] == volume and job['file_count'] == 1 and job['kept'] == 1
        assert job['removed'] == 1  # the second run's rotation removed the first run's backup (keep_last: 1)
        folder = tmp_path / 'backups' / volume
        archives = sorted(p.name for p in folder.iterdir() if p.name.endswith('.tar.zst'))
        assert len(archives) == 1 and job['archive'].endswith(archives[0])
        listing = subprocess.run(['tar', '--zstd', '-tf', str(folder / archives[0])], capture_output=True,
                                 text=True, check=True).stdout
        assert './orders.csv' in listing

        # a changed time is a change, and check mode says so without touching the entry
        moved = run_playbook(ROLE, play_vars=role_vars(tmp_path, volume, holdfast_backup_schedule_cron='15 3 * * *'),
                             check=True)
        assert moved.rc == 0 and changed(moved) == ['Cron entry']
        assert open(cron).read().count(NEVER) == 1
    finally:
        gone = run_playbook(ROLE, play_vars=role_vars(tmp_path, volume, holdfast_backup_schedule_state='absent'))
    assert gone.rc == 0, gone.stdout
    assert not os.path.exists(cron) and not (tmp_path / 'etc' / 'backup-jobs.json').exists()


def test_systemd_timer_runs_backups_on_the_guest(vm_host):
    vm = vm_host
    vm.boot_systemd()
    vm.ssh('docker volume create sched_vm && docker run --rm -v sched_vm:/d holdfast-test/busybox:1 '
           'sh -c "echo 42 > /d/answer" && mkdir -p /srv/sched-backups')
    model = {'holdfast_volumes': [{'name': 'sched_vm', 'backup': {'dest': '/srv/sched-backups',
                                                                  'retention': {'keep_last': 3}}}],
             'holdfast_backup_now': False, 'holdfast_backup_schedule_state': 'present',
             'holdfast_backup_schedule_on_calendar': 'Mon *-*-* 03:00:00'}
    try:
        run = run_playbook(ROLE, play_vars=model, inventory=vm.inventory, hosts='fleet')
        assert run.rc == 0, run.stdout
        assert scheduler(run) == 'systemd'
        assert vm.ssh('systemctl is-enabled holdfast-backup.timer')[1].strip() == 'enabled'
        assert vm.ssh('systemctl is-active holdfast-backup.timer')[1].strip() == 'active'
        assert 'LC_ALL=C' in vm.ssh('systemctl show -p Environment --value holdfast-backup.service')[1]
        assert 'Mon' in vm.ssh('systemctl show -p NextElapseUSecRealtime --value holdfast-backup.timer')[1]
        again = run_playbook(ROLE, play_vars=model, inventory=vm.inventory, hosts='fleet')
        assert again.rc == 0 and changed(again) == [], changed(again)
        # what the timer starts, started now
        vm.ssh('systemctl start holdfast-backup.service', timeout=300)
        journal = vm.ssh('journalctl -u holdfast-backup.service -o cat --no-pager')[1]
        lines = [json.loads(x) for x in journal.splitlines() if x.startswith('{')]
        assert lines[-1] == {'summary': True, 'jobs': 1, 'failed': 0, 'ok': True}
        assert lines[-2]['ok'] and lines[-2]['volume'] == 'sched_vm'
        archive = lines[-2]['archive']
        assert re.match(r'/srv/sched-backups/sched_vm/sched_vm-\d{8}T\d{6}Z\.tar\.zst$', archive)
        assert vm.ssh('tar --zstd -xOf %s ./answer' % archive)[1] == '42\n'
        assert vm.ssh('systemctl show -p Result --value holdfast-backup.service')[1].strip() == 'success'
    finally:
        gone = run_playbook(ROLE, play_vars=dict(model, holdfast_backup_schedule_state='absent'),
                            inventory=vm.inventory, hosts='fleet')
        vm.ssh('docker volume rm -f sched_vm; rm -rf /srv/sched-backups', check=False)
    assert gone.rc == 0, gone.stdout
    assert vm.ssh('systemctl cat holdfast-backup.timer', check=False)[0] != 0
    assert vm.ssh('test -e /etc/holdfast/backup-jobs.json', check=False)[0] != 0
