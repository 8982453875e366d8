# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_sync, the doing part: verified offsite copies of a local backup store through rclone.

Remote layout: <remote.path>/<host>/<volume folder>/<archive> and <...>.manifest.json, the local layout under a
host name, so one bucket holds a fleet and a replacement host finds another host's backups by that name.

One run:
1. one recursive listing of <path>/<host> (names and sizes);
2. plan, per complete local backup: present on the remote (manifest there, archive of the manifest's size) or to
   copy (no manifest: never copied, or a killed upload); a remote manifest whose archive is missing or of the wrong
   size is repaired the same way (the archive is uploaded again; nothing is ever deleted on the remote);
3. the archives to copy are read locally once (sha256 against the local manifest, md5 for the remote's check),
   while rclone uploads them: a local archive that fails its own manifest never gets a manifest on the remote;
4. each uploaded archive is verified against the manifest's sha256: by the md5 the remote computes itself when it
   can be trusted to (S3 single-part uploads: the ETag; SFTP: md5sum run on the server), else by reading it back
   (rclone cat into sha256);
5. the manifests of the verified archives are uploaded last, so a reader of the remote only ever sees complete
   backups.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import atexit
import datetime
import hashlib
import os
import re
import socket
import threading

from ansible_collections.holdfast.volumes.plugins.module_utils._archive import (
    MANIFEST_MAX,
    MANIFEST_SUFFIX,
    backup_folders,
    classify_folder,
    list_backups,
    read_manifest,
    safe_folder_name,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._backup import FolderLock
from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._rclone import Rclone, explain, rclone_message
from ansible_collections.holdfast.volumes.plugins.module_utils._retention import (
    POLICY_KEYS,
    apply_policy,
    parse_time,
    validate_policy,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._rotation import broken_warnings

CHUNK = 4 * 1024 * 1024
HOST_RE = re.compile(r'^[A-Za-z0-9_.@-]+$')
BWLIMIT_RE = re.compile(r'^(off|\d+(\.\d+)?[BKMGTP]?(:\d+(\.\d+)?[BKMGTP]?)?)$', re.IGNORECASE)
SINGLE_PART_LIMIT = 5 * 1024 ** 3  # --s3-upload-cutoff 5G
# backends whose md5 is computed by the server from the stored bytes (for s3 only for single-part objects)
TRUSTED_MD5 = ('s3', 'sftp', 'local')

REMOTE_SPEC = dict(
    type=dict(type='str', required=True),
    path=dict(type='str', required=True),
    options=dict(type='dict', default={}, no_log=True),
)
SYNC_OPTIONS = dict(
    dest=dict(type='path', required=True),
    volumes=dict(type='list', elements='str'),
    remote=dict(type='dict', required=True, options=REMOTE_SPEC),
    host=dict(type='str'),
    verify=dict(type='str', default='auto', choices=['auto', 'hash', 'read']),
    transfers=dict(type='int', default=4),
    bwlimit=dict(type='str'),
    rclone_path=dict(type='path'),
    lock_timeout=dict(type='int', default=600),
)


def default_source():
    return socket.gethostname().split('.')[0] or 'localhost'


def validate_sync(params):
    dest = params.get('dest')
    if not dest or not os.path.isabs(dest):
        raise HoldfastError("dest must be an absolute directory path, got %r." % dest)
    source = params.get('host') or default_source()
    if not HOST_RE.match(source) or source in ('.', '..'):
        raise HoldfastError("host must be a host name (letters, digits, . _ @ -), got %r." % source)
    if (params.get('transfers') or 0) < 1:
        raise HoldfastError("transfers must be 1 or more.")
    if params.get('bwlimit') and not BWLIMIT_RE.match(params['bwlimit']):
        raise HoldfastError("bwlimit must be a rate such as 10M (bytes per second, rclone's --bwlimit), got %r."
                            % params['bwlimit'])
    return source


def plan_sync(local, remote_files):
    """Pure: which local backups the remote lacks.

    local: [(folder name, backup)] with backup = dict(manifest, archive name, manifest name);
    remote_files: {relative path: size}. Returns (present, to_copy) lists of the same items; an item of to_copy
    carries 'repair': True when the remote has its manifest but not a matching archive."""
    present, to_copy = [], []
    for folder, backup in local:
        rel_archive = '%s/%s' % (folder, backup['archive'])
        rel_manifest = '%s/%s' % (folder, backup['manifest_name'])
        size = backup['manifest'].get('bytes_stored')
        has_manifest = rel_manifest in remote_files
        archive_ok = rel_archive in remote_files and (size is None or remote_files[rel_archive] == size)
        # a manifest cut off while it was written (SFTP writes in place) would otherwise count as present forever
        manifest_ok = has_manifest and backup.get('manifest_size') in (None, remote_files[rel_manifest])
        if manifest_ok and archive_ok:
            present.append(dict(folder=folder, backup=backup))
        else:
            to_copy.append(dict(folder=folder, backup=backup, repair=has_manifest,
                                partial=rel_archive in remote_files))
    return present, to_copy


def sync_lock(dest, timeout):
    """flock on <dest>/.holdfast-sync.lock: one sync of a store at a time (the store's folder lock, another name)."""
    return FolderLock(dest, timeout, name='.holdfast-sync.lock', holder='Another backup_sync of %s' % dest)


def hash_local(path, want_md5=True):
    """(sha256, md5 or None, size) of a local file in one read."""
    sha = hashlib.sha256()
    md5 = hashlib.md5() if want_md5 else None
    size = 0
    with open(path, 'rb', buffering=0) as handle:
        while True:
            block = handle.read(CHUNK)
            if not block:
                break
            sha.update(block)
            if md5 is not None:
                md5.update(block)
            size += len(block)
    return sha.hexdigest(), md5.hexdigest() if md5 is not None else None, size


def read_back_sha256(rclone, relpath, sub):
    """Stream a remote object through sha256: (digest, size) or raises with rclone's message."""
    proc, err = rclone.stream(relpath, sub)
    digest = hashlib.sha256()
    size = 0
    try:
        while True:
            block = proc.stdout.read(CHUNK)
            if not block:
                break
            digest.update(block)
            size += len(block)
    finally:
        proc.stdout.close()
        code = proc.wait()
        err.seek(0)
        stderr = err.read().decode('utf-8', 'replace')
        err.close()
    if code != 0:
        rclone.fail('Reading back %s' % relpath, stderr)
    return digest.hexdigest(), size


def local_backups(dest, volumes):
    """[(folder name, backup)] of the complete local backups, oldest first (the oldest are the most exposed)."""
    out, missing = [], []
    for folder in backup_folders(dest, volumes):
        if not os.path.isdir(folder):
            missing.append(os.path.basename(folder))
            continue
        for item in reversed(list_backups(folder)['complete']):
            out.append((os.path.basename(folder), dict(
                manifest=item['manifest'], archive=item['manifest']['archive'],
                manifest_name=os.path.basename(item['manifest_path']), archive_path=item['archive_path'],
                manifest_path=item['manifest_path'], time=item['time'],
                manifest_size=_size_or_none(item['manifest_path']))))
    return out, missing


def _size_or_none(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def _hash_all(items, want_md5, results):
    for item in items:
        try:
            results[id(item)] = hash_local(item['backup']['archive_path'], want_md5)
        except OSError as exc:
            results[id(item)] = exc


def _entry(item, source):
    backup = item['backup']
    return dict(volume=backup['manifest'].get('volume'), folder=item['folder'], archive=backup['archive'],
                remote_archive='%s/%s/%s' % (source, item['folder'], backup['archive']),
                remote_manifest='%s/%s/%s' % (source, item['folder'], backup['manifest_name']),
                created=backup['manifest'].get('created'), bytes=backup['manifest'].get('bytes_stored'),
                sha256=backup['manifest'].get('sha256'))


def run_sync(params, check_mode=False):
    source = validate_sync(params)
    dest = params['dest']
    verify = params.get('verify') or 'auto'
    if not os.path.isdir(dest):
        raise HoldfastError("dest %s is not a directory." % dest)
    with Rclone(params['remote'], params.get('rclone_path')) as rclone:
        if check_mode and not os.path.exists(os.path.join(dest, '.holdfast-sync.lock')):
            return _sync(rclone, params, source, verify, check_mode)
        with sync_lock(dest, params.get('lock_timeout', 600)):
            return _sync(rclone, params, source, verify, check_mode)


def _sync(rclone, params, source, verify, check_mode):
    dest = params['dest']
    local, missing = local_backups(dest, params.get('volumes'))
    warnings = ['no local backups of %s in %s' % (name, dest) for name in missing]
    remote_files = rclone.list_files(source)
    present, to_copy = plan_sync(local, remote_files)
    result = dict(changed=bool(to_copy), remote=rclone.display, host=source, present=len(present),
                  copied=[], not_copied=[], bytes_copied=0, verify=verify)
    before = sorted('%s/%s' % (p['folder'], p['backup']['manifest_name']) for p in present)
    after = sorted(before + ['%s/%s' % (c['folder'], c['backup']['manifest_name']) for c in to_copy])
    result['diff'] = dict(before_header='%s/%s' % (rclone.display, source), after_header='%s/%s' % (
        rclone.display, source), before=''.join(n + '\n' for n in before), after=''.join(n + '\n' for n in after))
    if check_mode:
        result['copied'] = [dict(_entry(c, source), repaired=c['repair'], verified_by=None) for c in to_copy]
        result['rclone_runs'] = list(rclone.runs)
        return result, warnings
    if not to_copy:
        result['rclone_runs'] = list(rclone.runs)
        return result, warnings

    trusted_md5 = rclone.type in TRUSTED_MD5 and verify in ('auto', 'hash')
    # 3. read the local archives (sha256 against their manifests, md5 for the remote) while rclone uploads them
    hashes = {}
    hasher = threading.Thread(target=_hash_all, args=(to_copy, trusted_md5, hashes))
    hasher.daemon = True
    hasher.start()
    rels = ['%s/%s' % (c['folder'], c['backup']['archive']) for c in to_copy]
    code, _out, upload_err = rclone.copy(dest, rels, source, transfers=params.get('transfers') or 4,
                                         bwlimit=params.get('bwlimit'))
    hasher.join()
    uploaded_listing = None
    if code != 0:
        # some may have arrived: look once at what is there now (sizes), verify those, report the rest
        try:
            uploaded_listing = rclone.list_files(source)
        except HoldfastError:
            rclone.fail('Uploading %d archive(s)' % len(rels), upload_err, writing=True)
        if not any(uploaded_listing.get(r) == c['backup']['manifest'].get('bytes_stored')
                   for r, c in zip(rels, to_copy)):
            rclone.fail('Uploading %d archive(s)' % len(rels), upload_err, writing=True)

    # 4. verify each uploaded archive
    local_ok, candidates = [], []
    for rel, item in zip(rels, to_copy):
        backup = item['backup']
        got = hashes.get(id(item))
        if isinstance(got, OSError) or got is None:
            why = 'local archive unreadable: %s' % (getattr(got, 'strerror', None) or 'removed during the sync')
            result['not_copied'].append(dict(_entry(item, source), reason=why))
            continue
        sha, md5, size = got
        if sha != backup['manifest'].get('sha256'):
            result['not_copied'].append(dict(_entry(item, source), reason='the local archive does not match its '
                                             'manifest (sha256 %s); not copied' % sha))
            continue
        if uploaded_listing is not None and uploaded_listing.get(rel) != size:
            result['not_copied'].append(dict(_entry(item, source), reason='upload failed%s' % (
                rclone.failure(upload_err, writing=True))))
            continue
        local_ok.append((rel, item, md5, size))
        candidates.append(rel)
    remote_md5 = {}
    if trusted_md5 and candidates:
        remote_md5 = rclone.hashes(source, [r for r, item, md5, size in local_ok
                                            if rclone.type != 's3' or size <= SINGLE_PART_LIMIT])
    verified = []
    for rel, item, md5, _size in local_ok:
        theirs = remote_md5.get(rel)
        entry = dict(_entry(item, source), repaired=item['repair'])
        if theirs and re.match(r'^[0-9a-f]{32}$', theirs):
            if theirs != md5:
                result['not_copied'].append(dict(entry, reason='the remote md5 %s differs from the local archive (%s): '
                                                 'the copy is corrupt; its manifest was not uploaded' % (theirs, md5)))
                continue
            entry['verified_by'] = 'remote md5'
        elif verify == 'hash':
            result['not_copied'].append(dict(entry, reason='the remote computes no md5 for this object; use verify: '
                                             'auto or read'))
            continue
        else:
            try:
                digest, got_size = read_back_sha256(rclone, rel, source)
            except HoldfastError as exc:  # one unreadable copy must not keep the others from their manifests
                result['not_copied'].append(dict(entry, reason=exc.msg))
                continue
            if digest != item['backup']['manifest'].get('sha256'):
                result['not_copied'].append(dict(entry, reason='read back: sha256 %s (%d bytes) does not match the '
                                                 'manifest; its manifest was not uploaded' % (digest, got_size)))
                continue
            entry['verified_by'] = 'read back sha256'
        verified.append((item, entry))

    # 5. the manifests last
    if verified:
        mrels = ['%s/%s' % (item['folder'], item['backup']['manifest_name']) for item, _e in verified]
        code, _out, err = rclone.copy(dest, mrels, source, transfers=params.get('transfers') or 4,
                                      what='Uploading manifests')
        if code != 0:
            rclone.fail('Uploading %d manifest(s)' % len(mrels), err, writing=True)
        for _item, entry in verified:
            result['copied'].append(entry)
            result['bytes_copied'] += entry['bytes'] or 0
    result['changed'] = bool(result['copied'])
    result['rclone_runs'] = list(rclone.runs)
    copied = set('%s/%s' % (e['folder'], os.path.basename(e['remote_manifest'])) for e in result['copied'])
    result['diff']['after'] = ''.join(n + '\n' for n in sorted(before + list(copied)))
    for item in result['not_copied']:
        warnings.append('not copied: %s: %s' % (item['remote_archive'], item['reason']))
    if result['not_copied']:
        reasons = '; '.join('%s: %s' % (f['archive'], f['reason']) for f in result['not_copied'][:5])
        details = dict((k, v) for k, v in result.items() if k != 'diff')
        raise HoldfastError('backup_sync could not copy %d backup(s) (copied %d): %s'
                            % (len(result['not_copied']), len(result['copied']), reasons), **details)
    return result, warnings


# -- the remote as a backup store: backup_info, backup_rotation and volume_restore with `remote` --------------------

REMOTE_STORE_OPTIONS = dict(
    remote=dict(type='dict', options=REMOTE_SPEC),
    host=dict(type='str'),
    rclone_path=dict(type='path'),
)


def _remote_host(params):
    host = params.get('host') or default_source()
    if not HOST_RE.match(host) or host in ('.', '..'):
        raise HoldfastError("host must be a host name (letters, digits, . _ @ -), got %r." % host)
    return host


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
            actual, _size = read_back_sha256(rclone, backup['archive_path'], host)
        except HoldfastError as exc:
            return 'archive unreadable: %s' % exc.msg
        if actual != manifest.get('sha256'):
            return 'sha256 %s does not match the manifest (%s)' % (actual, manifest.get('sha256'))
    return None


def run_remote_info(params):
    now = datetime.datetime.now(datetime.timezone.utc)
    host = _remote_host(params)
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
    host = _remote_host(params)
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
            done, rclone.display, len(paths), what, rclone.failure(err, writing=True)), remote=rclone.display,
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
        return _RemoteStream(self.rclone, self.host, self.relpath)


class RemoteReadError(OSError, HoldfastError):
    """A download cut off or refused: an OSError for the readers of archives (which treat it as a read error), and
    a HoldfastError (a clear message, never a traceback) where nothing catches it."""

    def __init__(self, msg):
        OSError.__init__(self, msg)
        self.msg = msg
        self.details = {}


class _RemoteStream(object):
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
    host = _remote_host(params)
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
