# -*- coding: utf-8 -*-
"""The tar gate against hostile archives built byte by byte, and against GNU tar: what GNU tar extracts from the
gate's output is exactly what the checker accepted."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import stat
import subprocess
import tarfile
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trees import populate, snapshot

from ansible_collections.holdfast.volumes.plugins.module_utils._members import MemberChecker
from ansible_collections.holdfast.volumes.plugins.module_utils._restore_read import TAR_EXTRACT
from ansible_collections.holdfast.volumes.plugins.module_utils._tar_gate import (
    DiskGuard,
    gate_stream,
    pax_record,
    reserve_bytes,
    ustar_header,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._tar_read import XHDR_MAX, GateLimit, TarFormatError

END = b'\0' * 1024


def header(name, typeflag=b'0', size=0, size_field=None, linkname=b'', mode=0o644):
    """A ustar header with a valid checksum; size_field replaces the size field's 12 bytes as they are."""
    raw = bytearray(ustar_header(name, typeflag, mode=mode, size=size, linkname=linkname))
    if size_field is not None:
        raw[124:136] = size_field.ljust(12, b'\0')[:12]
    return fix_checksum(raw)


def fix_checksum(raw):
    raw = bytearray(raw)
    raw[148:156] = b' ' * 8
    raw[148:156] = ('%06o' % sum(raw)).encode('ascii') + b'\0 '
    return bytes(raw)


def pax(typeflag, records):
    body = b''.join(pax_record(k, v) for k, v in records)
    return header(b'./@PaxHeader', typeflag, size=len(body)) + body + b'\0' * (-len(body) % 512)


def gate(data, allow_special=False, escaping=False, record=None, **kw):
    checker = MemberChecker(allow_special=allow_special, refuse_escaping_links=escaping)
    out = io.BytesIO()
    gate_stream(io.BufferedReader(io.BytesIO(data)), checker, out, record=record, **kw)
    return checker, out.getvalue()


def gnu_tar_lists(data):
    return subprocess.run(['tar', '-tv', '--numeric-owner', '-f', '-'], input=data, capture_output=True,
                          check=False).stdout


ROOT = header(b'./', b'5', mode=0o755)
FIFO = header(b'./fifo', b'6')


def test_nul_led_size_field_is_refused_where_gnu_tar_would_extract_a_fifo():
    # the checker of old read this size as 0; GNU tar reads 512 and then... no: it reads the NUL-led field as 512
    # bytes, so the next block is data to one parser and a header to the other
    data = ROOT + header(b'./a', size_field=b'\x000000001000') + FIFO + END
    smuggled = header(b'./a', size_field=b'\x000000000000') + b''
    assert smuggled  # the same trick either way round: the gate refuses the field itself
    with pytest.raises(TarFormatError, match='not a plain octal number'):
        gate(data, allow_special=True)


def test_pax_global_header_is_applied_by_the_gate_not_hidden_from_it():
    # GNU tar applies the global size=0 to ./a, so the block that looks like a's data is the fifo's header
    data = ROOT + pax(b'g', [(b'size', b'0')]) + header(b'./a', size=512) + FIFO + END
    assert b'fifo' in gnu_tar_lists(data)  # the differential is real
    checker, out = gate(data)
    assert [r['member'] for r in checker.refused] == ['./fifo']  # the gate sees the fifo too, and refuses it
    assert b'fifo' not in out
    record = []
    checker, out = gate(data, allow_special=True, record=record)
    assert [(m['path'], m['kind']) for m in record] == [('', 'dir'), ('a', 'file'), ('fifo', 'fifo')]
    assert b'g' not in out[156:157] and b'fifo' in gnu_tar_lists(out)


@pytest.mark.parametrize('field', [b'-0000001000', b'\xff' * 12, b'0000000001x', b'', b' ', b'+0000000010',
                                   b'\x80' + b'\x7f' + b'\0' * 10])
