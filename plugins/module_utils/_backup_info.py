# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_info: the state of the backups in a destination, per volume folder (read-only)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os

from ansible_collections.holdfast.volumes.plugins.module_utils._restore_state import (
    DEFAULT_STATE_DIR,
    restore_leftovers,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._safe_fs import check_private_dir
from ansible_collections.holdfast.volumes.plugins.module_utils._store import backup_folders, list_backups
from ansible_collections.holdfast.volumes.plugins.module_utils._verify import check_backup


def folder_state(folder, verify, now):
    scan = list_backups(folder)
    backups = scan['complete']
    sizes = [b['manifest'].get('bytes_stored') or 0 for b in backups]
    newest = backups[0] if backups else None
    state = dict(folder=folder, volume=newest['manifest'].get('volume') if newest else os.path.basename(folder),
                 count=len(backups), bytes=sum(sizes), temporaries=len(scan['temps']), orphans=len(scan['orphans']),
                 unreadable_manifests=len(scan['bad_manifests']), newest=None,
                 inconsistent=sum(1 for b in backups if b['manifest'].get('consistent') is False))
    if newest:
        manifest = newest['manifest']
        broken = check_backup(newest, verify)
        state['newest'] = dict(archive=newest['archive_path'], created=manifest.get('created'),
                               age_seconds=int((now - newest['time']).total_seconds()),
                               bytes=manifest.get('bytes_stored'), file_count=manifest.get('file_count'),
                               compression=manifest.get('compression'),
                               encrypted=bool(manifest.get('encryption')),
                               recipients=(manifest.get('encryption') or {}).get('recipients', []),
                               verified=verify != 'none' and broken is None, verify=verify, problem=broken,
                               consistent=_flag(manifest.get('consistent')), quiesce=manifest.get('quiesce'),
                               quiesced=_flag(manifest.get('quiesced')))
        state['oldest_created'] = backups[-1]['manifest'].get('created')
    return state


def _flag(value):
    """A manifest's true/false record, or None (older manifests, or not a bool: manifests are hostile input)."""
    return value if isinstance(value, bool) else None


def run_backup_info(params):
    now = datetime.datetime.now(datetime.timezone.utc)
    folders = backup_folders(params['dest'], params.get('volumes'))
    for folder in folders:  # what another user could plant there is not reported as root's backups
        if os.path.lexists(folder):
            check_private_dir(folder, 'the backup folder')
    return dict(changed=False, backups=[folder_state(f, params.get('verify') or 'size', now) for f in folders],
                restore_leftovers=restore_leftovers(params.get('state_dir') or DEFAULT_STATE_DIR))
