# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""volume_backup, the doing part.

tar (GNU tar on the host path, or the Engine's archive API) -> zstd/pigz/gzip -> age -> this process, which
hashes and writes to a temporary name in the destination folder; then fsync, a re-read that checks the sha256,
rename, fsync of the folder, and the manifest written last (atomically too). A per-folder lock serialises
backups of one volume; temporaries left by a killed run are removed by the next one, under that lock.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import contextlib
import datetime
import os
import re
import signal
import socket
import threading
import time

from ansible_collections.holdfast.volumes.plugins.module_utils._archive_write import (
    TAR_CREATE,
    ArchiveOutput,
    compressor_command,
    write_archive,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import connect, inspect_volume
from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError, refuse_negative
from ansible_collections.holdfast.volumes.plugins.module_utils._process import need
from ansible_collections.holdfast.volumes.plugins.module_utils._quiesce import (
    Quiesce,
    consistency_record,
    containers_using,
    effective_mode,
    inconsistency_warning,
    run_hook,
    woke_up,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._safe_fs import (
    check_private_dir,
    foreign_writer,
    open_private_file,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._store import (
    COLLECTION_VERSION,
    FORMAT,
    FORMAT_VERSION,
    TMP_PREFIX,
    FolderLock,
    archive_name,
    clean_temporaries,
    fsync_dir,
    manifest_name_for,
    safe_folder_name,
    write_json_atomic,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._volume_access import (
    IterReader,
    VolumeAccess,
    one_volume_or_path,
)

AGE_RECIPIENT_RE = re.compile(r'^(age1[0-9a-z]{20,}|ssh-(ed25519|rsa) \S+.*)$')


_HOOK = dict(container=dict(type='str', required=True), command=dict(type='raw', required=True),
             user=dict(type='str'))
# The options of volume_backup besides the Docker connection (the module's argument spec, and the defaults the
# scheduled runner applies to the jobs the backup role writes).
BACKUP_OPTIONS = dict(
    volume=dict(type='str'),
    path=dict(type='path'),
    dest=dict(type='path', required=True),
    compression=dict(type='str', default='zstd', choices=['zstd', 'gzip', 'none']),
    compression_level=dict(type='int'),
    encrypt_to=dict(type='list', elements='str'),
    quiesce=dict(type='str', default='auto', choices=['auto', 'none', 'pause', 'stop']),
    stop_timeout=dict(type='int', default=30),
    pre_hooks=dict(type='list', elements='dict', options=_HOOK),
    post_hooks=dict(type='list', elements='dict', options=_HOOK),
    verify=dict(type='bool', default=True),
    lock_timeout=dict(type='int', default=600),
)


def validate(params):
    one_volume_or_path(params, 'source')
    dest = params.get('dest')
    if not dest or not os.path.isabs(dest):
        raise HoldfastError("dest must be an absolute directory path, got %r." % dest)
    if params.get('path') and not os.path.isabs(params['path']):
        raise HoldfastError("path must be absolute, got %r." % params['path'])
    for recipient in params.get('encrypt_to') or []:
        if not isinstance(recipient, str) or not AGE_RECIPIENT_RE.match(recipient.strip()):
            raise HoldfastError("encrypt_to: %r is not an age recipient (age1... public key or an ssh public key)."
                                % recipient)
    level = params.get('compression_level')
    if level is not None and not (1 <= level <= 19):
        raise HoldfastError("compression_level must be between 1 and 19.")
    for stage in ('pre_hooks', 'post_hooks'):
        for hook in params.get(stage) or []:
            if not hook.get('container') or not hook.get('command'):
                raise HoldfastError("each entry of %s needs a container and a command." % stage)
    refuse_negative(params, 'stop_timeout', 'lock_timeout')


def check_dest(dest):
    """Refuse a destination another user can change (owned by them, or writable by group/other without the sticky
    bit): they could rename the backup folder between its check and its use (lock, temporaries, rename, manifest)
    and put their own in its place."""
    try:
        st = os.stat(dest)
    except FileNotFoundError:
        return  # created by this run, root's
    except OSError as exc:
        raise HoldfastError("Cannot read the backup destination %s: %s" % (dest, exc.strerror)) from exc
    why = foreign_writer(st)
    if why:
        raise HoldfastError("The backup destination %s could be changed by another user (%s): they could replace "
                            "the backup folder while the backup writes into it. Give it to root and remove group/"
                            "other write (chown root: %s && chmod go-w %s), or set the sticky bit (chmod +t)."
                            % (dest, why, dest, dest))


def count_index(path):
    with open(path, 'rb') as handle:
        return max(sum(1 for _line in handle) - 1, 0)  # minus the root "./"


# the source of a backup, once decided: info (the manifest's source), route, host_path, name, users, access
Source = collections.namedtuple('Source', 'info route host_path name users access')
# one backup being taken: the task's params, the Engine client (or None), its Source and its folder in dest
Job = collections.namedtuple('Job', 'params client src folder')


def _connect(params):
    """The Engine: needed for a volume and hooks; for a path, to find (and quiesce) the containers writing to it."""
    mode = params.get('quiesce') or 'auto'
    if params.get('volume') or params.get('pre_hooks') or params.get('post_hooks'):
        return connect(params)
    if mode != 'none':
        try:
            return connect(params)
        except HoldfastError as exc:
            raise HoldfastError("%s quiesce: %s needs the Engine to find the containers that write to %s; with no "
                                "containers using it, set quiesce: none." % (exc, mode, params.get('path'))) from exc
    try:  # only to record whether containers could write while it was read
        return connect(params)
    except HoldfastError:
        return None


def resolve_source(params, client):
    """What is read, by which route, and which containers use it."""
    info = dict(type='volume' if params.get('volume') else 'path')
    if params.get('volume'):
        vol = inspect_volume(client, params['volume'])
        if vol is None:
            raise HoldfastError("Volume %s does not exist; nothing to back up." % params['volume'])
        access = VolumeAccess(client, params.get('docker_host'))
        route, host_path = access.route(vol)
        name = vol['Name']
        info.update(name=name, driver=vol['Driver'], driver_options=vol['Options'], labels=vol['Labels'],
                    route=route)
        return Source(info, route, host_path, name, containers_using(client, volume=name), access)
    host_path = os.path.realpath(params['path'])
    if not os.path.isdir(host_path):
        raise HoldfastError("path %s is not a directory." % params['path'])
    name = params['path']
    info.update(name=name, path=host_path, route='host')
    return Source(info, 'host', host_path, name, containers_using(client, path=host_path) if client else None, None)


def _names(folder, name, now, params):
    """(archive name, archive path, manifest path) of a backup taken at now."""
    final_name = archive_name(safe_folder_name(name), now, params.get('compression') or 'zstd',
                              bool(params.get('encrypt_to')))
    return final_name, os.path.join(folder, final_name), os.path.join(folder, manifest_name_for(final_name))


def _unique_names(folder, name, params):
    """Names carry the time to the second: taken under the lock, and unique (a queued backup may wait a second)."""
    while True:
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        names = _names(folder, name, now, params)
        if not (os.path.exists(names[1]) or os.path.exists(names[2])):
            return (now,) + names
        time.sleep(0.2)


def run_backup(params, check_mode=False):
    validate(params)
    started = time.time()
    client = _connect(params)
    src = resolve_source(params, client)
    compression = params.get('compression') or 'zstd'
    folder = os.path.join(params['dest'], safe_folder_name(src.name))
    _name, final_path, manifest_path = _names(folder, src.name, datetime.datetime.now(datetime.timezone.utc), params)
    result = dict(changed=True, archive=final_path, manifest=manifest_path, source=src.info, containers=[],
                  hooks=[], cleaned=[])
    # tools must be there before we touch anything
    compressor_command(compression, params.get('compression_level'))
    if params.get('encrypt_to'):
        need('age', 'age')
    if src.route == 'host':
        need('tar', 'tar')
    action, targets = effective_mode(params.get('quiesce') or 'auto', src.users or [])
    check_dest(params['dest'])
    if check_mode:
        result['would_quiesce'] = [u['name'] for u in targets]
        result['quiesce_action'] = action
        return result, []
    warnings = []
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise HoldfastError("Cannot create the backup folder %s: %s" % (folder, exc.strerror)) from exc
    # an existing folder may have been made by someone else: only root (or this user) may change what is in it
    check_private_dir(folder, 'the backup folder')
    with FolderLock(folder, params.get('lock_timeout', 600)):
        result['cleaned'] = clean_temporaries(folder)
        now, final_name, final_path, manifest_path = _unique_names(folder, src.name, params)
        result.update(archive=final_path, manifest=manifest_path)
        stats, quiesce, woke = _write_locked(Job(params, client, src, folder), final_name, result, warnings)
        duration = max(time.time() - started, 1e-6)
        consistency = consistency_record(quiesce.action, src.users, result['containers'],
                                         [c['id'] for c in quiesce.touched], stats, woke=woke)
        manifest = backup_manifest(params, src.info, final_name, stats, dict(created=now, duration=duration))
        manifest.update(consistency, containers=[dict((k, v) for k, v in c.items() if k != 'restored')
                                                 for c in result['containers']])
        write_json_atomic(manifest_path, manifest)
    if not consistency['consistent']:
        warnings.append(inconsistency_warning(src.name, consistency, stats['warnings']))
    result.update(sha256=stats['sha256'], bytes_raw=stats['raw_bytes'], bytes_stored=stats['bytes'],
                  file_count=stats['file_count'], duration_seconds=round(duration, 3),
                  throughput_mib_s=round(stats['raw_bytes'] / 1048576.0 / duration, 1), verified=bool(
                      params.get('verify', True)), created=manifest['created'],
                  source_read_seconds=stats['source_seconds'])
    result.update(consistency)
    return result, warnings


def _write_locked(job, final_name, result, warnings):
    """Under the folder lock: hooks, quiesce, write the archive to a temporary name, rename it into place.
    Returns (stats, quiesce, names of writers that woke up during the read)."""
    params, client, src, folder = job
    tmp_path = os.path.join(folder, '%s%s' % (TMP_PREFIX, final_name))
    index_path = os.path.join(folder, '%sindex-%d' % (TMP_PREFIX, os.getpid()))
    # tar's index lists the file names (in clear, even for an encrypted backup): a new private file, which tar
    # reaches through our descriptor, never by a name someone could have planted
    try:
        os.unlink(index_path)
    except FileNotFoundError:
        pass
    index_fd = open_private_file(index_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for hook in params.get('pre_hooks') or []:
            result['hooks'].append(run_hook(client, hook, 'pre'))
        quiesce = Quiesce(client, params.get('quiesce') or 'auto', src.users or [], params.get('stop_timeout', 30))
        try:
            stats, woke = _read_quiesced(job, quiesce, tmp_path, index_fd)
        finally:
            result['containers'] = quiesce.report()
            warnings.extend(quiesce.warnings)
        for hook in params.get('post_hooks') or []:
            result['hooks'].append(run_hook(client, hook, 'post'))
        if stats['bytes'] == 0 or stats['raw_bytes'] == 0:
            raise HoldfastError("The archive is empty (0 bytes) although the source was read; refusing to keep "
                                "an empty backup. Check the source and the tools (tar, %s)."
                                % (params.get('compression') or 'zstd'))
        os.rename(tmp_path, os.path.join(folder, final_name))
        fsync_dir(folder)
    except BaseException:
        try:
            os.unlink(tmp_path)
        except OSError:
            pass
        raise
    finally:
        os.close(index_fd)
        try:
            os.unlink(index_path)
        except OSError:
            pass
    return stats, quiesce, woke


def _read_quiesced(job, quiesce, tmp_path, index_fd):
    """Read the source into the archive while its writers are quiesced. Returns (stats, writers that woke up)."""
    params, client, src = job.params, job.client, job.src
    # writers someone else had paused: if one runs again while the source is read, the copy is not consistent
    watch = [u for u in src.users or [] if u['state'] == 'paused' and u.get('writable', True)]
    woke = []

    def source_read():
        quiesce.resume()
        woke.extend(woke_up(client, watch))
    output = ArchiveOutput(params.get('compression') or 'zstd', params.get('compression_level'),
                           params.get('encrypt_to'), params.get('verify', True))
    # the Engine route's helper container is created before the pause, so only the read is downtime
    mount = src.access.engine_mount(src.name, read_only=True) if src.route != 'host' else contextlib.nullcontext()
    with _signals_raise(), mount as cid:
        with quiesce:
            # containers resume as soon as the source has been read (quiesce.resume), before the
            # compression tail, fsync and read-back; at the latest when this block exits, however it exits
            if src.route == 'host':
                cmd = TAR_CREATE[:-1] + ['--index-file=/proc/self/fd/%d' % index_fd, '--verbose', '-C',
                                         src.host_path, '.']
                stats = write_archive(cmd, None, tmp_path, output, on_source_done=source_read,
                                      hold_verify=bool(quiesce.touched), pass_fds=(index_fd,))
                stats['file_count'] = count_index('/proc/self/fd/%d' % index_fd)
            else:
                stream = IterReader(src.access.engine_read_stream(cid))
                stats = write_archive(None, stream, tmp_path, output, on_source_done=source_read,
                                      hold_verify=bool(quiesce.touched))
    return stats, woke


def backup_manifest(params, source, final_name, stats, timing):
    """The manifest of a written archive (pure), before the consistency record is added. timing: created (the
    datetime in the archive's name) and duration (seconds)."""
    now, duration = timing['created'], timing['duration']
    encrypted = bool(params.get('encrypt_to'))
    return dict(
        format=FORMAT, format_version=FORMAT_VERSION, collection_version=COLLECTION_VERSION,
        archive=final_name, created=now.strftime('%Y-%m-%dT%H:%M:%SZ'), host=socket.gethostname(),
        source=dict((k, v) for k, v in source.items() if k != 'route'),
        volume=source['name'] if source['type'] == 'volume' else None,
        driver=source.get('driver'), driver_options=source.get('driver_options'), labels=source.get('labels'),
        file_count=stats['file_count'], bytes_raw=stats['raw_bytes'], bytes_stored=stats['bytes'],
        compression=params.get('compression') or 'zstd',
        encryption=dict(tool='age', recipients=[r.strip() for r in params['encrypt_to']]) if encrypted else None,
        sha256=stats['sha256'], quiesce=params.get('quiesce') or 'auto', duration_seconds=round(duration, 3),
        source_read_seconds=stats['source_seconds'])


class _signals_raise(object):
    """While containers are quiesced, SIGTERM/SIGHUP/SIGINT become exceptions, so the context managers put the
    containers back before the process ends (a signal's default action would leave them paused or stopped)."""

    SIGNALS = ('SIGTERM', 'SIGHUP', 'SIGINT')

    def __enter__(self):
        self.saved = {}
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig_name in self.SIGNALS:
            sig = getattr(signal, sig_name)
            self.saved[sig] = signal.signal(sig, self._raise)
        return self

    def _raise(self, signum, _frame):
        for sig in self.saved:  # once: the cleanup that follows must not be interrupted again
            signal.signal(sig, signal.SIG_IGN)
        raise HoldfastError("Interrupted by signal %d during the backup; the containers were put back and the "
                            "partial archive removed." % signum)

    def __exit__(self, *exc):
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        return False
