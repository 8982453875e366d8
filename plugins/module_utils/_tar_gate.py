# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tar gate: a strict tar reader that re-encodes every member it accepts, so the extractor sees only our headers.

Two tar parsers never read the same hostile bytes. The gate parses the archive once (ustar, GNU and pax headers,
long names, global headers, the GNU sparse formats), judges each member with a MemberChecker, and writes a NEW
stream for GNU tar (or the Docker Engine): a canonical ustar header, plus a pax header only for what ustar cannot
hold, for exactly the members it accepted, each followed by exactly the data length the gate decided. Whatever the
input's framing tricks (a size field GNU tar reads differently, a pax global header, data on a hard link), the
extractor can only see what the checker saw.

Strict and bounded by construction:
- numbers: octal digits (leading spaces, then NUL/space padding), or GNU base-256 when positive; anything else
  (a NUL-led, signed, negative or garbage field) is refused; every value has a range;
- extended headers (pax, GNU long name and link, sparse maps) are capped (XHDR_MAX) and refused beyond; one
  member's xattrs and ACLs together at XATTR_MAX; a pax global header may not carry per-file data (path, linkpath,
  SCHILY.*, GNU.sparse.*), which the gate would otherwise write again for every member;
- a NUL byte inside a name or link target is refused (GNU tar would stop at it, the checker would not);
- member types: regular, directory, symlink, hard link, devices, fifo; any other type is refused; links,
  directories and devices carry no data;
- a DiskGuard stops the stream before the target's filesystem falls under a reserve, and a byte limit stops it as
  soon as the stream exceeds the size the manifest recorded.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import re

from ansible_collections.holdfast.volumes.plugins.module_utils._tar_read import (
    BLOCK,
    ZERO_BLOCK,
    BlockReader,
    GateLimit,
    TarFormatError,
    read_member,
    read_sparse_map,
)

OUT_BUFFER = 1024 * 1024
TYPE_BY_KIND = {'file': b'0', 'hardlink': b'1', 'symlink': b'2', 'char': b'3', 'block': b'4', 'dir': b'5',
                'fifo': b'6'}


# -- writing -----------------------------------------------------------------------------------------------------------
_MAX7, _MAX11 = 8 ** 7, 8 ** 11


def pax_record(key, value):
    body = b' ' + key + b'=' + value + b'\n'
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode('ascii') + body


def ustar_header(name, typeflag, *, mode=0o644, uid=0, gid=0, size=0, mtime=0, linkname=b'', devmajor=0,
                 devminor=0):
    """One ustar block, every field exactly its width (a longer one would shift every later byte of the stream)."""
    if len(name) > 100 or len(linkname) > 100:
        raise ValueError('a name or link of more than 100 bytes does not fit a ustar header')
    if not (0 <= mode < _MAX7 and 0 <= uid < _MAX7 and 0 <= gid < _MAX7 and 0 <= size < _MAX11
            and 0 <= mtime < _MAX11 and 0 <= devmajor < _MAX7 and 0 <= devminor < _MAX7):
        raise ValueError('a number that does not fit its ustar field')
    block = b''.join((name.ljust(100, b'\0'), b'%07o\0%07o\0%07o\0%011o\0%011o\0' % (mode, uid, gid, size, mtime),
                      b'        ', typeflag, linkname.ljust(100, b'\0'), b'ustar\x0000', _UGNAME,
                      b'%07o\0%07o\0' % (devmajor, devminor), _PREFIX))
    header = block[:148] + b'%06o\0 ' % sum(block) + block[156:]
    if len(header) != BLOCK:
        raise AssertionError('a ustar header of %d bytes' % len(header))
    return header


_UGNAME = b'\0' * 64
_PREFIX = b'\0' * 167


def _padding(size):
    return b'\0' * (-size % BLOCK)


class Emitter(object):
    """Batches our headers and small data into large writes to the sink (the extractor's stdin)."""

    def __init__(self, sink):
        self.sink = sink
        self.buf = bytearray()
        self.total = 0

    def write(self, data):
        self.total += len(data)
        if len(data) >= OUT_BUFFER:
            self.flush()
            self.sink.write(data)
            return
        self.buf += data
        if len(self.buf) >= OUT_BUFFER:
            self.flush()

    def flush(self):
        if self.buf:
            self.sink.write(self.buf)
            self.buf = bytearray()


_XHEADERS = {}  # the pax header block depends only on the size of its records


