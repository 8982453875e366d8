# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The layout of a backup destination, shared by volume_backup, volume_restore and backup_rotation.
    DOCUMENTATION = r'''
options:
  lock_timeout:
    description:
      - Seconds to wait for the lock of the volume's backup folder, held by another backup, restore or rotation of
        the same volume. Then the module fails with a clear message.
    type: int
    default: 600
notes:
  - "Layout of a destination: one folder per volume, C(<dest>/<volume>/), holding C(<volume>-<UTC timestamp>.tar.zst)
    (or C(.tar.gz), C(.tar), with C(.age) appended when encrypted) and C(<volume>-<UTC timestamp>.manifest.json).
    The manifest is written last: an archive without its manifest is never taken for a complete backup."
  - Archives are plain tar streams (members C(./...)), so they restore without Ansible, for example
    C(zstd -d < a.tar.zst | tar -x --numeric-owner -p -C /target) or
    C(age -d -i key.txt a.tar.zst.age | zstd -d | tar -x --numeric-owner -p -C /target).
'''
