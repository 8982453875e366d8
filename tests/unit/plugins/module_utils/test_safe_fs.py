# -*- coding: utf-8 -*-
"""Descriptor-relative filesystem helpers, store files that a planted symlink cannot redirect, the local-engine
rule and volume names."""

from __future__ import annotations

import os
import stat
import subprocess
from types import SimpleNamespace

import pytest

from ansible_collections.holdfast.volumes.plugins.module_utils import _backup, _store
from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import (
    is_local_engine,
    validate_volume_name,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._safe_fs import (
    Staging,
    foreign_writer,
    leftover_staging,
    open_dir,
    rmtree_at,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._store import safe_folder_name, write_json_atomic


def test_foreign_writer_is_pure():
    def st(uid, mode):
        return SimpleNamespace(st_uid=uid, st_mode=stat.S_IFDIR | mode)
    assert foreign_writer(st(0, 0o755), euid=0) is None
    assert foreign_writer(st(0, 0o1777), euid=0) is None  # sticky: others cannot rename our entries
    assert 'uid 1000' in foreign_writer(st(1000, 0o755), euid=0)
    assert 'writable' in foreign_writer(st(0, 0o775), euid=0)
    assert foreign_writer(st(1000, 0o700), euid=1000) is None


def test_open_dir_refuses_symlinked_components(tmp_path):
    (tmp_path / 'real').mkdir()
    (tmp_path / 'link').symlink_to(tmp_path / 'real')
    fd = open_dir(str(tmp_path / 'real'))
    os.close(fd)
    with pytest.raises(HoldfastError, match='refusing to follow'):
        open_dir(str(tmp_path / 'link'))


def test_rmtree_at_never_follows_symlinks(tmp_path):
    outside = tmp_path / 'outside'
    outside.mkdir()
    (outside / 'keep').write_text('x')
    tree = tmp_path / 'tree'
    (tree / 'a' / 'b').mkdir(parents=True)
    (tree / 'a' / 'b' / 'f').write_text('y')
    (tree / 'a' / 'out').symlink_to(outside)
    fd = open_dir(str(tmp_path))
    try:
        rmtree_at(fd, 'tree')
    finally:
        os.close(fd)
    assert not tree.exists() and (outside / 'keep').read_text() == 'x'


def test_staging_is_private_marked_and_found_again(tmp_path):
    fd = open_dir(str(tmp_path))
    try:
        staging = Staging(fd, 'target', 'path:/x')
        st = os.lstat(tmp_path / staging.name)
        assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()
        assert os.path.samefile(staging.data_path, tmp_path / staging.name / 'data')
        assert leftover_staging(fd, 'path:/x') == ([staging.name], [])
        assert leftover_staging(fd, 'path:/y') == ([], [staging.name])
        # a private directory but without our marker is not provably ours
        (tmp_path / '.holdfast-restore-target-fake').mkdir(mode=0o700)
        assert leftover_staging(fd, 'path:/x')[1] == ['.holdfast-restore-target-fake']
        staging.remove()
        assert not (tmp_path / staging.name).exists()
    finally:
        os.close(fd)


def test_manifest_temporary_never_written_through_a_planted_symlink(tmp_path):
    victim = tmp_path / 'victim'
    victim.write_text('root-owned content')
    folder = tmp_path / 'store'
    folder.mkdir()
    for name in ('.holdfast-tmp-manifest-%d' % os.getpid(),):
        (folder / name).symlink_to(victim)
    write_json_atomic(str(folder / 'v-20260101T000000Z.manifest.json'), {'a': 1})
    assert victim.read_text() == 'root-owned content'
    assert stat.S_IMODE(os.stat(folder / 'v-20260101T000000Z.manifest.json').st_mode) == 0o600


def test_lock_refuses_symlink_and_fifo(tmp_path):
    victim = tmp_path / 'victim'
    victim.write_text('x')
    folder = tmp_path / 'f'
    folder.mkdir()
    (folder / '.lock').symlink_to(victim)
    with pytest.raises(OSError):
        with _store.FolderLock(str(folder), 1):
            pass
    (folder / '.lock').unlink()
    os.mkfifo(folder / '.lock')
    with pytest.raises(HoldfastError, match='not a regular file'):
        with _store.FolderLock(str(folder), 1):
            pass


def test_index_file_is_private(tmp_path, monkeypatch):
    """tar's index (file names in clear, also of encrypted backups) is 0600, whatever the umask."""
    src = tmp_path / 'src'
    src.mkdir()
    (src / 'secret-name.txt').write_text('x')
    modes = []
    original = _backup.count_index

    def spy(path):
        modes.append(stat.S_IMODE(os.stat(path).st_mode))
        return original(path)
    monkeypatch.setattr(_backup, 'count_index', spy)
    old = os.umask(0o022)
    try:
        result, _warnings = _backup.run_backup(dict(path=str(src), dest=str(tmp_path / 'dest'), compression='none',
                                                    quiesce='none', verify=True, lock_timeout=5))
    finally:
        os.umask(old)
    assert modes == [0o600] and result['file_count'] == 1
    assert subprocess.run(['tar', 'tf', result['archive']], capture_output=True, text=True,
                          check=True).stdout.count('secret-name.txt') == 1


def test_local_engine_is_only_this_hosts_socket():
    assert is_local_engine(None) and is_local_engine('unix:///var/run/docker.sock')
    assert is_local_engine('unix:///run/docker.sock') and is_local_engine('/var/run/docker.sock')
    assert not is_local_engine('unix:///tmp/forwarded.sock') and not is_local_engine('tcp://127.0.0.1:2375')
    assert not is_local_engine('ssh://backup@host')


def test_volume_names_and_folder_names():
    assert validate_volume_name('shop_db.v-2') == 'shop_db.v-2'
    for bad in ('../../containers/json', 'a', '', '-x', 'a/b', 'x?y', None):
        with pytest.raises(HoldfastError, match='not a valid Docker volume name'):
            validate_volume_name(bad)
    for bad in ('', '.', '..'):
        with pytest.raises(HoldfastError):
            safe_folder_name(bad)


def test_hostile_manifests_are_bad_manifests_not_tracebacks(tmp_path):
    import json

    from ansible_collections.holdfast.volumes.plugins.module_utils._store import list_backups
    folder = tmp_path / 'v'
    folder.mkdir()
    (folder / 'v-20260101T000000Z.tar').write_bytes(b'')
    for stamp, body in (('20260101T000000Z', []),
                        ('20260102T000000Z', {'format': 'holdfast.volumes/backup', 'archive': 'v-20260101T000000Z.tar',
                                              'sha256': 'x', 'labels': 'not a map'}),
                        ('20260103T000000Z', {'format': 'holdfast.volumes/backup', 'sha256': 'x',
                                              'archive': 'v-20260103T000000Z.tar', 'created': 'yesterday'})):
        (folder / ('v-%s.manifest.json' % stamp)).write_text(json.dumps(body))
    (folder / 'v-20260103T000000Z.tar').write_bytes(b'')
    scan = list_backups(str(folder))
    assert scan['complete'] == [] and len(scan['bad_manifests']) == 3


def test_trusted_realpath(tmp_path):
    from ansible_collections.holdfast.volumes.plugins.module_utils._safe_fs import trusted_realpath
    (tmp_path / 'real').mkdir()
    (tmp_path / 'ours').symlink_to('real')
    assert trusted_realpath(str(tmp_path / 'ours' / 'missing' / 'x')) == str(tmp_path / 'real' / 'missing' / 'x')
    open_dir_ = tmp_path / 'open'
    open_dir_.mkdir()
    os.chmod(open_dir_, 0o777)
    (open_dir_ / 'link').symlink_to(tmp_path / 'real')
    with pytest.raises(HoldfastError, match='refusing to follow'):
        trusted_realpath(str(open_dir_ / 'link'))
    os.chmod(open_dir_, 0o755)
    os.lchown(open_dir_ / 'link', 65534, 65534)
    with pytest.raises(HoldfastError, match='belongs to uid 65534'):
        trusted_realpath(str(open_dir_ / 'link'))
