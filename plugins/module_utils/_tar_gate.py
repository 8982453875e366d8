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

BLOCK = 512
XHDR_MAX = 4 * 1024 * 1024          # one extended header (pax, long name, long link, sparse map)
XHDR_TOTAL_MAX = 8 * 1024 * 1024    # all extended headers of one member, and the global records together
XATTR_MAX = 64 * 1024               # the xattr and ACL records of one member (Linux's XATTR_SIZE_MAX)
_PER_FILE_KEYS = ('path', 'linkpath')  # refused in a global header, as SCHILY.* and GNU.sparse.* are
MAX_SIZE = (1 << 63) - 1
MAX_ID = 0xFFFFFFFE
MAX_DEV = 8 ** 7 - 1  # what a ustar device field holds (Linux: 12-bit majors, 20-bit minors)
OUT_BUFFER = 1024 * 1024
KIND_BY_TYPE = {b'0': 'file', b'\0': 'file', b'7': 'file', b'S': 'file', b'1': 'hardlink', b'2': 'symlink',
                b'3': 'char', b'4': 'block', b'5': 'dir', b'D': 'dir', b'6': 'fifo'}
TYPE_BY_KIND = {'file': b'0', 'hardlink': b'1', 'symlink': b'2', 'char': b'3', 'block': b'4', 'dir': b'5',
                'fifo': b'6'}
_OCTAL_RE = re.compile(br'^ *([0-7]+)[ \0]*$')
_DECIMAL_RE = re.compile(br'^[0-9]{1,19}$')
_TIME_RE = re.compile(br'^(-?[0-9]{1,19})(?:\.([0-9]{1,30}))?$')
ZERO_BLOCK = b'\0' * BLOCK


class TarFormatError(Exception):
    """The stream is damaged, truncated, or not tar as the gate reads it exactly: nothing more is passed on."""


class GateLimit(Exception):
    """A bound was reached (disk reserve, the manifest's size): the extraction must stop and be cleaned up."""


# -- reading ------------------------------------------------------------------------------------------------------
class BlockReader(object):
    """Exact reads and fast copies over a raw binary stream (pipe), counting bytes, with an optional byte limit."""

    def __init__(self, raw, scratch=1024 * 1024, limit=None):
        self.raw = raw
        self.buf = bytearray()
        self.pos = 0
        self.total = 0
        self.limit = limit
        self.scratch = bytearray(scratch)

    def _count(self, n):
        self.total += n
        if self.limit is not None and self.total > self.limit:
            raise GateLimit('the archive holds more than the %d bytes its manifest records (bytes_raw): it is not '
                            'the archive the manifest describes' % self.limit)

    def read_exact(self, n):
        while len(self.buf) - self.pos < n:
            chunk = self.raw.read(max(65536, n - (len(self.buf) - self.pos)))
            if not chunk:
                raise TarFormatError('unexpected end of the tar stream (truncated archive)')
            self.buf = self.buf[self.pos:] + chunk
            self.pos = 0
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        self._count(n)
        return out

    def copy(self, n, sink, tick=None):
        """Pass n bytes on to sink (None: discard), without building Python objects for large data."""
        avail = len(self.buf) - self.pos
        if avail:
            take = min(avail, n)
            self._count(take)
            if sink is not None:
                sink.write(memoryview(self.buf)[self.pos:self.pos + take])
            self.pos += take
            n -= take
        view = memoryview(self.scratch)
        while n > 0:
            got = self.raw.readinto(view[:min(n, len(self.scratch))])
            if not got:
                raise TarFormatError('unexpected end of the tar stream (truncated archive)')
            self._count(got)
            if sink is not None:
                sink.write(view[:got])
            n -= got
            if tick is not None:
                tick(got, n)

    def drain(self):
        """Read (and count) whatever follows the end of the archive, so the whole file is hashed."""
        self._count(len(self.buf) - self.pos)
        self.pos = len(self.buf)
        view = memoryview(self.scratch)
        while True:
            got = self.raw.readinto(view)
            if not got:
                return
            self._count(got)


def _field(data):
    return data.split(b'\0', 1)[0]


def _long_value(data):
    """A GNU long name or link: the value and its single NUL terminator; a NUL inside is refused later."""
    return data[:-1] if data.endswith(b'\0') else data


