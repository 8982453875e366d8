# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host route of a restore: extract into a private staging directory beside the target (or, for a mount point,
inside it), then swap it into place, all relative to directory descriptors; a failure before the swap leaves the
target as it was."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import errno
import fcntl
import os
import stat
import time
from contextlib import nullcontext

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._restore_read import extract_gated
from ansible_collections.holdfast.volumes.plugins.module_utils._restore_state import (
    DEFAULT_STATE_DIR,
    forget_journal,
    journal,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._safe_fs import (
    DIR_FLAGS,
    Staging,
    foreign_writer,
    leftover_staging,
    open_dir,
    rmtree_at,
    stat_at,
    trusted_realpath,
)

# How a host restore runs besides the task's params: the manifest (or None), the Quiesce around the swap (or
# None), the idempotence/staging key (None: the target's path), a list for warnings (or None), a callable given the
# staged tree's path just before the swap (volume_seed: owner and group), and whether symlinks must stay inside the
# target (volume_seed).
HostRestore = collections.namedtuple('HostRestore', 'manifest quiesce key warnings before_swap escaping_links')
HostRestore.__new__.__defaults__ = (None, None, None, None, None, False)


def _lock_dir(fd, path, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() >= deadline:
            raise HoldfastError("Another restore into %s holds its lock; waited %ss." % (path, timeout))
        time.sleep(0.2)


def restore_host(params, archive, target_dir, how=None):
    """Extract into a private staging directory beside the target, then swap, all relative to directory
    descriptors. how: a HostRestore (None: the defaults). Returns (kept previous path or None, checked, removed
    leftovers)."""
    how = how or HostRestore()
    manifest, quiesce, warnings = how.manifest, how.quiesce, how.warnings
    target_dir = trusted_realpath(target_dir, 'the target')
    key = how.key or 'path:%s' % target_dir
    state_dir = params.get('state_dir') or DEFAULT_STATE_DIR
    parent, base = os.path.dirname(target_dir), os.path.basename(target_dir)
    parent_fd = open_dir(parent, create=True)
    holder_fd = None
    staging = None
    try:
        # what the target's name holds now (or that it holds nothing): the swap moves aside only this, never what
        # another user who can write the parent renames onto the name later
        found = stat_at(parent_fd, base)
        expected = (found.st_dev, found.st_ino) if found is not None else None
        why = foreign_writer(os.fstat(parent_fd))
        if why and warnings is not None:
            warnings.append(
                "The parent %s of the target could be changed by another user (%s): the restore works relative to "
                "directory descriptors and cannot be redirected, but that user can rename or replace the restored "
                "directory afterwards." % (parent, why))
        in_place = os.path.ismount(target_dir)
        holder_fd = open_dir(target_dir) if in_place else parent_fd
        _lock_dir(holder_fd, target_dir if in_place else parent, params.get('lock_timeout', 600))
        cleaned = []
        ours, _foreign = leftover_staging(holder_fd, key)
        for name in ours:
            rmtree_at(holder_fd, name, ignore_errors=True)
            cleaned.append(os.path.join(target_dir if in_place else parent, name))
        staging = Staging(holder_fd, '' if in_place else base, key, where=target_dir if in_place else parent)
        journal(state_dir, key, os.path.join(target_dir if in_place else parent, staging.name), staging.token)
        checked = extract_gated(params, archive, manifest, staging.data_path, pass_fds=(staging.data_fd,),
                                escaping_links=how.escaping_links)
        if not checked.get('has_root'):
            # A foreign archive without a "./" member: keep the root's owner and mode as they were.
            ref = stat_at(parent_fd, base) if not in_place else os.fstat(holder_fd)
            ref = ref if ref is not None and stat.S_ISDIR(ref.st_mode) else None
            os.fchown(staging.data_fd, ref.st_uid if ref else 0, ref.st_gid if ref else 0)
            os.fchmod(staging.data_fd, (ref.st_mode & 0o7777) if ref else 0o755)
        checked['setuid_stripped'], checked['capabilities_stripped'] = (
            strip_setuid_at(staging.data_fd) if params.get('strip_setuid') else (0, 0))
        if how.before_swap is not None:
            how.before_swap(staging.data_path + '/.')
        ctx = quiesce if quiesce is not None else nullcontext()
        with ctx:
            if in_place:
                _swap_entries(holder_fd, staging)
            else:
                swap_dir(parent_fd, base, staging, expected, target_dir)
            os.fsync(parent_fd)
        previous = None
        if stat_at(staging.fd, 'old') is not None:
            if params.get('keep_previous'):
                name = '.holdfast-previous-%s' % ('%s-%s' % (base, staging.token) if not in_place else staging.token)
                os.rename('old', name, src_dir_fd=staging.fd, dst_dir_fd=holder_fd)
                previous = os.path.join(target_dir if in_place else parent, name)
        return previous, checked, cleaned
    finally:
        if staging is not None:
            staging.remove()
            forget_journal(state_dir, key)
        if holder_fd is not None and holder_fd != parent_fd:
            os.close(holder_fd)
        os.close(parent_fd)


def swap_dir(parent_fd, base, staging, expected, target_dir):
    """The target goes into staging/old, the staged data takes its name. expected is the (st_dev, st_ino) the
    name held when the restore began (None: nothing): anything else found there (renamed onto the name by another
    user who can write the parent) is put back and the restore fails, so it is never removed."""
    now = stat_at(parent_fd, base)
    if expected is None and now is not None:
        raise HoldfastError("%s appeared while the restore ran (another user can write its parent): refusing to "
                            "replace it. Nothing was changed; make the parent writable by root only and retry."
                            % target_dir)
    if expected is not None and now is None:
        raise HoldfastError("%s disappeared while the restore ran (another user can write its parent). Nothing was "
                            "changed; make the parent writable by root only and retry." % target_dir)
    if expected is not None:
        os.rename(base, 'old', src_dir_fd=parent_fd, dst_dir_fd=staging.fd)
        moved = stat_at(staging.fd, 'old')
        if moved is None or (moved.st_dev, moved.st_ino) != expected:
            where = target_dir
            if moved is not None:
                try:
                    os.rename('old', base, src_dir_fd=staging.fd, dst_dir_fd=parent_fd)
                except OSError:  # the name was taken again meanwhile: keep it beside, never in staging
                    kept = '.holdfast-kept-%s-%s' % (base, staging.token)
                    os.rename('old', kept, src_dir_fd=staging.fd, dst_dir_fd=parent_fd)
                    where = os.path.join(os.path.dirname(target_dir), kept)
            raise HoldfastError("%s is no longer the directory the restore began with: another user who can write "
                                "its parent replaced it. What was there is back untouched at %s and nothing was "
                                "restored; make the parent writable by root only and retry." % (target_dir, where))
    try:
        os.rename('data', base, src_dir_fd=staging.fd, dst_dir_fd=parent_fd)
    except OSError:
        if expected is not None:
            os.rename('old', base, src_dir_fd=staging.fd, dst_dir_fd=parent_fd)
        raise


def _swap_entries(target_fd, staging):
    """A mount point cannot be renamed: swap its entries with the staged ones (old ones into staging/old), each
    with an atomic rename relative to the directories' descriptors, rolled back on failure."""
    skip = set([staging.name])
    os.mkdir('old', 0o700, dir_fd=staging.fd)
    old_fd = os.open('old', DIR_FLAGS, dir_fd=staging.fd)
    moved_out, moved_in = [], []
    try:
        try:
            with os.scandir(target_fd) as entries:
                current = [e.name for e in entries if e.name not in skip]
            for name in current:
                os.rename(name, name, src_dir_fd=target_fd, dst_dir_fd=old_fd)
                moved_out.append(name)
            with os.scandir(staging.data_fd) as entries:
                staged = [e.name for e in entries]
            for name in staged:
                os.rename(name, name, src_dir_fd=staging.data_fd, dst_dir_fd=target_fd)
                moved_in.append(name)
        except OSError:
            for name in moved_in:
                os.rename(name, name, src_dir_fd=target_fd, dst_dir_fd=staging.data_fd)
            for name in moved_out:
                os.rename(name, name, src_dir_fd=old_fd, dst_dir_fd=target_fd)
            raise
        st = os.fstat(staging.data_fd)  # the archive's root: its owner and mode become the mount point's
        os.fchown(target_fd, st.st_uid, st.st_gid)
        os.fchmod(target_fd, stat.S_IMODE(st.st_mode))
    finally:
        os.close(old_fd)


def strip_setuid_at(root_fd):
    """Remove setuid/setgid bits and file capabilities (security.capability: cap_setuid+ep is root as surely as a
    setuid bit) from the regular files of a private tree (staging). Returns how many files of each."""
    count = caps = 0
    stack = [os.dup(root_fd)]
    try:
        while stack:
            fd = stack.pop()
            try:
                with os.scandir(fd) as entries:
                    items = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
                for name, is_dir in items:
                    if is_dir:
                        stack.append(os.open(name, DIR_FLAGS, dir_fd=fd))
                        continue
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    ffd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
                    try:
                        if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                            os.fchmod(ffd, stat.S_IMODE(st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID))
                            count += 1
                        try:
                            os.removexattr(ffd, 'security.capability')
                            caps += 1
                        except OSError as exc:
                            if exc.errno not in (errno.ENODATA, errno.EOPNOTSUPP):
                                raise
                    finally:
                        os.close(ffd)
            finally:
                os.close(fd)
    finally:
        for fd in stack:
            os.close(fd)
    return count, caps
