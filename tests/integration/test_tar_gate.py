# -*- coding: utf-8 -*-
"""Hostile archives crafted byte by byte, through the real modules into real volumes and filesystems: framing
tricks that made GNU tar extract what the checker never saw, and archives that fill the disk."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import subprocess
import threading
import time

from ansible_runner import run_playbook
from trees import snapshot

from ansible_collections.holdfast.volumes.plugins.module_utils._tar_gate import ustar_header


def restore(name='restore', **args):
    return {'name': name, 'holdfast.volumes.volume_restore': args, 'ignore_errors': True}


def seed(name='seed', **args):
    return {'name': name, 'holdfast.volumes.volume_seed': args, 'ignore_errors': True}


def header(name, typeflag=b'0', size=0, size_field=None, **kw):
    raw = bytearray(ustar_header(name, typeflag, size=size, **kw))
    if size_field is not None:
        raw[124:136] = size_field
    raw[148:156] = b' ' * 8
    raw[148:156] = ('%06o' % sum(raw)).encode('ascii') + b'\0 '
    return bytes(raw)


ROOT = header(b'./', b'5', mode=0o755)
END = b'\0' * 1024
SPECIAL = header(b'./fifo', b'6') + header(b'./null', b'3', devmajor=1, devminor=3)
SHADOW = header(b'./shadow', b'2', linkname=b'/etc/shadow')


def nul_led_size(payload):
    """./a's size field starts with a NUL: the old checker read 0 and took the next block for a header (a file ./b
    whose data hides the payload); GNU tar reads 512 and takes that block for a's data, then extracts the payload."""
    return ROOT + header(b'./a', size_field=b'\x000000001000\0') + header(b'./b', size=len(payload)) + payload + END


def global_size(payload):
    """A pax global header says size=0: GNU tar applies it to ./a and extracts a's "data" as members; the old
    checker ignored the global header and skipped the payload as a's data."""
    body = b'10 size=0\n'
    return (ROOT + header(b'./@PaxGlobal', b'g', size=len(body)) + body + b'\0' * (512 - len(body))
            + header(b'./a', size=len(payload)) + payload + END)


TRICKS = {'nul-led-size': nul_led_size, 'pax-global-header': global_size}


def test_the_tricks_fool_gnu_tar(tmp_path):
    """The archives really are what they claim: GNU tar alone extracts the smuggled members."""
    for name, trick in TRICKS.items():
        listing = subprocess.run(['tar', '-tv', '-f', '-'], input=trick(SPECIAL + SHADOW), capture_output=True,
                                 check=True).stdout.decode()
        assert './fifo' in listing and './null' in listing and './shadow -> /etc/shadow' in listing, name


def test_smuggled_fifo_and_device_never_land(docker_client, prefix, tmp_path):
    vol = prefix + '_smuggle'
    docker_client.create_volume(vol)
    root = docker_client.inspect_volume(vol)['Mountpoint']
    with open(os.path.join(root, 'keep'), 'w') as handle:
        handle.write('intact')
    before = snapshot(root)
    tasks = []
    for trick in sorted(TRICKS):
        archive = tmp_path / ('%s.tar' % trick)
        archive.write_bytes(TRICKS[trick](SPECIAL))
        tasks.append(restore(trick, archive=str(archive), volume=vol, replace=True, state_dir=str(tmp_path / 'st')))
    run = run_playbook(tasks)
    for trick in sorted(TRICKS):
        res = run.task(trick)
        assert run.status(trick) == 'failed', res
        assert 'not touched' in res['msg'] or 'Nothing was written' in res['msg'], res['msg']
    assert snapshot(root) == before
    assert not glob.glob(os.path.join(os.path.dirname(root), '.holdfast-restore-*'))


