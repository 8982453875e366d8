#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: luks_path
short_description: An encrypted host path in one idempotent resource (file or device, LUKS, filesystem, mount, volume)
version_added: 0.1.0
description:
  - "Converges the whole chain: a backing file the module creates (sparse or preallocated) or an existing block
    device; LUKS format; open; filesystem; mount on O(path); owner, group and mode of the mount point; optionally a
    Docker volume bound to it; optionally crypttab and fstab entries so it comes back after a reboot."
  - Growing O(size) grows the file, the loop device, the LUKS mapping and the filesystem online. Shrinking is refused.
  - Keys are tested before anything changes. A wrong key fails with nothing changed. Rotation happens in one task
    (O(new_keyfile) or O(new_passphrase) added and verified, then O(remove_keyfile) or O(remove_passphrase) removed),
    and a second run of the same task reports no change. The last key is never removed without
    O(force_remove_last_key).
  - Passphrases reach cryptsetup through a pipe, never on a command line or in a file; they are never written to
    crypttab (a passphrase-only container gets C(none) there, asked at boot).
  - An existing container whose type, cipher or key size differ from the task is reported in RV(drift) and never
    re-encrypted. State is read without udev (cryptsetup, sysfs, /proc/self/mountinfo), so it works in containers
    and minimal systems.
  - On a file, cryptsetup attaches a loop device by itself (and frees it when the mapping closes).
author:
  - holdfast.volumes developers (@holdfast)
extends_documentation_fragment:
  - holdfast.volumes.docker
options:
  path:
    description: The mount point.
    type: path
    required: true
  backing_file:
    description: A regular file holding the container; created with O(size) when missing (mode 0600).
    type: path
  device:
    description: An existing block device holding the container (instead of O(backing_file)).
    type: path
  size:
    description:
      - Size of the backing file (V(512M), V(10G), or bytes). Required to create it; a larger value grows everything
        online. LUKS2 needs at least 32M.
    type: str
  preallocate:
    description: Allocate the backing file's blocks instead of creating a sparse file.
    type: bool
    default: false
  name:
    description: Device-mapper name (C(/dev/mapper/NAME)). Default C(holdfast-) and the path with dashes.
    type: str
  keyfile:
    description: A key file on the host (mode 0600 or stricter).
    type: path
  passphrase:
    description: A passphrase (instead of O(keyfile)).
    type: str
  luks_type:
    description: LUKS version for new containers.
    type: str
    choices: [luks1, luks2]
    default: luks2
  cipher:
    description: Cipher for new containers.
    type: str
    default: aes-xts-plain64
  key_size:
    description: Key size in bits for new containers.
    type: int
    default: 512
  pbkdf:
    description: Key derivation function for new LUKS2 containers.
    type: str
    choices: [argon2id, argon2i, pbkdf2]
    default: argon2id
  pbkdf_memory:
    description: Memory cost in KiB for argon2 (lower it on small hosts).
    type: int
  pbkdf_iter_time:
    description: Milliseconds spent deriving the key (cryptsetup C(--iter-time)).
    type: int
  force_format:
    description: Format a backing store that holds a filesystem or other data (destroying it).
    type: bool
    default: false
  fstype:
    description: Filesystem created in the container.
    type: str
    choices: [ext4, xfs]
    default: ext4
  mount_options:
    description: Mount options.
    type: list
    elements: str
  owner:
    description: Owner of the mount point (numeric uid or name).
    type: raw
  group:
    description: Group of the mount point (numeric gid or name).
    type: raw
  mode:
    description: Mode of the mount point, a quoted string (octal such as V("0700"), or symbolic). Integers are refused.
    type: raw
  docker_volume:
    description:
      - Name of a Docker volume (local driver, bind to O(path)) so containers use the encrypted storage by name.
        Created only while the path is mounted, removed when it is unmounted or destroyed.
    type: str
  persistent:
    description:
      - V(true) writes crypttab and fstab entries (with C(nofail)) and, with O(docker_volume), a systemd drop-in so
        that Docker starts after the mount. V(false) removes them. Unset leaves them as they are.
    type: bool
  new_keyfile:
    description: A key file to add (and verify).
    type: path
  new_passphrase:
    description: A passphrase to add (and verify).
    type: str
  remove_keyfile:
    description: A key file whose key slot is removed (after the new key is verified).
    type: path
  remove_passphrase:
    description: A passphrase whose key slot is removed (after the new key is verified).
    type: str
  force_remove_last_key:
    description: Allow removing the last key (the data can then never be opened again).
    type: bool
    default: false
  header_backup:
    description: Back up the LUKS header to this file (mode 0600) if it does not exist yet.
    type: path
  state:
    description:
      - V(mounted) converges the whole chain. V(unmounted) unmounts and closes it, keeping the data (refused while
        running containers use it). V(absent) destroys it (refused while any container uses it, and only with
        O(destroy)).
    type: str
    choices: [mounted, unmounted, absent]
    default: mounted
  destroy:
    description: Confirms O(state=absent), which erases the LUKS header and removes the backing file.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description:
      - Reads the state, plans, and returns the plan (RV(plan), also in RV(steps)) without applying it; every step a
        real run would take, not only the first. Changes nothing.
      - Opens nothing, not even a temporary read-only mapping. The filesystem inside a container that is closed is
        therefore V(unknown) (RV(filesystem)); the steps then assume the wanted O(fstype) is there.
  diff_mode:
    support: full
    description: The state (backing store, LUKS type, key slots, open, mounted) before and after.
