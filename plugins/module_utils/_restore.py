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

import errno
import fcntl
import hashlib
import json
import os
import stat
import subprocess
import tempfile
import threading
import time
from contextlib import nullcontext

from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import (
    LOCAL_SOCKETS,
    APIError,
    DockerException,
    connect,
    create_volume,
    inspect_volume,
    is_local_engine,
    validate_volume_name,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError, refuse_negative
from ansible_collections.holdfast.volumes.plugins.module_utils._members import AGE_MAGIC, MemberChecker
from ansible_collections.holdfast.volumes.plugins.module_utils._pipeline import CHUNK
from ansible_collections.holdfast.volumes.plugins.module_utils._process import command_env, grow_pipe, need
from ansible_collections.holdfast.volumes.plugins.module_utils._quiesce import (
    Quiesce,
    containers_using,
    restore_consistency,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._remote_store import locate_remote
from ansible_collections.holdfast.volumes.plugins.module_utils._safe_fs import (
    DIR_FLAGS,
    STAGING_PREFIX,
    Staging,
    check_private_dir,
    foreign_writer,
    leftover_staging,
    open_dir,
    rmtree_at,
    stat_at,
    trusted_realpath,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._store import (
    NAME_RE,
    FolderLock,
    list_backups,
    manifest_name_for,
    open_regular,
    read_manifest,
    safe_folder_name,
    write_json_atomic,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._tar_gate import (
    DiskGuard,
    default_reserve,
    gate_stream,
    human,
    reserve_bytes,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._tar_read import GateLimit, TarFormatError
from ansible_collections.holdfast.volumes.plugins.module_utils._verify import sha256_file
from ansible_collections.holdfast.volumes.plugins.module_utils._volume_access import (
    VolumeAccess,
    dir_is_empty,
    host_data_path,
    one_volume_or_path,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._volume_plan import restore_labels

DEFAULT_STATE_DIR = '/var/lib/holdfast-volumes/restored'
TAR_EXTRACT = ['tar', '--extract', '--file=-', '--numeric-owner', '--same-owner', '--same-permissions',
               '--xattrs', '--xattrs-include=*', '--acls', '--delay-directory-restore', '--no-unquote']


def tree_fingerprint(root):
    """Cheap summary of a tree (entries, bytes, newest mtime, ownership sum) to see whether it changed."""
    entries = total = 0
    newest = 0
    owners = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            entries += 1
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
            newest = max(newest, st.st_mtime_ns)
            owners += st.st_uid * 7 + st.st_gid * 13 + stat.S_IMODE(st.st_mode)
    st = os.lstat(root)
    return dict(entries=entries, bytes=total, newest_mtime_ns=newest, owners=owners,
                root_mode=stat.S_IMODE(st.st_mode), root_uid=st.st_uid, root_gid=st.st_gid)


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


def open_archive(path):
    """The archive's bytes: a local file, or a stream from a remote store (RemoteArchive, read through rclone)."""
    opener = getattr(path, 'open', None)
    if opener:
        return opener()
    try:
        return open_regular(path, 'archive')
    except ValueError as exc:
        raise HoldfastError('%s: only a regular file is read.' % exc) from None


class _Pipeline(object):
    """archive file -> (hash in this process) -> [age -d] -> zstd -dcf -> consumer (stdout pipe or a command)."""

    def __init__(self, path, identity, consumer_cmd=None, cwd=None):
        with open_archive(path) as handle:
            head = handle.read(64)
        self.encrypted = head.startswith(AGE_MAGIC)
        self.path = path
        self.digest = hashlib.sha256()
        self.errors = []
        self.procs = []
        stages = []
        if self.encrypted:
            if not identity:
                raise HoldfastError("The archive %s is encrypted with age; give identity (the path of an age "
                                    "identity file that matches one of its recipients)." % path)
            if not os.path.isfile(identity):
                raise HoldfastError("identity file %s does not exist." % identity)
            stages.append([need('age', 'age'), '--decrypt', '--identity', identity])
        stages.append([need('zstd', 'zstd'), '-q', '-d', '-c', '-f'])
        if consumer_cmd:
            stages.append(consumer_cmd)
        prev = None
        for i, cmd in enumerate(stages):
            err = tempfile.TemporaryFile()
            is_last = i == len(stages) - 1
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if prev is None else prev, stdout=(
                subprocess.DEVNULL if (is_last and consumer_cmd) else subprocess.PIPE), stderr=err, cwd=cwd,
                env=command_env())
            if prev is not None:
                prev.close()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    grow_pipe(stream)
            self.procs.append((os.path.basename(cmd[0]), proc, err))
            prev = proc.stdout
        self.stdout = prev
        self.thread = threading.Thread(target=self._feed)
        self.thread.daemon = True
        self.thread.start()

    def _feed(self):
        sink = self.procs[0][1].stdin
        try:
            with open_archive(self.path) as handle:
                while True:
                    block = handle.read(CHUNK)
                    if not block:
                        break
                    self.digest.update(block)
                    sink.write(block)
        except (OSError, ValueError) as exc:
            self.errors.append(exc)
        finally:
            try:
                sink.close()
            except OSError:
                pass

    def finish(self):
        """Wait for everything; returns a list of failure strings."""
        if self.stdout is not None:
            try:
                while self.stdout.read(CHUNK):
                    pass
            except (OSError, ValueError):
                pass
        self.thread.join()
        failures = []
        for name, proc, err in self.procs:
            code = proc.wait()
            err.seek(0)
            text = err.read().decode('utf-8', 'replace').strip()
            err.close()
            if code != 0:
                failures.append('%s exited %d: %s' % (name, code, text[-500:]))
        for exc in self.errors:
            if not isinstance(exc, BrokenPipeError):
                failures.append('reading the archive: %s' % exc)
        return failures

    def kill(self):
        for _name, proc, _err in self.procs:
            try:
                proc.kill()
            except OSError:
                pass


def _raw_limit(manifest):
    """The manifest's size of the tar stream: a restore stops as soon as the stream holds more."""
    raw = (manifest or {}).get('bytes_raw')
    return raw if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0 else None


def _gate(path, manifest, identity, allow_special, sink=None, escaping_links=False, guard=None):
    """Decrypt/decompress the archive and pass it through the tar gate, which writes its own re-encoding of the
    accepted members to sink. Returns (pipe, checker, problem); raises HoldfastError at a bound (GateLimit)."""
    pipe = _Pipeline(path, identity)
    checker = MemberChecker(allow_special=allow_special, refuse_escaping_links=escaping_links)
    problem = None
    try:
        grow_pipe(pipe.stdout)
        gate_stream(pipe.stdout, checker, sink, guard=guard, limit=_raw_limit(manifest))
    except TarFormatError as exc:
        problem = str(exc)
    except GateLimit as exc:
        pipe.kill()
        pipe.finish()
        raise HoldfastError("Stopped restoring %s: %s." % (path, exc)) from None
    except BrokenPipeError:
        problem = 'the extracting tar stopped early'
    except OSError as exc:
        problem = 'reading the archive: %s' % exc
    return pipe, checker, problem


def _disk_guard(params, manifest, where):
    """Check the free space of the filesystem holding `where` before extracting; returns the guard for the rest."""
    spec = params.get('disk_reserve')
    try:
        reserve = default_reserve(where) if spec in (None, '') else reserve_bytes(spec, where)
    except ValueError as exc:
        raise HoldfastError("disk_reserve: %s." % exc) from None
    guard = DiskGuard(where, reserve)
    need = _raw_limit(manifest) or 0
    free = guard.free()[0]
    if need and free - reserve < need:
        raise HoldfastError("Not enough free space to restore: the archive holds %s (its manifest's bytes_raw) and "
                            "the filesystem of %s has %s free, of which %s is kept in reserve (disk_reserve). Free "
                            "some space or restore elsewhere; the target was not touched."
                            % (human(need), where, human(free), human(reserve)))
    return guard


def extract_gated(params, archive, manifest, staging, pass_fds=()):
    """Extract the archive into the (empty) staging directory: GNU tar reads only the gate's re-encoding of the
    members the checker accepted, under the disk guard. Returns the checked summary (see _judge); on any failure
    the extractor is stopped before this raises, so the caller can remove staging."""
    guard = _disk_guard(params, manifest, staging)
    err = tempfile.TemporaryFile()
    tar = subprocess.Popen(TAR_EXTRACT + ['-C', staging], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                           stderr=err, env=command_env(), pass_fds=pass_fds)
    grow_pipe(tar.stdin)
    try:
        try:
            pipe, checker, problem = _gate(archive, manifest, params.get('identity'),
                                           params.get('allow_special_files'), sink=tar.stdin,
                                           escaping_links=params.get('_refuse_escaping_links', False), guard=guard)
        finally:
            try:
                tar.stdin.close()
            except OSError:
                pass
    except BaseException:
        tar.kill()
        tar.wait()
        raise
    if checker.refused or problem:
        tar.kill()
    code = tar.wait()
    checked = _judge(archive, manifest, pipe, checker, problem)
    if code != 0:
        err.seek(0)
        raise HoldfastError("Extraction failed; the target was not touched: tar exited %d: %s"
                            % (code, err.read().decode('utf-8', 'replace').strip()[-600:]))
    return checked


def _judge(path, manifest, pipe, checker, problem):
    """Raise if anything was wrong; return dict(sha256, entries, encrypted, has_root)."""
    if checker.refused:
        pipe.kill()
        pipe.finish()
        listed = "; ".join("%s (%s)" % (r['member'], r['reason']) for r in checker.refused[:20])
        raise HoldfastError("Refusing to restore %s: unsafe member(s): %s. Nothing was written to the target."
                            % (path, listed), refused=checker.refused[:100])
    failures = pipe.finish()
    if failures:
        raise HoldfastError("The archive %s cannot be read (corrupted, truncated, or wrong identity); the target "
                            "was not touched: %s" % (path, "; ".join(failures)))
    if problem:
        raise HoldfastError("The archive %s is damaged; the target was not touched: %s" % (path, problem))
    sha = pipe.digest.hexdigest()
    if manifest and manifest.get('sha256') and manifest['sha256'] != sha:
        raise HoldfastError("The archive %s does not match its manifest (sha256 %s, manifest says %s): it was "
                            "changed or damaged after the backup. The target was not touched." % (
                                path, sha, manifest['sha256']))
    entries = len([k for k in checker.kinds if k])
    if manifest and manifest.get('file_count') is not None and manifest['file_count'] != entries:
        raise HoldfastError("The archive %s holds %d entries but its manifest says %d; it is damaged. The target "
                            "was not touched." % (path, entries, manifest['file_count']))
    return dict(sha256=sha, entries=entries, encrypted=pipe.encrypted, has_root=checker.has_root)


def verify_archive(path, manifest, identity, allow_special=False, escaping_links=False):
    """Read and check everything, write nothing. Returns dict(sha256, entries, encrypted, has_root)."""
    pipe, checker, problem = _gate(path, manifest, identity, allow_special, escaping_links=escaping_links)
    return _judge(path, manifest, pipe, checker, problem)


def _marker_path(state_dir, key):
    return os.path.join(state_dir, hashlib.sha256(key.encode('utf-8')).hexdigest()[:24] + '.json')


JOURNAL_SUFFIX = '.staging.json'


def _journal(state_dir, key, staging_path, token):
    """Note a restore in progress (its staging directory) in the state directory, so that backup_info can report
    what a killed restore left behind. Returns the journal file, or None when it cannot be written."""
    try:
        if not os.path.isdir(state_dir):
            os.makedirs(state_dir, mode=0o700)
        check_private_dir(state_dir, 'the restore state directory')
        path = _marker_path(state_dir, key)[:-len('.json')] + '-%s%s' % (token, JOURNAL_SUFFIX)
        write_json_atomic(path, dict(target=key, staging=staging_path, pid=os.getpid(),
                                     started=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())))
        return path
    except (OSError, HoldfastError):
        return None


def _forget_journal(state_dir, key):
    """Drop the journal entries of this target whose staging directory is gone."""
    prefix = os.path.basename(_marker_path(state_dir, key))[:-len('.json')] + '-'
    try:
        names = [n for n in os.listdir(state_dir) if n.startswith(prefix) and n.endswith(JOURNAL_SUFFIX)]
    except OSError:
        return
    for name in names:
        path = os.path.join(state_dir, name)
        try:
            with open(path) as handle:
                staging = json.load(handle).get('staging')
            if not staging or not os.path.lexists(staging):
                os.unlink(path)
        except (OSError, ValueError, AttributeError):
            pass


def restore_leftovers(state_dir):
    """Restores that did not finish (killed): their staging directories that still exist. Read-only."""
    out = []
    try:
        names = sorted(n for n in os.listdir(state_dir) if n.endswith(JOURNAL_SUFFIX))
    except OSError:
        return out
    for name in names:
        try:
            with open(os.path.join(state_dir, name)) as handle:
                entry = json.load(handle)
        except (OSError, ValueError):
            continue
        if isinstance(entry, dict) and entry.get('staging') and os.path.lexists(entry['staging']):
            out.append(dict(target=entry.get('target'), staging=entry['staging'], started=entry.get('started')))
    return out


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


def _optional_client(params):
    """For a path restore: the engine, to find the containers using the path. No engine on this host (no
    docker_host, no DOCKER_HOST, no socket): no container can use it."""
    if params.get('docker_host') or any(os.path.exists(p) for p in LOCAL_SOCKETS):
        return connect(params)
    return None


def _timed(func):
    """The restore's result gets duration_seconds, whichever way it ends successfully."""
    def run(params, check_mode=False):
        started = time.time()
        result, warnings = func(params, check_mode=check_mode)
        result['duration_seconds'] = round(time.time() - started, 3)
        return result, warnings
    return run


@_timed
def run_restore(params, check_mode=False):
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
    archive, manifest = locate(params)
    consistent = restore_consistency(archive, manifest, params.get('allow_inconsistent', True))
    client = connect(params) if params.get('volume') else _optional_client(params)
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
    key = target['key']
    directory = target['directory']
    if os.path.isdir(state_dir):
        check_private_dir(state_dir, 'the restore state directory')

    # Idempotence: the same archive restored earlier and the content unchanged since then.
    sha_known = (manifest or {}).get('sha256')
    marker_file = _marker_path(state_dir, key)
    if directory and os.path.isdir(directory) and not params.get('force') and os.path.isfile(marker_file):
        try:
            with open(marker_file) as handle:
                marker = json.load(handle)
            archive_sha = sha_known or sha256_file(archive)
            if marker.get('sha256') == archive_sha and marker.get('fingerprint') == tree_fingerprint(directory):
                result.update(sha256=archive_sha, msg='already restored from this archive; content unchanged')
                return result, []
        except (OSError, ValueError):
            pass

    empty = True
    warnings = []
    if directory and os.path.isdir(directory):
        result['leftovers'], inside_ours = _leftovers(directory, key)
        empty = dir_is_empty_except(directory, set(inside_ours))
    elif target['route'] == 'engine' and target['vol'] is not None:
        empty = VolumeAccess(client, params.get('docker_host')).is_empty(target['vol'], check_mode=check_mode)
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

    if check_mode:
        checked = verify_archive(archive, manifest, params.get('identity'), params.get('allow_special_files'))
        result.update(sha256=checked['sha256'], entries=checked['entries'], encrypted=checked['encrypted'],
                      changed=True, would_create_volume=target['create'] is not None,
                      would_stop=[u['name'] for u in running])
        return result, warnings
    # Hold the backup folder's lock (when it has one), so that a rotation cannot remove the archive mid-restore.
    folder = os.path.dirname(os.path.abspath(archive))
    lock = FolderLock(folder, params.get('lock_timeout', 600)) \
        if os.path.exists(os.path.join(folder, '.lock')) and os.access(folder, os.W_OK) else nullcontext()
    with lock:
        return _restore_locked(params, client, archive, manifest, target, state_dir, marker_file, result)


def _leftovers(directory, key):
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


def _restore_locked(params, client, archive, manifest, target, state_dir, marker_file, result):
    route = target['route']
    warnings = []
    checked = None
    if route == 'engine':
        # No staging directory exists for these volumes: verify completely before writing anything.
        checked = verify_archive(archive, manifest, params.get('identity'), params.get('allow_special_files'))
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
            _restore_engine(client, params, archive, vol, checked)
        else:
            quiesce = Quiesce(client, 'stop' if params.get('quiesce') == 'stop' else 'none', target['users'],
                              params.get('stop_timeout', 30)) if client else None
            result['previous'], checked, cleaned = _restore_host(params, archive, manifest, directory, quiesce,
                                                                 key=target['key'], warnings=warnings)
            result['cleaned_leftovers'] = cleaned
            result['leftovers'] = [p for p in result['leftovers'] if p not in cleaned]
            result['setuid_stripped'] = checked.get('setuid_stripped', 0)
            result['capabilities_stripped'] = checked.get('capabilities_stripped', 0)
            if quiesce:
                result['containers'] = quiesce.report()
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
        try:
            if not os.path.isdir(state_dir):
                os.makedirs(state_dir, mode=0o700)
            check_private_dir(state_dir, 'the restore state directory')
            write_json_atomic(marker_file, dict(target=target['key'], sha256=checked['sha256'], archive=archive,
                                                restored_at=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
                                                fingerprint=tree_fingerprint(directory)))
        except (OSError, HoldfastError):
            pass
    return result, warnings


def _created_directory(client, params, target, vol, planned):
    """After creating the volume: the directory the Engine gave it must be the one decided before."""
    if target['route'] != 'host':
        return None
    path = VolumeAccess(client, params.get('docker_host')).host_path(vol)
    if not path or (planned and os.path.realpath(path) != planned):
        raise HoldfastError("The new volume %s resolves to %s, not to the directory decided before it was created "
                            "(%s); nothing was written and the volume was removed." % (vol['Name'], path, planned))
    return os.path.realpath(path)


def _lock_dir(fd, path, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() >= deadline:
            raise HoldfastError("Another restore into %s holds its lock; waited %ss." % (path, timeout))
        time.sleep(0.2)


def _restore_host(params, archive, manifest, target_dir, quiesce, key=None, warnings=None):
    """Extract into a private staging directory beside the target, then swap, all relative to directory
    descriptors. Returns (kept previous path or None, checked, removed leftovers)."""
    target_dir = trusted_realpath(target_dir, 'the target')
    key = key or 'path:%s' % target_dir
    state_dir = params.get('state_dir') or DEFAULT_STATE_DIR
    parent, base = os.path.dirname(target_dir), os.path.basename(target_dir)
    parent_fd = open_dir(parent, create=True)
    holder_fd = None
    staging = None
    try:
        # what the target's name holds now (or that it holds nothing): the swap moves aside only this, never what
        # another user who can write the parent renames onto the name later
        found = stat_at(parent_fd, base)
        expected = (found.st_dev, found.st_ino) if found is not None else None
        why = foreign_writer(os.fstat(parent_fd))
        if why and warnings is not None:
            warnings.append(
                "The parent %s of the target could be changed by another user (%s): the restore works relative to "
                "directory descriptors and cannot be redirected, but that user can rename or replace the restored "
                "directory afterwards." % (parent, why))
        in_place = os.path.ismount(target_dir)
        holder_fd = open_dir(target_dir) if in_place else parent_fd
        _lock_dir(holder_fd, target_dir if in_place else parent, params.get('lock_timeout', 600))
        cleaned = []
        ours, _foreign = leftover_staging(holder_fd, key)
        for name in ours:
            rmtree_at(holder_fd, name, ignore_errors=True)
            cleaned.append(os.path.join(target_dir if in_place else parent, name))
        staging = Staging(holder_fd, '' if in_place else base, key, where=target_dir if in_place else parent)
        _journal(state_dir, key, os.path.join(target_dir if in_place else parent, staging.name), staging.token)
        checked = extract_gated(params, archive, manifest, staging.data_path, pass_fds=(staging.data_fd,))
        if not checked.get('has_root'):
            # A foreign archive without a "./" member: keep the root's owner and mode as they were.
            ref = stat_at(parent_fd, base) if not in_place else os.fstat(holder_fd)
            ref = ref if ref is not None and stat.S_ISDIR(ref.st_mode) else None
            os.fchown(staging.data_fd, ref.st_uid if ref else 0, ref.st_gid if ref else 0)
            os.fchmod(staging.data_fd, (ref.st_mode & 0o7777) if ref else 0o755)
        checked['setuid_stripped'], checked['capabilities_stripped'] = (
            strip_setuid_at(staging.data_fd) if params.get('strip_setuid') else (0, 0))
        if params.get('_before_swap'):
            params['_before_swap'](staging.data_path + '/.')
        ctx = quiesce if quiesce is not None else nullcontext()
        with ctx:
            if in_place:
                _swap_entries(holder_fd, staging)
            else:
                _swap_dir(parent_fd, base, staging, expected, target_dir)
            os.fsync(parent_fd)
        previous = None
        if stat_at(staging.fd, 'old') is not None:
            if params.get('keep_previous'):
                name = '.holdfast-previous-%s' % ('%s-%s' % (base, staging.token) if not in_place else staging.token)
                os.rename('old', name, src_dir_fd=staging.fd, dst_dir_fd=holder_fd)
                previous = os.path.join(target_dir if in_place else parent, name)
        return previous, checked, cleaned
    finally:
        if staging is not None:
            staging.remove()
            _forget_journal(state_dir, key)
        if holder_fd is not None and holder_fd != parent_fd:
            os.close(holder_fd)
        os.close(parent_fd)


def _swap_dir(parent_fd, base, staging, expected, target_dir):
    """The target goes into staging/old, the staged data takes its name. expected is the (st_dev, st_ino) the
    name held when the restore began (None: nothing): anything else found there (renamed onto the name by another
    user who can write the parent) is put back and the restore fails, so it is never removed."""
    now = stat_at(parent_fd, base)
    if expected is None and now is not None:
        raise HoldfastError("%s appeared while the restore ran (another user can write its parent): refusing to "
                            "replace it. Nothing was changed; make the parent writable by root only and retry."
                            % target_dir)
    if expected is not None and now is None:
        raise HoldfastError("%s disappeared while the restore ran (another user can write its parent). Nothing was "
                            "changed; make the parent writable by root only and retry." % target_dir)
    if expected is not None:
        os.rename(base, 'old', src_dir_fd=parent_fd, dst_dir_fd=staging.fd)
        moved = stat_at(staging.fd, 'old')
        if moved is None or (moved.st_dev, moved.st_ino) != expected:
            where = target_dir
            if moved is not None:
                try:
                    os.rename('old', base, src_dir_fd=staging.fd, dst_dir_fd=parent_fd)
                except OSError:  # the name was taken again meanwhile: keep it beside, never in staging
                    kept = '.holdfast-kept-%s-%s' % (base, staging.token)
                    os.rename('old', kept, src_dir_fd=staging.fd, dst_dir_fd=parent_fd)
                    where = os.path.join(os.path.dirname(target_dir), kept)
            raise HoldfastError("%s is no longer the directory the restore began with: another user who can write "
                                "its parent replaced it. What was there is back untouched at %s and nothing was "
                                "restored; make the parent writable by root only and retry." % (target_dir, where))
    try:
        os.rename('data', base, src_dir_fd=staging.fd, dst_dir_fd=parent_fd)
    except OSError:
        if expected is not None:
            os.rename('old', base, src_dir_fd=staging.fd, dst_dir_fd=parent_fd)
        raise


def _swap_entries(target_fd, staging):
    """A mount point cannot be renamed: swap its entries with the staged ones (old ones into staging/old), each
    with an atomic rename relative to the directories' descriptors, rolled back on failure."""
    skip = set([staging.name])
    os.mkdir('old', 0o700, dir_fd=staging.fd)
    old_fd = os.open('old', DIR_FLAGS, dir_fd=staging.fd)
    moved_out, moved_in = [], []
    try:
        try:
            with os.scandir(target_fd) as entries:
                current = [e.name for e in entries if e.name not in skip]
            for name in current:
                os.rename(name, name, src_dir_fd=target_fd, dst_dir_fd=old_fd)
                moved_out.append(name)
            with os.scandir(staging.data_fd) as entries:
                staged = [e.name for e in entries]
            for name in staged:
                os.rename(name, name, src_dir_fd=staging.data_fd, dst_dir_fd=target_fd)
                moved_in.append(name)
        except OSError:
            for name in moved_in:
                os.rename(name, name, src_dir_fd=target_fd, dst_dir_fd=staging.data_fd)
            for name in moved_out:
                os.rename(name, name, src_dir_fd=old_fd, dst_dir_fd=target_fd)
            raise
        st = os.fstat(staging.data_fd)  # the archive's root: its owner and mode become the mount point's
        os.fchown(target_fd, st.st_uid, st.st_gid)
        os.fchmod(target_fd, stat.S_IMODE(st.st_mode))
    finally:
        os.close(old_fd)


def strip_setuid_at(root_fd):
    """Remove setuid/setgid bits and file capabilities (security.capability: cap_setuid+ep is root as surely as a
    setuid bit) from the regular files of a private tree (staging). Returns how many files of each."""
    count = caps = 0
    stack = [os.dup(root_fd)]
    try:
        while stack:
            fd = stack.pop()
            try:
                with os.scandir(fd) as entries:
                    items = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
                for name, is_dir in items:
                    if is_dir:
                        stack.append(os.open(name, DIR_FLAGS, dir_fd=fd))
                        continue
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    ffd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
                    try:
                        if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                            os.fchmod(ffd, stat.S_IMODE(st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID))
                            count += 1
                        try:
                            os.removexattr(ffd, 'security.capability')
                            caps += 1
                        except OSError as exc:
                            if exc.errno not in (errno.ENODATA, errno.EOPNOTSUPP):
                                raise
                    finally:
                        os.close(ffd)
            finally:
                os.close(fd)
    finally:
        for fd in stack:
            os.close(fd)
    return count, caps


def _restore_engine(client, params, archive, target_vol, checked):
    """Into an empty volume reached through the Engine: stream the gate's re-encoding of the verified archive
    through put_archive, so the Engine's tar reader, too, sees only headers the gate wrote."""
    access = VolumeAccess(client, params.get('docker_host'))
    with access.engine_mount(target_vol['Name']) as cid:
        read_fd, write_fd = os.pipe()
        outcome = {}

        def produce():
            sink = os.fdopen(write_fd, 'wb', buffering=1024 * 1024)
            try:
                outcome['gate'] = _gate(archive, None, params.get('identity'), params.get('allow_special_files'),
                                        sink=sink, escaping_links=params.get('_refuse_escaping_links', False))
                if outcome['gate'][1].refused or outcome['gate'][2]:
                    sink.write(b'\xff' * 512)  # a broken header: the Engine must fail, not stop "cleanly"
            except BaseException as exc:
                outcome['error'] = exc
                try:
                    sink.write(b'\xff' * 512)
                except (OSError, ValueError):
                    pass
            finally:
                try:
                    sink.close()
                except (OSError, ValueError):
                    pass

        worker = threading.Thread(target=produce)
        worker.daemon = True
        worker.start()
        with os.fdopen(read_fd, 'rb') as stream:
            try:
                access.engine_write(cid, stream)
            finally:
                stream.close()
                worker.join()
        if 'error' in outcome:
            raise HoldfastError("Restoring through the Engine failed; volume %s may hold part of the archive: %s"
                                % (target_vol['Name'], outcome['error']))
        pipe, checker, problem = outcome['gate']
        try:
            again = _judge(archive, None, pipe, checker, problem)
        except HoldfastError as exc:
            raise HoldfastError("Restoring through the Engine failed; volume %s may hold part of the archive: %s"
                                % (target_vol['Name'], exc)) from None
        if again['sha256'] != checked['sha256']:
            raise HoldfastError("Restoring through the Engine failed; volume %s may hold part of the archive: the "
                                "archive changed during the restore" % target_vol['Name'])


__all__ = ['run_restore', 'verify_archive']
