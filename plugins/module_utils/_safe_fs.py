# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filesystem work that another user cannot redirect: everything relative to open directory descriptors.

A module runs as root; the directories it works in (the parent of a restore target, a volume's root owned by a
container's user, a backup store) may be writable by someone else. Such a user can rename an entry and put a
symlink in its place between two system calls. So: directories are opened component by component without
following symlinks, new entries are made and renamed relative to those descriptors (mkdirat, renameat, unlinkat),
ownership and modes are set through descriptors (fchown, fchmod), and a child process such as tar receives a path
only under a private directory (0700, ours) that it reaches through /proc/self/fd.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import socket
import stat
import time
import uuid

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0)
STAGING_PREFIX = '.holdfast-restore-'
STAGING_MARKER = 'holdfast-restore.json'


def open_dir(path, create=False):
    """Open an absolute directory path one component at a time, never following a symlink. Returns an fd.

    Give a resolved path (os.path.realpath): a component that is (or became) a symlink is refused. With create,
    missing components are made (0755) relative to their parent's descriptor.
    """
    if not os.path.isabs(path):
        raise HoldfastError("%s is not an absolute path." % path)
    fd = os.open('/', DIR_FLAGS)
    try:
        for part in [p for p in path.split('/') if p not in ('', '.')]:
            if part == '..':
                raise HoldfastError("%s has a .. component." % path)
            try:
                if create and stat_at(fd, part) is None:
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                    except FileExistsError:
                        pass
                nfd = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise HoldfastError("%s: the component %r is not a directory (a symlink, or it was replaced while "
                                        "being opened); refusing to follow it." % (path, part)) from exc
                raise
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def foreign_writer(st, euid=None):
    """Pure: why another user could change the entries of a directory with this stat, or None.

    Root and the running user are trusted; a sticky directory's entries can only be renamed by their owners."""
    euid = os.geteuid() if euid is None else euid
    if st.st_uid not in (0, euid):
        return 'it is owned by uid %d' % st.st_uid
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        return 'it is writable by its group or by others (mode %04o)' % stat.S_IMODE(st.st_mode)
    return None