def encode_member(m):
    """Our own header(s) for an accepted member: ustar, plus one pax header for what ustar cannot hold."""
    records = []
    path = m['path'].encode('utf-8', 'surrogateescape')
    name = b'./' + path if path else b'./'
    link = m['link'].encode('utf-8', 'surrogateescape') if m['kind'] in ('symlink', 'hardlink') else b''
    if m['kind'] == 'hardlink':
        link = b'./' + link
    size = m['stored'] if m['kind'] == 'file' else 0
    if m.get('sparse') is not None:
        records += [(b'GNU.sparse.major', b'1'), (b'GNU.sparse.minor', b'0'), (b'GNU.sparse.name', name),
                    (b'GNU.sparse.realsize', b'%d' % m['size'])]
        name = b'./GNUSparseFile.0/' + (os.path.basename(path) or b'f')[:60]
    elif len(name) > 100:
        records.append((b'path', name))
        name = b'./@PaxPath'
    if len(link) > 100:
        records.append((b'linkpath', link))
        link = b'@PaxLinkPath'
    fields = dict(size=size, uid=m['uid'], gid=m['gid'])
    for key, width in (('size', 12), ('uid', 8), ('gid', 8)):
        if fields[key] >= 8 ** (width - 1):
            records.append((key.encode('ascii'), b'%d' % fields[key]))
            fields[key] = 0
    mtime = m['mtime']
    whole = int(mtime.split('.')[0])
    if '.' in mtime or not 0 <= whole < 8 ** 11:
        records.append((b'mtime', mtime.encode('ascii')))
        whole = 0 if not 0 <= whole < 8 ** 11 else whole
    for key, value in m['extra']:
        records.append((key, value))
    out = b''
    if records:
        body = b''.join(pax_record(k, v) for k, v in records)
        xheader = _XHEADERS.get(len(body))
        if xheader is None:
            xheader = ustar_header(b'./@PaxHeader', b'x', size=len(body))
            if len(_XHEADERS) < 4096:
                _XHEADERS[len(body)] = xheader
        out += xheader + body + _padding(len(body))
    out += ustar_header(name, TYPE_BY_KIND[m['kind']], mode=m['mode'], uid=fields['uid'], gid=fields['gid'],
                        size=fields['size'], mtime=whole, linkname=link, devmajor=m['devmajor'],
                        devminor=m['devminor'])
    return out


def sparse_map_block(entries):
    text = ('%d\n' % len(entries)).encode('ascii') + b''.join(b'%d\n%d\n' % e for e in entries)
    return text + _padding(len(text))


# -- bounds on the disk ------------------------------------------------------------------------------------------------
class DiskGuard(object):
    """Stops the extraction before the filesystem holding `path` falls under `reserve` free bytes (or 1 % of its
    inodes). Members are charged before they are written; statvfs is asked again whenever the bytes charged since
    the last look could exhaust half of the headroom it saw, and every 64 MiB inside a large member."""

    LAG = 4 * 1024 * 1024  # what may sit in our buffer, the pipe and the extractor's buffers, not yet on disk
    TICK = 64 * 1024 * 1024

    def __init__(self, path, reserve, statvfs=os.statvfs):
        self.path = path
        self.reserve = reserve
        self.statvfs = statvfs
        self.pending = 0
        self.pending_inodes = 0
        self.slack = 0
        self.slack_inodes = 0
        self.since_tick = 0

    def free(self):
        st = self.statvfs(self.path)
        inodes = st.f_favail if st.f_files else None
        inode_reserve = st.f_files // 100 if st.f_files else 0
        return st.f_bavail * st.f_frsize, inodes, inode_reserve

    def _fail(self, free, need):
        raise GateLimit('stopped before the filesystem of %s falls under its reserve of %s free (%s free, %s more '
                        'needed); nothing was changed in the target'
                        % (self.path, human(self.reserve), human(free), human(need)))

    def check(self, need=0):
        free, inodes, inode_reserve = self.free()
        headroom = free - self.LAG - self.reserve
        if need > headroom:
            self._fail(free, need)
        if inodes is not None and inodes - self.pending_inodes <= inode_reserve:
            raise GateLimit('stopped before the filesystem of %s runs out of inodes (%d left); nothing was changed '
                            'in the target' % (self.path, inodes))
        self.pending = 0
        self.pending_inodes = 0
        self.slack = (headroom - need) // 2
        self.slack_inodes = (inodes - inode_reserve) // 2 if inodes is not None else 1 << 62

    def charge(self, nbytes):
        """Before a member is written: it will take about nbytes (data rounded to blocks, plus its inode)."""
        self.pending += nbytes
        self.pending_inodes += 1
        if self.pending > self.slack or self.pending_inodes > self.slack_inodes:
            self.check(self.pending)

    def tick(self, done, remaining):
        """While a large member is copied: someone else may be filling the disk too."""
        self.since_tick += done
        if self.since_tick >= self.TICK:
            self.since_tick = 0
            free, _inodes, _reserve = self.free()
            if free - self.LAG - remaining < self.reserve:
                self._fail(free, remaining)


