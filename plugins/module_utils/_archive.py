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
    if '/' not in name:
        return name
    clean = re.sub(r'[^A-Za-z0-9_.-]+', '_', name.strip('/')) or 'root'
    return '%s-%s' % (clean[:80], hashlib.sha256(name.encode('utf-8')).hexdigest()[:8])


def sha256_file(path, chunk=4 * 1024 * 1024):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
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
    """Write JSON to a temporary name in the same directory, fsync, rename, fsync the directory."""
    folder = os.path.dirname(path)
    tmp = os.path.join(folder, '%smanifest-%d' % (TMP_PREFIX, os.getpid()))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
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


def backup_folders(dest, volumes=None):
    """The folders of a backup destination: those of the given volumes (or host paths), or every folder."""
    if not os.path.isdir(dest):
        raise HoldfastError("dest %s is not a directory." % dest)
    if volumes:
        return [os.path.join(dest, safe_folder_name(v)) for v in volumes]
    return sorted(os.path.join(dest, d) for d in os.listdir(dest)
                  if os.path.isdir(os.path.join(dest, d)) and not d.startswith('.'))


def list_backups(folder):
    """Scan one volume folder: complete backups (newest first), orphan archives, temporaries, unknown files.

    A backup is complete when its manifest exists, parses, and names an archive that exists beside it.
    """
    complete, orphans, temps, unknown, bad_manifests = [], [], [], [], []
    try:
        entries = sorted(os.listdir(folder))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return dict(complete=[], orphans=[], temps=[], unknown=[], bad_manifests=[])
        raise HoldfastError("Cannot list backup folder %s: %s" % (folder, exc.strerror)) from exc
    names = set(entries)
    claimed = set()
    for entry in entries:
        if entry == '.lock':
            continue
        if entry.startswith(TMP_PREFIX):
            temps.append(entry)
            continue
        match = NAME_RE.match(entry)
        if not match:
            unknown.append(entry)
            continue
        if match.group('suffix') != MANIFEST_SUFFIX:
            continue
        path = os.path.join(folder, entry)
        try:
            with open(path) as handle:
                manifest = json.load(handle)
            if manifest.get('format') != FORMAT or not manifest.get('archive') or not manifest.get('sha256'):
                raise ValueError('not a holdfast manifest')
            if os.path.basename(manifest['archive']) != manifest['archive'] or manifest_name_for(
                    manifest['archive']) != entry:
                raise ValueError('archive name does not match the manifest name')
        except (ValueError, OSError, HoldfastError) as exc:
            bad_manifests.append(dict(name=entry, error=str(exc)))
            continue
        if manifest['archive'] not in names:
            bad_manifests.append(dict(name=entry, error='archive %s is missing' % manifest['archive']))
            continue
        claimed.add(manifest['archive'])
        complete.append(dict(manifest=manifest, manifest_path=path,
                             archive_path=os.path.join(folder, manifest['archive']),
                             time=parse_manifest_time(manifest)))
    for entry in entries:
        match = NAME_RE.match(entry)
        if match and match.group('suffix') != MANIFEST_SUFFIX and entry not in claimed:
            orphans.append(entry)
    complete.sort(key=lambda b: b['time'], reverse=True)
    return dict(complete=complete, orphans=orphans, temps=temps, unknown=unknown, bad_manifests=bad_manifests)


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


# -- a streaming tar reader that checks each member before passing it on ------------------------------------------
BLOCK = 512
KIND_BY_TYPE = {b'0': 'file', b'\0': 'file', b'7': 'file', b'S': 'file', b'1': 'hardlink', b'2': 'symlink',
                b'3': 'char', b'4': 'block', b'5': 'dir', b'D': 'dir', b'6': 'fifo'}


class TarFormatError(Exception):
    pass


class BlockReader(object):
    """Exact reads and fast skips over a raw binary stream (pipe), counting bytes."""

    def __init__(self, raw, scratch=1024 * 1024):
        self.raw = raw
        self.buf = bytearray()
        self.pos = 0
        self.total = 0
        self.scratch = bytearray(scratch)

    def read_exact(self, n):
        while len(self.buf) - self.pos < n:
            chunk = self.raw.read(max(65536, n))
            if not chunk:
                raise TarFormatError('unexpected end of the tar stream (truncated archive)')
            self.buf = self.buf[self.pos:] + chunk
            self.pos = 0
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        self.total += n
        return out

    def copy(self, n, sink):
        """Pass n bytes on to sink (None: discard), without building Python objects for large data."""
        avail = len(self.buf) - self.pos
        if avail:
            take = min(avail, n)
            if sink is not None:
                sink.write(memoryview(self.buf)[self.pos:self.pos + take])
            self.pos += take
            self.total += take
            n -= take
        view = memoryview(self.scratch)
        while n > 0:
            got = self.raw.readinto(view[:min(n, len(self.scratch))])
            if not got:
                raise TarFormatError('unexpected end of the tar stream (truncated archive)')
            if sink is not None:
                sink.write(view[:got])
            self.total += got
            n -= got

    def drain(self, sink):
        if len(self.buf) > self.pos:
            if sink is not None:
                sink.write(memoryview(self.buf)[self.pos:])
            self.total += len(self.buf) - self.pos
            self.pos = len(self.buf)
        view = memoryview(self.scratch)
        while True:
            got = self.raw.readinto(view)
            if not got:
                return
            if sink is not None:
                sink.write(view[:got])
            self.total += got


