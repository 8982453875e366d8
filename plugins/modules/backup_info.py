#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: backup_info
short_description: The state of the backups in a destination, per volume
version_added: 0.1.0
description:
  - For each volume folder of a backup destination, reports the number of complete backups, their total size, the
    newest backup (time, age, size, file count, compression, encryption), and whether that newest archive still
    matches its manifest. Also reports temporaries, archives without a manifest, and unreadable manifests.
  - Reads a local destination (O(dest)) or a remote store written by M(holdfast.volumes.backup_sync) (O(remote));
    with O(remote) and O(verify=sha256) the newest archive of each volume is read back from the remote and hashed,
    so an object damaged on the server is reported (C(verified=false) and C(problem)).
  - Read-only.
author:
  - holdfast.volumes developers (@holdfast)
extends_documentation_fragment:
  - holdfast.volumes.attributes.read_only
  - holdfast.volumes.offsite.remote_store
options:
  dest:
    description: The backup destination directory. Exactly one of O(dest) and O(remote) is required.
    type: path
  volumes:
    description: Only these volumes (or host paths, as they were backed up). All folders when omitted.
    type: list
    elements: str
  verify:
    description: How to check the newest archive against its manifest (V(sha256) reads it, V(size) compares sizes).
    type: str
    choices: [sha256, size, none]
    default: size
  state_dir:
    description:
      - The restore state directory of this host (O(holdfast.volumes.volume_restore#module:state_dir)), where
        restores note their staging directories while they run. Those of restores that were killed are reported
        in RV(restore_leftovers).
    type: path
    default: /var/lib/holdfast-volumes/restored
seealso:
  - module: holdfast.volumes.volume_backup
  - module: holdfast.volumes.backup_rotation
'''

EXAMPLES = r'''
- name: How old is the newest backup of each volume?
  holdfast.volumes.backup_info:
    dest: /srv/backups
    verify: sha256
  register: state

- name: The same for the offsite copies of web1, read back from S3
  holdfast.volumes.backup_info:
    remote: "{{ offsite_remote }}"
    host: web1
    verify: sha256
  register: offsite

- name: Fail when a backup is older than a day
  ansible.builtin.assert:
    that: item.newest is not none and item.newest.age_seconds < 86400 and item.newest.verified
      and item.newest.consistent is not false
  loop: "{{ state.backups }}"
  loop_control:
    label: "{{ item.volume }}"
'''

RETURN = r'''
backups:
  description: One entry per volume folder.
  returned: always
  type: list
  elements: dict
  contains:
    volume:
      description: The volume (or host path) as it was backed up (the folder's name when it holds no backup).
      type: str
    folder:
      description: The folder (with O(remote), C(<type>:<path>/<host>/<folder>)).
      type: str
    count:
      description: Complete backups (archive and manifest).
      type: int
    bytes:
      description: Total size of the complete backups.
      type: int
    newest:
      description: The newest complete backup (C(archive), C(created), C(age_seconds), C(bytes), C(file_count),
        C(compression), C(encrypted), C(recipients), C(verified), C(problem), C(consistent), C(quiesce),
        C(quiesced)), or null. C(consistent) is the manifest's record (V(false) when containers wrote to the
        source while it was read or tar saw files change; null for manifests that predate the record), C(quiesce)
        the mode asked for, C(quiesced) whether containers were paused or stopped.
      type: dict
    inconsistent:
      description: Complete backups whose manifest records them as not consistent.
      type: int
    temporaries:
      description: Temporary files (work in progress, or left by an interrupted run).
      type: int
    orphans:
      description: Archives without a manifest.
      type: int
    unreadable_manifests:
      description: Manifests that could not be read or parsed (left alone).
      type: int
    oldest_created:
      description: When the oldest complete backup was taken (UTC, ISO 8601).
      type: str
      returned: when the folder holds a complete backup
restore_leftovers:
  description:
    - Staging directories left by restores on this host that did not finish (killed), with their C(target),
      C(staging) path and C(started) time. The next restore of the same target removes them.
  returned: always
  type: list
  elements: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.holdfast.volumes.plugins.module_utils._backup_info import run_backup_info
from ansible_collections.holdfast.volumes.plugins.module_utils._module_main import execute
from ansible_collections.holdfast.volumes.plugins.module_utils._offsite import run_remote_info
from ansible_collections.holdfast.volumes.plugins.module_utils._remote_store import (
    REMOTE_STORE_OPTIONS,
    warn_about_remote,
)


def main():
    argument_spec = dict(
        dest=dict(type='path'),
        volumes=dict(type='list', elements='str'),
        verify=dict(type='str', default='size', choices=['sha256', 'size', 'none']),
        state_dir=dict(type='path', default='/var/lib/holdfast-volumes/restored'),
    )
    argument_spec.update(REMOTE_STORE_OPTIONS)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[('dest', 'remote')], required_one_of=[('dest', 'remote')])
    warn_about_remote(module)
    execute(module, run_remote_info if module.params.get('remote') else run_backup_info)


if __name__ == '__main__':
    main()
