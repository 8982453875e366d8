# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: retention_plan
short_description: Split a list of timed items into those a retention policy keeps and those it removes
version_added: 0.1.0
author:
  - holdfast.volumes developers (@holdfast)
description:
  - Applies the same retention policy as M(holdfast.volumes.backup_rotation) (the semantics of restic's C(forget))
    to any list, for example an S3 object listing or the snapshots of another system.
  - Each item is a mapping with a C(time) key (an ISO 8601 string, an epoch number or a datetime; a string without
    offset is taken as UTC). Other keys are kept as they are.
  - The policy options speak of backups; here each item of the list counts as one backup.
extends_documentation_fragment:
  - holdfast.volumes.retention
options:
  _input:
    description: The items.
    type: list
    elements: dict
    required: true
  time_key:
    description: Name of the key holding each item's time.
    type: str
    default: time
  now:
    description: The current time (items after it are in the future). Defaults to the controller's clock.
    type: str
'''

EXAMPLES = r'''
- name: Which S3 backups to delete
  ansible.builtin.set_fact:
    plan: "{{ s3_objects | holdfast.volumes.retention_plan(keep_daily=7, keep_weekly=4, keep_monthly=12) }}"

- name: Show what would go
  ansible.builtin.debug:
    msg: "{{ plan.remove | map(attribute='key') | list }}"
'''

RETURN = r'''
_value:
  description:
    - C(keep), the kept items (newest first), each a copy with a C(reasons) list added
      (for example V(daily), V(weekly), V(within 7d)), and C(remove), the other items as they were given.
  type: dict
'''

from ansible.errors import AnsibleFilterError

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._retention import (
    apply_policy,
    parse_time,
    validate_policy,
)


def retention_plan(items, time_key='time', now=None, **policy):
    if not isinstance(items, (list, tuple)):
        raise AnsibleFilterError("retention_plan expects a list of mappings, each with a %r key." % time_key)
    try:
        rules = validate_policy(policy)
        for index, item in enumerate(items):
            if not isinstance(item, dict) or time_key not in item:
                raise HoldfastError("item %d has no %r key." % (index, time_key))
        times = [parse_time(item[time_key], 'item %d' % index) for index, item in enumerate(items)]
        by_id = dict((id(item), when) for item, when in zip(items, times))
        result = apply_policy(list(items), rules, now=parse_time(now, 'now') if now is not None else None,
                              time_of=lambda item: by_id[id(item)])
    except HoldfastError as exc:
        raise AnsibleFilterError("retention_plan: %s" % exc.msg) from None
    keep = []
    for entry in result['keep']:
        copy = dict(entry['item'])
        copy['reasons'] = entry['reasons']
        keep.append(copy)
    return dict(keep=keep, remove=list(result['remove']))


class FilterModule(object):
    def filters(self):
        return {'retention_plan': retention_plan}
