# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Writing an archive: source (GNU tar, or the Engine's archive stream) -> [zstd/pigz/gzip] -> [age] -> this
process, which hashes the bytes and writes them to a temporary name (the caller renames it), read back while it
is written (ReadBackVerifier). Children never outlive a failed or interrupted write."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import errno
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._pipeline import CHUNK, reap, tail
from ansible_collections.holdfast.volumes.plugins.module_utils._process import command_env, grow_pipe, need
from ansible_collections.holdfast.volumes.plugins.module_utils._verify import ReadBackVerifier

TAR_CREATE = ['tar', '--create', '--file=-', '--numeric-owner', '--xattrs', '--xattrs-include=*', '--acls',
              '--sparse', '--totals', '--warning=no-file-ignored', '-C']


# How the archive is stored: compression (zstd, gzip, none) and its level, age recipients (or None), and whether
# it is read back from the destination while it is written.
ArchiveOutput = collections.namedtuple('ArchiveOutput', 'compression level recipients verify')
ArchiveOutput.__new__.__defaults__ = (None, None, False)


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


def archive_stages(output):
    """The commands between the source and this process: [compressor] [age --encrypt]."""
    stages = []
    comp = compressor_command(output.compression, output.level)
    if comp:
        stages.append(comp)
    if output.recipients:
        age = [need('age', 'age'), '--encrypt']
        for recipient in output.recipients:
            age += ['--recipient', recipient.strip()]
        stages.append(age)
    return stages


class _Tee(object):
    """A reader that forwards everything read from another one into a sink (for counting members)."""

    def __init__(self, reader, sink, counter):
        self.reader = reader
        self.sink = sink
        self.counter = counter

    def read(self, size=-1):
        data = self.reader.read(size) if size and size > 0 else self.reader.read()
        if data:
            self.counter[0] += len(data)
            self.sink.write(data)
        return data


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


