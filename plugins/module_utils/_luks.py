# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""LUKS: sizes, the parsers of `cryptsetup status` / `luksDump` output (pure, unit-tested), keys, and the commands
that read a container (luksDump, key tests, blkid).

cryptsetup runs with LC_ALL=C. Secrets reach it through pipes (`--key-file=/proc/self/fd/N`, which works without
udev's /dev/fd), never on a command line and never in a file. Mounts and sysfs are in _host_info, the host tables
(crypttab, fstab, drop-ins) in _host_tables.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import subprocess

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._host_info import sysfs_size_bytes
from ansible_collections.holdfast.volumes.plugins.module_utils._process import command_env, need

SIZE_RE = re.compile(r'^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(i?B?)?\s*$', re.I)
UNITS = {'': 1, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40, 'P': 1 << 50}
MIN_LUKS2_BYTES = 32 << 20
MIN_LUKS1_BYTES = 8 << 20


def parse_size(value):
    """'512M', '10G', '1.5G', 1073741824 -> bytes (binary units)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = SIZE_RE.match(str(value))
    if not match:
        raise HoldfastError("size %r is not a size: use bytes or a number with K, M, G or T (e.g. 10G)." % value)
    number, unit = float(match.group(1)), match.group(2).upper()
    return int(number * UNITS[unit])


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


def block_size_bytes(device):
    """Size of a block device: sysfs, else blockdev."""
    size = sysfs_size_bytes(device)
    if size is None:
        _rc, out, _err = run([need('blockdev', 'util-linux'), '--getsize64', device], what='blockdev')
        size = int(out.strip())
    return size


def cryptsetup():
    """The cryptsetup executable (a clear error naming the package when it is missing)."""
    return need('cryptsetup', 'cryptsetup-bin')


def luks_dump(source):
    """The parsed luksDump of source; None when it is not LUKS."""
    rc, out, _err = run([cryptsetup(), 'luksDump', source], check=False)
    return parse_luks_dump(out) if rc == 0 else None


def holds_data(source):
    """A filesystem or other signature on the backing store, or any non-zero byte in its first MiB; else None."""
    rc, out, _err = run([need('blkid', 'util-linux'), '-p', '-o', 'export', source], check=False)
    if rc == 0 and 'TYPE=' in out:
        return out.strip().replace('\n', ' ')
    with open(source, 'rb') as handle:
        head = handle.read(1 << 20)
    if head.strip(b'\0'):
        return 'non-zero data in the first MiB'
    return None


def probe_filesystem(device):
    """(filesystem type or None, blank) of an open device."""
    _rc, out, _err = run([need('blkid', 'util-linux'), '-p', '-o', 'value', '-s', 'TYPE', device], check=False)
    fs = out.strip() or None
    if fs:
        return fs, False
    with open(device, 'rb') as handle:
        head = handle.read(1 << 20)
    return None, not head.strip(b'\0')


class Key(object):
    """A key: a keyfile path, or a passphrase given through a pipe. repr() never shows the secret."""

    def __init__(self, keyfile=None, passphrase=None, label='key'):
        self.keyfile = keyfile
        self.passphrase = passphrase
        self.label = label

    def __bool__(self):
        return bool(self.keyfile or self.passphrase)

    __nonzero__ = __bool__

    def __repr__(self):
        return '<Key %s>' % self.label

    def args(self, option='--key-file', index=0):
        if self.keyfile:
            return [option, self.keyfile], []
        return [option, '/proc/self/fd/{fd%d}' % index], [self.passphrase.encode('utf-8')]

    def same(self, other):
        return bool(other) and self.keyfile == other.keyfile and self.passphrase == other.passphrase


class KeyTester(object):
    """Whether a key unlocks the container, each key tested once per run (a failing test costs one key
    derivation per key slot: seconds on small hosts). forget() after any step that changes the key slots."""

    def __init__(self, source):
        self.source = source
        self.known = {}

    def unlocks(self, key):
        if not key:
            return False
        ident = (key.keyfile, key.passphrase)
        if ident not in self.known:
            args, secrets = key.args()
            rc, _out, _err = run([cryptsetup(), 'open', '--test-passphrase'] + args
                                 + [self.source], secrets=secrets, check=False)
            self.known[ident] = rc == 0
        return self.known[ident]

    def forget(self):
        self.known = {}
