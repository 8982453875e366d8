# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ownership and modes of a host tree: walk once, change only what differs, never through a symlink.

Never follows symlinks: a symlink's own owner is changed with lchown, its mode is never touched (chmod would
follow it), and directories on another filesystem (mounts inside the volume) are not entered. Every directory is
opened relative to its parent's descriptor, so another user who can write in the tree cannot redirect the walk.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import stat

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._safe_fs import DIR_FLAGS

SAMPLE = 20
# Subtrees are split between worker processes, one per core this process may use, at most MAX_WALK_WORKERS: the
# stat and chown system calls then run in parallel (measured on 2 cores: 100,000 files, first run 0.65 s -> about
# 0.35 s; no-op about 0.17 s). Beyond 8 the disk, not the CPU, is the limit.
MAX_WALK_WORKERS = 8


def fork_walk(walk, shares):
    """Run walk(share) in one forked process per share; collect their results through pipes."""
    import json
    children = []
    for share in shares:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: walk, report, and leave without running any parent cleanup
            code = 0
            try:
                os.close(read_fd)
                try:
                    agg, changed_paths, mounts = walk(share)
                    payload = dict(agg=agg, sample=changed_paths, mounts=mounts)
                except HoldfastError as exc:
                    payload = dict(error=exc.msg)
                except OSError as exc:
                    payload = dict(error="%s: %s" % (getattr(exc, 'filename', '') or '', exc.strerror or exc))
                data = json.dumps(payload).encode('utf-8', 'surrogateescape')
                view = memoryview(data)
                while view:
                    view = view[os.write(write_fd, view):]
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(write_fd)
        children.append((pid, read_fd))
    outcomes, errors = [], []
    for pid, read_fd in children:
        chunks = []
        while True:
            block = os.read(read_fd, 1 << 16)
            if not block:
                break
            chunks.append(block)
        os.close(read_fd)
        _pid, status = os.waitpid(pid, 0)
        try:
            payload = json.loads(b''.join(chunks).decode('utf-8', 'surrogateescape'))
        except ValueError:
            payload = dict(error='a worker process ended without a report (status %d)' % status)
        if 'error' in payload:
            errors.append(payload['error'])
        else:
            outcomes.append((payload['agg'], payload['sample'], payload['mounts']))
    if errors:
        raise HoldfastError("Setting permissions failed: %s (entries already changed stay changed; run again "
                            "after fixing the cause)." % "; ".join(errors))
    return outcomes


def walk_workers():
    """How many processes walk a tree: the cores this process may run on (its CPU affinity), 1 to 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(MAX_WALK_WORKERS, cores))


def _changed_under_us(path):
    return HoldfastError("%s changed while permissions were being set (it is no longer the directory that was "
                         "listed, e.g. another user swapped it for a symlink); nothing outside the tree was "
                         "touched. Run again." % path)


def _raise_fd_limit():
    """Raise this process's soft limit of open descriptors to the hard one; True when it grew."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft >= hard:
        return False
    new = hard if hard != resource.RLIM_INFINITY else max(soft * 4, 65536)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    except (ValueError, OSError):
        return False
    return new > soft


def _open_at(name, flags, dir_fd, path):
    """Open relative to a directory descriptor; a name that is gone or became a symlink or non-directory means the
    tree changed under the walk. A deep tree holds one descriptor per level: EMFILE raises the limit once."""
    try:
        try:
            return os.open(name, flags, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno != errno.EMFILE or not _raise_fd_limit():
                raise
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
            raise _changed_under_us(path) from exc
        raise HoldfastError("Cannot open %s: %s" % (path, exc.strerror)) from exc


def _open_dir(name, dir_fd, expect, path):
    """Open a directory relative to its parent's descriptor, never through a symlink, and check that it is still
    the directory that was listed (expect: (st_dev, st_ino))."""
    fd = _open_at(name, DIR_FLAGS, dir_fd, path)
    st = os.fstat(fd)
    if expect is not None and (st.st_dev, st.st_ino) != expect:
        os.close(fd)
        raise _changed_under_us(path)
    return fd


def _change_through_fd(name, dir_fd, st, change, path):
    """Change a regular file or directory through a descriptor opened relative to its (checked) directory without
    following links, after checking that it is still the inode that was listed (and, with skip_hardlinks, still has
    one link): a symlink or hard link swapped in since the scan is never acted on. change: (owner, mode,
    skip_hardlinks) with owner (uid, gid) or None and mode the new mode or None (also set after a chown, which
    clears setuid/setgid bits)."""
    owner, mode, skip_hardlinks = change
    flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0)
    flags |= os.O_DIRECTORY if stat.S_ISDIR(st.st_mode) else (os.O_NONBLOCK | getattr(os, 'O_NOCTTY', 0))
    fd = _open_at(name, flags, dir_fd, path)
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or (skip_hardlinks and now.st_nlink > 1
                                                                  and not stat.S_ISDIR(now.st_mode)):
            raise _changed_under_us(path)
        if owner is not None:
            os.fchown(fd, owner[0], owner[1])
        if mode is not None:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)


