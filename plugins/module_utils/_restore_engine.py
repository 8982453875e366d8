# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Engine route of a restore: into an empty volume reached only through the Docker Engine, the gate's
re-encoding of the verified archive is streamed through put_archive."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import threading

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._restore_read import gate_archive, judge_gated
from ansible_collections.holdfast.volumes.plugins.module_utils._volume_access import VolumeAccess


def restore_engine(client, params, archive, target_vol, checked, *, escaping_links=False):
    """Into an empty volume reached through the Engine: stream the gate's re-encoding of the verified archive
    through put_archive, so the Engine's tar reader, too, sees only headers the gate wrote. escaping_links: refuse
    symlinks that point outside the volume (volume_seed)."""
    access = VolumeAccess(client, params.get('docker_host'))
    with access.engine_mount(target_vol['Name']) as cid:
        read_fd, write_fd = os.pipe()
        outcome = {}

        def produce():
            sink = os.fdopen(write_fd, 'wb', buffering=1024 * 1024)
            try:
                outcome['gate'] = gate_archive(archive, None, params.get('identity'),
                                               params.get('allow_special_files'), sink=sink,
                                               escaping_links=escaping_links)
                if outcome['gate'][1].refused or outcome['gate'][2]:
                    sink.write(b'\xff' * 512)  # a broken header: the Engine must fail, not stop "cleanly"
            except BaseException as exc:
                outcome['error'] = exc
                try:
                    sink.write(b'\xff' * 512)
                except (OSError, ValueError):
                    pass
            finally:
                try:
                    sink.close()
                except (OSError, ValueError):
                    pass

        worker = threading.Thread(target=produce)
        worker.daemon = True
        worker.start()
        with os.fdopen(read_fd, 'rb') as stream:
            try:
                access.engine_write(cid, stream)
            finally:
                stream.close()
                worker.join()
        if 'error' in outcome:
            raise HoldfastError("Restoring through the Engine failed; volume %s may hold part of the archive: %s"
                                % (target_vol['Name'], outcome['error']))
        pipe, checker, problem = outcome['gate']
        try:
            again = judge_gated(archive, None, outcome['gate'])
        except HoldfastError as exc:
            raise HoldfastError("Restoring through the Engine failed; volume %s may hold part of the archive: %s"
                                % (target_vol['Name'], exc)) from None
        if again['sha256'] != checked['sha256']:
            raise HoldfastError("Restoring through the Engine failed; volume %s may hold part of the archive: the "
                                "archive changed during the restore" % target_vol['Name'])
