# -*- coding: utf-8 -*-
"""The collection under a non-English locale: what it parses from the tools it runs must not change.

scripts/setup.sh generates de_DE.UTF-8, so tar, cryptsetup and the others really speak German here; a locale
that is not installed would silently fall back to English and prove nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys

from ansible_runner import run_playbook
from containers import run_in_container

GERMAN = {'LANG': 'de_DE.UTF-8', 'LANGUAGE': 'de', 'LC_ALL': 'de_DE.UTF-8'}


def german_env():
    return dict(os.environ, **GERMAN)


def test_the_german_locale_is_installed_and_tar_speaks_it(tmp_path):
    """Guard: without a generated de_DE.UTF-8 the other tests here would prove nothing."""
    assert 'de_DE.utf8' in subprocess.run(['locale', '-a'], capture_output=True, text=True, check=True).stdout
    (tmp_path / 'f').write_text('x')
    proc = subprocess.run(['tar', '--totals', '-cf', '/dev/null', '-C', str(tmp_path), '.'], capture_output=True,
                          text=True, env=german_env(), check=True)
    assert 'Total bytes written' not in proc.stderr and 'Gesamtzahl geschriebener Bytes' in proc.stderr, proc.stderr


def test_backup_restore_and_seed_under_a_german_locale(docker_client, prefix, tmp_path):
    """Failed on the old code with "The archive is empty": tar's totals line was parsed in German."""
    src, dst, seeded = prefix + '_src', prefix + '_dst', prefix + '_seed'
    docker_client.create_volume(src)
    docker_client.create_volume(seeded)
    code, out = run_in_container(docker_client, src, 'echo hallo > /data/f; mkdir /data/d; echo welt > /data/d/g')
    assert code == 0, out
    root = docker_client.inspect_volume(src)['Mountpoint'].encode()
    with open(root + b'/d/gr\xc3\xb6\xc3\x9fe \xc3\xbc.txt', 'wb') as handle:  # UTF-8 bytes, as a German host writes
        handle.write(b'gross\n')
    seed_dir = tmp_path / 'seed'
    (seed_dir / 'gr\u00fc\u00dfe').mkdir(parents=True)
    (seed_dir / 'gr\u00fc\u00dfe' / '\u00e4.txt').write_text('seed')
    dest = tmp_path / 'backups'
    dest.mkdir()
    run = run_playbook([
        {'name': 'backup', 'holdfast.volumes.volume_backup': {'volume': src, 'dest': str(dest)}},
        {'name': 'restore', 'holdfast.volumes.volume_restore': {'dest': str(dest), 'source': src, 'volume': dst,
                                                                'state_dir': str(tmp_path / 'state')}},
        {'name': 'seed', 'holdfast.volumes.volume_seed': {'volume': seeded, 'src': str(seed_dir)}},
    ], env=german_env(), play_vars={'ansible_python_interpreter': sys.executable})
    assert run.rc == 0, run.stdout + run.stderr
    res = run.task('backup')
    assert res['bytes_raw'] > 0 and res['file_count'] == 4
    assert run.task('restore')['changed'] and run.task('seed')['changed']

    def listing(volume):
        root = docker_client.inspect_volume(volume)['Mountpoint']
        return sorted((os.path.relpath(os.path.join(d, n), root).encode('utf-8', 'surrogateescape'),
                       open(os.path.join(d, n), 'rb').read()) for d, _s, files in os.walk(root) for n in files)
    # names with umlauts arrive byte for byte, in the C locale of the tools
    assert listing(dst) == listing(src)
    assert (b'd/gr\xc3\xb6\xc3\x9fe \xc3\xbc.txt', b'gross\n') in listing(dst)
    assert listing(seeded) == [('gr\u00fc\u00dfe/\u00e4.txt'.encode(), b'seed')]
