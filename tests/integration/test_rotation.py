# -*- coding: utf-8 -*-
"""backup_rotation over real backups from volume_backup, spread over simulated dates."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time

import pytest
from ansible_runner import run_playbook

from ansible_collections.holdfast.volumes.plugins.module_utils._retention import apply_policy

UTC = dt.timezone.utc
NOW = '2026-06-30T12:00:00Z'


def spread(folder, template_archive, template_manifest, times):
    """Copies of one real backup under simulated creation times (names and manifests agree)."""
    manifest = json.load(open(template_manifest))
    volume = manifest['volume']
    suffix = template_archive[template_archive.index('.tar'):]
    made = []
    for when in times:
        stamp = when.strftime('%Y%m%dT%H%M%SZ')
        archive = '%s-%s%s' % (volume, stamp, suffix)
        os.link(template_archive, os.path.join(folder, archive))
        data = dict(manifest, archive=archive, created=when.strftime('%Y-%m-%dT%H:%M:%SZ'))
        with open(os.path.join(folder, '%s-%s.manifest.json' % (volume, stamp)), 'w') as handle:
            json.dump(data, handle)
        made.append((when, archive))
    return made


def test_rotation_check_then_real(docker_client, prefix, tmp_path):
    vol = prefix + '_rot'
    docker_client.create_volume(vol)
    with open(os.path.join(docker_client.inspect_volume(vol)['Mountpoint'], 'f'), 'w') as handle:
        handle.write('data')
    dest = str(tmp_path / 'dest')
    res = run_playbook([{'name': 'b', 'holdfast.volumes.volume_backup': {'volume': vol, 'dest': dest}}]).task('b')
    folder = os.path.dirname(res['archive'])
    template = str(tmp_path / 'template.tar.zst')
    shutil.move(res['archive'], template)
    os.unlink(res['manifest'])
    base = dt.datetime(2026, 6, 30, 3, 0, tzinfo=UTC)
    times = [base - dt.timedelta(hours=7 * i) for i in range(300)]  # about 87 days, every 7 hours
    # a manifest template with the real archive's checksum
    manifest = dict(format='holdfast.volumes/backup', format_version=1, volume=vol, archive='x',
                    sha256=res['sha256'], bytes_stored=res['bytes_stored'], created='x', file_count=1)
    tmpl_manifest = str(tmp_path / 'template.manifest.json')
    json.dump(manifest, open(tmpl_manifest, 'w'))
    made = spread(folder, template, tmpl_manifest, times)
    # things rotation must not touch, or only when stale
    open(os.path.join(folder, 'README.txt'), 'w').write('operator notes')
    fresh_tmp = os.path.join(folder, '.holdfast-tmp-inprogress.tar.zst')
    open(fresh_tmp, 'w').write('in progress')
    stale_tmp = os.path.join(folder, '.holdfast-tmp-old.tar.zst')
    open(stale_tmp, 'w').write('killed run')
    os.utime(stale_tmp, (time.time() - 3 * 86400,) * 2)
    # mtimes are meaningless for rotation: scramble them
    for i, (_when, archive) in enumerate(made):
        os.utime(os.path.join(folder, archive), (time.time() - i * 1000,) * 2)
    policy = dict(keep_last=3, keep_daily=7, keep_weekly=4, keep_monthly=6, keep_within='2d')
    expected = apply_policy([{'time': w, 'archive': a} for w, a in made], policy,
                            now=dt.datetime(2026, 6, 30, 12, tzinfo=UTC))
    expected_keep = sorted(e['item']['archive'] for e in expected['keep'])
    task = {'name': 'rotate', 'holdfast.volumes.backup_rotation': dict(policy, dest=dest, volume=vol, now=NOW)}
    check = run_playbook([task], check=True, diff=True)
    assert check.rc == 0, check.stdout
    planned = check.task('rotate')
    assert sorted(os.path.basename(k['archive']) for k in planned['kept']) == expected_keep
    assert len(planned['removed']) == 300 - len(expected_keep)
    assert planned['cleaned'] == [stale_tmp]
    assert '--- before' in check.stdout or 'before:' in check.stdout
    assert len([f for f in os.listdir(folder) if f.endswith('.manifest.json')]) == 300  # nothing removed
    assert os.path.exists(stale_tmp)
    real = run_playbook([task])
    res = real.task('rotate')
    assert real.rc == 0 and res['changed']
    assert sorted(os.path.basename(k['archive']) for k in res['kept']) == expected_keep
    left = sorted(f for f in os.listdir(folder) if f.endswith('.tar.zst') and not f.startswith('.'))
    assert left == expected_keep
    assert os.path.exists(os.path.join(folder, 'README.txt')) and os.path.exists(fresh_tmp)
    assert not os.path.exists(stale_tmp)
    assert res['bytes_freed'] > 0
    again = run_playbook([task]).task('rotate')
    assert again['changed'] is False


def test_broken_backups_and_newest_kept(docker_client, prefix, tmp_path):
    vol = prefix + '_brk'
    docker_client.create_volume(vol)
    with open(os.path.join(docker_client.inspect_volume(vol)['Mountpoint'], 'f'), 'w') as handle:
        handle.write('data')
    dest = str(tmp_path / 'dest')
    backups = []
    for _unused in range(3):
        backups.append(run_playbook([{'name': 'b', 'holdfast.volumes.volume_backup': {
            'volume': vol, 'dest': dest}}]).task('b'))
        time.sleep(1.05)
    # corrupt the newest: same size, different bytes
    newest = backups[-1]['archive']
    data = bytearray(open(newest, 'rb').read())
    data[-5] ^= 0xFF
    open(newest, 'wb').write(bytes(data))
    task = {'name': 'rotate', 'holdfast.volumes.backup_rotation': {'dest': dest, 'keep_last': 1}}
    run = run_playbook([task])
    res = run.task('rotate')
    assert run.rc == 0
    assert [b['archive'] for b in res['broken']] == [newest] and res['broken'][0]['removed'] is False
    # the newest *sound* backup is kept; the broken one is not counted as kept
    assert [k['archive'] for k in res['kept']] == [backups[1]['archive']]
    assert [r['archive'] for r in res['removed']] == [backups[0]['archive']]
    assert os.path.exists(newest)
    assert any('broken backup' in w for w in res['warnings'])
    run = run_playbook([{'name': 'rotate', 'holdfast.volumes.backup_rotation': {
        'dest': dest, 'keep_last': 1, 'remove_broken': True}}])
    assert not os.path.exists(newest) and os.path.exists(backups[1]['archive'])
    # a crash between manifest and archive removal leaves an orphan archive: cleaned once stale
    orphan = backups[1]['archive']
    os.unlink(backups[1]['manifest'])
    os.utime(orphan, (time.time() - 2 * 86400,) * 2)
    res = run_playbook([{'name': 'rotate', 'holdfast.volumes.backup_rotation': {
        'dest': dest, 'keep_last': 1}}]).task('rotate')
    assert res['cleaned'] == [orphan] and not os.path.exists(orphan)


def test_invalid_policy(tmp_path):
    run = run_playbook([{'name': 'rotate', 'holdfast.volumes.backup_rotation': {'dest': str(tmp_path)}}])
    assert run.rc != 0 and 'keeps nothing' in run.task('rotate')['msg']
    run = run_playbook([{'name': 'rotate', 'holdfast.volumes.backup_rotation': {
        'dest': str(tmp_path), 'keep_within': '3 fortnights'}}])
    assert run.rc != 0 and 'cannot read duration' in run.task('rotate')['msg']


def test_filter_in_a_playbook(tmp_path):
    items = [{'key': 'b%d' % i, 'time': '2026-01-%02dT10:00:00Z' % (i + 1)} for i in range(20)]
    tasks = [{'name': 'plan', 'ansible.builtin.set_fact': {
        'plan': "{{ items | holdfast.volumes.retention_plan(keep_daily=3, keep_weekly=2, now='2026-02-01T00:00:00Z') }}"
    }}, {'name': 'show', 'ansible.builtin.debug': {'var': 'plan'}},
        {'name': 'bad', 'ansible.builtin.debug': {'msg': '{{ items | holdfast.volumes.retention_plan() }}'},
         'ignore_errors': True}]
    run = run_playbook(tasks, play_vars={'items': items})
    plan = run.task('show')['plan']
    # Jan 20 (Tue) and 19 (Mon) are in ISO week 4; Jan 18 (Sun) is the newest of week 3
    assert [k['key'] for k in plan['keep']] == ['b19', 'b18', 'b17']
    assert [k['reasons'] for k in plan['keep']] == [['daily', 'weekly'], ['daily'], ['daily', 'weekly']]
    assert len(plan['remove']) == 17 and 'reasons' not in plan['remove'][0]
    assert 'keeps nothing' in run.task('bad')['msg']


def test_symlinked_folder_in_dest_is_never_followed(tmp_path):
    """dest/evil -> a root directory holding files named like an orphan archive and an old temporary: rotation
    (run as root by the scheduled runner) deleted them and created .lock there. Now nothing there is deleted or
    created: the listing skips the symlink, and naming it as the volume (or in backup_info, or a restore) is
    refused."""
    from ansible_collections.holdfast.volumes.plugins.module_utils._backup_info import run_backup_info
    from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
    from ansible_collections.holdfast.volumes.plugins.module_utils._restore import locate
    from ansible_collections.holdfast.volumes.plugins.module_utils._rotation import run_rotation
    victim = tmp_path / 'victim'
    victim.mkdir(mode=0o700)
    names = ['etc-20200101T000000Z.tar.zst', '.holdfast-tmp-abc', 'etc-20200102T000000Z.tar']
    for name in names:
        (victim / name).write_text('precious')
        os.utime(victim / name, (0, 0))
    dest = tmp_path / 'dest'
    dest.mkdir()
    (dest / 'evil').symlink_to(victim)
    params = dict(dest=str(dest), keep_last=1, stale_age=0, verify='size', lock_timeout=5)
    result, _warnings = run_rotation(dict(params))
    assert result['cleaned'] == [] and result['folders'] == []
    with pytest.raises(HoldfastError, match='not a directory'):
        run_rotation(dict(params, volume='evil'))
    with pytest.raises(HoldfastError, match='not a directory'):
        run_backup_info(dict(dest=str(dest), volumes=['evil'], verify='none'))
    with pytest.raises(HoldfastError, match='not a directory'):
        locate(dict(dest=str(dest), source='evil'))
    assert sorted(os.listdir(victim)) == sorted(names)
    assert all((victim / n).read_text() == 'precious' for n in names)


def test_rotation_unlinks_only_regular_files_relative_to_the_folder(tmp_path):
    """A stale name in a sound folder that is a symlink to a root file is not followed or removed; a real stale
    temporary is (through the folder's descriptor)."""
    from ansible_collections.holdfast.volumes.plugins.module_utils._rotation import run_rotation
    outside = tmp_path / 'outside'
    outside.write_text('precious')
    folder = tmp_path / 'dest' / 'vol'
    folder.mkdir(parents=True, mode=0o700)
    (folder / '.holdfast-tmp-link').symlink_to(outside)
    (folder / '.holdfast-tmp-real').write_text('x')
    os.utime(folder / '.holdfast-tmp-real', (0, 0))
    os.utime(folder / '.holdfast-tmp-link', (0, 0), follow_symlinks=False)
    result, _warnings = run_rotation(dict(dest=str(tmp_path / 'dest'), keep_last=1, stale_age=0, verify='size',
                                          lock_timeout=5))
    assert result['cleaned'] == [str(folder / '.holdfast-tmp-real')]
    assert os.path.islink(folder / '.holdfast-tmp-link') and outside.read_text() == 'precious'
