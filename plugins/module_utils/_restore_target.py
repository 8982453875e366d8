# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a restore writes, decided once before anything is created: the target (decide_target: a path, an existing
volume, or a volume to create; the host or the Engine route), and whether the target is empty (leftovers of killed
restores aside)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import (
    LOCAL_SOCKETS,
    connect,
    inspect_volume,
    is_local_engine,
    validate_volume_name,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._quiesce import containers_using
from ansible_collections.holdfast.volumes.plugins.module_utils._safe_fs import (
    STAGING_PREFIX,
    leftover_staging,
    open_dir,
    trusted_realpath,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._volume_access import (
    VolumeAccess,
    dir_is_empty,
    host_data_path,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._volume_plan import restore_labels


def decide_target(client, params, manifest):
    """The one decision about where a restore writes, made before anything is created, from the task alone.

    The manifest never chooses a directory or a driver: a new volume is a plain local volume unless the task gives
    driver/driver_options. Returns a dict: kind (volume or path), name, key (the idempotence/staging key), exists,
    route (host: a directory of this host; engine: through the Docker Engine API), directory (the host directory,
    or None when the Engine will assign it: a new plain local volume), vol (the inspected volume), create (the
    spec of a volume to create, or None) and users (the containers that use it, through any mount).
    """
    local = is_local_engine(params.get('docker_host'))
    if params.get('path'):
        directory = trusted_realpath(params['path'])
        if os.path.lexists(directory) and not os.path.isdir(directory):
            raise HoldfastError("path %s exists and is not a directory." % directory)
        users = containers_using(client, path=directory) if client else []
        return dict(kind='path', name=directory, key='path:%s' % directory, exists=os.path.isdir(directory),
                    route='host', directory=directory, vol=None, create=None, users=users)
    name = validate_volume_name(params['volume'])
    task_driver = params.get('driver')
    task_options = params.get('driver_options')
    vol = inspect_volume(client, name)
    access = VolumeAccess(client, params.get('docker_host'))
    if vol is not None:
        if task_driver and task_driver != vol['Driver'] or task_options is not None and \
                dict((k, str(v)) for k, v in task_options.items()) != vol['Options']:
            raise HoldfastError("Volume %s exists with driver %s and options %s, not those of the task (%s, %s). "
                                "Docker cannot change them: restore into another name, or remove the volume first."
                                % (name, vol['Driver'], vol['Options'], task_driver or vol['Driver'],
                                   task_options))
        route, directory = access.route(vol)
        if route == 'host':
            directory = trusted_realpath(directory, 'the directory of volume %s' % name)
        create = None
    else:
        create = dict(Name=name, Driver=task_driver or 'local',
                      Options=dict((k, str(v)) for k, v in (task_options or {}).items()),
                      Labels=restore_labels(name, manifest, params.get('labels')))
        planned = dict(Driver=create['Driver'], Options=create['Options'], Mountpoint=None)
        device = host_data_path(planned)
        if not local or create['Driver'] != 'local':
            route, directory = 'engine', None
        elif not create['Options']:
            route, directory = 'host', None  # the Engine assigns its directory when it creates the volume
        elif device:
            if not os.path.isdir(device):
                raise HoldfastError("driver_options device %s of the new volume %s is not a directory on this host."
                                    % (device, name))
            route, directory = 'host', trusted_realpath(device, 'driver_options device')
        else:
            route, directory = 'engine', None
    # a volume that does not exist yet has no users, but the directory it will bind to may have
    users = containers_using(client, volume=name, path=directory, local=local) if directory or vol else []
    return dict(kind='volume', name=name, key='volume:%s' % name, exists=vol is not None or directory is not None,
                route=route, directory=directory, vol=vol, create=create, users=users)


def optional_client(params):
    """For a path restore: the engine, to find the containers using the path. No engine on this host (no
    docker_host, no DOCKER_HOST, no socket): no container can use it."""
    if params.get('docker_host') or any(os.path.exists(p) for p in LOCAL_SOCKETS):
        return connect(params)
    return None


def find_leftovers(directory, key):
    """Staging directories of killed restores of this target: beside it (.holdfast-restore-<name>-*) and, for a
    mount point, inside it. Returns (paths, names inside the target that are provably this target's own)."""
    found, inside_ours = [], []
    base = os.path.basename(directory)
    for holder, prefix in ((os.path.dirname(directory), '%s%s-' % (STAGING_PREFIX, base)),
                           (directory, STAGING_PREFIX)):
        try:
            fd = open_dir(holder)
        except (OSError, HoldfastError):
            continue
        try:
            ours, foreign = leftover_staging(fd, key)
        finally:
            os.close(fd)
        if holder == directory:
            inside_ours = ours
        found.extend(os.path.join(holder, n) for n in ours + foreign if n.startswith(prefix))
    return sorted(set(found)), inside_ours


def dir_is_empty_except(directory, skip):
    """Empty but for the names in skip and, at most, an empty lost+found."""
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name in skip:
                continue
            if entry.name == 'lost+found' and entry.is_dir(follow_symlinks=False):
                if not dir_is_empty(entry.path):
                    return False
                continue
            return False
    return True
