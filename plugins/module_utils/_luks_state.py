# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""luks_path, reading: the task's parameters, validated, as a LuksTask; what the host has now, as a LuksState.

Reading changes nothing (check mode runs all of it): luksDump, key tests (`cryptsetup open --test-passphrase`),
blkid, sysfs, mountinfo, the host tables and the Docker Engine's volumes and containers. The plan is made from
these two values by _luks_plan, without any I/O. The Docker Engine is asked through the object read_state is given
(luks_path's Engine), so that this file needs no feature.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import stat
from dataclasses import dataclass, field
from typing import Any, Optional

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._host_info import dm_device, mount_at, read_mounts
from ansible_collections.holdfast.volumes.plugins.module_utils._host_tables import (
    CRYPTTAB,
    FSTAB,
    dropin_path,
    read_table,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._luks import (
    MIN_LUKS1_BYTES,
    MIN_LUKS2_BYTES,
    Key,
    KeyTester,
    block_size_bytes,
    cryptsetup,
    holds_data,
    luks_dump,
    parse_size,
    parse_status,
    probe_filesystem,
    run,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._modes import mode_option, parse_id

NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.+-]{0,100}$')
UNKNOWN = 'unknown'


@dataclass
class LuksTask:
    """What the task asks, validated and with its defaults filled in."""
    name: str
    state: str
    path: str
    source: str
    is_file: bool
    size: Optional[int] = None
    key: Key = field(default_factory=Key)
    new_key: Key = field(default_factory=lambda: Key(label='new key'))
    old_key: Key = field(default_factory=lambda: Key(label='key to remove'))
    luks_type: str = 'luks2'
    cipher: str = 'aes-xts-plain64'
    key_size: int = 512
    pbkdf: str = 'argon2id'
    pbkdf_memory: Optional[int] = None
    pbkdf_iter_time: Optional[int] = None
    preallocate: bool = False
    force_format: bool = False
    fstype: str = 'ext4'
    mount_options: list = field(default_factory=lambda: ['defaults'])
    uid: Optional[int] = None
    gid: Optional[int] = None
    mode: Any = None  # a ModeSpec
    docker_volume: Optional[str] = None
    persistent: Optional[bool] = None
    header_backup: Optional[str] = None
    destroy: bool = False
    force_remove_last_key: bool = False

    @property
    def mapper(self):
        return '/dev/mapper/' + self.name

    @property
    def minimum(self):
        return MIN_LUKS2_BYTES if self.luks_type == 'luks2' else MIN_LUKS1_BYTES

    @property
    def persistent_keyfile(self):
        return self.new_key.keyfile if self.new_key.keyfile else self.key.keyfile


@dataclass
class LuksState:
    """What the host has now. filesystem: the type on the open mapping, None (none there), or UNKNOWN (the
    container is closed; it is not opened to look)."""
    exists: bool = False
    file_size: Optional[int] = None
    device_size: Optional[int] = None
    dump: Optional[dict] = None
    holds_data: Optional[str] = None
    active: bool = False
    mapping_elsewhere: Optional[str] = None  # the open mapping's backing store, when it is not the source
    mapping_smaller: bool = False
    mounted: Optional[dict] = None
    foreign_mount: bool = False
    unlocks: dict = field(default_factory=dict)  # key label -> bool (only the keys that were tested)
    filesystem: Optional[str] = None
    blank: bool = False
    root: Optional[tuple] = None  # (uid, gid, st_mode) of the mounted mount point
    volume: Optional[dict] = None  # the Docker volume, inspected
    users: list = field(default_factory=list)  # containers using the path or the Docker volume
    crypttab: str = ''
    fstab: str = ''
    dropin: Optional[str] = None
    header_backup_exists: bool = False

    @property
    def luks(self):
        return self.dump['type'] if self.dump else None

    @property
    def keyslots(self):
        return len(self.dump['keyslots']) if self.dump else 0


def _check_keyfiles(params):
    for opt in ('keyfile', 'new_keyfile', 'remove_keyfile'):
        path = params.get(opt)
        if path:
            if not os.path.isfile(path):
                raise HoldfastError("%s %s does not exist." % (opt, path))
            if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
                raise HoldfastError("%s %s is readable by others (mode %04o); chmod 600 it first."
                                    % (opt, path, stat.S_IMODE(os.stat(path).st_mode)))


def task_from_params(params):
    """The validated task; a HoldfastError that says what to fix before anything is read or changed. The mount
    point's mode and owner follow volume_permissions' rules: a bad mode fails first (with any state), an unknown
    owner or group only where they are used (state mounted)."""
    mode = mode_option(params, 'mode')
    state = params.get('state') or 'mounted'
    uid = parse_id(params.get('owner'), 'owner') if state == 'mounted' else None
    gid = parse_id(params.get('group'), 'group') if state == 'mounted' else None
    if not params.get('path') or not os.path.isabs(params['path']):
        raise HoldfastError("path (the mount point) must be an absolute path.")
    if bool(params.get('backing_file')) == bool(params.get('device')):
        raise HoldfastError("Give exactly one of backing_file (a file the module creates) or device (a block device).")
    name = params.get('name') or 'holdfast-' + re.sub(r'[^A-Za-z0-9_.+-]', '-', params['path'].strip('/'))[:80]
    if not NAME_RE.match(name):
        raise HoldfastError("name %r is not a valid mapping name (letters, digits, _ . + -)." % name)
    if params.get('keyfile') and params.get('passphrase'):
        raise HoldfastError("Give keyfile or passphrase, not both.")
    if state == 'mounted' and not (params.get('keyfile') or params.get('passphrase')):
        raise HoldfastError("A key is needed: keyfile (a file on the host, mode 0600) or passphrase.")
    _check_keyfiles(params)
    size = parse_size(params['size']) if params.get('size') not in (None, '') else None
    task = LuksTask(
        name=name, state=state, path=params['path'].rstrip('/') or '/',
        source=params.get('backing_file') or params.get('device'), is_file=bool(params.get('backing_file')),
        size=size, key=Key(params.get('keyfile'), params.get('passphrase'), 'key'),
        new_key=Key(params.get('new_keyfile'), params.get('new_passphrase'), 'new key'),
        old_key=Key(params.get('remove_keyfile'), params.get('remove_passphrase'), 'key to remove'),
        luks_type=params.get('luks_type') or 'luks2', cipher=params.get('cipher') or 'aes-xts-plain64',
        key_size=params.get('key_size') or 512, pbkdf=params.get('pbkdf') or 'argon2id',
        pbkdf_memory=params.get('pbkdf_memory'), pbkdf_iter_time=params.get('pbkdf_iter_time'),
        preallocate=bool(params.get('preallocate')), force_format=bool(params.get('force_format')),
        fstype=params.get('fstype') or 'ext4', mount_options=mount_options(params.get('mount_options')),
        uid=uid, gid=gid, mode=mode, docker_volume=params.get('docker_volume'), persistent=params.get('persistent'),
        header_backup=params.get('header_backup'), destroy=bool(params.get('destroy')),
        force_remove_last_key=bool(params.get('force_remove_last_key')))
    if size is not None and size < task.minimum:
        raise HoldfastError("size %s is too small: %s needs at least %d MiB for its metadata and a filesystem."
                            % (params['size'], task.luks_type, task.minimum >> 20))
    return task


def mount_options(value):
    options = value or ['defaults']
    if isinstance(options, str):
        options = [o for o in options.split(',') if o]
    return list(options)


def _read_source(task, state):
    source = task.source
    state.exists = os.path.exists(source)
    if not task.is_file and state.exists and not stat.S_ISBLK(os.stat(source).st_mode):
        raise HoldfastError("device %s is not a block device (use backing_file for a regular file)." % source)
    if not task.is_file and not state.exists:
        raise HoldfastError("device %s does not exist." % source)
    if task.is_file and state.exists and not stat.S_ISREG(os.stat(source).st_mode):
        raise HoldfastError("backing_file %s exists and is not a regular file (use device for a block device)."
                            % source)
    state.dump = luks_dump(source) if state.exists else None
    if task.is_file and state.exists:
        state.file_size = os.path.getsize(source)


def _read_mapping(task, state):
    dm = dm_device(task.name)
    state.active = dm is not None
    state.mounted = mount_at(read_mounts(), task.path)
    if state.mounted and state.mounted['source'] not in (task.mapper, '/dev/%s' % dm) and not (
            state.active and os.path.realpath(state.mounted['source']) == os.path.realpath(task.mapper)):
        state.foreign_mount = True


def _read_container(task, state, tester):
    """Keys, backing store and filesystem: only for state mounted."""
    if state.dump:
        state.unlocks['key'] = tester.unlocks(task.key)
        if task.new_key and not (state.unlocks['key'] and task.new_key.same(task.key)):
            state.unlocks['new key'] = tester.unlocks(task.new_key)
        if task.old_key:
            state.unlocks['key to remove'] = tester.unlocks(task.old_key)
    elif state.exists:
        state.holds_data = holds_data(task.source)
    if not task.is_file and task.size is not None and state.exists:
        state.device_size = block_size_bytes(task.source)
    if state.active:
        _rc, out, _err = run([cryptsetup(), 'status', task.name], check=False)
        status = parse_status(out)
        backing = status.get('loop') if task.is_file else status.get('device')
        if backing and os.path.realpath(backing) != os.path.realpath(task.source):
            state.mapping_elsewhere = backing
        if task.is_file and task.size is not None:
            state.mapping_smaller = _mapping_smaller(task)
    if state.dump and state.active:
        state.filesystem, state.blank = probe_filesystem(task.mapper)
    elif state.dump:
        state.filesystem = UNKNOWN
    if state.mounted and os.path.exists(task.path):
        st = os.lstat(task.path)
        state.root = (st.st_uid, st.st_gid, st.st_mode)


def _mapping_smaller(task):
    try:
        return block_size_bytes(task.mapper) + (32 << 20) < os.path.getsize(task.source)
    except (OSError, HoldfastError):
        return False


def _read_tables(task, state):
    state.crypttab = read_table(CRYPTTAB) or ''
    state.fstab = read_table(FSTAB) or ''
    state.dropin = read_table(dropin_path(task.name))


def read_state(task, engine, tester=None):
    """The LuksState of the task's container, mapping, mount, Docker volume and host tables. engine answers
    volume(name) (the inspected Docker volume or None) and users(path, volume_name) (the containers using them)."""
    state = LuksState()
    _read_source(task, state)
    _read_mapping(task, state)
    if state.foreign_mount:
        return state
    if task.state == 'mounted':
        _read_container(task, state, tester or KeyTester(task.source))
        if task.docker_volume:
            state.volume = engine.volume(task.docker_volume)
        if task.persistent is not None:
            _read_tables(task, state)
        state.header_backup_exists = bool(task.header_backup) and os.path.exists(task.header_backup)
    else:
        state.users = engine.users(task.path, task.docker_volume)
        if task.docker_volume:
            state.volume = engine.volume(task.docker_volume)
        if task.state == 'absent':
            _read_tables(task, state)
    return state
