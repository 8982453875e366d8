# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tar gate's reader: a strict parser of tar headers (ustar, GNU and pax headers, long names, global headers,
the GNU sparse formats) that turns a stream into member descriptions, exactly as GNU tar would read them or not at
all. _tar_gate judges each member and writes the canonical stream; the limits are described there.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

BLOCK = 512
XHDR_MAX = 4 * 1024 * 1024          # one extended header (pax, long name, long link, sparse map)
XHDR_TOTAL_MAX = 8 * 1024 * 1024    # all extended headers of one member, and the global records together
XATTR_MAX = 64 * 1024               # the xattr and ACL records of one member (Linux's XATTR_SIZE_MAX)
_PER_FILE_KEYS = ('path', 'linkpath')  # refused in a global header, as SCHILY.* and GNU.sparse.* are
MAX_SIZE = (1 << 63) - 1
MAX_ID = 0xFFFFFFFE
MAX_DEV = 8 ** 7 - 1  # what a ustar device field holds (Linux: 12-bit majors, 20-bit minors)
KIND_BY_TYPE = {b'0': 'file', b'\0': 'file', b'7': 'file', b'S': 'file', b'1': 'hardlink', b'2': 'symlink',
                b'3': 'char', b'4': 'block', b'5': 'dir', b'D': 'dir', b'6': 'fifo'}
_OCTAL_RE = re.compile(br'^ *([0-7]+)[ \0]*$')
_DECIMAL_RE = re.compile(br'^[0-9]{1,19}$')
_TIME_RE = re.compile(br'^(-?[0-9]{1,19})(?:\.([0-9]{1,30}))?$')
ZERO_BLOCK = b'\0' * BLOCK


class TarFormatError(Exception):
    """The stream is damaged, truncated, or not tar as the gate reads it exactly: nothing more is passed on."""


class GateLimit(Exception):
    """A bound was reached (disk reserve, the manifest's size): the extraction must stop and be cleaned up."""


# -- blocks and fields -------------------------------------------------------------------------------------------------
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


# -- members -----------------------------------------------------------------------------------------------------------
def read_member(reader, state):
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
        return _member(header, dict(size=size, records=list(state['global'].items()) + pending_x,
                                    long_name=long_name, long_link=long_link, offset=offset))


def _member(header, ext):
    """The member described by a header block and what its extended headers said (ext: size, records, long_name,
    long_link, offset)."""
    typeflag, size, offset = header[156:157], ext['size'], ext['offset']
    records, long_name, long_link = ext['records'], ext['long_name'], ext['long_link']
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


def read_sparse_map(reader, m):
    """Read the sparse map of a regular file in any GNU sparse format (after the checker accepted its name): sets
    m['sparse'] (the (offset, length) chunks, or None), m['stored'] (the bytes of data that follow) and m['size']."""
    header, typeflag, pax, sparse00 = m['sparse_source']
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
