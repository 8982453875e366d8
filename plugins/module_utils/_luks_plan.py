# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""luks_path, deciding: plan(task, state) -> the ordered steps that bring the host from the LuksState to what the
LuksTask asks, each with its description. Pure (no I/O): tested without a kernel in tests/unit.

Every refusal is decided here, before any step runs: a wrong key, shrinking, a foreign mount, data where a
container would be formatted, a table line we did not write. One thing only a real run can learn: the filesystem
inside a container that is closed (check mode does not open it). The plan then assumes the wanted fstype and says
probe_after_open; the real run opens the container, looks, and plans the rest again with what it found (the steps
up to the opening are the same, as they do not depend on the filesystem).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import stat
from dataclasses import dataclass, field, replace
from typing import Optional

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._host_tables import (
    CRYPTTAB,
    FSTAB,
    crypttab_line,
    dropin_content,
    dropin_path,
    fstab_line,
    replace_managed_line,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._luks_state import UNKNOWN


@dataclass
class Step:
    """One change: its description (what the result lists), the action that does it, and the action's arguments."""
    text: str
    action: str
    args: dict = field(default_factory=dict)


@dataclass
class Plan:
    steps: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    drift: list = field(default_factory=list)
    filesystem: Optional[str] = None  # what the result reports (state mounted)
    probe_after_open: bool = False  # a real run looks at the filesystem after the 'open' step and plans again

    def add(self, description, action, **args):
        self.steps.append(Step(description, action, args))

    @property
    def texts(self):
        return [s.text for s in self.steps]


def plan(task, state):
    """The steps for the task (state mounted, unmounted or absent), or a HoldfastError before any change."""
    if state.foreign_mount:
        raise HoldfastError("%s is already a mount point of %s (%s); refusing to mount over it."
                            % (task.path, state.mounted['source'], state.mounted['fstype']))
    out = Plan()
    if task.state == 'absent':
        _plan_absent(task, state, out)
    elif task.state == 'unmounted':
        _plan_unmounted(task, state, out)
    else:
        current, grown = _plan_container(task, state, out)
        _plan_filesystem(task, state, out, current, grown)
    return out


def with_filesystem(state, filesystem, blank):
    """The state once the real run has opened the container and looked inside."""
    return replace(state, filesystem=filesystem, blank=blank)


# -- the container: keys, backing store, LUKS format, key rotation, open, mapping size ----------------------------
def _current_key(task, state, out):
    """The key that opens the existing container; the container's drift from the task (never re-encrypted)."""
    if state.unlocks.get('key'):
        current = task.key
    elif task.new_key and state.unlocks.get('new key'):
        current = task.new_key  # an earlier run rotated already
    else:
        raise HoldfastError("The key does not unlock %s (wrong keyfile or passphrase); nothing was changed."
                            % task.source)
    want = dict(type=task.luks_type, cipher=task.cipher, key_bits=task.key_size)
    drift = [dict(field=name, existing=state.dump[name], wanted=want[name]) for name in ('type', 'cipher', 'key_bits')
             if state.dump.get(name) and str(state.dump[name]) != str(want[name])]
    if drift:
        out.drift.extend(drift)
        out.warnings.append("LUKS container %s differs from the task (%s); it is never re-encrypted silently. "
                            "Re-create it (back up, state: absent, then mounted) to change it." % (
                                task.source, ", ".join("%s %s != %s" % (d['field'], d['existing'], d['wanted'])
                                                       for d in drift)))
    return current


def _plan_backing(task, state, out):
    """Create or grow the backing file (True when it grows); a device is only checked."""
    source, size = task.source, task.size
    if not task.is_file:
        if size is not None and state.exists and size > state.device_size:
            raise HoldfastError("device %s is smaller than size; grow the device itself first." % source)
        return False
    if not state.exists:
        if size is None:
            raise HoldfastError("backing_file %s does not exist: give size to create it." % source)
        out.add('create backing file %s (%d bytes, %s)' % (source, size, 'preallocated' if task.preallocate
                                                           else 'sparse'),
                'create_file', source=source, size=size, preallocate=task.preallocate)
        return False
    if size is not None and size < state.file_size:
        raise HoldfastError("Shrinking is not supported: %s is %d bytes, size asks for %d. Nothing was changed."
                            % (source, state.file_size, size))
    if size is not None and size > state.file_size:
        out.add('grow backing file %s from %d to %d bytes' % (source, state.file_size, size), 'grow_file',
                source=source, start=state.file_size, size=size, preallocate=task.preallocate)
        return True
    return False


def _plan_format(task, state, out):
    source = task.source
    if task.is_file and state.exists and task.size is None and state.file_size < task.minimum:
        raise HoldfastError("backing_file %s is %d bytes, too small for %s and a filesystem (at least %d MiB): "
                            "give size to grow it. Nothing was changed."
                            % (source, state.file_size, task.luks_type, task.minimum >> 20))
    if state.holds_data and not task.force_format:
        raise HoldfastError("%s is not LUKS and holds data (%s); refusing to format it. Set force_format: "
                            "true to destroy that data." % (source, state.holds_data))
    out.add('luksFormat %s (%s, %s, %d-bit key)' % (source, task.luks_type, task.cipher, task.key_size),
            'format', source=source, key=task.key, luks_type=task.luks_type, cipher=task.cipher,
            key_size=task.key_size, pbkdf=task.pbkdf, pbkdf_memory=task.pbkdf_memory,
            pbkdf_iter_time=task.pbkdf_iter_time)


def _plan_keys(task, state, out, current):
    """Add and verify the new key, remove the old one; the key that opens the container afterwards."""
    new_key, old_key = task.new_key, task.old_key

    def unlocks(key, label):
        if not state.dump:  # formatted in this run: the task's key is its only key
            return key.same(task.key)
        return state.unlocks.get(label, False)
    if new_key and not current.same(new_key) and not unlocks(new_key, 'new key'):
        out.add('add the new key to %s' % task.source, 'add_key', source=task.source, current=current, new=new_key)
        out.add('verify that the new key unlocks %s' % task.source, 'verify_key', source=task.source, key=new_key)
    if old_key and unlocks(old_key, 'key to remove'):
        slots = state.keyslots if state.dump else 1
        if slots <= 1 and not new_key and not task.force_remove_last_key:
            raise HoldfastError("Refusing to remove the last key of %s: the data would be lost for good. Add a "
                                "new key first (new_keyfile/new_passphrase), or set force_remove_last_key."
                                % task.source)
        out.add('remove the old key from %s' % task.source, 'remove_key', source=task.source, key=old_key,
                new=new_key)
        if old_key.same(current):
            current = new_key
    if new_key and (current.same(old_key) or not current):
        current = new_key
    return current


def _plan_container(task, state, out):
    """(the key that opens the container, whether the mapping grows)."""
    current = _current_key(task, state, out) if state.dump else task.key
    grown = _plan_backing(task, state, out)
    if not state.dump:
        _plan_format(task, state, out)
    current = _plan_keys(task, state, out, current)
    if not state.active:
        out.add('open %s as %s' % (task.source, task.mapper), 'open', source=task.source, name=task.name,
                key=current)
    elif state.mapping_elsewhere:
        raise HoldfastError("The mapping %s is open on %s, not on %s; choose another name."
                            % (task.name, state.mapping_elsewhere, task.source))
    if grown or (state.active and task.is_file and task.size is not None and state.mapping_smaller):
        out.add('grow the loop device and the mapping %s' % task.name, 'grow_mapping', source=task.source,
                name=task.name, key=current)
        grown = True
    return current, grown


# -- the filesystem and what stands on it ----------------------------------------------------------------------
def _filesystem(task, state, out):
    """The filesystem the later steps use; a mkfs step when the container is blank."""
    fstype = task.fstype
    if not state.dump:  # formatted in this run
        existing, blank = None, True
    elif state.filesystem == UNKNOWN:
        existing, blank = fstype, False
        out.probe_after_open = True
        out.warnings.append("Check mode cannot see the filesystem inside %s: the container is closed, and opening it "
                            "would change the host. filesystem is 'unknown'; a real run creates one only on a blank "
                            "container and refuses one that holds unrecognised data." % task.source)
    else:
        existing, blank = state.filesystem, state.blank
    out.filesystem = UNKNOWN if out.probe_after_open else existing or fstype
    if existing and existing != fstype:
        out.drift.append(dict(field='fstype', existing=existing, wanted=fstype))
        out.warnings.append("%s holds a %s filesystem, the task asks for %s; it was not reformatted." % (
            task.mapper, existing, fstype))
        return existing
    if not existing:
        if not blank:
            raise HoldfastError("The LUKS container %s opens but holds no filesystem this module recognises, and it "
                                "is not blank; refusing to create a filesystem over possible data." % task.source)
        out.add('create a %s filesystem on %s' % (fstype, task.mapper), 'mkfs', fstype=fstype, device=task.mapper)
    return fstype


def _plan_filesystem(task, state, out, current, grown):
    fstype = _filesystem(task, state, out)
    if not state.mounted:
        out.add('mount %s on %s (%s)' % (task.mapper, task.path, ','.join(task.mount_options)), 'mount',
                device=task.mapper, path=task.path, fstype=fstype, options=task.mount_options)
    if grown:
        if fstype == 'xfs':
            out.add('grow the xfs filesystem on %s' % task.path, 'grow_fs', fstype=fstype, target=task.path)
        else:
            out.add('grow the %s filesystem on %s' % (fstype, task.mapper), 'grow_fs', fstype=fstype,
                    target=task.mapper)
    _plan_attributes(task, state, out)
    if task.docker_volume:
        _plan_docker_volume(task, state, out)
    if task.persistent is not None:
        _plan_persistence(task, state, out, fstype)
    if task.header_backup and not state.header_backup_exists:
        out.add('back up the LUKS header to %s' % task.header_backup, 'backup_header', source=task.source,
                target=task.header_backup)


def _plan_attributes(task, state, out):
    if task.uid is None and task.gid is None and task.mode is None:
        return
    root = state.root if state.mounted else None
    cur_uid, cur_gid = (root[0], root[1]) if root else (None, None)
    want_uid = task.uid if task.uid is not None else cur_uid
    want_gid = task.gid if task.gid is not None else cur_gid
    if root is None or (want_uid, want_gid) != (cur_uid, cur_gid):
        out.add('set owner/group of %s to %s:%s' % (task.path, want_uid, want_gid), 'chown', path=task.path,
                uid=-1 if want_uid is None else want_uid, gid=-1 if want_gid is None else want_gid)
    if task.mode is not None:
        want = task.mode.apply(root[2] if root else 0o755, True)
        if root is None or stat.S_IMODE(root[2]) != want:
            out.add('set mode of %s to %04o' % (task.path, want), 'chmod', path=task.path, mode=want)


def _plan_docker_volume(task, state, out):
    want = {'type': 'none', 'o': 'bind', 'device': task.path}
    vol = state.volume
    if vol is None:
        out.add('create Docker volume %s bound to %s' % (task.docker_volume, task.path), 'create_volume',
                name=task.docker_volume, options=want, labels={'io.holdfast.volumes.luks-path': task.path})
    elif vol['Driver'] != 'local' or vol['Options'] != want:
        out.drift.append(dict(field='docker_volume', existing=vol['Options'], wanted=want))
        out.warnings.append("Docker volume %s exists with other options (%s); it was left alone."
                            % (task.docker_volume, vol['Options']))


def _table_step(out, verb, table, text, new):
    if new != text:
        out.add('%s %s' % (verb, table), 'write_table', path=table, text=new)


def _plan_persistence(task, state, out, fstype):
    persistent, keyfile = task.persistent, task.persistent_keyfile
    if persistent and not keyfile:
        out.warnings.append("persistent: the key is a passphrase, so crypttab says 'none' (asked at boot; with nofail "
                            "the boot goes on without it). Use a keyfile for unattended boots. The passphrase is "
                            "never written to a file.")
    crypt = crypttab_line(task.name, task.source, keyfile, ['luks', 'nofail']) if persistent else None
    mount_opts = [o for o in task.mount_options if o != 'defaults'] or ['defaults']
    fst = fstab_line(task.mapper, task.path, fstype, mount_opts + ['nofail']) if persistent else None
    _table_step(out, 'update', CRYPTTAB, state.crypttab, replace_managed_line(state.crypttab, task.name, crypt))
    _table_step(out, 'update', FSTAB, state.fstab, replace_managed_line(state.fstab, task.mapper, fst))
    if task.docker_volume:
        dropin, content = dropin_path(task.name), dropin_content(task.path)
        if persistent and state.dropin != content:
            out.add('order docker.service after the mount (%s)' % dropin, 'write_dropin', path=dropin, text=content)
        elif not persistent and state.dropin is not None:
            out.add('remove %s' % dropin, 'unlink', path=dropin)


# -- unmounted, absent ---------------------------------------------------------------------------------------------
def _plan_take_down(task, state, out):
    """The steps unmounted and absent share: remove the Docker volume, unmount, close the mapping."""
    if task.docker_volume and state.volume is not None:
        if state.users:
            raise HoldfastError("Docker volume %s is used by container(s) %s; remove them first." % (
                task.docker_volume, ", ".join(u['name'] for u in state.users)))
        out.add('remove Docker volume %s (it would point at the bare mount point)' % task.docker_volume,
                'remove_volume', name=task.docker_volume)
    if state.mounted:
        out.add('unmount %s' % task.path, 'umount', path=task.path)
    if state.active:
        out.add('close %s' % task.mapper, 'close', name=task.name)


def _plan_unmounted(task, state, out):
    running = [u for u in state.users if u['running']]
    if running and (state.mounted or state.active):
        raise HoldfastError("Containers %s use %s; stop them before unmounting." % (
            ", ".join(u['name'] for u in running), task.path))
    _plan_take_down(task, state, out)


def _plan_absent(task, state, out):
    source = task.source
    if state.users:
        raise HoldfastError("Refusing to destroy %s: container(s) %s use it (%s). Remove them first." % (
            source, ", ".join(u['name'] for u in state.users), task.path))
    if not task.destroy and (state.exists or state.mounted or state.active):
        raise HoldfastError("state: absent destroys the encrypted data of %s for good; confirm with destroy: true."
                            % source)
    _plan_take_down(task, state, out)
    if state.exists and state.dump:
        out.add('erase the LUKS keyslots and header of %s' % source, 'erase', source=source)
        out.add('wipe the signatures of %s' % source, 'wipefs', source=source)
    if task.is_file and state.exists:
        out.add('remove %s' % source, 'remove_file', source=source)
    for table, text, key in ((CRYPTTAB, state.crypttab, task.name), (FSTAB, state.fstab, task.mapper)):
        _table_step(out, 'remove the entry from', table, text, replace_managed_line(text, key, None))
    if state.dropin is not None:
        out.add('remove %s' % dropin_path(task.name), 'unlink', path=dropin_path(task.name))
