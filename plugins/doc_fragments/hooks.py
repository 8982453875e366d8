# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The hooks of volume_backup (argument spec: _HOOK in plugins/module_utils/_backup.py). The suboptions of a hook
    # are written once, under pre_hooks, and reused for post_hooks through a YAML anchor.
    DOCUMENTATION = r'''
options:
  pre_hooks:
    description:
      - Commands to run before the copy (before quiescing), each in a running container. A non-zero exit aborts the
        backup; nothing is written.
    type: list
    elements: dict
    suboptions: &hook
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
    suboptions: *hook
'''
