# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""luks_path, the doing part: backing file or device -> LUKS -> open -> filesystem -> mount -> owner/mode ->
optional Docker volume, plus growth, key rotation, header backup, persistence and teardown.

Every step is recorded in `steps` and executed only outside check mode, against a predicted state, so check mode
lists all the steps a real run would take, not only the first. Keys are tested before anything changes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import stat

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._luks import (
    MIN_LUKS1_BYTES,
    MIN_LUKS2_BYTES,
    block_size_bytes,
    crypttab_line,
    dm_device,
    fstab_line,
    loop_for_file,
    mapper_active,
    mount_at,
    parse_luks_dump,
    parse_size,
    parse_status,
    read_mounts,
    replace_managed_line,
    run,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._process import need
from ansible_collections.holdfast.volumes.plugins.module_utils._store import write_atomic

NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.+-]{0,100}$')
CRYPTTAB = '/etc/crypttab'
FSTAB = '/etc/fstab'
DROPIN_DIR = '/etc/systemd/system/docker.service.d'


class Key(object):
    """A key: a keyfile path, or a passphrase given through a pipe. repr() never shows the secret."""

    def __init__(self, keyfile=None, passphrase=None, label='key'):
        self.keyfile = keyfile
        self.passphrase = passphrase
        self.label = label

    def __bool__(self):
        return bool(self.keyfile or self.passphrase)

    __nonzero__ = __bool__

    def __repr__(self):
        return '<Key %s>' % self.label

    def args(self, option='--key-file', index=0):
        if self.keyfile:
            return [option, self.keyfile], []
        return [option, '/proc/self/fd/{fd%d}' % index], [self.passphrase.encode('utf-8')]

    def same(self, other):
        return bool(other) and self.keyfile == other.keyfile and self.passphrase == other.passphrase


class Runner(object):
    def __init__(self, check_mode):
        self.check_mode = check_mode
        self.steps = []

    def step(self, text, func=None, *args, **kwargs):
        self.steps.append(text)
        if not self.check_mode and func is not None:
            return func(*args, **kwargs)
        return None


def _validate(params):
    if not params.get('path') or not os.path.isabs(params['path']):
        raise HoldfastError("path (the mount point) must be an absolute path.")
    if bool(params.get('backing_file')) == bool(params.get('device')):
        raise HoldfastError("Give exactly one of backing_file (a file the module creates) or device (a block device).")
    name = params.get('name') or 'holdfast-' + re.sub(r'[^A-Za-z0-9_.+-]', '-', params['path'].strip('/'))[:80]
    if not NAME_RE.match(name):
        raise HoldfastError("name %r is not a valid mapping name (letters, digits, _ . + -)." % name)
    if params.get('keyfile') and params.get('passphrase'):
        raise HoldfastError("Give keyfile or passphrase, not both.")
    if params.get('mode') not in (None, ''):  # before any step: an integer mode is refused, a typo is named
        from ansible_collections.holdfast.volumes.plugins.module_utils._modes import ModeSpec
        ModeSpec(params['mode'], 'mode')
    state = params.get('state') or 'mounted'
    if state != 'absent' and not (params.get('keyfile') or params.get('passphrase')) and state == 'mounted':
        raise HoldfastError("A key is needed: keyfile (a file on the host, mode 0600) or passphrase.")
    for opt in ('keyfile', 'new_keyfile', 'remove_keyfile'):
        path = params.get(opt)
        if path:
            if not os.path.isfile(path):
                raise HoldfastError("%s %s does not exist." % (opt, path))
            if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
                raise HoldfastError("%s %s is readable by others (mode %04o); chmod 600 it first."
                                    % (opt, path, stat.S_IMODE(os.stat(path).st_mode)))
    size = parse_size(params['size']) if params.get('size') not in (None, '') else None
    minimum = MIN_LUKS2_BYTES if (params.get('luks_type') or 'luks2') == 'luks2' else MIN_LUKS1_BYTES
    if size is not None and size < minimum:
        raise HoldfastError("size %s is too small: %s needs at least %d MiB for its metadata and a filesystem."
                            % (params['size'], params.get('luks_type') or 'luks2', minimum >> 20))
    return name, state, size


