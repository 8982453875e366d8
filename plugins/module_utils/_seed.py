# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""volume_seed: fill an empty volume once, from a directory or a tar archive on the managed host.

Built on the restore path (member gate -> staging -> swap), with a stricter gate: symlinks must stay inside the
volume. A directory source is first packed with GNU tar into a private temporary file, so both sources go through
the same checks. Owner and group, when given, are applied to the staged tree before it is swapped in.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import subprocess
import tempfile

from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import connect, inspect_volume
from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._modes import parse_id
from ansible_collections.holdfast.volumes.plugins.module_utils._process import command_env
from ansible_collections.holdfast.volumes.plugins.module_utils._restore_engine import restore_engine
from ansible_collections.holdfast.volumes.plugins.module_utils._restore_read import verify_archive
from ansible_collections.holdfast.volumes.plugins.module_utils._restore_swap import HostRestore, restore_host
from ansible_collections.holdfast.volumes.plugins.module_utils._tree_walk import converge_tree
from ansible_collections.holdfast.volumes.plugins.module_utils._volume_access import (
    HELPER_IMAGE,
    VolumeAccess,
)

UNKNOWN_EMPTY = ("Check mode cannot tell whether volume %s is empty: it is reached through the Docker Engine and "
                 "reading it needs the helper image " + HELPER_IMAGE + ", which a real run builds (check mode "
                 "builds nothing). seeded is 'unknown'; the seed itself was checked.")


def run_seed(params, check_mode=False):
    src = params['src']
    if not os.path.exists(src):
        raise HoldfastError("src %s does not exist on the managed host (copy files from the controller first, e.g. "
                            "with ansible.builtin.copy, then seed from that directory)." % src)
    uid = parse_id(params.get('owner'), 'owner')
    gid = parse_id(params.get('group'), 'group')
    client = connect(params)
    vol = inspect_volume(client, params['volume'])
    warnings = []
    if vol is None:
        if not check_mode:
            raise HoldfastError("Volume %s does not exist; create it first (holdfast.volumes.docker_volumes)."
                                % params['volume'])
        # an earlier task of the same check run would have created it: a new volume is empty (the seed is checked)
        route, target, empty = None, None, True
        warnings.append("Volume %s does not exist (yet): once it is created, it is empty and would be seeded."
                        % params['volume'])
    else:
        access = VolumeAccess(client, params.get('docker_host'))
        route, target = access.route(vol)
        empty = access.is_empty(vol, check_mode=check_mode)
    result = dict(changed=False, volume=params['volume'], src=src, route=route, seeded=False)
    unknown = empty is None  # check mode, and reading the volume would need the helper image built first
    if unknown:
        empty = True
        warnings.append(UNKNOWN_EMPTY % params['volume'])
    if not empty and not params.get('force'):
        result['msg'] = 'volume %s already holds data; left alone (force: true replaces it with the seed)' \
            % params['volume']
        return result
    if not empty and route == 'engine':
        raise HoldfastError("force on volume %s, which is reached through the Engine, is not supported: its content "
                            "cannot be swapped atomically. Empty it first." % params['volume'])
    workdir = tempfile.mkdtemp(prefix='holdfast-seed-')
    try:
        os.chmod(workdir, 0o700)
        if os.path.isdir(src):
            archive = os.path.join(workdir, 'seed.tar')
            proc = subprocess.run(['tar', '--create', '--file', archive, '--numeric-owner', '--xattrs', '--acls',
                                   '-C', src, '.'], capture_output=True, check=False, env=command_env())
            if proc.returncode != 0:
                raise HoldfastError("Cannot read the seed directory %s: %s"
                                    % (src, proc.stderr.decode('utf-8', 'replace').strip()[-500:]))
        else:
            archive = src
        if check_mode or route == 'engine':
            checked = verify_archive(archive, None, None, params.get('allow_special_files'), escaping_links=True)
            result.update(changed=True, seeded=True, entries=checked['entries'])
            if check_mode:  # seeded: would be
                if unknown:
                    result['seeded'] = 'unknown'
                return result, warnings
            if uid is not None or gid is not None:
                raise HoldfastError("owner/group on a volume reached through the Engine: seed first, then use "
                                    "holdfast.volumes.volume_permissions.")
            restore_engine(client, params, archive, vol, checked, escaping_links=True)
            return result

        def before_swap(staging):
            if uid is not None or gid is not None:
                converge_tree(staging, dict(uid=uid, gid=gid, mode=None, recurse=True, file_mode=None,
                                            dir_mode=None, keep_exec=False))
        warnings = []
        how = HostRestore(key='volume:%s' % params['volume'], warnings=warnings, before_swap=before_swap,
                          escaping_links=True)
        _previous, checked, _cleaned = restore_host(dict(params, identity=None, keep_previous=False), archive, target,
                                                    how)
        result.update(changed=True, seeded=True, entries=checked['entries'], sha256=checked['sha256'])
        return result, warnings
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