notes:
  - "Restore a header backup with C(cryptsetup luksHeaderRestore <file or device> --header-backup-file <backup>)."
requirements:
  - cryptsetup (C(cryptsetup-bin) on Debian), util-linux, e2fsprogs or xfsprogs, and a kernel with dm-crypt.
seealso:
  - module: holdfast.volumes.volume_permissions
'''

EXAMPLES = r'''
- name: An encrypted 10G file for the database, as Docker volume shop_db, back after reboots
  holdfast.volumes.luks_path:
    path: /srv/encrypted/shop_db
    backing_file: /srv/luks/shop_db.img
    size: 10G
    keyfile: /etc/holdfast/keys/shop_db.key
    owner: 999
    group: 999
    mode: "0700"
    docker_volume: shop_db
    persistent: true
    header_backup: /root/luks-headers/shop_db.header

- name: Rotate the key in one task (new key in, verified, old key out)
  holdfast.volumes.luks_path:
    path: /srv/encrypted/shop_db
    backing_file: /srv/luks/shop_db.img
    keyfile: /etc/holdfast/keys/shop_db.key
    new_keyfile: /etc/holdfast/keys/shop_db.key.new
    remove_keyfile: /etc/holdfast/keys/shop_db.key

- name: Grow it online
  holdfast.volumes.luks_path:
    path: /srv/encrypted/shop_db
    backing_file: /srv/luks/shop_db.img
    size: 20G
    keyfile: /etc/holdfast/keys/shop_db.key
'''

RETURN = r'''
plan:
  description:
    - The steps planned from the state read before any change, in order. In check mode, the prediction of a real
      run (nothing is changed).
    - In a real run, equal to RV(steps), unless the filesystem inside a closed container had to be seen first (see
      RV(filesystem)); RV(steps) is then what was done after looking.
  returned: always
  type: list
  elements: str
  sample: ["create backing file /srv/luks/db.img (10737418240 bytes, sparse)", "luksFormat /srv/luks/db.img ..."]
steps:
  description: Every step taken (or, in check mode, that would be taken), in order.
  returned: always
  type: list
  elements: str
  sample: ["create backing file /srv/luks/db.img (10737418240 bytes, sparse)", "luksFormat /srv/luks/db.img ..."]
drift:
  description: Differences between the existing container (type, cipher, key size, filesystem, Docker volume) and
    the task, left as they are.
  returned: always
  type: list
  elements: dict
path:
  description: The mount point (O(path)).
  returned: always
  type: str
name:
  description: The device-mapper name.
  returned: always
  type: str
mapper:
  description: The mapped device.
  returned: always
  type: str
filesystem:
  description:
    - With O(state=mounted), the filesystem on the mapping (found there, or created by the run).
    - V(unknown) in check mode when the container exists but is closed (check mode does not open it).
  returned: when O(state=mounted)
  type: str
  sample: ext4
keyslots:
  description: Number of active key slots after the run.
  returned: when the container exists
  type: int
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import docker_argument_spec
from ansible_collections.holdfast.volumes.plugins.module_utils._luks_path import (
    LUKS_PATH_OPTIONS,
    LUKS_PATH_RULES,
    run_luks_path,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._module_main import execute


def main():
    argument_spec = dict(LUKS_PATH_OPTIONS)
    argument_spec.update(docker_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, **LUKS_PATH_RULES)
    execute(module, run_luks_path, check_mode=module.check_mode)


if __name__ == '__main__':
    main()
