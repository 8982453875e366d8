# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ownership and modes of a tree: parse the wanted state (pure), walk once, change only what differs.

Never follows symlinks: a symlink's own owner is changed with lchown, its mode is never touched (chmod would
follow it), and directories on another filesystem (mounts inside the volume) are not entered.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import grp
import os
import pwd
import re
import stat

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._safe_fs import DIR_FLAGS

MAX_ID = 4294967294  # (uid_t)-1 means "unchanged" to the kernel
SYMBOLIC_RE = re.compile(r'^([ugoa]*)([-+=])([rwxXst]*)$')
SAMPLE = 20
# Subtrees are split between worker processes, one per core this process may use, at most MAX_WALK_WORKERS: the
# stat and chown system calls then run in parallel (measured on 2 cores: 100,000 files, first run 0.65 s -> about
# 0.35 s; no-op about 0.17 s). Beyond 8 the disk, not the CPU, is the limit.
MAX_WALK_WORKERS = 8


def parse_id(value, kind):
    """A numeric id (int or digits) or a name resolved on this host. Returns an int or None."""
    if value is None or value == '':
        return None
    if isinstance(value, bool):
        raise HoldfastError("%s must be a number or a name, got %r." % (kind, value))
    if isinstance(value, int) or (isinstance(value, str) and re.match(r'^-?\d+$', value.strip())):
        number = int(value)
        if number < 0 or number > MAX_ID:
            raise HoldfastError("%s %s is out of range: ids go from 0 to %d." % (kind, number, MAX_ID))
        return number
    if not isinstance(value, str):
        raise HoldfastError("%s must be a number or a name, got %r." % (kind, value))
    try:
        return pwd.getpwnam(value).pw_uid if kind == 'owner' else grp.getgrnam(value).gr_gid
    except KeyError:
        raise HoldfastError("%s %r does not exist on this host; use a numeric id (containers' users usually do not "
                            "exist on the host, e.g. 999 for postgres)." % (kind, value)) from None


def quoted_modes(value):
    """Pure: the quoted forms a user may have meant by an integer mode. YAML reads `mode: 700` as the number 700
    (which is 0o1274) and `mode: 0640` as 416 (0o640): digits that are all octal may have been meant as written,
    and a number up to 0o777 may be what YAML made of an octal literal."""
    forms = []
    if value <= 0o777 and value >= 0:
        forms.append('%04o' % value)
    if re.match(r'^[0-7]{1,4}$', str(value)) and str(value).zfill(4) not in forms:
        forms.append(str(value).zfill(4))
    return forms or ['0750']


def refuse_integer_mode(value, name='mode'):
    """Modes are strings: an integer was read by YAML (or a template) and is never applied as it is."""
    if isinstance(value, int) and not isinstance(value, bool):
        forms = quoted_modes(value)
        raise HoldfastError(
            '%s must be a quoted string, got the integer %d: write %s%s, or a symbolic mode such as '
            '"u=rwX,g=rX,o=". YAML reads an unquoted mode as a number (700 would be applied as 0o1274, 0640 '
            'arrives as 416), so integers are refused; nothing was changed.'
            % (name, value, ' or '.join('%s: "%s"' % (name, form) for form in forms),
               ' (whichever you meant)' if len(forms) > 1 else ''))