def _dump(source):
    rc, out, _err = run([need('cryptsetup', 'cryptsetup-bin'), 'luksDump', source], check=False)
    return parse_luks_dump(out) if rc == 0 else None


class KeyTester(object):
    """Whether a key unlocks the container, each key tested once per run (a failing test costs one key
    derivation per key slot: seconds on small hosts). forget() after any step that changes the key slots."""

    def __init__(self, source):
        self.source = source
        self.known = {}

    def unlocks(self, key):
        if not key:
            return False
        ident = (key.keyfile, key.passphrase)
        if ident not in self.known:
            args, secrets = key.args()
            rc, _out, _err = run([need('cryptsetup', 'cryptsetup-bin'), 'open', '--test-passphrase'] + args
                                 + [self.source], secrets=secrets, check=False)
            self.known[ident] = rc == 0
        return self.known[ident]

    def forget(self):
        self.known = {}


def _holds_data(source):
    """A filesystem or other signature on the backing store, or any non-zero byte in its first MiB."""
    rc, out, _err = run([need('blkid', 'util-linux'), '-p', '-o', 'export', source], check=False)
    if rc == 0 and 'TYPE=' in out:
        return out.strip().replace('\n', ' ')
    with open(source, 'rb') as handle:
        head = handle.read(1 << 20)
    if head.strip(b'\0'):
        return 'non-zero data in the first MiB'
    return None


def _users(params, path, volume_name):
    """Containers using the path or the Docker volume. Without a reachable engine, a bare path has none."""
    from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import connect
    from ansible_collections.holdfast.volumes.plugins.module_utils._quiesce import containers_using
    try:
        client = connect(params)
    except HoldfastError:
        if volume_name:
            raise
        return []
    return containers_using(client, volume=volume_name, path=path)


def _write_table(path, key, line, runner, label):
    try:
        with open(path) as handle:
            text = handle.read()
    except FileNotFoundError:
        text = ''
    new = replace_managed_line(text, key, line)
    if new != text:
        def write():
            mode = stat.S_IMODE(os.stat(path).st_mode) if os.path.exists(path) else 0o644
            write_atomic(path, new, mode, what=os.path.basename(path))
        runner.step('%s %s' % (label, path), write)
        return text, new
    return text, text


