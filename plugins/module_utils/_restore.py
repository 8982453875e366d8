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

import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import uuid
from contextlib import nullcontext

from ansible_collections.holdfast.volumes.plugins.module_utils._archive import (
    AGE_MAGIC,
    NAME_RE,
    MemberChecker,
    fsync_dir,
    list_backups,
    manifest_name_for,
    safe_folder_name,
    sha256_file,
    tree_fingerprint,
    write_json_atomic,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._backup import CHUNK, FolderLock, grow_pipe, need_tool
from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import (
    APIError,
    DockerException,
    api_error,
    connect,
    inspect_volume,
    normalise_volume,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError, refuse_negative
from ansible_collections.holdfast.volumes.plugins.module_utils._offsite import locate_remote
from ansible_collections.holdfast.volumes.plugins.module_utils._process import command_env
from ansible_collections.holdfast.volumes.plugins.module_utils._quiesce import (
    Quiesce,
    containers_using,
    restore_consistency,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._tar_gate import (
    DiskGuard,
    GateLimit,
    TarFormatError,
    default_reserve,
    gate_stream,
    human,
    reserve_bytes,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._volume_access import VolumeAccess, dir_is_empty
from ansible_collections.holdfast.volumes.plugins.module_utils._volume_model import restore_labels

DEFAULT_STATE_DIR = '/var/lib/holdfast-volumes/restored'
TAR_EXTRACT = ['tar', '--extract', '--file=-', '--numeric-owner', '--same-owner', '--same-permissions',
               '--xattrs', '--xattrs-include=*', '--acls', '--delay-directory-restore', '--no-unquote']


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
            if os.path.isfile(mpath):
                with open(mpath) as handle:
                    try:
                        manifest = json.load(handle)
                    except ValueError:
                        raise HoldfastError("The manifest %s beside the archive is not valid JSON." % mpath) from None
        return path, manifest
    source = params.get('source') or params.get('volume') or params.get('path')
    folder = os.path.join(params['dest'], safe_folder_name(source))
    scan = list_backups(folder)
    if not scan['complete']:
        raise HoldfastError("No complete backup of %s in %s (an archive counts only with its manifest)."
                            % (source, folder))
    newest = scan['complete'][0]
    return newest['archive_path'], newest['manifest']


def open_archive(path):
    """The archive's bytes: a local file, or a stream from a remote store (RemoteArchive, read through rclone)."""
    opener = getattr(path, 'open', None)
    return opener() if opener else open(path, 'rb')


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
            stages.append([need_tool('age', 'age'), '--decrypt', '--identity', identity])
        stages.append([need_tool('zstd', 'zstd'), '-q', '-d', '-c', '-f'])
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


def extract_gated(params, archive, manifest, staging):
    """Extract the archive into the (empty) staging directory: GNU tar reads only the gate's re-encoding of the
    members the checker accepted, under the disk guard. Returns the checked summary (see _judge); on any failure
    the extractor is stopped before this raises, so the caller can remove staging."""
    guard = _disk_guard(params, manifest, staging)
    err = tempfile.TemporaryFile()
    tar = subprocess.Popen(TAR_EXTRACT + ['-C', staging], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                           stderr=err, env=command_env())
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


def is_empty_dir(path):
    if not os.path.isdir(path):
        return True
    return dir_is_empty(path)


def _marker_path(state_dir, key):
    return os.path.join(state_dir, hashlib.sha256(key.encode('utf-8')).hexdigest()[:24] + '.json')


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
    if bool(params.get('volume')) == bool(params.get('path')):
        raise HoldfastError("Give exactly one target: volume (a Docker volume) or path (a host directory).")
    if not params.get('remote') and bool(params.get('archive')) == bool(params.get('dest')):
        raise HoldfastError("Give exactly one of archive (a file) or dest (a backup directory: the newest complete "
                            "backup of the volume there is used).")
    if params.get('path') and not os.path.isabs(params['path']):
        raise HoldfastError("path must be absolute.")
    refuse_negative(params, 'stop_timeout', 'lock_timeout')
    archive, manifest = locate(params)
    consistent = restore_consistency(archive, manifest, params.get('allow_inconsistent', True))
    client = connect(params) if params.get('volume') or params.get('quiesce') != 'none' else None
    state_dir = params.get('state_dir') or DEFAULT_STATE_DIR
    result = dict(changed=False, archive=archive, manifest_used=bool(manifest), created_volume=False,
                  containers=[], previous=None, labels=None, consistent=consistent)
    target_vol = None
    spec = None
    if params.get('volume'):
        target_vol = inspect_volume(client, params['volume'])
        key = 'volume:%s' % params['volume']
        if target_vol is None:
            spec = dict(Name=params['volume'], Driver=(manifest or {}).get('driver') or 'local',
                        Options=(manifest or {}).get('driver_options') or {},
                        Labels=restore_labels(params['volume'], manifest, params.get('labels')))
            result['labels'] = spec['Labels']
            route = 'engine' if (spec['Options'].get('type') and spec['Options'].get('type') != 'none') \
                or spec['Driver'] != 'local' else 'host'
            target_dir = None
        else:
            access = VolumeAccess(client, params.get('docker_host'))
            route, target_dir = access.route(target_vol)
        users = containers_using(client, volume=params['volume'])
    else:
        key = 'path:%s' % os.path.realpath(params['path'])
        route, target_dir = 'host', os.path.realpath(params['path'])
        users = containers_using(client, path=target_dir) if client else []
    target_exists = target_vol is not None if params.get('volume') else os.path.exists(target_dir)
    if params.get('path') and target_exists and not os.path.isdir(target_dir):
        raise HoldfastError("path %s exists and is not a directory." % target_dir)

    # Idempotence: the same archive restored earlier and the content unchanged since then.
    sha_known = (manifest or {}).get('sha256')
    marker_file = _marker_path(state_dir, key)
    if target_exists and not params.get('force') and route == 'host' and os.path.isfile(marker_file):
        try:
            with open(marker_file) as handle:
                marker = json.load(handle)
            archive_sha = sha_known or sha256_file(archive)
            if marker.get('sha256') == archive_sha and marker.get('fingerprint') == tree_fingerprint(target_dir):
                result.update(sha256=archive_sha, msg='already restored from this archive; content unchanged')
                return result, []
        except (OSError, ValueError):
            pass

    empty = True
    warnings = []
    if target_exists:
        if route == 'host':
            empty = is_empty_dir(target_dir)
        else:
            empty = VolumeAccess(client, params.get('docker_host')).is_empty(target_vol, check_mode=check_mode)
    if empty is None:  # check mode: reading the volume would need the helper image built first
        result['target_empty'] = 'unknown'
        warnings.append("Check mode cannot tell whether volume %s is empty: it is reached through the Docker Engine "
                        "and reading it needs the helper image, which a real run builds (check mode builds nothing). "
                        "A real run refuses it if it holds data." % params['volume'])
    elif check_mode:
        result['target_empty'] = empty
    if empty is False and not params.get('replace'):
        raise HoldfastError("The target %s holds data; set replace: true to replace it with the archive's content "
                            "(keep_previous: true keeps the old content aside), or restore into a new volume."
                            % (params.get('volume') or target_dir))
    if empty is False and route == 'engine':
        raise HoldfastError("Replacing the content of volume %s, which is reached through the Engine (driver %s), "
                            "is not supported: it cannot be swapped atomically. Restore into a new volume instead."
                            % (params['volume'], target_vol['Driver']))
    running = [u for u in users if u['running']]
    if running and params.get('quiesce') == 'none':
        raise HoldfastError("Containers %s are running with the target mounted; set quiesce: stop to stop them for "
                            "the swap (they are started again afterwards), or stop them first."
                            % ", ".join(u['name'] for u in running))

    if check_mode:
        checked = verify_archive(archive, manifest, params.get('identity'), params.get('allow_special_files'))
        result.update(sha256=checked['sha256'], entries=checked['entries'], encrypted=checked['encrypted'],
                      changed=True, would_create_volume=target_vol is None and bool(params.get('volume')),
                      would_stop=[u['name'] for u in running])
        return result, warnings
    # Hold the backup folder's lock (when it has one), so that a rotation cannot remove the archive mid-restore.
    folder = os.path.dirname(os.path.abspath(archive))
    lock = FolderLock(folder, params.get('lock_timeout', 600)) \
        if os.path.exists(os.path.join(folder, '.lock')) and os.access(folder, os.W_OK) else nullcontext()
    with lock:
        return _restore_locked(params, client, archive, manifest, route, target_dir, target_vol, spec, users,
                               state_dir, marker_file, key, result)


def _restore_locked(params, client, archive, manifest, route, target_dir, target_vol, spec, users, state_dir,
                    marker_file, key, result):
    if route == 'engine':
        # No staging directory exists for these volumes: verify completely before writing anything.
        checked = verify_archive(archive, manifest, params.get('identity'), params.get('allow_special_files'))

    if params.get('volume') and target_vol is None:
        try:
            created = client.create_volume(name=spec['Name'], driver=spec['Driver'],
                                           driver_opts=spec['Options'] or None, labels=spec['Labels'] or None)
        except (DockerException, APIError) as exc:
            raise api_error('create volume %s' % spec['Name'], exc) from exc
        target_vol = normalise_volume(created)
        result['created_volume'] = True
        route, target_dir = VolumeAccess(client, params.get('docker_host')).route(target_vol)
    try:
        if route == 'engine':
            _restore_engine(client, params, archive, target_vol, checked)
        else:
            quiesce = Quiesce(client, 'stop' if params.get('quiesce') == 'stop' else 'none', users,
                              params.get('stop_timeout', 30)) if client else None
            result['previous'], checked = _restore_host(params, archive, manifest, target_dir, quiesce)
            if quiesce:
                result['containers'] = quiesce.report()
    except BaseException:
        if result['created_volume']:
            try:
                client.remove_volume(target_vol['Name'])
            except (DockerException, APIError):
                pass
        raise
    result.update(sha256=checked['sha256'], entries=checked['entries'], encrypted=checked['encrypted'],
                  changed=True)
    if route == 'host':
        try:
            os.makedirs(state_dir, mode=0o700, exist_ok=True)
            write_json_atomic(marker_file, dict(target=key, sha256=checked['sha256'], archive=archive,
                                                restored_at=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
                                                fingerprint=tree_fingerprint(target_dir)))
        except OSError:
            pass
    return result, []


def _restore_host(params, archive, manifest, target_dir, quiesce):
    """Extract into a staging directory beside the target, then swap. Returns the kept previous path or None."""
    target_dir = target_dir.rstrip('/')
    parent = os.path.dirname(target_dir)
    if not os.path.isdir(parent):
        os.makedirs(parent, mode=0o755)
    token = uuid.uuid4().hex[:10]
    in_place = os.path.ismount(target_dir)
    if in_place:
        # A mount point (an encrypted luks_path volume, a separate filesystem) cannot be renamed: stage inside it
        # and swap its entries instead, each with an atomic rename, rolled back on failure.
        staging = os.path.join(target_dir, '.holdfast-restore-%s' % token)
        old = os.path.join(target_dir, '.holdfast-previous-%s' % token)
    else:
        staging = os.path.join(parent, '.holdfast-restore-%s-%s' % (os.path.basename(target_dir), token))
        old = os.path.join(parent, '.holdfast-previous-%s-%s' % (os.path.basename(target_dir), token))
    os.mkdir(staging, 0o700)
    try:
        checked = extract_gated(params, archive, manifest, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not checked.get('has_root'):
        # A foreign archive without a "./" member: keep the root's owner and mode as they were.
        ref = os.lstat(target_dir) if os.path.isdir(target_dir) else None
        os.chown(staging, ref.st_uid if ref else 0, ref.st_gid if ref else 0)
        os.chmod(staging, (ref.st_mode & 0o7777) if ref else 0o755)
    if params.get('_before_swap'):
        try:
            params['_before_swap'](staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    swapped = False
    try:
        ctx = quiesce if quiesce is not None else nullcontext()
        with ctx:
            if in_place:
                _swap_entries(target_dir, staging, old)
            elif os.path.lexists(target_dir):
                os.rename(target_dir, old)
                try:
                    os.rename(staging, target_dir)
                except OSError:
                    os.rename(old, target_dir)
                    raise
            else:
                os.rename(staging, target_dir)
            swapped = True
            fsync_dir(parent)
    finally:
        if not swapped:
            shutil.rmtree(staging, ignore_errors=True)
    if os.path.lexists(old):
        if params.get('keep_previous'):
            return old, checked
        shutil.rmtree(old, ignore_errors=True)
    return None, checked


def _swap_entries(target, staging, old):
    """Swap the content of a mount point with the staged tree: old entries into `old`, staged ones up."""
    skip = set([os.path.basename(staging), os.path.basename(old)])
    os.mkdir(old, 0o700)
    moved_out, moved_in = [], []
    try:
        for name in os.listdir(target):
            if name not in skip:
                os.rename(os.path.join(target, name), os.path.join(old, name))
                moved_out.append(name)
        for name in os.listdir(staging):
            os.rename(os.path.join(staging, name), os.path.join(target, name))
            moved_in.append(name)
    except OSError:
        for name in moved_in:
            os.rename(os.path.join(target, name), os.path.join(staging, name))
        for name in moved_out:
            os.rename(os.path.join(old, name), os.path.join(target, name))
        os.rmdir(old)
        raise
    st = os.lstat(staging)  # the archive's root: its owner and mode become the mount point's
    os.chown(target, st.st_uid, st.st_gid)
    os.chmod(target, stat.S_IMODE(st.st_mode))
    os.rmdir(staging)


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


__all__ = ['run_restore', 'verify_archive', 'FolderLock']
