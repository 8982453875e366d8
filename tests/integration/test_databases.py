# -*- coding: utf-8 -*-
"""A real database under load: PostgreSQL 15 (data checksums on) with pgbench writing while volume_backup runs with
the defaults, with pause and with stop; every restored copy is started and checked with pg_amcheck
--heapallindexed and the pgbench balance invariant. Plus the quiesce guarantees on plain containers: a container
that ignores its stop signal is reported, and a failure (or a signal) in the middle of the pipeline puts every
container back.

The image is built offline from Debian's postgresql-15 package by scripts/build-postgres-image.sh (cached per
package version); pgbench and psql run on the host from the same package, over the container's bridge address.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from ansible_runner import run_playbook
from containers import TEST_IMAGE

ROOT = Path(__file__).resolve().parents[2]
PGBIN = '/usr/lib/postgresql/15/bin'
CLIENTS = 4
PGDATA_PARENT = '/var/lib/postgresql'  # the volume; PGDATA is its subdirectory data/, dumps go beside it


def backup(name, **args):
    return {'name': name, 'holdfast.volumes.volume_backup': args}


def restore(name, **args):
    return {'name': name, 'holdfast.volumes.volume_restore': args}


@pytest.fixture(scope='session')
def pg_image(docker_client):
    out = subprocess.run([str(ROOT / 'scripts' / 'build-postgres-image.sh')], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, 'building the PostgreSQL test image failed: %s' % out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


class Postgres:
    def __init__(self, client, image, name, volume, stop_signal=None):
        self.client, self.name = client, name
        kwargs = dict(stop_signal=stop_signal) if stop_signal else {}
        client.create_container(image, name=name, host_config=client.create_host_config(
            binds={volume: {'bind': PGDATA_PARENT}}), **kwargs)
        client.start(name)
        self.wait_ready()

    @property
    def env(self):
        ip = self.client.inspect_container(self.name)['NetworkSettings']['IPAddress']
        return dict(os.environ, PGHOST=ip, PGUSER='postgres', PGDATABASE='postgres', PGCONNECT_TIMEOUT='5')

    def wait_ready(self, timeout=90):
        deadline = time.monotonic() + timeout
        while True:
            state = self.client.inspect_container(self.name)['State']
            if state['Running'] and not state['Paused']:
                probe = subprocess.run([PGBIN + '/psql', '-XAtqc', 'select 1'], env=self.env, capture_output=True,
                                       text=True, check=False)
                if probe.returncode == 0:
                    return
            if time.monotonic() > deadline:
                logs = self.client.logs(self.name).decode(errors='replace')[-3000:]
                raise AssertionError('PostgreSQL %s did not come up: %s' % (self.name, logs))
            time.sleep(0.3)

    def sql(self, query):
        out = subprocess.run([PGBIN + '/psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-c', query], env=self.env,
                             capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def pgbench(self, *args):
        return subprocess.Popen([PGBIN + '/pgbench', '-n', '-c', str(CLIENTS), '-j', '2'] + list(args),
                                env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def check(self):
        """pg_amcheck over every relation with --heapallindexed, and the pgbench invariant; returns the history
        row count (one row per committed transaction)."""
        amcheck = self.client.exec_create(self.name, ['pg_amcheck', '-U', 'postgres', '--all', '--install-missing',
                                                      '--heapallindexed'])
        output = self.client.exec_start(amcheck).decode(errors='replace')
        assert self.client.exec_inspect(amcheck)['ExitCode'] == 0, output
        deltas, accounts, branches, tellers, count = self.sql(
            'select (select coalesce(sum(delta), 0) from pgbench_history), (select sum(abalance) from '
            'pgbench_accounts), (select sum(bbalance) from pgbench_branches), (select sum(tbalance) from '
            'pgbench_tellers), (select count(*) from pgbench_history)').split('|')
        assert deltas == accounts == branches == tellers, (deltas, accounts, branches, tellers)
        assert self.sql("select count(*) from pg_stat_database where checksum_failures > 0") == '0'
        return int(count)


def acknowledged(proc, timeout=120):
    out, _unused = proc.communicate(timeout=timeout)
    match = re.search(r'number of transactions actually processed: (\d+)', out)
    assert match, out
    return int(match.group(1)), out


class Checkpoints(threading.Thread):
    """CHECKPOINT in a loop: the trial's corrupt live copies had a checkpoint while tar read base/."""

    def __init__(self, pg):
        super().__init__(daemon=True)
        self.pg, self.stop, self.count = pg, threading.Event(), 0

    def run(self):
        while not self.stop.is_set():
            if subprocess.run([PGBIN + '/psql', '-XAtqc', 'CHECKPOINT'], env=self.pg.env,
                              capture_output=True, check=False).returncode == 0:
                self.count += 1
            time.sleep(0.3)


