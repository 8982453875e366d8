# -*- coding: utf-8 -*-
"""Make rich test trees and compare trees byte for byte, with owners, modes, links, xattrs and times."""

from __future__ import annotations

import hashlib
import os
import stat


def populate(root, seed=0):
    """A tree with what a backup must preserve: owners, modes, symlinks (also dangling and absolute),
    hard links, xattrs, an empty directory, a sparse file, hidden files, odd names."""
    os.makedirs(root, exist_ok=True)
    os.makedirs(os.path.join(root, 'pgdata', 'base'), exist_ok=True)
    os.makedirs(os.path.join(root, 'empty-dir'), exist_ok=True)
    with open(os.path.join(root, 'pgdata', 'base', 'table'), 'wb') as handle:
        handle.write(os.urandom(200_000) + b'x' * 100_000)
    with open(os.path.join(root, '.hidden'), 'w') as handle:
        handle.write('hidden %d\n' % seed)
    with open(os.path.join(root, 'name with spaces\tand tab'), 'w') as handle:
        handle.write('odd')
    os.chown(os.path.join(root, 'pgdata'), 999, 999)
    os.chown(os.path.join(root, 'pgdata', 'base', 'table'), 999, 998)
    os.chmod(os.path.join(root, 'pgdata'), 0o700)
    os.chmod(os.path.join(root, 'pgdata', 'base', 'table'), 0o600)
    os.chmod(os.path.join(root, 'empty-dir'), 0o1777)
    os.symlink('/wal/pg_wal', os.path.join(root, 'pg_wal'))            # absolute, dangling: data
    os.symlink('pgdata/base/table', os.path.join(root, 'table-link'))  # relative
    os.link(os.path.join(root, '.hidden'), os.path.join(root, 'hardlink-to-hidden'))
    with open(os.path.join(root, 'sparse'), 'wb') as handle:
        handle.seek(50 * 1024 * 1024)
        handle.write(b'end')
    os.setxattr(os.path.join(root, '.hidden'), 'user.holdfast', b'kept')
    # a POSIX ACL (stored as the system.posix_acl_access xattr)
    import subprocess
    subprocess.run(['setfacl', '-m', 'u:1234:r', os.path.join(root, 'pgdata', 'base', 'table')], check=True)
    os.utime(os.path.join(root, 'pgdata', 'base', 'table'), ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))


def snapshot(root):
    """path -> description of everything a restore must reproduce."""
    out = {}
    inode_groups = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        entries = [(dirpath, '')] if dirpath == root else []
        entries += [(dirpath, n) for n in sorted(dirnames + filenames)]
        for base, name in entries:
            full = os.path.join(base, name) if name else base
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            item = dict(mode=stat.S_IMODE(st.st_mode), type=stat.S_IFMT(st.st_mode), uid=st.st_uid, gid=st.st_gid)
            if stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256()
                with open(full, 'rb') as handle:
                    for block in iter(lambda: handle.read(1 << 20), b''):
                        digest.update(block)
                item.update(size=st.st_size, sha256=digest.hexdigest(), mtime_ns=st.st_mtime_ns // 10**9)
                inode_groups.setdefault(st.st_ino, []).append(rel)
                try:
                    item['xattrs'] = dict((k, os.getxattr(full, k)) for k in sorted(os.listxattr(full))
                                          if k.startswith('user.') or k == 'system.posix_acl_access')
                except OSError:
                    item['xattrs'] = {}
            elif stat.S_ISLNK(st.st_mode):
                item['target'] = os.readlink(full)
            elif stat.S_ISDIR(st.st_mode):
                item['mtime_ns'] = st.st_mtime_ns // 10**9 if rel != '.' else None
            out[rel] = item
    links = sorted(sorted(g) for g in inode_groups.values() if len(g) > 1)
    return out, links


def disk_usage(path):
    return os.lstat(path).st_blocks * 512


def one_file_archive(tmp_path):
    """A plain tar (no manifest: a foreign archive) of a folder holding one file f: the smallest thing to restore."""
    import tarfile
    content = tmp_path / 'content'
    content.mkdir()
    (content / 'f').write_text('data\n')
    archive = tmp_path / 'foreign.tar'
    with tarfile.open(str(archive), 'w') as tar:
        tar.add(str(content), arcname='.')
    return archive
