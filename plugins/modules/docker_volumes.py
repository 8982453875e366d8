#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: docker_volumes
short_description: Converge many Docker volumes in one call, without ever losing data silently
version_added: 0.1.0
description:
  - Creates, checks and removes Docker volumes so that the engine matches a list of definitions.
  - Lists the engine's volumes once per call, not once per volume, so a thousand volumes converge in about a second.
  - Compares the full driver, driver options and labels of each existing volume with its definition, including keys
    that are no longer in the definition. Docker cannot change a volume in place, so a difference is either reported
    as drift (O(recreate=never), with a warning) or fixed by deleting and creating the volume
    (O(recreate=options-changed)).
  - Never loses data silently. Recreating or removing a volume that holds files fails unless
    O(allow_data_loss=true); a volume that any container uses (running or stopped) is refused even then, and the
    error names the containers.
  - Every input problem (invalid or duplicate names, unknown drivers, non-string labels) is reported before anything
    changes.
author:
  - holdfast.volumes developers (@holdfast)
extends_documentation_fragment:
  - holdfast.volumes.docker
options:
  volumes:
    description:
      - The volumes to manage, one entry per volume.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Volume name. Docker allows C([a-zA-Z0-9][a-zA-Z0-9_.-]+).
        type: str
        required: true
      driver:
        description:
          - Volume driver. Must be known to the engine (built in, or an enabled plugin).
        type: str
        default: local
      driver_options:
        description:
          - Driver options (C(docker volume create --opt)). Values must be strings.
          - Compared in full with the existing volume; an option removed from this mapping is a difference too.
        type: dict
        default: {}
      labels:
        description:
          - Labels. Values must be strings (quote numbers in YAML).
          - Compared in full with the existing volume; a label removed from this mapping is a difference too.
        type: dict
        default: {}
      state:
        description:
          - V(present) creates the volume if it is missing. V(absent) removes it if it exists.
        type: str
        choices: [present, absent]
        default: present
  recreate:
    description:
      - What to do with an existing volume that differs from its definition.
      - V(never) leaves it alone and reports the difference in RV(drift) and as a warning.
      - V(options-changed) removes the volume and creates it again with the definition, subject to
        O(allow_data_loss).
    type: str
    choices: [never, options-changed]
    default: never
  allow_data_loss:
    description:
      - Allow removing or recreating volumes that hold files. Volumes used by a container are refused even then.
    type: bool
    default: false
  exclusive:
    description:
      - A label selector (label name to value; a null value matches any value). Volumes that carry all these labels
        but are not in O(volumes) are removed, so the host converges to exactly the list.
      - Removal follows the same data rules as O(volumes[].state=absent).
      - Must name at least one label.
    type: dict
attributes:
  check_mode:
    support: full
    description: Predicts exactly what a real run does, including the refusals, and changes nothing.
  diff_mode:
    support: full
    description: Shows the definition of each volume before and after.
notes:
  - To see whether a volume holds files the module reads the volume's directory on the host when the engine is
    local and the volume is a plain local one, and otherwise asks the engine through a container that is created
    but never started, from an image with no files that the module imports locally (C(holdfast/volume-helper:empty)).
    In check mode that image is not imported; if it is missing, a volume reached that way is assumed to hold data.
seealso:
  - module: holdfast.volumes.volume_info
'''

EXAMPLES = r'''
- name: Volumes of the application, exactly these on this host
  holdfast.volumes.docker_volumes:
    volumes:
      - name: app_db
        labels:
          app: shop
          managed-by: holdfast
      - name: app_uploads
        labels:
          app: shop
          managed-by: holdfast
      - name: app_cache
        driver_options:
          type: tmpfs
          device: tmpfs
          o: size=256m
        labels:
          managed-by: holdfast
      - name: old_reports
        state: absent
    exclusive:
      managed-by: holdfast

- name: Recreate volumes whose options changed, but only if they are empty
  holdfast.volumes.docker_volumes:
    volumes:
      - name: scratch
        driver_options:
          type: tmpfs
          device: tmpfs
    recreate: options-changed

- name: Set the connection once for every holdfast.volumes module
  module_defaults:
    group/holdfast.volumes.docker:
      docker_host: tcp://127.0.0.1:2376
      validate_certs: true
  block:
    - name: Converge
      holdfast.volumes.docker_volumes:
        volumes: "{{ holdfast_volumes }}"
'''

RETURN = r'''
created:
  description: Names of the volumes created (or that would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [app_db]
removed:
  description: Names of the volumes removed (state=absent or not listed under O(exclusive)).
  returned: always
  type: list
  elements: str
recreated:
  description: Names of the volumes removed and created again because their definition changed.
  returned: always
  type: list
  elements: str
drift:
  description: Volumes that differ from their definition and were left alone (O(recreate=never)).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Volume name.
      type: str
    summary:
      description: The differences in one line.
      type: str
      sample: labels added tier; removed owner
    differences:
      description: One entry per field (V(driver), V(driver_options), V(labels)) with C(before), C(after), and for
        mappings C(added), C(removed) and C(changed) keys.
      type: list
      elements: dict
  sample:
    - name: app_db
      summary: labels removed owner
      differences:
        - field: labels
          before: {owner: alice}
          after: {}
          added: {}
          removed: {owner: alice}
          changed: {}
volumes:
  description:
    - Inspect data of every volume listed with state=present, after the run (predicted in check mode,
      where C(Mountpoint) and C(CreatedAt) of volumes still to be created are null).
  returned: always
  type: list
  elements: dict
  sample:
    - Name: app_db
      Driver: local
      Labels: {app: shop}
      Options: {}
      Mountpoint: /var/lib/docker/volumes/app_db/_data
      Scope: local
      CreatedAt: "2026-11-26T17:37:05Z"
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import docker_argument_spec
from ansible_collections.holdfast.volumes.plugins.module_utils._module_main import execute
from ansible_collections.holdfast.volumes.plugins.module_utils._volume_converge import converge


def main():
    argument_spec = dict(
        volumes=dict(type='list', elements='dict', required=True, options=dict(
            name=dict(type='str', required=True),
            driver=dict(type='str', default='local'),
            driver_options=dict(type='dict', default={}),
            labels=dict(type='dict', default={}),
            state=dict(type='str', default='present', choices=['present', 'absent']),
        )),
        recreate=dict(type='str', default='never', choices=['never', 'options-changed']),
        allow_data_loss=dict(type='bool', default=False),
        exclusive=dict(type='dict'),
    )
    argument_spec.update(docker_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    execute(module, converge, check_mode=module.check_mode)


if __name__ == '__main__':
    main()
