# -*- coding: utf-8 -*-
"""The tar gate and the member safety rules, on archives made by Python's tarfile and by GNU tar."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile

import pytest

from ansible_collections.holdfast.volumes.plugins.module_utils._members import MemberChecker, detect_layers
from ansible_collections.holdfast.volumes.plugins.module_utils._store import (
    archive_name,
    manifest_name_for,
    safe_folder_name,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._tar_gate import gate_stream
from ansible_collections.holdfast.volumes.plugins.module_utils._tar_read import TarFormatError


def build(fmt, long=False):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=fmt) as tar:
        def add(name, kind='file', data=b'', link=''):
            info = tarfile.TarInfo(name)
            if kind == 'dir':
                info.type = tarfile.DIRTYPE
            elif kind == 'sym':
                info.type, info.linkname = tarfile.SYMTYPE, link
            elif kind == 'hard':
                info.type, info.linkname = tarfile.LNKTYPE, link
            else:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if kind == 'file' else None)
        add('.', 'dir')
        deep = '/'.join(['d%02d' % i for i in range(30)]) if long else 'd'
        add(deep, 'dir')
        add(deep + '/file.txt', data=b'x' * 1000)
        add(deep + '/big', data=os.urandom(70000))
        add('link', 'sym', link=('/' + 'l' * 150) if long else '/target')
        add('hard', 'hard', link=deep + '/file.txt')
        add('ünïcode', data=b'u')
    return buf.getvalue()


def names_by_tarfile(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [(m.name, m.linkname) for m in tar.getmembers()]


def norm(name):
    name = name[2:] if name.startswith('./') else name
    return '' if name in ('.', '') else name.rstrip('/')


def contents_by_tarfile(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return dict((m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isreg())


# ustar cannot store names this long, so it is tested with short names only
@pytest.mark.parametrize('fmt, long', [(tarfile.GNU_FORMAT, False), (tarfile.GNU_FORMAT, True),
                                       (tarfile.PAX_FORMAT, False), (tarfile.PAX_FORMAT, True),
                                       (tarfile.USTAR_FORMAT, False)])
def test_gate_reads_like_tarfile_and_re_encodes_the_same_members(fmt, long):
    data = build(fmt, long)
    checker = MemberChecker()
    out = io.BytesIO()
    total = gate_stream(io.BufferedReader(io.BytesIO(data)), checker, out)
    assert total == len(data)
    # the extractor gets the gate's own headers: the same members, links and data, named ./<path>
    hard = '/'.join(['d%02d' % i for i in range(30)] if long else ['d']) + '/file.txt'
    assert [(norm(n), norm(link) if link.endswith(hard) else link) for n, link in names_by_tarfile(out.getvalue())] \
        == [(norm(n), link) for n, link in names_by_tarfile(data)]
    assert contents_by_tarfile(out.getvalue()) == dict(('./' + k, v) for k, v in contents_by_tarfile(data).items())
    expected = [n.rstrip('/') for n, _link in names_by_tarfile(data) if n not in ('.', './')]
    assert sorted(checker.kinds) == sorted(expected)
    assert checker.kinds['link'] == 'symlink' and checker.kinds['hard'] == 'hardlink'
    assert checker.has_root and checker.refused == []


def test_gnu_tar_sparse_xattrs(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    with open(src / 'sparse', 'wb') as handle:
        handle.seek(30 * 1024 * 1024)
        handle.write(b'end')
    (src / ('n' * 200)).write_text('long name')
    os.setxattr(src / 'sparse', 'user.a', b'b')
    for fmt in ('gnu', 'posix', 'oldgnu'):
        data = subprocess.run(['tar', '--format=' + fmt, '--sparse', '--xattrs', '-C', str(src), '-cf', '-', '.'],
                              capture_output=True, check=True).stdout
        checker = MemberChecker()
        out = io.BytesIO()
        gate_stream(io.BufferedReader(io.BytesIO(data)), checker, out)
        assert set(checker.kinds) == {'sparse', 'n' * 200}, (fmt, checker.kinds)
        with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:  # re-encoded as pax sparse 1.0
            sparse = tar.getmember('./sparse')
            assert sparse.issparse() and sparse.size == 30 * 1024 * 1024 + 3, fmt
            assert tar.extractfile(sparse).read()[-3:] == b'end'
            assert tar.getmember('./' + 'n' * 200).size == len('long name')


def test_gnu_sparse_name_is_what_gets_checked():
    # GNU tar extracts a PAX sparse member to GNU.sparse.name, so that is the name the gate must judge.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo('GNUSparseFile.1/innocent')
        info.size = 1
        info.pax_headers = {'GNU.sparse.name': '../../etc/evil', 'GNU.sparse.major': '1',
                            'GNU.sparse.minor': '0', 'GNU.sparse.realsize': '1'}
        tar.addfile(info, io.BytesIO(b'x'))
    checker = MemberChecker()
    out = io.BytesIO()
    gate_stream(io.BufferedReader(io.BytesIO(buf.getvalue())), checker, out)
    assert checker.refused and checker.refused[0]['member'] == '../../etc/evil'
    assert out.getvalue() == b''


def test_truncation_anywhere_is_detected():
    data = build(tarfile.GNU_FORMAT)
    end = len(data.rstrip(b'\0'))
    for cut in list(range(0, end, 512)) + [end + 1, end + 512]:
        with pytest.raises(TarFormatError):
            gate_stream(io.BufferedReader(io.BytesIO(data[:cut])), MemberChecker(), None)


def test_bad_checksum_and_lone_zero_block():
    data = bytearray(build(tarfile.GNU_FORMAT))
    data[600] ^= 0xFF  # inside the second header
    with pytest.raises(TarFormatError, match='checksum'):
        gate_stream(io.BufferedReader(io.BytesIO(bytes(data))), MemberChecker(), None)
    good = build(tarfile.GNU_FORMAT)
    spliced = good[:512] + b'\0' * 512 + good[512:]
    with pytest.raises(TarFormatError, match='lone zero block'):
        gate_stream(io.BufferedReader(io.BytesIO(spliced)), MemberChecker(), None)


def test_refused_member_is_never_passed_on():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.GNU_FORMAT) as tar:
        ok = tarfile.TarInfo('ok')
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b'ok'))
        evil = tarfile.TarInfo('../' + 'e' * 120)  # long name: its L header must be held back too
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b'evil'))
    checker = MemberChecker()
    out = io.BytesIO()
    gate_stream(io.BufferedReader(io.BytesIO(buf.getvalue())), checker, out)
    assert checker.refused and b'evil' not in out.getvalue() and b'eeee' not in out.getvalue()
    assert b'ok' not in out.getvalue()  # nothing more is passed on once a member is refused


class TestChecker:
    def kinds(self, *members, allow_special=False):
        checker = MemberChecker(allow_special=allow_special)
        for m in members:
            checker.check(*m)
        return checker

    def test_rules(self):
        assert self.kinds(('/abs', 'file')).refused[0]['reason'] == 'absolute path'
        assert 'the symlink' in self.kinds(('l', 'symlink', '/x'), ('l/f', 'file')).refused[0]['reason']
        assert 'the symlink' in self.kinds(('a/l', 'symlink', '.'), ('a/l/b/f', 'file')).refused[0]['reason']
        assert not self.kinds(('l', 'symlink', '../../../etc')).refused  # symlinks are data
        assert not self.kinds(('f', 'file'), ('h', 'hardlink', 'f'), ('./h2', 'hardlink', './f')).refused
        assert self.kinds(('h', 'hardlink', 'f')).refused
        assert self.kinds(('s', 'symlink', 'x'), ('h', 'hardlink', 's')).refused
        assert self.kinds(('d', 'dir'), ('d', 'symlink', '/')).refused
        assert self.kinds(('n', 'char')).refused and not self.kinds(('n', 'char'), allow_special=True).refused
        assert self.kinds(('.', 'file')).refused
        assert not self.kinds(('f', 'file'), ('f', 'file')).refused  # a rewritten file is fine
        assert self.kinds(('a/../../x', 'file')).refused
        assert 'longer than' in self.kinds(('a/' * 1000000, 'dir')).refused[0]['reason']  # refused at once
        assert 'through the file' in self.kinds(('f', 'file'), ('f/x', 'file')).refused[0]['reason']


def test_names():
    import datetime as dt
    when = dt.datetime(2026, 11, 26, 17, 35, 1, tzinfo=dt.timezone.utc)
    assert archive_name('db', when, 'zstd', True) == 'db-20261126T173501Z.tar.zst.age'
    assert manifest_name_for('db-20261126T173501Z.tar.zst.age') == 'db-20261126T173501Z.manifest.json'
    assert safe_folder_name('db') == 'db'
    assert safe_folder_name('/srv/data').startswith('srv_data-')
    assert safe_folder_name('/srv/data') != safe_folder_name('/srv_data')
    assert detect_layers(b'age-encryption.org/v1\n...') == (True, None)
    assert detect_layers(b'\x28\xb5\x2f\xfd') == (False, 'zstd')
    assert detect_layers(b'\x1f\x8b\x08') == (False, 'gzip')
