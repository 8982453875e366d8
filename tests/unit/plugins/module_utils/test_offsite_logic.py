# -*- coding: utf-8 -*-
"""backup_sync's logic with a stand-in rclone (tests/unit/fixtures/fake_rclone.py) whose remote is a directory and
misbehaves on demand: a remote that corrupts what it stores, one that lies about its hashes, one without hashes,
an rclone too old; and the pure parts (plan, validation, scrubbing of secrets from messages)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import pytest

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._offsite import plan_sync, run_remote_info, run_sync
from ansible_collections.holdfast.volumes.plugins.module_utils._rclone import (
    explain,
    rclone_message,
    validate_remote,
)

FAKE = str(Path(__file__).resolve().parents[2] / 'fixtures' / 'fake_rclone.py')


def make_store(dest, volume, count):
    folder = Path(dest) / volume
    folder.mkdir(parents=True)
    for i in range(count):
        when = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(hours=i)
        stamp = when.strftime('%Y%m%dT%H%M%SZ')
        data = os.urandom(5000)
        (folder / ('%s-%s.tar.zst' % (volume, stamp))).write_bytes(data)
        (folder / ('%s-%s.manifest.json' % (volume, stamp))).write_text(json.dumps(dict(
            format='holdfast.volumes/backup', volume=volume, archive='%s-%s.tar.zst' % (volume, stamp),
            sha256=hashlib.sha256(data).hexdigest(), bytes_stored=len(data),
            created=when.strftime('%Y-%m-%dT%H:%M:%SZ'))))


def params(tmp_path, fault='', verify='auto'):
    root = tmp_path / 'remote'
    (root / 'bucket').mkdir(parents=True, exist_ok=True)
    return dict(dest=str(tmp_path / 'store'), remote=dict(type='s3', path='bucket', options=dict(
        root=str(root), fault=fault, secret_access_key='s3cr3t-value')), host='h1', verify=verify, transfers=2,
        rclone_path=FAKE, lock_timeout=5)


def remote_files(tmp_path):
    base = tmp_path / 'remote' / 'bucket' / 'h1'
    return sorted(str(p.relative_to(base)) for p in base.rglob('*') if p.is_file()) if base.exists() else []


def test_honest_remote_verified_by_its_md5_then_idempotent(tmp_path):
    make_store(tmp_path / 'store', 'v', 2)
    result, warnings = run_sync(params(tmp_path))
    assert [c['verified_by'] for c in result['copied']] == ['remote md5', 'remote md5'] and warnings == []
    assert len([f for f in remote_files(tmp_path) if f.endswith('.manifest.json')]) == 2
    again, _w = run_sync(params(tmp_path))
    assert not again['changed'] and again['present'] == 2 and again['rclone_runs'] == ['lsjson']


def test_remote_that_corrupts_is_caught_by_its_own_md5_and_gets_no_manifest(tmp_path):
    make_store(tmp_path / 'store', 'v', 1)
    with pytest.raises(HoldfastError) as err:
        run_sync(params(tmp_path, fault='corrupt'))
    assert 'differs from the local archive' in err.value.msg
    assert not [f for f in remote_files(tmp_path) if f.endswith('.manifest.json')]
    # the list reaches the user: under the key `failed`, fail_json would overwrite it with true
    assert 'failed' not in err.value.details and 'differs' in err.value.details['not_copied'][0]['reason']


def test_remote_that_lies_about_its_hash_is_caught_by_reading_back(tmp_path):
    make_store(tmp_path / 'store', 'v', 1)
    # verify: auto trusts the md5 the remote reports: a remote that lies passes that check...
    lied, _w = run_sync(params(tmp_path, fault='lie'))
    assert [c['verified_by'] for c in lied['copied']] == ['remote md5']
    # ...verify: read trusts nothing the remote says (a fresh host folder, so the copy is made again)
    args = dict(params(tmp_path, fault='lie', verify='read'), host='h2')
    with pytest.raises(HoldfastError) as err:
        run_sync(args)
    assert 'read back: sha256' in err.value.msg
    assert not list((tmp_path / 'remote' / 'bucket' / 'h2').rglob('*.manifest.json'))


def test_remote_without_hashes_is_read_back_or_refused_in_hash_mode(tmp_path):
    make_store(tmp_path / 'store', 'v', 1)
    with pytest.raises(HoldfastError) as err:
        run_sync(params(tmp_path, fault='nohash', verify='hash'))
    assert 'computes no md5' in err.value.msg
    result, _w = run_sync(params(tmp_path, fault='nohash'))
    assert [c['verified_by'] for c in result['copied']] == ['read back sha256']


def test_local_archive_that_fails_its_manifest_is_not_completed_on_the_remote(tmp_path):
    make_store(tmp_path / 'store', 'v', 1)
    archive = next((tmp_path / 'store' / 'v').glob('*.tar.zst'))
    archive.write_bytes(b'x' + archive.read_bytes()[1:])
    with pytest.raises(HoldfastError) as err:
        run_sync(params(tmp_path))
    assert 'does not match its manifest' in err.value.msg
    assert not [f for f in remote_files(tmp_path) if f.endswith('.manifest.json')]


def test_rclone_too_old_is_named(tmp_path):
    make_store(tmp_path / 'store', 'v', 1)
    with pytest.raises(HoldfastError) as err:
        run_sync(params(tmp_path, fault='old'))
    assert 'too old' in err.value.msg and '1.60' in err.value.msg


def test_check_mode_lists_once_and_uploads_nothing(tmp_path):
    make_store(tmp_path / 'store', 'v', 3)
    result, _w = run_sync(params(tmp_path), check_mode=True)
    # the host folder does not exist yet: the second listing checks that the bucket does
    assert result['changed'] and len(result['copied']) == 3 and result['rclone_runs'] == ['lsjson', 'lsjson']
    assert remote_files(tmp_path) == []
    assert not (tmp_path / 'store' / '.holdfast-sync.lock').exists()


def test_plan_completes_killed_uploads_and_repairs_missing_archives():
    def backup(name, size=10):
        return dict(archive=name + '.tar.zst', manifest_name=name + '.manifest.json',
                    manifest=dict(bytes_stored=size), manifest_size=300)
    local = [('v', backup('v-%d' % i)) for i in range(1, 6)]
    remote = {'v/v-1.tar.zst': 10, 'v/v-1.manifest.json': 300,   # complete
              'v/v-2.tar.zst': 4,                                # killed upload: no manifest
              'v/v-3.manifest.json': 300,                        # manifest without archive: repair
              'v/v-4.tar.zst': 9, 'v/v-4.manifest.json': 300,    # wrong size: repair
              'v/v-5.tar.zst': 10, 'v/v-5.manifest.json': 120}   # manifest cut off while written: repair
    present, to_copy = plan_sync(local, remote)
    assert [p['backup']['archive'] for p in present] == ['v-1.tar.zst']
    assert [(c['backup']['archive'], c['repair'], c['partial']) for c in to_copy] == [
        ('v-2.tar.zst', False, True), ('v-3.tar.zst', True, False), ('v-4.tar.zst', True, True),
        ('v-5.tar.zst', True, True)]


@pytest.mark.parametrize('remote, message', [
    (dict(type='S3', path='b'), 'backend name'),
    (dict(type='s3', path='/'), 'path is required'),
    (dict(type='sftp', path='/srv/../etc'), '. or ..'),
    (dict(type='s3', path='b', options={'Bad-Key': 1}), 'not an rclone option'),
    (dict(type='s3', path='b', options={'type': 'local'}), 'must not set type'),
])
def test_validate_remote_refuses(remote, message):
    with pytest.raises(HoldfastError) as err:
        validate_remote(remote)
    assert message in err.value.msg


def test_validate_remote_keeps_absolute_sftp_paths_and_strips_buckets():
    assert validate_remote(dict(type='sftp', path='/srv/offsite/'))[1] == '/srv/offsite'
    assert validate_remote(dict(type='s3', path='/bucket/prefix/'))[1] == 'bucket/prefix'
    assert validate_remote(dict(type='s3', path='b', options=dict(x=True)))[2] == {'x': 'true'}


def test_messages_are_scrubbed_and_explained():
    stderr = ('2026/11/28 13:30:16 ERROR : error listing: SignatureDoesNotMatch for key hfsecret-123\n'
              '2026/11/28 13:30:16 NOTICE: Failed to lsjson with 2 errors: hfsecret-123\n')
    text = rclone_message(stderr, {'hfsecret-123'})
    assert 'hfsecret-123' not in text and '********' in text and not text.startswith('2026')
    assert 'credentials' in explain(text)
    assert 'bucket does not exist' in explain('api error NoSuchBucket: The specified bucket does not exist')
    # rclone quotes option values the Go way (%q) in parse errors: the escaped form is masked too
    quoted = 'couldn\'t parse config item "nounc" = "pa\\"ss\\\\SECRET2"\n'
    assert 'SECRET2' not in rclone_message(quoted, {'pa"ss\\SECRET2'})


def test_private_directories_of_killed_runs_are_removed(tmp_path, monkeypatch):
    import tempfile

    from ansible_collections.holdfast.volumes.plugins.module_utils import _rclone
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    dead = tmp_path / 'holdfast-rclone-999999999-abc'
    alive = tmp_path / ('holdfast-rclone-%d-abc' % os.getpid())
    for d in (dead, alive):
        d.mkdir()
        (d / 'key').write_text('secret key')
    _rclone.remove_stale_private_dirs()
    assert not dead.exists() and alive.exists()


def test_rclone_environment_inherits_nothing_of_the_caller(monkeypatch):
    from ansible_collections.holdfast.volumes.plugins.module_utils._process import command_env
    monkeypatch.setenv('AWS_SECRET_ACCESS_KEY', 'from-the-caller')
    monkeypatch.setenv('RCLONE_CONFIG_HOLDFAST_TYPE', 'local')
    assert command_env({'RCLONE_CONFIG_HOLDFAST_TYPE': 's3'}, inherit=False) == {
        'RCLONE_CONFIG_HOLDFAST_TYPE': 's3', 'LC_ALL': 'C', 'LANG': 'C'}


def test_remote_manifest_of_the_wrong_shape_is_reported_broken_not_a_crash(tmp_path):
    make_store(tmp_path / 'store', 'v', 2)
    run_sync(params(tmp_path))
    remote = sorted((tmp_path / 'remote' / 'bucket' / 'h1' / 'v').glob('*.manifest.json'))[-1]
    manifest = json.loads(remote.read_text())
    manifest['bytes_stored'] = str(manifest['bytes_stored'] + 1)  # a string: '%d' % it raised TypeError
    remote.write_text(json.dumps(manifest))
    info = run_remote_info(dict(params(tmp_path), verify='size'))
    state = info['backups'][0]
    assert state['count'] == 1 and state['unreadable_manifests'] == 1 and state['newest']['problem'] is None


def test_copy_takes_the_md5_rclone_compared_and_keeps_no_debug_line(tmp_path, monkeypatch):
    """rclone copy at DEBUG prints '<file>: md5 = <hex> OK' after comparing a copy's hashes, and also the settings it
    read from its environment (Debian's 1.60 with their values): the md5 is taken, every DEBUG line dropped."""
    from ansible_collections.holdfast.volumes.plugins.module_utils._rclone import Rclone
    stderr = ('2026/11/28 16:48:23 DEBUG : Setting secret_access_key="s3cr3t-value" for "holdfast" from environment '
              'variable RCLONE_CONFIG_HOLDFAST_SECRET_ACCESS_KEY\n'
              '2026/11/28 16:48:23 DEBUG : v/a 1.bin: md5 = 1fbabc7c260b7065911cb662f9790c18 OK\n'
              '2026/11/28 16:48:23 DEBUG : v/a2.bin: md5 = 0123 OK\n'
              '2026/11/28 16:48:24 ERROR : v/a2.bin: Failed to copy: boom\n')
    with Rclone(params(tmp_path)['remote'], FAKE) as rclone:
        levels = []
        monkeypatch.setattr(rclone, 'run', lambda args, what, check=True, level='NOTICE': (
            levels.append(level) or (1, b'', stderr)))
        seen = {}
        code, _out, err = rclone.copy(str(tmp_path), ['v/a 1.bin', 'v/a2.bin'], 'h1', seen_md5=seen)
        assert levels == ['DEBUG'] and code == 1
        assert seen == {'v/a 1.bin': '1fbabc7c260b7065911cb662f9790c18'}
        assert 'DEBUG' not in err and 's3cr3t' not in err and 'Failed to copy: boom' in err
        rclone.copy(str(tmp_path), ['v/a2.bin'], 'h1')
        assert levels == ['DEBUG', 'NOTICE'], 'without seen_md5 the copy logs at NOTICE'


def test_a_rotten_local_archive_never_replaces_the_remote_copy_in_a_repair(tmp_path):
    """A repair (the remote lists the manifest, its archive does not match) overwrites what the remote holds: the
    local archive is read first, and one that fails its manifest is not uploaded at all."""
    make_store(tmp_path / 'store', 'v', 1)
    run_sync(params(tmp_path))
    remote_dir = tmp_path / 'remote' / 'bucket' / 'h1' / 'v'
    remote_archive = next(remote_dir.glob('*.tar.zst'))
    good = remote_archive.read_bytes()
    remote_archive.write_bytes(good + b'tail')  # the remote's archive now has the wrong size: a repair is planned
    local = next((tmp_path / 'store' / 'v').glob('*.tar.zst'))
    local.write_bytes(b'x' + local.read_bytes()[1:])  # and the local one rotted, at the same size
    with pytest.raises(HoldfastError) as err:
        run_sync(params(tmp_path))
    assert 'does not match its manifest' in err.value.msg
    assert remote_archive.read_bytes() == good + b'tail'  # not overwritten by the rotten local copy


def test_sftp_without_known_hosts_is_warned_by_every_module_and_the_scheduled_runner(tmp_path):
    """rclone checks an SFTP server's host key only with known_hosts_file: without it, the modules given the remote
    warn as they start (so a failed run shows it too), and the scheduled runner puts it on its sync lines."""
    from ansible_collections.holdfast.volumes.plugins.module_utils._remote_store import (
        remote_warnings,
        warn_about_remote,
    )
    from ansible_collections.holdfast.volumes.plugins.module_utils._scheduled import run_offsite
    sftp = dict(type='sftp', path='/srv/offsite', options={'host': 'backup.example.org', 'pass': 's3cr3t-value'})
    warnings = remote_warnings(sftp)
    assert len(warnings) == 1 and 'known_hosts_file' in warnings[0] and 'host key is not checked' in warnings[0]
    assert 's3cr3t-value' not in warnings[0] and 'backup.example.org' not in warnings[0]
    for known in ('', None):
        assert remote_warnings(dict(sftp, options=dict(sftp['options'], known_hosts_file=known))) == warnings
    assert remote_warnings(dict(sftp, options=dict(known_hosts_file='/etc/ssh/ssh_known_hosts'))) == []
    assert remote_warnings(params(tmp_path)['remote']) == [] and remote_warnings(None) == []

    class Module(object):
        def __init__(self, remote):
            self.params, self.warned = dict(remote=remote), []

        def warn(self, text):
            self.warned.append(text)
    for remote, expected in ((sftp, warnings), (None, []), (params(tmp_path)['remote'], [])):
        module = Module(remote)
        warn_about_remote(module)
        assert module.warned == expected

    lines = []
    plan = dict(offsite_remotes=[sftp], offsite_syncs=[dict(remote_id=0, label='sftp:/srv/offsite', volumes=['v'])],
                offsite_rotations=[dict(remote_id=0, volume='v', keep_last=3)])
    failed = run_offsite(plan, lambda p: (dict(copied=[], present=1), ['no local backups of w in /x']),
                         lambda p: (dict(kept=[], removed=[], broken=['a']), ['broken: a']),
                         dict(volumes=dict(type='list'), remote=dict(type='dict')),
                         dict(volume=dict(type='str'), keep_last=dict(type='int'), remote=dict(type='dict')),
                         lines.append)
    assert failed == 0, lines
    assert lines[0]['warnings'] == warnings + ['no local backups of w in /x']
    assert lines[1]['warnings'] == ['broken: a']
