# -*- coding: utf-8 -*-
"""Every failure ends as fail_json with a message that says what happened and what to do, the traceback in
`exception`: never a MODULE FAILURE. The failures are injected with fakes for the module and the helper."""

from __future__ import annotations

import errno
import os
import subprocess

import docker.errors
import pytest
import requests.exceptions

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._module_main import describe, execute


class Exited(Exception):
    pass


class FakeModule(object):
    """The parts of AnsibleModule that execute() uses; fail_json/exit_json end the run as the real ones do."""

    def __init__(self, params=None, diff=False):
        self.params = params or {}
        self._diff = diff
        self.failed = None
        self.exited = None
        self.warnings = []

    def fail_json(self, **kwargs):
        self.failed = kwargs
        raise Exited()

    def exit_json(self, **kwargs):
        self.exited = kwargs
        raise Exited()

    def warn(self, text):
        self.warnings.append(text)


def run(exc):
    def helper(params, **kwargs):
        raise exc
    module = FakeModule()
    with pytest.raises(Exited):
        execute(module, helper, check_mode=False)
    assert module.exited is None
    assert module.failed is not None, 'no fail_json'
    assert 'Traceback' in module.failed['exception'] and type(exc).__name__ in module.failed['exception']
    return module.failed['msg']


def enospc():
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), '/srv/backups/db/.holdfast-tmp-x')


@pytest.mark.parametrize('exc, needles', [
    (FileExistsError(errno.EEXIST, 'File exists', '/srv/luks/db.img'),
     ['File exists', '/srv/luks/db.img', 'interrupted run', 'stale']),
    (enospc(), ['No space left on device', '/srv/backups/db/.holdfast-tmp-x', 'free space']),
    (OSError(errno.EROFS, 'Read-only file system', '/mnt/ro'), ['Read-only', '/mnt/ro', 'read-write']),
    (PermissionError(errno.EACCES, 'Permission denied', '/srv/x'), ['Permission denied', 'become: true']),
    (PermissionError(errno.EPERM, 'Operation not permitted', '/srv/x'), ['not permitted', 'become: true']),
    (FileNotFoundError(errno.ENOENT, 'No such file or directory', '/srv/gone'), ['/srv/gone', 'does not exist']),
    (OSError(errno.EIO, 'Input/output error', '/dev/vdb'), ['Input/output', 'dmesg']),
    (OSError(errno.EXDEV, 'Invalid cross-device link', '/a', None, '/b'), ['/a -> /b', 'different filesystems']),
    (OSError(errno.ENOLINK, 'Link has been severed'), ['Link has been severed', 'errno %d' % errno.ENOLINK]),
    (docker.errors.DockerException('Error while fetching server API version'),
     ['Docker Engine failed', 'fetching server API version', 'docker info']),
    (docker.errors.APIError('500 Server Error', explanation='driver failed to mount'),
     ['Docker Engine failed', 'driver failed to mount']),
    (requests.exceptions.ConnectionError('Connection aborted.'),
     ['Docker Engine failed', 'Connection aborted', 'dockerd is running']),
    (requests.exceptions.ReadTimeout('UnixHTTPConnectionPool: Read timed out.'),
     ['Docker Engine failed', 'timed out', 'raise the timeout option']),
    (subprocess.TimeoutExpired(['tar', '-c'], 30), ['tar -c', 'too long']),
    (subprocess.CalledProcessError(2, ['zstd', '-d']), ['zstd -d', 'exit 2']),
    (MemoryError(), ['out of memory']),
    (KeyError('Mountpoint'), ['KeyError', 'Mountpoint', 'report it', 'exception']),
    (ValueError('bad value'), ['ValueError', 'bad value', 'report it']),
])
def test_unforeseen_failures_become_fail_json(exc, needles):
    msg = run(exc)
    for needle in needles:
        assert needle in msg, (needle, msg)


def test_holdfast_error_keeps_its_message_and_details():
    def helper(params, **kwargs):
        raise HoldfastError('The archive is damaged; the target was not touched.', refused=[{'member': '../x'}])
    module = FakeModule()
    with pytest.raises(Exited):
        execute(module, helper)
    assert module.failed['msg'] == 'The archive is damaged; the target was not touched.'
    assert module.failed['refused'] == [{'member': '../x'}]
    assert 'Traceback' in module.failed['exception']


def test_an_unlink_error_during_cleanup_is_reported_with_the_path(tmp_path):
    """A real OSError from os.unlink (a directory where a file was expected), raised by the helper."""
    victim = tmp_path / 'not-a-file'
    victim.mkdir()

    def helper(params, **kwargs):
        os.unlink(str(victim))
    module = FakeModule()
    with pytest.raises(Exited):
        execute(module, helper)
    assert str(victim) in module.failed['msg']
    assert 'os.unlink' in module.failed['exception']


def test_success_still_exits_with_the_result_and_warnings():
    module = FakeModule(diff=False)
    with pytest.raises(Exited):
        execute(module, lambda params: (dict(changed=True, diff={'before': 'a'}), ['careful']))
    assert module.exited == dict(changed=True) and module.warnings == ['careful']


def test_describe_never_returns_an_empty_message():
    assert describe(RuntimeError()).startswith('Unexpected error: RuntimeError: RuntimeError.')
    long = describe(ValueError('x' * 5000))
    assert len(long) < 1200
