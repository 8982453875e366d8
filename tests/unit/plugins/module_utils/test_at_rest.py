# -*- coding: utf-8 -*-
"""Encrypted at rest, from mountinfo and a sysfs tree laid out as the kernel does (real files, fake root)."""
from __future__ import annotations

import os

from ansible_collections.holdfast.volumes.plugins.module_utils._host_info import (
    at_rest,
    mount_containing,
    parse_mountinfo,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._volume_inventory import volume_at_rest

MOUNTINFO = """\
21 1 254:1 / / rw,relatime - ext4 /dev/mapper/vg-root rw
30 21 8:1 / /boot rw,relatime - ext4 /dev/sda1 rw
40 21 254:3 / /srv/enc/db rw,relatime - ext4 /dev/mapper/holdfast-srv-enc-db rw
41 21 0:50 / /srv/enc/db rw,relatime - tmpfs tmpfs rw
42 21 254:3 / /srv/enc/db2 rw,relatime - ext4 /dev/mapper/holdfast-srv-enc-db rw
"""


def block(sysfs, name, major_minor, uuid=None, mapper=None, slaves=()):
    device = sysfs / 'devices' / 'virtual' / 'block' / name
    (device / 'slaves').mkdir(parents=True)
    if uuid:
        (device / 'dm').mkdir()
        (device / 'dm' / 'uuid').write_text(uuid + '\n')
        (device / 'dm' / 'name').write_text(mapper + '\n')
    for slave in slaves:
        os.symlink('../../%s' % slave, device / 'slaves' / slave)
    links = sysfs / 'dev' / 'block'
    links.mkdir(parents=True, exist_ok=True)
    os.symlink(device, links / major_minor)


def sysfs_tree(tmp_path):
    sysfs = tmp_path / 'sys'
    block(sysfs, 'dm-0', '254:0', 'CRYPT-LUKS2-0123abcd-luks-root', 'luks-root')   # LUKS under LVM
    block(sysfs, 'dm-1', '254:1', 'LVM-abc', 'vg-root', slaves=['dm-0'])
    block(sysfs, 'dm-3', '254:3', 'CRYPT-LUKS2-4567-holdfast-srv-enc-db', 'holdfast-srv-enc-db')
    block(sysfs, 'sda1', '8:1')
    return str(sysfs)


def test_mount_containing_takes_the_longest_and_the_last_mounted():
    mounts = parse_mountinfo(MOUNTINFO)
    assert mount_containing(mounts, '/var/lib/docker/volumes/x/_data')['source'] == '/dev/mapper/vg-root'
    assert mount_containing(mounts, '/boot/grub')['source'] == '/dev/sda1'
    assert mount_containing(mounts, '/srv/enc/db')['fstype'] == 'tmpfs'  # mounted over the LUKS one
    assert mount_containing(mounts, '/srv/enc/db2/base')['source'] == '/dev/mapper/holdfast-srv-enc-db'
    assert mount_containing(mounts, '/srv/enc/db20')['source'] == '/dev/mapper/vg-root'  # not a parent


def test_luks_directly_and_under_lvm_and_plain_disks(tmp_path):
    sysfs = sysfs_tree(tmp_path)
    mounts = parse_mountinfo(MOUNTINFO)
    direct = at_rest(path='/srv/enc/db2/x', mounts=mounts, sysfs=sysfs)
    assert direct == dict(encrypted=True, source='/dev/mapper/holdfast-srv-enc-db',
                          layers=[dict(device='dm-3', type='LUKS2', mapper='holdfast-srv-enc-db')])
    stacked = at_rest(path='/var/lib/docker/volumes/v/_data', mounts=mounts, sysfs=sysfs)
    assert stacked['encrypted'] and stacked['layers'] == [dict(device='dm-0', type='LUKS2', mapper='luks-root')]
    assert at_rest(path='/boot', mounts=mounts, sysfs=sysfs) == dict(encrypted=False, source='/dev/sda1', layers=[])
    # tmpfs has no block device: not encrypted on any disk (and nothing is at rest)
    assert at_rest(path='/srv/enc/db', mounts=mounts, sysfs=sysfs)['encrypted'] is False


def test_volume_at_rest_follows_where_the_data_lies(tmp_path):
    sysfs = sysfs_tree(tmp_path)
    mounts = parse_mountinfo(MOUNTINFO)
    bound = {'Name': 'db', 'Driver': 'local', 'Mountpoint': '/var/lib/docker/volumes/db/_data',
             'Options': {'type': 'none', 'o': 'bind', 'device': '/srv/enc/db2'}}
    assert volume_at_rest(bound, mounts, sysfs=sysfs)['source'] == '/dev/mapper/holdfast-srv-enc-db'
    plain = {'Name': 'p', 'Driver': 'local', 'Mountpoint': '/var/lib/docker/volumes/p/_data', 'Options': None}
    assert volume_at_rest(plain, mounts, sysfs=sysfs)['source'] == '/dev/mapper/vg-root'
    assert volume_at_rest({'Name': 'n', 'Driver': 'rexray', 'Options': {}}, mounts, sysfs=sysfs) is None
    assert volume_at_rest({'Name': 't', 'Driver': 'local', 'Options': {'type': 'tmpfs', 'device': 'tmpfs'}},
                          mounts, sysfs=sysfs) is None
