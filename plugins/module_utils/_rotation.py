# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_rotation, the doing part: which backups of a folder to remove, and removing them safely.

Safe by construction:
- only complete backups (manifest + the archive it names) are candidates; times come from manifests, never mtimes;
- temporaries and archives without manifest are touched only when older than a threshold; unknown files never;
- a backup whose archive does not match its manifest (size, or sha256 when verified) is broken: reported, never
  counted as kept, removed only with remove_broken;
- the newest complete, sound backup is never removed;
- removal deletes the manifest first (from then on the backup no longer counts), fsyncs, then the archive.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import os
import stat
import time
from contextlib import nullcontext

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError, refuse_negative
from ansible_collections.holdfast.volumes.plugins.module_utils._retention import (
    POLICY_KEYS,
    parse_time,
    plan_backups,
    validate_policy,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._store import (
    FolderLock,
    backup_folders,
    list_backups,
    open_backup_folder,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._verify import broken_warnings, check_backup

# The options of backup_rotation (its argument spec, and the defaults of the scheduled runner's jobs).
ROTATION_OPTIONS = dict(
    dest=dict(type='path', required=True),
    volume=dict(type='str'),
    timezone=dict(type='str'),
    verify=dict(type='str', default='sha256', choices=['sha256', 'size', 'none']),
    remove_broken=dict(type='bool', default=False),
    stale_age=dict(type='int', default=86400),
    now=dict(type='str'),
    lock_timeout=dict(type='int', default=600),
)
# the policy's rules, as the retention helper knows them: counts are ints, durations strings
ROTATION_OPTIONS.update((rule, dict(type='str' if rule.startswith('keep_within') else 'int')) for rule in POLICY_KEYS)


# How a folder is rotated: the validated retention rules, "now" (None: the clock), the verify level of each backup
# (sha256, size, none) and the age after which temporaries and orphan archives are stale (seconds).
Rotation = collections.namedtuple('Rotation', 'rules now verify stale_age')


def _entry(backup, reasons=None):
    out = dict(archive=backup['archive_path'], manifest=backup['manifest_path'],
               created=backup['manifest'].get('created'), bytes=backup['manifest'].get('bytes_stored'))
    if reasons is not None:
        out['reasons'] = reasons
    return out


def _unlink_all(folder_fd, paths, tolerate=(FileNotFoundError,)):
    """Remove regular files of the folder open as folder_fd, by their names relative to it (never by path, never
    a symlink or anything but a regular file), skipping those that fail with a tolerated error; returns (bytes
    freed, paths removed)."""
    freed, removed = 0, []
    for path in paths:
        name = os.path.basename(path)
        try:
            st = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                continue
            os.unlink(name, dir_fd=folder_fd)
        except tolerate:
            continue
        freed += st.st_size
        removed.append(path)
    return freed, removed


def _remove_backups(folder_fd, backups):
    """Manifests first (fsync: from then on these backups no longer count), then the archives. Bytes freed."""
    if not backups:
        return 0
    freed = _unlink_all(folder_fd, (b['manifest_path'] for b in backups))[0]
    os.fsync(folder_fd)
    freed += _unlink_all(folder_fd, (b['archive_path'] for b in backups))[0]
    os.fsync(folder_fd)
    return freed


def plan_folder(folder, how):
    """What the rotation of one folder would do (how: a Rotation). Reads, removes nothing."""
    rules, now, verify, stale_age = how
    scan = list_backups(folder)
    sound, broken = [], []
    for backup in scan['complete']:
        why = check_backup(backup, verify)
        if why:
            broken.append(dict(_entry(backup), reason=why, _backup=backup))
        else:
            sound.append(backup)
    keep, remove = plan_backups(sound, rules, now=now)
    cutoff = time.time() - stale_age
    stale = []
    for name in scan['temps'] + scan['orphans']:
        path = os.path.join(folder, name)
        try:
            if os.lstat(path).st_mtime < cutoff:
                stale.append(path)
        except OSError:
            pass
    return dict(keep=keep, remove=remove, broken=broken, stale=stale, unknown=scan['unknown'],
                bad_manifests=scan['bad_manifests'])


def _rotate_folder(folder, folder_fd, params, how, check_mode):
    """Plan and (unless check_mode) apply the rotation of one folder, open as folder_fd and locked."""
    plan = plan_folder(folder, how)
    before = sorted(os.path.basename(b['manifest_path']) for b in
                    [e['item'] for e in plan['keep']] + plan['remove'] + [x['_backup'] for x in plan['broken']])
    doomed = list(plan['remove'])
    broken_out = []
    for item in plan['broken']:
        backup = item.pop('_backup')
        item['removed'] = bool(params.get('remove_broken'))
        if params.get('remove_broken'):
            doomed.append(backup)
        broken_out.append(item)
    removed = [_entry(b) for b in doomed]
    if check_mode:
        freed = sum((b['manifest'].get('bytes_stored') or 0) for b in doomed)
    else:
        freed = _remove_backups(folder_fd, doomed)
    cleaned = list(plan['stale'])
    if not check_mode:
        stale_freed, cleaned = _unlink_all(folder_fd, cleaned, tolerate=OSError)
        freed += stale_freed
    kept = [_entry(e['item'], e['reasons']) for e in plan['keep']]
    return kept, removed, broken_out, cleaned, freed, plan, before


def run_rotation(params, check_mode=False):
    policy = dict((k, params.get(k)) for k in POLICY_KEYS if params.get(k) not in (None, ''))
    if params.get('timezone'):
        policy['timezone'] = params['timezone']
    rules = validate_policy(policy)
    refuse_negative(params, 'lock_timeout')
    dest = params['dest']
    now = parse_time(params['now'], 'now') if params.get('now') else None
    folders = backup_folders(dest, [params['volume']] if params.get('volume') else None)
    if params.get('volume') and not os.path.isdir(folders[0]):
        raise HoldfastError("No backup folder for %s in %s." % (params['volume'], dest))
    how = Rotation(rules, now, params.get('verify') or 'sha256', params.get('stale_age', 86400))
    result = dict(changed=False, kept=[], removed=[], broken=[], cleaned=[], bytes_freed=0, folders=[])
    diffs = []
    for folder in folders:
        if not os.path.lexists(folder):
            continue  # the folder of a volume with no backups yet: nothing to rotate (the plan is empty)
        folder_fd = open_backup_folder(folder)
        try:
            use_lock = not check_mode or '.lock' in os.listdir(folder_fd)
            ctx = FolderLock(folder, params.get('lock_timeout', 600), dir_fd=folder_fd) if use_lock else nullcontext()
            with ctx:
                rotated = _rotate_folder(folder, folder_fd, params, how, check_mode)
        finally:
            os.close(folder_fd)
        kept, removed, broken_out, cleaned, freed, plan, before = rotated
        result['kept'] += kept
        result['removed'] += removed
        result['broken'] += broken_out
        result['cleaned'] += cleaned
        result['bytes_freed'] += freed
        result['folders'].append(dict(folder=folder, kept=len(kept), removed=len(removed), broken=len(broken_out),
                                      cleaned=len(cleaned), unknown=plan['unknown'],
                                      bad_manifests=plan['bad_manifests']))
        if removed or cleaned:
            gone = set(os.path.basename(r['manifest']) for r in removed)
            after = [n for n in before if n not in gone]
            diffs.append(dict(before_header=folder, after_header=folder,
                              before='\n'.join(before) + '\n', after='\n'.join(after) + ('\n' if after else '')))
    result['changed'] = bool(result['removed'] or result['cleaned'])
    result['diff'] = diffs
    return result, broken_warnings(result['broken'])
