# -*- coding: utf-8 -*-
"""A spy in front of the system tools that change a host (cryptsetup, losetup, mount, mkfs, ...): each call is
logged, then the real tool runs. Check mode may only call their read-only forms."""

from __future__ import annotations

import os
import shlex

SPIED = ['cryptsetup', 'losetup', 'mount', 'umount', 'mkfs.ext4', 'mkfs.xfs', 'wipefs', 'resize2fs', 'xfs_growfs',
         'dmsetup', 'blkid']
READ_ONLY = [('cryptsetup', 'luksDump'), ('cryptsetup', 'open --test-passphrase'), ('cryptsetup', 'status'),
             ('blkid', '')]


def wrapper(tool, real, log):
    return '#!/bin/sh\necho "%s $*" >> %s\nexec %s "$@"\n' % (tool, log, real)


def install_local(directory, log, resolve):
    os.makedirs(directory, exist_ok=True)
    for tool in SPIED:
        real = resolve(tool)
        if real:
            path = os.path.join(directory, tool)
            with open(path, 'w') as handle:
                handle.write(wrapper(tool, real, log))
            os.chmod(path, 0o755)


def install_vm(vm, directory, log):
    """The same wrappers on a VM guest (over ssh), in front of the guest's own tools."""
    _rc, out = vm.ssh('for t in %s; do echo "$t $(PATH=/usr/sbin:/usr/bin:/sbin:/bin command -v $t)"; done'
                      % ' '.join(SPIED))
    script = ['mkdir -p %s && rm -f %s' % (shlex.quote(directory), shlex.quote(log))]
    for line in out.splitlines():
        tool, _sep, real = line.partition(' ')
        if real.strip():
            path = '%s/%s' % (directory, tool)
            script.append("cat > %s <<'HOLDFAST_SPY'\n%sHOLDFAST_SPY\nchmod 755 %s" % (
                path, wrapper(tool, real.strip(), log), path))
    vm.ssh('\n'.join(script))


def forbidden(calls):
    """The logged calls that are not read-only."""
    bad = []
    for line in calls:
        tool, _sep, args = line.partition(' ')
        if not any(tool == t and args.startswith(prefix) for t, prefix in READ_ONLY):
            bad.append(line)
    return bad
