# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The archive's members: what a restore accepts (MemberChecker, in archive order), the kind of a tar member, and
the layers (age, zstd, gzip, plain tar) of an archive from its first bytes. Pure; the tar gate (_tar_gate) parses
the stream and asks MemberChecker about each member."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import posixpath

ZSTD_MAGIC = b'\x28\xb5\x2f\xfd'
GZIP_MAGIC = b'\x1f\x8b'
AGE_MAGIC = b'age-encryption.org/v1'
PATH_MAX = 4096  # longer names cannot be created on Linux; checking them would cost quadratic time


def detect_layers(head):
    """Pure: the layers of an archive from its first bytes: (encrypted, compression)."""
    if head.startswith(AGE_MAGIC):
        return True, None  # compression is known only after decryption
    if head.startswith(ZSTD_MAGIC):
        return False, 'zstd'
    if head.startswith(GZIP_MAGIC):
        return False, 'gzip'
    if len(head) >= 262 and head[257:262] == b'ustar':
        return False, 'none'
    if len(head) >= 512 and head[:512].strip(b'\0') == b'':
        return False, 'none'  # an empty tar (only end-of-archive blocks)
    return False, 'unknown'


class MemberChecker(object):
    """Checks tar members one by one, in archive order, against the restore safety rules.

    Refuses: absolute names, `..` components, members whose path goes through a symlink the archive created,
    hard links whose target is not an earlier regular member, a path that changes type (e.g. a directory later
    replaced by a symlink), device nodes and fifos unless allowed. Symlinks themselves are data and are kept
    whatever they point to.
    """

    def __init__(self, allow_special=False, refuse_escaping_links=False):
        self.allow_special = allow_special
        self.refuse_escaping_links = refuse_escaping_links
        self.kinds = {}
        self.symlinks = set()
        self.refused = []
        self.count = 0
        self.has_root = False

    @staticmethod
    def normalise(name):
        if name.startswith('/'):
            return None
        parts = [p for p in name.split('/') if p not in ('', '.')]
        if any(p == '..' for p in parts):
            return None
        return '/'.join(parts)

    def check(self, name, kind, linkname=None):
        """kind: file, dir, symlink, hardlink, char, block, fifo, other. Returns the normalised path or None."""
        self.count += 1
        if len(name) > PATH_MAX or len(linkname or '') > PATH_MAX:
            return self._refuse(name[:200], 'a name or link longer than %d characters' % PATH_MAX)
        if name.startswith('/') or name.startswith('\\'):
            return self._refuse(name, 'absolute path')
        path = self.normalise(name)
        if path is None:
            return self._refuse(name, 'path with a .. component')
        if path == '':
            if kind != 'dir':
                return self._refuse(name, 'the root of the archive must be a directory')
            self.has_root = True
            return path
        parts = path.split('/')
        for i in range(1, len(parts)):
            if '/'.join(parts[:i]) in self.symlinks:
                return self._refuse(name, 'goes through the symlink %s' % '/'.join(parts[:i]))
            ancestor = '/'.join(parts[:i])
            if self.kinds.get(ancestor, 'dir') != 'dir':
                return self._refuse(name, 'goes through the %s %s' % (self.kinds[ancestor], ancestor))
        previous = self.kinds.get(path)
        if previous is not None and previous != kind and not (previous == 'file' and kind == 'hardlink'):
            return self._refuse(name, 'changes an earlier %s into a %s' % (previous, kind))
        if kind in ('char', 'block', 'fifo') and not self.allow_special:
            return self._refuse(name, '%s device or fifo (set allow_special_files to restore it)' % kind)
        if kind == 'other':
            return self._refuse(name, 'unsupported member type')
        if kind == 'hardlink':
            target = self.normalise(linkname or '')
            if not target or self.kinds.get(target) != 'file':
                return self._refuse(name, 'hard link to %r, which is not an earlier regular file of the archive'
                                    % linkname)
        if kind == 'symlink':
            if self.refuse_escaping_links:
                target = linkname or ''
                resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
                if target.startswith('/') or resolved == '..' or resolved.startswith('../'):
                    return self._refuse(name, 'symlink to %r points outside the volume' % target)
            self.symlinks.add(path)
        self.kinds[path] = kind
        return path

    def _refuse(self, name, why):
        self.refused.append(dict(member=name, reason=why))
        return None