class ModeSpec(object):
    """An octal mode or a symbolic one (u=rwX,g=rX,o=), applied to a current mode. Integers are refused."""

    def __init__(self, spec, name='mode'):
        self.text = spec
        self.octal = None
        self.clauses = None
        if isinstance(spec, bool):
            raise HoldfastError("%s must be octal (e.g. '0750') or symbolic (e.g. 'u=rwX,g=rX,o='), got %r."
                                % (name, spec))
        refuse_integer_mode(spec, name)
        text = str(spec).strip()
        if re.match(r'^0?[0-7]{3,4}$', text) or re.match(r'^0o[0-7]{1,4}$', text):
            self.octal = int(text.replace('0o', ''), 8)
            if self.octal > 0o7777:
                raise HoldfastError("%s %r is out of range." % (name, spec))
            return
        clauses = []
        for clause in text.split(','):
            match = SYMBOLIC_RE.match(clause.strip())
            if not match:
                raise HoldfastError("%s %r is neither octal (e.g. '0750') nor symbolic (e.g. 'u=rwX,g=rX,o=')."
                                    % (name, spec))
            clauses.append(match.groups())
        self.clauses = clauses

    def apply(self, current, is_dir):
        current = stat.S_IMODE(current)
        if self.octal is not None:
            return self.octal
        mode = current
        for who, op, perms in self.clauses:
            who = who or 'a'
            if 'a' in who:
                who = 'ugo'
            bits = 0
            for p in perms:
                if p == 'r':
                    bits |= sum({'u': 0o400, 'g': 0o040, 'o': 0o004}[w] for w in who)
                elif p == 'w':
                    bits |= sum({'u': 0o200, 'g': 0o020, 'o': 0o002}[w] for w in who)
                elif p == 'x' or (p == 'X' and (is_dir or current & 0o111)):
                    bits |= sum({'u': 0o100, 'g': 0o010, 'o': 0o001}[w] for w in who)
                elif p == 's':
                    bits |= (0o4000 if 'u' in who else 0) | (0o2000 if 'g' in who else 0)
                elif p == 't':
                    bits |= 0o1000
            if op == '+':
                mode |= bits
            elif op == '-':
                mode &= ~bits
            else:
                mask = 0
                for w in who:
                    mask |= {'u': 0o4700, 'g': 0o2070, 'o': 0o1007}[w]
                mode = (mode & ~mask) | bits
        return mode


def wanted_state(params):
    """Pure: the normalised wanted state from the module parameters."""
    state = dict(uid=parse_id(params.get('owner'), 'owner'), gid=parse_id(params.get('group'), 'group'),
                 mode=ModeSpec(params['mode'], 'mode') if params.get('mode') not in (None, '') else None,
                 recurse=bool(params.get('recurse')),
                 file_mode=ModeSpec(params['file_mode'], 'file_mode') if params.get('file_mode') not in (None, '')
                 else None,
                 dir_mode=ModeSpec(params['dir_mode'], 'dir_mode') if params.get('dir_mode') not in (None, '')
                 else None,
                 keep_exec=bool(params.get('keep_file_exec_bits')),
                 skip_hardlinks=bool(params.get('skip_hardlinks')))
    if (state['file_mode'] or state['dir_mode']) and not state['recurse']:
        raise HoldfastError("file_mode and dir_mode apply below the root: set recurse: true.")
    wants_mode = state['mode'] or state['file_mode'] or state['dir_mode']
    if state['uid'] is None and state['gid'] is None and not wants_mode:
        raise HoldfastError("Nothing to manage: give owner, group, mode, file_mode or dir_mode.")
    return state


def _fork_walk(walk, shares):
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


def _change_through_fd(name, dir_fd, st, owner, mode, path, skip_hardlinks):
    """Change a regular file or directory through a descriptor opened relative to its (checked) directory without
    following links, after checking that it is still the inode that was listed (and, with skip_hardlinks, still has
    one link): a symlink or hard link swapped in since the scan is never acted on. owner: (uid, gid) or None;
    mode: the new mode or None (also set after a chown, which clears setuid/setgid bits)."""
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
        _converge(root, root_fd, state, check_mode, result)
    except OSError as exc:  # EPERM (immutable), EROFS, EIO, ...: a message, not a traceback
        where = '%s: ' % exc.filename if exc.filename else ''
        raise HoldfastError("Setting permissions failed: %s%s (entries already changed stay changed; run again "
                            "after fixing the cause)." % (where, exc.strerror or exc)) from exc
    finally:
        os.close(root_fd)
    return result