def test_postgres_under_load_defaults_pause_stop(docker_client, pg_image, prefix, tmp_path):
    dest = str(tmp_path / 'backups')
    vol = prefix + '_pg'
    pg = Postgres(docker_client, pg_image, prefix + '_pg', vol)
    assert pg.sql('show data_checksums') == 'on'
    subprocess.run([PGBIN + '/pgbench', '-i', '-q', '-s', '5'], env=pg.env, check=True, capture_output=True)

    # 1. Load + checkpoints while backing up with the defaults, with pause, and live (quiesce: none).
    checkpoints = Checkpoints(pg)
    checkpoints.start()
    load = pg.pgbench('-T', '14')
    time.sleep(2)
    run = run_playbook([backup('default', volume=vol, dest=dest),
                        backup('pause', volume=vol, dest=dest, quiesce='pause'),
                        backup('live', volume=vol, dest=dest, quiesce='none')])
    assert run.rc == 0, run.stdout + run.stderr
    acked_first, out = acknowledged(load)
    assert 'aborted' not in out, out  # pausing costs the clients latency, never a connection
    checkpoints.stop.set()
    checkpoints.join()
    assert checkpoints.count > 0
    default, paused, live = run.task('default'), run.task('pause'), run.task('live')
    for res, mode in ((default, 'auto'), (paused, 'pause')):
        assert res['quiesce_action'] == 'pause' and res['quiesced'] and res['consistent'], res
        assert res['live_writers'] == [] and res['files_changed'] is False
        [entry] = res['containers']
        assert entry['name'] == pg.name and entry['action'] == 'pause' and entry['resumed'] is True
        # resumed as soon as tar had read the volume: before the compression tail, fsync and read-back
        assert 0 < entry['downtime_seconds'] < res['duration_seconds']
        assert not any('consistent' in w for w in res.get('warnings', []))
        manifest = json.load(open(res['manifest']))
        assert manifest['quiesce'] == mode and manifest['consistent'] is True and manifest['quiesced'] is True
        assert manifest['containers'][0]['downtime_seconds'] == entry['downtime_seconds']
    assert live['quiesce_action'] == 'none' and live['consistent'] is False and live['live_writers'] == [pg.name]
    assert any('NOT consistent' in w and pg.name in w for w in live['warnings'])
    assert json.load(open(live['manifest']))['consistent'] is False

    # 2. Stop under load: the server shuts down on its stop signal (SIGINT, fast), pgbench's clients are cut off;
    #    the copy holds every acknowledged transaction.
    load = pg.pgbench('-T', '30')
    time.sleep(2)
    run = run_playbook([backup('stop', volume=vol, dest=dest, quiesce='stop', stop_timeout=30)])
    assert run.rc == 0, run.stdout + run.stderr
    acked_second, out = acknowledged(load)
    assert 'aborted' in out, out
    stopped = run.task('stop')
    [entry] = stopped['containers']
    assert entry['action'] == 'stop' and entry['resumed'] and entry['killed'] is False, entry
    assert entry['stop_signal'] == 'SIGINT' and entry['exit_code'] == 0
    assert stopped['consistent'] is True and not any('killed' in w for w in stopped.get('warnings', []))
    pg.wait_ready()  # started again by the backup
    acked_total = acked_first + acked_second

    # 3. Restore every copy into a new volume, start it, check it. The live copy: refused by the role's setting,
    #    a warning otherwise (check mode: verified, nothing written).
    run = run_playbook([
        restore('r-default', archive=default['archive'], volume=prefix + '_rdefault'),
        restore('r-pause', archive=paused['archive'], volume=prefix + '_rpause'),
        restore('r-stop', archive=stopped['archive'], volume=prefix + '_rstop'),
        dict(restore('r-live-warn', archive=live['archive'], volume=prefix + '_rlive'), check_mode=True),
        dict(restore('r-live-refused', archive=live['archive'], volume=prefix + '_rlive', allow_inconsistent=False),
             ignore_errors=True),
    ])
    assert run.task('r-default')['consistent'] is True and run.task('r-stop')['consistent'] is True
    assert any('NOT consistent' in w for w in run.task('r-live-warn')['warnings'])
    refused = run.task('r-live-refused')
    assert run.status('r-live-refused') == 'failed'
    assert 'NOT consistent' in refused['msg'] and 'Nothing was touched' in refused['msg']
    assert docker_client.volumes(filters={'name': prefix + '_rlive'})['Volumes'] in (None, [])
    counts = {}
    for which in ('default', 'pause', 'stop'):
        copy = Postgres(docker_client, pg_image, '%s_c%s' % (prefix, which), '%s_r%s' % (prefix, which))
        counts[which] = copy.check()
        docker_client.remove_container(copy.name, force=True)
    print('pgbench acknowledged %d + %d; restored history rows %s; pause downtime %.2f s / %.2f s, stop %.2f s; '
          'checkpoints %d' % (acked_first, acked_second, counts, default['containers'][0]['downtime_seconds'],
                              paused['containers'][0]['downtime_seconds'], entry['downtime_seconds'],
                              checkpoints.count))
    # paused copies: a prefix of the first run's transactions (a commit may be in flight, unacknowledged, per client)
    for which in ('default', 'pause'):
        assert 0 < counts[which] <= acked_first + CLIENTS, counts
    # stopped copy: every acknowledged transaction, plus at most one per client whose commit was cut off unanswered
    assert acked_total <= counts['stop'] <= acked_total + CLIENTS, (counts, acked_first, acked_second)


