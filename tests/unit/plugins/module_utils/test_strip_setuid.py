# -*- coding: utf-8 -*-
"""strip_setuid removes file capabilities too: an archive built byte by byte carries a security.capability of
cap_setuid+ep (what `setcap cap_setuid+ep` writes), GNU tar restores it with the restore's own options, and
strip_setuid_at must leave no capability behind."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest

from ansible_collections.holdfast.volumes.plugins.module_utils._restore_read import TAR_EXTRACT
from ansible_collections.holdfast.volumes.plugins.module_utils._restore_swap import strip_setuid_at
from ansible_collections.holdfast.volumes.plugins.module_utils._tar_gate import pax_record, ustar_header

# struct vfs_cap_data, revision 2, effective; permitted = CAP_SETUID (7), as `setcap cap_setuid+ep` writes it
CAP_SETUID_EP = bytes.fromhex('0100000280000000000000000000000000000000')


def member(name, data, mode, records=()):
    out = b''
    if records:
        body = b''.join(pax_record(k, v) for k, v in records)
        out += ustar_header(b'./@PaxHeader', b'x', size=len(body)) + body + b'\0' * (-len(body) % 512)
    return out + ustar_header(name, b'0', mode=mode, size=len(data)) + data + b'\0' * (-len(data) % 512)


def test_strip_setuid_removes_file_capabilities(tmp_path):
    cap = [(b'SCHILY.xattr.security.capability', CAP_SETUID_EP)]
    archive = (ustar_header(b'./', b'5', mode=0o755) + member(b'./capshell', b'#!/bin/sh\n', 0o755, cap)
               + member(b'./suid', b'x', 0o4755, cap) + member(b'./plain', b'x', 0o644) + b'\0' * 1024)
    root = tmp_path / 'staging'
    root.mkdir()
    subprocess.run(TAR_EXTRACT + ['-C', str(root)], input=archive, check=True)
    assert os.getxattr(root / 'capshell', 'security.capability') == CAP_SETUID_EP  # tar restored it
    assert b'cap_setuid=ep' in subprocess.run(['getcap', str(root / 'capshell')], capture_output=True,
                                              check=True).stdout
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert strip_setuid_at(fd) == (1, 2)
    finally:
        os.close(fd)
    for name in ('capshell', 'suid', 'plain'):
        with pytest.raises(OSError) as info:
            os.getxattr(root / name, 'security.capability')
        assert info.value.errno == errno.ENODATA
    assert os.stat(root / 'suid').st_mode & 0o7777 == 0o755