def test_seed_never_gets_an_escaping_symlink(docker_client, prefix, tmp_path):
    tasks, roots = [], {}
    for trick in sorted(TRICKS):
        vol = '%s_seed_%s' % (prefix, trick)
        docker_client.create_volume(vol)
        roots[trick] = docker_client.inspect_volume(vol)['Mountpoint']
        archive = tmp_path / ('%s.tar' % trick)
        archive.write_bytes(TRICKS[trick](SHADOW))
        tasks.append(seed(trick, volume=vol, src=str(archive)))
    run = run_playbook(tasks)
    for trick, root in roots.items():
        res = run.task(trick)
        assert run.status(trick) == 'failed' and not res.get('seeded'), res
        assert os.listdir(root) == []
        assert not glob.glob(os.path.join(os.path.dirname(root), '.holdfast-restore-*'))


def _zstd_bomb(path, size):
    """A tar of one file of `size` zero bytes, compressed with zstd: a few KB on disk."""
    proc = subprocess.Popen(['zstd', '-q', '-1', '-c', '-o', str(path)], stdin=subprocess.PIPE)
    proc.stdin.write(ROOT + header(b'./zeros', size=size))
    chunk = b'\0' * (1 << 20)
    for _i in range(size >> 20):
        proc.stdin.write(chunk)
    proc.stdin.write(END)
    proc.stdin.close()
    assert proc.wait() == 0
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_zstd_bomb_stops_before_the_reserve_and_keeps_the_target(tmp_path):
    fs = tmp_path / 'fs'
    fs.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=32m', 'tmpfs', str(fs)], check=True)
    try:
        target = fs / 'target'
        target.mkdir()
        (target / 'keep').write_text('the previous content')
        before = snapshot(str(target))
        bomb = tmp_path / 'bomb.tar.zst'
        _zstd_bomb(bomb, 96 << 20)
        assert bomb.stat().st_size < 20_000
        lowest = [1 << 62]
        done = threading.Event()

        def watch():
            while not done.is_set():
                st = os.statvfs(str(fs))
                lowest[0] = min(lowest[0], st.f_bavail * st.f_frsize)
                time.sleep(0.002)
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            started = time.time()
            run = run_playbook([restore(archive=str(bomb), path=str(target), replace=True, disk_reserve='8M',
                                        state_dir=str(tmp_path / 'st'))])
            elapsed = time.time() - started
        finally:
            done.set()
            watcher.join()
        res = run.task('restore')
        assert run.status('restore') == 'failed' and 'reserve of 8.0 MiB' in res['msg'], res
        assert lowest[0] >= 8 << 20, lowest  # never under the reserve (without the guard: 0 bytes free)
        assert snapshot(str(target)) == before
        assert sorted(os.listdir(str(fs))) == ['target']  # staging cleaned up
        assert elapsed < 30
    finally:
        subprocess.run(['umount', str(fs)], check=False)


def test_manifest_bounds_the_bomb(tmp_path):
    folder = tmp_path / 'store' / 'vol'
    folder.mkdir(parents=True)
    tasks = []
    # a manifest that claims 1 MiB: extraction stops as soon as the stream holds more;
    # one that claims more than the filesystem can take: refused before anything is written
    for stamp, claim in (('20261128T120000Z', 1 << 20), ('20261128T130000Z', 1 << 60)):
        bomb = folder / ('vol-%s.tar.zst' % stamp)
        sha = _zstd_bomb(bomb, 8 << 20)
        (folder / ('vol-%s.manifest.json' % stamp)).write_text(json.dumps(dict(
            format='holdfast.volumes/backup', archive=bomb.name, sha256=sha, created='2026-11-28T12:00:00Z',
            bytes_raw=claim)))
        tasks.append(restore(stamp, archive=str(bomb), path=str(tmp_path / 'target'), state_dir=str(tmp_path / 'st')))
    run = run_playbook(tasks)
    small, huge = run.task('20261128T120000Z'), run.task('20261128T130000Z')
    assert run.status('20261128T120000Z') == 'failed' and 'bytes_raw' in small['msg'], small
    assert run.status('20261128T130000Z') == 'failed' and 'Not enough free space' in huge['msg'], huge
    assert not (tmp_path / 'target').exists() and not glob.glob(str(tmp_path / '.holdfast-restore-*'))
