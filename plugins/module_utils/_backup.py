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

import contextlib
import datetime
import errno
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import threading
import time

from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import (
    APIError,
    DockerException,
    connect,
    inspect_volume,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError, refuse_negative
from ansible_collections.holdfast.volumes.plugins.module_utils._pipeline import CHUNK, reap, tail
from ansible_collections.holdfast.volumes.plugins.module_utils._process import command_env, grow_pipe, need
from ansible_collections.holdfast.volumes.plugins.module_utils._quiesce import (
    Quiesce,
    containers_using,
    effective_mode,
    live_writers,
    run_hook,
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
from ansible_collections.holdfast.volumes.plugins.module_utils._verify import ReadBackVerifier
from ansible_collections.holdfast.volumes.plugins.module_utils._volume_access import (
    IterReader,
    VolumeAccess,
    one_volume_or_path,
)

AGE_RECIPIENT_RE = re.compile(r'^(age1[0-9a-z]{20,}|ssh-(ed25519|rsa) \S+.*)$')
TAR_CREATE = ['tar', '--create', '--file=-', '--numeric-owner', '--xattrs', '--xattrs-include=*', '--acls',
              '--sparse', '--totals', '--warning=no-file-ignored', '-C']


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


def compressor_command(compression, level=None, threads=0):
    if compression == 'zstd':
        cmd = [need('zstd', 'zstd'), '-q', '-c', '-T%d' % threads, '-%d' % (level or 3)]
        return cmd
    if compression == 'gzip':
        pigz = shutil.which('pigz')
        if pigz:
            return [pigz, '-c', '-%d' % (level or 6)] + (['-p', str(threads)] if threads else [])
        return [need('gzip', 'gzip'), '-c', '-%d' % (level or 6)]
    return None


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


class _Tee(object):
    """Reader over an iterator of bytes that forwards everything read into a sink (for counting members)."""

    def __init__(self, iterator, sink, counter):
        self.reader = IterReader(iterator)
        self.sink = sink
        self.counter = counter

    def read(self, size=-1):
        data = self.reader.read(size) if size and size > 0 else self.reader.read()
        if data:
            self.counter[0] += len(data)
            self.sink.write(data)
        return data


def write_archive(source_cmd, engine_stream, tmp_path, compression, level, recipients, verify=False,
                  on_source_done=None, hold_verify=False, pass_fds=()):
    """Run source -> [compressor] -> [age] and write the final bytes to tmp_path (hashing them).

    source_cmd: GNU tar command (host route), or None with engine_stream (an iterator of raw tar bytes).
    on_source_done: called once (from another thread) as soon as the source has been read: tar has exited, or the
    Engine's stream has ended (or failed), before the compression tail, fsync and read-back. Quiesced containers
    resume there. hold_verify: no sync or read-back until then (while containers wait, the read has the disk to
    itself; otherwise the verification overlaps the compression).
    Returns dict(bytes, sha256, raw_bytes, file_count (engine route), files_changed, source_seconds, warnings).
    """
    stages = []
    comp = compressor_command(compression, level)
    if comp:
        stages.append(comp)
    if recipients:
        age = [need('age', 'age'), '--encrypt']
        for recipient in recipients:
            age += ['--recipient', recipient.strip()]
        stages.append(age)
    procs = []

    def spawn(cmd, stdin, fds=()):
        err = tempfile.TemporaryFile()
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=err, env=command_env(),
                                pass_fds=fds)
        grow_pipe(proc.stdout)
        if proc.stdin is not None:
            grow_pipe(proc.stdin)
        procs.append((os.path.basename(cmd[0]), proc, err))
        return proc

    prev_out = None
    feed_into = None
    t0 = time.monotonic()
    source_done = []

    raw_counter = [0]
    member_count = [0]
    errors = []
    digest = hashlib.sha256()
    written = [0]
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    verifier = ReadBackVerifier(tmp_path, fd, enabled=verify, held=hold_verify)  # done_reading releases it
    sink = _Sink(fd, digest, written, verifier)

    def done_reading():  # called once: by the tar watcher (host route) or the stream feeder (engine route)
        if source_done:
            return
        source_done.append(time.monotonic() - t0)
        verifier.release()
        if on_source_done is not None:
            on_source_done()

    def feed(target):
        try:
            tee = _Tee(engine_stream, target, raw_counter)
            with tarfile.open(fileobj=tee, mode='r|') as tar:
                for member in tar:
                    if member.name not in ('.', './', ''):
                        member_count[0] += 1
            while tee.read(CHUNK):
                pass
        except (OSError, tarfile.TarError, ValueError) as exc:
            errors.append(exc)
        finally:
            done_reading()  # the Engine's stream is over: the volume has been read (or the read failed)
            if target is not sink:
                try:
                    target.close()
                except OSError:
                    pass

    thread = None
    watcher = None
    try:
        if source_cmd is not None:
            source_proc = spawn(source_cmd, subprocess.DEVNULL, pass_fds)
            prev_out = source_proc.stdout
            watcher = threading.Thread(target=lambda: (source_proc.wait(), done_reading()))
            watcher.daemon = True
            watcher.start()
        for cmd in stages:
            if prev_out is None:
                proc = spawn(cmd, subprocess.PIPE)
                feed_into = proc.stdin
            else:
                proc = spawn(cmd, prev_out)
                prev_out.close()  # the next stage owns the pipe now; a dying stage gives its writer SIGPIPE
            prev_out = proc.stdout
        if engine_stream is not None and feed_into is not None:
            thread = threading.Thread(target=feed, args=(feed_into,))
            thread.daemon = True
            thread.start()
        if engine_stream is not None and prev_out is None:
            feed(sink)  # no stages: the raw tar stream is the archive
            if errors and isinstance(errors[0], OSError):
                raise errors[0]
        else:
            grow_pipe(prev_out)
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            source_fd = prev_out.fileno()
            while True:
                n = os.readv(source_fd, [buf])
                if not n:
                    break
                sink.write(view[:n])
        read_back = verifier.finish()
        os.fsync(fd)
    except BaseException as exc:  # also a signal turned into an exception: no child outlives the run
        verifier.abort()
        for _name, proc, _err in procs:
            proc.kill()
        reap(procs, thread)
        if watcher is not None:
            watcher.join()
        if not isinstance(exc, OSError):
            raise
        if exc.errno == errno.ENOSPC:
            raise HoldfastError("The destination is full (no space left on device) after %d bytes; the partial "
                                "archive was removed and no previous backup was touched." % written[0]) from exc
        raise HoldfastError("Writing the archive failed: %s" % exc) from exc
    finally:
        os.close(fd)
    reaped = reap(procs, thread)
    if watcher is not None:
        watcher.join()
    stats = dict(raw_bytes=0, file_count=None, warnings=[], files_changed=None,
                 source_seconds=round(source_done[0], 3) if source_done else None)
    failures = []
    for name, code, err in reaped:
        if name == 'tar':
            match = re.search(r'Total bytes written: (\d+)', err)
            if match:
                stats['raw_bytes'] = int(match.group(1))
            stats['files_changed'] = code == 1
            if code == 1:
                stats['warnings'].append("tar saw files change while it read them: %s" % tail(err, 300))
            elif code != 0:
                failures.append('tar exited %d: %s' % (code, tail(err)))
        elif code != 0:
            failures.append('%s exited %d: %s' % (name, code, tail(err)))
    if errors:
        failures.append('reading the volume through the Engine failed: %s' % errors[0])
    if failures:
        raise HoldfastError("The backup failed, nothing was kept: " + "; ".join(failures))
    if engine_stream is not None:
        stats['raw_bytes'] = raw_counter[0]
        stats['file_count'] = member_count[0]
    stats['bytes'] = written[0]
    stats['sha256'] = digest.hexdigest()
    if verify and read_back != stats['sha256']:
        raise HoldfastError("Verification failed: the archive read back from the destination does not match what "
                            "was written (sha256 %s, expected %s). The destination may be faulty; nothing was kept."
                            % (read_back, stats['sha256']))
    stats['verified'] = bool(verify)
    return stats


class _Sink(object):
    def __init__(self, fd, digest, written, verifier=None):
        self.fd = fd
        self.digest = digest
        self.written = written
        self.verifier = verifier

    def write(self, data):
        self.digest.update(data)
        view = memoryview(data)
        total = len(view)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        self.written[0] += total
        if self.verifier is not None:
            self.verifier.wrote(total)


def count_index(path):
    with open(path, 'rb') as handle:
        return max(sum(1 for _line in handle) - 1, 0)  # minus the root "./"


def run_backup(params, check_mode=False):
    validate(params)
    started = time.time()
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    client = None
    source = dict(type='volume' if params.get('volume') else 'path')
    mode = params.get('quiesce') or 'auto'
    if params.get('volume') or params.get('pre_hooks') or params.get('post_hooks'):
        client = connect(params)
    elif mode != 'none':
        try:
            client = connect(params)
        except HoldfastError as exc:
            raise HoldfastError("%s quiesce: %s needs the Engine to find the containers that write to %s; with no "
                                "containers using it, set quiesce: none." % (exc, mode, params.get('path'))) from exc
    else:
        try:  # only to record whether containers could write while it was read
            client = connect(params)
        except HoldfastError:
            client = None
    if params.get('volume'):
        vol = inspect_volume(client, params['volume'])
        if vol is None:
            raise HoldfastError("Volume %s does not exist; nothing to back up." % params['volume'])
        access = VolumeAccess(client, params.get('docker_host'))
        route, host_path = access.route(vol)
        name = vol['Name']
        source.update(name=name, driver=vol['Driver'], driver_options=vol['Options'], labels=vol['Labels'],
                      route=route)
        users = containers_using(client, volume=name)
    else:
        host_path = os.path.realpath(params['path'])
        if not os.path.isdir(host_path):
            raise HoldfastError("path %s is not a directory." % params['path'])
        route = 'host'
        name = params['path']
        source.update(name=name, path=host_path, route='host')
        users = containers_using(client, path=host_path) if client else None
    encrypted = bool(params.get('encrypt_to'))
    compression = params.get('compression') or 'zstd'
    folder = os.path.join(params['dest'], safe_folder_name(name))
    final_name = archive_name(safe_folder_name(name), now, compression, encrypted)
    final_path = os.path.join(folder, final_name)
    manifest_path = os.path.join(folder, manifest_name_for(final_name))
    result = dict(changed=True, archive=final_path, manifest=manifest_path, source=source, containers=[],
                  hooks=[], cleaned=[])
    # tools must be there before we touch anything
    compressor_command(compression, params.get('compression_level'))
    if encrypted:
        need('age', 'age')
    if route == 'host':
        need('tar', 'tar')
    action, targets = effective_mode(mode, users or [])
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
        # Names carry the time to the second: taken under the lock, and unique (a queued backup may wait a second).
        while True:
            now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
            final_name = archive_name(safe_folder_name(name), now, compression, encrypted)
            final_path = os.path.join(folder, final_name)
            manifest_path = os.path.join(folder, manifest_name_for(final_name))
            if not (os.path.exists(final_path) or os.path.exists(manifest_path)):
                break
            time.sleep(0.2)
        result.update(archive=final_path, manifest=manifest_path)
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
            quiesce = Quiesce(client, mode, users or [], params.get('stop_timeout', 30))
            # writers someone else had paused: if one runs again while the source is read, the copy is not consistent
            watch = [u for u in users or [] if u['state'] == 'paused' and u.get('writable', True)]
            woke = []

            def source_read():
                quiesce.resume()
                woke.extend(_woke_up(client, watch))
            try:
                # the Engine route's helper container is created before the pause, so only the read is downtime
                mount = access.engine_mount(name, read_only=True) if route != 'host' else _no_mount()
                with _signals_raise(), mount as cid:
                    with quiesce:
                        # containers resume as soon as the source has been read (quiesce.resume), before the
                        # compression tail, fsync and read-back; at the latest when this block exits, however it exits
                        if route == 'host':
                            cmd = TAR_CREATE[:-1] + ['--index-file=/proc/self/fd/%d' % index_fd, '--verbose', '-C',
                                                     host_path, '.']
                            stats = write_archive(cmd, None, tmp_path, compression, params.get('compression_level'),
                                                  params.get('encrypt_to'), verify=params.get('verify', True),
                                                  on_source_done=source_read, hold_verify=bool(quiesce.touched),
                                                  pass_fds=(index_fd,))
                            stats['file_count'] = count_index('/proc/self/fd/%d' % index_fd)
                        else:
                            stream = access.engine_read_stream(cid)
                            stats = write_archive(None, stream, tmp_path, compression, params.get('compression_level'),
                                                  params.get('encrypt_to'), verify=params.get('verify', True),
                                                  on_source_done=source_read, hold_verify=bool(quiesce.touched))
            finally:
                result['containers'] = quiesce.report()
                warnings.extend(quiesce.warnings)
            for hook in params.get('post_hooks') or []:
                result['hooks'].append(run_hook(client, hook, 'post'))
            if stats['bytes'] == 0 or stats['raw_bytes'] == 0:
                raise HoldfastError("The archive is empty (0 bytes) although the source was read; refusing to keep "
                                    "an empty backup. Check the source and the tools (tar, %s)." % compression)
            os.rename(tmp_path, final_path)
            fsync_dir(folder)
        except BaseException:
            for leftover in (tmp_path,):
                try:
                    os.unlink(leftover)
                except OSError:
                    pass
            raise
        finally:
            os.close(index_fd)
            try:
                os.unlink(index_path)
            except OSError:
                pass
        duration = max(time.time() - started, 1e-6)
        consistency = consistency_record(quiesce.action, users, result['containers'],
                                         [c['id'] for c in quiesce.touched], stats, woke)
        manifest = dict(
            format=FORMAT, format_version=FORMAT_VERSION, collection_version=COLLECTION_VERSION,
            archive=final_name, created=now.strftime('%Y-%m-%dT%H:%M:%SZ'), host=socket.gethostname(),
            source=dict((k, v) for k, v in source.items() if k != 'route'),
            volume=source['name'] if source['type'] == 'volume' else None,
            driver=source.get('driver'), driver_options=source.get('driver_options'), labels=source.get('labels'),
            file_count=stats['file_count'], bytes_raw=stats['raw_bytes'], bytes_stored=stats['bytes'],
            compression=compression, encryption=dict(tool='age', recipients=[r.strip() for r in
                                                                             params['encrypt_to']])
            if encrypted else None,
            sha256=stats['sha256'], quiesce=mode, duration_seconds=round(duration, 3),
            source_read_seconds=stats['source_seconds'])
        manifest.update(consistency, containers=[dict((k, v) for k, v in c.items() if k != 'restored')
                                                 for c in result['containers']])
        write_json_atomic(manifest_path, manifest)
    if not consistency['consistent']:
        warnings.append(inconsistency_warning(name, consistency, stats['warnings']))
    result.update(sha256=stats['sha256'], bytes_raw=stats['raw_bytes'], bytes_stored=stats['bytes'],
                  file_count=stats['file_count'], duration_seconds=round(duration, 3),
                  throughput_mib_s=round(stats['raw_bytes'] / 1048576.0 / duration, 1), verified=bool(
                      params.get('verify', True)), created=manifest['created'],
                  source_read_seconds=stats['source_seconds'])
    result.update(consistency)
    return result, warnings


def _woke_up(client, containers):
    """Names of the containers (paused before the backup, by someone else) that are no longer paused."""
    out = []
    for c in containers:
        try:
            state = client.inspect_container(c['id']).get('State') or {}
        except (DockerException, APIError):  # gone, or the Engine failed: cannot vouch for it
            state = {}
        if not state.get('Paused'):
            out.append(c['name'])
    return out


def consistency_record(action, users, containers, touched_ids, stats, woke=()):
    """What the manifest and the result say about the copy's consistency (pure).

    quiesced: containers were paused or stopped for the read. live_writers: containers that could write while it
    was read (running, mounted writable, not quiesced; or paused by someone else and unpaused before the read
    ended); None when the Engine could not be asked (a path backup with
    quiesce: none and no Engine). files_changed: tar reported files that changed while it read them (None on the
    Engine route, which cannot tell). consistent: no live writer and no changed file.
    """
    writers = None if users is None else live_writers(users, set(touched_ids)) + list(woke)
    files_changed = stats.get('files_changed')
    return dict(
        quiesce_action=action, quiesced=bool(containers), live_writers=writers, files_changed=files_changed,
        consistent=not writers and files_changed is not True)


def inconsistency_warning(name, consistency, tar_messages):
    reasons = []
    if consistency['live_writers']:
        reasons.append("containers %s had it mounted writable and were not quiesced while it was read"
                       % ", ".join(consistency['live_writers']))
    if consistency['files_changed']:
        reasons.append("tar saw files change while it read them%s" % (
            " (%s)" % tar_messages[0] if tar_messages else ''))
    return ("The backup of %s is NOT consistent: %s. A database restored from it may start and still be corrupt. "
            "Use the default quiesce (auto: pause the writers) or quiesce: pause or stop; see docs/databases.md."
            % (name, "; ".join(reasons)))


@contextlib.contextmanager
def _no_mount():
    yield None


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
