# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Quiescing: pause or stop the containers that use a volume (or a host path) for the copy only.

Used as a context manager: whatever happens inside (an exception, a failed copy), every container that was
touched is put back in the state it had (unpaused, started) before the error propagates.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import (
    APIError,
    DockerException,
    api_error,
    container_mounts,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError

MODES = ('none', 'pause', 'stop')


def containers_using(client, volume=None, path=None):
    """Containers (all states) mounting the volume, or bind-mounting the path or anything under/above it."""
    real = os.path.realpath(path) if path else None
    out = []
    for container, mount in container_mounts(client):
        if out and out[-1]['id'] == container['id']:
            continue  # already counted through another mount
        hit = bool(volume) and mount.get('Type') == 'volume' and mount.get('Name') == volume
        if real and mount.get('Type') == 'bind' and mount.get('Source'):
            src = os.path.realpath(mount['Source'])
            hit = src == real or src.startswith(real + '/') or real.startswith(src + '/')
        if hit:
            out.append(container)
    return out


class Quiesce(object):
    def __init__(self, client, mode, containers, stop_timeout=30):
        if mode not in MODES:
            raise HoldfastError("quiesce must be one of %s." % ", ".join(MODES))
        self.client = client
        self.mode = mode
        self.containers = containers
        self.stop_timeout = stop_timeout
        self.touched = []
        self.restore_errors = []

    def __enter__(self):
        if self.mode == 'none':
            return self
        try:
            for c in self.containers:
                if c['state'] != 'running':
                    continue
                if self.mode == 'pause':
                    self.client.pause(c['id'])
                else:
                    self.client.stop(c['id'], timeout=self.stop_timeout)
                self.touched.append(dict(name=c['name'], id=c['id'], action=self.mode))
        except (DockerException, APIError) as exc:
            self._restore()
            raise api_error('%s the containers using the source' % self.mode, exc) from exc
        return self

    def __exit__(self, exc_type, exc, tb):
        self._restore()
        if self.restore_errors and exc_type is None:
            raise HoldfastError("The copy succeeded but containers could not be restarted: %s. Start them by hand "
                                "(docker start/unpause)." % "; ".join(self.restore_errors))
        return False

    def _restore(self):
        for c in reversed(self.touched):
            if c.get('restored'):
                continue
            try:
                if c['action'] == 'pause':
                    self.client.unpause(c['id'])
                else:
                    self.client.start(c['id'])
                c['restored'] = True
            except (DockerException, APIError) as exc:
                self.restore_errors.append('%s: %s' % (c['name'], exc))

    def report(self):
        return [dict(name=c['name'], action=c['action'], restored=bool(c.get('restored'))) for c in self.touched]


def run_hook(client, hook, stage):
    """Run one hook command in a container; raise HoldfastError if it fails (exit code != 0)."""
    container = hook.get('container')
    command = hook.get('command')
    if not container or not command:
        raise HoldfastError("each %s hook needs a container and a command." % stage)
    try:
        exec_id = client.exec_create(container, command, user=hook.get('user') or '')
        output = client.exec_start(exec_id)
        code = client.exec_inspect(exec_id).get('ExitCode')
    except (DockerException, APIError) as exc:
        raise api_error('run the %s hook in container %s' % (stage, container), exc) from exc
    text = output.decode('utf-8', 'replace') if isinstance(output, bytes) else str(output)
    if code != 0:
        raise HoldfastError("The %s hook %r in container %s failed with exit code %s: %s" % (
            stage, command, container, code, text[-1000:].strip()), hook_output=text[-4000:])
    return dict(container=container, command=command, stage=stage, exit_code=code, output=text[-4000:])