def human(n):
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if abs(n) < 1024 or unit == 'TiB':
            return ('%d %s' % (n, unit)) if unit == 'B' else ('%.1f %s' % (n, unit))
        n /= 1024.0
    return str(n)


def reserve_bytes(spec, path):
    """Pure-ish: the reserve from the option (`5%`, `1G`, `512M`, `0`) for the filesystem holding path."""
    text = str(spec).strip()
    if text.endswith('%'):
        try:
            pct = float(text[:-1])
        except ValueError:
            raise ValueError('bad percentage %r' % spec) from None
        if not 0 <= pct < 100:
            raise ValueError('a percentage between 0 and 100, not %r' % spec)
        st = os.statvfs(path)
        return int(st.f_blocks * st.f_frsize * pct / 100)
    match = re.match(r'^([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)i?B?$', text, re.IGNORECASE)
    if not match:
        raise ValueError('a size like 1G, 512M or 0, or a percentage like 5%%, not %r' % spec)
    factor = 1024 ** ' KMGT'.index(match.group(2).upper() or ' ')
    return int(float(match.group(1)) * factor)


def default_reserve(path):
    """The default reserve: 5 % of the filesystem, at most 1 GiB."""
    st = os.statvfs(path)
    return min(int(st.f_blocks * st.f_frsize * 0.05), 1024 ** 3)


# -- the gate ----------------------------------------------------------------------------------------------------------
def gate_stream(raw, checker, sink=None, *, guard=None, limit=None, record=None):
    """Read a tar stream, check each member with `checker`, and write our own re-encoding of the accepted members
    to `sink` (None: only check). A refused member stops the walk (see checker.refused); nothing of it is written.

    guard: a DiskGuard (or None). limit: the most bytes the stream may hold (the manifest's bytes_raw), or None.
    record: a list that receives a description of every accepted member (path, kind, link, size, mode, uid, gid,
    and the sha256 of a regular file's data), to compare with what landed.
    Returns the number of bytes read. Raises TarFormatError for damaged or ambiguous streams, GateLimit at a bound.
    """
    reader = BlockReader(raw, limit=limit)
    out = Emitter(sink) if sink is not None else None
    state = {'global_bytes': 0, 'global': {}}  # the pax global records in force, applied to every later member
    tick = guard.tick if guard is not None else None
    while True:
        m = read_member(reader, state)
        if m is None:
            break
        path = checker.check(m['path'], m['kind'], m['link'])
        if path is None and checker.refused:
            return reader.total
        if path is None:
            raise TarFormatError('a member the checker neither accepted nor refused: %r' % m['path'])
        m['path'] = path
        if m.get('sparse_source'):
            read_sparse_map(reader, m)
            if m['sparse'] is not None:
                m['head'] = sparse_map_block(m['sparse'])
        if m['kind'] == 'hardlink':
            m['link'] = checker.normalise(m['link'])
        digest = None
        if record is not None:
            entry = dict(path=path, kind=m['kind'], link=m['link'] if m['kind'] in ('symlink', 'hardlink') else None,
                         size=m['size'] if m['kind'] == 'file' else 0, mode=m['mode'], uid=m['uid'], gid=m['gid'],
                         sparse=m['sparse'] is not None)
            if m['kind'] == 'file' and m['sparse'] is None:
                digest = hashlib.sha256()
            record.append(entry)
        if guard is not None:
            guard.charge(((m['stored'] + 4095) // 4096 + 1) * 4096)
        data_sink = out
        if out is not None:
            out.write(encode_member(dict(m, stored=m['stored'] + len(m.get('head') or b''))))
            if m.get('head'):
                out.write(m['head'])
        if digest is not None:
            data_sink = _Tee(out, digest)
        reader.copy(m['stored'], data_sink, tick if m['stored'] > DiskGuard.TICK else None)
        pad = -m['stored'] % BLOCK
        reader.copy(pad + m['skip'] + (-m['skip'] % BLOCK), None)
        if out is not None and pad:
            out.write(ZERO_BLOCK[:pad])
        if digest is not None:
            entry['sha256'] = digest.hexdigest()
    if out is not None:
        out.write(ZERO_BLOCK * 2)
        out.flush()
    reader.drain()
    return reader.total


class _Tee(object):
    def __init__(self, sink, digest):
        self.sink = sink
        self.digest = digest

    def write(self, data):
        self.digest.update(data)
        if self.sink is not None:
            self.sink.write(data)