def test_dump_hook_recipe(docker_client, pg_image, prefix, tmp_path):
    """docs/databases.md: a logical dump written 0600 beside (not inside) the data directory, and restored from."""
    dest = str(tmp_path / 'backups')
    vol = prefix + '_pgd'
    pg = Postgres(docker_client, pg_image, prefix + '_pgd', vol)
    pg.sql("create table orders (id int primary key, item text); insert into orders select g, 'item ' || g "
           "from generate_series(1, 1000) g")
    dump = PGDATA_PARENT + '/dump.sql'
    run = run_playbook([backup('dump', volume=vol, dest=dest, pre_hooks=[{
        'container': pg.name, 'user': 'postgres',
        'command': ['sh', '-c', 'umask 077 && pg_dumpall -U postgres > %s.tmp && mv %s.tmp %s'
                    % (dump, dump, dump)]}])])
    assert run.rc == 0, run.stdout + run.stderr
    res = run.task('dump')
    assert res['consistent'] and res['hooks'][0]['exit_code'] == 0
    listing = subprocess.run(['tar', '--zstd', '-tvf', res['archive'], './dump.sql'], capture_output=True,
                             text=True, check=True).stdout
    assert listing.startswith('-rw------- 999/999'), listing
    # restore from the dump, not the files: an empty server, then psql -f
    run = run_playbook([restore('files', archive=res['archive'], volume=prefix + '_pgdr')])
    assert run.rc == 0, run.stdout
    fresh_vol = prefix + '_pgdn'
    docker_client.create_volume(fresh_vol)
    fresh = Postgres(docker_client, pg_image, prefix + '_pgdn', fresh_vol)
    loader = docker_client.create_container(pg_image, name=prefix + '_load', entrypoint=['sh', '-c'], command=[
        'psql -X -q -h "$PGHOST" -U postgres -d postgres -f /restore/dump.sql'],
        environment={'PGHOST': fresh.env['PGHOST']},
        host_config=docker_client.create_host_config(binds={prefix + '_pgdr': {'bind': '/restore', 'mode': 'ro'}}))
    docker_client.start(loader)
    code = docker_client.wait(loader)
    code = code.get('StatusCode') if isinstance(code, dict) else code
    logs = docker_client.logs(loader).decode(errors='replace')
    assert code == 0, logs[-2000:]
    # the one expected complaint: the fresh server has its superuser already
    errors = [line.split('ERROR:', 1)[1].strip() for line in logs.splitlines() if 'ERROR:' in line]
    assert errors == ['role "postgres" already exists'], logs[-2000:]
    assert fresh.sql('select count(*), sum(id) from orders') == '1000|500500'


def _writer(client, prefix, vol, command=None, name='_app'):
    command = command or ['sh', '-c', "trap 'exit 0' TERM; while :; do date >> /data/log; sleep 0.05; done"]
    client.create_container(TEST_IMAGE, name=prefix + name, command=command,
                            host_config=client.create_host_config(binds={vol: {'bind': '/data'}}))
    client.start(prefix + name)
    return prefix + name