def parse_number(data, what, maximum=MAX_SIZE):
    """A numeric header field, strictly: octal digits, or positive GNU base-256. Refuses anything else."""
    if data[:1] == b'\x80':  # GNU base-256, positive
        value = 0
        for byte in bytearray(data[1:]):
            value = (value << 8) | byte
    elif data[:1] and data[0] & 0x80:
        raise TarFormatError('a negative or unknown binary number in the %s field of a tar header' % what)
    else:
        match = _OCTAL_RE.match(data)
        if not match:
            raise TarFormatError('the %s field of a tar header is not a plain octal number (a NUL-led, signed '
                                 'or garbage field is read differently by different tar programs)' % what)
        value = int(match.group(1), 8)
    if value > maximum:
        raise TarFormatError('the %s field of a tar header is out of range: %d' % (what, value))
    return value


def _decimal(value, what, maximum=MAX_SIZE):
    if not _DECIMAL_RE.match(value):
        raise TarFormatError('pax record %s is not a plain decimal number: %r' % (what, value[:40]))
    number = int(value)
    if number > maximum:
        raise TarFormatError('pax record %s is out of range: %d' % (what, number))
    return number


def _time(value, what):
    match = _TIME_RE.match(value)
    if not match:
        raise TarFormatError('pax record %s is not a time: %r' % (what, value[:40]))
    seconds = int(match.group(1))
    frac = (match.group(2) or b'')[:9]
    return '%d.%s' % (seconds, frac.decode('ascii')) if frac else '%d' % seconds


def checksum_ok(header):
    stored = parse_number(header[148:156], 'checksum', maximum=BLOCK * 255)
    return stored == sum(header) - sum(header[148:156]) + 8 * 32


def pax_records(data):
    """Pax records in order, strictly: `<length> <key>=<value>\\n` with the length covering the record exactly."""
    out = []
    pos = 0
    end = len(data)
    while pos < end:
        if data[pos:pos + 1] == b'\0':
            if data[pos:].strip(b'\0'):
                raise TarFormatError('bad pax record at offset %d' % pos)
            break  # padding after the last record
        space = data.find(b' ', pos, pos + 21)
        if space < 0 or not _DECIMAL_RE.match(data[pos:space]):
            raise TarFormatError('bad pax record at offset %d' % pos)
        length = int(data[pos:space])
        if length < space - pos + 4 or pos + length > end or data[pos + length - 1:pos + length] != b'\n':
            raise TarFormatError('bad pax record length at offset %d' % pos)
        key, sep, value = data[space + 1:pos + length - 1].partition(b'=')
        if not sep or not key or b'\0' in key or b'\n' in key:
            raise TarFormatError('bad pax record key at offset %d' % pos)
        out.append((key.decode('utf-8', 'surrogateescape'), value))
        pos += length
    return out


def _parse_sparse_entries(data, count, what):
    entries = []
    for i in range(count):
        raw_off, raw_len = data[i * 24:i * 24 + 12], data[i * 24 + 12:i * 24 + 24]
        if raw_off[:1] == b'\0':
            break
        entries.append((parse_number(raw_off, what + ' offset'), parse_number(raw_len, what + ' length')))
    return entries


def _check_map(entries, realsize, stored):
    pos = 0
    total = 0
    for offset, length in entries:
        if offset < pos or offset + length > realsize:
            raise TarFormatError('a sparse map with overlapping or out-of-range entries')
        pos = offset + length
        total += length
    if total != stored:
        raise TarFormatError('a sparse map that does not match the member\'s data (%d bytes mapped, %d stored)'
                             % (total, stored))


# -- writing ------------------------------------------------------------------------------------------------------
_MAX7, _MAX11 = 8 ** 7, 8 ** 11


def pax_record(key, value):
    body = b' ' + key + b'=' + value + b'\n'
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode('ascii') + body


