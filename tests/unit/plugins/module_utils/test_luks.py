# -*- coding: utf-8 -*-
"""Parsers of cryptsetup and mountinfo output, on real output captured in the VM tier's guest."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._host_info import mount_at, parse_mountinfo
from ansible_collections.holdfast.volumes.plugins.module_utils._host_tables import (
    MANAGED_MARK,
    crypttab_line,
    fstab_line,
    replace_managed_line,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._luks import parse_luks_dump, parse_size, parse_status

FIXTURES = Path(__file__).resolve().parents[2] / 'fixtures'


def test_luks2_dump():
    dump = parse_luks_dump((FIXTURES / 'luksdump-luks2.txt').read_text())
    assert dump == dict(type='luks2', cipher='aes-xts-plain64', key_bits=512, keyslots=[0, 1], pbkdf='argon2id')


def test_luks1_dump():
    dump = parse_luks_dump((FIXTURES / 'luksdump-luks1.txt').read_text())
    assert dump == dict(type='luks1', cipher='aes-xts-plain64', key_bits=512, keyslots=[0], pbkdf='pbkdf2')


def test_status():
    status = parse_status((FIXTURES / 'status-luks2.txt').read_text())
    assert status['active'] and status['type'] == 'luks2' and status['cipher'] == 'aes-xts-plain64'
    assert status['key_bits'] == 512 and status['loop'] == '/root/a.img' and status['device'].startswith('/dev/loop')
    assert parse_status('/dev/mapper/x is inactive.\n') == dict(active=False)


def test_mountinfo_with_escapes():
    mounts = parse_mountinfo((FIXTURES / 'mountinfo.txt').read_text())
    spaced = mount_at(mounts, '/mnt/with space')
    assert spaced and spaced['fstype'] == 'tmpfs' and spaced['source'] == 'tmpfs'
    root = mount_at(mounts, '/')
    assert root and root['source'] == '/dev/vda' and root['fstype'] == 'ext4'
    assert mount_at(mounts, '/nonexistent') is None
    stacked = parse_mountinfo('1 0 8:1 / /m rw - ext4 /dev/a rw\n2 1 0:5 / /m rw - tmpfs tmpfs rw\n')
    assert mount_at(stacked, '/m')['fstype'] == 'tmpfs'  # the topmost mount wins


@pytest.mark.parametrize('text, expected', [('512M', 512 << 20), ('10G', 10 << 30), ('1.5G', 3 << 29),
                                            ('1048576', 1 << 20), (4096, 4096), ('2GiB', 2 << 30)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


def test_parse_size_error():
    with pytest.raises(HoldfastError):
        parse_size('big')


def test_managed_lines():
    line = crypttab_line('db', '/srv/db.img', '/etc/keys/db', ['luks', 'nofail'])
    assert line.startswith('db /srv/db.img /etc/keys/db luks,nofail') and MANAGED_MARK in line
    assert crypttab_line('db', '/dev/sdb', None, ['luks'])[:len('db /dev/sdb none luks')] == 'db /dev/sdb none luks'
    assert '\\040' in fstab_line('/dev/mapper/db', '/srv/with space', 'ext4', ['nofail'])
    original = '# comment\nswap /dev/sda2 /dev/urandom swap\n'
    added = replace_managed_line(original, 'db', line)
    assert added == original + line + '\n'
    assert replace_managed_line(added, 'db', line) == added  # idempotent
    assert replace_managed_line(added, 'db', None) == original
    with pytest.raises(HoldfastError, match='did not write'):
        replace_managed_line(original, 'swap', crypttab_line('swap', '/dev/x', None, ['luks']))


def test_integer_mode_is_refused_before_any_step(tmp_path):
    """mode: 700 (an integer) was applied as 01274; luks_path refuses it before creating anything."""
    from ansible_collections.holdfast.volumes.plugins.module_utils._luks_path import run_luks_path
    key = tmp_path / 'key'
    key.write_bytes(b'k' * 64)
    key.chmod(0o600)
    params = dict(path=str(tmp_path / 'mnt'), backing_file=str(tmp_path / 'luks.img'), size='32M', keyfile=str(key),
                  state='mounted', mode=700)
    with pytest.raises(HoldfastError, match='mode: "0700"'):
        run_luks_path(params)
    assert not (tmp_path / 'luks.img').exists() and not (tmp_path / 'mnt').exists()
