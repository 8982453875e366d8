# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup store: names, folder layout, manifests, listing, the folder lock and atomic writes.

Layout in a destination directory:

    <dest>/<volume>/<volume>-<YYYYMMDDTHHMMSSZ>.tar[.zst|.gz][.age]      the archive
    <dest>/<volume>/<volume>-<YYYYMMDDTHHMMSSZ>.manifest.json            written last: the backup is complete
    <dest>/<volume>/.holdfast-tmp-*                                       work in progress (stale if no lock held)
    <dest>/<volume>/.lock                                                 flock of the backup/rotation in progress

An archive is a plain tar stream (members ./...), optionally compressed (zstd or gzip) and optionally encrypted
with age, so `zstd -d < a.tar.zst | tar -x` or `age -d -i key a.tar.zst.age | zstd -d | tar -x` restores it by hand.
A remote store (backup_sync) has the same layout; classify_folder is the one reading of a folder, local or remote.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import errno
import fcntl
import hashlib
import json
import os
import re
import stat
import time

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._safe_fs import (
    check_private_dir,
    open_dir,
    open_private_file,
)

FORMAT = 'holdfast.volumes/backup'
FORMAT_VERSION = 1
# The version in galaxy.yml, written into every manifest. Modules run from an AnsiballZ zip and the scheduled runner
# from a zip of module_utils, where neither galaxy.yml nor MANIFEST.json exists, so it is this one constant; a unit
# test (test_small_ones.py) pins it to galaxy.yml, so a release cannot bump one without the other.
COLLECTION_VERSION = '0.1.0'
TMP_PREFIX = '.holdfast-tmp-'
MANIFEST_SUFFIX = '.manifest.json'
SUFFIXES = {'zstd': '.tar.zst', 'gzip': '.tar.gz', 'none': '.tar'}
STAMP_FORMAT = '%Y%m%dT%H%M%SZ'
NAME_RE = re.compile(r'^(?P<base>(?P<volume>.+)-(?P<stamp>\d{8}T\d{6}Z))'
                     r'(?P<suffix>\.tar(?:\.zst|\.gz)?(?:\.age)?|\.manifest\.json)\Z')  # \Z: no trailing newline
MANIFEST_MAX = 1024 * 1024  # a manifest is a few hundred bytes; larger ones are not read


def stamp(when):
    return when.astimezone(datetime.timezone.utc).strftime(STAMP_FORMAT)


def archive_name(volume, when, compression, encrypted):
    return '%s-%s%s%s' % (volume, stamp(when), SUFFIXES[compression], '.age' if encrypted else '')


def manifest_name_for(archive_basename):
    match = NAME_RE.match(archive_basename)
    if not match or match.group('suffix') == MANIFEST_SUFFIX:
        raise HoldfastError("%s is not a holdfast archive name." % archive_basename)
    return match.group('base') + MANIFEST_SUFFIX


def safe_folder_name(name):
    """The folder for a source: the volume name, or a readable, collision-free name for a host path."""
    if name in ('', '.', '..'):
        raise HoldfastError("%r is neither a volume name nor a host path." % name)
    if '/' not in name:
        return name
    clean = re.sub(r'[^A-Za-z0-9_.-]+', '_', name.strip('/')) or 'root'
    return '%s-%s' % (clean[:80], hashlib.sha256(name.encode('utf-8')).hexdigest()[:8])