def test_negative_garbage_and_out_of_range_sizes_are_refused_at_once(field):
    data = ROOT + header(b'./a', size_field=field) + b'x' * 512 + END
    signal.alarm(5)  # the old reader stepped backwards forever on a negative size
    try:
        with pytest.raises(TarFormatError):
            gate(data)
    finally:
        signal.alarm(0)


def test_positive_base256_is_read():
    data = ROOT + header(b'./a', size_field=b'\x80' + b'\0' * 10 + b'\x02') + b'ok' + b'\0' * 510 + END
    record = []
    gate(data, record=record)
    assert record[1]['size'] == 2


@pytest.mark.parametrize('typeflag', [b'x', b'g', b'L', b'K'])
def test_huge_extended_headers_are_refused_without_reading_them(typeflag):
    data = ROOT + header(b'././@LongLink', typeflag, size=1 << 31) + b'1' * 16384
    tracemalloc.start()
    try:
        with pytest.raises(TarFormatError, match='more than'):
            gate(data)
        assert tracemalloc.get_traced_memory()[1] < 16 * 1024 * 1024  # the old checker took the claimed 2 GiB
    finally:
        tracemalloc.stop()


def test_many_extended_headers_for_one_member_are_capped():
    big = pax(b'x', [(b'comment', b'c' * (XHDR_MAX - 100))])
    with pytest.raises(TarFormatError, match='more than'):
        gate(ROOT + big * 3 + header(b'./a') + END)


