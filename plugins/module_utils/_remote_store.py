# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The offsite copies as a backup store, for backup_info, backup_rotation (_offsite.py) and volume_restore
(_restore.py) with `remote`: listing it, reading its manifests, checking and deleting backups, streaming an archive.

The remote holds <remote.path>/<host>/<volume folder>/<archive> and <...>.manifest.json (written by backup_sync).
One recursive listing and one copy of the manifests per run; the manifests are hostile input, read with the same
rules as local ones.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import atexit
import hashlib
import os
import re
import socket

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._rclone import Rclone
from ansible_collections.holdfast.volumes.plugins.module_utils._retention import plan_backups
from ansible_collections.holdfast.volumes.plugins.module_utils._store import (
    MANIFEST_MAX,
    MANIFEST_SUFFIX,
    classify_folder,
    read_manifest,
    safe_folder_name,
)

HOST_RE = re.compile(r'^[A-Za-z0-9_.@-]+$')


def is_host_name(host):
    """Pure: a name a host's folder on a remote may have (also checked by the volume_model filter)."""
    return isinstance(host, str) and bool(HOST_RE.match(host)) and host not in ('.', '..')


CHUNK = 4 * 1024 * 1024
# the module option `remote`, shared by backup_sync and the modules that read or rotate a remote store
REMOTE_SPEC = dict(
    type=dict(type='str', required=True),
    path=dict(type='str', required=True),
    options=dict(type='dict', default={}, no_log=True),
)


def host_folder(host=None):
    """The host folder under the remote path: the given name (validated) or this host's short name."""
    host = host or socket.gethostname().split('.')[0] or 'localhost'
    if not is_host_name(host):
        raise HoldfastError("host must be a host name (letters, digits, . _ @ -), got %r." % host)
    return host


def remote_warnings(remote):
    """Pure: what the operator should know about a remote (warnings, not errors), for every module that uses one."""
    remote = remote or {}
    if remote.get('type') == 'sftp' and not (remote.get('options') or {}).get('known_hosts_file'):
        return ["remote %s: the SFTP server's host key is not checked (without known_hosts_file rclone accepts any "
                "key), so a machine that takes over its address receives the backups and can serve forged ones: set "
                "remote.options.known_hosts_file (e.g. /etc/ssh/ssh_known_hosts)." % remote.get('path')]
    return []


def warn_about_remote(module):
    """Warn at the start of a module given a remote: the warnings reach the operator also when the run fails."""
    for warning in remote_warnings(module.params.get('remote')):
        module.warn(warning)


REMOTE_STORE_OPTIONS = dict(
    remote=dict(type='dict', options=REMOTE_SPEC),
    host=dict(type='str'),
    rclone_path=dict(type='path'),
)


def scan_remote(rclone, host, volumes=None):
    """One recursive listing of <path>/<host> and one copy of its manifests into rclone's private directory.

    Returns {folder name: scan} with the shape of _archive.list_backups (complete newest first, orphans, unknown,
    bad_manifests; temps empty), where paths are relative to <path>/<host> and each complete backup carries the
    remote archive's size. Manifests are hostile input: parsed with the same rules as local ones.
    """
    files = rclone.list_files(host)
    wanted = set(safe_folder_name(v) for v in volumes) if volumes else None
    folders = {}
    for rel, size in files.items():
        parts = rel.split('/')
        if len(parts) != 2 or (wanted is not None and parts[0] not in wanted):
            continue
        if parts[0] in ('', '.', '..') or any(ord(c) < 32 for c in parts[0]):
            continue  # hostile listing (an S3 key may say '..'): never a folder to read, rotate or delete in
        folders.setdefault(parts[0], {})[parts[1]] = size
    for name in wanted or ():
        folders.setdefault(name, {})
    manifests = [f + '/' + n for f, names in folders.items() for n in names
                 if n.endswith(MANIFEST_SUFFIX) and (names[n] or 0) <= MANIFEST_MAX]
    local = os.path.join(rclone.tmpdir, 'manifests')
    os.mkdir(local, 0o700)
    if manifests:
        code, _out, err = rclone.fetch(host, manifests, local)
        if code != 0:
            rclone.fail('Reading %d manifest(s)' % len(manifests), err)
    out = {}
    for folder, names in sorted(folders.items()):
        def load(entry, folder=folder, names=names):
            if (names[entry] or 0) > MANIFEST_MAX:
                raise ValueError('manifest larger than %d bytes' % MANIFEST_MAX)
            return read_manifest(os.path.join(local, folder, entry))  # hostile input: size, shape, types
        found, orphans, unknown, bad = classify_folder(names, load)
        complete = [dict(manifest=manifest, manifest_path='%s/%s' % (folder, entry),
                         archive_path='%s/%s' % (folder, manifest['archive']), time=when,
                         remote_size=names[manifest['archive']])
                    for entry, manifest, when in found]
        out[folder] = dict(complete=complete, orphans=orphans, temps=[], unknown=unknown, bad_manifests=bad)
    return out