def open_regular(path, what='file'):
    """A binary handle on a regular file, opened without following a symlink and without blocking on a fifo: a
    manifest or archive planted as a symlink to /dev/zero, a fifo or a device is refused (ValueError)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError('the %s %s is a symlink (not followed)' % (what, path)) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError('the %s %s is not a regular file' % (what, path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, 'rb')
    except BaseException:
        os.close(fd)
        raise


def open_archive_file(path):
    """open_regular for an archive, refusals as a HoldfastError (the message every reader of archives gives)."""
    try:
        return open_regular(path, 'archive')
    except ValueError as exc:
        raise HoldfastError('%s: only a regular file is read.' % exc) from None


def read_manifest(path):
    """A local manifest: a regular file (no symlink, fifo or device) of at most MANIFEST_MAX bytes, of the right
    shape. ValueError (or OSError) otherwise."""
    with open_regular(path, 'manifest') as handle:
        text = handle.read(MANIFEST_MAX + 1)
    if len(text) > MANIFEST_MAX:
        raise ValueError('manifest %s is larger than %d bytes' % (path, MANIFEST_MAX))
    return check_manifest_shape(json.loads(text.decode('utf-8')))


def check_manifest_shape(manifest):
    """Pure: a manifest is hostile input too. Raise ValueError unless it is a JSON object whose fields a restore
    reads have the right types."""
    if not isinstance(manifest, dict):
        raise ValueError('a manifest must be a JSON object')
    for key in ('archive', 'sha256', 'created', 'volume', 'driver', 'compression'):
        if manifest.get(key) is not None and not isinstance(manifest[key], str):
            raise ValueError('manifest field %s must be a string' % key)
    for key in ('labels', 'driver_options'):
        value = manifest.get(key)
        if value is not None and not (isinstance(value, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items())):
            raise ValueError('manifest field %s must be a map of strings' % key)
    for key in ('file_count', 'bytes_raw', 'bytes_stored'):
        value = manifest.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError('manifest field %s must be a non-negative integer' % key)
    return manifest


def parse_manifest_time(manifest):
    text = manifest.get('created')
    try:
        return datetime.datetime.strptime(text, '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        raise HoldfastError("manifest of %s has no valid 'created' time." % manifest.get('archive')) from None


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path, data, mode=0o600, what='manifest'):
    """The one temp-file-and-rename writer: write data (bytes or text) to a new private temporary name in the same
    directory (O_EXCL|O_NOFOLLOW: a planted file or symlink is never written through; the name starts with
    TMP_PREFIX, so a killed run's leftover is a store temporary), fsync, rename over path, fsync the directory.
    A failure leaves path as it was."""
    folder = os.path.dirname(path) or '.'
    if isinstance(data, str):
        data = data.encode('utf-8')
    while True:
        tmp = os.path.join(folder, '%s%s-%d-%s' % (TMP_PREFIX, what, os.getpid(), os.urandom(4).hex()))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0),
                         mode)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(folder)


def write_json_atomic(path, data, mode=0o600):
    """write_atomic of data as indented, sorted JSON (manifests, restore markers and journals)."""
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + '\n', mode)


def backup_folders(dest, volumes=None):
    """The folders of a backup destination: those of the given volumes (or host paths), or every folder."""
    if not os.path.isdir(dest):
        raise HoldfastError("dest %s is not a directory." % dest)
    if volumes:
        return [os.path.join(dest, safe_folder_name(v)) for v in volumes]
    # lstat: a symlink in dest (say evil -> /etc) is not a backup folder; nothing follows it
    return sorted(os.path.join(dest, d) for d in os.listdir(dest)
                  if not d.startswith('.') and stat.S_ISDIR(os.lstat(os.path.join(dest, d)).st_mode))


def list_backups(folder):
    """Scan one volume folder: complete backups (newest first), orphan archives, temporaries, unknown files.

    A backup is complete when its manifest exists, parses, and names an archive that exists beside it.
    """
    try:
        entries = sorted(os.listdir(folder))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return dict(complete=[], orphans=[], temps=[], unknown=[], bad_manifests=[])
        raise HoldfastError("Cannot list backup folder %s: %s" % (folder, exc.strerror)) from exc
    temps = [e for e in entries if e.startswith(TMP_PREFIX)]
    found, orphans, unknown, bad_manifests = classify_folder(
        [e for e in entries if e != '.lock' and not e.startswith(TMP_PREFIX)],
        lambda entry: read_manifest(os.path.join(folder, entry)))
    complete = [dict(manifest=manifest, manifest_path=os.path.join(folder, entry),
                     archive_path=os.path.join(folder, manifest['archive']), time=when)
                for entry, manifest, when in found]
    return dict(complete=complete, orphans=orphans, temps=temps, unknown=unknown, bad_manifests=bad_manifests)


def classify_folder(names, load):
    """The one reading of a store folder, local or remote. names: its entries (the lock and temporaries set aside);
    load(entry): the parsed manifest of that entry (ValueError, OSError or HoldfastError when unreadable).

    Returns (complete, orphans, unknown, bad_manifests): complete is [(manifest entry, manifest, created)], newest
    first; a backup is complete when its manifest parses, names the archive its own name promises, and that archive
    is among names.
    """
    names = sorted(names)
    present = set(names)
    complete, unknown, bad_manifests = [], [], []
    claimed = set()
    for entry in names:
        match = NAME_RE.match(entry)
        if not match:
            unknown.append(entry)
            continue
        if match.group('suffix') != MANIFEST_SUFFIX:
            continue
        try:
            manifest = load(entry)
            if manifest.get('format') != FORMAT or not manifest.get('archive') or not manifest.get('sha256'):
                raise ValueError('not a holdfast manifest')
            if os.path.basename(manifest['archive']) != manifest['archive'] or manifest_name_for(
                    manifest['archive']) != entry:
                raise ValueError('archive name does not match the manifest name')
        except (ValueError, OSError, HoldfastError) as exc:
            bad_manifests.append(dict(name=entry, error=str(exc)))
            continue
        if manifest['archive'] not in present:
            bad_manifests.append(dict(name=entry, error='archive %s is missing' % manifest['archive']))
            continue
        try:
            when = parse_manifest_time(manifest)
        except HoldfastError as exc:
            bad_manifests.append(dict(name=entry, error=exc.msg))
            continue
        claimed.add(manifest['archive'])
        complete.append((entry, manifest, when))
    orphans = []
    for entry in names:
        match = NAME_RE.match(entry)
        if match and match.group('suffix') != MANIFEST_SUFFIX and entry not in claimed:
            orphans.append(entry)
    complete.sort(key=lambda item: item[2], reverse=True)
    return complete, orphans, unknown, bad_manifests


class FolderLock(object):
    """flock on <folder>/<name> (.lock: one backup, restore or rotation of a folder at a time); waits up to
    `timeout` seconds, then fails saying who holds it (`holder`)."""

    def __init__(self, folder, timeout, dir_fd=None, name='.lock', holder='Another backup, restore or rotation'):
        self.name = name
        self.path = os.path.join(folder, name)
        self.timeout = timeout
        self.dir_fd = dir_fd  # the folder's open descriptor: the lock is created in it, not by name
        self.holder = holder
        self.fd = None

    def __enter__(self):
        # never through a planted symlink, fifo or device (open_private_file checks it is a regular file)
        if self.dir_fd is not None:
            self.fd = open_private_file(self.name, os.O_RDWR | os.O_CREAT, 0o600, dir_fd=self.dir_fd)
        else:
            self.fd = open_private_file(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                os.close(self.fd)
                raise HoldfastError("%s holds the lock %s; waited %ss. Try again later or raise lock_timeout."
                                    % (self.holder, self.path, self.timeout))
            time.sleep(0.2)

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        return False


def clean_temporaries(folder):
    """Remove temporaries of interrupted runs. Call only while holding the folder lock."""
    removed = []
    for entry in os.listdir(folder):
        if entry.startswith(TMP_PREFIX):
            try:
                os.unlink(os.path.join(folder, entry))
                removed.append(entry)
            except OSError:
                pass
    return removed


def open_backup_folder(folder):
    """A backup folder that root may act in: a real directory (not a symlink) of root's that no other user can
    change (check_private_dir, as the backup requires), opened without following a symlink and checked to be the
    directory just judged. Returns its descriptor."""
    checked = check_private_dir(folder, 'the backup folder')
    fd = open_dir(os.path.realpath(os.path.dirname(folder)) + '/' + os.path.basename(folder))
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (checked.st_dev, checked.st_ino):
        os.close(fd)
        raise HoldfastError("The backup folder %s changed while it was being opened; nothing was done. Run again."
                            % folder)
    return fd
