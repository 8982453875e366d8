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
  - Consistent by default. With O(quiesce=auto) (the default), the running containers that mount the source
    writable are paused while it is read; O(quiesce=stop) stops the containers that use it instead. They resume as
    soon as the source has been read (tar has exited), before the compression tail, fsync and read-back, and are
    always put back as they were, also when the backup fails or the module is interrupted by a signal.
  - Every manifest records the consistency of the copy (C(quiesced), C(live_writers), C(files_changed),
    C(consistent)) and what happened to each container (action, downtime, whether Docker had to kill it at the
    timeout). An inconsistent copy, or a container killed at the stop timeout, is a warning.
  - Databases, their stop signals and dumps are covered in the collection's docs/databases.md.
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
  - holdfast.volumes.hooks
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
      - An existing O(dest) must belong to root and not be writable by its group or others (unless it has the
        sticky bit); otherwise the backup fails, in check mode too (fix it with C(chmod go-w)).
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
      - V(auto) pauses the running containers that mount the source read-write while it is read (none when there
        are none; containers that mount it read-only keep running). Pausing (the cgroup freezer) holds every
        process between two system calls, so the copy is exactly what a power cut at that instant would have left
        on disk, which crash-safe stores (PostgreSQL, MySQL/InnoDB, SQLite, Redis AOF) recover from; it costs no
        shutdown and no cold start, and connections survive. The downtime is the time tar takes to read the source.
      - V(pause) pauses every running container that uses the source (also read-only users); V(stop) stops them
        and starts them again (a clean shutdown, so no recovery at restore; but a longer downtime and a cold start).
      - V(none) copies live data while containers may write to it. The copy is then recorded and reported as not
        consistent when a running container had the source mounted writable, or when tar saw a file change.
        A database copied that way can start without complaint and be corrupt.
      - A path source (O(path)) is matched against the bind mounts of the containers, so O(quiesce=auto) needs
        the Engine for it too.
    type: str
    choices: [auto, none, pause, stop]
    default: auto
  stop_timeout:
    description:
      - Seconds a container gets to stop on its stop signal with O(quiesce=stop) before Docker kills it. A killed
        container is a warning (its files are only crash-consistent) and recorded (RV(containers[].killed)). Give
        databases a stop signal they honour quickly (PostgreSQL SIGINT) and a timeout longer than their shutdown.
    type: int
    default: 30
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
- name: Back up the database volume; the running database is paused while tar reads it (quiesce auto)
  holdfast.volumes.volume_backup:
    volume: shop_db
    dest: /srv/backups
  register: backup

- name: Stop the database for the copy instead (clean shutdown; run it with a stop signal it honours)
  holdfast.volumes.volume_backup:
    volume: shop_db
    dest: /srv/backups
    quiesce: stop
    stop_timeout: 60

- name: Dump first, then back up the volume with the dump, encrypted
  holdfast.volumes.volume_backup:
    volume: shop_db
    dest: /mnt/nfs/backups
    pre_hooks:
      - container: shop-postgres
        command: [sh, -c, "umask 077 && pg_dumpall -U postgres > /var/lib/postgresql/dump.sql"]
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
created:
  description: When the backup was taken (UTC, ISO 8601), as in the manifest and the archive's name.
  returned: success, not in check mode
  type: str
  sample: "2026-11-26T17:35:00Z"
containers:
  description: Containers paused or stopped for the copy, what happened to them (also recorded in the manifest).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Container name.
      type: str
    action:
      description: V(pause) or V(stop).
      type: str
    resumed:
      description: Whether it was unpaused or started again.
      type: bool
    restored:
      description: The same as RV(containers[].resumed) (the earlier name).
      type: bool
    downtime_seconds:
      description: From the pause or stop request until it was unpaused or started again (for V(stop), the
        application's own start-up comes on top).
      type: float
    killed:
      description: V(stop) only. Docker had to kill it at O(stop_timeout) because it did not stop on its stop signal
        (exit code 137). Also a warning.
      type: bool
    stop_signal:
      description: V(stop) only. The container's stop signal (SIGTERM when it sets none).
      type: str
    exit_code:
      description: V(stop) only. Its exit code after the stop.
      type: int
  sample: [{name: shop-postgres, action: pause, resumed: true, restored: true, downtime_seconds: 1.62}]
quiesce_action:
  description: What O(quiesce) did here, V(pause), V(stop) or V(none) (V(auto) with no running writer is V(none)).
  returned: success
  type: str
quiesced:
  description: Whether containers were paused or stopped for the copy.
  returned: success, not in check mode
  type: bool
live_writers:
  description: Running containers that had the source mounted writable and were not quiesced while it was read
    (only with O(quiesce=none)); null when the Engine could not be asked (a path backup with O(quiesce=none) and no
    Engine).
  returned: success, not in check mode
  type: list
  elements: str
files_changed:
  description: Whether tar saw files change while it read them; null on the Engine route, which cannot tell.
  returned: success, not in check mode
  type: bool
consistent:
  description: No live writer and no file changed while the source was read. V(false) is also a warning; restores
    of such a backup warn, and the restore role refuses them unless told otherwise.
  returned: success, not in check mode
  type: bool
source_read_seconds:
  description: Seconds from the start of the copy until the source had been read (tar exited); quiesced containers
    resume then.
  returned: success, not in check mode
  type: float
would_quiesce:
  description: Check mode only. The containers the backup would pause or stop.
  returned: check mode
  type: list
  elements: str
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
from ansible_collections.holdfast.volumes.plugins.module_utils._module_main import execute


def main():
    argument_spec = dict(BACKUP_OPTIONS)
    argument_spec.update(docker_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[('volume', 'path')], required_one_of=[('volume', 'path')])
    execute(module, run_backup, check_mode=module.check_mode)


if __name__ == '__main__':
    main()