def _converge(root, root_fd, state, check_mode, result):
    root_st = os.fstat(root_fd)
    device = root_st.st_dev
    before_root = dict(uid=root_st.st_uid, gid=root_st.st_gid, mode='%04o' % stat.S_IMODE(root_st.st_mode))
    want_uid, want_gid = state['uid'], state['gid']
    file_spec, dir_spec, keep_exec = state['file_mode'], state['dir_mode'], state['keep_exec']
    skip_hardlinks = bool(state.get('skip_hardlinks'))
    # fast paths for octal modes
    file_octal = file_spec.octal if file_spec is not None else None
    dir_octal = dir_spec.octal if dir_spec is not None else None
    S_ISDIR, S_ISREG, S_ISLNK, S_IMODE = stat.S_ISDIR, stat.S_ISREG, stat.S_ISLNK, stat.S_IMODE
    counts = [0, 0, 0, 0, 0, 0]  # examined, owner, mode, entries, hard-linked, hard-linked and changed
    sample = result['sample']

    def note(path):
        if len(sample) < SAMPLE:
            sample.append(path)

    # the root itself, through its descriptor
    counts[0] += 1
    uid = want_uid if want_uid is not None else root_st.st_uid
    gid = want_gid if want_gid is not None else root_st.st_gid
    root_mode = state['mode'].apply(root_st.st_mode, True) if state['mode'] else S_IMODE(root_st.st_mode)
    changed = False
    if (uid, gid) != (root_st.st_uid, root_st.st_gid):
        counts[1] += 1
        changed = True
        if not check_mode:
            os.fchown(root_fd, uid, gid)
    if root_mode != S_IMODE(root_st.st_mode) or (changed and root_mode & 0o6000):
        if root_mode != S_IMODE(root_st.st_mode):
            counts[2] += 1
            changed = True
        if not check_mode:
            os.fchmod(root_fd, root_mode)
    if changed:
        counts[3] += 1
        note(root)
    result['root_changed'] = changed

    def process_dir(dfd, dpath):
        """Examine and fix one directory's entries (dfd: its open descriptor); returns (subdirectories as
        (name, (st_dev, st_ino), path), counts, changed sample, mounts)."""
        local = [0, 0, 0, 0, 0, 0]
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
                    if owner_change:
                        local[1] += 1
                    if new_mode is not None and new_mode != S_IMODE(st_mode):
                        local[2] += 1
                    if check_mode:
                        pass
                    elif is_dir or S_ISREG(st_mode):
                        _change_through_fd(entry.name, dfd, st, (uid, gid) if owner_change else None, new_mode,
                                           path, skip_hardlinks)
                    else:  # symlinks, fifos, sockets, devices: never opened; fchownat(AT_SYMLINK_NOFOLLOW)
                        try:
                            os.chown(entry.name, uid, gid, dir_fd=dfd, follow_symlinks=False)
                        except FileNotFoundError as exc:
                            raise _changed_under_us(path) from exc
                    local[3] += 1
                    if st.st_nlink > 1 and not is_dir:
                        local[5] += 1
                    if len(changed_paths) < SAMPLE:
                        changed_paths.append(path)
        return subdirs, local, changed_paths, mounts

    def walk(share):
        """Sequential depth-first walk of whole subtrees (share: top subdirectories of the root); returns
        aggregated (counts, sample, mounts). Holds one descriptor per level: each directory is opened relative
        to its parent's."""
        agg = [0, 0, 0, 0, 0, 0]
        changed_paths, mounts = [], []
        stack = [(root_fd, iter(share), False)]
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
                    subdirs, local, paths_changed, found_mounts = process_dir(fd, path)
                except BaseException:
                    os.close(fd)
                    raise
                stack.append((fd, iter(subdirs), True))
                for i in range(6):
                    agg[i] += local[i]
                changed_paths.extend(paths_changed[:max(0, SAMPLE - len(changed_paths))])
                mounts.extend(found_mounts)
        finally:
            for dfd, _pending, owned in stack:
                if owned:
                    os.close(dfd)
        return agg, changed_paths, mounts

    def merge(agg, changed_paths, mounts):
        for i in range(6):
            counts[i] += agg[i]
        for path in changed_paths:
            note(path)
        result['skipped_mounts'].extend(mounts)

    if state['recurse']:
        top, local, changed_paths, mounts = process_dir(root_fd, root)
        merge(local, changed_paths, mounts)
        workers = min(walk_workers(), len(top))
        if workers < 2:
            outcomes = [walk(top)]
        else:
            outcomes = _fork_walk(walk, [top[i::workers] for i in range(workers)])
        for agg, changed_paths, mounts in outcomes:
            merge(agg, changed_paths, mounts)
    result.update(examined=counts[0], changed_owner=counts[1], changed_mode=counts[2], changed_entries=counts[3],
                  hardlinks=counts[4], hardlinks_changed=counts[5])
    after = os.fstat(root_fd) if not check_mode else None
    result['root_before'] = before_root
    result['root_after'] = dict(uid=after.st_uid, gid=after.st_gid, mode='%04o' % S_IMODE(after.st_mode)) \
        if after else dict(uid=want_uid if want_uid is not None else root_st.st_uid,
                           gid=want_gid if want_gid is not None else root_st.st_gid, mode='%04o' % root_mode)


