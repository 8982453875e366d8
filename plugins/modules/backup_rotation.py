#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: backup_rotation
short_description: Apply a retention policy (restic forget semantics) to the backups in a destination
version_added: 0.1.0
description:
  - Keeps the backups of one volume (or of every volume folder) in a destination directory that a policy selects,
    and removes the others. The policy has the semantics of restic's C(forget), see the
    P(holdfast.volumes.retention_plan#filter) filter, which applies the same function to any list.
  - Times come from the manifests, never from file modification times.
  - Safe by construction. Only complete backups (archive plus manifest) are candidates. The newest sound backup is
    never removed. A backup whose archive does not match its manifest is reported as broken, never counted as kept,
    and removed only with O(remove_broken). Unknown files are never touched. Temporaries and archives without a
    manifest are removed only when older than O(stale_age).
  - Removal deletes the manifest first, so from then on the backup no longer counts. Then it deletes the archive.
    A crash in between leaves an archive without manifest, which a later run cleans up.
  - With O(remote), the same policy and safety apply to the copies that M(holdfast.volumes.backup_sync) made
    (O(verify=sha256) reads each archive back from the remote). Manifests are deleted in one rclone run, then the
    archives in another. Archives without a manifest are listed in C(orphans) of RV(folders) but never removed on a
    remote (one may be an upload in progress; the next backup_sync completes it). O(stale_age) and
    O(lock_timeout) apply to local destinations only.
author:
  - holdfast.volumes developers (@holdfast)
extends_documentation_fragment:
  - holdfast.volumes.backup
  - holdfast.volumes.offsite.remote_store
  - holdfast.volumes.retention
options:
  dest:
    description:
      - The backup destination directory (the O(holdfast.volumes.volume_backup#module:dest) of the backups).
      - Exactly one of O(dest) and O(remote) is required.
    type: path
  volume:
    description:
      - The volume (or host path, as it was backed up) whose folder to rotate. Every folder of O(dest) when omitted.
    type: str
  verify:
    description:
      - How to check that each archive still matches its manifest. V(sha256) reads every archive, V(size) compares
        sizes only, V(none) trusts the files.
    type: str
    choices: [sha256, size, none]
    default: sha256
  remove_broken:
    description: Remove broken backups (archive does not match its manifest).
    type: bool
    default: false
  stale_age:
    description: Seconds after which temporaries and archives without a manifest are removed.
    type: int
    default: 86400
  now:
    description:
      - The current time as ISO 8601 (backups after it count as in the future). Defaults to the host's clock.
        Meant for reproducible runs and tests.
    type: str
attributes:
  check_mode:
    support: full
    description: Lists exactly what would be removed and why the rest is kept; removes nothing.
  diff_mode:
    support: full
    description: Shows the manifests of each folder before and after.
seealso:
  - module: holdfast.volumes.volume_backup
'''

EXAMPLES = r'''
- name: Keep 7 daily, 4 weekly, 12 monthly and all yearly backups of shop_db
  holdfast.volumes.backup_rotation:
    dest: /srv/backups
    volume: shop_db
    keep_daily: 7
    keep_weekly: 4
    keep_monthly: 12
    keep_yearly: -1
    timezone: Europe/Berlin

- name: Everything of the last 48 hours, then one per day for a month, for every volume
  holdfast.volumes.backup_rotation:
    dest: /srv/backups
    keep_within: 48h
    keep_within_daily: 1m

- name: The same policy offsite, on the copies of this host that backup_sync made
  holdfast.volumes.backup_rotation:
    remote: "{{ offsite_remote }}"
    host: "{{ inventory_hostname }}"
    keep_daily: 14
    keep_monthly: 12
'''

RETURN = r'''
kept:
  description: Backups kept, newest first, with the rules that keep them (V(last), V(daily), V(within 7d), ...).
  returned: always
  type: list
  elements: dict
  sample: [{archive: /srv/backups/db/db-20261126T020000Z.tar.zst, created: "2026-11-26T02:00:00Z",
            reasons: [last, daily]}]
removed:
  description: Backups removed (or that would be, in check mode).
  returned: always
  type: list
  elements: dict
broken:
  description: Backups whose archive does not match the manifest, with the reason and whether they were removed.
  returned: always
  type: list
  elements: dict
cleaned:
  description: Stale temporaries and archives without manifest that were removed.
  returned: always
  type: list
  elements: str
bytes_freed:
  description: Bytes freed (or that would be).
  returned: always
  type: int
folders:
  description: Per folder counts, and the unknown files and unreadable manifests that were left alone (with
    O(remote) also C(orphans), the archives without a manifest, which are never removed there).
  returned: always
  type: list
  elements: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.holdfast.volumes.plugins.module_utils._module_main import execute
from ansible_collections.holdfast.volumes.plugins.module_utils._offsite import run_remote_rotation
from ansible_collections.holdfast.volumes.plugins.module_utils._remote_store import (
    REMOTE_STORE_OPTIONS,
    warn_about_remote,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._rotation import ROTATION_OPTIONS, run_rotation


def main():
    argument_spec = dict(ROTATION_OPTIONS)
    argument_spec['dest'] = dict(type='path')
    argument_spec.update(REMOTE_STORE_OPTIONS)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[('dest', 'remote')], required_one_of=[('dest', 'remote')])
    warn_about_remote(module)
    execute(module, run_remote_rotation if module.params.get('remote') else run_rotation,
            check_mode=module.check_mode)


if __name__ == '__main__':
    main()
