# -*- coding: utf-8 -*-
"""Manifests and archives are opened as regular files only: a symlink (to /dev/zero), a fifo or an oversized file
planted in a backup folder or beside an archive is refused at once, never followed, waited on or read whole."""

from __future__ import annotations

import json
import os
import signal

import pytest

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._restore import locate
from ansible_collections.holdfast.volumes.plugins.module_utils._restore_read import open_archive
from ansible_collections.holdfast.volumes.plugins.module_utils._store import list_backups
from ansible_collections.holdfast.volumes.plugins.module_utils._tar_read import TarFormatError, parse_number
from ansible_collections.holdfast.volumes.plugins.module_utils._verify import check_backup

ARCHIVE = 'v-20260101T000000Z.tar.zst'
MANIFEST = 'v-20260101T000000Z.manifest.json'
MANIFEST_MAX = 1024 * 1024  # _store.MANIFEST_MAX
GOOD = dict(format='holdfast.volumes/backup', volume='v', archive=ARCHIVE, sha256='0' * 64,
            created='2026-01-01T00:00:00Z')


@pytest.fixture
def folder(tmp_path):
    (tmp_path / ARCHIVE).write_bytes(b'x')
    signal.alarm(10)  # the old code blocked forever on a fifo
    yield tmp_path
    signal.alarm(0)


def plant(folder, how):
    path = folder / MANIFEST
    if how == 'symlink':
        os.symlink('/dev/zero', path)
    elif how == 'symlink-to-good':
        (folder / 'elsewhere.json').write_text(json.dumps(GOOD))
        os.symlink(folder / 'elsewhere.json', path)
    elif how == 'fifo':
        os.mkfifo(path)
    else:
        path.write_text(json.dumps(dict(GOOD, pad=' ' * MANIFEST_MAX)))


@pytest.mark.parametrize('how, error', [('symlink', 'symlink'), ('symlink-to-good', 'symlink'),
                                        ('fifo', 'not a regular file'), ('oversized', 'larger than')])
def test_planted_manifests_are_refused_fast_in_a_scan_and_beside_an_archive(folder, how, error):
    plant(folder, how)
    scan = list_backups(str(folder))
    assert scan['complete'] == [] and error in scan['bad_manifests'][0]['error']
    with pytest.raises(HoldfastError, match=error):
        locate(dict(archive=str(folder / ARCHIVE)))


def test_a_plain_manifest_still_reads(folder):
    (folder / MANIFEST).write_text(json.dumps(GOOD))
    assert list_backups(str(folder))['complete'][0]['manifest'] == GOOD
    assert locate(dict(archive=str(folder / ARCHIVE)))[1] == GOOD


@pytest.mark.parametrize('how', ['symlink', 'fifo'])
def test_archives_are_read_only_as_regular_files(folder, how):
    path = folder / 'planted.tar'
    if how == 'symlink':
        os.symlink('/dev/zero', path)
    else:
        os.mkfifo(path)
    with pytest.raises(HoldfastError, match='only a regular file'):
        open_archive(str(path))
    with open_archive(str(folder / ARCHIVE)) as handle:
        assert handle.read() == b'x'


def test_malformed_header_fields_are_named_not_echoed():
    with pytest.raises(TarFormatError) as info:
        parse_number(b'\x1b[31mevil\x00', 'checksum')
    assert 'checksum' in str(info.value) and 'evil' not in str(info.value)


def test_rotation_reports_a_symlinked_archive_as_broken(folder):
    os.symlink('/dev/zero', folder / 'zero.tar.zst')
    backup = dict(manifest=dict(GOOD), archive_path=str(folder / 'zero.tar.zst'))
    assert 'symlink' in check_backup(backup, 'sha256')
