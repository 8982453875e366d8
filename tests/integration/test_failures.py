# -*- coding: utf-8 -*-
"""Real modules meeting real failures (a read-only filesystem, a full one, an Engine that stops answering) end with
a message that says what happened and what to do, never with a MODULE FAILURE traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from contextlib import contextmanager

from ansible_runner import run_playbook as _run_playbook
from trees import one_file_archive


def run_playbook(tasks):
    # ansible-core 2.19 passes a module's traceback on only when asked to
    return _run_playbook(tasks, env={'ANSIBLE_DISPLAY_TRACEBACK': 'error'})


@contextmanager
def tmpfs(path, size='1m', read_only=False, prepare=None):
    os.makedirs(path, exist_ok=True)
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%s,mode=0755' % size, 'holdfast-test', path], check=True)
    try:
        if prepare:
            prepare(path)
        if read_only:
            subprocess.run(['mount', '-o', 'remount,ro', path], check=True)
        yield path
    finally:
        subprocess.run(['umount', '-l', path], check=False)


def failed_cleanly(run, name):
    """The task failed through fail_json: a message, the traceback only in `exception`, no MODULE FAILURE."""
    result = run.task(name)
    assert run.status(name) == 'failed', run.stdout
    assert 'MODULE FAILURE' not in run.stdout + run.stderr, run.stdout
    assert 'module_stdout' not in result and 'module_stderr' not in result, result
    assert 'Traceback' in result.get('exception', ''), result
    return result['msg']


def test_read_only_filesystem(tmp_path):
    archive = one_file_archive(tmp_path)
    with tmpfs(str(tmp_path / 'ro'), read_only=True) as root:
        run = run_playbook([{'name': 'restore', 'holdfast.volumes.volume_restore': {
            'archive': str(archive), 'path': os.path.join(root, 'target'), 'state_dir': str(tmp_path / 'state')}}])
    msg = failed_cleanly(run, 'restore')
    assert 'Read-only file system' in msg and str(tmp_path / 'ro') in msg, msg
    assert 'remount it read-write' in msg


def test_full_filesystem_on_preallocation(tmp_path):
    key = tmp_path / 'key'
    key.write_bytes(os.urandom(64))
    os.chmod(key, 0o600)
    with tmpfs(str(tmp_path / 'full'), size='4m') as root:
        backing = os.path.join(root, 'db.img')
        run = run_playbook([{'name': 'luks', 'holdfast.volumes.luks_path': {
            'path': str(tmp_path / 'mnt'), 'backing_file': backing, 'size': '64M', 'preallocate': True,
            'keyfile': str(key)}}])
        msg = failed_cleanly(run, 'luks')
        # the half-allocated backing file is not left behind to be mistaken for a good one by the next run
        assert not os.path.exists(backing), os.listdir(root)
    assert 'No space left on device' in msg and backing in msg and 'free space' in msg and 'removed' in msg


class HangingEngine(object):
    """A Docker API on a unix socket that answers the connection check (/_ping, /version) and then drops every
    other request without an answer: an Engine that dies while a module works."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(16)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        with conn:
            while True:
                data = b''
                while b'\r\n\r\n' not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                line = data.split(b'\r\n', 1)[0].decode()
                path = line.split(' ')[1]
                if path.endswith('/_ping'):
                    body = b'OK'
                elif path.endswith('/version'):
                    body = json.dumps({'ApiVersion': '1.41', 'MinAPIVersion': '1.12', 'Version': '20.10.24'}).encode()
                else:
                    return  # no answer at all: the client sees the connection aborted
                conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nApi-Version: 1.41\r\n'
                             b'Content-Length: %d\r\n\r\n%s' % (len(body), body))

    def close(self):
        self.sock.close()


def test_engine_that_stops_answering(tmp_path):
    engine = HangingEngine(str(tmp_path / 'docker.sock'))
    try:
        run = run_playbook([{'name': 'info', 'holdfast.volumes.volume_info': {
            'docker_host': 'unix://%s' % engine.path}}])
    finally:
        engine.close()
    msg = failed_cleanly(run, 'info')
    assert 'The Docker Engine failed' in msg and 'dockerd is running' in msg, msg


def test_check_mode_predicts_the_failures_of_odd_states(tmp_path, prefix):
    """What a real run would refuse, check mode refuses too, instead of predicting a change."""
    (tmp_path / 'notar.txt').write_text('not an archive\n')
    (tmp_path / 'dir').mkdir()
    (tmp_path / 'empty.img').write_bytes(b'')
    key = tmp_path / 'key'
    key.write_bytes(os.urandom(64))
    os.chmod(key, 0o600)
    run = _run_playbook([
        {'name': 'seed', 'holdfast.volumes.volume_seed': {'volume': prefix + '_later',
                                                          'src': str(tmp_path / 'notar.txt')},
         'ignore_errors': True},
        {'name': 'luks dir', 'holdfast.volumes.luks_path': {'path': str(tmp_path / 'm'), 'keyfile': str(key),
                                                            'backing_file': str(tmp_path / 'dir')},
         'ignore_errors': True},
        {'name': 'luks empty', 'holdfast.volumes.luks_path': {'path': str(tmp_path / 'm'), 'keyfile': str(key),
                                                              'backing_file': str(tmp_path / 'empty.img')},
         'ignore_errors': True}], check=True)
    assert run.status('seed') == 'failed' and 'is damaged' in run.task('seed')['msg'], run.task('seed')
    assert run.status('luks dir') == 'failed' and 'not a regular file' in run.task('luks dir')['msg']
    assert run.status('luks empty') == 'failed' and 'too small' in run.task('luks empty')['msg']
