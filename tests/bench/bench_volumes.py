"""Benchmark: converge N volumes with holdfast.volumes.docker_volumes vs community.docker.docker_volume in a loop.

Both run as real ansible-playbook processes against the local engine, in the same run, first run and no-op
re-run. The peer comes from `pip install ansible` in a separate venv (created on demand under .tmp/peer-venv);
the collection does not depend on it.

    .venv/bin/python tests/bench/bench_volumes.py --sizes 100,500,1000 --peer-sizes 100,500
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tests' / 'helpers'))
from ansible_runner import collections_path  # noqa: E402

PEER_VENV = ROOT / '.tmp' / 'peer-venv'


def ensure_peer():
    if not (PEER_VENV / 'bin' / 'ansible-playbook').exists():
        subprocess.run([sys.executable, '-m', 'venv', str(PEER_VENV)], check=True)
        subprocess.run([str(PEER_VENV / 'bin' / 'pip'), 'install', '-q', 'ansible', 'docker'], check=True)
    return PEER_VENV


def cleanup(prefix):
    import docker
    client = docker.APIClient(version='auto')
    for vol in (client.volumes() or {}).get('Volumes') or []:
        if vol['Name'].startswith(prefix):
            client.remove_volume(vol['Name'])


def play(path, tasks):
    import yaml
    path.write_text(yaml.safe_dump([{'hosts': 'all', 'gather_facts': False, 'tasks': tasks}], sort_keys=False))


def timed(cmd, env):
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit('failed: %s\n%s' % (' '.join(cmd), proc.stderr[-2000:]))
    return elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--sizes', default='100,500,1000')
    parser.add_argument('--peer-sizes', default='100,500')
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(',')]
    peer_sizes = [int(x) for x in args.peer_sizes.split(',') if x]
    peer = ensure_peer() if peer_sizes else None
    ours_bin = Path(sys.executable).parent
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base_env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections_path()), ANSIBLE_NOCOLOR='1',
                        ANSIBLE_LOCALHOST_WARNING='False')
        # baseline: an ansible-playbook run with one ping task
        inv = tmp / 'inv.ini'
        inv.write_text('localhost ansible_connection=local ansible_python_interpreter=%s\n' % sys.executable)
        play(tmp / 'ping.yml', [{'ansible.builtin.ping': {}}])
        ping = timed([str(ours_bin / 'ansible-playbook'), '-i', str(inv), str(tmp / 'ping.yml')], base_env)
        for n in sizes:
            prefix = 'hfbench%d_' % n
            cleanup(prefix)
            play(tmp / 'ours.yml', [{'holdfast.volumes.docker_volumes': {
                'volumes': [{'name': '%s%04d' % (prefix, i), 'labels': {'bench': 'yes'}} for i in range(n)]}}])
            cmd = [str(ours_bin / 'ansible-playbook'), '-i', str(inv), str(tmp / 'ours.yml')]
            first = timed(cmd, base_env)
            noop = timed(cmd, base_env)
            cleanup(prefix)
            row = dict(n=n, ours_first=first, ours_noop=noop)
            if n in peer_sizes:
                pinv = tmp / 'pinv.ini'
                pinv.write_text('localhost ansible_connection=local ansible_python_interpreter=%s\n'
                                % (peer / 'bin' / 'python'))
                play(tmp / 'peer.yml', [{'community.docker.docker_volume': {
                    'name': prefix + '{{ "%04d" % item }}', 'labels': {'bench': 'yes'}},
                    'loop': '{{ range(%d) | list }}' % n}])
                penv = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_LOCALHOST_WARNING='False')
                pcmd = [str(peer / 'bin' / 'ansible-playbook'), '-i', str(pinv), str(tmp / 'peer.yml')]
                row['peer_first'] = timed(pcmd, penv)
                row['peer_noop'] = timed(pcmd, penv)
                cleanup(prefix)
            rows.append(row)
            print(row, flush=True)
    print('\nansible-playbook with one ping task (fixed cost): %.2f s\n' % ping)
    print('| volumes | holdfast first run | holdfast no-op | docker_volume loop first | docker_volume loop no-op '
          '| speed-up first | speed-up no-op |')
    print('| ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
    for r in rows:
        if 'peer_first' in r:
            print('| %d | %.2f s | %.2f s | %.1f s | %.1f s | %.0fx | %.0fx |' % (
                r['n'], r['ours_first'], r['ours_noop'], r['peer_first'], r['peer_noop'],
                r['peer_first'] / r['ours_first'], r['peer_noop'] / r['ours_noop']))
        else:
            print('| %d | %.2f s | %.2f s | not run | not run | | |' % (r['n'], r['ours_first'], r['ours_noop']))


if __name__ == '__main__':
    main()
