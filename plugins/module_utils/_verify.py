# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checking what was written: the sha256 of a stored archive, a stored backup against its manifest (rotation,
backup_info), and the read-back of an archive while it is written (volume_backup)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import hashlib
import os
import threading

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._pipeline import CHUNK
from ansible_collections.holdfast.volumes.plugins.module_utils._store import open_archive_file


def sha256_file(path, chunk=4 * 1024 * 1024):
    digest = hashlib.sha256()
    with open_archive_file(path) as handle:
        while True:
            block = handle.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def check_backup(backup, verify):
    """None when sound (or verify is 'none': nothing checked), else why it is broken."""
    if verify == 'none':
        return None
    manifest = backup['manifest']
    try:
        size = os.path.getsize(backup['archive_path'])
    except OSError as exc:
        return 'archive unreadable: %s' % exc.strerror
    if manifest.get('bytes_stored') is not None and size != manifest['bytes_stored']:
        return 'archive is %d bytes, manifest says %d' % (size, manifest['bytes_stored'])
    if verify == 'sha256':
        try:
            actual = sha256_file(backup['archive_path'])
        except OSError as exc:
            return 'archive unreadable: %s' % exc.strerror
        except HoldfastError as exc:  # not a regular file (a planted symlink, fifo or device)
            return 'archive unreadable: %s' % exc.msg
        if actual != manifest.get('sha256'):
            return 'sha256 %s does not match the manifest (%s)' % (actual, manifest.get('sha256'))
    return None


class ReadBackVerifier(object):
    """Verify while writing: a thread syncs each written window, drops it from the page cache, reads it back
    from storage and hashes it, overlapping the device reads with the (CPU-bound) compression. finish() syncs
    the rest, reads it back, and returns the sha256 of everything read back."""

    WINDOW = 64 * 1024 * 1024

    def __init__(self, path, write_fd, enabled=True, held=False):
        self.enabled = enabled
        self.held = held  # no sync or read-back until release(): the source read gets the disk to itself
        self.write_fd = write_fd
        self.read_fd = os.open(path, os.O_RDONLY) if enabled else None
        self.digest = hashlib.sha256()
        self.written = 0
        self.queued = 0
        self.error = None
        self.cond = threading.Condition()
        self.closing = False
        self.thread = None
        if enabled:
            self.thread = threading.Thread(target=self._run)
            self.thread.daemon = True
            self.thread.start()

    def wrote(self, n):
        if not self.enabled:
            return
        with self.cond:
            self.written += n
            if self.written - self.queued >= self.WINDOW:
                self.cond.notify()

    def _run(self):
        verified = 0
        try:
            while True:
                with self.cond:
                    while not self.closing and (self.held or self.written - verified < self.WINDOW):
                        self.cond.wait()
                    end = self.written if self.closing else verified + (self.written - verified) // self.WINDOW * \
                        self.WINDOW
                    self.queued = end
                    last = self.closing
                if end > verified:
                    os.fdatasync(self.write_fd)
                    if hasattr(os, 'posix_fadvise'):
                        os.posix_fadvise(self.read_fd, verified, end - verified, os.POSIX_FADV_DONTNEED)
                    while verified < end:
                        block = os.pread(self.read_fd, min(4 * CHUNK, end - verified), verified)
                        if not block:
                            raise OSError(errno.EIO, 'short read while verifying')
                        self.digest.update(block)
                        verified += len(block)
                if last:
                    return
        except OSError as exc:
            self.error = exc

    def release(self):
        with self.cond:
            self.held = False
            self.cond.notify()

    def _stop(self):
        """Let the thread verify what is left, wait for it, and close the reading side (once)."""
        with self.cond:
            self.closing = True
            self.cond.notify()
        self.thread.join()
        os.close(self.read_fd)
        self.enabled = False

    def finish(self):
        """All data written: verify the rest; returns the hex digest of what was read back."""
        if not self.enabled:
            return None
        self._stop()
        if self.error:
            raise HoldfastError("Reading the archive back from the destination failed: %s" % self.error)
        return self.digest.hexdigest()

    def abort(self):
        if self.enabled:
            self._stop()


def broken_warnings(broken):
    """One warning per broken backup (local or remote rotation), saying whether it was removed."""
    return ["broken backup %s: %s%s" % (item['archive'], item['reason'],
                                        '' if item['removed'] else ' (kept; remove_broken: true removes it)')
            for item in broken]