# -- the engine route: a helper container with a shell, find, chown and chmod -----------------------------------
BUSYBOX_IMAGE = 'holdfast/volume-helper:busybox'
ENGINE_MOUNT = '/holdfast-data'


def _is_static_elf(path):
    """True for an ELF executable without a program interpreter (statically linked)."""
    import struct
    try:
        with open(path, 'rb') as handle:
            head = handle.read(64)
            if head[:4] != b'\x7fELF' or head[4] != 2:
                return False
            phoff, = struct.unpack_from('<Q', head, 32)
            phentsize, phnum = struct.unpack_from('<HH', head, 54)
            handle.seek(phoff)
            for _index in range(phnum):
                ph = handle.read(phentsize)
                if struct.unpack_from('<I', ph, 0)[0] == 3:  # PT_INTERP
                    return False
            return True
    except (OSError, struct.error):
        return False


def ensure_busybox_image(client, check_mode=False):
    """A helper image built locally from the host's static busybox (no registry). Returns (name, temporary).

    In check mode a missing image is built under a throwaway tag that the caller removes afterwards, so that
    check mode predicts exactly and leaves the host as it was.
    """
    from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import NotFound
    try:
        client.inspect_image(BUSYBOX_IMAGE)
        return BUSYBOX_IMAGE, False
    except NotFound:
        pass
    busybox = next((p for p in ('/bin/busybox', '/usr/bin/busybox') if _is_static_elf(p)), None)
    if not busybox:
        raise HoldfastError("This volume is reached through the Engine and needs a helper container with a shell: "
                            "set helper_image to a local image that has sh, find, chown and chmod (e.g. busybox), "
                            "or install busybox-static on the host (apt-get install busybox-static) so that one is "
                            "built locally.")
    import io
    import tarfile
    import uuid
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w') as tar:
        info = tar.gettarinfo(busybox, arcname='bin/busybox')
        info.uid = info.gid = 0
        with open(busybox, 'rb') as handle:
            tar.addfile(info, handle)
        for applet in ('sh', 'find', 'chown', 'chmod', 'wc', 'xargs', 'cat', 'ls', 'tar', 'stat', 'cp', 'mkdir'):
            link = tarfile.TarInfo('bin/' + applet)
            link.type = tarfile.SYMTYPE
            link.linkname = 'busybox'
            tar.addfile(link)
    repository, tag = BUSYBOX_IMAGE.split(':')
    if check_mode:
        tag = 'check-%s' % uuid.uuid4().hex[:12]
    client.import_image_from_data(buf.getvalue(), repository=repository, tag=tag, changes=['ENV PATH=/bin'])
    return '%s:%s' % (repository, tag), check_mode


