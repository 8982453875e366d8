# -*- coding: utf-8 -*-
"""luks_path's planner, without a kernel: a LuksTask and a LuksState in, the ordered steps out (and every refusal
decided before any step). The real runs of these plans are in tests/integration/test_luks_vm.py."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace

import pytest

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._host_tables import (
    CRYPTTAB,
    FSTAB,
    crypttab_line,
    dropin_content,
    dropin_path,
    fstab_line,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._luks import Key
from ansible_collections.holdfast.volumes.plugins.module_utils._luks_path import run_luks_path
from ansible_collections.holdfast.volumes.plugins.module_utils._luks_plan import plan, with_filesystem
from ansible_collections.holdfast.volumes.plugins.module_utils._luks_state import UNKNOWN, LuksState, LuksTask
from ansible_collections.holdfast.volumes.plugins.module_utils._modes import ModeSpec

NAME = 'holdfast-srv-enc-db'
MAPPER = '/dev/mapper/' + NAME
IMG = '/srv/luks/db.img'
DUMP = dict(type='luks2', cipher='aes-xts-plain64', key_bits=512, keyslots=[0], pbkdf='argon2id')
MOUNT = dict(mount_point='/srv/enc/db', source=MAPPER, fstype='ext4')


def task(**kwargs):
    base = dict(name=NAME, state='mounted', path='/srv/enc/db', source=IMG, is_file=True, size=None,
                key=Key('/etc/k/db', None, 'key'))
    base.update(kwargs)
    return LuksTask(**base)


def converged(**kwargs):
    """An existing container, open, mounted, with an ext4 filesystem: what a finished run leaves."""
    base = dict(exists=True, file_size=64 << 20, dump=dict(DUMP), active=True, mounted=dict(MOUNT),
                unlocks={'key': True}, filesystem='ext4', root=(0, 0, 0o40755))
    base.update(kwargs)
    return LuksState(**base)


def actions(steps_plan):
    return [s.action for s in steps_plan.steps]


def test_create_everything_in_order():
    wanted = task(size=64 << 20, uid=999, gid=999, mode=ModeSpec('0750'), docker_volume='db', persistent=True,
                  header_backup='/root/db.header')
    done = plan(wanted, LuksState())
    assert actions(done) == ['create_file', 'format', 'open', 'mkfs', 'mount', 'chown', 'chmod', 'create_volume',
                             'write_table', 'write_table', 'write_dropin', 'backup_header']
    assert done.texts[:5] == ['create backing file %s (%d bytes, sparse)' % (IMG, 64 << 20),
                              'luksFormat %s (luks2, aes-xts-plain64, 512-bit key)' % IMG,
                              'open %s as %s' % (IMG, MAPPER), 'create a ext4 filesystem on %s' % MAPPER,
                              'mount %s on /srv/enc/db (defaults)' % MAPPER]
    assert done.texts[5:7] == ['set owner/group of /srv/enc/db to 999:999', 'set mode of /srv/enc/db to 0750']
    crypttab, fstab = done.steps[8].args, done.steps[9].args
    assert crypttab == dict(path=CRYPTTAB, text=crypttab_line(NAME, IMG, '/etc/k/db', ['luks', 'nofail']) + '\n')
    assert fstab == dict(path=FSTAB, text=fstab_line(MAPPER, '/srv/enc/db', 'ext4', ['defaults', 'nofail']) + '\n')
    assert done.steps[10].args == dict(path=dropin_path(NAME), text=dropin_content('/srv/enc/db'))
    assert done.filesystem == 'ext4' and done.warnings == [] and not done.probe_after_open
    assert 'secret' not in repr(done)


def test_a_missing_file_needs_a_size_and_a_device_must_be_big_enough():
    with pytest.raises(HoldfastError, match='give size to create it'):
        plan(task(), LuksState())
    device = task(source='/dev/vdb', is_file=False, size=1 << 30)
    with pytest.raises(HoldfastError, match='grow the device itself'):
        plan(device, LuksState(exists=True, device_size=512 << 20))
    assert actions(plan(device, LuksState(exists=True, device_size=1 << 30))) == ['format', 'open', 'mkfs', 'mount']


def test_refuses_to_format_data_or_a_small_file():
    with pytest.raises(HoldfastError, match='holds data'):
        plan(task(), LuksState(exists=True, file_size=64 << 20, holds_data='TYPE=ext4'))
    assert actions(plan(task(force_format=True), LuksState(exists=True, file_size=64 << 20,
                                                           holds_data='TYPE=ext4')))[0] == 'format'
    with pytest.raises(HoldfastError, match='too small'):
        plan(task(), LuksState(exists=True, file_size=16 << 20))


def test_already_mounted_is_no_step():
    wanted = task(size=64 << 20, uid=0, gid=0, mode=ModeSpec('0755'), docker_volume='db', persistent=True,
                  header_backup='/root/db.header')
    state = converged(volume=dict(Driver='local', Options={'type': 'none', 'o': 'bind', 'device': '/srv/enc/db'}),
                      crypttab=crypttab_line(NAME, IMG, '/etc/k/db', ['luks', 'nofail']) + '\n',
                      fstab=fstab_line(MAPPER, '/srv/enc/db', 'ext4', ['defaults', 'nofail']) + '\n',
                      dropin=dropin_content('/srv/enc/db'), header_backup_exists=True)
    done = plan(wanted, state)
    assert done.steps == [] and done.drift == [] and done.warnings == [] and done.filesystem == 'ext4'


def test_open_an_existing_closed_container():
    state = converged(active=False, mounted=None, filesystem=UNKNOWN, root=None)
    predicted = plan(task(), state)
    # check mode cannot see inside: it assumes the wanted filesystem, says so, and a real run looks after opening
    assert actions(predicted) == ['open', 'mount'] and predicted.filesystem == UNKNOWN
    assert predicted.probe_after_open and 'cannot see the filesystem' in predicted.warnings[0]
    seen = plan(task(), with_filesystem(state, 'ext4', False))
    assert seen.texts == predicted.texts and seen.warnings == [] and seen.filesystem == 'ext4'
    blank = plan(task(), with_filesystem(state, None, True))
    assert actions(blank) == ['open', 'mkfs', 'mount']
    xfs = plan(task(persistent=True), with_filesystem(state, 'xfs', False))
    assert actions(xfs) == ['open', 'mount', 'write_table', 'write_table'] and xfs.steps[1].args['fstype'] == 'xfs'
    assert xfs.drift == [dict(field='fstype', existing='xfs', wanted='ext4')] and ' xfs ' in xfs.steps[3].args['text']
    with pytest.raises(HoldfastError, match='not blank'):
        plan(task(), with_filesystem(state, None, False))


def test_wrong_key_foreign_mount_and_foreign_mapping_are_refused_before_any_step():
    with pytest.raises(HoldfastError, match='does not unlock'):
        plan(task(size=128 << 20), converged(unlocks={'key': False}))
    with pytest.raises(HoldfastError, match='already a mount point of tmpfs'):
        plan(task(), LuksState(mounted=dict(source='tmpfs', fstype='tmpfs'), foreign_mount=True))
    with pytest.raises(HoldfastError, match='open on /dev/loop7'):
        plan(task(), converged(mapping_elsewhere='/dev/loop7'))


def test_grow_online():
    grow = plan(task(size=128 << 20), converged())
    assert actions(grow) == ['grow_file', 'grow_mapping', 'grow_fs']
    assert grow.steps[0].args == dict(source=IMG, start=64 << 20, size=128 << 20, preallocate=False)
    assert grow.texts[2] == 'grow the ext4 filesystem on %s' % MAPPER
    xfs = plan(task(size=128 << 20, fstype='xfs'), converged(filesystem='xfs'))
    assert xfs.texts[2] == 'grow the xfs filesystem on /srv/enc/db'
    # the file grew in an earlier run that stopped before the mapping did
    assert actions(plan(task(size=64 << 20), converged(mapping_smaller=True))) == ['grow_mapping', 'grow_fs']
    closed = plan(task(size=128 << 20), converged(active=False, mounted=None, filesystem=UNKNOWN))
    assert actions(closed) == ['grow_file', 'open', 'grow_mapping', 'mount', 'grow_fs']
    with pytest.raises(HoldfastError, match='Shrinking is not supported'):
        plan(task(size=32 << 20), converged())


def test_key_rotation():
    new, old = Key('/etc/k/db.new', None, 'new key'), Key('/etc/k/db', None, 'key to remove')
    rotate = task(new_key=new, old_key=old, persistent=True)
    state = converged(unlocks={'key': True, 'new key': False, 'key to remove': True},
                      crypttab=crypttab_line(NAME, IMG, '/etc/k/db', ['luks', 'nofail']) + '\n',
                      fstab=fstab_line(MAPPER, '/srv/enc/db', 'ext4', ['defaults', 'nofail']) + '\n')
    done = plan(rotate, state)
    assert actions(done) == ['add_key', 'verify_key', 'remove_key', 'write_table']
    assert done.steps[0].args['current'] is rotate.key and done.steps[2].args['new'] is new
    assert '/etc/k/db.new' in done.steps[3].args['text']  # crypttab names the key that opens it now
    # a second run: the old key no longer opens it, the new one does
    again = replace(state, unlocks={'key': False, 'new key': True, 'key to remove': False},
                    crypttab=done.steps[3].args['text'])
    assert plan(rotate, again).steps == []
    closed = plan(rotate, replace(again, active=False, mounted=None, filesystem=UNKNOWN))
    assert closed.steps[0].action == 'open' and closed.steps[0].args['key'] is new
    with pytest.raises(HoldfastError, match='last key'):
        plan(task(old_key=old), converged(unlocks={'key': True, 'key to remove': True}))
    assert actions(plan(task(old_key=old, force_remove_last_key=True),
                        converged(unlocks={'key': True, 'key to remove': True}))) == ['remove_key']


def test_drift_is_reported_never_reencrypted():
    done = plan(task(luks_type='luks1', key_size=256), converged())
    assert done.steps == [] and [d['field'] for d in done.drift] == ['type', 'key_bits']
    assert 'never re-encrypted' in done.warnings[0]
    vol = plan(task(docker_volume='db'), converged(volume=dict(Driver='local', Options={'device': '/elsewhere'})))
    assert vol.steps == [] and vol.drift[0]['field'] == 'docker_volume'


def test_persistence_variations():
    passphrase = task(key=Key(None, 'pw', 'key'), persistent=True, mount_options=['noatime'])
    done = plan(passphrase, converged())
    assert done.steps[0].args['text'].startswith('%s %s none luks,nofail' % (NAME, IMG))
    assert ' ext4 noatime,nofail 0 2' in done.steps[1].args['text'] and 'pw' not in repr(done.steps)
    assert 'passphrase' in done.warnings[0]
    managed = converged(crypttab='swap /dev/sda2 /dev/urandom swap\n' + done.steps[0].args['text'].split('\n')[0]
                        + '\n', fstab=done.steps[1].args['text'], dropin=dropin_content('/srv/enc/db'))
    off = plan(task(persistent=False, docker_volume='db'), replace(managed, volume=dict(
        Driver='local', Options={'type': 'none', 'o': 'bind', 'device': '/srv/enc/db'})))
    assert off.texts == ['update /etc/crypttab', 'update /etc/fstab', 'remove %s' % dropin_path(NAME)]
    assert off.steps[0].args['text'] == 'swap /dev/sda2 /dev/urandom swap\n' and off.steps[1].args['text'] == ''
    with pytest.raises(HoldfastError, match='did not write'):
        plan(task(persistent=True), converged(crypttab='%s /dev/vdb none luks\n' % NAME))
    assert plan(task(), converged(crypttab='%s /dev/vdb none luks\n' % NAME)).steps == []  # unset: left alone


def test_unmounted():
    users = [dict(name='app', running=True)]
    with pytest.raises(HoldfastError, match='stop them before unmounting'):
        plan(task(state='unmounted', key=Key()), converged(users=users))
    down = plan(task(state='unmounted', docker_volume='db'), converged(volume=dict(Driver='local', Options={})))
    assert down.texts == ['remove Docker volume db (it would point at the bare mount point)',
                          'unmount /srv/enc/db', 'close %s' % MAPPER]
    assert plan(task(state='unmounted'), converged(active=False, mounted=None)).steps == []


def test_absent_destroys_only_when_confirmed_and_unused():
    gone = task(state='absent', destroy=True, docker_volume='db')
    state = converged(volume=dict(Driver='local', Options={}), dropin=dropin_content('/srv/enc/db'),
                      crypttab='# mine\n' + crypttab_line(NAME, IMG, None, ['luks', 'nofail']) + '\n')
    with pytest.raises(HoldfastError, match='destroy: true'):
        plan(replace(gone, destroy=False), state)
    with pytest.raises(HoldfastError, match='Refusing to destroy'):
        plan(gone, replace(state, users=[dict(name='app', running=False)]))
    done = plan(gone, state)
    assert actions(done) == ['remove_volume', 'umount', 'close', 'erase', 'wipefs', 'remove_file', 'write_table',
                             'unlink']
    assert done.steps[6].args == dict(path=CRYPTTAB, text='# mine\n')
    assert plan(task(state='absent'), LuksState()).steps == []  # nothing there: nothing to confirm


def luks_file(path, key):
    """A closed LUKS container in a plain file (luksFormat works on this kernel; opening it would not)."""
    subprocess.run(['truncate', '-s', '32M', str(path)], check=True)
    subprocess.run(['cryptsetup', 'luksFormat', '--batch-mode', '--type', 'luks2', '--pbkdf', 'pbkdf2',
                    '--pbkdf-force-iterations', '1000', '--key-file', str(key), str(path)], check=True)


def test_check_mode_returns_the_plan_and_changes_nothing(tmp_path):
    """The real reader on this host, in check mode: a new container and a closed one."""
    key = tmp_path / 'key'
    key.write_bytes(os.urandom(64))
    key.chmod(0o600)
    new = dict(path=str(tmp_path / 'mnt'), backing_file=str(tmp_path / 'new.img'), size='32M', keyfile=str(key),
               persistent=False)
    result, warnings = run_luks_path(new, check_mode=True)
    assert [s.split(' ')[0] for s in result['plan']] == ['create', 'luksFormat', 'open', 'create', 'mount']
    assert result['steps'] == result['plan'] and result['changed'] and warnings == []
    assert result['filesystem'] == 'ext4' and result['keyslots'] is None
    assert 'backing_exists: False' in result['diff']['before'] and 'mounted: True' in result['diff']['after']
    assert sorted(os.listdir(tmp_path)) == ['key']
    luks_file(tmp_path / 'closed.img', key)
    before = (tmp_path / 'closed.img').read_bytes()
    closed = dict(new, backing_file=str(tmp_path / 'closed.img'), size='48M')
    result, warnings = run_luks_path(closed, check_mode=True)
    assert [s.split(' ')[0] for s in result['plan']] == ['grow', 'open', 'grow', 'mount', 'grow']
    assert result['filesystem'] == UNKNOWN and 'cannot see the filesystem' in warnings[0]
    assert (tmp_path / 'closed.img').read_bytes() == before and not (tmp_path / 'mnt').exists()
    wrong = tmp_path / 'wrong'
    wrong.write_bytes(os.urandom(64))
    wrong.chmod(0o600)
    with pytest.raises(HoldfastError, match='does not unlock'):
        run_luks_path(dict(closed, keyfile=str(wrong)), check_mode=True)
