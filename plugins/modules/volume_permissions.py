#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: volume_permissions
short_description: Ownership and modes of the content of a Docker volume or host directory, with minimal changes
version_added: 0.1.0
description:
  - Sets owner, group and mode of a volume's root and, with O(recurse), of everything below it. Separate modes
    apply to files and directories. Ids may be numeric, because a container's user usually does not exist on the
    host (postgres is 999).
  - Walks once and changes only the entries that differ; reports how many were changed. A second run reports no
    change.
  - Never follows symlinks. A link's own owner is changed (lchown), its mode never (chmod would follow it), and
    directories on another filesystem are not entered.
  - Safe against other users who can write in the tree. Every directory is opened relative to its parent's open
    descriptor, without following links, and checked to be the directory that was listed; entries are changed
    relative to it. A directory swapped for a symlink during the walk makes the task fail (run it again), never
    act outside the tree.
  - Files with more than one hard link are counted (RV(hardlinks)); a hard link can also be reached from outside
    the tree. O(skip_hardlinks) leaves them alone.
  - A plain local volume of a local engine is changed directly on the host (fast, no container). Other volumes
    (tmpfs/nfs/cifs options, other drivers, a remote engine) go through a helper container made from a local
    image. This is O(helper_image), or one the module builds from the host's static busybox with C(docker import),
    so nothing is pulled from a registry.
author:
  - holdfast.volumes developers (@holdfast)
extends_documentation_fragment:
  - holdfast.volumes.docker
options:
  volume:
    description: The Docker volume. Mutually exclusive with O(path).
    type: str
  path:
    description: A host directory (a bind-mount source, an encrypted mount point). Mutually exclusive with O(volume).
    type: path
  owner:
    description: Owner, as a numeric uid (0 to 4294967294) or a user name that exists on the host.
    type: raw
  group:
    description: Group, as a numeric gid or a group name that exists on the host.
    type: raw
  mode:
    description:
      - Mode of the root directory, octal (V('0750')) or symbolic (V('u=rwx,g=rx,o=')), as a string.
      - Integers are refused (YAML reads an unquoted C(700) as the number 700, which is C(0o1274)); the error shows
        the quoted form to write.
    type: raw
  recurse:
    description: Apply O(owner) and O(group) to everything below the root too, and O(file_mode) / O(dir_mode).
    type: bool
    default: false
  file_mode:
    description:
      - Mode of regular files below the root, a string (octal or symbolic; V(X) in symbolic modes works as in
        chmod). Integers are refused, as for O(mode).
    type: raw
  dir_mode:
    description: Mode of directories below the root, a string (octal or symbolic). Integers are refused.
    type: raw
  keep_file_exec_bits:
    description: Leave the executable bits of files as they are when applying O(file_mode).
    type: bool
    default: false
  skip_hardlinks:
    description:
      - Leave files that have more than one hard link as they are (they are still counted in RV(hardlinks)).
      - Without it they are changed like any other file, with a warning.
      - Only for volumes changed directly on the host.
    type: bool
    default: false
  helper_image:
    description:
      - Local image with C(sh), C(find), C(chown) and C(chmod) for volumes reached through the Engine.
        Default C(holdfast/volume-helper:busybox), built from the host's busybox-static when missing.
    type: str
attributes:
  check_mode:
    support: full
    description:
      - Counts what would change and returns a sample of paths; changes nothing.
      - For a volume reached through the Engine, counting needs a helper container run (and perhaps its image
        built), which check mode does not do. The counts are then V(unknown) and the task reports a change.
  diff_mode:
    support: partial
    description: Owner, group and mode of the root before and after, and the number of entries changed below it.
notes:
  - Through the Engine only octal modes are supported, and neither O(keep_file_exec_bits) nor O(skip_hardlinks) is.
  - Docker copies an image's directory, with its owner and mode, into an B(empty) volume the first time a container
    mounts the volume there. That undoes ownership set on the empty volume beforehand. Mount the volume at a path
    the image does not have, use C(volume-nocopy), seed content first (M(holdfast.volumes.volume_seed)), or run this
    module after the container's first start.
seealso:
  - module: holdfast.volumes.volume_seed
'''

EXAMPLES = r'''
- name: Postgres runs as 999 and must own its data
  holdfast.volumes.volume_permissions:
    volume: shop_db
    owner: 999
    group: 999
    mode: "0700"
    recurse: true

- name: Uploads readable by the web server group, scripts keep their x bit
  holdfast.volumes.volume_permissions:
    path: /srv/uploads
    owner: 1000
    group: www-data
    recurse: true
    dir_mode: "u=rwx,g=rx,o="
    file_mode: "u=rw,g=r,o="
    keep_file_exec_bits: true
'''

RETURN = r'''
changed_entries:
  description:
    - Entries whose owner or mode was changed (or would be).
    - V(unknown) in check mode for a volume reached through the Engine (counting needs a helper container run).
  returned: always
  type: raw
changed_owner:
  description: Entries whose owner or group was changed (or would be); V(unknown) as for RV(changed_entries).
  returned: always
  type: raw
changed_mode:
  description: Entries whose mode was changed (or would be); V(unknown) as for RV(changed_entries).
  returned: always
  type: raw
examined:
  description: Entries looked at (null through the Engine).
  returned: always
  type: int
sample:
  description: Up to 20 paths that were changed (or would be).
  returned: always
  type: list
  elements: str
path:
  description: The directory converged, on the host (O(path), or the volume's data directory on the host route);
    null through the Engine or when the volume does not exist yet (check mode).
  returned: always
  type: str
route:
  description: V(host) (changed directly) or V(engine) (through a helper container).
  returned: always
  type: str
hardlinks:
  description:
    - Files below the root that have more than one hard link (null through the Engine). With O(skip_hardlinks)
      they were left alone.
  returned: always
  type: int
skipped_mounts:
  description: Directories on other filesystems that were not entered.
  returned: always
  type: list
  elements: str
duration_seconds:
  description: Time spent.
  returned: always
  type: float
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import docker_argument_spec
from ansible_collections.holdfast.volumes.plugins.module_utils._module_main import execute
from ansible_collections.holdfast.volumes.plugins.module_utils._permissions import run_permissions


def main():
    argument_spec = dict(
        volume=dict(type='str'),
        path=dict(type='path'),
        owner=dict(type='raw'),
        group=dict(type='raw'),
        mode=dict(type='raw'),
        recurse=dict(type='bool', default=False),
        file_mode=dict(type='raw'),
        dir_mode=dict(type='raw'),
        keep_file_exec_bits=dict(type='bool', default=False),
        skip_hardlinks=dict(type='bool', default=False),
        helper_image=dict(type='str'),
    )
    argument_spec.update(docker_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[('volume', 'path')], required_one_of=[('volume', 'path')])
    execute(module, run_permissions, check_mode=module.check_mode)


if __name__ == '__main__':
    main()
