# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the kernel says about mounts and block devices, without udev or lsblk: /proc/self/mountinfo (parsed by a
pure, unit-tested function), sysfs (/sys/block/loop*/loop/backing_file, /sys/class/block/*/size,
/sys/block/dm-*/dm/name and dm/uuid, slaves) and whether a path's data is encrypted at rest.

Read-only, and nothing here runs a command.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import stat

CRYPT_UUID_RE = re.compile(r'^CRYPT-([A-Za-z0-9]+)-')


def unescape(text):
    """mountinfo's octal escapes (\\040 for a space) -> the characters."""
    return re.sub(r'\\([0-7]{3})', lambda m: chr(int(m.group(1), 8)), text)


def parse_mountinfo(text):
    """/proc/self/mountinfo -> list of dict(mount_point, source, fstype, options, major_minor, root)."""
    mounts = []
    for line in text.splitlines():
        if not line.strip():
            continue
        left, _sep, right = line.partition(' - ')
        fields = left.split()
        rfields = right.split()
        if len(fields) < 6 or len(rfields) < 2:
            continue
        mounts.append(dict(mount_id=fields[0], parent_id=fields[1], major_minor=fields[2], root=unescape(fields[3]),
                           mount_point=unescape(fields[4]), options=fields[5], fstype=rfields[0],
                           source=unescape(rfields[1]), super_options=rfields[2] if len(rfields) > 2 else ''))
    return mounts


def read_mounts():
    with open('/proc/self/mountinfo') as handle:
        return parse_mountinfo(handle.read())


def mount_at(mounts, path):
    """The topmost mount whose mount point is exactly path, or None."""
    found = None
    for mount in mounts:
        if mount['mount_point'] == path:
            found = mount
    return found


def mount_containing(mounts, path):
    """The mount that holds path: the longest mount point that is path or one of its parents (of equal ones, the
    last mounted, which hides the others)."""
    best = None
    for mount in mounts:
        point = mount['mount_point']
        if path == point or point == '/' or path.startswith(point.rstrip('/') + '/'):
            if best is None or len(point) >= len(best['mount_point']):
                best = mount
    return best


def sysfs_read(path):
    """The stripped text of a sysfs (or any) file; None when it cannot be read."""
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def crypt_layers(device_dir, depth=0):
    """The dm-crypt devices in a block device's stack (itself, then down through its slaves: LVM on LUKS, LUKS on
    RAID, ...), from sysfs alone. device_dir is the device's sysfs directory."""
    found = []
    match = CRYPT_UUID_RE.match(sysfs_read(os.path.join(device_dir, 'dm', 'uuid')) or '')
    if match:
        found.append(dict(device=os.path.basename(device_dir), type=match.group(1),
                          mapper=sysfs_read(os.path.join(device_dir, 'dm', 'name'))))
    slaves = os.path.join(device_dir, 'slaves')
    if depth < 8 and os.path.isdir(slaves):
        for slave in sorted(os.listdir(slaves)):
            found.extend(crypt_layers(os.path.realpath(os.path.join(slaves, slave)), depth + 1))
    return found


def at_rest(path=None, device=None, mounts=None, sysfs='/sys'):
    """Whether the data at a host path (or on a block device) is encrypted at rest: dict(encrypted, source,
    layers) where layers are the dm-crypt devices under it; None when it cannot be told."""
    if device:
        try:
            info = os.stat(device)
        except OSError:
            return None
        if not stat.S_ISBLK(info.st_mode):
            return None
        major_minor, source = '%d:%d' % (os.major(info.st_rdev), os.minor(info.st_rdev)), device
    else:
        mount = mount_containing(mounts or [], os.path.realpath(path))
        if mount is None:
            return None
        major_minor, source = mount['major_minor'], mount['source']
    base = os.path.join(sysfs, 'dev', 'block', major_minor)
    layers = crypt_layers(os.path.realpath(base)) if os.path.exists(base) else []
    return dict(encrypted=bool(layers), source=source, layers=layers)


def loop_for_file(path):
    """The loop device (e.g. /dev/loop3) attached to a file, found through sysfs; None if none."""
    real = os.path.realpath(path)
    try:
        names = os.listdir('/sys/block')
    except OSError:
        return None
    for name in sorted(names):
        if not name.startswith('loop'):
            continue
        backing = sysfs_read('/sys/block/%s/loop/backing_file' % name)
        if backing is None or backing.endswith(' (deleted)'):
            continue
        if os.path.realpath(backing) == real:
            return '/dev/' + name
    return None


def sysfs_size_bytes(device):
    """Size of a block device from sysfs (512-byte sectors); None when sysfs does not tell."""
    name = os.path.basename(os.path.realpath(device))
    try:
        return int(sysfs_read('/sys/class/block/%s/size' % name)) * 512
    except (TypeError, ValueError):
        return None


def dm_device(name):
    """The kernel name (dm-N) of the active device-mapper device NAME, from sysfs (no udev needed); else None."""
    try:
        for dm in os.listdir('/sys/class/block'):
            if dm.startswith('dm-') and sysfs_read('/sys/class/block/%s/dm/name' % dm) == name:
                return dm
    except OSError:
        pass
    return None
