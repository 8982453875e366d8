"""Benchmark: backup_rotation over 10,000 backups of one volume, and the retention_plan filter on 100,000 items.

Rotation is timed as a real ansible-playbook run (check mode = planning, then the real run = planning + removal),
against the fixed cost of an ansible-playbook run with one ping task measured in the same run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tests' / 'helpers'))
from ansible_runner import collections_path  # noqa: E402

sys.path.insert(0, str(collections_path()))
from ansible_collections.holdfast.volumes.plugins.filter.retention_plan import retention_plan  # noqa: E402

UTC = dt.timezone.utc


def make_backups(folder, n):
    os.makedirs(folder)
    payload = b'x' * 64
    sha = hashlib.sha256(payload).hexdigest()
    base = dt.datetime(2026, 6, 30, tzinfo=UTC)
    for i in range(n):
        when = base - dt.timedelta(hours=i)
        stamp = when.strftime('%Y%m%dT%H%M%SZ')
        archive = 'vol-%s.tar.zst' % stamp
        with open(os.path.join(folder, archive), 'wb') as handle:
            handle.write(payload)
        with open(os.path.join(folder, 'vol-%s.manifest.json' % stamp), 'w') as handle:
            json.dump(dict(format='holdfast.volumes/backup', format_version=1, volume='vol', archive=archive,
                           created=when.strftime('%Y-%m-%dT%H:%M:%SZ'), sha256=sha, bytes_stored=len(payload)),
                      handle)


def run(cmd, env):
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    n = int(os.environ.get('BENCH_BACKUPS', '10000'))
    bindir = Path(sys.executable).parent
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections_path()), ANSIBLE_LOCALHOST_WARNING='False')
    with tempfile.TemporaryDirectory() as tmp:
        dest = os.path.join(tmp, 'dest')
        make_backups(os.path.join(dest, 'vol'), n)
        inv = os.path.join(tmp, 'inv')
        Path(inv).write_text('localhost ansible_connection=local ansible_python_interpreter=%s\n' % sys.executable)
        import yaml
        Path(tmp, 'ping.yml').write_text(yaml.safe_dump([{'hosts': 'all', 'gather_facts': False,
                                                          'tasks': [{'ansible.builtin.ping': {}}]}]))
        Path(tmp, 'rot.yml').write_text(yaml.safe_dump([{'hosts': 'all', 'gather_facts': False, 'tasks': [
            {'holdfast.volumes.backup_rotation': {'dest': dest, 'volume': 'vol', 'keep_daily': 30, 'keep_weekly': 12,
                                                  'keep_monthly': 24, 'now': '2026-07-01T00:00:00Z'}}]}]))
        pb = str(bindir / 'ansible-playbook')
        ping = run([pb, '-i', inv, os.path.join(tmp, 'ping.yml')], env)
        check = run([pb, '-i', inv, os.path.join(tmp, 'rot.yml'), '--check'], env)
        real = run([pb, '-i', inv, os.path.join(tmp, 'rot.yml')], env)
        left = len([f for f in os.listdir(os.path.join(dest, 'vol')) if f.endswith('.manifest.json')])
    items = [{'time': (dt.datetime(2026, 1, 1, tzinfo=UTC) - dt.timedelta(minutes=17 * i)).isoformat(), 'id': i}
             for i in range(100_000)]
    start = time.perf_counter()
    plan = retention_plan(items, keep_daily=30, keep_weekly=12, keep_monthly=24, keep_within='2d',
                          now='2026-01-02T00:00:00Z')
    filt = time.perf_counter() - start
    print('| measurement | wall time |')
    print('| --- | ---: |')
    print('| ansible-playbook with one ping task (fixed cost) | %.2f s |' % ping)
    print('| backup_rotation, %d backups, check mode (scan, sha256 of each, plan) | %.2f s |' % (n, check))
    print('| backup_rotation, %d backups, real run (plan + remove %d) | %.2f s |' % (n, n - left, real))
    print('| retention_plan filter, 100,000 items (%d kept), Python call | %.2f s |' % (len(plan['keep']), filt))


if __name__ == '__main__':
    main()
