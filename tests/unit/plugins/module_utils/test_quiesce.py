# -*- coding: utf-8 -*-
"""Quiescing: which containers `auto` pauses, early resume, downtime, containers killed at the stop timeout,
failures while quiescing and resuming, and the consistency record (fake Engine client; the real engine is in
tests/integration/test_databases.py)."""

from __future__ import annotations

import os
import time

import pytest

from ansible_collections.holdfast.volumes.plugins.module_utils._archive_write import ArchiveOutput, write_archive
from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import APIError
from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._quiesce import (
    Quiesce,
    consistency_record,
    effective_mode,
    inconsistency_warning,
    restore_consistency,
    warn_inconsistent,
)


def c(name, state='running', writable=True):
    return dict(name=name, id='id-' + name, state=state, running=state in ('running', 'paused', 'restarting'),
                writable=writable)


class FakeClient:
    def __init__(self, exit_code=0, stop_signal=None, fail=()):
        self.calls = []
        self.exit_code = exit_code
        self.stop_signal = stop_signal
        self.fail = set(fail)

    def _call(self, what, cid):
        self.calls.append((what, cid))
        if (what, cid) in self.fail:
            raise APIError('%s %s refused' % (what, cid))

    def pause(self, cid):
        self._call('pause', cid)

    def unpause(self, cid):
        self._call('unpause', cid)

    def stop(self, cid, timeout):
        self._call('stop', cid)

    def start(self, cid):
        self._call('start', cid)

    def inspect_container(self, cid):
        return {'Config': {'StopSignal': self.stop_signal}, 'State': {'ExitCode': self.exit_code}}


USERS = [c('db'), c('reader', writable=False), c('old', state='exited'), c('frozen', state='paused')]


def test_auto_pauses_running_writers_only():
    assert effective_mode('auto', USERS) == ('pause', [USERS[0]])
    assert effective_mode('auto', [USERS[1], USERS[2]]) == ('none', [])
    assert effective_mode('pause', USERS) == ('pause', USERS[:2])  # explicit: every running user
    assert effective_mode('stop', USERS)[1] == USERS[:2]
    assert effective_mode('none', USERS) == ('none', [])


def test_resume_early_once_and_downtime():
    client = FakeClient()
    q = Quiesce(client, 'auto', USERS)
    with q:
        assert client.calls == [('pause', 'id-db')]
        time.sleep(0.05)
        q.resume()  # the source has been read
        assert client.calls[-1] == ('unpause', 'id-db')
        time.sleep(0.2)  # compression tail, fsync, read-back: not downtime
    assert client.calls == [('pause', 'id-db'), ('unpause', 'id-db')]
    [entry] = q.report()
    assert entry['resumed'] and entry['restored'] and entry['action'] == 'pause'
    assert 0.05 <= entry['downtime_seconds'] < 0.2


def test_killed_at_timeout_is_warned_and_recorded():
    q = Quiesce(FakeClient(exit_code=137), 'stop', [c('pg')], stop_timeout=7)
    with q:
        pass
    [entry] = q.report()
    assert entry['killed'] is True and entry['stop_signal'] == 'SIGTERM' and entry['exit_code'] == 137
    [warning] = q.warnings
    assert 'pg' in warning and 'SIGTERM' in warning and '7s' in warning
    # a clean stop, or a container whose stop signal is SIGKILL itself, is no warning
    for client in (FakeClient(exit_code=0, stop_signal='SIGINT'), FakeClient(exit_code=137, stop_signal='SIGKILL')):
        q = Quiesce(client, 'stop', [c('pg')])
        with q:
            pass
        assert q.report()[0]['killed'] is False and q.warnings == []


def test_failure_while_quiescing_puts_back_the_ones_done():
    client = FakeClient(fail={('pause', 'id-b')})
    q = Quiesce(client, 'auto', [c('a'), c('b'), c('c')])
    with pytest.raises(HoldfastError, match='pause the containers'):
        with q:
            pass
    assert client.calls == [('pause', 'id-a'), ('pause', 'id-b'), ('unpause', 'id-a')]


def test_failure_inside_puts_back_and_propagates():
    client = FakeClient()
    with pytest.raises(RuntimeError):
        with Quiesce(client, 'stop', [c('a'), c('b')]):
            raise RuntimeError('tar died')
    assert client.calls[-2:] == [('start', 'id-b'), ('start', 'id-a')]


def test_resume_failure_is_an_error_naming_the_container():
    client = FakeClient(fail={('unpause', 'id-a')})
    q = Quiesce(client, 'pause', [c('a'), c('b')])
    with pytest.raises(HoldfastError, match='a: .*refused'):
        with q:
            q.resume()
    assert ('unpause', 'id-b') in client.calls and client.calls.count(('unpause', 'id-a')) == 1
    assert [e['resumed'] for e in q.report()] == [False, True]


