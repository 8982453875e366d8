#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: volume_info
short_description: List Docker volumes with filters, sizes and the containers that use them
version_added: 0.1.0
description:
  - Lists the engine's volumes, filtered by name, labels, driver and whether any container uses them.
  - With O(usage=true) adds the bytes each volume takes on disk; with O(containers=true) the containers that use it.
  - Costs a fixed number of engine calls whatever the number of volumes.
author:
  - holdfast.volumes developers (@holdfast)
extends_documentation_fragment:
  - holdfast.volumes.attributes.read_only
  - holdfast.volumes.docker
options:
  names:
    description:
      - Only these volumes. Names that do not exist are listed in RV(missing).
    type: list
    elements: str
  labels:
    description:
      - Only volumes carrying all these labels (label name to value; a null value matches any value).
    type: dict
  driver:
    description:
      - Only volumes of this driver.
    type: str
  dangling:
    description:
      - V(true) lists only volumes that no container uses (running or stopped); V(false) only used ones.
    type: bool
  usage:
    description:
      - Add C(size_bytes), the space the volume takes on disk (null when the driver cannot tell).
      - Asks the engine for its disk usage, which walks every local volume; slow on very large volumes.
    type: bool
    default: false
  containers:
    description:
      - Add C(containers), the containers that mount each volume, and C(in_use).
    type: bool
    default: false
seealso:
  - module: holdfast.volumes.docker_volumes
'''

EXAMPLES = r'''
- name: Volumes of the shop, with sizes and users
  holdfast.volumes.volume_info:
    labels:
      app: shop
    usage: true
    containers: true
  register: shop

- name: Volumes no container uses
  holdfast.volumes.volume_info:
    dangling: true
  register: unused

- name: Show them
  ansible.builtin.debug:
    msg: "{{ unused.volumes | map(attribute='Name') | list }}"
'''

RETURN = r'''
volumes:
  description: The selected volumes, sorted by name, as the engine inspects them, plus the requested extras.
  returned: always
  type: list
  elements: dict
  contains:
    Name:
      description: Volume name.
      type: str
    Driver:
      description: Volume driver.
      type: str
    Labels:
      description: Labels (empty mapping when none).
      type: dict
    Options:
      description: Driver options (empty mapping when none).
      type: dict
    Mountpoint:
      description: Where the engine mounts the volume on its host.
      type: str
    CreatedAt:
      description: When the volume was created, as the engine reports it.
      type: str
    Scope:
      description: V(local) or V(global), as the engine reports it.
      type: str
    size_bytes:
      description: Bytes on disk, null when unknown.
      type: int
      returned: when O(usage=true)
    containers:
      description: Containers mounting the volume, each with C(name), C(running), C(state), C(destination),
        C(read_only).
      type: list
      elements: dict
      returned: when O(containers=true)
    at_rest:
      description:
        - Whether the volume's data is encrypted at rest, judged from where it really lies (the filesystem holding
          the volume's directory, or a bind volume's device path, or the block device of a volume with a
          filesystem type), through the device stack in sysfs (dm-crypt directly, or under LVM, RAID...).
        - V(null) when it cannot be told (a remote engine, another driver, tmpfs).
      type: dict
      returned: always
      contains:
        encrypted:
          description: Whether a dm-crypt device is in the stack.
          type: bool
        source:
          description: The filesystem's source (for example C(/dev/mapper/holdfast-srv-enc-db)) or the device.
          type: str
        layers:
          description: The dm-crypt devices (device, mapper name, type such as C(LUKS2)).
          type: list
          elements: dict
      sample: {encrypted: true, source: /dev/mapper/holdfast-srv-enc-db, layers: [{device: dm-0, type: LUKS2,
               mapper: holdfast-srv-enc-db}]}
    in_use:
      description: Whether any container mounts the volume.
      type: bool
      returned: when O(containers=true) or O(dangling) is set
missing:
  description: Names given in O(names) that do not exist.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import docker_argument_spec
from ansible_collections.holdfast.volumes.plugins.module_utils._module_main import execute
from ansible_collections.holdfast.volumes.plugins.module_utils._volume_inventory import volume_info


def main():
    argument_spec = dict(
        names=dict(type='list', elements='str'),
        labels=dict(type='dict'),
        driver=dict(type='str'),
        dangling=dict(type='bool'),
        usage=dict(type='bool', default=False),
        containers=dict(type='bool', default=False),
    )
    argument_spec.update(docker_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    execute(module, volume_info)


if __name__ == '__main__':
    main()
