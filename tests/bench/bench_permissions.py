"""Benchmark: recursive ownership change of a volume with 100,000 files.

In the same run: `chown -R 999:999` on the host path (the target's baseline), the widely documented helper-container
recipe (`docker run --rm -v vol:/data image chown -R 999:999 /data`), and holdfast.volumes.volume_permissions
(first run, then a no-op run), each the median of 3. Ours is reported as the whole ansible-playbook run and as the
module's own time (duration_seconds), since an ansible-playbook run has a fixed cost of about 1 s.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tests' / 'helpers'))
from ansible_runner import run_playbook  # noqa: E402

IMAGE = 'holdfast-test/busybox:1'
N = int(os.environ.get('BENCH_FILES', '100000'))


def reset(path):
    subprocess.run(['chown', '-R', '0:0', path], check=True)


def timed(cmd):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    import docker
    client = docker.APIClient(version='auto')
    vol = 'holdfast_bench_perms'
    try:
        client.remove_volume(vol, force=True)
    except docker.errors.NotFound:
        pass
    client.create_volume(vol)
    root = client.inspect_volume(vol)['Mountpoint']
    for d in range(100):
        sub = os.path.join(root, 'd%03d' % d)
        os.makedirs(sub)
        for f in range(N // 100):
            open(os.path.join(sub, 'f%04d' % f), 'w').close()
    task = [{'name': 'perms', 'holdfast.volumes.volume_permissions': {
        'volume': vol, 'owner': 999, 'group': 999, 'recurse': True}}]
    rows = {'chown -R on the host path': [], 'docker run ... chown -R (helper-container recipe)': [],
            'volume_permissions, first run (ansible-playbook)': [], 'volume_permissions, first run (module time)': [],
            'volume_permissions, no-op run (ansible-playbook)': [], 'volume_permissions, no-op run (module time)': []}
    for _unused in range(3):
        reset(root)
        rows['chown -R on the host path'].append(timed(['chown', '-R', '999:999', root]))
        reset(root)
        rows['docker run ... chown -R (helper-container recipe)'].append(timed(
            ['docker', 'run', '--rm', '-v', '%s:/data' % vol, IMAGE, 'chown', '-R', '999:999', '/data']))
        reset(root)
        start = time.perf_counter()
        first = run_playbook(task)
        rows['volume_permissions, first run (ansible-playbook)'].append(time.perf_counter() - start)
        res = first.task('perms')
        assert res['changed_entries'] == N + 101, res['changed_entries']
        rows['volume_permissions, first run (module time)'].append(res['duration_seconds'])
        start = time.perf_counter()
        noop = run_playbook(task)
        rows['volume_permissions, no-op run (ansible-playbook)'].append(time.perf_counter() - start)
        assert noop.task('perms')['changed'] is False
        rows['volume_permissions, no-op run (module time)'].append(noop.task('perms')['duration_seconds'])
    client.remove_volume(vol, force=True)
    base = statistics.median(rows['chown -R on the host path'])
    print('%d files in 100 directories; median of 3 runs\n' % N)
    print('| tool | wall time | vs chown -R on the host |')
    print('| --- | ---: | ---: |')
    for name, values in rows.items():
        med = statistics.median(values)
        print('| %s | %.2f s | %.2fx |' % (name, med, med / base))


if __name__ == '__main__':
    main()
