#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: volume_backup
short_description: Consistent, verified, optionally encrypted backup of a Docker volume or host directory
version_added: 0.1.0
description:
  - Writes a tar archive of a volume (any driver) or a host directory into a destination folder, compressed with
    zstd (default, multi-threaded) or gzip, optionally encrypted with age to a list of recipients.
  - Atomic and durable. The archive is written to a temporary name in the destination, fsynced, read back and
    checked against its sha256, renamed, and the folder fsynced. The JSON manifest is written last, the same way.
    An interrupted run leaves at most a temporary file, which the next run removes; no earlier backup is touched.
  - Consistent on request. With O(quiesce=pause) or O(quiesce=stop), the containers that use the volume are paused
    or stopped for the copy only, and always put back as they were, also when the backup fails.
  - Hooks run commands in containers before and after the copy (for example a database dump into the volume).
    A failing hook aborts the backup cleanly.
  - Preserves numeric ownership, modes, timestamps, symlinks, hard links, xattrs and ACLs, and sparse files.
  - A backup always creates a new archive, so the module always reports a change (except in check mode, where it
    reports what it would do and writes nothing).
author:
  - holdfast.volumes developers (@holdfast)
extends_documentation_fragment:
  - holdfast.volumes.docker
  - holdfast.volumes.backup
options:
  volume:
    description:
      - The Docker volume to back up. Mutually exclusive with O(path).
      - Plain local volumes are read on the host; others (tmpfs/nfs options, other drivers, a remote engine)
        through the Engine's archive API, with no image pulled.
    type: str
  path:
    description:
      - A host directory to back up (a bind-mount source, an encrypted mount point). Mutually exclusive with
        O(volume).
    type: path
  dest:
    description:
      - The destination directory on the managed host (may be an NFS or other mounted filesystem).
        Backups go into C(<dest>/<volume>/), created with mode 0700.
    type: path
    required: true
  compression:
    description:
      - V(zstd) (multi-threaded), V(gzip) (pigz when installed) or V(none).
    type: str
    choices: [zstd, gzip, none]
    default: zstd
  compression_level:
    description:
      - Compression level (zstd 1-19, default 3; gzip 1-9, default 6).
    type: int
  encrypt_to:
    description:
      - age recipients (public keys C(age1...) or SSH public keys). When set, the archive is encrypted with the
        C(age) tool; only the holders of a matching identity can restore it.
    type: list
    elements: str
  quiesce:
    description:
      - V(none) copies live data. V(pause) freezes the running containers that use the source for the copy;
        V(stop) stops them and starts them again afterwards.
    type: str
    choices: [none, pause, stop]
    default: none
  stop_timeout:
    description:
      - Seconds a container gets to stop with O(quiesce=stop) before it is killed.
    type: int
    default: 30
  pre_hooks:
    description:
      - Commands to run before the copy (before quiescing), each in a running container. A non-zero exit aborts the
        backup; nothing is written.
    type: list
    elements: dict
    suboptions:
      container:
        description: Container name or id.
        type: str
        required: true
      command:
        description: The command, as a list (exec form) or a string (run by the container's default shell parser).
        type: raw
        required: true
      user:
        description: User to run the command as.
        type: str
  post_hooks:
    description:
      - Commands to run after the copy (after the containers are back). A non-zero exit discards the new archive.
    type: list
    elements: dict
    suboptions:
      container:
        description: Container name or id.
        type: str
        required: true
      command:
        description: The command.
        type: raw
        required: true
      user:
        description: User to run the command as.
        type: str
  verify:
    description:
      - Read the archive back from the destination (dropping it from the page cache first) and check its sha256
        before it is renamed into place.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Reports the archive it would write and the containers it would quiesce; writes nothing.
  diff_mode:
    support: none
    description: A backup adds a new file; there is no before/after state to show.
requirements:
  - GNU tar on the managed host; zstd, pigz or gzip for compression; age for encryption.
seealso:
  - module: holdfast.volumes.volume_restore
  - module: holdfast.volumes.backup_rotation
'''

EXAMPLES = r'''
- name: Back up the database volume, stopping the database for the copy
  holdfast.volumes.volume_backup:
    volume: shop_db
    dest: /srv/backups
    quiesce: stop
  register: backup

- name: Dump first, then back up the volume with the dump, encrypted
  holdfast.volumes.volume_backup:
    volume: shop_db
    dest: /mnt/nfs/backups
    pre_hooks:
      - container: shop-postgres
        command: [sh, -c, "pg_dumpall -U postgres > /var/lib/postgresql/data/dump.sql"]
    encrypt_to:
      - age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p

- name: Back up a host directory
  holdfast.volumes.volume_backup:
    path: /srv/uploads
    dest: /srv/backups
    compression: gzip
'''

RETURN = r'''
archive:
  description: Path of the archive.
  returned: always
  type: str
  sample: /srv/backups/shop_db/shop_db-20261126T173500Z.tar.zst
manifest:
  description: Path of the manifest, written last.
  returned: always
  type: str
  sample: /srv/backups/shop_db/shop_db-20261126T173500Z.manifest.json
sha256:
  description: sha256 of the archive as stored.
  returned: success, not in check mode
  type: str
bytes_raw:
  description: Size of the tar stream before compression and encryption.
  returned: success, not in check mode
  type: int
bytes_stored:
  description: Size of the archive.
  returned: success, not in check mode
  type: int
file_count:
  description: Entries in the archive (files, directories, links), not counting the root.
  returned: success, not in check mode
  type: int
duration_seconds:
  description: Wall time of the backup.
  returned: success, not in check mode
  type: float
throughput_mib_s:
  description: MiB of tar stream per second.
  returned: success, not in check mode
  type: float
verified:
  description: Whether the archive was read back and its sha256 checked.
  returned: success, not in check mode
  type: bool
containers:
  description: Containers paused or stopped for the copy, and whether they were put back.
  returned: always
  type: list
  elements: dict
  sample: [{name: shop-postgres, action: stop, restored: true}]
hooks:
  description: Hooks that ran, with exit code and the end of their output.
  returned: always
  type: list
  elements: dict
cleaned:
  description: Temporary files of interrupted earlier runs that were removed.
  returned: always
  type: list
  elements: str
source:
  description: What was backed up (type, name, driver, options, labels, route V(host) or V(engine)).
  returned: always
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.holdfast.volumes.plugins.module_utils._backup import BACKUP_OPTIONS, run_backup
from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import docker_argument_spec
from ansible_collections.holdfast.volumes.plugins.module_utils._module_runner import execute


def main():
    argument_spec = dict(BACKUP_OPTIONS)
    argument_spec.update(docker_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[('volume', 'path')], required_one_of=[('volume', 'path')])
    execute(module, run_backup, check_mode=module.check_mode)


if __name__ == '__main__':
    main()
