# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""luks_path, doing: read the state (_luks_state), plan the steps (_luks_plan, pure), then apply them here, one
action per kind of step: backing file or device -> LUKS -> open -> filesystem -> mount -> owner/mode -> optional
Docker volume, plus growth, key rotation, header backup, persistence and teardown.

Check mode stops after the plan: it returns every step a real run would take (`plan`, and `steps`), not only the
first, and changes nothing. Keys are tested while reading, before anything changes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import tempfile

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._host_info import loop_for_file
from ansible_collections.holdfast.volumes.plugins.module_utils._host_tables import write_dropin, write_table
from ansible_collections.holdfast.volumes.plugins.module_utils._luks import (
    KeyTester,
    cryptsetup,
    luks_dump,
    probe_filesystem,
    run,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._luks_plan import plan, with_filesystem
from ansible_collections.holdfast.volumes.plugins.module_utils._luks_state import read_state, task_from_params
from ansible_collections.holdfast.volumes.plugins.module_utils._process import need

# The options of luks_path (its argument spec) and the rules between them.
LUKS_PATH_OPTIONS = dict(
    path=dict(type='path', required=True),
    backing_file=dict(type='path'),
    device=dict(type='path'),
    size=dict(type='str'),
    preallocate=dict(type='bool', default=False),
    name=dict(type='str'),
    keyfile=dict(type='path', no_log=False),
    passphrase=dict(type='str', no_log=True),
    luks_type=dict(type='str', default='luks2', choices=['luks1', 'luks2']),
    cipher=dict(type='str', default='aes-xts-plain64'),
    key_size=dict(type='int', default=512, no_log=False),
    pbkdf=dict(type='str', default='argon2id', choices=['argon2id', 'argon2i', 'pbkdf2']),
    pbkdf_memory=dict(type='int'),
    pbkdf_iter_time=dict(type='int'),
    force_format=dict(type='bool', default=False),
    fstype=dict(type='str', default='ext4', choices=['ext4', 'xfs']),
    mount_options=dict(type='list', elements='str'),
    owner=dict(type='raw'),
    group=dict(type='raw'),
    mode=dict(type='raw'),
    docker_volume=dict(type='str'),
    persistent=dict(type='bool'),
    new_keyfile=dict(type='path', no_log=False),
    new_passphrase=dict(type='str', no_log=True),
    remove_keyfile=dict(type='path', no_log=False),
    remove_passphrase=dict(type='str', no_log=True),
    force_remove_last_key=dict(type='bool', default=False, no_log=False),
    header_backup=dict(type='path'),
    state=dict(type='str', default='mounted', choices=['mounted', 'unmounted', 'absent']),
    destroy=dict(type='bool', default=False),
)
LUKS_PATH_RULES = dict(
    mutually_exclusive=[('backing_file', 'device'), ('keyfile', 'passphrase'), ('new_keyfile', 'new_passphrase'),
                        ('remove_keyfile', 'remove_passphrase')],
    required_one_of=[('backing_file', 'device')],
)


class Engine(object):
    """The Docker Engine, connected on first use (a bare path without a Docker volume needs none)."""

    def __init__(self, params):
        self.params = params
        self._client = None

    def client(self):
        if self._client is None:
            from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import connect
            self._client = connect(self.params)
        return self._client

    def users(self, path, volume_name):
        """Containers using the path or the Docker volume. Without a reachable engine, a bare path has none."""
        from ansible_collections.holdfast.volumes.plugins.module_utils._quiesce import containers_using
        try:
            client = self.client()
        except HoldfastError:
            if volume_name:
                raise
            return []
        return containers_using(client, volume=volume_name, path=path)

    def volume(self, name):
        from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import inspect_volume
        return inspect_volume(self.client(), name)


class Applier(object):
    """The actions the plan's steps name. Each takes the step's arguments as keywords."""

    def __init__(self, engine, tester):
        self.engine = engine
        self.tester = tester

    def apply(self, step):
        getattr(self, 'do_' + step.action)(**step.args)

    # -- backing store and container ---------------------------------------------------------------------------
    @staticmethod
    def do_create_file(source, size, preallocate):
        os.makedirs(os.path.dirname(source) or '/', exist_ok=True)
        fd = os.open(source, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            if preallocate:
                os.posix_fallocate(fd, 0, size)
            else:
                os.ftruncate(fd, size)
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            os.unlink(source)  # a short file would pass for a good one in the next run
            raise HoldfastError("Cannot make the backing file %s %d bytes long: %s. It was removed again; free space "
                                "on that filesystem or choose a smaller size or another place."
                                % (source, size, exc.strerror or exc)) from exc
        else:
            os.close(fd)

    @staticmethod
    def do_grow_file(source, start, size, preallocate):
        with open(source, 'r+b') as handle:
            if preallocate:
                os.posix_fallocate(handle.fileno(), start, size - start)
            else:
                handle.truncate(size)
            os.fsync(handle.fileno())

    @staticmethod
    def do_format(source, key, **options):
        args, secrets = key.args()
        cmd = [cryptsetup(), 'luksFormat', '--batch-mode', '--type', options['luks_type'], '--cipher',
               options['cipher'], '--key-size', str(options['key_size'])]
        if options['luks_type'] == 'luks2':
            cmd += ['--pbkdf', options['pbkdf']]
            if options['pbkdf_memory']:
                cmd += ['--pbkdf-memory', str(options['pbkdf_memory'])]
        if options['pbkdf_iter_time']:
            cmd += ['--iter-time', str(options['pbkdf_iter_time'])]
        run(cmd + args + [source], secrets, True, 'cryptsetup luksFormat')

    @staticmethod
    def do_add_key(source, current, new):
        cur_args, cur_secrets = current.args('--key-file', 0)
        if new.keyfile:
            new_args, new_secrets = [new.keyfile], []
        else:
            new_args, new_secrets = ['/proc/self/fd/{fd%d}' % len(cur_secrets)], [new.passphrase.encode('utf-8')]
        run([cryptsetup(), 'luksAddKey', '--batch-mode'] + cur_args + [source] + new_args,
            cur_secrets + new_secrets, True, 'cryptsetup luksAddKey')

    def do_verify_key(self, source, key):
        self.tester.forget()
        if not self.tester.unlocks(key):
            raise HoldfastError("The new key was added but does not unlock %s; the old key still works and was not "
                                "removed." % source)

    def do_remove_key(self, source, key, new):
        if new and not self.tester.unlocks(new):
            raise HoldfastError("Refusing to remove the old key: the new key does not unlock %s." % source)
        args, secrets = key.args()
        run([cryptsetup(), 'luksRemoveKey', '--batch-mode'] + args + [source], secrets, True,
            'cryptsetup luksRemoveKey')
        self.tester.forget()

    @staticmethod
    def do_open(source, name, key):
        args, secrets = key.args()
        run([cryptsetup(), 'open', '--type', 'luks'] + args + [source, name], secrets, True, 'cryptsetup open')

    @staticmethod
    def do_grow_mapping(source, name, key):
        loop = loop_for_file(source)
        if loop:
            run([need('losetup', 'util-linux'), '--set-capacity', loop], what='losetup --set-capacity')
        args, secrets = key.args()
        run([cryptsetup(), 'resize'] + args + [name], secrets, True, 'cryptsetup resize')

    # -- filesystem, mount point, Docker volume, tables ------------------------------------------------------------
    @staticmethod
    def do_mkfs(fstype, device):
        mkfs = [need('mkfs.' + fstype, 'e2fsprogs' if fstype.startswith('ext') else 'xfsprogs')]
        mkfs += ['-q'] if fstype.startswith('ext') else ['-q', '-f'] if fstype == 'xfs' else []
        run(mkfs + [device], (), True, 'mkfs.' + fstype)

    @staticmethod
    def do_mount(device, path, fstype, options):
        os.makedirs(path, exist_ok=True)
        run([need('mount', 'mount'), '-t', fstype, '-o', ','.join(options), device, path], what='mount')

    @staticmethod
    def do_grow_fs(fstype, target):
        if fstype == 'xfs':
            run([need('xfs_growfs', 'xfsprogs'), target], (), True, 'xfs_growfs')
        else:
            run([need('resize2fs', 'e2fsprogs'), target], (), True, 'resize2fs')

    @staticmethod
    def do_chown(path, uid, gid):
        os.chown(path, uid, gid)

    @staticmethod
    def do_chmod(path, mode):
        os.chmod(path, mode)

    def do_create_volume(self, name, options, labels):
        from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import create_volume
        create_volume(self.engine.client(), name, driver_opts=options, labels=labels)

    def do_remove_volume(self, name):
        self.engine.client().remove_volume(name)

    @staticmethod
    def do_write_table(path, text):
        write_table(path, text)

    @staticmethod
    def do_write_dropin(path, text):
        write_dropin(path, text)

    @staticmethod
    def do_unlink(path):
        os.unlink(path)

    @staticmethod
    def do_backup_header(source, target):
        """cryptsetup writes the header into a private new directory beside the target (never through a name
        another user could have planted), then it is fsynced and renamed over the target."""
        folder = tempfile.mkdtemp(prefix='.holdfast-tmp-header-', dir=os.path.dirname(target) or '.')
        tmp = os.path.join(folder, 'header')
        try:
            run([cryptsetup(), 'luksHeaderBackup', source, '--header-backup-file', tmp],
                what='cryptsetup luksHeaderBackup')
            os.chmod(tmp, 0o600)
            fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, target)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    # -- teardown ----------------------------------------------------------------------------------------------------
    @staticmethod
    def do_umount(path):
        run([need('umount', 'mount'), path], (), True, 'umount')

    @staticmethod
    def do_close(name):
        run([cryptsetup(), 'close', name], (), True, 'cryptsetup close')

    @staticmethod
    def do_erase(source):
        run([cryptsetup(), 'erase', '--batch-mode', source], (), True, 'cryptsetup erase')

    @staticmethod
    def do_wipefs(source):
        run([need('wipefs', 'util-linux'), '-a', source], (), True, 'wipefs')

    @staticmethod
    def do_remove_file(source):
        loop = loop_for_file(source)
        if loop:
            run([need('losetup', 'util-linux'), '-d', loop], check=False)
        os.unlink(source)


def apply_plan(task, state, steps_plan, applier):
    """Apply the plan's steps in order; the plan as carried out (planned again once the filesystem inside a
    closed container was seen)."""
    done = 0
    current = steps_plan
    while done < len(current.steps):
        step = current.steps[done]
        applier.apply(step)
        done += 1
        if step.action == 'open' and current.probe_after_open:
            state = with_filesystem(state, *probe_filesystem(task.mapper))
            current = plan(task, state)
            if [s.text for s in current.steps[:done]] != [s.text for s in steps_plan.steps[:done]]:
                raise HoldfastError("BUG: the steps up to opening %s changed once its filesystem was seen."
                                    % task.source)
    return current


def render(state):
    return ''.join('%s: %s\n' % (k, state.get(k)) for k in ('backing_exists', 'size', 'luks', 'keyslots', 'open',
                                                            'mounted'))


def _diff(task, state, after_dump):
    before = dict(backing_exists=state.exists, luks=state.luks, open=state.active, mounted=bool(state.mounted),
                  keyslots=state.keyslots, size=state.file_size)
    if task.state == 'absent':
        after = dict(backing_exists=False, luks=None, open=False, mounted=False, keyslots=0, size=None)
    elif task.state == 'unmounted':
        after = dict(before, open=False, mounted=False)
    else:
        after = dict(backing_exists=True, luks=(after_dump or state.dump or {}).get('type') or task.luks_type,
                     open=True, mounted=True, size=task.size if task.size is not None else before['size'],
                     keyslots=len(after_dump['keyslots']) if after_dump else before['keyslots'])
    return dict(before=render(before), after=render(after))


def run_luks_path(params, check_mode=False):
    task = task_from_params(params)
    cryptsetup()
    engine = Engine(params)
    tester = KeyTester(task.source)
    state = read_state(task, engine, tester)
    planned = plan(task, state)
    done = planned if check_mode else apply_plan(task, state, planned, Applier(engine, tester))
    result = dict(changed=bool(done.steps), name=task.name, mapper=task.mapper, path=task.path, steps=done.texts,
                  plan=planned.texts, drift=done.drift)
    after_dump = None
    if task.state == 'mounted':
        after_dump = luks_dump(task.source) if not check_mode and os.path.exists(task.source) else None
        result['filesystem'] = done.filesystem
        result['keyslots'] = len(after_dump['keyslots']) if after_dump else None
    result['diff'] = _diff(task, state, after_dump)
    return result, (done.warnings if task.state == 'mounted' else [])
