# -*- coding: utf-8 -*-
"""The report playbook: JSON and a self-contained HTML page, checked as headless Chromium renders it."""

from __future__ import annotations

import json
import os
import subprocess

from ansible_runner import run_named_playbook

CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync']


def render(html_path, tmp_path):
    """The DOM after Chromium loaded the page, and a screenshot of it."""
    chromium = '/usr/bin/chromium'
    assert os.path.exists(chromium), 'chromium is missing: scripts/setup.sh installs it'
    profile = tmp_path / 'chromium-profile'
    dom = subprocess.run([chromium] + CHROMIUM_FLAGS + ['--user-data-dir=%s' % profile, '--dump-dom',
                                                        'file://%s' % html_path],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    shot = tmp_path / 'report.png'
    subprocess.run([chromium] + CHROMIUM_FLAGS + ['--user-data-dir=%s' % profile, '--window-size=1200,900',
                                                  '--screenshot=%s' % shot, 'file://%s' % html_path],
                   capture_output=True, timeout=120, check=True)
    return dom, shot


def test_report_json_and_html(docker_client, prefix, tmp_path):
    vols = [{'name': prefix + '_db', 'labels': {'app': prefix},
             'backup': {'dest': str(tmp_path / 'backups'), 'retention': {'keep_last': 3}}},
            {'name': prefix + '_nobackup', 'labels': {'app': prefix}},
            # a live copy (quiesce: none) of a volume a running container writes to: reported as inconsistent
            {'name': prefix + '_live', 'labels': {'app': prefix},
             'backup': {'dest': str(tmp_path / 'backups'), 'quiesce': 'none'}}]
    extra = {'holdfast_volumes': vols, 'holdfast_volumes_install_dependencies': False,
             'holdfast_report_dir': str(tmp_path / 'report')}
    assert run_named_playbook('holdfast.volumes.site', extra).rc == 0
    with open(os.path.join(docker_client.inspect_volume(prefix + '_db')['Mountpoint'], 'data'), 'wb') as handle:
        handle.write(os.urandom(300000))
    docker_client.create_container('holdfast-test/busybox:1', name=prefix + '_writer', command=[
        'sh', '-c', 'while :; do date >> /data/log; sleep 0.1; done'],
        host_config=docker_client.create_host_config(binds={prefix + '_live': {'bind': '/data'}}))
    docker_client.start(prefix + '_writer')
    assert run_named_playbook('holdfast.volumes.backup', extra).rc == 0
    # one host that works, one that cannot be reached: the report covers both
    run = run_named_playbook('holdfast.volumes.report', extra, inventory_lines=[
        'unreachable-host ansible_host=127.0.0.1 ansible_port=1 ansible_connection=ssh ansible_user=nobody'])
    assert run.rc in (0, 4), run.stdout + run.stderr  # 4: a host was unreachable
    report = json.load(open(tmp_path / 'report' / 'holdfast-report.json'))
    hosts = dict((h['host'], h) for h in report['hosts'])
    assert set(hosts) == {'localhost', 'unreachable-host'}
    assert hosts['unreachable-host']['ok'] is False
    local = hosts['localhost']
    names = [v['Name'] for v in local['volumes']]
    assert prefix + '_db' in names and prefix + '_nobackup' in names
    backup = [b for b in local['backups'] if b['volume'] == prefix + '_db'][0]
    assert backup['count'] == 1 and backup['newest']['verified'] and backup['newest']['age_seconds'] < 600
    assert backup['newest']['consistent'] is True and backup['inconsistent'] == 0
    live = [b for b in local['backups'] if b['volume'] == prefix + '_live'][0]
    assert live['newest']['consistent'] is False and live['newest']['quiesce'] == 'none' and live['inconsistent'] == 1
    assert local['inconsistent'] == [prefix + '_live'] and 'INCONSISTENT: %s_live' % prefix in local['summary']
    dom, shot = render(tmp_path / 'report' / 'holdfast-report.html', tmp_path)
    assert '<h1>holdfast.volumes report</h1>' in dom
    assert 'unreachable-host' in dom and 'FAILED' in dom and 'unknown' in dom
    assert prefix + '_db' in dom and prefix + '_nobackup' in dom and 'yes (size)' in dom
    assert 'NO (live copy)' in dom and 'yes (auto)' in dom
    assert shot.stat().st_size > 10000  # a real rendering, not an empty page
    # the restore role refuses the inconsistent backup (holdfast_restore_allow_inconsistent is false by default),
    # before touching anything: the writer's volume keeps its newer content
    log = os.path.join(docker_client.inspect_volume(prefix + '_live')['Mountpoint'], 'log')
    size = os.path.getsize(log)
    restore_vars = dict(extra, holdfast_restore_volumes=[prefix + '_live'], holdfast_restore_replace=True)
    run = run_named_playbook('holdfast.volumes.restore', restore_vars)
    assert run.rc != 0
    assert 'is recorded as NOT consistent' in run.stdout and 'holdfast_restore_allow_inconsistent' in run.stdout
    assert os.path.getsize(log) >= size and docker_client.inspect_container(prefix + '_writer')['State']['Running']
