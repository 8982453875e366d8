# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""LUKS, loop and mount primitives, and the parsers of their output (pure, unit-tested).

State is read without udev or lsblk: /proc/self/mountinfo, sysfs (/sys/block/loop*/loop/backing_file,
/sys/block/dm-*/dm/name) and `cryptsetup status` / `luksDump` with LC_ALL=C. Secrets reach cryptsetup through
pipes (`--key-file=/proc/self/fd/N`, which works without udev's /dev/fd), never on a command line and never in
a file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import stat
import subprocess

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._process import command_env, need

SIZE_RE = re.compile(r'^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(i?B?)?\s*$', re.I)
UNITS = {'': 1, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40, 'P': 1 << 50}
MIN_LUKS2_BYTES = 32 << 20
MIN_LUKS1_BYTES = 8 << 20
MANAGED_MARK = '# managed by holdfast.volumes luks_path'


def parse_size(value):
    """'512M', '10G', '1.5G', 1073741824 -> bytes (binary units)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = SIZE_RE.match(str(value))
    if not match:
        raise HoldfastError("size %r is not a size: use bytes or a number with K, M, G or T (e.g. 10G)." % value)
    number, unit = float(match.group(1)), match.group(2).upper()
    return int(number * UNITS[unit])


def _unescape(text):
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
        mounts.append(dict(mount_id=fields[0], parent_id=fields[1], major_minor=fields[2], root=_unescape(fields[3]),
                           mount_point=_unescape(fields[4]), options=fields[5], fstype=rfields[0],
                           source=_unescape(rfields[1]), super_options=rfields[2] if len(rfields) > 2 else ''))
    return mounts


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


CRYPT_UUID_RE = re.compile(r'^CRYPT-([A-Za-z0-9]+)-')


def _sysfs_read(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def crypt_layers(device_dir, depth=0):
    """The dm-crypt devices in a block device's stack (itself, then down through its slaves: LVM on LUKS, LUKS on
    RAID, ...), from sysfs alone. device_dir is the device's sysfs directory."""
    found = []
    match = CRYPT_UUID_RE.match(_sysfs_read(os.path.join(device_dir, 'dm', 'uuid')) or '')
    if match:
        found.append(dict(device=os.path.basename(device_dir), type=match.group(1),
                          mapper=_sysfs_read(os.path.join(device_dir, 'dm', 'name'))))
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


def parse_status(text):
    """`cryptsetup status NAME` -> dict(active, type, cipher, key_bits, device, loop, mode)."""
    out = dict(active=False)
    lines = text.splitlines()
    if lines and re.search(r' is active', lines[0]):
        out['active'] = True
    for line in lines[1:]:
        key, _sep, value = line.strip().partition(':')
        value = value.strip()
        key = key.strip().lower()
        if key == 'type':
            out['type'] = value.lower()
        elif key == 'cipher':
            out['cipher'] = value
        elif key == 'keysize':
            out['key_bits'] = int(value.split()[0])
        elif key == 'device':
            out['device'] = value
        elif key == 'loop':
            out['loop'] = value
        elif key == 'mode':
            out['mode'] = value
    return out


def parse_luks_dump(text):
    """`cryptsetup luksDump DEV` (LUKS1 or LUKS2) -> dict(type, cipher, key_bits, keyslots, pbkdf)."""
    out = dict(keyslots=[])
    version = re.search(r'^Version:\s*(\d+)', text, re.M)
    out['type'] = 'luks%s' % version.group(1) if version else None
    if out['type'] == 'luks1':
        name = re.search(r'^Cipher name:\s*(\S+)', text, re.M)
        mode = re.search(r'^Cipher mode:\s*(\S+)', text, re.M)
        bits = re.search(r'^MK bits:\s*(\d+)', text, re.M)
        out['cipher'] = '%s-%s' % (name.group(1), mode.group(1)) if name and mode else None
        out['key_bits'] = int(bits.group(1)) if bits else None
        out['keyslots'] = [int(n) for n in re.findall(r'^Key Slot (\d+): ENABLED', text, re.M)]
        out['pbkdf'] = 'pbkdf2'
        return out
    segments = text.split('Data segments:', 1)[1] if 'Data segments:' in text else ''
    cipher = re.search(r'^\s+cipher:\s*(\S+)', segments, re.M)
    out['cipher'] = cipher.group(1) if cipher else None
    keyslots = text.split('Keyslots:', 1)[1].split('Tokens:', 1)[0] if 'Keyslots:' in text else ''
    out['keyslots'] = [int(n) for n in re.findall(r'^\s{2}(\d+): luks2', keyslots, re.M)]
    bits = re.search(r'^\s+Key:\s*(\d+) bits', keyslots, re.M)
    out['key_bits'] = int(bits.group(1)) if bits else None
    pbkdf = re.search(r'^\s+PBKDF:\s*(\S+)', keyslots, re.M)
    out['pbkdf'] = pbkdf.group(1) if pbkdf else None
    return out


