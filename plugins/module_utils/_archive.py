# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup format: names, manifests, what counts as a complete backup, and archive safety rules.

Layout in a destination directory:

    <dest>/<volume>/<volume>-<YYYYMMDDTHHMMSSZ>.tar[.zst|.gz][.age]      the archive
    <dest>/<volume>/<volume>-<YYYYMMDDTHHMMSSZ>.manifest.json            written last: the backup is complete
    <dest>/<volume>/.holdfast-tmp-*                                       work in progress (stale if no lock held)
    <dest>/<volume>/.lock                                                 flock of the backup/rotation in progress

An archive is a plain tar stream (members ./...), optionally compressed (zstd or gzip) and optionally encrypted
with age, so `zstd -d < a.tar.zst | tar -x` or `age -d -i key a.tar.zst.age | zstd -d | tar -x` restores it by hand.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import errno
import hashlib
import json
import os
import posixpath
import re
import stat

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError

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
                     r'(?P<suffix>\.tar(?:\.zst|\.gz)?(?:\.age)?|\.manifest\.json)$')
ZSTD_MAGIC = b'\x28\xb5\x2f\xfd'
GZIP_MAGIC = b'\x1f\x8b'
AGE_MAGIC = b'age-encryption.org/v1'
PATH_MAX = 4096  # longer names cannot be created on Linux; checking them would cost quadratic time


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


MANIFEST_MAX = 1024 * 1024  # a manifest is a few hundred bytes; larger ones are not read


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


def read_manifest(path):
    """A local manifest: a regular file (no symlink, fifo or device) of at most MANIFEST_MAX bytes, of the right
    shape. ValueError (or OSError) otherwise."""
    with open_regular(path, 'manifest') as handle:
        text = handle.read(MANIFEST_MAX + 1)
    if len(text) > MANIFEST_MAX:
        raise ValueError('manifest %s is larger than %d bytes' % (path, MANIFEST_MAX))
    return check_manifest_shape(json.loads(text.decode('utf-8')))


def sha256_file(path, chunk=4 * 1024 * 1024):
    digest = hashlib.sha256()
    try:
        handle = open_regular(path, 'archive')
    except ValueError as exc:
        raise HoldfastError('%s: only a regular file is read.' % exc) from None
    with handle:
        while True:
            block = handle.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path, data, mode=0o600):
    """Write JSON to a new temporary name in the same directory (O_EXCL|O_NOFOLLOW: a planted file or symlink is
    never written through), fsync, rename, fsync the directory."""
    folder = os.path.dirname(path)
    while True:
        tmp = os.path.join(folder, '%smanifest-%d-%s' % (TMP_PREFIX, os.getpid(), os.urandom(4).hex()))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0),
                         mode)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, 'w') as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write('\n')
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


def parse_manifest_time(manifest):
    text = manifest.get('created')
    try:
        return datetime.datetime.strptime(text, '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        raise HoldfastError("manifest of %s has no valid 'created' time." % manifest.get('archive')) from None


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


def tarinfo_kind(member):
    if member.isreg():
        return 'file'
    if member.isdir():
        return 'dir'
    if member.issym():
        return 'symlink'
    if member.islnk():
        return 'hardlink'
    if member.ischr():
        return 'char'
    if member.isblk():
        return 'block'
    if member.isfifo():
        return 'fifo'
    return 'other'


def tree_fingerprint(root):
    """Cheap summary of a tree (entries, bytes, newest mtime, ownership sum) to see whether it changed."""
    entries = total = 0
    newest = 0
    owners = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            entries += 1
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
            newest = max(newest, st.st_mtime_ns)
            owners += st.st_uid * 7 + st.st_gid * 13 + stat.S_IMODE(st.st_mode)
    st = os.lstat(root)
    return dict(entries=entries, bytes=total, newest_mtime_ns=newest, owners=owners,
                root_mode=stat.S_IMODE(st.st_mode), root_uid=st.st_uid, root_gid=st.st_gid)


def posix_join(*parts):
    return posixpath.join(*parts)