class _ArchiveWrite(object):
    """One write_archive: its stage processes, the moment the source was read, and what was written."""

    def __init__(self, tmp_path, fd, output, on_source_done, hold_verify):
        self.fd = fd
        self.procs = []
        self.thread = None  # the feeder of the Engine's stream into the first stage
        self.watcher = None  # waits for tar (host route)
        self.t0 = time.monotonic()
        self.source_done = []
        self.raw_counter = [0]
        self.member_count = [0]
        self.errors = []
        self.digest = hashlib.sha256()
        self.written = [0]
        self.on_source_done = on_source_done
        self.verifier = ReadBackVerifier(tmp_path, fd, enabled=output.verify, held=hold_verify)  # done_reading
        self.sink = _Sink(fd, self.digest, self.written, self.verifier)

    def spawn(self, cmd, stdin, fds=()):
        err = tempfile.TemporaryFile()
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=err, env=command_env(),
                                pass_fds=fds)
        grow_pipe(proc.stdout)
        if proc.stdin is not None:
            grow_pipe(proc.stdin)
        self.procs.append((os.path.basename(cmd[0]), proc, err))
        return proc

    def done_reading(self):  # called once: by the tar watcher (host route) or the stream feeder (engine route)
        if self.source_done:
            return
        self.source_done.append(time.monotonic() - self.t0)
        self.verifier.release()
        if self.on_source_done is not None:
            self.on_source_done()

    def feed(self, engine_stream, target):
        try:
            tee = _Tee(engine_stream, target, self.raw_counter)
            with tarfile.open(fileobj=tee, mode='r|') as tar:
                for member in tar:
                    if member.name not in ('.', './', ''):
                        self.member_count[0] += 1
            while tee.read(CHUNK):
                pass
        except (OSError, tarfile.TarError, ValueError) as exc:
            self.errors.append(exc)
        finally:
            self.done_reading()  # the Engine's stream is over: the volume has been read (or the read failed)
            if target is not self.sink:
                try:
                    target.close()
                except OSError:
                    pass

    def start(self, source_cmd, engine_stream, stages, pass_fds):
        """Spawn the source and the stages; returns the last stage's output (None: no stage, no tar)."""
        prev_out = None
        feed_into = None
        if source_cmd is not None:
            source_proc = self.spawn(source_cmd, subprocess.DEVNULL, pass_fds)
            prev_out = source_proc.stdout
            self.watcher = threading.Thread(target=lambda: (source_proc.wait(), self.done_reading()))
            self.watcher.daemon = True
            self.watcher.start()
        for cmd in stages:
            if prev_out is None:
                proc = self.spawn(cmd, subprocess.PIPE)
                feed_into = proc.stdin
            else:
                proc = self.spawn(cmd, prev_out)
                prev_out.close()  # the next stage owns the pipe now; a dying stage gives its writer SIGPIPE
            prev_out = proc.stdout
        if engine_stream is not None and feed_into is not None:
            self.thread = threading.Thread(target=self.feed, args=(engine_stream, feed_into))
            self.thread.daemon = True
            self.thread.start()
        return prev_out

    def pump(self, engine_stream, prev_out):
        """Copy the last stage's output (or, with no stage, the Engine's raw tar stream) into the sink."""
        if engine_stream is not None and prev_out is None:
            self.feed(engine_stream, self.sink)  # no stages: the raw tar stream is the archive
            if self.errors and isinstance(self.errors[0], OSError):
                raise self.errors[0]
            return
        grow_pipe(prev_out)
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        source_fd = prev_out.fileno()
        while True:
            n = os.readv(source_fd, [buf])
            if not n:
                break
            self.sink.write(view[:n])

    def stop(self, exc):
        """A failure (or a signal): no child outlives the run; an OSError becomes a HoldfastError."""
        self.verifier.abort()
        for _name, proc, _err in self.procs:
            proc.kill()
        reap(self.procs, self.thread)
        if self.watcher is not None:
            self.watcher.join()
        if not isinstance(exc, OSError):
            raise exc
        if exc.errno == errno.ENOSPC:
            raise HoldfastError("The destination is full (no space left on device) after %d bytes; the partial "
                                "archive was removed and no previous backup was touched." % self.written[0]) from exc
        raise HoldfastError("Writing the archive failed: %s" % exc) from exc

    def reap(self):
        reaped = reap(self.procs, self.thread)
        if self.watcher is not None:
            self.watcher.join()
        return reaped

    def stats(self, reaped, engine_stream):
        """The stats of a finished write; raises when a stage failed."""
        stats = dict(raw_bytes=0, file_count=None, warnings=[], files_changed=None,
                     source_seconds=round(self.source_done[0], 3) if self.source_done else None)
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
        if self.errors:
            failures.append('reading the volume through the Engine failed: %s' % self.errors[0])
        if failures:
            raise HoldfastError("The backup failed, nothing was kept: " + "; ".join(failures))
        if engine_stream is not None:
            stats['raw_bytes'] = self.raw_counter[0]
            stats['file_count'] = self.member_count[0]
        stats['bytes'] = self.written[0]
        stats['sha256'] = self.digest.hexdigest()
        return stats


def write_archive(source_cmd, engine_stream, tmp_path, output, *, on_source_done=None, hold_verify=False,
                  pass_fds=()):
    """Run source -> [compressor] -> [age] and write the final bytes to tmp_path (hashing them).

    source_cmd: GNU tar command (host route), or None with engine_stream (a binary reader of the raw tar stream).
    output: an ArchiveOutput (compression, level, recipients, verify).
    on_source_done: called once (from another thread) as soon as the source has been read: tar has exited, or the
    Engine's stream has ended (or failed), before the compression tail, fsync and read-back. Quiesced containers
    resume there. hold_verify: no sync or read-back until then (while containers wait, the read has the disk to
    itself; otherwise the verification overlaps the compression).
    Returns dict(bytes, sha256, raw_bytes, file_count (engine route), files_changed, source_seconds, warnings).
    """
    stages = archive_stages(output)
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    run = _ArchiveWrite(tmp_path, fd, output, on_source_done, hold_verify)
    try:
        run.pump(engine_stream, run.start(source_cmd, engine_stream, stages, pass_fds))
        read_back = run.verifier.finish()
        os.fsync(fd)
    except BaseException as exc:  # also a signal turned into an exception: no child outlives the run
        run.stop(exc)
    finally:
        os.close(fd)
    stats = run.stats(run.reap(), engine_stream)
    if output.verify and read_back != stats['sha256']:
        raise HoldfastError("Verification failed: the archive read back from the destination does not match what "
                            "was written (sha256 %s, expected %s). The destination may be faulty; nothing was kept."
                            % (read_back, stats['sha256']))
    stats['verified'] = bool(output.verify)
    return stats