def test_container_killed_at_timeout_is_reported(docker_client, prefix, tmp_path):
    vol = prefix + '_k'
    docker_client.create_volume(vol)
    # PID 1 without a handler never sees SIGTERM: Docker has to kill it at the timeout
    name = _writer(docker_client, prefix, vol, command=['sleep', '3600'])
    run = run_playbook([backup('b', volume=vol, dest=str(tmp_path / 'b'), quiesce='stop', stop_timeout=1)])
    assert run.rc == 0, run.stdout
    res = run.task('b')
    [entry] = res['containers']
    assert entry['killed'] is True and entry['exit_code'] == 137 and entry['stop_signal'] == 'SIGTERM'
    assert entry['resumed'] and entry['downtime_seconds'] >= 1
    assert any(name in w and 'SIGTERM' in w and 'killed' in w for w in res['warnings']), res.get('warnings')
    manifest = json.load(open(res['manifest']))
    assert manifest['containers'][0]['killed'] is True
    assert docker_client.inspect_container(name)['State']['Running']


def _fake_tool(tmp_path, name, script):
    fake = tmp_path / 'fakebin'
    fake.mkdir(exist_ok=True)
    (fake / name).write_text('#!/bin/sh\n' + script)
    (fake / name).chmod(0o755)
    return '%s:%s' % (fake, os.environ['PATH'])


@pytest.mark.parametrize('mode', ['auto', 'stop'])
def test_failure_mid_pipeline_puts_containers_back(docker_client, prefix, tmp_path, mode):
    vol = prefix + '_f'
    docker_client.create_volume(vol)
    name = _writer(docker_client, prefix, vol)
    subprocess.run(['dd', 'if=/dev/urandom', 'of=%s/blob' % docker_client.inspect_volume(vol)['Mountpoint'],
                    'bs=1M', 'count=8', 'status=none'], check=True)
    path = _fake_tool(tmp_path, 'zstd', 'head -c 100000 >/dev/null; echo "zstd: disk on fire" >&2; exit 3\n')
    dest = tmp_path / 'b'
    task = dict(backup('b', volume=vol, dest=str(dest), quiesce=mode, stop_timeout=5), environment={'PATH': path})
    run = run_playbook([task])
    assert run.rc != 0
    assert 'zstd exited 3' in run.task('b')['msg'] and 'disk on fire' in run.task('b')['msg']
    state = docker_client.inspect_container(name)['State']
    assert state['Running'] and not state['Paused']
    assert [f for f in os.listdir(dest / vol) if f != '.lock'] == []


def _descendants(pid):
    children = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                ppid = int(open('/proc/%s/stat' % entry).read().rsplit(')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def test_signal_mid_pipeline_puts_containers_back(docker_client, prefix, tmp_path):
    """The module is sent SIGTERM while the containers are paused (a compressor that hangs): it unpauses them,
    removes the partial archive and fails with a clear message."""
    vol = prefix + '_s'
    docker_client.create_volume(vol)
    name = _writer(docker_client, prefix, vol)
    subprocess.run(['dd', 'if=/dev/urandom', 'of=%s/blob' % docker_client.inspect_volume(vol)['Mountpoint'],
                    'bs=1M', 'count=8', 'status=none'], check=True)
    path = _fake_tool(tmp_path, 'zstd', 'sleep 60\n')  # reads nothing: tar blocks on a full pipe, paused
    dest = tmp_path / 'b'
    result = {}
    worker = threading.Thread(target=lambda: result.update(run=run_playbook(
        [dict(backup('b', volume=vol, dest=str(dest)), environment={'PATH': path})])))
    worker.start()
    deadline = time.monotonic() + 60
    while not docker_client.inspect_container(name)['State']['Paused']:
        assert time.monotonic() < deadline, 'the backup never paused the container'
        time.sleep(0.1)
    time.sleep(0.5)
    me = os.getpid()
    modules = []
    for pid in _descendants(me):
        argv = open('/proc/%d/cmdline' % pid).read().split('\0')
        if 'python' in os.path.basename(argv[0]) and any('AnsiballZ_volume_backup' in a for a in argv):
            modules.append(pid)  # the module's own interpreter, not the shell that started it
    assert modules
    for pid in modules:
        os.kill(pid, signal.SIGTERM)
    worker.join(120)
    run = result['run']
    assert run.rc != 0 and 'Interrupted by signal' in run.task('b')['msg'], run.stdout
    state = docker_client.inspect_container(name)['State']
    assert state['Running'] and not state['Paused']
    assert [f for f in os.listdir(dest / vol) if f != '.lock'] == []