def test_extended_headers_at_the_cap_take_linear_time():
    signal.alarm(20)  # quadratic work on megabytes of tiny records would take hours
    try:
        tiny = b'6 a=b\n' * ((1 << 19) // 6)
        data = ROOT + header(b'./@PaxHeader', b'x', size=len(tiny)) + tiny + b'\0' * (-len(tiny) % 512)
        xattrs = b''.join(pax_record(b'SCHILY.xattr.user.a', b'%d' % i) for i in range(20000))  # the last wins
        data += header(b'./f') + header(b'./@PaxHeader', b'x', size=len(xattrs)) + xattrs \
            + b'\0' * (-len(xattrs) % 512)
        pairs = 50000  # a GNU sparse 1.0 map of half a megabyte, leading the data
        text = b'%d\n' % pairs + b''.join(b'%d\n1\n' % (i * 2) for i in range(pairs))
        text += b'\0' * (-len(text) % 512)
        sparse = [(b'GNU.sparse.major', b'1'), (b'GNU.sparse.minor', b'0'), (b'GNU.sparse.name', b'./s'),
                  (b'GNU.sparse.realsize', b'%d' % (pairs * 2))]
        data += pax(b'x', sparse) + header(b'./s', size=len(text) + pairs) + text + b'1' * pairs \
            + b'\0' * (-pairs % 512) + END
        record = []
        gate(data, record=record)
        assert [(m['path'], m['size']) for m in record] == [('', 0), ('f', 0), ('s', pairs * 2)]
        globals_ = pax(b'g', [(b'k%d' % i, b'v') for i in range(65)])
        with pytest.raises(TarFormatError, match='64 keywords'):
            gate(ROOT + globals_ + header(b'./f') + END)
    finally:
        signal.alarm(0)


@pytest.mark.parametrize('typeflag, link', [(b'2', b'target'), (b'1', b'./f'), (b'5', b''), (b'6', b'')])
def test_members_without_data_must_not_claim_any(typeflag, link):
    data = ROOT + header(b'./f', size=1) + b'f' + b'\0' * 511 + header(b'./x', typeflag, size=512, linkname=link) \
        + header(b'./y', b'6') + END
    with pytest.raises(TarFormatError, match='carries 512 bytes'):
        gate(data, allow_special=True)


def test_unknown_types_and_pax_sparse_name_tricks_are_refused():
    checker, out = gate(ROOT + header(b'./v', b'V') + END)
    assert checker.refused[0]['reason'] == 'unsupported member type'
    checker, out = gate(ROOT + pax(b'x', [(b'path', b'../../etc/x')]) + header(b'./innocent') + END)
    assert checker.refused[0]['member'] == '../../etc/x' and b'innocent' not in out


def test_escaping_symlink_smuggled_as_data_never_reaches_a_seed():
    shadow = header(b'./shadow', b'2', linkname=b'/etc/shadow')
    data = ROOT + header(b'./a', size_field=b'\x000000001000') + shadow + END
    with pytest.raises(TarFormatError):
        gate(data, escaping=True)
    checker, out = gate(ROOT + pax(b'g', [(b'size', b'0')]) + header(b'./a', size=512) + shadow + END, escaping=True)
    assert checker.refused[0]['member'] == './shadow' and b'shadow' not in out


def test_manifest_limit_stops_the_stream_early():
    data = ROOT + header(b'./big', size=1 << 20) + b'\0' * (1 << 20) + END
    with pytest.raises(GateLimit, match='bytes_raw'):
        gate(data, limit=100000)
    gate(data, limit=len(data))


def test_disk_guard_charges_before_writing():
    class Vfs:
        f_frsize, f_files, f_favail, f_blocks = 4096, 1000, 1000, 100000

        def __init__(self, free):
            self.f_bavail = free // 4096

    free = [DiskGuard.LAG + (50 << 20)]
    guard = DiskGuard('/x', reserve=10 << 20, statvfs=lambda _p: Vfs(free[0]))
    guard.charge(30 << 20)  # fits: 50 MiB headroom above the reserve
    free[0] -= 30 << 20  # written
    guard.charge(1 << 20)
    with pytest.raises(GateLimit, match='reserve'):
        guard.charge(30 << 20)  # 61 MiB in all would eat into it
    assert reserve_bytes('1G', '/') == 1 << 30 and reserve_bytes('0', '/') == 0
    assert 0 < reserve_bytes('5%', '/') < os.statvfs('/').f_blocks * os.statvfs('/').f_frsize
    with pytest.raises(ValueError):
        reserve_bytes('lots', '/')


# -- GNU tar on the gate's output --------------------------------------------------------------------------------
def extract(data, where):
    os.mkdir(where)
    return subprocess.run(TAR_EXTRACT + ['-C', where], input=data, capture_output=True, check=False,
                          env=dict(os.environ, LC_ALL='C'))


def without_xattrs(snap):
    for item in snap[0].values():
        item.pop('xattrs', None)
    return snap


@pytest.mark.parametrize('fmt, sparse', [('posix', '1.0'), ('posix', '0.1'), ('posix', '0.0'), ('gnu', None),
                                         ('oldgnu', None)])
def test_gate_then_gnu_tar_restores_what_plain_gnu_tar_restores(tmp_path, fmt, sparse):
    src = str(tmp_path / 'src')
    populate(src)
    deep = os.path.join(src, *['directory%02d' % i for i in range(12)])
    os.makedirs(deep)
    with open(os.path.join(deep, 'f'), 'w') as handle:
        handle.write('deep')
    os.symlink('l' * 150, os.path.join(src, 'long-link'))
    os.mkfifo(os.path.join(src, 'fifo'))
    args = ['tar', '--create', '--file=-', '--numeric-owner', '--sparse', '--format=' + fmt, '-C', src, '.']
    if fmt == 'posix':
        args[4:4] = ['--xattrs', '--xattrs-include=*', '--acls', '--sparse-version=' + sparse]
    data = subprocess.run(args, capture_output=True, check=True).stdout
    checker, out = gate(data, allow_special=True)
    assert not checker.refused
    assert extract(out, str(tmp_path / 'gated')).returncode == 0
    assert extract(data, str(tmp_path / 'plain')).returncode == 0
    gated, plain = snapshot(str(tmp_path / 'gated')), snapshot(str(tmp_path / 'plain'))
    if fmt == 'posix':
        assert gated == plain == snapshot(src)  # owners, modes, links, xattrs, ACLs, times, hard links
    else:
        assert without_xattrs(gated) == without_xattrs(plain)
    assert os.lstat(str(tmp_path / 'gated' / 'sparse')).st_blocks < 1024  # still sparse


# -- fuzz: mutate header fields of a valid archive; what lands is what the checker reported -------------------------
def _base_archive():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as tar:
        def add(name, kind='file', data=b'', link='', mode=0o644):
            info = tarfile.TarInfo(name)
            info.mode = mode
            info.mtime = 1700000000
            if kind == 'dir':
                info.type = tarfile.DIRTYPE
            elif kind == 'sym':
                info.type, info.linkname = tarfile.SYMTYPE, link
            elif kind == 'hard':
                info.type, info.linkname = tarfile.LNKTYPE, link
            else:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if kind == 'file' else None)
        add('.', 'dir', mode=0o755)
        add('d', 'dir', mode=0o750)
        add('d/file', data=b'hello\n')
        # data that is itself a header: a fifo and an escaping symlink, waiting for a framing mistake
        carrier = header(b'./smuggled-fifo', b'6') + header(b'./shadow', b'2', linkname=b'/etc/shadow')
        add('carrier', data=carrier)
        add('link', 'sym', link='d/file')
        add('hard', 'hard', link='d/file')
        add('n' * 120, data=b'long name')
        add('last', data=b'z' * 700)
    return buf.getvalue()