def read_back_sha256(rclone, relpath, sub):
    """Stream a remote object through sha256: (digest, size), or raises (a HoldfastError) with rclone's message."""
    digest = hashlib.sha256()
    size = 0
    with RemoteStream(rclone, sub, relpath, after='') as stream:
        for block in iter(lambda: stream.read(CHUNK), b''):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def check_remote_backup(rclone, host, backup, verify):
    """None when sound (or verify is 'none': nothing checked), else why it is broken: size from the listing; sha256
    by reading the copy back."""
    if verify == 'none':
        return None
    manifest = backup['manifest']
    if manifest.get('bytes_stored') is not None and backup['remote_size'] != manifest['bytes_stored']:
        return 'archive is %s bytes, manifest says %d' % (backup['remote_size'], manifest['bytes_stored'])
    if verify == 'sha256':
        try:
            actual, _size = read_back_sha256(rclone, backup['archive_path'], host)
        except HoldfastError as exc:
            return 'archive unreadable: %s' % exc.msg
        if actual != manifest.get('sha256'):
            return 'sha256 %s does not match the manifest (%s)' % (actual, manifest.get('sha256'))
    return None


def plan_remote_rotation(rclone, host, scans, policy, result, diffs):
    """backup_rotation's plan on the remote store, per folder: the policy (dict of rules, now, verify,
    remove_broken) on the sound backups (the newest sound one always stays), broken ones reported (removed only
    with remove_broken); adds to result (kept, removed, broken, bytes_freed, folders) and diffs. Returns the
    backups to remove."""
    rules, now, verify, remove_broken = policy['rules'], policy['now'], policy['verify'], policy['remove_broken']
    doomed_all = []
    for folder, scan in scans.items():
        where = '%s/%s/%s' % (rclone.display, host, folder)
        sound, broken = [], []
        for backup in scan['complete']:
            why = check_remote_backup(rclone, host, backup, verify)
            (broken if why else sound).append((backup, why))
        sound = [b for b, _w in sound]
        keep, remove = plan_backups(sound, rules, now=now)
        broken_out = []
        for backup, why in broken:
            broken_out.append(dict(remote_entry(rclone, host, backup), reason=why,
                                   removed=bool(remove_broken)))
            if remove_broken:
                remove.append(backup)
        doomed_all += remove
        kept = [remote_entry(rclone, host, e['item'], e['reasons']) for e in keep]
        removed = [remote_entry(rclone, host, b) for b in remove]
        result['kept'] += kept
        result['removed'] += removed
        result['broken'] += broken_out
        result['bytes_freed'] += sum(b['manifest'].get('bytes_stored') or 0 for b in remove)
        result['folders'].append(dict(folder=where, kept=len(kept), removed=len(removed),
                                      broken=len(broken_out), cleaned=0, orphans=scan['orphans'],
                                      unknown=scan['unknown'], bad_manifests=scan['bad_manifests']))
        if removed:
            before = sorted(b['manifest_path'].split('/')[-1] for b in scan['complete'])
            gone = set(b['manifest_path'].split('/')[-1] for b in remove)
            after = [n for n in before if n not in gone]
            diffs.append(dict(before_header=where, after_header=where, before=''.join(n + '\n' for n in before),
                              after=''.join(n + '\n' for n in after)))
    return doomed_all


def delete_backups(rclone, host, doomed):
    """Manifests first (from then on these backups no longer count), then their archives, one rclone run each. A
    refused deletion (a read-only remote) fails with what a fresh listing shows is really gone, never the plan."""
    for what, key in (('manifests', 'manifest_path'), ('archives', 'archive_path')):
        paths = [b[key] for b in doomed]
        code, _out, err = rclone.delete(host, paths, 'Removing %s' % what)
        if code == 0:
            continue
        try:
            listing = rclone.list_files(host)
            gone = [p for p in paths if p not in listing]
        except HoldfastError:
            gone = None
        base = '%s/%s/' % (rclone.display, host)
        if what == 'manifests':
            done = ('removed no backup' if gone == [] else 'removed %s of %d backups (their manifests are gone, their '
                    'archives stay)' % ('an unknown number' if gone is None else len(gone), len(paths)))
        else:
            done = ('removed the manifests of %d backups (they no longer count); of their archives %s could not be '
                    'removed and stay as orphans' % (len(paths), 'some' if gone is None else len(paths) - len(gone)))
        removed = gone or [] if what == 'manifests' else [b['manifest_path'] for b in doomed]
        raise HoldfastError("backup_rotation %s on remote %s: removing %d %s failed%s" % (
            done, rclone.display, len(paths), what, rclone.failure(err, writing=True, answering=gone is not None)),
            remote=rclone.display,
            removed=[base + p for p in removed])


