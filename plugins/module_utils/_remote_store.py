# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The offsite copies as a backup store: backup_info, backup_rotation and volume_restore with `remote`.

The remote holds <remote.path>/<host>/<volume folder>/<archive> and <...>.manifest.json (written by backup_sync,
_offsite.py). One recursive listing and one copy of the manifests per run; the manifests are hostile input, read
with the same rules as local ones; the same retention engine and safety as the local store.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import atexit
import datetime
import os

from ansible_collections.holdfast.volumes.plugins.module_utils._archive import (
    MANIFEST_MAX,
    MANIFEST_SUFFIX,
    classify_folder,
    read_manifest,
    safe_folder_name,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._rclone import (
    REMOTE_SPEC,
    Rclone,
    explain,
    host_folder,
    rclone_message,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._retention import (
    POLICY_KEYS,
    apply_policy,
    parse_time,
    validate_policy,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._rotation import broken_warnings

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


def check_remote_backup(rclone, host, backup, verify):
    """None when sound, else why it is broken: size from the listing; sha256 by reading the copy back."""
    manifest = backup['manifest']
    if manifest.get('bytes_stored') is not None and backup['remote_size'] != manifest['bytes_stored']:
        return 'archive is %s bytes, manifest says %d' % (backup['remote_size'], manifest['bytes_stored'])
    if verify == 'sha256':
        try:
            actual, _size = rclone.read_back_sha256(backup['archive_path'], host)
        except HoldfastError as exc:
            return 'archive unreadable: %s' % exc.msg
        if actual != manifest.get('sha256'):
            return 'sha256 %s does not match the manifest (%s)' % (actual, manifest.get('sha256'))
    return None


def run_remote_info(params):
    now = datetime.datetime.now(datetime.timezone.utc)
    host = host_folder(params.get('host'))
    verify = params.get('verify') or 'size'
    with Rclone(params['remote'], params.get('rclone_path')) as rclone:
        scans = scan_remote(rclone, host, params.get('volumes'))
        states = []
        for folder, scan in scans.items():
            backups = scan['complete']
            newest = backups[0] if backups else None
            where = '%s/%s/%s' % (rclone.display, host, folder)
            state = dict(folder=where, volume=newest['manifest'].get('volume') if newest else folder,
                         count=len(backups), bytes=sum(b['manifest'].get('bytes_stored') or 0 for b in backups),
                         temporaries=0, orphans=len(scan['orphans']),
                         unreadable_manifests=len(scan['bad_manifests']), newest=None, host=host)
            if newest:
                manifest = newest['manifest']
                broken = check_remote_backup(rclone, host, newest, verify) if verify != 'none' else None
                state['newest'] = dict(archive='%s/%s' % (where, manifest['archive']),
                                       created=manifest.get('created'),
                                       age_seconds=int((now - newest['time']).total_seconds()),
                                       bytes=manifest.get('bytes_stored'), file_count=manifest.get('file_count'),
                                       compression=manifest.get('compression'),
                                       encrypted=bool(manifest.get('encryption')),
                                       recipients=(manifest.get('encryption') or {}).get('recipients', []),
                                       verified=verify != 'none' and broken is None, verify=verify, problem=broken)
                state['oldest_created'] = backups[-1]['manifest'].get('created')
            states.append(state)
    return dict(changed=False, backups=states)


def run_remote_rotation(params, check_mode=False):
    """backup_rotation on <remote.path>/<host>: the same policy engine and safety as the local rotation.

    Only complete backups count; a broken one (size, or sha256 read back with verify: sha256) is reported and
    removed only with remove_broken; the newest sound backup always stays; manifests are deleted first (one rclone
    run), then the archives. Archives without a manifest are reported, never removed here: on a remote one may be
    an upload in progress (its modification time is the local file's), and the next backup_sync completes it.
    """
    policy = dict((k, params.get(k)) for k in POLICY_KEYS if params.get(k) not in (None, ''))
    if params.get('timezone'):
        policy['timezone'] = params['timezone']
    rules = validate_policy(policy)
    now = parse_time(params['now'], 'now') if params.get('now') else None
    host = host_folder(params.get('host'))
    verify = params.get('verify') or 'sha256'
    volumes = [params['volume']] if params.get('volume') else None
    result = dict(changed=False, kept=[], removed=[], broken=[], cleaned=[], bytes_freed=0, folders=[])
    diffs = []
    with Rclone(params['remote'], params.get('rclone_path')) as rclone:
        scans = scan_remote(rclone, host, volumes)
        if volumes and not any(scan['complete'] or scan['orphans'] for scan in scans.values()):
            raise HoldfastError("No backups of %s on remote %s under %s." % (params['volume'], rclone.display, host))
        doomed_all = []
        for folder, scan in scans.items():
            where = '%s/%s/%s' % (rclone.display, host, folder)
            sound, broken = [], []
            for backup in scan['complete']:
                why = check_remote_backup(rclone, host, backup, verify) if verify != 'none' else None
                (broken if why else sound).append((backup, why))
            sound = [b for b, _w in sound]
            plan = apply_policy(sound, rules, now=now, time_of=lambda b: b['time'])
            keep = [dict(item=e['item'], reasons=list(e['reasons'])) for e in plan['keep']]
            remove = list(plan['remove'])
            if sound and sound[0] in remove:  # the newest sound backup always stays
                remove.remove(sound[0])
                keep.insert(0, dict(item=sound[0], reasons=['newest']))
            broken_out = []
            for backup, why in broken:
                broken_out.append(dict(_remote_entry(rclone, host, backup), reason=why,
                                       removed=bool(params.get('remove_broken'))))
                if params.get('remove_broken'):
                    remove.append(backup)
            doomed_all += remove
            kept = [_remote_entry(rclone, host, e['item'], e['reasons']) for e in keep]
            removed = [_remote_entry(rclone, host, b) for b in remove]
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
        if doomed_all and not check_mode:
            delete_backups(rclone, host, doomed_all)
    result['changed'] = bool(result['removed'])
    result['diff'] = diffs
    return result, broken_warnings(result['broken'])


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


def _remote_entry(rclone, host, backup, reasons=None):
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
    def __init__(self, rclone, host, relpath):
        self.rclone = rclone
        self.relpath = relpath
        self.proc, self.err = rclone.stream(relpath, host)
        self.done = False

    def read(self, size=-1):
        data = self.proc.stdout.read(size)
        if not data and not self.done:
            self.done = True
            code = self.proc.wait()
            if code != 0:
                self.err.seek(0)
                message = self.err.read().decode('utf-8', 'replace')
                text = rclone_message(message, self.rclone.secrets)
                raise RemoteReadError('reading %s from remote %s failed (%s): %s; nothing was written from it' % (
                    self.relpath, self.rclone.display, explain(text) or 'rclone exited %d' % code, text))
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
