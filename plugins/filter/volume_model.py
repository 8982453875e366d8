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
    The backup role runs these jobs, and writes them for its scheduled runner.
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
    choices: [all, check, volumes, encrypted, backups, backup_jobs, seeds, permissions]
    default: all
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

from ansible.errors import AnsibleFilterError

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._model_schema import validate_model
from ansible_collections.holdfast.volumes.plugins.module_utils._retention import validate_policy

DEFAULTS = dict(driver='local', driver_options={}, labels={}, state='present', recurse=True)
DOCKER_KEYS = ('name', 'driver', 'driver_options', 'labels', 'state')
# backup settings of an entry that are volume_backup options as they are
BACKUP_KEYS = ('compression', 'compression_level', 'quiesce', 'stop_timeout', 'encrypt_to', 'pre_hooks', 'post_hooks',
               'verify')


def backup_job(entry):
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
    return dict(name=entry['name'], backup=params, rotation=rotation)


def volume_model(entries, facet='all'):
    if not isinstance(entries, (list, tuple)):
        raise AnsibleFilterError("volume_model expects the holdfast_volumes list.")
    try:
        validate_model(entries)
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
    present = [e for e in full if e['state'] != 'absent']
    if facet == 'all':
        return full
    if facet == 'volumes':
        return [dict((k, e[k]) for k in DOCKER_KEYS) for e in full if not e.get('encryption')]
    if facet == 'encrypted':
        return [e for e in present if e.get('encryption')]
    if facet == 'backups':
        return [e for e in present if e.get('backup')]
    if facet == 'backup_jobs':
        return [backup_job(e) for e in present if e.get('backup')]
    if facet == 'seeds':
        return [e for e in present if e.get('seed')]
    if facet == 'permissions':
        return [e for e in present if any(e.get(k) is not None for k in ('owner', 'group', 'mode'))]
    raise AnsibleFilterError("volume_model: unknown facet %r." % facet)


class FilterModule(object):
    def filters(self):
        return {'volume_model': volume_model}
