# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host's tables that bring an encrypted path back after a reboot: /etc/crypttab, /etc/fstab and the systemd
drop-in that orders docker.service after the mount.

Only lines marked as ours (MANAGED_MARK) are ever changed; an unmanaged line for the same key is an error. The line
builders and replace_managed_line are pure; read_table and write_table are the only I/O (temp file, fsync, rename,
the file's mode kept).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._store import write_atomic

CRYPTTAB = '/etc/crypttab'
FSTAB = '/etc/fstab'
DROPIN_DIR = '/etc/systemd/system/docker.service.d'
MANAGED_MARK = '# managed by holdfast.volumes luks_path'


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


def dropin_path(name):
    """The systemd drop-in that orders docker.service after the mount of mapping NAME."""
    return os.path.join(DROPIN_DIR, '%s.conf' % (name if name.startswith('holdfast-') else 'holdfast-' + name))


def dropin_content(path):
    """Pure: the drop-in's text for a mount point."""
    return '[Unit]\n%s\nRequiresMountsFor=%s\n' % (MANAGED_MARK, path)


def read_table(path):
    """The text of a table file; None when it does not exist."""
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_table(path, text):
    """Replace a table file whole (temp file, fsync, rename), keeping its mode (0644 for a new file)."""
    mode = stat.S_IMODE(os.stat(path).st_mode) if os.path.exists(path) else 0o644
    write_atomic(path, text, mode, what=os.path.basename(path))


def write_dropin(path, text):
    """Write the drop-in (its directory created when missing), with the one temp-file-and-rename writer."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_atomic(path, text, 0o644, what='dropin')
