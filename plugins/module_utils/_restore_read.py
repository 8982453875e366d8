# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading an archive for a restore: open it (a local file or a remote stream), decrypt and decompress it, pass it
through the tar gate (MemberChecker) and judge the result against its manifest; extract the gate's re-encoding into
a staging directory under the disk guard. verify_archive reads and checks everything and writes nothing."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import subprocess
import tempfile
import threading

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._members import AGE_MAGIC, MemberChecker
from ansible_collections.holdfast.volumes.plugins.module_utils._pipeline import CHUNK
from ansible_collections.holdfast.volumes.plugins.module_utils._process import command_env, grow_pipe, need
from ansible_collections.holdfast.volumes.plugins.module_utils._store import open_archive_file
from ansible_collections.holdfast.volumes.plugins.module_utils._tar_gate import (
    DiskGuard,
    default_reserve,
    gate_stream,
    human,
    reserve_bytes,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._tar_read import GateLimit, TarFormatError

TAR_EXTRACT = ['tar', '--extract', '--file=-', '--numeric-owner', '--same-owner', '--same-permissions',
               '--xattrs', '--xattrs-include=*', '--acls', '--delay-directory-restore', '--no-unquote']


def open_archive(path):
    """The archive's bytes: a local file, or a stream from a remote store (RemoteArchive, read through rclone)."""
    opener = getattr(path, 'open', None)
    if opener:
        return opener()
    return open_archive_file(path)


class _Pipeline(object):
    """archive file -> (hash in this process) -> [age -d] -> zstd -dcf -> stdout (a pipe)."""

    def __init__(self, path, identity):
        # one open per pass: the head tells whether age is needed, then the same handle feeds the pipeline (a
        # remote archive is one rclone download, not two)
        self.handle = open_archive(path)
        try:
            self._start(path, identity)
        except BaseException:
            self.handle.close()
            raise

    def _start(self, path, identity):
        self.head = self.handle.read(64)
        self.encrypted = self.head.startswith(AGE_MAGIC)
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
        prev = None
        for cmd in stages:
            err = tempfile.TemporaryFile()
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if prev is None else prev, stdout=subprocess.PIPE,
                                    stderr=err, env=command_env())
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
            with self.handle as handle:
                self.digest.update(self.head)
                sink.write(self.head)
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


def gate_archive(path, manifest, identity, allow_special, *, sink=None, escaping_links=False, guard=None):
    """Decrypt/decompress the archive and pass it through the tar gate, which writes its own re-encoding of the
    accepted members to sink. Returns (pipe, checker, problem); raises HoldfastError at a bound (GateLimit)."""
    pipe = _Pipeline(path, identity)
    checker = MemberChecker(allow_special=allow_special, refuse_escaping_links=escaping_links)
    problem = None
    try:
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
    wanted = _raw_limit(manifest) or 0
    free = guard.free()[0]
    if wanted and free - reserve < wanted:
        raise HoldfastError("Not enough free space to restore: the archive holds %s (its manifest's bytes_raw) and "
                            "the filesystem of %s has %s free, of which %s is kept in reserve (disk_reserve). Free "
                            "some space or restore elsewhere; the target was not touched."
                            % (human(wanted), where, human(free), human(reserve)))
    return guard


def extract_gated(params, archive, manifest, staging, *, pass_fds=(), escaping_links=False):
    """Extract the archive into the (empty) staging directory: GNU tar reads only the gate's re-encoding of the
    members the checker accepted, under the disk guard. Returns the checked summary (see judge_gated); on any failure
    the extractor is stopped before this raises, so the caller can remove staging."""
    guard = _disk_guard(params, manifest, staging)
    err = tempfile.TemporaryFile()
    tar = subprocess.Popen(TAR_EXTRACT + ['-C', staging], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                           stderr=err, env=command_env(), pass_fds=pass_fds)
    grow_pipe(tar.stdin)
    try:
        try:
            pipe, checker, problem = gate_archive(archive, manifest, params.get('identity'),
                                                  params.get('allow_special_files'), sink=tar.stdin,
                                                  escaping_links=escaping_links, guard=guard)
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
    checked = judge_gated(archive, manifest, (pipe, checker, problem))
    if code != 0:
        err.seek(0)
        raise HoldfastError("Extraction failed; the target was not touched: tar exited %d: %s"
                            % (code, err.read().decode('utf-8', 'replace').strip()[-600:]))
    return checked


def judge_gated(path, manifest, gated):
    """gated: what gate_archive returned. Raise if anything was wrong; return dict(sha256, entries, encrypted,
    has_root)."""
    pipe, checker, problem = gated
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


def verify_archive(path, manifest, identity, allow_special=False, *, escaping_links=False):
    """Read and check everything, write nothing. Returns dict(sha256, entries, encrypted, has_root)."""
    return judge_gated(path, manifest, gate_archive(path, manifest, identity, allow_special,
                                                    escaping_links=escaping_links))
