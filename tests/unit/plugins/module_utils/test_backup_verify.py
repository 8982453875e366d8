# -*- coding: utf-8 -*-
"""The read-back verification of volume_backup: what is read back from storage must equal what was written."""

from __future__ import annotations

import hashlib
import os

import pytest

from ansible_collections.holdfast.volumes.plugins.module_utils._archive_write import ArchiveOutput, write_archive
from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._verify import ReadBackVerifier


class SmallWindow(ReadBackVerifier):
    WINDOW = 64 * 1024


def test_read_back_matches_in_windows(tmp_path):
    path = str(tmp_path / 'archive')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    verifier = SmallWindow(path, fd)
    data = os.urandom(1_000_000)
    for i in range(0, len(data), 50_000):
        os.write(fd, data[i:i + 50_000])
        verifier.wrote(len(data[i:i + 50_000]))
    assert verifier.finish() == hashlib.sha256(data).hexdigest()
    os.close(fd)


def test_read_back_sees_a_change_on_storage(tmp_path):
    path = str(tmp_path / 'archive')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    verifier = SmallWindow(path, fd)
    data = os.urandom(10_000)  # below one window: read back only at finish()
    os.write(fd, data)
    verifier.wrote(len(data))
    with open(path, 'r+b') as other:  # the storage returns something else than was written
        other.write(b'X')
    assert verifier.finish() != hashlib.sha256(data).hexdigest()
    os.close(fd)


def test_write_archive_verifies_and_reports(tmp_path):
    source = tmp_path / 'source.tar'
    source.write_bytes(os.urandom(300_000))
    out = str(tmp_path / 'out')
    stats = write_archive(['cat', str(source)], None, out, ArchiveOutput('none', verify=True))
    assert stats['verified'] and stats['sha256'] == hashlib.sha256(source.read_bytes()).hexdigest()
    with pytest.raises(HoldfastError, match='exited'):
        write_archive(['false'], None, str(tmp_path / 'out2'), ArchiveOutput('none', verify=True))
