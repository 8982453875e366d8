#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: volume_restore
short_description: Verified, traversal-safe restore of a volume or host directory that never half-restores
version_added: 0.1.0
description:
  - Restores an archive made by M(holdfast.volumes.volume_backup), or a foreign tar archive (plain, gzip or zstd,
    for example one made with C(docker run --rm -v vol:/data -v /root:/backup alpine tar cvf /backup/backup.tar -C
    /data .)), into a Docker volume (created if missing, as a plain local volume or with the O(driver) and
    O(driver_options) of the task, never those of the manifest; for its labels see O(labels)) or a host directory.
  - Verifies before touching anything. The sha256 is checked against the manifest, the archive is decrypted and
    decompressed, and its whole tar index is read. A corrupted or truncated archive fails and the target is untouched.
  - Traversal-safe. Refuses, and writes nothing at all for, archives with absolute member names, C(..) components,
    members whose path goes through a symlink (also one the archive itself created), hard links to anything but an
    earlier regular member, a path that changes type, and device nodes or fifos unless O(allow_special_files).
    Symlinks are data. They are restored as they are, whatever they point to; nothing is written through one.
  - No second parser. The archive is read once, strictly (ambiguous numbers, oversized extended headers, data on
    links or directories are refused), and GNU tar extracts only the module's own re-encoding of the members that
    passed the checks. A header GNU tar would read differently from the checker cannot reach it.
  - Bounded. A restore stops as soon as the archive holds more than its manifest's C(bytes_raw), and before the
    target's filesystem falls under O(disk_reserve).
  - Never half-restored. The archive is extracted into a private staging directory beside the target (same
    filesystem), then swapped into place with renames relative to open directory descriptors, so another user who
    can write the target's parent cannot redirect it. Any failure before the swap leaves the previous content
    intact. The staging directory of a killed restore is removed by the next restore of the same target (it is
    provably its own, a private directory with a marker naming the target, under the target's lock); others are
    reported in RV(leftovers).
  - The target is decided once, from the task, before anything is created. Whatever directory it resolves to (a
    volume's own directory, the device of a bind-backed volume, a host path) is checked the same way. It must be
    empty (or O(replace)), and containers that use it through any volume or bind mount are refused or stopped
    (O(quiesce)).
  - Restores ownership (numeric), modes, timestamps, links, xattrs and ACLs exactly.
  - From an offsite store (O(remote), written by M(holdfast.volumes.backup_sync)) the archive is streamed from the
    remote through the same checks, with no local copy; the swap happens only after its sha256 matched the
    manifest, so a copy damaged on the server, or a download cut off midway, leaves the target untouched. Name
    another host with O(host) to restore its backups on a replacement host.
  - Idempotent. After a restore, a marker records the archive's sha256 and a fingerprint of the restored tree.
    Restoring the same archive onto unchanged content reports no change, unless O(force).
author:
  - holdfast.volumes developers (@holdfast)
extends_documentation_fragment:
  - holdfast.volumes.docker
  - holdfast.volumes.backup
  - holdfast.volumes.offsite.remote_store
options:
  archive:
    description:
      - The archive file to restore. Its manifest, when it sits beside it, is used for verification.
      - Mutually exclusive with O(dest).
      - With O(remote), the archive's file name in the volume's folder on the remote (the newest complete backup
        when omitted).
    type: path
  dest:
    description:
      - A backup destination directory. The newest complete backup (archive plus manifest) of O(source) is restored.
    type: path
  source:
    description:
      - With O(dest) or O(remote), whose backups to use (a volume name or host path as it was backed up).
        Defaults to the target O(volume) or O(path), so a volume restores from its own backups.
    type: str
  volume:
    description:
      - The Docker volume to restore into. Created when missing, as a plain local volume unless O(driver) or
        O(driver_options) say otherwise, with the labels O(labels) describes.
      - The driver and options recorded in the manifest are never used. A manifest can be forged, and a bind
        volume's device would make the restore write into another directory.
    type: str
  labels:
    description:
      - Labels of the volume when the restore creates it (Docker cannot change the labels of an existing volume, so
        they are not applied to one).
      - When not set, a restore into the volume the backup was made of (disaster recovery) gets the backup's
        labels, so the volume comes back as the model lists it and converges cleanly, also with
        C(exclusive). A restore into another name (a drill, a copy beside the original) gets only the label
        C(io.holdfast.volumes.restored-from) naming the source, so that the copy does not match the model's
        C(exclusive) selector, which would otherwise want to remove it and refuse the next converge.
      - V({}) creates the volume without labels.
    type: dict
  driver:
    description:
      - The driver of a volume that does not exist yet. Default V(local).
      - When the volume exists, it must match (Docker cannot change a volume's driver).
    type: str
  driver_options:
    description:
      - The driver options of a volume that does not exist yet (for example a bind to a directory, C(type=none),
        C(o=bind), C(device=/srv/data)). That directory is then the target and gets every check.
      - When the volume exists, they must match its options.
    type: dict
  strip_setuid:
    description:
      - Remove the setuid and setgid bits of the restored files, and their file capabilities (the
        C(security.capability) extended attribute, for example C(cap_setuid+ep), which gives root as surely).
      - Off by default, because a restore gives back exactly what was backed up. Turn it on when the archive comes
        from a store that others can write, and its files are reachable by users of this host or run in containers.
        A setuid-root program planted in an archive would give them root. See the threat model in the docs.
      - Not available for volumes reached through the Engine.
    type: bool
    default: false
  path:
    description:
      - The host directory to restore into. Created when missing.
      - A mount point (a luks_path filesystem, a separate filesystem) cannot be renamed, so it is restored in place.
        The archive is staged in a hidden directory inside it, then its entries are swapped with renames (rolled
        back on failure), and the root takes the archive's owner and mode. With O(keep_previous), the previous
        content is kept in a hidden C(.holdfast-previous-*) directory inside the mount point.
      - Containers that use it, through a bind mount or through a volume whose data lies there, count as users
        (see O(quiesce)).
    type: path
  replace:
    description:
      - Allow replacing a target that holds data. Without it, a non-empty target is refused.
    type: bool
    default: false
  keep_previous:
    description:
      - With O(replace), keep the previous content beside the target (returned in RV(previous)) instead of
        deleting it after the swap.
    type: bool
    default: false
  force:
    description:
      - Restore even when the marker says this archive was restored already and the content is unchanged.
    type: bool
    default: false
  identity:
    description:
      - Path of an age identity file on the managed host, needed for encrypted archives. Never logged.
    type: path
  allow_special_files:
    description:
      - Restore device nodes and fifos. Off by default; such members are refused.
    type: bool
    default: false
  disk_reserve:
    description:
      - Free space to leave on the filesystem that receives the content. The restore checks it before extracting
        (against the manifest's C(bytes_raw) when there is one) and while extracting, and stops and cleans up
        before the filesystem would fall under it (or under 1 % of its inodes). The previous content stays intact.
      - A size (V(1G), V(512M), V(0) for no reserve) or a percentage of the filesystem (V(5%)). Default 5 % of
        the filesystem, at most 1 GiB.
    type: str
  quiesce:
    description:
      - V(stop) stops the running containers that use the target for the swap and starts them again afterwards.
        With V(none), a target used by running containers is refused.
    type: str
    choices: [none, stop]
    default: none
  stop_timeout:
    description:
      - Seconds a container gets to stop before it is killed.
    type: int
    default: 30
  allow_inconsistent:
    description:
      - Restore a backup whose manifest records it as not consistent (C(consistent=false), because containers
        wrote to the source while it was read, or tar saw files change). The module restores it with a warning;
        with V(false) it refuses before touching anything. The restore role passes V(false) unless
        C(holdfast_restore_allow_inconsistent) is set.
      - Backups whose manifest predates this record (or has no manifest) count as unknown, not inconsistent.
    type: bool
    default: true
  state_dir:
    description:
      - Directory of the restore markers used for idempotence.
    type: path
    default: /var/lib/holdfast-volumes/restored
attributes:
  check_mode:
    support: full
    description:
      - Locates and fully verifies the archive (read-only), reports what would happen, writes nothing and builds
        nothing.
      - For an existing volume reached through the Engine, looking inside needs the helper image
        C(holdfast/volume-helper:empty). When it does not exist yet, RV(target_empty) is V(unknown).
  diff_mode:
    support: none
    description: The content of a volume is not shown as a diff.
notes:
  - Volumes reached through the Engine (tmpfs/nfs options, other drivers, a remote engine) can be restored into
    when empty; replacing their content is refused because it cannot be swapped atomically.
  - Any O(docker_host) other than this host's own socket (C(unix:///var/run/docker.sock)) is a remote engine, and its
    volumes are always reached through the Engine API, never by a path on this host.
requirements:
  - GNU tar and zstd on the managed host (zstd also reads gzip and plain tar); age for encrypted archives.
seealso:
  - module: holdfast.volumes.volume_backup
'''

EXAMPLES = r'''
- name: Restore the newest backup of shop_db, replacing its content, with the database stopped for the swap
  holdfast.volumes.volume_restore:
    dest: /srv/backups
    volume: shop_db
    replace: true
    quiesce: stop

- name: Restore an encrypted archive into a new volume (labelled io.holdfast.volumes.restored-from=shop_db)
  holdfast.volumes.volume_restore:
    archive: /srv/backups/shop_db/shop_db-20261126T173500Z.tar.zst.age
    identity: /root/.config/holdfast/backup-key.txt
    volume: shop_db_copy

- name: A restore drill whose copy carries labels of its own
  holdfast.volumes.volume_restore:
    dest: /srv/backups
    source: shop_db
    volume: shop_db_drill
    labels: {purpose: restore-drill}

- name: Restore a foreign archive made with docker run ... tar cvf
  holdfast.volumes.volume_restore:
    archive: /root/backup.tar
    volume: legacy_data

- name: On a replacement host, restore web1's newest offsite copy of shop_db from S3
  holdfast.volumes.volume_restore:
    remote: "{{ offsite_remote }}"
    host: web1
    volume: shop_db
'''

RETURN = r'''
archive:
  description: The archive restored (or that would be).
  returned: always
  type: str
sha256:
  description: sha256 of the archive.
  returned: success
  type: str
entries:
  description: Entries in the archive, not counting the root.
  returned: when the archive was verified
  type: int
encrypted:
  description: Whether the archive was encrypted (age).
  returned: when the archive was verified
  type: bool
msg:
  description: Why nothing was done (the same archive was restored before and the content is unchanged).
  returned: when nothing was restored
  type: str
  sample: already restored from this archive; content unchanged
would_create_volume:
  description: Whether the target volume would be created.
  returned: in check mode, when a restore would happen
  type: bool
would_stop:
  description: Names of the running containers that would be stopped for the swap (O(quiesce=stop)).
  returned: in check mode, when a restore would happen
  type: list
  elements: str
manifest_used:
  description: Whether a manifest was found and checked.
  returned: always
  type: bool
created_volume:
  description: Whether the target volume was created.
  returned: always
  type: bool
labels:
  description: The labels of the volume the restore created (or would create), else null.
  returned: always
  type: dict
previous:
  description: Where the previous content was kept (O(keep_previous)), else null.
  returned: always
  type: str
target_empty:
  description:
    - In check mode, whether the existing target is empty (a target that holds data needs O(replace)).
    - V(unknown) when the target is a volume reached through the Engine and the helper image does not exist yet.
  returned: in check mode
  type: raw
duration_seconds:
  description: Time the restore (or, in check mode, the verification) took.
  returned: success
  type: float
  sample: 2.481
containers:
  description: Containers stopped for the swap, and whether they were started again.
  returned: always
  type: list
  elements: dict
consistent:
  description: The consistency recorded in the backup's manifest (V(true), V(false)), or null when unknown (no
    manifest, or one written before consistency was recorded). A V(false) also gives a warning.
  returned: always
  type: bool
route:
  description: How the target is reached, V(host) (a directory of this host) or V(engine) (the Engine API).
  returned: always
  type: str
leftovers:
  description: Staging directories of interrupted restores found beside (or inside) the target and not removed.
    Those not provably this target's own are left for you to inspect.
  returned: always
  type: list
  elements: str
cleaned_leftovers:
  description: Staging directories of interrupted restores of this target that were removed.
  returned: always
  type: list
  elements: str
setuid_stripped:
  description: Files whose setuid or setgid bit was removed (O(strip_setuid)).
  returned: when restored through the host route
  type: int
capabilities_stripped:
  description: Files whose file capabilities (C(security.capability)) were removed (O(strip_setuid)).
  returned: when restored through the host route
  type: int
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import docker_argument_spec
from ansible_collections.holdfast.volumes.plugins.module_utils._module_main import execute
from ansible_collections.holdfast.volumes.plugins.module_utils._quiesce import warn_inconsistent
from ansible_collections.holdfast.volumes.plugins.module_utils._remote_store import (
    REMOTE_STORE_OPTIONS,
    warn_about_remote,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._restore import run_restore
from ansible_collections.holdfast.volumes.plugins.module_utils._restore_state import DEFAULT_STATE_DIR


def main():
    argument_spec = dict(
        archive=dict(type='path'),
        dest=dict(type='path'),
        source=dict(type='str'),
        volume=dict(type='str'),
        labels=dict(type='dict'),
        driver=dict(type='str'),
        driver_options=dict(type='dict'),
        strip_setuid=dict(type='bool', default=False),
        path=dict(type='path'),
        replace=dict(type='bool', default=False),
        keep_previous=dict(type='bool', default=False),
        force=dict(type='bool', default=False),
        identity=dict(type='path', no_log=False),
        allow_special_files=dict(type='bool', default=False),
        disk_reserve=dict(type='str'),
        quiesce=dict(type='str', default='none', choices=['none', 'stop']),
        stop_timeout=dict(type='int', default=30),
        allow_inconsistent=dict(type='bool', default=True),
        state_dir=dict(type='path', default=DEFAULT_STATE_DIR),
        lock_timeout=dict(type='int', default=600),
    )
    argument_spec.update(docker_argument_spec())
    argument_spec.update(REMOTE_STORE_OPTIONS)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[('volume', 'path'), ('archive', 'dest'), ('dest', 'remote')],
                           required_one_of=[('volume', 'path'), ('archive', 'dest', 'remote')])
    warn_about_remote(module)
    execute(module, warn_inconsistent(run_restore), check_mode=module.check_mode)


if __name__ == '__main__':
    main()