def engine_script(state, check_mode):
    """Pure: the shell script run in the helper container. Prints one line per changed entry kind."""
    for name in ('mode', 'file_mode', 'dir_mode'):
        spec = state[name]
        if spec is not None and spec.octal is None:
            raise HoldfastError("%s: symbolic modes need direct access to the volume's files; this volume is "
                                "reached through the Engine, so use an octal mode (e.g. '0750')." % name)
    if state.get('skip_hardlinks'):
        raise HoldfastError("skip_hardlinks needs direct access to the volume's files; not available for a volume "
                            "reached through the Engine.")
    if state['keep_exec']:
        raise HoldfastError("keep_file_exec_bits needs direct access to the volume's files; not available for a "
                            "volume reached through the Engine.")
    act = not check_mode
    lines = ['set -e', 'cd %s' % ENGINE_MOUNT, 'owner=0; mode=0']
    depth = '' if state['recurse'] else '-maxdepth 0'
    if state['uid'] is not None or state['gid'] is not None:
        tests = []
        if state['uid'] is not None:
            tests.append('! -user %d' % state['uid'])
        if state['gid'] is not None:
            tests.append('! -group %d' % state['gid'])
        if state['gid'] is None:
            who = '%d' % state['uid']  # not "uid:", which would set the user's login group
        elif state['uid'] is None:
            who = ':%d' % state['gid']
        else:
            who = '%d:%d' % (state['uid'], state['gid'])
        lines.append(r'owner=$(find . %s -xdev \( %s \) | wc -l)' % (depth, ' -o '.join(tests)))
        if act:
            lines.append(r'find . %s -xdev \( %s \) -exec chown -h %s {} +' % (depth, ' -o '.join(tests), who))
    parts = []
    if state['mode'] is not None:
        parts.append(('-maxdepth 0', state['mode'].octal))
    if state['recurse'] and state['dir_mode'] is not None:
        parts.append(('-mindepth 1 -type d', state['dir_mode'].octal))
    if state['recurse'] and state['file_mode'] is not None:
        parts.append(('-mindepth 1 -type f', state['file_mode'].octal))
    for selector, octal in parts:
        lines.append('n=$(find . %s -xdev ! -perm %04o | wc -l); mode=$((mode + n))' % (selector, octal))
        if act:
            lines.append('find . %s -xdev ! -perm %04o -exec chmod %04o {} +' % (selector, octal, octal))
    lines.append('echo "owner=$owner mode=$mode"')
    return '\n'.join(lines)


def run_engine(client, volume, state, image, check_mode):
    """Run the script in a helper container; returns dict(changed_owner, changed_mode)."""
    from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import (
        APIError,
        DockerException,
        api_error,
    )
    script = engine_script(state, check_mode)
    try:
        container = client.create_container(
            image, command=['sh', '-c', script], user='0:0', network_disabled=True,
            host_config=client.create_host_config(binds={volume: {'bind': ENGINE_MOUNT,
                                                                  'mode': 'ro' if check_mode else 'rw'}}),
            labels={'io.holdfast.volumes.helper': 'true'})
    except (DockerException, APIError) as exc:
        raise api_error('create the helper container from %s' % image, exc) from exc
    try:
        client.start(container['Id'])
        code = client.wait(container['Id'])
        code = code.get('StatusCode') if isinstance(code, dict) else code
        logs = client.logs(container['Id'], stdout=True, stderr=True).decode('utf-8', 'replace')
    except (DockerException, APIError) as exc:
        raise api_error('run the helper container', exc) from exc
    finally:
        try:
            client.remove_container(container['Id'], force=True)
        except (DockerException, APIError):
            pass
    match = re.search(r'owner=(\d+) mode=(\d+)', logs)
    if code != 0 or not match:
        raise HoldfastError("The helper container failed (exit %s): %s" % (code, logs[-800:].strip()))
    return dict(changed_owner=int(match.group(1)), changed_mode=int(match.group(2)))


