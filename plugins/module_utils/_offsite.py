# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_sync, the doing part: verified offsite copies of a local backup store through rclone; and the remote
side of backup_info and backup_rotation (the remote store itself: _remote_store.py).

Remote layout: <remote.path>/<host>/<volume folder>/<archive> and <...>.manifest.json, the local layout under a
host name, so one bucket holds a fleet and a replacement host finds another host's backups by that name.

One run:
1. one recursive listing of <path>/<host> (names and sizes);
2. plan, per complete local backup: present on the remote (manifest there, archive of the manifest's size) or to
   copy (no manifest: never copied, or a killed upload); a remote manifest whose archive is missing or of the wrong
   size is repaired the same way (uploaded again once the local archive proved sound; nothing is ever deleted);
3. the archives to copy are read locally once (sha256 against the local manifest, md5 for the remote's check),
   while rclone uploads them: a local archive that fails its own manifest never gets a manifest on the remote;
4. each uploaded archive is verified: by the md5 the remote computes when it can be trusted to (S3 single-part
   ETag, SFTP md5sum on the server; rclone copy reports it after each upload, a hashsum run covers the rest) against
   this module's md5 of the local archive (sha256-checked in step 3); else by reading it back (cat into sha256);
5. the manifests of the verified archives are uploaded last: a reader of the remote only sees complete backups.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import hashlib
import os
import re
import threading

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._rclone import Rclone
from ansible_collections.holdfast.volumes.plugins.module_utils._remote_store import (
    CHUNK,
    REMOTE_SPEC,
    check_remote_backup,
    delete_backups,
    host_folder,
    plan_remote_rotation,
    read_back_sha256,
    scan_remote,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._retention import (
    POLICY_KEYS,
    parse_time,
    validate_policy,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._store import (
    FolderLock,
    backup_folders,
    list_backups,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._verify import broken_warnings

BWLIMIT_RE = re.compile(r'^(off|\d+(\.\d+)?[BKMGTP]?(:\d+(\.\d+)?[BKMGTP]?)?)$', re.IGNORECASE)
SINGLE_PART_LIMIT = 5 * 1024 ** 3  # --s3-upload-cutoff 5G
# backends whose md5 is computed by the server from the stored bytes (for s3 only for single-part objects)
TRUSTED_MD5 = ('s3', 'sftp', 'local')

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


def validate_sync(params):
    dest = params.get('dest')
    if not dest or not os.path.isabs(dest):
        raise HoldfastError("dest must be an absolute directory path, got %r." % dest)
    source = host_folder(params.get('host'))
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


def _rel(item):
    return '%s/%s' % (item['folder'], item['backup']['archive'])


def _sound(item, got):
    return isinstance(got, tuple) and got[0] == item['backup']['manifest'].get('sha256')


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
    present, to_copy = plan_sync(local, rclone.list_files(source))
    result = dict(changed=bool(to_copy), remote=rclone.display, host=source, present=len(present),
                  copied=[], not_copied=[], bytes_copied=0, verify=verify)
    before = sorted(_manifest_rel(p) for p in present)
    header = '%s/%s' % (rclone.display, source)
    result['diff'] = dict(before_header=header, after_header=header, before=_lines(before),
                          after=_lines(sorted(before + [_manifest_rel(c) for c in to_copy])))
    if check_mode:
        result['copied'] = [dict(_entry(c, source), repaired=c['repair'], verified_by=None) for c in to_copy]
    elif to_copy:
        trusted_md5 = rclone.type in TRUSTED_MD5 and verify in ('auto', 'hash')
        local_ok = _upload_archives(rclone, params, source, to_copy, trusted_md5, result)
        verified = _verify_copies(rclone, source, verify, local_ok, trusted_md5, result)
        _upload_manifests(rclone, params, source, verified, result)
        result['changed'] = bool(result['copied'])
        copied = ['%s/%s' % (e['folder'], os.path.basename(e['remote_manifest'])) for e in result['copied']]
        result['diff']['after'] = _lines(sorted(before + copied))
    result['rclone_runs'] = list(rclone.runs)
    for item in result['not_copied']:
        warnings.append('not copied: %s: %s' % (item['remote_archive'], item['reason']))
    if result['not_copied']:
        reasons = '; '.join('%s: %s' % (f['archive'], f['reason']) for f in result['not_copied'][:5])
        details = dict((k, v) for k, v in result.items() if k != 'diff')
        raise HoldfastError('backup_sync could not copy %d backup(s) (copied %d): %s'
                            % (len(result['not_copied']), len(result['copied']), reasons), **details)
    return result, warnings


def _manifest_rel(item):
    return '%s/%s' % (item['folder'], item['backup']['manifest_name'])


def _lines(names):
    return ''.join(n + '\n' for n in names)


def _upload_archives(rclone, params, source, to_copy, trusted_md5, result):
    """3. Read the local archives (sha256 against their manifests, md5 for the remote) while rclone uploads them.

    Returns [(relative path, item, md5, size, the md5 rclone compared after the upload or None)] of the archives
    that match their manifests and arrived; the others go to result['not_copied']. Fails when the upload failed and
    none arrived."""
    hashes = {}
    # a repair replaces an archive the remote already lists under its manifest: the local copy is read first, so a
    # local archive that rotted never overwrites what may be the only sound copy
    repairs = [c for c in to_copy if c.get('repair')]
    _hash_all(repairs, trusted_md5, hashes)
    upload = [_rel(c) for c in to_copy if not c.get('repair') or _sound(c, hashes.get(id(c)))]
    hasher = threading.Thread(target=_hash_all, args=([c for c in to_copy if not c.get('repair')], trusted_md5, hashes))
    hasher.daemon = True
    hasher.start()
    rels = [_rel(c) for c in to_copy]
    seen_md5 = {} if trusted_md5 else None
    code, _out, upload_err = rclone.copy(params['dest'], upload, source, transfers=params.get('transfers') or 4,
                                         bwlimit=params.get('bwlimit'), seen_md5=seen_md5) if upload else (0, '', '')
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
            rclone.fail('Uploading %d archive(s)' % len(rels), upload_err, writing=True, answering=True)
    local_ok = []
    for rel, item in zip(rels, to_copy):
        got = hashes.get(id(item))
        if isinstance(got, OSError) or got is None:
            why = 'local archive unreadable: %s' % (getattr(got, 'strerror', None) or 'removed during the sync')
        elif got[0] != item['backup']['manifest'].get('sha256'):
            why = 'the local archive does not match its manifest (sha256 %s); not copied' % got[0]
        elif uploaded_listing is not None and uploaded_listing.get(rel) != got[2]:
            why = 'upload failed%s' % rclone.failure(upload_err, writing=True, answering=True)
        else:
            local_ok.append((rel, item, got[1], got[2], (seen_md5 or {}).get(rel)))
            continue
        result['not_copied'].append(dict(_entry(item, source), reason=why))
    return local_ok


def _verify_copies(rclone, source, verify, local_ok, trusted_md5, result):
    """4. Verify each uploaded archive: by the md5 the remote computes when it can be trusted, else by reading it
    back into sha256. Returns [(item, entry)] of the verified ones; the others go to result['not_copied']."""
    trusted = [ok for ok in local_ok if trusted_md5 and (rclone.type != 's3' or ok[3] <= SINGLE_PART_LIMIT)]
    # the md5 rclone compared after the upload is the remote's; only for the others is the remote asked again
    remote_md5 = dict((ok[0], ok[4]) for ok in trusted if ok[4])
    ask = [ok[0] for ok in trusted if not ok[4]]
    if ask:
        remote_md5.update(rclone.hashes(source, ask))
    verified = []
    for rel, item, md5, _size, _seen in local_ok:
        theirs = remote_md5.get(rel)
        entry = dict(_entry(item, source), repaired=item['repair'])
        why = None
        if theirs and re.match(r'^[0-9a-f]{32}$', theirs):
            if theirs != md5:
                why = ('the remote md5 %s differs from the local archive (%s): the copy is corrupt; its manifest was '
                       'not uploaded' % (theirs, md5))
            entry['verified_by'] = 'remote md5'
        elif verify == 'hash':
            why = 'the remote computes no md5 for this object; use verify: auto or read'
        else:
            why = _read_back(rclone, rel, source, item['backup']['manifest'].get('sha256'))
            entry['verified_by'] = 'read back sha256'
        if why:
            entry.pop('verified_by', None)
            result['not_copied'].append(dict(entry, reason=why))
        else:
            verified.append((item, entry))
    return verified


def _read_back(rclone, rel, source, sha256):
    """None when the copy read back matches sha256, else why not."""
    try:
        digest, got_size = read_back_sha256(rclone, rel, source)
    except HoldfastError as exc:  # one unreadable copy must not keep the others from their manifests
        return exc.msg
    if digest != sha256:
        return 'read back: sha256 %s (%d bytes) does not match the manifest; its manifest was not uploaded' % (
            digest, got_size)
    return None


def _upload_manifests(rclone, params, source, verified, result):
    """5. The manifests last: a reader of the remote only ever sees complete backups."""
    if not verified:
        return
    mrels = [_manifest_rel(item) for item, _e in verified]
    code, _out, err = rclone.copy(params['dest'], mrels, source, transfers=params.get('transfers') or 4,
                                  what='Uploading manifests')
    if code != 0:
        rclone.fail('Uploading %d manifest(s)' % len(mrels), err, writing=True)
    for _item, entry in verified:
        result['copied'].append(entry)
        result['bytes_copied'] += entry['bytes'] or 0


# -- backup_info and backup_rotation on the remote store -------------------------------------------------------

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
                broken = check_remote_backup(rclone, host, newest, verify)
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
        doomed_all = plan_remote_rotation(rclone, host, scans, dict(
            rules=rules, now=now, verify=verify, remove_broken=params.get('remove_broken')), result, diffs)
        if doomed_all and not check_mode:
            delete_backups(rclone, host, doomed_all)
    result['changed'] = bool(result['removed'])
    result['diff'] = diffs
    return result, broken_warnings(result['broken'])
