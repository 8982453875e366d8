# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""volume_restore, the doing part: verify everything first, extract into staging, swap into place.

Pass 1 (verify, writes nothing): sha256 of the archive against its manifest, decryption (age), decompression
(`zstd -dcf`, which reads zstd, gzip and plain tar), and a full read of the tar index through MemberChecker.
Pass 2 (extract): the same stream into GNU tar in a staging directory beside the target (same filesystem),
hashing the archive again so that a file changed between the passes is caught. Then the containers using the
target are stopped (if asked), the target is renamed aside, the staging directory renamed into place, and the
containers started again. Any failure before the swap leaves the target as it was.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import os
import time
from contextlib import nullcontext

from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import (
    APIError,
    DockerException,
    connect,
    create_volume,
    validate_volume_name,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError, refuse_negative
from ansible_collections.holdfast.volumes.plugins.module_utils._quiesce import Quiesce, restore_consistency
from ansible_collections.holdfast.volumes.plugins.module_utils._remote_store import locate_remote
from ansible_collections.holdfast.volumes.plugins.module_utils._restore_engine import restore_engine
from ansible_collections.holdfast.volumes.plugins.module_utils._restore_read import verify_archive
from ansible_collections.holdfast.volumes.plugins.module_utils._restore_state import (
    DEFAULT_STATE_DIR,
    already_restored,
    write_marker,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._restore_swap import HostRestore, restore_host
from ansible_collections.holdfast.volumes.plugins.module_utils._restore_target import (
    decide_target,
    dir_is_empty_except,
    find_leftovers,
    optional_client,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._safe_fs import check_private_dir
from ansible_collections.holdfast.volumes.plugins.module_utils._store import (
    NAME_RE,
    FolderLock,
    list_backups,
    manifest_name_for,
    read_manifest,
    safe_folder_name,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._volume_access import VolumeAccess, one_volume_or_path

# one restore once its archive and target are decided: the task's params, the Engine client (or None), the archive
# (a path, or a remote stream), its manifest (or None), decide_target's target and the restore state directory
Restore = collections.namedtuple('Restore', 'params client archive manifest target state_dir')


def locate(params):
    """Find the archive (and its manifest, if any)."""
    if params.get('remote'):
        return locate_remote(params)  # an offsite store: the archive is a stream (see open_archive)
    if params.get('archive'):
        path = params['archive']
        if not os.path.isfile(path):
            raise HoldfastError("archive %s does not exist or is not a file." % path)
        manifest = None
        base = os.path.basename(path)
        if NAME_RE.match(base):
            mpath = os.path.join(os.path.dirname(path), manifest_name_for(base))
            if os.path.lexists(mpath):
                try:
                    manifest = read_manifest(mpath)
                except (ValueError, OSError) as exc:
                    raise HoldfastError("The manifest %s beside the archive is not a valid manifest (%s)."
                                        % (mpath, exc)) from None
        return path, manifest
    source = params.get('source') or params.get('volume') or params.get('path')
    folder = os.path.join(params['dest'], safe_folder_name(source))
    if os.path.lexists(folder):  # not a symlink, not another user's: as the backup requires
        check_private_dir(folder, 'the backup folder')
    scan = list_backups(folder)
    if not scan['complete']:
        raise HoldfastError("No complete backup of %s in %s (an archive counts only with its manifest)."
                            % (source, folder))
    newest = scan['complete'][0]
    return newest['archive_path'], newest['manifest']


def _timed(func):
    """The restore's result gets duration_seconds, whichever way it ends successfully."""
    def run(params, check_mode=False):
        started = time.time()
        result, warnings = func(params, check_mode=check_mode)
        result['duration_seconds'] = round(time.time() - started, 3)
        return result, warnings
    return run


def validate(params):
    one_volume_or_path(params)
    if not params.get('remote') and bool(params.get('archive')) == bool(params.get('dest')):
        raise HoldfastError("Give exactly one of archive (a file) or dest (a backup directory: the newest complete "
                            "backup of the volume there is used).")
    if params.get('path') and not os.path.isabs(params['path']):
        raise HoldfastError("path must be absolute.")
    refuse_negative(params, 'stop_timeout', 'lock_timeout')
    if params.get('path') and (params.get('driver') or params.get('driver_options')):
        raise HoldfastError("driver and driver_options apply to a new volume, not to a path.")
    if params.get('volume'):
        validate_volume_name(params['volume'])


@_timed
def run_restore(params, check_mode=False):
    validate(params)
    archive, manifest = locate(params)
    consistent = restore_consistency(archive, manifest, params.get('allow_inconsistent', True))
    client = connect(params) if params.get('volume') else optional_client(params)
    state_dir = params.get('state_dir') or DEFAULT_STATE_DIR
    result = dict(changed=False, archive=archive, manifest_used=bool(manifest), created_volume=False,
                  containers=[], previous=None, labels=None, consistent=consistent,
                  leftovers=[], cleaned_leftovers=[])
    target = decide_target(client, params, manifest)
    result['route'] = target['route']
    if target['create'] is not None:
        result['labels'] = target['create']['Labels']
    if target['route'] == 'engine' and params.get('strip_setuid'):
        raise HoldfastError("strip_setuid needs the volume's files on this host; volume %s is reached through the "
                            "Engine. Restore into a volume of this host's engine, or without strip_setuid."
                            % target['name'])
    if os.path.isdir(state_dir):
        check_private_dir(state_dir, 'the restore state directory')
    # Idempotence: the same archive restored earlier and the content unchanged since then.
    if not params.get('force'):
        sha = already_restored(state_dir, target['key'], archive, manifest, target['directory'])
        if sha:
            result.update(sha256=sha, msg='already restored from this archive; content unchanged')
            return result, []
    job = Restore(params, client, archive, manifest, target, state_dir)
    warnings = []
    running = _check_target(job, result, warnings, check_mode)
    if check_mode:
        checked = verify_archive(archive, manifest, params.get('identity'), params.get('allow_special_files'))
        result.update(sha256=checked['sha256'], entries=checked['entries'], encrypted=checked['encrypted'],
                      changed=True, would_create_volume=target['create'] is not None,
                      would_stop=[u['name'] for u in running])
        return result, warnings
    # Hold the backup folder's lock (when it has one), so that a rotation cannot remove the archive mid-restore.
    # A remote archive has no local folder (its name is not a path here).
    folder = None if params.get('remote') else os.path.dirname(os.path.abspath(archive))
    lock = FolderLock(folder, params.get('lock_timeout', 600)) if folder and \
        os.path.exists(os.path.join(folder, '.lock')) and os.access(folder, os.W_OK) else nullcontext()
    with lock:
        return _restore_locked(job, result)


def _check_target(job, result, warnings, check_mode):
    """Refuse a target that holds data (unless replace, and only on the host route) and running containers that
    would not be stopped. Returns the running containers that use the target."""
    params, target, directory = job.params, job.target, job.target['directory']
    empty = True
    if directory and os.path.isdir(directory):
        result['leftovers'], inside_ours = find_leftovers(directory, target['key'])
        empty = dir_is_empty_except(directory, set(inside_ours))
    elif target['route'] == 'engine' and target['vol'] is not None:
        empty = VolumeAccess(job.client, params.get('docker_host')).is_empty(target['vol'], check_mode=check_mode)
    if empty is None:  # check mode: reading the volume would need the helper image built first
        result['target_empty'] = 'unknown'
        warnings.append("Check mode cannot tell whether volume %s is empty: it is reached through the Docker Engine "
                        "and reading it needs the helper image, which a real run builds (check mode builds nothing). "
                        "A real run refuses it if it holds data." % target['name'])
    elif check_mode:
        result['target_empty'] = empty
    if empty is False and not params.get('replace'):
        raise HoldfastError("The target %s holds data; set replace: true to replace it with the archive's content "
                            "(keep_previous: true keeps the old content aside), or restore into a new volume."
                            % (directory or target['name']))
    if empty is False and target['route'] == 'engine':
        raise HoldfastError("Replacing the content of volume %s, which is reached through the Engine (driver %s), "
                            "is not supported: it cannot be swapped atomically. Restore into a new volume instead."
                            % (target['name'], (target['vol'] or target['create'])['Driver']))
    running = [u for u in target['users'] if u['running']]
    if running and params.get('quiesce') == 'none':
        raise HoldfastError("Containers %s are running with the target %s mounted; set quiesce: stop to stop them "
                            "for the swap (they are started again afterwards), or stop them first."
                            % (", ".join(u['name'] for u in running), directory or target['name']))
    return running


def _restore_locked(job, result):
    params, client, archive, target = job.params, job.client, job.archive, job.target
    route = target['route']
    warnings = []
    checked = None
    if route == 'engine':
        # No staging directory exists for these volumes: verify completely before writing anything.
        checked = verify_archive(archive, job.manifest, params.get('identity'), params.get('allow_special_files'))
    vol = target['vol']
    directory = target['directory']
    spec = target['create']
    if spec is not None:
        vol = create_volume(client, spec['Name'], spec['Driver'], spec['Options'], spec['Labels'])
        result['created_volume'] = True
    try:
        if spec is not None:
            directory = _created_directory(client, params, target, vol, directory)
        if route == 'engine':
            if spec is not None and not VolumeAccess(client, params.get('docker_host')).is_empty(vol):
                raise HoldfastError("The new volume %s is not empty (its driver options reach existing data); "
                                    "nothing was written. Restoring over data through the Engine is not supported."
                                    % spec['Name'])
            restore_engine(client, params, archive, vol, checked)
        else:
            checked = _restore_on_host(job, directory, result, warnings)
    except BaseException:
        if result['created_volume']:
            try:
                client.remove_volume(vol['Name'])
            except (DockerException, APIError):
                pass
        raise
    result.update(sha256=checked['sha256'], entries=checked['entries'], encrypted=checked['encrypted'],
                  changed=True)
    if route == 'host':
        write_marker(job.state_dir, target['key'], archive, checked['sha256'], directory)
    return result, warnings


def _restore_on_host(job, directory, result, warnings):
    """The host route: the containers using the target are stopped around the swap (quiesce: stop)."""
    params, client, target = job.params, job.client, job.target
    quiesce = Quiesce(client, 'stop' if params.get('quiesce') == 'stop' else 'none', target['users'],
                      params.get('stop_timeout', 30)) if client else None
    how = HostRestore(manifest=job.manifest, quiesce=quiesce, key=target['key'], warnings=warnings)
    result['previous'], checked, cleaned = restore_host(params, job.archive, directory, how)
    result['cleaned_leftovers'] = cleaned
    result['leftovers'] = [p for p in result['leftovers'] if p not in cleaned]
    result['setuid_stripped'] = checked.get('setuid_stripped', 0)
    result['capabilities_stripped'] = checked.get('capabilities_stripped', 0)
    if quiesce:
        result['containers'] = quiesce.report()
    return checked


def _created_directory(client, params, target, vol, planned):
    """After creating the volume: the directory the Engine gave it must be the one decided before."""
    if target['route'] != 'host':
        return None
    path = VolumeAccess(client, params.get('docker_host')).host_path(vol)
    if not path or (planned and os.path.realpath(path) != planned):
        raise HoldfastError("The new volume %s resolves to %s, not to the directory decided before it was created "
                            "(%s); nothing was written and the volume was removed." % (vol['Name'], path, planned))
    return os.path.realpath(path)
