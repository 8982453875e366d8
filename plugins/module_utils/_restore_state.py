# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The restore state directory: markers of finished restores (idempotence: the same archive, the content unchanged),
journal entries of restores in progress (what a killed restore left behind, for backup_info), and the fingerprint
of a restored tree."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import stat
import time

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._safe_fs import check_private_dir
from ansible_collections.holdfast.volumes.plugins.module_utils._store import write_json_atomic
from ansible_collections.holdfast.volumes.plugins.module_utils._verify import sha256_file

DEFAULT_STATE_DIR = '/var/lib/holdfast-volumes/restored'
JOURNAL_SUFFIX = '.staging.json'


def tree_fingerprint(root):
    """Cheap summary of a tree (entries, bytes, newest mtime, ownership sum) to see whether it changed."""
    entries = total = 0
    newest = 0
    owners = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            entries += 1
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
            newest = max(newest, st.st_mtime_ns)
            owners += st.st_uid * 7 + st.st_gid * 13 + stat.S_IMODE(st.st_mode)
    st = os.lstat(root)
    return dict(entries=entries, bytes=total, newest_mtime_ns=newest, owners=owners,
                root_mode=stat.S_IMODE(st.st_mode), root_uid=st.st_uid, root_gid=st.st_gid)


def marker_path(state_dir, key):
    return os.path.join(state_dir, hashlib.sha256(key.encode('utf-8')).hexdigest()[:24] + '.json')


def journal(state_dir, key, staging_path, token):
    """Note a restore in progress (its staging directory) in the state directory, so that backup_info can report
    what a killed restore left behind. Returns the journal file, or None when it cannot be written."""
    try:
        if not os.path.isdir(state_dir):
            os.makedirs(state_dir, mode=0o700)
        check_private_dir(state_dir, 'the restore state directory')
        path = marker_path(state_dir, key)[:-len('.json')] + '-%s%s' % (token, JOURNAL_SUFFIX)
        write_json_atomic(path, dict(target=key, staging=staging_path, pid=os.getpid(),
                                     started=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())))
        return path
    except (OSError, HoldfastError):
        return None


def forget_journal(state_dir, key):
    """Drop the journal entries of this target whose staging directory is gone."""
    prefix = os.path.basename(marker_path(state_dir, key))[:-len('.json')] + '-'
    try:
        names = [n for n in os.listdir(state_dir) if n.startswith(prefix) and n.endswith(JOURNAL_SUFFIX)]
    except OSError:
        return
    for name in names:
        path = os.path.join(state_dir, name)
        try:
            with open(path) as handle:
                staging = json.load(handle).get('staging')
            if not staging or not os.path.lexists(staging):
                os.unlink(path)
        except (OSError, ValueError, AttributeError):
            pass


def restore_leftovers(state_dir):
    """Restores that did not finish (killed): their staging directories that still exist. Read-only."""
    out = []
    try:
        names = sorted(n for n in os.listdir(state_dir) if n.endswith(JOURNAL_SUFFIX))
    except OSError:
        return out
    for name in names:
        try:
            with open(os.path.join(state_dir, name)) as handle:
                entry = json.load(handle)
        except (OSError, ValueError):
            continue
        if isinstance(entry, dict) and entry.get('staging') and os.path.lexists(entry['staging']):
            out.append(dict(target=entry.get('target'), staging=entry['staging'], started=entry.get('started')))
    return out


def already_restored(state_dir, key, archive, manifest, directory):
    """The archive's sha256 when it was restored into directory before and the content is unchanged since (the
    marker of that restore matches); else None."""
    marker_file = marker_path(state_dir, key)
    if not (directory and os.path.isdir(directory) and os.path.isfile(marker_file)):
        return None
    try:
        with open(marker_file) as handle:
            marker = json.load(handle)
        archive_sha = (manifest or {}).get('sha256') or sha256_file(archive)
        if marker.get('sha256') == archive_sha and marker.get('fingerprint') == tree_fingerprint(directory):
            return archive_sha
    except (OSError, ValueError):
        pass
    return None


def write_marker(state_dir, key, archive, sha256, directory):
    """Note a finished host restore (best effort: a restore that worked is not failed for its marker)."""
    try:
        if not os.path.isdir(state_dir):
            os.makedirs(state_dir, mode=0o700)
        check_private_dir(state_dir, 'the restore state directory')
        write_json_atomic(marker_path(state_dir, key), dict(
            target=key, sha256=sha256, archive=archive,
            restored_at=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), fingerprint=tree_fingerprint(directory)))
    except (OSError, HoldfastError):
        pass