def converge_tree(root, state, check_mode=False):
    """Walk once; change what differs. Returns counts, a sample of changed paths, and the root before/after.

    Every directory is opened relative to its parent's descriptor with O_NOFOLLOW|O_DIRECTORY and checked to be
    the directory that was listed; its entries are examined and changed relative to that descriptor (fstatat,
    fchownat without following links, fchmod on a descriptor opened without following), so no path is ever
    resolved again, and another user who can write in the tree cannot redirect the walk outside it.
    Entries with more than one hard link are counted (they are also reachable from outside the tree); with
    state['skip_hardlinks'] they are left alone.
    """
    result = dict(examined=0, changed_owner=0, changed_mode=0, changed_entries=0, hardlinks=0, hardlinks_changed=0,
                  sample=[],
                  skipped_mounts=[], root_changed=False)
    try:
        root_fd = os.open(root, DIR_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            raise HoldfastError("%s is not a directory (a symlink is not followed)." % root) from exc
        raise HoldfastError("Cannot read %s: %s" % (root, exc.strerror)) from exc
    try:
        TreeWalk(root, root_fd, state, check_mode).converge(result)
    except OSError as exc:  # EPERM (immutable), EROFS, EIO, ...: a message, not a traceback
        where = '%s: ' % exc.filename if exc.filename else ''
        raise HoldfastError("Setting permissions failed: %s%s (entries already changed stay changed; run again "
                            "after fixing the cause)." % (where, exc.strerror or exc)) from exc
    finally:
        os.close(root_fd)
    return result


COUNTS = 6  # examined, owner, mode, entries, hard-linked, hard-linked and changed


def _mode_text(mode):
    return '%04o' % stat.S_IMODE(mode)


class TreeWalk(object):
    """One converge of the tree below an open root descriptor: the wanted state, the root's device, the counts."""

    def __init__(self, root, root_fd, state, check_mode):
        self.root, self.root_fd, self.state, self.check_mode = root, root_fd, state, check_mode
        self.root_st = os.fstat(root_fd)
        self.device = self.root_st.st_dev
        self.skip_hardlinks = bool(state.get('skip_hardlinks'))
        self.counts = [0] * COUNTS
        self.sample = []

    def note(self, path):
        if len(self.sample) < SAMPLE:
            self.sample.append(path)

    def converge_root(self):
        """The root itself, through its descriptor. Returns (changed, its mode afterwards)."""
        root_st, state, counts = self.root_st, self.state, self.counts
        counts[0] += 1
        uid = state['uid'] if state['uid'] is not None else root_st.st_uid
        gid = state['gid'] if state['gid'] is not None else root_st.st_gid
        current = stat.S_IMODE(root_st.st_mode)
        root_mode = state['mode'].apply(root_st.st_mode, True) if state['mode'] else current
        changed = False
        if (uid, gid) != (root_st.st_uid, root_st.st_gid):
            counts[1] += 1
            changed = True
            if not self.check_mode:
                os.fchown(self.root_fd, uid, gid)
        if root_mode != current or (changed and root_mode & 0o6000):
            if root_mode != current:
                counts[2] += 1
                changed = True
            if not self.check_mode:
                os.fchmod(self.root_fd, root_mode)
        if changed:
            counts[3] += 1
            self.note(self.root)
        return changed, root_mode

    def process_dir(self, dfd, dpath):
        """Examine and fix one directory's entries (dfd: its open descriptor); returns (subdirectories as
        (name, (st_dev, st_ino), path), counts, changed sample, mounts)."""
        want_uid, want_gid, device, check_mode = self.state['uid'], self.state['gid'], self.device, self.check_mode
        file_spec, dir_spec, keep_exec = self.state['file_mode'], self.state['dir_mode'], self.state['keep_exec']
        skip_hardlinks = self.skip_hardlinks
        file_octal = file_spec.octal if file_spec is not None else None  # fast paths for octal modes
        dir_octal = dir_spec.octal if dir_spec is not None else None
        S_ISDIR, S_ISREG, S_ISLNK, S_IMODE = stat.S_ISDIR, stat.S_ISREG, stat.S_ISLNK, stat.S_IMODE
        local = [0] * COUNTS
        subdirs, changed_paths, mounts = [], [], []
        with os.scandir(dfd) as entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError as exc:
                    raise _changed_under_us(os.path.join(dpath, entry.name)) from exc
                local[0] += 1
                st_mode = st.st_mode
                is_dir = S_ISDIR(st_mode)
                if is_dir:
                    if st.st_dev != device:
                        mounts.append(os.path.join(dpath, entry.name))
                    else:
                        subdirs.append((entry.name, (st.st_dev, st.st_ino), os.path.join(dpath, entry.name)))
                elif st.st_nlink > 1:
                    local[4] += 1
                    if skip_hardlinks:
                        continue
                uid = want_uid if want_uid is not None else st.st_uid
                gid = want_gid if want_gid is not None else st.st_gid
                owner_change = uid != st.st_uid or gid != st.st_gid
                new_mode = None
                if not S_ISLNK(st_mode):
                    current = S_IMODE(st_mode)
                    if is_dir:
                        if dir_spec is not None:
                            new_mode = dir_octal if dir_octal is not None else dir_spec.apply(st_mode, True)
                    elif S_ISREG(st_mode) and file_spec is not None:
                        new_mode = file_octal if file_octal is not None else file_spec.apply(st_mode, False)
                        if keep_exec:
                            new_mode = (new_mode & ~0o111) | (current & 0o111)
                    if new_mode is not None and new_mode == current and not (owner_change and current & 0o6000):
                        new_mode = None
                if owner_change or new_mode is not None:
                    path = os.path.join(dpath, entry.name)
                    local[1] += owner_change
                    local[2] += new_mode is not None and new_mode != S_IMODE(st_mode)
                    if not check_mode:
                        self.change(dfd, entry.name, st, ((uid, gid) if owner_change else None, new_mode), path)
                    local[3] += 1
                    if st.st_nlink > 1 and not is_dir:
                        local[5] += 1
                    if len(changed_paths) < SAMPLE:
                        changed_paths.append(path)
        return subdirs, local, changed_paths, mounts

    def change(self, dfd, name, st, owner_mode, path):
        """Apply (owner, mode) to one entry of the directory dfd, never following a link."""
        if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
            _change_through_fd(name, dfd, st, owner_mode + (self.skip_hardlinks,), path)
            return
        try:  # symlinks, fifos, sockets, devices: never opened; fchownat(AT_SYMLINK_NOFOLLOW)
            os.chown(name, owner_mode[0][0], owner_mode[0][1], dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError as exc:
            raise _changed_under_us(path) from exc

    def walk(self, share):
        """Sequential depth-first walk of whole subtrees (share: top subdirectories of the root); returns
        aggregated (counts, sample, mounts). Holds one descriptor per level: each directory is opened relative
        to its parent's."""
        agg = [0] * COUNTS
        changed_paths, mounts = [], []
        stack = [(self.root_fd, iter(share), False)]
        try:
            while stack:
                dfd, pending, owned = stack[-1]
                item = next(pending, None)
                if item is None:
                    stack.pop()
                    if owned:
                        os.close(dfd)
                    continue
                name, ident, path = item
                fd = _open_dir(name, dfd, ident, path)
                try:
                    subdirs, local, paths_changed, found_mounts = self.process_dir(fd, path)
                except BaseException:
                    os.close(fd)
                    raise
                stack.append((fd, iter(subdirs), True))
                for i in range(COUNTS):
                    agg[i] += local[i]
                changed_paths.extend(paths_changed[:max(0, SAMPLE - len(changed_paths))])
                mounts.extend(found_mounts)
        finally:
            for dfd, _pending, owned in stack:
                if owned:
                    os.close(dfd)
        return agg, changed_paths, mounts

    def converge(self, result):
        """Fill result with the counts, the sample, the mounts left alone and the root before and after."""
        root_st = self.root_st
        result['root_changed'], root_mode = self.converge_root()
        outcomes = []
        if self.state['recurse']:
            top, local, changed_paths, mounts = self.process_dir(self.root_fd, self.root)
            outcomes.append((local, changed_paths, mounts))
            workers = min(walk_workers(), len(top))
            if workers < 2:
                outcomes.append(self.walk(top))
            else:
                outcomes.extend(fork_walk(self.walk, [top[i::workers] for i in range(workers)]))
        for agg, changed_paths, mounts in outcomes:
            for i in range(COUNTS):
                self.counts[i] += agg[i]
            for path in changed_paths:
                self.note(path)
            result['skipped_mounts'].extend(mounts)
        counts = self.counts
        result.update(examined=counts[0], changed_owner=counts[1], changed_mode=counts[2], changed_entries=counts[3],
                      hardlinks=counts[4], hardlinks_changed=counts[5], sample=self.sample)
        result['root_before'] = dict(uid=root_st.st_uid, gid=root_st.st_gid, mode=_mode_text(root_st.st_mode))
        if self.check_mode:
            want_uid, want_gid = self.state['uid'], self.state['gid']
            result['root_after'] = dict(uid=want_uid if want_uid is not None else root_st.st_uid,
                                        gid=want_gid if want_gid is not None else root_st.st_gid,
                                        mode='%04o' % root_mode)
        else:
            after = os.fstat(self.root_fd)
            result['root_after'] = dict(uid=after.st_uid, gid=after.st_gid, mode=_mode_text(after.st_mode))