def run_permissions(params, check_mode=False):
    """volume_permissions: decide the route, converge, report."""
    import time

    from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import (
        APIError,
        DockerException,
        connect,
        inspect_volume,
    )
    from ansible_collections.holdfast.volumes.plugins.module_utils._volume_access import (
        VolumeAccess,
        one_volume_or_path,
    )
    one_volume_or_path(params)
    state = wanted_state(params)
    started = time.time()
    if params.get('path'):
        if not os.path.isabs(params['path']):
            raise HoldfastError("path must be absolute.")
        route, root = 'host', params['path']
        client = None
    else:
        client = connect(params)
        vol = inspect_volume(client, params['volume'])
        if vol is None:
            if check_mode:  # an earlier task of the same check run would have created it
                return dict(changed=True, route=None, path=None, changed_owner=None, changed_mode=None,
                            changed_entries=None, examined=None, sample=[], skipped_mounts=[],
                            duration_seconds=round(time.time() - started, 3)), [
                    "Volume %s does not exist (yet): once it is created, its root directory would be set to the "
                    "wanted owner and mode." % params['volume']]
            raise HoldfastError("Volume %s does not exist; create it first (holdfast.volumes.docker_volumes)."
                                % params['volume'])
        route, root = VolumeAccess(client, params.get('docker_host')).route(vol)
    if route == 'host':
        stats = converge_tree(root, state, check_mode=check_mode)
    elif check_mode:
        # Counting needs a helper container run (and perhaps its image built): check mode does neither.
        engine_script(state, check_mode)  # the refusals a real run would meet (symbolic modes, keep_file_exec_bits)
        return dict(changed=True, route=route, path=root, changed_owner='unknown', changed_mode='unknown',
                    changed_entries='unknown', examined=None, sample=[], skipped_mounts=[], hardlinks=None,
                    duration_seconds=round(time.time() - started, 3)), [
            "Check mode cannot tell what would change in volume %s: it is reached through the Docker Engine, and "
            "looking inside needs a helper container run (check mode runs none). The counts are 'unknown'."
            % params['volume']]
    else:
        image, temporary = (params['helper_image'], False) if params.get('helper_image') \
            else ensure_busybox_image(client, check_mode)
        try:
            counts = run_engine(client, params['volume'], state, image, check_mode)
        finally:
            if temporary:
                try:
                    client.remove_image(image, force=True)
                except (DockerException, APIError):
                    pass  # best effort: our own throwaway tag
        stats = dict(counts, changed_entries=max(counts['changed_owner'], counts['changed_mode']), sample=[],
                     examined=None, skipped_mounts=[])
    changed = bool(stats['changed_owner'] or stats['changed_mode'])
    result = dict(changed=changed, route=route, path=root, changed_owner=stats['changed_owner'],
                  changed_mode=stats['changed_mode'], changed_entries=stats['changed_entries'],
                  examined=stats['examined'], sample=stats['sample'], skipped_mounts=stats['skipped_mounts'],
                  hardlinks=stats.get('hardlinks'), duration_seconds=round(time.time() - started, 3))
    if route == 'host':
        # changed_entries counts the root too: below it, only the others changed
        below = stats['changed_entries'] - (1 if stats['root_changed'] else 0)
        result['diff'] = dict(before_header='%s (root)' % root, after_header='%s (root)' % root,
                              before='owner: %(uid)s\ngroup: %(gid)s\nmode: %(mode)s\n' % stats['root_before'],
                              after='owner: %(uid)s\ngroup: %(gid)s\nmode: %(mode)s\n' % stats['root_after']
                              + ('entries changed below: %d\n' % below))
    warnings = []
    if stats.get('hardlinks_changed'):
        warnings.append(
            "%d files below %s that have more than one hard link %s changed: a hard link can also be reached from "
            "outside the tree. Set skip_hardlinks: true to leave such files alone."
            % (stats['hardlinks_changed'], root, 'would be' if check_mode else 'were'))
    return result, warnings
