# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: volume_model
short_description: The holdfast_volumes model with its defaults, or the part one module needs
version_added: 0.1.0
author:
  - holdfast.volumes developers (@holdfast)
description:
  - Takes the C(holdfast_volumes) list (one entry per volume, see the collection's variable reference) and returns
    it with defaults applied (V(all)), or the entries one facet needs, reduced to that module's keys.
  - V(volumes) returns the definitions for M(holdfast.volumes.docker_volumes) (entries without encryption;
    encrypted ones are created by M(holdfast.volumes.luks_path)). V(encrypted), V(backups), V(seeds) and
    V(permissions) return the entries that have those settings.
  - V(backup_jobs) returns, for each entry with C(backup), the parameters of M(holdfast.volumes.volume_backup)
    (key C(backup)) and of M(holdfast.volumes.backup_rotation) (key C(rotation), V(null) without C(retention)).
    The backup role runs these jobs, and writes them for its scheduled runner. Each job also has C(offsite),
    V(null), or the volume's offsite copy without its secrets (C(remote_id), the index of its remote in
    V(offsite_remotes); C(host); C(retention), V(null) when the remote keeps every copy).
  - V(offsite_remotes) returns the distinct remotes (with their options, secrets included; never loop over them in
    a task that is not C(no_log)). V(offsite_syncs) returns one M(holdfast.volumes.backup_sync) per distinct remote
    and destination (C(dest), C(volumes), C(host), C(remote_id), C(label); no secrets), V(offsite_rotations) one
    M(holdfast.volumes.backup_rotation) per volume with an offsite retention (C(volume), C(host), C(remote_id),
    C(label) and the policy's rules; no secrets). V(schedule) returns what the scheduled runner's jobs file holds.
  - The offsite setting of a volume is its C(backup.offsite) merged over O(offsite) (the host-wide default); a
    volume opts out with C(enabled=false). Its retention falls back to that of O(offsite), then to
    C(backup.retention).
  - Whatever the facet, the whole list is first checked against the one definition of the model (the same one
    every role's argument spec is generated from). Unknown keys (a typo such as C(retension)), wrong types,
    invalid names, integer modes and invalid retention policies fail with every problem listed, before any role
    changes anything. V(check) returns V(true) once the model is valid; each role's first task uses it.
options:
  _input:
    description: The holdfast_volumes list.
    type: list
    elements: dict
    required: true
  facet:
    description: Which part to return.
    type: str
    choices: [all, check, volumes, encrypted, backups, backup_jobs, seeds, permissions, offsite_remotes,
              offsite_syncs, offsite_rotations, schedule]
    default: all
  offsite:
    description: The host-wide offsite default (the backup role's C(holdfast_backup_offsite)), validated too.
    type: dict
  host:
    description: The host name the offsite copies are filed under (the backup role's C(holdfast_backup_host)).
    type: str
'''

EXAMPLES = r'''
- name: Converge the plain volumes in one call
  holdfast.volumes.docker_volumes:
    volumes: "{{ holdfast_volumes | holdfast.volumes.volume_model('volumes') }}"
'''

RETURN = r'''
_value:
  description:
    - The entries (with defaults applied), or the module-ready definitions for V(volumes).
    - V(true) for V(check).
  type: raw
'''

import json

from ansible.errors import AnsibleFilterError

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._model_schema import effective_offsite, validate_model
from ansible_collections.holdfast.volumes.plugins.module_utils._remote_store import is_host_name
from ansible_collections.holdfast.volumes.plugins.module_utils._retention import validate_policy

DEFAULTS = dict(driver='local', driver_options={}, labels={}, state='present', recurse=True)
DOCKER_KEYS = ('name', 'driver', 'driver_options', 'labels', 'state')
# backup settings of an entry that are volume_backup options as they are
BACKUP_KEYS = ('compression', 'compression_level', 'quiesce', 'stop_timeout', 'encrypt_to', 'pre_hooks', 'post_hooks',
               'verify')


def remote_key(remote):
    """Two remotes are the same when type, path and options are."""
    return json.dumps([remote.get('type'), remote.get('path'), remote.get('options') or {}], sort_keys=True,
                      default=str)


def remote_label(remote):
    return '%s:%s' % (remote.get('type'), remote.get('path'))


def backup_job(entry, offsite_default=None, host=None, remotes=None):
    backup = entry['backup']
    if not isinstance(backup, dict) or not backup.get('dest'):
        raise AnsibleFilterError("holdfast_volumes entry %s: backup needs at least a dest." % entry['name'])
    params = dict(volume=entry['name'], dest=backup['dest'])
    params.update((k, backup[k]) for k in BACKUP_KEYS if backup.get(k) is not None)
    rotation = None
    if backup.get('retention'):
        try:
            validate_policy(backup['retention'])
        except HoldfastError as exc:
            raise AnsibleFilterError("holdfast_volumes entry %s: backup.retention: %s"
                                     % (entry['name'], exc.msg)) from None
        rotation = dict(volume=entry['name'], dest=backup['dest'])
        rotation.update((k, v) for k, v in backup['retention'].items() if v is not None)
    offsite = None
    merged = effective_offsite(entry, offsite_default)
    if merged:
        remote = dict(type=merged['remote']['type'], path=merged['remote']['path'],
                      options=dict(merged['remote'].get('options') or {}))
        keys = [remote_key(r) for r in remotes]
        if remote_key(remote) not in keys:
            remotes.append(remote)
            keys.append(remote_key(remote))
        retention = dict((k, v) for k, v in (merged.get('retention') or {}).items() if v is not None) or None
        offsite = dict(remote_id=keys.index(remote_key(remote)), label=remote_label(remote), host=host,
                       retention=retention)
    return dict(name=entry['name'], backup=params, rotation=rotation, offsite=offsite)


def offsite_plan(jobs):
    """The syncs (one per remote and destination, its volumes in model order) and the remote rotations (one per
    volume with an offsite retention) of the backup jobs. No secrets: the remotes are named by remote_id."""
    syncs, rotations = [], []
    for job in jobs:
        offsite = job['offsite']
        if not offsite:
            continue
        for sync in syncs:
            if sync['remote_id'] == offsite['remote_id'] and sync['dest'] == job['backup']['dest']:
                sync['volumes'].append(job['name'])
                break
        else:
            syncs.append(dict(dest=job['backup']['dest'], volumes=[job['name']], host=offsite['host'],
                              remote_id=offsite['remote_id'], label=offsite['label']))
        if offsite['retention']:
            # verify: size. The copies were verified when they arrived (backup_sync); reading every one back on
            # each run (sha256) would download the whole offsite history per volume, nightly. A deep check of the
            # remote is backup_info/the report with verify: sha256.
            rotation = dict(volume=job['name'], host=offsite['host'], remote_id=offsite['remote_id'],
                            label='%s %s' % (offsite['label'], job['name']), verify='size')
            rotation.update(offsite['retention'])
            rotations.append(rotation)
    return syncs, rotations


def without_remote_secrets(entry):
    """The entry with its backup.offsite remote's options left out: the facets that roles loop over (seeds,
    permissions, encrypted, backups, all) land in every per-item result and registered variable, where no_log on
    a module option does not reach. The remotes reach the modules only by remote_id (offsite_remotes)."""
    backup = entry.get('backup')
    offsite = backup.get('offsite') if isinstance(backup, dict) else None
    if not isinstance(offsite, dict) or not isinstance(offsite.get('remote'), dict) or \
            'options' not in offsite['remote']:
        return entry
    remote = dict((k, v) for k, v in offsite['remote'].items() if k != 'options')
    return dict(entry, backup=dict(backup, offsite=dict(offsite, remote=remote)))


def volume_model(entries, facet='all', offsite=None, host=None):
    if not isinstance(entries, (list, tuple)):
        raise AnsibleFilterError("volume_model expects the holdfast_volumes list.")
    if offsite in (None, ''):
        offsite = {}
    try:
        validate_model(entries, offsite_default=offsite)
    except HoldfastError as exc:
        raise AnsibleFilterError(exc.msg) from None
    if facet == 'check':
        return True
    full = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get('name'):
            raise AnsibleFilterError("holdfast_volumes[%d] must be a mapping with a name." % index)
        item = dict(DEFAULTS)
        item.update(entry)
        full.append(item)
    if facet not in ('backup_jobs', 'offsite_remotes', 'offsite_syncs', 'offsite_rotations', 'schedule'):
        full = [without_remote_secrets(e) for e in full]
    present = [e for e in full if e['state'] != 'absent']
    if facet == 'all':
        return full
    if facet == 'volumes':
        return [dict((k, e[k]) for k in DOCKER_KEYS) for e in full if not e.get('encryption')]
    if facet == 'encrypted':
        return [e for e in present if e.get('encryption')]
    if facet == 'backups':
        return [e for e in present if e.get('backup')]
    if facet in ('backup_jobs', 'offsite_remotes', 'offsite_syncs', 'offsite_rotations', 'schedule'):
        remotes = []
        jobs = [backup_job(e, offsite, host, remotes) for e in present if e.get('backup')]
        # the host folder on a remote, as backup_sync accepts it (checked here, so it fails before the first backup)
        if any(job['offsite'] for job in jobs) and not is_host_name(host):
            raise AnsibleFilterError("volume_model: offsite copies need the host they are filed under (host=, the "
                                     "backup role's holdfast_backup_host): a host name (letters, digits, . _ @ -), "
                                     "got %r." % (host,))
        if facet == 'backup_jobs':
            return jobs
        if facet == 'offsite_remotes':
            return remotes
        syncs, rotations = offsite_plan(jobs)
        if facet == 'offsite_syncs':
            return syncs
        if facet == 'offsite_rotations':
            return rotations
        return dict(jobs=jobs, offsite_remotes=remotes, offsite_syncs=syncs, offsite_rotations=rotations)
    if facet == 'seeds':
        return [e for e in present if e.get('seed')]
    if facet == 'permissions':
        return [e for e in present if any(e.get(k) is not None for k in ('owner', 'group', 'mode'))]
    raise AnsibleFilterError("volume_model: unknown facet %r." % facet)


class FilterModule(object):
    def filters(self):
        return {'volume_model': volume_model}