def crypttab_line(name, source, keyfile, options):
    return '%s %s %s %s %s' % (name, source, keyfile or 'none', ','.join(options), MANAGED_MARK)


def fstab_line(device, path, fstype, options):
    return '%s %s %s %s 0 2 %s' % (device, path.replace(' ', '\\040'), fstype, ','.join(options), MANAGED_MARK)


def replace_managed_line(text, key, line):
    """Pure: text of a table file with the managed line for `key` (first field) set to `line` (None: removed).
    Lines not written by us are never touched; an unmanaged line for the same key is an error."""
    out = []
    found = False
    for existing in text.splitlines():
        fields = existing.split()
        if fields and not existing.lstrip().startswith('#') and fields[0] == key:
            if MANAGED_MARK not in existing:
                raise HoldfastError("An entry for %s that holdfast.volumes did not write exists already: %r. Remove "
                                    "it or set persistent: false." % (key, existing))
            found = True
            if line is not None:
                out.append(line)
            continue
        out.append(existing)
    if not found and line is not None:
        out.append(line)
    return '\n'.join(out) + ('\n' if out else '')


# -- commands ---------------------------------------------------------------------------------------------------
def run(cmd, secrets=(), check=True, what=None):
    """Run a command; each secret (bytes) is given as a pipe, referenced in cmd as '/proc/self/fd/{fd0}', '{fd1}', ...

    Returns (rc, stdout, stderr). Secrets never appear in the command line or in error messages.
    """
    fds = []
    try:
        for secret in secrets:
            read_fd, write_fd = os.pipe()
            os.write(write_fd, secret)
            os.close(write_fd)
            fds.append(read_fd)
        argv = [a.format(**dict(('fd%d' % i, fd) for i, fd in enumerate(fds))) if '{fd' in a else a for a in cmd]
        proc = subprocess.run(argv, capture_output=True, env=command_env(), pass_fds=fds, check=False)
    finally:
        for fd in fds:
            os.close(fd)
    out = proc.stdout.decode('utf-8', 'replace')
    err = proc.stderr.decode('utf-8', 'replace')
    if check and proc.returncode != 0:
        raise HoldfastError("%s failed (exit %d): %s" % (what or os.path.basename(cmd[0]), proc.returncode,
                                                         (err or out).strip()[-600:]))
    return proc.returncode, out, err


def read_mounts():
    with open('/proc/self/mountinfo') as handle:
        return parse_mountinfo(handle.read())


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
        try:
            with open('/sys/block/%s/loop/backing_file' % name) as handle:
                backing = handle.read().strip()
        except OSError:
            continue
        if backing.endswith(' (deleted)'):
            continue
        if os.path.realpath(backing) == real:
            return '/dev/' + name
    return None


def block_size_bytes(device):
    """Size of a block device from sysfs (512-byte sectors)."""
    name = os.path.basename(os.path.realpath(device))
    try:
        with open('/sys/class/block/%s/size' % name) as handle:
            return int(handle.read().strip()) * 512
    except (OSError, ValueError):
        _rc, out, _err = run([need('blockdev', 'util-linux'), '--getsize64', device], what='blockdev')
        return int(out.strip())


def dm_device(name):
    """The kernel name (dm-N) of the active device-mapper device NAME, from sysfs (no udev needed); else None."""
    try:
        for dm in os.listdir('/sys/class/block'):
            if dm.startswith('dm-'):
                with open('/sys/class/block/%s/dm/name' % dm) as handle:
                    if handle.read().strip() == name:
                        return dm
    except OSError:
        pass
    return None


def mapper_active(name):
    """True when /dev/mapper/NAME is an active device-mapper device."""
    return dm_device(name) is not None