def trusted_realpath(path, what='path'):
    """os.path.realpath that refuses to follow a symlink another user could have put there.

    A symlink is followed only when it belongs to root (or the running user) and sits in a directory no other user
    can change; otherwise a user could point the path at a directory of their choice (say /etc) just before this
    root process acts on it. Missing trailing components are kept as they are.
    """
    if not os.path.isabs(path):
        raise HoldfastError("%s %s is not absolute." % (what, path))
    parts = [p for p in path.split('/') if p not in ('', '.')]
    current = '/'
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == '..':
            current = os.path.dirname(current)
            continue
        candidate = os.path.join(current, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            return os.path.normpath(os.path.join(candidate, *parts)) if parts else candidate
        if not stat.S_ISLNK(st.st_mode):
            current = candidate
            continue
        why = foreign_writer(os.lstat(current))
        if st.st_uid not in (0, os.geteuid()):
            why = 'the symlink belongs to uid %d' % st.st_uid
        if why:
            raise HoldfastError("%s %s goes through the symlink %s, which another user could have placed or can "
                                "change (%s): refusing to follow it as root. Give the real directory instead."
                                % (what.capitalize(), path, candidate, why))
        hops += 1
        if hops > 40:
            raise HoldfastError("%s %s: too many levels of symlinks." % (what.capitalize(), path))
        link = os.readlink(candidate)
        if link.startswith('/'):
            current = '/'
        parts = [p for p in link.split('/') if p not in ('', '.')] + parts
    return current


def stat_at(dir_fd, name):
    """lstat relative to a directory descriptor; None when missing."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def rmtree_at(dir_fd, name, ignore_errors=False):
    """Remove name (relative to dir_fd) and everything below, never following a symlink and never leaving the
    filesystem of dir_fd (a mount inside is left alone)."""
    try:
        _rmtree_at(dir_fd, name, os.fstat(dir_fd).st_dev)
    except OSError:
        if not ignore_errors:
            raise


def _rmtree_at(dir_fd, name, device):
    st = stat_at(dir_fd, name)
    if st is None:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    if st.st_dev != device:
        raise OSError(errno.EXDEV, 'a mount point inside; not removed', name)
    fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise OSError(errno.EAGAIN, 'changed while being removed', name)
        with os.scandir(fd) as entries:
            names = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
        for child, is_dir in names:
            if is_dir:
                _rmtree_at(fd, child, device)
            else:
                os.unlink(child, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def proc_path(fd):
    """A path that reaches the directory behind fd itself (not its name) in this process and its children."""
    return '/proc/self/fd/%d' % fd


class Staging(object):
    """A private work directory for one restore, in `holder` (the target's parent, or the target itself when it is
    a mount point):

        <holder>/.holdfast-restore-<label>-<token>/           0700, ours
            holdfast-restore.json                              marker: which target, which process, when
            data/                                              what tar extracts; becomes the target

    Nobody else can write inside it, so what is handed to tar by path (through /proc/self/fd) is ours; renames
    into place are relative to descriptors.
    """

    def __init__(self, holder_fd, label, key, attempts=5, where=None):
        self.holder_fd = holder_fd
        self.fd = self.data_fd = None
        for _attempt in range(attempts):
            self.token = uuid.uuid4().hex[:10]
            self.name = '%s%s%s' % (STAGING_PREFIX, ('%s-' % label) if label else '', self.token)
            try:
                os.mkdir(self.name, 0o700, dir_fd=holder_fd)
            except OSError as exc:  # name the directory in full: the message says where (read-only, full, ...)
                raise OSError(exc.errno, exc.strerror, os.path.join(where or '', self.name)) from exc
            try:
                fd = os.open(self.name, DIR_FLAGS, dir_fd=holder_fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                    raise
                continue  # renamed and replaced between mkdir and open: ours is elsewhere, empty; try again
            st = os.fstat(fd)
            if st.st_uid == os.geteuid() and not stat.S_IMODE(st.st_mode) & 0o077:
                self.fd = fd
                break
            os.close(fd)
        if self.fd is None:
            raise HoldfastError("Another process keeps replacing the staging directory in the target's parent "
                                "(%d attempts); nothing was restored. Check who can write that directory."
                                % attempts)
        try:
            marker = os.open(STAGING_MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                             dir_fd=self.fd)
            with os.fdopen(marker, 'w') as handle:
                json.dump(dict(target=key, pid=os.getpid(), host=socket.gethostname(),
                               started=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())), handle)
            os.mkdir('data', 0o700, dir_fd=self.fd)
            self.data_fd = os.open('data', DIR_FLAGS, dir_fd=self.fd)
        except BaseException:
            self.remove()
            raise

    @property
    def data_path(self):
        return proc_path(self.data_fd)

    def remove(self):
        """Remove the work directory: its content through our descriptor, then the directory itself by name only
        while that name is still ours (another user may have renamed it and put something else there)."""
        if self.data_fd is not None:
            os.close(self.data_fd)
            self.data_fd = None
        if self.fd is None:
            return
        try:
            mine = os.fstat(self.fd)
            with os.scandir(self.fd) as entries:
                names = [e.name for e in entries]
            for name in names:
                rmtree_at(self.fd, name, ignore_errors=True)
            now = stat_at(self.holder_fd, self.name)
            if now is not None and (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                os.rmdir(self.name, dir_fd=self.holder_fd)
        except OSError:
            pass
        finally:
            os.close(self.fd)
            self.fd = None


def leftover_staging(holder_fd, key):
    """Staging directories of killed restores in holder: (ours, foreign). Ours are provably this target's: a
    directory owned by us, private, whose marker (a regular file of ours inside it) names this target."""
    ours, foreign = [], []
    with os.scandir(holder_fd) as entries:
        names = [e.name for e in entries if e.name.startswith(STAGING_PREFIX)]
    for name in names:
        if _is_ours(holder_fd, name, key):
            ours.append(name)
        else:
            foreign.append(name)
    return ours, foreign


def _is_ours(holder_fd, name, key):
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=holder_fd)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
            return False
        mfd = os.open(STAGING_MARKER, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
        with os.fdopen(mfd) as handle:
            mst = os.fstat(handle.fileno())
            if not stat.S_ISREG(mst.st_mode) or mst.st_uid != os.geteuid() or mst.st_size > 65536:
                return False
            return json.load(handle).get('target') == key
    except (OSError, ValueError, AttributeError):
        return False
    finally:
        os.close(fd)


def open_private_file(path, flags, mode=0o600, dir_fd=None):
    """Open (creating if asked) a file that must not be a symlink, a fifo or a device: O_NOFOLLOW|O_NONBLOCK, then
    fstat says it is a regular file. Returns the fd."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0), mode, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise HoldfastError("%s is not a regular file; refusing to use it." % path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_private_dir(path, what):
    """A directory that holds what root trusts (a backup folder, the restore state): refuse one another user can
    change (its owner, or group/other write). Returns its lstat."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise HoldfastError("Cannot read %s %s: %s" % (what, path, exc.strerror)) from exc
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise HoldfastError("%s %s is not a directory (a symlink?); refusing to use it." % (what.capitalize(), path))
    why = foreign_writer(st)
    if why is not None or st.st_mode & 0o022:
        raise HoldfastError("%s %s could be changed by another user (%s): files planted there could make this "
                            "root process overwrite or trust them. Give it to root and remove group/other write "
                            "(chown root: %s && chmod go-w %s)." % (
                                what.capitalize(), path, why or 'mode %04o' % stat.S_IMODE(st.st_mode), path, path))
    return st
