"""Benchmark: back up and restore a 1 GiB mixed data set, against the practical limit and the usual recipes.

Data set: many small text files, a few large compressible files, some random data (about 1 GiB in all).
Backup, in the same run: holdfast.volumes.volume_backup (a real ansible-playbook run; zstd, verify on),
`tar -C dir -cf - . | zstd -T0 -3 > out` (the practical limit), the helper-container recipe
(`docker run --rm -v vol:/data -v out:/backup image tar cvf /backup/backup.tar -C /data .`), and `restic backup`
(first run, new repository). Restore: volume_restore into a new volume vs `zstd -d | tar x` into an empty directory.
Page cache is dropped before each measurement so every tool reads from disk.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tests' / 'helpers'))
from ansible_runner import collections_path  # noqa: E402
from benchlib import drop_caches  # noqa: E402

IMAGE = 'holdfast-test/busybox:1'
WORDS = ('volume backup restore docker container data owner mode archive verify rotate encrypt host fleet '
         'postgres table index page tuple commit log checkpoint vacuum').split()


def make_dataset(root):
    rng = random.Random(42)
    os.makedirs(root, exist_ok=True)
    for d in range(40):
        sub = os.path.join(root, 'small', 'd%02d' % d)
        os.makedirs(sub)
        for f in range(500):  # 20,000 files, about 8 KiB each
            with open(os.path.join(sub, 'f%03d.txt' % f), 'w') as handle:
                handle.write(' '.join(rng.choice(WORDS) for _unused in range(1300)))
    os.makedirs(os.path.join(root, 'large'))
    line = ''.join('%s %d\n' % (rng.choice(WORDS), i) for i in range(20000)).encode()
    for i in range(5):  # 5 x 100 MiB compressible
        with open(os.path.join(root, 'large', 'log%d' % i), 'wb') as handle:
            for _unused in range(100 * 1024 * 1024 // len(line)):
                handle.write(line)
    os.makedirs(os.path.join(root, 'random'))
    for i in range(3):  # 3 x 110 MiB random
        with open(os.path.join(root, 'random', 'blob%d' % i), 'wb') as handle:
            handle.write(os.urandom(110 * 1024 * 1024))


REPEAT = int(os.environ.get('BENCH_REPEAT', '3'))


def timed(cmd, env=None, shell=False, before=None):
    """Median wall time of REPEAT runs, each from a cold page cache (before() resets the state)."""
    times = []
    for _unused in range(REPEAT):
        if before:
            before()
        drop_caches()
        start = time.perf_counter()
        subprocess.run(cmd, env=env, shell=shell, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main():
    import docker
    import yaml
    client = docker.APIClient(version='auto')
    subprocess.run([str(ROOT / 'scripts' / 'build-test-image.sh')], check=True)
    vol = 'holdfast_bench_src'
    for name in (vol, 'holdfast_bench_restored'):
        try:
            client.remove_volume(name, force=True)
        except docker.errors.NotFound:
            pass
    # The data set is generated once and kept (BENCH_DATA); the volume binds it.
    data = os.environ.get('BENCH_DATA', '/var/tmp/holdfast-bench-data')
    if not os.path.exists(os.path.join(data, '.complete')):
        shutil.rmtree(data, ignore_errors=True)
        make_dataset(data)
        open(os.path.join(data, '.complete'), 'w').close()
    client.create_volume(vol, driver_opts={'type': 'none', 'o': 'bind', 'device': data})
    size = int(subprocess.run(['du', '-sb', data], capture_output=True, text=True, check=True).stdout.split()[0])
    bindir = Path(sys.executable).parent
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections_path()), ANSIBLE_LOCALHOST_WARNING='False')
    rows = []
    with tempfile.TemporaryDirectory(dir='/var/tmp') as tmp:
        inv = os.path.join(tmp, 'inv')
        Path(inv).write_text('localhost ansible_connection=local ansible_python_interpreter=%s\n' % sys.executable)

        def playbook(name, tasks):
            path = os.path.join(tmp, name)
            Path(path).write_text(yaml.safe_dump([{'hosts': 'all', 'gather_facts': False, 'tasks': tasks}]))
            return [str(bindir / 'ansible-playbook'), '-i', inv, path]

        ping = timed(playbook('ping.yml', [{'ansible.builtin.ping': {}}]), env)
        dest = os.path.join(tmp, 'dest')
        ours = timed(playbook('backup.yml', [{'holdfast.volumes.volume_backup': {'volume': vol, 'dest': dest}}]),
                     env)
        archive = sorted(os.path.join(dest, vol, f) for f in os.listdir(os.path.join(dest, vol))
                         if f.endswith('.zst'))[-1]
        module_time = sorted(json.load(open(os.path.join(dest, vol, f)))['duration_seconds']
                             for f in os.listdir(os.path.join(dest, vol)) if f.endswith('.manifest.json'))[REPEAT // 2]
        dest2 = os.path.join(tmp, 'dest2')
        ours_nv = timed(playbook('backup-nv.yml', [{'holdfast.volumes.volume_backup': {
            'volume': vol, 'dest': dest2, 'verify': False}}]), env)
        limit = timed('tar -C %s -cf - . | zstd -q -T0 -3 > %s/limit.tar.zst' % (data, tmp), shell=True)
        time.sleep(0)
        limit_sync = timed('tar -C %s -cf - . | zstd -q -T0 -3 > %s/limit2.tar.zst && sync %s/limit2.tar.zst'
                           % (data, tmp, tmp), shell=True)
        os.makedirs(os.path.join(tmp, 'recipe'), exist_ok=True)
        recipe = timed(['docker', 'run', '--rm', '-v', '%s:/data' % vol, '-v', '%s:/backup' % os.path.join(
            tmp, 'recipe'), IMAGE, 'tar', 'cvf', '/backup/backup.tar', '-C', '/data', '.'])
        renv = dict(os.environ, RESTIC_PASSWORD='bench', RESTIC_REPOSITORY=os.path.join(tmp, 'restic'),
                    RESTIC_CACHE_DIR=os.path.join(tmp, 'restic-cache'))

        def fresh_repo():
            shutil.rmtree(renv['RESTIC_REPOSITORY'], ignore_errors=True)
            subprocess.run(['restic', 'init'], env=renv, check=True, capture_output=True)
        restic = timed(['restic', 'backup', '--quiet', data], env=renv, before=fresh_repo)
        sizes = dict(ours=os.path.getsize(archive), limit=os.path.getsize(os.path.join(tmp, 'limit.tar.zst')),
                     recipe=os.path.getsize(os.path.join(tmp, 'recipe', 'backup.tar')),
                     restic=int(subprocess.run(['du', '-sb', os.path.join(tmp, 'restic')], capture_output=True,
                                               text=True, check=True).stdout.split()[0]))
        rows.append(('backup', 'holdfast volume_backup (ansible-playbook, zstd, fsync, verified)', ours,
                     sizes['ours']))
        rows.append(('backup', 'the same, module time only (manifest duration_seconds)', module_time, sizes['ours']))
        rows.append(('backup', 'holdfast volume_backup, verify: false (ansible-playbook)', ours_nv, sizes['ours']))
        rows.append(('backup', 'tar | zstd -T0 -3 (practical limit)', limit, sizes['limit']))
        rows.append(('backup', 'tar | zstd -T0 -3 && sync (the limit, made durable)', limit_sync, sizes['limit']))
        rows.append(('backup', 'docker run ... tar cvf (helper-container recipe, uncompressed)', recipe,
                     sizes['recipe']))
        rows.append(('backup', 'restic backup (first run)', restic, sizes['restic']))

        def fresh_volume():
            try:
                client.remove_volume('holdfast_bench_restored', force=True)
            except docker.errors.NotFound:
                pass
            client.create_volume('holdfast_bench_restored')
        ours_r = timed(playbook('restore.yml', [{'holdfast.volumes.volume_restore': {
            'archive': archive, 'volume': 'holdfast_bench_restored', 'state_dir': os.path.join(tmp, 'state')}}]),
            env, before=fresh_volume)
        target = os.path.join(tmp, 'plain-restore')

        def fresh_dir():
            shutil.rmtree(target, ignore_errors=True)
            os.makedirs(target)
        limit_r = timed('zstd -q -d < %s | tar -x -C %s' % (archive, target), shell=True, before=fresh_dir)
        limit_r2 = timed("zstd -q -d < %s | tar -x --numeric-owner -p --xattrs --xattrs-include='*' --acls -C %s"
                         % (archive, target), shell=True, before=fresh_dir)
        rows.append(('restore', 'holdfast volume_restore (ansible-playbook; checked, staged, swapped)', ours_r, None))
        rows.append(('restore', 'zstd -d | tar x (practical limit)', limit_r, None))
        rows.append(('restore', 'zstd -d | tar x with owners, modes, xattrs, ACLs (our tar flags)', limit_r2, None))
    client.remove_volume(vol, force=True)
    client.remove_volume('holdfast_bench_restored', force=True)
    print('data set: %.2f GiB; median of %d runs, each from a cold page cache; ansible-playbook fixed cost '
          '(one ping task): %.2f s\n' % (size / 2**30, REPEAT, ping))
    print('| step | tool | wall time | MiB/s | size | vs limit |')
    print('| --- | --- | ---: | ---: | ---: | ---: |')
    for step, tool, secs, out in rows:
        base = limit if step == 'backup' else limit_r
        stored = '%.0f MiB' % (out / 2**20) if out else ''
        print('| %s | %s | %.2f s | %.0f | %s | %.2fx |' % (step, tool, secs, size / 2**20 / secs, stored, secs / base))


if __name__ == '__main__':
    main()