BASE = _base_archive()
HEADERS = [i for i in range(0, len(BASE) - 1024, 512) if BASE[i + 257:i + 262] == b'ustar'
           and BASE[i + 148:i + 156].strip(b' \0').isdigit()]
FIELDS = dict(name=(0, 100), mode=(100, 8), uid=(108, 8), size=(124, 12), mtime=(136, 12), typeflag=(156, 1),
              linkname=(157, 100), magic=(257, 8), devmajor=(329, 8), prefix=(345, 155))
VALUES = [b'\0', b'\0' + b'0000001000', b'-0000001000', b'0000001000', b'00000000000', b'\x80', b'\xff' * 12,
          b'0', b'1', b'2', b'3', b'5', b'6', b'g', b'x', b'L', b'S', b'/etc', b'../..', b'ustar  \0', b'ustar\x0000',
          b'shadow', b' 777 ', b'00000001750', b'00000002000', b'10 path=/\n']


def _landed(root):
    """What GNU tar wrote: path -> (kind, link or sha256, mode, uid, gid), and inode groups."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st_ = os.lstat(full)
            if stat.S_ISLNK(st_.st_mode):
                out[rel] = ('symlink', os.readlink(full))
            elif stat.S_ISDIR(st_.st_mode):
                out[rel] = ('dir', None, stat.S_IMODE(st_.st_mode), st_.st_uid, st_.st_gid)
            elif stat.S_ISREG(st_.st_mode):
                with open(full, 'rb') as handle:
                    out[rel] = ('file', hashlib.sha256(handle.read()).hexdigest(), stat.S_IMODE(st_.st_mode),
                                st_.st_uid, st_.st_gid)
            else:
                out[rel] = ('special', None)
    return out


def _expected(record):
    """The tree the accepted members make, applied in order (later members replace earlier ones)."""
    out = {}
    for m in record:
        if m['path'] == '':
            continue
        if m['kind'] == 'symlink':
            out[m['path']] = ('symlink', m['link'])
        elif m['kind'] == 'dir':
            out[m['path']] = ('dir', None, m['mode'], m['uid'], m['gid'])
        elif m['kind'] == 'file':
            out[m['path']] = ('file', m['sha256'], m['mode'], m['uid'], m['gid'])
        elif m['kind'] == 'hardlink':
            out[m['path']] = out[m['link']]
        else:
            out[m['path']] = ('special', None)
    return out


@settings(max_examples=int(os.environ.get('HOLDFAST_FUZZ_EXAMPLES', '120')), deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from(HEADERS), st.sampled_from(sorted(FIELDS)), st.sampled_from(VALUES),
                          st.booleans()), min_size=1, max_size=3))
def test_fuzz_whatever_lands_is_what_the_checker_reported(tmp_path_factory, mutations):
    data = bytearray(BASE)
    for at, field, value, keep_checksum in mutations:
        start, width = FIELDS[field]
        data[at + start:at + start + width] = value[:width].ljust(width, b'\0')
        if not keep_checksum:
            data[at:at + 512] = fix_checksum(data[at:at + 512])
    record = []
    try:
        checker, out = gate(bytes(data), allow_special=True, escaping=True, record=record)
    except TarFormatError:
        return  # refused as damaged: a restore then removes its staging directory, nothing lands
    if checker.refused:
        return
    sandbox = tmp_path_factory.mktemp('fuzz')
    result = extract(out, str(sandbox / 'target'))
    assert os.listdir(str(sandbox)) == ['target']  # nothing beside the target, ever
    assert result.returncode == 0, result.stderr
    landed, expected = _landed(str(sandbox / 'target')), _expected(record)
    # GNU tar creates missing parent directories itself: those are the only entries the record may not list
    parents = set('/'.join(p.split('/')[:i]) for p in expected for i in range(1, p.count('/') + 1))
    implicit = dict((p, v) for p, v in landed.items() if p not in expected)
    assert all(v[0] == 'dir' and p in parents for p, v in implicit.items()), implicit
    assert dict((p, v) for p, v in landed.items() if p in expected) == expected


def _long(typeflag, value):
    return header(b'././@LongLink', typeflag, size=len(value)) + value + b'\0' * (-len(value) % 512)


@pytest.mark.parametrize('extended', [
    pax(b'x', [(b'linkpath', b'x/../..\0/..')]),
    pax(b'x', [(b'path', b'ok\0/../../etc/x')]),
    pax(b'x', [(b'GNU.sparse.name', b'./ok\0..')]),
    _long(b'K', b'x/../..\0/..\0'),
    _long(b'L', b'./ok\0../x\0'),
], ids=['pax-linkpath', 'pax-path', 'pax-sparse-name', 'gnu-long-link', 'gnu-long-name'])
def test_nul_inside_a_name_or_link_is_refused(extended):
    # GNU tar stops at the NUL of what the gate writes (esc -> x/../.., escaping); the checker read the whole value
    data = ROOT + header(b'./x', b'5', mode=0o755) + extended + header(b'./esc', b'2', linkname=b'x') + END
    with pytest.raises(TarFormatError, match='NUL byte'):
        gate(data, escaping=True)


def test_gnu_long_name_keeps_working_without_its_terminator_or_with_one():
    name = b'./' + b'd' * 150
    for value in (name, name + b'\0'):
        record = []
        gate(ROOT + _long(b'L', value) + header(b'./short') + END, record=record)
        assert record[1]['path'] == 'd' * 150


@pytest.mark.parametrize('key', [b'SCHILY.xattr.user.big', b'SCHILY.acl.access', b'path', b'linkpath',
                                 b'GNU.sparse.name'])
def test_per_file_keywords_in_a_global_header_are_refused(key):
    # a global xattr of 8 MiB and N empty members made the gate write N x 8 MiB
    data = ROOT + pax(b'g', [(key, b'v' * 1000)]) + header(b'./a') + header(b'./b') + END
    with pytest.raises(TarFormatError, match='global header with the per-file keyword'):
        gate(data)
    gate(ROOT + pax(b'g', [(b'comment', b'c' * 1000), (b'mtime', b'1')]) + header(b'./a') + END)  # still read


def test_one_members_xattrs_are_capped():
    at_cap = [(b'SCHILY.xattr.user.a', b'v' * (64 * 1024 - 40))]
    checker, out = gate(ROOT + pax(b'x', at_cap) + header(b'./a') + END)
    assert b'v' * (64 * 1024 - 40) in out
    over = [(b'SCHILY.xattr.user.a', b'v' * 40000), (b'SCHILY.xattr.user.b', b'v' * 40000)]
    with pytest.raises(TarFormatError, match='extended attributes and ACLs of more than'):
        gate(ROOT + pax(b'x', over) + header(b'./a') + END)