def test_consistency_record():
    stats = dict(files_changed=False)
    quiesced = consistency_record('pause', USERS, [dict(name='db')], ['id-db'], stats)
    assert quiesced == dict(quiesce_action='pause', quiesced=True, live_writers=[], files_changed=False,
                            consistent=True)
    live = consistency_record('none', USERS, [], [], dict(files_changed=True))
    assert live['consistent'] is False and live['live_writers'] == ['db'] and live['quiesced'] is False
    msg = inconsistency_warning('shop_db', live, ['tar: ./base/1: file changed as we read it'])
    assert 'NOT consistent' in msg and 'db' in msg and 'file changed as we read it' in msg
    # nothing writes, tar saw no change: consistent without quiescing; engine route: tar cannot tell (None)
    assert consistency_record('none', [USERS[1]], [], [], dict(files_changed=None))['consistent'] is True
    # a path backup with no Engine to ask: writers unknown, only tar's word
    unknown = consistency_record('none', None, [], [], stats)
    assert unknown['live_writers'] is None and unknown['consistent'] is True


def test_restore_consistency():
    assert restore_consistency('a', {'consistent': True}, False) is True
    assert restore_consistency('a', {}, False) is None  # older manifests: unknown, not refused
    assert restore_consistency('a', None, False) is None
    assert restore_consistency('a', {'consistent': 'no'}, False) is None  # hostile: not a bool
    assert restore_consistency('a', {'consistent': False}, True) is False
    with pytest.raises(HoldfastError, match='written by db during the copy.*allow_inconsistent'):
        restore_consistency('a', {'consistent': False, 'live_writers': ['db']}, False)

    def run(params, check_mode=False):
        return dict(archive='x', consistent=params['c']), ['other']
    assert warn_inconsistent(run)({'c': True}) == (dict(archive='x', consistent=True), ['other'])
    result, warnings = warn_inconsistent(run)({'c': False})
    assert len(warnings) == 2 and 'NOT consistent' in warnings[0]


def test_write_archive_reports_the_source_read_before_the_tail(tmp_path, monkeypatch):
    """Containers resume when tar exits, not after a slow compressor and the read-back."""
    fake = tmp_path / 'bin'
    fake.mkdir()
    (fake / 'zstd').write_text('#!/bin/sh\ncat > /dev/null\nsleep 1\necho compressed\n')
    (fake / 'zstd').chmod(0o755)
    monkeypatch.setenv('PATH', '%s:%s' % (fake, os.environ['PATH']))
    called = []
    start = time.monotonic()
    stats = write_archive(['head', '-c', '200000', '/dev/zero'], None, str(tmp_path / 'out'),
                          ArchiveOutput('zstd', verify=True),
                          on_source_done=lambda: called.append(time.monotonic() - start), hold_verify=True)
    total = time.monotonic() - start
    assert len(called) == 1 and called[0] < 0.8 <= total
    assert stats['source_seconds'] is not None and stats['source_seconds'] < 0.8


class Interrupt(BaseException):
    pass


class InterruptOnce(FakeClient):
    """The first unpause is interrupted by a signal (turned into an exception by the module)."""

    def unpause(self, cid):
        self._call('unpause', cid)
        if not getattr(self, 'interrupted', False):
            self.interrupted = True
            raise Interrupt()


def test_a_signal_while_resuming_leaves_no_container_behind():
    client = InterruptOnce()
    q = Quiesce(client, 'pause', [c('a'), c('b')])
    with pytest.raises(Interrupt):
        with q:
            pass
    # b (resumed first) was interrupted and tried again; a was resumed too; then the signal's exception surfaced
    assert client.calls == [('pause', 'id-a'), ('pause', 'id-b'), ('unpause', 'id-b'), ('unpause', 'id-b'),
                            ('unpause', 'id-a')]
    assert all(e['resumed'] for e in q.report())


class InterruptPause(FakeClient):
    def pause(self, cid):
        self._call('pause', cid)
        if cid == 'id-b':
            raise Interrupt()


def test_a_signal_while_quiescing_puts_back_the_ones_done():
    client = InterruptPause()
    with pytest.raises(Interrupt):
        with Quiesce(client, 'pause', [c('a'), c('b'), c('c')]):
            pass  # pragma: no cover (never entered)
    assert client.calls == [('pause', 'id-a'), ('pause', 'id-b'), ('unpause', 'id-a')]


def test_copy_failure_and_resume_failure_are_both_told():
    client = FakeClient(fail={('unpause', 'id-a')})
    with pytest.raises(HoldfastError) as info:
        with Quiesce(client, 'pause', [c('a')]):
            raise HoldfastError('The backup failed, nothing was kept: zstd exited 3')
    assert 'zstd exited 3' in info.value.msg and 'could not be unpaused' in info.value.msg
    assert 'docker unpause' in info.value.msg


def test_writers_paused_by_someone_else_and_woken_during_the_read():
    from ansible_collections.holdfast.volumes.plugins.module_utils._quiesce import woke_up

    class Inspect(FakeClient):
        def inspect_container(self, cid):
            if cid == 'id-gone':
                raise APIError('no such container')
            return {'State': {'Paused': cid == 'id-still'}}
    assert woke_up(Inspect(), [c('still', 'paused'), c('woke', 'paused'), c('gone', 'paused')]) == ['woke', 'gone']
    users = [c('still', 'paused'), c('woke', 'paused')]
    record = consistency_record('none', users, [], [], dict(files_changed=False), woke=['woke'])
    assert record['consistent'] is False and record['live_writers'] == ['woke']
