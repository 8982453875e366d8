# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # A remote backup store written by backup_sync, read by backup_info, backup_rotation and volume_restore.
    REMOTE_STORE = r'''
options:
  remote:
    description:
      - A remote store written by M(holdfast.volumes.backup_sync), instead of O(dest), with the same keys. Its
        backups under C(<path>/<host>/<volume>/) are used the same way as those of a local destination.
      - The remote is listed once (one recursive listing) and its manifests are read in one rclone run (manifests
        larger than 1 MiB are ignored); archives are read as streams, never stored locally.
      - Exactly one of O(dest) and O(remote) is required.
    type: dict
    suboptions:
      type:
        description: The rclone backend (V(s3), V(sftp), ...).
        type: str
        required: true
      path:
        description: The bucket and prefix for object stores, the directory for SFTP.
        type: str
        required: true
      options:
        description:
          - The backend's settings with rclone's option names, secrets included; all values are C(no_log) and
            reach rclone only through its environment (see M(holdfast.volumes.backup_sync)).
          - For SFTP, set C(known_hosts_file); without it rclone accepts any host key, and the module warns.
        type: dict
        default: {}
  host:
    description:
      - With O(remote), whose backups to use (the host folder under the remote path). Defaults to this host's short
        host name; name another host to use its backups (a replacement host restoring a lost one).
    type: str
  rclone_path:
    description: With O(remote), the rclone executable (default the one on C(PATH); rclone 1.60 or newer).
    type: path
'''
