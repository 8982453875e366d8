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
import threading
import time

from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import (
    APIError,
    DockerException,
    api_error,
    container_mounts,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError

MODES = ('auto', 'none', 'pause', 'stop')
# What `auto` does: pause the running containers that mount the source writable (see docs/databases.md: the
# freezer holds every process between two system calls, so the copy is what a power cut at that instant would
# have left on disk, which every crash-safe store recovers from; no shutdown, no cold start, connections survive).
AUTO_ACTION = 'pause'
_KILL_SIGNALS = ('SIGKILL', 'KILL', '9')


def _overlap(a, b):
    return a == b or a.startswith(b.rstrip('/') + '/') or b.startswith(a.rstrip('/') + '/')


def containers_using(client, volume=None, path=None, local=True):
    """Containers (all states) that mount the volume, or that reach the host path (or anything under or above it)
    through a bind mount or through any volume whose data lies there: a volume bound to a directory
    (driver_opts type=none, o=bind, device) or a plain local volume's own directory.

    Each carries `writable`: whether any of its mounts of the source is read-write.
    """
    from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import list_volumes
    from ansible_collections.holdfast.volumes.plugins.module_utils._volume_access import host_data_path

    def norm(p):
        return os.path.realpath(p) if local else os.path.normpath(p)
    real = norm(path) if path else None
    volume_dirs = {}
    if real:
        for vol in list_volumes(client):
            where = host_data_path(vol)
            if where:
                volume_dirs[vol['Name']] = norm(where)
    out = []
    for container, mount in container_mounts(client):
        hit = bool(volume) and mount.get('Type') == 'volume' and mount.get('Name') == volume
        if real and not hit:
            if mount.get('Type') == 'bind' and mount.get('Source'):
                hit = _overlap(norm(mount['Source']), real)
            elif mount.get('Type') == 'volume' and mount.get('Name') in volume_dirs:
                hit = _overlap(volume_dirs[mount['Name']], real)
        if not hit:
            continue
        writable = bool(mount.get('RW', True))
        if out and out[-1]['id'] == container['id']:
            out[-1]['writable'] = out[-1]['writable'] or writable  # counted already through another mount
            continue
        out.append(dict(container, writable=writable))
    return out


def effective_mode(mode, containers):
    """The action `mode` takes, and the containers it acts on (running ones only).

    auto: pause the running containers that mount the source writable (none when there are none); pause/stop:
    every running container that uses the source; none: nothing.
    """
    running = [c for c in containers if c.get('state') == 'running']
    if mode == 'auto':
        writers = [c for c in running if c.get('writable', True)]
        return (AUTO_ACTION if writers else 'none'), writers
    if mode == 'none':
        return 'none', []
    return mode, running


def live_writers(containers, touched_ids):
    """Containers that could write to the source while it was read: running or restarting, mounted writable, and
    not paused or stopped for the copy."""
    return [c['name'] for c in containers if c.get('state') in ('running', 'restarting')
            and c.get('writable', True) and c['id'] not in touched_ids]


class Quiesce(object):
    """Pause or stop containers for the copy; put them back when resume() is called (as soon as the source has
    been read) or at the latest when the context exits, whatever happened inside."""

    def __init__(self, client, mode, containers, stop_timeout=30):
        if mode not in MODES:
            raise HoldfastError("quiesce must be one of %s." % ", ".join(MODES))
        self.client = client
        self.mode = mode
        self.action, self.containers = effective_mode(mode, containers)
        self.stop_timeout = stop_timeout
        self.touched = []
        self.restore_errors = []
        self.warnings = []
        self._lock = threading.Lock()

    def __enter__(self):
        if self.action == 'none':
            return self
        try:
            for c in self.containers:
                entry = dict(name=c['name'], id=c['id'], action=self.action, started=time.monotonic())
                if self.action == 'pause':
                    self.client.pause(c['id'])
                    self.touched.append(entry)
                else:
                    self.touched.append(entry)  # a failed stop may have stopped it still: try to start it again
                    self.client.stop(c['id'], timeout=self.stop_timeout)
                    self._check_stopped(entry, time.monotonic() - entry['started'])
        except (DockerException, APIError) as exc:
            self.resume()
            raise api_error('%s the containers using the source' % self.action, exc) from exc
        except BaseException:  # a signal turned into an exception: __exit__ will not run, so put them back here
            self.resume()
            raise
        return self

    def _check_stopped(self, entry, elapsed):
        """Was the container killed at the timeout rather than stopped by its stop signal? Recorded and warned."""
        try:
            info = self.client.inspect_container(entry['id'])
        except (DockerException, APIError):
            return
        signal = (info.get('Config') or {}).get('StopSignal') or 'SIGTERM'
        code = (info.get('State') or {}).get('ExitCode')
        entry.update(stop_signal=signal, exit_code=code, stop_seconds=round(elapsed, 3))
        entry['killed'] = code == 137 and signal.upper() not in _KILL_SIGNALS
        if entry['killed']:
            self.warnings.append(
                "Container %s did not stop on its stop signal %s within %ss; Docker killed it (SIGKILL, exit code "
                "137). Its files are only what a crash would have left. Give it a stop signal it honours (PostgreSQL: "
                "SIGINT, a fast shutdown) or a longer stop_timeout, or use quiesce: pause."
                % (entry['name'], signal, self.stop_timeout))

    def __exit__(self, exc_type, exc, tb):
        self.resume()
        if self.restore_errors:
            what = "containers could not be %s: %s. Put them back by hand (docker %s)." % (
                'unpaused' if self.action == 'pause' else 'started', "; ".join(self.restore_errors),
                'unpause' if self.action == 'pause' else 'start')
            if exc_type is None:
                raise HoldfastError("The copy succeeded but " + what)
            raise HoldfastError("%s And %s" % (getattr(exc, 'msg', None) or exc, what)) from exc
        return False

    def resume(self):
        """Unpause or start every touched container (once; safe to call from another thread and again later).

        A signal turned into an exception in the middle does not leave the others behind: the interrupted one is
        tried once more, the rest are put back, and the exception is raised at the end.
        """
        pending = None
        with self._lock:
            for c in reversed(self.touched):
                if c.get('restored') or c.get('failed'):
                    continue
                for _attempt in (1, 2):
                    try:
                        if c['action'] == 'pause':
                            self.client.unpause(c['id'])
                        else:
                            self.client.start(c['id'])
                        c['restored'] = True
                        break
                    except (DockerException, APIError) as exc:
                        c['failed'] = True
                        self.restore_errors.append('%s: %s' % (c['name'], exc))
                        break
                    except BaseException as exc:  # pylint: disable=broad-except
                        pending = pending or exc
                c['downtime'] = time.monotonic() - c['started']
        if pending is not None:
            raise pending

    def report(self):
        out = []
        for c in self.touched:
            entry = dict(name=c['name'], action=c['action'], resumed=bool(c.get('restored')),
                         restored=bool(c.get('restored')),
                         downtime_seconds=round(c['downtime'], 3) if 'downtime' in c else None)
            if c['action'] == 'stop':
                entry.update(killed=bool(c.get('killed')), stop_signal=c.get('stop_signal'),
                             exit_code=c.get('exit_code'))
            out.append(entry)
        return out


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


def woke_up(client, containers):
    """Names of the containers (paused before the backup, by someone else) that are no longer paused."""
    out = []
    for c in containers:
        try:
            state = client.inspect_container(c['id']).get('State') or {}
        except (DockerException, APIError):  # gone, or the Engine failed: cannot vouch for it
            state = {}
        if not state.get('Paused'):
            out.append(c['name'])
    return out


def consistency_record(action, users, containers, touched_ids, stats, *, woke=()):
    """What the manifest and the result say about the copy's consistency (pure).

    quiesced: containers were paused or stopped for the read. live_writers: containers that could write while it
    was read (running, mounted writable, not quiesced; or paused by someone else and unpaused before the read
    ended); None when the Engine could not be asked (a path backup with
    quiesce: none and no Engine). files_changed: tar reported files that changed while it read them (None on the
    Engine route, which cannot tell). consistent: no live writer and no changed file.
    """
    writers = None if users is None else live_writers(users, set(touched_ids)) + list(woke)
    files_changed = stats.get('files_changed')
    return dict(
        quiesce_action=action, quiesced=bool(containers), live_writers=writers, files_changed=files_changed,
        consistent=not writers and files_changed is not True)


def inconsistency_warning(name, consistency, tar_messages):
    reasons = []
    if consistency['live_writers']:
        reasons.append("containers %s had it mounted writable and were not quiesced while it was read"
                       % ", ".join(consistency['live_writers']))
    if consistency['files_changed']:
        reasons.append("tar saw files change while it read them%s" % (
            " (%s)" % tar_messages[0] if tar_messages else ''))
    return ("The backup of %s is NOT consistent: %s. A database restored from it may start and still be corrupt. "
            "Use the default quiesce (auto: pause the writers) or quiesce: pause or stop; see docs/databases.md."
            % (name, "; ".join(reasons)))


def restore_consistency(archive, manifest, allow_inconsistent=True):
    """The recorded consistency of the backup being restored: True, False, or None (an older manifest, or none).

    Raises HoldfastError for an inconsistent backup unless allow_inconsistent (checked before anything is touched).
    """
    value = (manifest or {}).get('consistent') if isinstance(manifest, dict) else None
    consistent = value if isinstance(value, bool) else None
    if consistent is False and not allow_inconsistent:
        raise HoldfastError(
            "The backup %s is recorded as NOT consistent (%s); a database restored from it may start and still be "
            "corrupt. Restore an older consistent backup, restore the application from its own dump, or set "
            "allow_inconsistent: true (role: holdfast_restore_allow_inconsistent: true) to restore it anyway. "
            "Nothing was touched." % (archive, _why(manifest)))
    return consistent


def _why(manifest):
    reasons = []
    writers = manifest.get('live_writers')
    if writers and isinstance(writers, list):
        reasons.append('written by %s during the copy' % ', '.join(str(w) for w in writers))
    if manifest.get('files_changed') is True:
        reasons.append('tar saw files change')
    return '; '.join(reasons) or 'see its manifest'


def warn_inconsistent(run):
    """Wrap a restore so that restoring a backup recorded as inconsistent warns."""
    def wrapped(params, **kwargs):
        outcome = run(params, **kwargs)
        result, warnings = outcome if isinstance(outcome, tuple) else (outcome, [])
        if result.get('consistent') is False:
            warnings = ["Restored %s, a backup recorded as NOT consistent (live writers or files changed during the "
                        "copy): check the application's data before trusting it." % result.get('archive')] \
                + list(warnings)
        return result, warnings
    return wrapped