def ustar_header(name, typeflag, mode=0o644, uid=0, gid=0, size=0, mtime=0, linkname=b'', devmajor=0,
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


# -- bounds on the disk -------------------------------------------------------------------------------------------
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


# -- the gate -----------------------------------------------------------------------------------------------------
def _read_member(reader, state):
    """Read headers up to the next real member; returns the member dict (data not yet read), or None at the end."""
    pending_x = []
    long_name = long_link = None
    xbytes = 0
    while True:
        header = reader.read_exact(BLOCK)
        if header == ZERO_BLOCK:
            second = reader.read_exact(BLOCK)
            if second != ZERO_BLOCK:
                raise TarFormatError('a lone zero block in the middle of the tar stream (damaged archive)')
            if pending_x or long_name is not None or long_link is not None:
                raise TarFormatError('an extended header without a member')
            return None
        offset = reader.total - BLOCK
        if not checksum_ok(header):
            raise TarFormatError('bad tar header checksum at byte %d (damaged archive)' % offset)
        typeflag = header[156:157]
        size = parse_number(header[124:136], 'size')
        if typeflag in (b'L', b'K', b'x', b'g'):
            if size > XHDR_MAX:
                raise TarFormatError('an extended header of %d bytes at byte %d: more than the %d allowed'
                                     % (size, offset, XHDR_MAX))
            xbytes += size
            if xbytes > XHDR_TOTAL_MAX:
                raise TarFormatError('extended headers of more than %d bytes for one member' % XHDR_TOTAL_MAX)
            data = reader.read_exact(size + (-size % BLOCK))[:size]
            if typeflag == b'L':
                long_name = _long_value(data)
            elif typeflag == b'K':
                long_link = _long_value(data)
            elif typeflag == b'x':
                pending_x.extend(pax_records(data))
            else:  # a global header applies to every later member, as GNU tar reads it; we apply it ourselves
                records = pax_records(data)
                for key, _value in records:
                    if key in _PER_FILE_KEYS or key.startswith(('SCHILY.', 'GNU.sparse.')):
                        raise TarFormatError('a pax global header with the per-file keyword %s (it would apply to '
                                             'every member)' % key[:100])
                state['global_bytes'] += size
                if state['global_bytes'] > XHDR_TOTAL_MAX:
                    raise TarFormatError('pax global headers of more than %d bytes' % XHDR_TOTAL_MAX)
                state['global'].update(records)
                if len(state['global']) > 64:
                    raise TarFormatError('pax global headers with more than 64 keywords')
            continue
        return _member(reader, header, typeflag, size, list(state['global'].items()) + pending_x, long_name,
                       long_link, offset)


def _member(reader, header, typeflag, size, records, long_name, long_link, offset):
    kind = KIND_BY_TYPE.get(typeflag, 'other')
    magic = header[257:263]
    name = _field(header[0:100])
    if magic == b'ustar\0':
        prefix = _field(header[345:500])
        if prefix:
            name = prefix + b'/' + name
    link = _field(header[157:257])
    if long_name is not None:
        name = long_name
    if long_link is not None:
        link = long_link
    pax = {}
    extra = {}
    sparse00 = []
    for key, value in records:
        if key == 'GNU.sparse.offset' or key == 'GNU.sparse.numbytes':
            sparse00.append((key, value))
        elif key.startswith('SCHILY.xattr.') or key in ('SCHILY.acl.access', 'SCHILY.acl.default'):
            extra[key.encode('utf-8', 'surrogateescape')] = value  # the last one wins
        elif value == b'':
            pax.pop(key, None)  # an empty value deletes the record (POSIX), e.g. a global one
        else:
            pax[key] = value
    if sum(len(k) + len(v) for k, v in extra.items()) > XATTR_MAX:  # written again for every member otherwise
        raise TarFormatError('extended attributes and ACLs of more than %d bytes for one member' % XATTR_MAX)
    if 'path' in pax:
        name = pax['path']
    if 'GNU.sparse.name' in pax:
        name = pax['GNU.sparse.name']
    if 'linkpath' in pax:
        link = pax['linkpath']
    if 'size' in pax:
        size = _decimal(pax['size'], 'size')
    if b'\0' in name or b'\0' in link:  # GNU tar stops at the NUL of what we would write; the checker would not
        raise TarFormatError('a member name or link target with a NUL byte in it (%r)'
                             % name.split(b'\0', 1)[0].decode('utf-8', 'replace')[:200])
    if kind == 'file' and typeflag == b'\0' and name.endswith(b'/'):
        kind = 'dir'  # an old (v7) directory
    m = dict(kind=kind, typeflag=typeflag, offset=offset,
             path=name.decode('utf-8', 'surrogateescape'), link=link.decode('utf-8', 'surrogateescape'),
             mode=parse_number(header[100:108], 'mode') & 0o7777,
             uid=_decimal(pax['uid'], 'uid', MAX_ID) if 'uid' in pax else parse_number(header[108:116], 'uid', MAX_ID),
             gid=_decimal(pax['gid'], 'gid', MAX_ID) if 'gid' in pax else parse_number(header[116:124], 'gid', MAX_ID),
             mtime=_time(pax['mtime'], 'mtime') if 'mtime' in pax else str(parse_number(header[136:148], 'mtime')),
             devmajor=0, devminor=0, extra=list(extra.items()), stored=size, size=size, sparse=None, skip=0)
    if kind == 'symlink' and not link:
        raise TarFormatError('a symlink (%s) with an empty target' % m['path'])
    if kind in ('char', 'block'):
        m['devmajor'] = parse_number(header[329:337], 'devmajor', MAX_DEV)
        m['devminor'] = parse_number(header[337:345], 'devminor', MAX_DEV)
    if kind == 'file':
        m['sparse_source'] = (header, typeflag, pax, sparse00)  # read after the checker accepted the name
    elif typeflag == b'D' or kind == 'other':
        m['skip'] = size  # a GNU dumpdir (its listing is not extracted), or a type the checker refuses
        m['stored'] = m['size'] = 0
    elif size:
        raise TarFormatError('a %s member (%s) that carries %d bytes of data: tar programs disagree on where the next '
                             'header starts' % (kind, m['path'], size))
    return m


def _sparse(reader, m, header, typeflag, pax, sparse00):
    """Read the sparse map of a member in any GNU sparse format; the member's data then holds only the chunks."""
    size = m['stored']
    if typeflag == b'S':  # old GNU sparse: a map in the header, then extension blocks
        entries = _parse_sparse_entries(header[386:482], 4, 'sparse')
        extended = header[482:483] not in (b'\0', b'')
        nblocks = 0
        while extended:
            ext = reader.read_exact(BLOCK)
            nblocks += 1
            if nblocks * BLOCK > XHDR_MAX:
                raise TarFormatError('a sparse map of more than %d bytes' % XHDR_MAX)
            entries += _parse_sparse_entries(ext[:504], 21, 'sparse')
            extended = ext[504:505] not in (b'\0', b'')
        realsize = parse_number(header[483:495], 'sparse real size')
        m['sparse'] = entries
    elif pax.get('GNU.sparse.major') is not None or pax.get('GNU.sparse.map') is not None or sparse00:
        major = pax.get('GNU.sparse.major')
        realsize = _decimal(pax.get('GNU.sparse.realsize') or pax.get('GNU.sparse.size') or b'', 'realsize')
        if major == b'1' and pax.get('GNU.sparse.minor') == b'0':
            blocks = []
            newlines = 0
            count = None
            while True:  # the map leads the data: decimal lines, padded to a block
                if len(blocks) * BLOCK >= XHDR_MAX or (len(blocks) + 1) * BLOCK > size:
                    raise TarFormatError('a sparse map of more than %d bytes, or longer than its member' % XHDR_MAX)
                blocks.append(reader.read_exact(BLOCK))
                newlines += blocks[-1].count(b'\n')
                if count is None and newlines:
                    count = _decimal(b''.join(blocks).split(b'\n', 1)[0], 'sparse map count', XHDR_MAX)
                if count is not None and newlines > 2 * count:
                    break
            text = b''.join(blocks)
            lines = text.split(b'\n')
            numbers = [_decimal(v, 'sparse map entry') for v in lines[1:2 * count + 1]]
            if b'\n'.join(lines[2 * count + 1:]).strip(b'\0'):
                raise TarFormatError('garbage after a sparse map')
            size -= len(text)
            entries = list(zip(numbers[0::2], numbers[1::2]))
        elif major is None and pax.get('GNU.sparse.map') is not None:  # format 0.1
            numbers = [_decimal(v, 'sparse map entry') for v in pax['GNU.sparse.map'].split(b',')] \
                if pax['GNU.sparse.map'] else []
            if len(numbers) % 2:
                raise TarFormatError('a sparse map with an odd number of values')
            entries = list(zip(numbers[0::2], numbers[1::2]))
        elif major is None and sparse00:  # format 0.0: repeated offset/numbytes records, in order
            if len(sparse00) % 2 or any(k != ('GNU.sparse.offset', 'GNU.sparse.numbytes')[i % 2]
                                        for i, (k, _v) in enumerate(sparse00)):
                raise TarFormatError('a sparse map with unpaired offset/numbytes records')
            entries = [(_decimal(sparse00[i][1], 'sparse offset'), _decimal(sparse00[i + 1][1], 'sparse length'))
                       for i in range(0, len(sparse00), 2)]
        else:
            raise TarFormatError('an unknown GNU sparse format version %r.%r'
                                 % (major, pax.get('GNU.sparse.minor')))
        m['sparse'] = entries
    else:
        return
    _check_map(m['sparse'], realsize, size)
    m['stored'] = size
    m['size'] = realsize
    m['head'] = sparse_map_block(m['sparse'])


def gate_stream(raw, checker, sink=None, guard=None, limit=None, record=None):
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
        m = _read_member(reader, state)
        if m is None:
            break
        path = checker.check(m['path'], m['kind'], m['link'])
        if path is None and checker.refused:
            return reader.total
        if path is None:
            raise TarFormatError('a member the checker neither accepted nor refused: %r' % m['path'])
        m['path'] = path
        if m.get('sparse_source'):
            _sparse(reader, m, *m['sparse_source'])
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