def run_luks_path(params, check_mode=False):
    name, state, size = _validate(params)
    cryptsetup = need('cryptsetup', 'cryptsetup-bin')
    path = params['path'].rstrip('/') or '/'
    mapper = '/dev/mapper/' + name
    source = params.get('backing_file') or params.get('device')
    is_file = bool(params.get('backing_file'))
    key = Key(params.get('keyfile'), params.get('passphrase'), 'key')
    new_key = Key(params.get('new_keyfile'), params.get('new_passphrase'), 'new key')
    old_key = Key(params.get('remove_keyfile'), params.get('remove_passphrase'), 'key to remove')
    runner = Runner(check_mode)
    warnings = []
    drift = []
    mounts = read_mounts()
    mounted = mount_at(mounts, path)
    active = mapper_active(name)
    exists = os.path.exists(source)
    if params.get('device') and exists and not stat.S_ISBLK(os.stat(source).st_mode):
        raise HoldfastError("device %s is not a block device (use backing_file for a regular file)." % source)
    if params.get('device') and not exists:
        raise HoldfastError("device %s does not exist." % source)
    if is_file and exists and not stat.S_ISREG(os.stat(source).st_mode):
        raise HoldfastError("backing_file %s exists and is not a regular file (use device for a block device)."
                            % source)
    dump = _dump(source) if exists else None
    before = dict(backing_exists=exists, luks=dump['type'] if dump else None, open=active,
                  mounted=bool(mounted), keyslots=len(dump['keyslots']) if dump else 0,
                  size=os.path.getsize(source) if exists and is_file else None)
    result = dict(changed=False, name=name, mapper=mapper, path=path, steps=runner.steps, drift=drift)

    if mounted and mounted['source'] not in (mapper, '/dev/%s' % dm_device(name)) and not (
            active and os.path.realpath(mounted['source']) == os.path.realpath(mapper)):
        raise HoldfastError("%s is already a mount point of %s (%s); refusing to mount over it."
                            % (path, mounted['source'], mounted['fstype']))

    if state == 'absent':
        return _absent(params, name, path, mapper, source, is_file, mounted, active, exists, runner, result, before)
    if state == 'unmounted':
        return _unmounted(params, name, path, mapper, mounted, active, runner, result, before)

    # -- keys first: nothing changes unless a given key unlocks the existing container ------------------------
    current = key
    tester = KeyTester(source)
    if dump:
        if tester.unlocks(key):
            current = key
        elif new_key and tester.unlocks(new_key):
            current = new_key  # an earlier run rotated already
        else:
            raise HoldfastError("The key does not unlock %s (wrong keyfile or passphrase); nothing was changed."
                                % source)
        want = dict(type=params.get('luks_type') or 'luks2', cipher=params.get('cipher') or 'aes-xts-plain64',
                    key_bits=params.get('key_size') or 512)
        for field in ('type', 'cipher', 'key_bits'):
            if dump.get(field) and str(dump[field]) != str(want[field]):
                drift.append(dict(field=field, existing=dump[field], wanted=want[field]))
        if drift:
            warnings.append("LUKS container %s differs from the task (%s); it is never re-encrypted silently. "
                            "Re-create it (back up, state: absent, then mounted) to change it." % (
                                source, ", ".join("%s %s != %s" % (d['field'], d['existing'], d['wanted'])
                                                  for d in drift)))

    # -- backing store ------------------------------------------------------------------------------------------
    grown = False
    if is_file:
        if not exists:
            if size is None:
                raise HoldfastError("backing_file %s does not exist: give size to create it." % source)

            def create():
                os.makedirs(os.path.dirname(source) or '/', exist_ok=True)
                fd = os.open(source, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    if params.get('preallocate'):
                        os.posix_fallocate(fd, 0, size)
                    else:
                        os.ftruncate(fd, size)
                    os.fsync(fd)
                except OSError as exc:
                    os.close(fd)
                    os.unlink(source)  # a short file would pass for a good one in the next run
                    raise HoldfastError("Cannot make the backing file %s %d bytes long: %s. It was removed again; "
                                        "free space on that filesystem or choose a smaller size or another place."
                                        % (source, size, exc.strerror or exc)) from exc
                else:
                    os.close(fd)
            runner.step('create backing file %s (%d bytes, %s)' % (source, size, 'preallocated' if params.get(
                'preallocate') else 'sparse'), create)
        else:
            current_size = os.path.getsize(source)
            if size is not None and size < current_size:
                raise HoldfastError("Shrinking is not supported: %s is %d bytes, size asks for %d. Nothing was changed."
                                    % (source, current_size, size))
            if size is not None and size > current_size:
                def grow():
                    with open(source, 'r+b') as handle:
                        if params.get('preallocate'):
                            os.posix_fallocate(handle.fileno(), current_size, size - current_size)
                        else:
                            handle.truncate(size)
                        os.fsync(handle.fileno())
                runner.step('grow backing file %s from %d to %d bytes' % (source, current_size, size), grow)
                grown = True
    elif size is not None and exists and size > block_size_bytes(source):
        raise HoldfastError("device %s is smaller than size; grow the device itself first." % source)

    # -- LUKS format ----------------------------------------------------------------------------------------------
    if not dump:
        minimum = MIN_LUKS2_BYTES if (params.get('luks_type') or 'luks2') == 'luks2' else MIN_LUKS1_BYTES
        if is_file and exists and size is None and os.path.getsize(source) < minimum:
            raise HoldfastError("backing_file %s is %d bytes, too small for %s and a filesystem (at least %d MiB): "
                                "give size to grow it. Nothing was changed."
                                % (source, os.path.getsize(source), params.get('luks_type') or 'luks2', minimum >> 20))
        if exists:
            data = _holds_data(source)
            if data and not params.get('force_format'):
                raise HoldfastError("%s is not LUKS and holds data (%s); refusing to format it. Set force_format: "
                                    "true to destroy that data." % (source, data))
        args, secrets = key.args()
        cmd = [cryptsetup, 'luksFormat', '--batch-mode', '--type', params.get('luks_type') or 'luks2',
               '--cipher', params.get('cipher') or 'aes-xts-plain64', '--key-size', str(params.get('key_size') or 512)]
        if (params.get('luks_type') or 'luks2') == 'luks2':
            cmd += ['--pbkdf', params.get('pbkdf') or 'argon2id']
            if params.get('pbkdf_memory'):
                cmd += ['--pbkdf-memory', str(params['pbkdf_memory'])]
        if params.get('pbkdf_iter_time'):
            cmd += ['--iter-time', str(params['pbkdf_iter_time'])]
        what = 'luksFormat %s (%s, %s, %d-bit key)' % (source, params.get('luks_type') or 'luks2',
                                                       params.get('cipher') or 'aes-xts-plain64',
                                                       params.get('key_size') or 512)
        runner.step(what, run, cmd + args + [source], secrets, True, 'cryptsetup luksFormat')

    # -- keys: add, verify, remove ---------------------------------------------------------------------------------
    # Key tests are read-only, so check mode runs them too and predicts exactly; a container that check mode
    # would format in this run does not exist yet, so its new key is predicted to be added.
    container_exists = bool(dump) or not check_mode
    if new_key and not current.same(new_key):
        if not (container_exists and tester.unlocks(new_key)):
            cur_args, cur_secrets = current.args('--key-file', 0)
            if new_key.keyfile:
                new_args, new_secrets = [new_key.keyfile], []
            else:
                new_args = ['/proc/self/fd/{fd%d}' % len(cur_secrets)]
                new_secrets = [new_key.passphrase.encode('utf-8')]
            runner.step('add the new key to %s' % source, run,
                        [cryptsetup, 'luksAddKey', '--batch-mode'] + cur_args + [source] + new_args,
                        cur_secrets + new_secrets, True, 'cryptsetup luksAddKey')

            def verify_new():
                tester.forget()
                if not tester.unlocks(new_key):
                    raise HoldfastError("The new key was added but does not unlock %s; the old key still works and "
                                        "was not removed." % source)
            runner.step('verify that the new key unlocks %s' % source, verify_new)
    if old_key and container_exists and tester.unlocks(old_key):
        slots = len((_dump(source) or dump or dict(keyslots=[]))['keyslots'])
        if new_key and not check_mode and not tester.unlocks(new_key):
            raise HoldfastError("Refusing to remove the old key: the new key does not unlock %s." % source)
        if slots <= 1 and not new_key and not params.get('force_remove_last_key'):
            raise HoldfastError("Refusing to remove the last key of %s: the data would be lost for good. Add a "
                                "new key first (new_keyfile/new_passphrase), or set force_remove_last_key."
                                % source)
        args, secrets = old_key.args()
        runner.step('remove the old key from %s' % source, run,
                    [cryptsetup, 'luksRemoveKey', '--batch-mode'] + args + [source], secrets, True,
                    'cryptsetup luksRemoveKey')
        tester.forget()
        if old_key.same(current):
            current = new_key
    if new_key and (current.same(old_key) or not current):
        current = new_key

    # -- open, grow the mapping --------------------------------------------------------------------------------
    if not active:
        args, secrets = current.args()
        runner.step('open %s as %s' % (source, mapper), run, [cryptsetup, 'open', '--type', 'luks'] + args
                    + [source, name], secrets, True, 'cryptsetup open')
    else:
        _rc, out, _err = run([cryptsetup, 'status', name], check=False)
        status = parse_status(out)
        backing = status.get('loop') if is_file else status.get('device')
        if backing and os.path.realpath(backing) != os.path.realpath(source):
            raise HoldfastError("The mapping %s is open on %s, not on %s; choose another name."
                                % (name, backing, source))
    if grown or (active and is_file and size is not None and _mapping_smaller(name, source)):
        def refresh():
            loop = loop_for_file(source)
            if loop:
                run([need('losetup', 'util-linux'), '--set-capacity', loop], what='losetup --set-capacity')
            args, secrets = current.args()
            run([cryptsetup, 'resize'] + args + [name], secrets, True, 'cryptsetup resize')
        runner.step('grow the loop device and the mapping %s' % name, refresh)
        grown = True

    # -- filesystem, mount ----------------------------------------------------------------------------------------
    # The filesystem is probed on the opened mapping. mkfs only ever runs on a container formatted in this run, or
    # one whose first MiB is still zeros (a run that stopped between luksFormat and mkfs); anything else is refused:
    # it may hold data. Check mode opens nothing (not even a temporary read-only mapping), so the filesystem inside
    # a closed container is 'unknown' there: the prediction assumes the usual case, the wanted filesystem.
    fstype = params.get('fstype') or 'ext4'
    formatted_now = not dump
    if formatted_now:
        existing_fs, blank = None, True
    elif not check_mode or active:
        existing_fs, blank = _probe(mapper)
    else:
        existing_fs, blank = 'unknown', False
        warnings.append("Check mode cannot see the filesystem inside %s: the container is closed, and opening it would "
                        "change the host. filesystem is 'unknown'; a real run creates one only on a blank container "
                        "and refuses one that holds unrecognised data." % source)
    result['filesystem'] = existing_fs or fstype
    if existing_fs == 'unknown':
        existing_fs = fstype
    if existing_fs and existing_fs != fstype:
        drift.append(dict(field='fstype', existing=existing_fs, wanted=fstype))
        warnings.append("%s holds a %s filesystem, the task asks for %s; it was not reformatted." % (
            mapper, existing_fs, fstype))
        fstype = existing_fs
    if not existing_fs:
        if not blank:
            raise HoldfastError("The LUKS container %s opens but holds no filesystem this module recognises, and it "
                                "is not blank; refusing to create a filesystem over possible data." % source)
        mkfs = [need('mkfs.' + fstype, 'e2fsprogs' if fstype.startswith('ext') else 'xfsprogs')]
        mkfs += ['-q'] if fstype.startswith('ext') else ['-q', '-f'] if fstype == 'xfs' else []
        runner.step('create a %s filesystem on %s' % (fstype, mapper), run, mkfs + [mapper], (), True,
                    'mkfs.' + fstype)
    options = _mount_options(params)
    if not mounted:
        def do_mount():
            os.makedirs(path, exist_ok=True)
            run([need('mount', 'mount'), '-t', fstype, '-o', ','.join(options), mapper, path], what='mount')
        runner.step('mount %s on %s (%s)' % (mapper, path, ','.join(options)), do_mount)
    if grown:
        if fstype == 'xfs':
            runner.step('grow the xfs filesystem on %s' % path, run, [need('xfs_growfs', 'xfsprogs'), path], (), True,
                        'xfs_growfs')
        else:
            runner.step('grow the %s filesystem on %s' % (fstype, mapper), run,
                        [need('resize2fs', 'e2fsprogs'), mapper], (), True, 'resize2fs')

    # -- owner, group, mode of the mount point ---------------------------------------------------------------------
    _root_attributes(params, path, runner, mounted)

    # -- Docker volume bound to the mount point --------------------------------------------------------------------
    if params.get('docker_volume'):
        _docker_volume(params, path, runner, warnings, drift)

    # -- persistence ---------------------------------------------------------------------------------------------------
    if params.get('persistent') is not None:
        _persistence(params, name, path, mapper, source, fstype, options, runner, warnings)

    # -- header backup ---------------------------------------------------------------------------------------------
    if params.get('header_backup'):
        target = params['header_backup']
        if not os.path.exists(target):
            def backup_header():
                tmp = target + '.holdfast-tmp'
                if os.path.exists(tmp):
                    os.unlink(tmp)
                run([cryptsetup, 'luksHeaderBackup', source, '--header-backup-file', tmp],
                    what='cryptsetup luksHeaderBackup')
                os.chmod(tmp, 0o600)
                os.rename(tmp, target)
            runner.step('back up the LUKS header to %s' % target, backup_header)

    after_dump = _dump(source) if not check_mode and os.path.exists(source) else None
    result['changed'] = bool(runner.steps)
    result['keyslots'] = len(after_dump['keyslots']) if after_dump else None
    result['diff'] = dict(before=_render(before), after=_render(dict(
        backing_exists=True, luks=(after_dump or dump or {}).get('type') or params.get('luks_type') or 'luks2',
        open=True, mounted=True, keyslots=len(after_dump['keyslots']) if after_dump else before['keyslots'],
        size=size if size is not None else before['size'])))
    return result, warnings


def _probe(device):
    """(filesystem type or None, blank) of an open device."""
    _rc, out, _err = run([need('blkid', 'util-linux'), '-p', '-o', 'value', '-s', 'TYPE', device], check=False)
    fs = out.strip() or None
    if fs:
        return fs, False
    with open(device, 'rb') as handle:
        head = handle.read(1 << 20)
    return None, not head.strip(b'\0')


def _dropin(name):
    """The systemd drop-in that orders docker.service after this mount."""
    return os.path.join(DROPIN_DIR, '%s.conf' % (name if name.startswith('holdfast-') else 'holdfast-' + name))


def _mapping_smaller(name, source):
    try:
        mapping = block_size_bytes('/dev/mapper/' + name)
        return mapping + (32 << 20) < os.path.getsize(source)
    except (OSError, HoldfastError):
        return False


def _mount_options(params):
    options = params.get('mount_options') or ['defaults']
    if isinstance(options, str):
        options = [o for o in options.split(',') if o]
    return list(options)


def _root_attributes(params, path, runner, mounted):
    from ansible_collections.holdfast.volumes.plugins.module_utils._modes import ModeSpec, parse_id
    uid = parse_id(params.get('owner'), 'owner')
    gid = parse_id(params.get('group'), 'group')
    mode = ModeSpec(params['mode'], 'mode') if params.get('mode') not in (None, '') else None
    if uid is None and gid is None and mode is None:
        return
    st = os.lstat(path) if (mounted and os.path.exists(path)) else None
    cur_uid, cur_gid = (st.st_uid, st.st_gid) if st else (None, None)
    want_uid = uid if uid is not None else cur_uid
    want_gid = gid if gid is not None else cur_gid
    if st is None or (want_uid, want_gid) != (cur_uid, cur_gid):
        runner.step('set owner/group of %s to %s:%s' % (path, want_uid, want_gid), os.chown, path,
                    -1 if want_uid is None else want_uid, -1 if want_gid is None else want_gid)
    if mode is not None:
        want = mode.apply(st.st_mode if st else 0o755, True)
        if st is None or stat.S_IMODE(st.st_mode) != want:
            runner.step('set mode of %s to %04o' % (path, want), os.chmod, path, want)


def _docker_volume(params, path, runner, warnings, drift):
    from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import (
        connect,
        create_volume,
        inspect_volume,
    )
    client = connect(params)
    name = params['docker_volume']
    want = {'type': 'none', 'o': 'bind', 'device': path}
    vol = inspect_volume(client, name)
    if vol is None:
        def create():
            create_volume(client, name, driver_opts=want, labels={'io.holdfast.volumes.luks-path': path})
        runner.step('create Docker volume %s bound to %s' % (name, path), create)
    elif vol['Driver'] != 'local' or vol['Options'] != want:
        drift.append(dict(field='docker_volume', existing=vol['Options'], wanted=want))
        warnings.append("Docker volume %s exists with other options (%s); it was left alone." % (name, vol['Options']))


def _persistence(params, name, path, mapper, source, fstype, options, runner, warnings):
    persistent = params.get('persistent')
    keyfile = params.get('new_keyfile') if params.get('new_keyfile') else params.get('keyfile')
    if persistent and not keyfile:
        warnings.append("persistent: the key is a passphrase, so crypttab says 'none' (asked at boot; with nofail "
                        "the boot goes on without it). Use a keyfile for unattended boots. The passphrase is never "
                        "written to a file.")
    crypt = crypttab_line(name, source, keyfile, ['luks', 'nofail']) if persistent else None
    mount_opts = [o for o in options if o != 'defaults'] or ['defaults']
    fst = fstab_line(mapper, path, fstype, mount_opts + ['nofail']) if persistent else None
    _write_table(CRYPTTAB, name, crypt, runner, 'update')
    _write_table(FSTAB, mapper, fst, runner, 'update')
    if params.get('docker_volume'):
        dropin = _dropin(name)
        content = '[Unit]\n# %s\nRequiresMountsFor=%s\n' % ('managed by holdfast.volumes luks_path', path)
        if persistent:
            try:
                with open(dropin) as handle:
                    same = handle.read() == content
            except FileNotFoundError:
                same = False
            if not same:
                def write():
                    os.makedirs(DROPIN_DIR, exist_ok=True)
                    with open(dropin, 'w') as handle:
                        handle.write(content)
                runner.step('order docker.service after the mount (%s)' % dropin, write)
        elif os.path.exists(dropin):
            runner.step('remove %s' % dropin, os.unlink, dropin)


def _unmounted(params, name, path, mapper, mounted, active, runner, result, before):
    users = _users(params, path, params.get('docker_volume'))
    running = [u for u in users if u['running']]
    if running and (mounted or active):
        raise HoldfastError("Containers %s use %s; stop them before unmounting." % (
            ", ".join(u['name'] for u in running), path))
    _take_down(params, name, path, mapper, mounted, active, runner, users)
    result['changed'] = bool(runner.steps)
    result['diff'] = dict(before=_render(before), after=_render(dict(before, open=False, mounted=False)))
    return result, []


def _take_down(params, name, path, mapper, mounted, active, runner, users):
    """The steps unmounted and absent share: remove the Docker volume, unmount, close the mapping."""
    if params.get('docker_volume'):
        _remove_docker_volume(params, runner, users)
    if mounted:
        runner.step('unmount %s' % path, run, [need('umount', 'mount'), path], (), True, 'umount')
    if active:
        runner.step('close %s' % mapper, run, [need('cryptsetup', 'cryptsetup-bin'), 'close', name], (), True,
                    'cryptsetup close')


def _remove_docker_volume(params, runner, users):
    from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import connect, inspect_volume
    client = connect(params)
    name = params['docker_volume']
    if inspect_volume(client, name) is None:
        return
    if users:
        raise HoldfastError("Docker volume %s is used by container(s) %s; remove them first." % (
            name, ", ".join(u['name'] for u in users)))
    runner.step('remove Docker volume %s (it would point at the bare mount point)' % name, client.remove_volume, name)


def _absent(params, name, path, mapper, source, is_file, mounted, active, exists, runner, result, before):
    users = _users(params, path, params.get('docker_volume'))
    if users:
        raise HoldfastError("Refusing to destroy %s: container(s) %s use it (%s). Remove them first." % (
            source, ", ".join(u['name'] for u in users), path))
    if not params.get('destroy') and (exists or mounted or active):
        raise HoldfastError("state: absent destroys the encrypted data of %s for good; confirm with destroy: true."
                            % source)
    _take_down(params, name, path, mapper, mounted, active, runner, users)
    if exists and _dump(source):
        runner.step('erase the LUKS keyslots and header of %s' % source, run,
                    [need('cryptsetup', 'cryptsetup-bin'), 'erase', '--batch-mode', source], (), True,
                    'cryptsetup erase')
        runner.step('wipe the signatures of %s' % source, run, [need('wipefs', 'util-linux'), '-a', source], (),
                    True, 'wipefs')
    if is_file and exists:
        def remove_file():
            loop = loop_for_file(source)
            if loop:
                run([need('losetup', 'util-linux'), '-d', loop], check=False)
            os.unlink(source)
        runner.step('remove %s' % source, remove_file)
    for table, key in ((CRYPTTAB, name), (FSTAB, mapper)):
        if os.path.exists(table):
            _write_table(table, key, None, runner, 'remove the entry from')
    dropin = _dropin(name)
    if os.path.exists(dropin):
        runner.step('remove %s' % dropin, os.unlink, dropin)
    result['changed'] = bool(runner.steps)
    result['diff'] = dict(before=_render(before), after=_render(dict(backing_exists=False, luks=None, open=False,
                                                                     mounted=False, keyslots=0, size=None)))
    return result, []


def _render(state):
    return ''.join('%s: %s\n' % (k, state.get(k)) for k in ('backing_exists', 'size', 'luks', 'keyslots', 'open',
                                                            'mounted'))