def _field(data):
    return data.split(b'\0', 1)[0]


def _number(data):
    if data and data[0] & 0x80:  # base-256 (GNU) for large values
        value = 0
        for byte in bytearray(data[1:]):
            value = (value << 8) | byte
        return value
    text = _field(data).strip(b' \0')
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise TarFormatError('bad number in a tar header: %r' % data) from None


def _checksum_ok(header):
    stored = _number(header[148:156])
    computed = sum(bytearray(header[:148])) + 8 * 32 + sum(bytearray(header[156:]))
    return stored == computed


def _pax_records(data):
    out = {}
    pos = 0
    while pos < len(data):
        space = data.find(b' ', pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            raise TarFormatError('bad pax record') from None
        record = data[space + 1:pos + length - 1]
        key, _sep, value = record.partition(b'=')
        out[key.decode('utf-8', 'replace')] = value
        pos += length
        if length <= 0:
            raise TarFormatError('bad pax record length')
    return out


def gate_tar_stream(raw, checker, sink=None):
    """Read a tar stream member by member; check each with `checker` before passing its bytes to `sink`.

    A refused member is never passed on: the walk stops there and its problems are in checker.refused.
    Returns the number of bytes read. Raises TarFormatError for damaged or truncated streams.
    """
    reader = BlockReader(raw)
    pending = []
    long_name = long_link = None
    pax = {}
    while True:
        header = reader.read_exact(BLOCK)
        if header == b'\0' * BLOCK:
            second = reader.read_exact(BLOCK)
            if second != b'\0' * BLOCK:
                raise TarFormatError('a lone zero block in the middle of the tar stream (damaged archive)')
            if pending:
                raise TarFormatError('extended header without a member')
            if sink is not None:
                sink.write(header + second)
            reader.drain(sink)
            return reader.total
        if not _checksum_ok(header):
            raise TarFormatError('bad tar header checksum at byte %d (damaged archive)' % (reader.total - BLOCK))
        typeflag = header[156:157]
        size = _number(header[124:136])
        padded = (size + BLOCK - 1) // BLOCK * BLOCK
        if typeflag in (b'L', b'K', b'x', b'g'):
            data = reader.read_exact(padded)
            pending.append(header + data)
            if typeflag == b'L':
                long_name = _field(data[:size]).decode('utf-8', 'surrogateescape')
            elif typeflag == b'K':
                long_link = _field(data[:size]).decode('utf-8', 'surrogateescape')
            elif typeflag == b'x':
                pax = _pax_records(data[:size])
            continue
        extra = b''
        if typeflag == b'S' and header[482:483] not in (b'\0', b''):
            # old GNU sparse: extension headers follow while their last byte says so
            while True:
                ext = reader.read_exact(BLOCK)
                extra += ext
                if ext[504:505] in (b'\0', b''):
                    break
        name = _field(header[0:100]).decode('utf-8', 'surrogateescape')
        if header[257:263] == b'ustar\0':
            prefix = _field(header[345:500]).decode('utf-8', 'surrogateescape')
            if prefix:
                name = prefix + '/' + name
        link = _field(header[157:257]).decode('utf-8', 'surrogateescape')
        if long_name is not None:
            name = long_name
        if long_link is not None:
            link = long_link
        if 'path' in pax:
            name = pax['path'].decode('utf-8', 'surrogateescape')
        if 'GNU.sparse.name' in pax:  # GNU sparse formats 0.1/1.0: GNU tar extracts to this name
            name = pax['GNU.sparse.name'].decode('utf-8', 'surrogateescape')
        if 'linkpath' in pax:
            link = pax['linkpath'].decode('utf-8', 'surrogateescape')
        if 'size' in pax:
            try:
                size = int(pax['size'])
            except ValueError:
                raise TarFormatError('bad pax size') from None
            padded = (size + BLOCK - 1) // BLOCK * BLOCK
        kind = KIND_BY_TYPE.get(typeflag, 'other')
        if checker.check(name, kind, link) is None and checker.refused:
            return reader.total
        if sink is not None:
            for block in pending:
                sink.write(block)
            sink.write(header)
            if extra:
                sink.write(extra)
        pending = []
        long_name = long_link = None
        pax = {}
        reader.copy(padded, sink)