def remote_entry(rclone, host, backup, reasons=None):
    base = '%s/%s/' % (rclone.display, host)
    out = dict(archive=base + backup['archive_path'], manifest=base + backup['manifest_path'],
               created=backup['manifest'].get('created'), bytes=backup['manifest'].get('bytes_stored'))
    if reasons is not None:
        out['reasons'] = reasons
    return out


class RemoteArchive(str):
    """An archive on a remote, for volume_restore: its display name (a str, for results and messages) and open(),
    a stream of its bytes from `rclone cat` (nothing stored locally). A stream that ends because rclone failed
    raises OSError on its last read, so a truncated download never passes for a short archive."""

    def __new__(cls, rclone, host, relpath):
        obj = str.__new__(cls, '%s/%s/%s' % (rclone.display, host, relpath))
        obj.rclone, obj.host, obj.relpath = rclone, host, relpath
        return obj

    def open(self):
        return RemoteStream(self.rclone, self.host, self.relpath)


class RemoteReadError(OSError, HoldfastError):
    """A download cut off or refused: an OSError for the readers of archives (which treat it as a read error), and
    a HoldfastError (a clear message, never a traceback) where nothing catches it."""

    def __init__(self, msg):
        OSError.__init__(self, msg)
        self.msg = msg
        self.details = {}


class RemoteStream(object):
    """The bytes of one remote object (rclone cat). The read that ends the stream checks rclone's exit: a failed
    download raises RemoteReadError (its message ends with `after`) instead of passing for a short object."""

    def __init__(self, rclone, host, relpath, after='; nothing was written from it'):
        self.rclone = rclone
        self.relpath = relpath
        self.after = after
        self.proc, self.err = rclone.stream(relpath, host)
        self.done = False

    def read(self, size=-1):
        data = self.proc.stdout.read(size)
        if not data and not self.done:
            self.done = True
            code = self.proc.wait()
            if code != 0:
                self.err.seek(0)
                failure = self.rclone.failure(self.err.read().decode('utf-8', 'replace'))
                if failure == ': ':  # rclone said nothing
                    failure = ' (rclone exited %d)' % code
                raise RemoteReadError('reading %s from remote %s failed%s%s' % (
                    self.relpath, self.rclone.display, failure, self.after))
        return data

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.stdout.close()
        self.proc.wait()
        self.err.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def locate_remote(params):
    """volume_restore with remote: (RemoteArchive, manifest) of the named archive or the newest complete backup of
    the volume (source) under <remote.path>/<host>. The rclone context lives until the module exits."""
    host = host_folder(params.get('host'))
    source = params.get('source') or params.get('volume') or params.get('path')
    folder = safe_folder_name(source)
    rclone = Rclone(params['remote'], params.get('rclone_path'))
    atexit.register(rclone.close)
    scan = scan_remote(rclone, host, [source])[folder]
    backups = scan['complete']
    if params.get('archive'):
        name = os.path.basename(params['archive'])
        backups = [b for b in backups if b['manifest']['archive'] == name]
        if not backups:
            raise HoldfastError("No complete backup %s of %s on remote %s under %s (an archive counts only with its "
                                "manifest)." % (name, source, rclone.display, host))
    if not backups:
        raise HoldfastError("No complete backup of %s on remote %s under %s (an archive counts only with its "
                            "manifest)." % (source, rclone.display, host))
    newest = backups[0]
    if newest['remote_size'] != newest['manifest'].get('bytes_stored', newest['remote_size']):
        raise HoldfastError("The remote archive %s/%s is %s bytes, its manifest says %s: it is damaged; nothing was "
                            "touched." % (host, newest['archive_path'], newest['remote_size'],
                                          newest['manifest'].get('bytes_stored')))
    return RemoteArchive(rclone, host, newest['archive_path']), newest['manifest']
