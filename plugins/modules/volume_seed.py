#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: volume_seed
short_description: Fill an empty Docker volume with initial data, once
version_added: 0.1.0
description:
  - Copies a directory or a tar archive (plain, gzip or zstd) from the managed host into a volume, only when the
    volume is empty. This is the first-start pattern of database images. A volume that already holds data is left
    alone (no change), unless O(force).
  - The seed goes through the same checks as a restore, plus one. Absolute paths, C(..) components, paths through
    symlinks, foreign hard links, devices and fifos are refused. Symlinks that point outside the volume are refused
    too. Nothing is written when anything is refused. GNU tar extracts only the module's own re-encoding of the
    members that passed the checks, and the seed stops before the filesystem falls under O(disk_reserve).
  - The content is staged beside the volume's data and swapped in, so a failed seed leaves the volume as it was.
  - To seed from files on the controller, copy them to the managed host first (see the examples).
author:
  - holdfast.volumes developers (@holdfast)
extends_documentation_fragment:
  - holdfast.volumes.docker
options:
  volume:
    description: The Docker volume to seed. It must exist.
    type: str
    required: true
  src:
    description: A directory or a tar archive (C(.tar), C(.tar.gz), C(.tar.zst)) on the managed host.
    type: path
    required: true
  owner:
    description: Owner (numeric uid or host user name) of everything copied, root included.
    type: raw
  group:
    description: Group (numeric gid or host group name) of everything copied, root included.
    type: raw
  force:
    description: Seed even if the volume holds data, replacing that data with the seed.
    type: bool
    default: false
  allow_special_files:
    description: Allow device nodes and fifos in the seed.
    type: bool
    default: false
  disk_reserve:
    description:
      - Free space to leave on the filesystem that receives the seed. The seed stops and cleans up before the
        filesystem would fall under it (or under 1 % of its inodes) while extracting. The volume stays as it was.
      - A size (V(1G), V(512M), V(0) for no reserve) or a percentage of the filesystem (V(5%)). Default 5 % of
        the filesystem, at most 1 GiB.
    type: str
attributes:
  check_mode:
    support: full
    description:
      - Checks the seed completely and reports whether it would be copied; writes nothing and builds nothing.
      - For a volume reached through the Engine, looking inside needs the helper image
        C(holdfast/volume-helper:empty). When it does not exist yet, RV(seeded) is V(unknown) (a real run builds
        it).
  diff_mode:
    support: none
    description: The content of a volume is not shown as a diff.
seealso:
  - module: holdfast.volumes.volume_permissions
  - module: holdfast.volumes.volume_restore
'''

EXAMPLES = r'''
- name: Initial configuration, owned by the app's uid, only on first deployment
  holdfast.volumes.volume_seed:
    volume: app_config
    src: /opt/app/default-config
    owner: 1000
    group: 1000

- name: Seed from files on the controller
  block:
    - name: Copy the seed to the managed host
      ansible.builtin.copy:
        src: files/seed/
        dest: /var/tmp/app-seed/
        mode: preserve
    - name: Seed the volume from it
      holdfast.volumes.volume_seed:
        volume: app_data
        src: /var/tmp/app-seed
'''

RETURN = r'''
seeded:
  description:
    - Whether the seed was copied (false when the volume already held data), in check mode whether it would be.
    - V(unknown) in check mode when the volume is reached through the Engine and the helper image does not exist
      yet, so that its content cannot be seen without building it.
  returned: always
  type: raw
entries:
  description: Entries in the seed, not counting its root.
  returned: when the seed was checked
  type: int
volume:
  description: The volume (O(volume)).
  returned: always
  type: str
src:
  description: The seed (O(src)).
  returned: always
  type: str
sha256:
  description: sha256 of the seed archive (for a directory, of the tar stream made from it) as it was copied.
  returned: when the seed was copied on the host route
  type: str
msg:
  description: Why nothing was done (the volume already holds data).
  returned: when the volume already held data
  type: str
route:
  description: V(host) (written beside the volume's data and swapped in) or V(engine) (through the Engine).
  returned: always
  type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import docker_argument_spec
from ansible_collections.holdfast.volumes.plugins.module_utils._module_main import execute
from ansible_collections.holdfast.volumes.plugins.module_utils._seed import run_seed


def main():
    argument_spec = dict(
        volume=dict(type='str', required=True),
        src=dict(type='path', required=True),
        owner=dict(type='raw'),
        group=dict(type='raw'),
        force=dict(type='bool', default=False),
        allow_special_files=dict(type='bool', default=False),
        disk_reserve=dict(type='str'),
    )
    argument_spec.update(docker_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    execute(module, run_seed, check_mode=module.check_mode)


if __name__ == '__main__':
    main()
