# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""volume_permissions: parse the wanted state (pure), decide the route, converge, report.

The host route walks the tree itself (_tree_walk); the engine route runs a shell script (find, chown, chmod) in a
helper container (_volume_access). Modes and ids are parsed by _modes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import time

from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import connect, inspect_volume
from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._modes import mode_option, parse_id
from ansible_collections.holdfast.volumes.plugins.module_utils._tree_walk import converge_tree
from ansible_collections.holdfast.volumes.plugins.module_utils._volume_access import (
    MOUNT_POINT,
    VolumeAccess,
    one_volume_or_path,
)


def wanted_state(params):
    """Pure: the normalised wanted state from the module parameters."""
    state = dict(uid=parse_id(params.get('owner'), 'owner'), gid=parse_id(params.get('group'), 'group'),
                 mode=mode_option(params, 'mode'), recurse=bool(params.get('recurse')),
                 file_mode=mode_option(params, 'file_mode'), dir_mode=mode_option(params, 'dir_mode'),
                 keep_exec=bool(params.get('keep_file_exec_bits')),
                 skip_hardlinks=bool(params.get('skip_hardlinks')))
    if (state['file_mode'] or state['dir_mode']) and not state['recurse']:
        raise HoldfastError("file_mode and dir_mode apply below the root: set recurse: true.")
    wants_mode = state['mode'] or state['file_mode'] or state['dir_mode']
    if state['uid'] is None and state['gid'] is None and not wants_mode:
        raise HoldfastError("Nothing to manage: give owner, group, mode, file_mode or dir_mode.")
    return state


# -- the engine route: a helper container with a shell, find, chown and chmod -----------------------------------
def engine_script(state, check_mode):
    """Pure: the shell script run in the helper container. Prints one line per changed entry kind."""
    for name in ('mode', 'file_mode', 'dir_mode'):
        spec = state[name]
        if spec is not None and spec.octal is None:
            raise HoldfastError("%s: symbolic modes need direct access to the volume's files; this volume is "
                                "reached through the Engine, so use an octal mode (e.g. '0750')." % name)
    if state.get('skip_hardlinks'):
        raise HoldfastError("skip_hardlinks needs direct access to the volume's files; not available for a volume "
                            "reached through the Engine.")
    if state['keep_exec']:
        raise HoldfastError("keep_file_exec_bits needs direct access to the volume's files; not available for a "
                            "volume reached through the Engine.")
    act = not check_mode
    lines = ['set -e', 'cd %s' % MOUNT_POINT, 'owner=0; mode=0']
    depth = '' if state['recurse'] else '-maxdepth 0'
    if state['uid'] is not None or state['gid'] is not None:
        tests = []
        if state['uid'] is not None:
            tests.append('! -user %d' % state['uid'])
        if state['gid'] is not None:
            tests.append('! -group %d' % state['gid'])
        if state['gid'] is None:
            who = '%d' % state['uid']  # not "uid:", which would set the user's login group
        elif state['uid'] is None:
            who = ':%d' % state['gid']
        else:
            who = '%d:%d' % (state['uid'], state['gid'])
        lines.append(r'owner=$(find . %s -xdev \( %s \) | wc -l)' % (depth, ' -o '.join(tests)))
        if act:
            lines.append(r'find . %s -xdev \( %s \) -exec chown -h %s {} +' % (depth, ' -o '.join(tests), who))
    parts = []
    if state['mode'] is not None:
        parts.append(('-maxdepth 0', state['mode'].octal))
    if state['recurse'] and state['dir_mode'] is not None:
        parts.append(('-mindepth 1 -type d', state['dir_mode'].octal))
    if state['recurse'] and state['file_mode'] is not None:
        parts.append(('-mindepth 1 -type f', state['file_mode'].octal))
    for selector, octal in parts:
        lines.append('n=$(find . %s -xdev ! -perm %04o | wc -l); mode=$((mode + n))' % (selector, octal))
        if act:
            lines.append('find . %s -xdev ! -perm %04o -exec chmod %04o {} +' % (selector, octal, octal))
    lines.append('echo "owner=$owner mode=$mode"')
    return '\n'.join(lines)


def run_engine(access, volume, state, image, check_mode):
    """Run the script in a helper container; returns dict(changed_owner, changed_mode)."""
    code, logs = access.run_shell(volume, engine_script(state, check_mode), image, read_only=check_mode)
    match = re.search(r'owner=(\d+) mode=(\d+)', logs)
    if code != 0 or not match:
        raise HoldfastError("The helper container failed (exit %s): %s" % (code, logs[-800:].strip()))
    return dict(changed_owner=int(match.group(1)), changed_mode=int(match.group(2)))


def _engine_counts(access, params, state, check_mode):
    """The engine route's real run: the helper image (given, or built from busybox), the script, the counts."""
    image, temporary = (params['helper_image'], False) if params.get('helper_image') \
        else access.ensure_busybox_image(check_mode)
    try:
        counts = run_engine(access, params['volume'], state, image, check_mode)
    finally:
        if temporary:
            access.remove_image(image)
    return dict(counts, changed_entries=max(counts['changed_owner'], counts['changed_mode']), sample=[],
                examined=None, skipped_mounts=[])


def _unknown(route, root, started, changed_entries):
    """A check-mode result whose counts cannot be known."""
    return dict(changed=True, route=route, path=root, changed_owner=changed_entries, changed_mode=changed_entries,
                changed_entries=changed_entries, examined=None, sample=[], skipped_mounts=[],
                duration_seconds=round(time.time() - started, 3))


def _target(params, check_mode):
    """(route, root, access) for the target; route None when the volume does not exist yet (check mode)."""
    if params.get('path'):
        if not os.path.isabs(params['path']):
            raise HoldfastError("path must be absolute.")
        return 'host', params['path'], None
    client = connect(params)
    vol = inspect_volume(client, params['volume'])
    if vol is None:
        if check_mode:  # an earlier task of the same check run would have created it
            return None, None, None
        raise HoldfastError("Volume %s does not exist; create it first (holdfast.volumes.docker_volumes)."
                            % params['volume'])
    access = VolumeAccess(client, params.get('docker_host'))
    route, root = access.route(vol)
    return route, root, access


def run_permissions(params, check_mode=False):
    """volume_permissions: decide the route, converge, report."""
    one_volume_or_path(params)
    state = wanted_state(params)
    started = time.time()
    route, root, access = _target(params, check_mode)
    if route is None:
        return _unknown(None, None, started, None), [
            "Volume %s does not exist (yet): once it is created, its root directory would be set to the "
            "wanted owner and mode." % params['volume']]
    if route == 'host':
        stats = converge_tree(root, state, check_mode=check_mode)
    elif check_mode:
        # Counting needs a helper container run (and perhaps its image built): check mode does neither.
        engine_script(state, check_mode)  # the refusals a real run would meet (symbolic modes, keep_file_exec_bits)
        return dict(_unknown(route, root, started, 'unknown'), hardlinks=None), [
            "Check mode cannot tell what would change in volume %s: it is reached through the Docker Engine, and "
            "looking inside needs a helper container run (check mode runs none). The counts are 'unknown'."
            % params['volume']]
    else:
        stats = _engine_counts(access, params, state, check_mode)
    return _report(route, root, stats, started, check_mode)


def _report(route, root, stats, started, check_mode):
    changed = bool(stats['changed_owner'] or stats['changed_mode'])
    result = dict(changed=changed, route=route, path=root, changed_owner=stats['changed_owner'],
                  changed_mode=stats['changed_mode'], changed_entries=stats['changed_entries'],
                  examined=stats['examined'], sample=stats['sample'], skipped_mounts=stats['skipped_mounts'],
                  hardlinks=stats.get('hardlinks'), duration_seconds=round(time.time() - started, 3))
    if route == 'host':
        # changed_entries counts the root too: below it, only the others changed
        below = stats['changed_entries'] - (1 if stats['root_changed'] else 0)
        result['diff'] = dict(before_header='%s (root)' % root, after_header='%s (root)' % root,
                              before='owner: %(uid)s\ngroup: %(gid)s\nmode: %(mode)s\n' % stats['root_before'],
                              after='owner: %(uid)s\ngroup: %(gid)s\nmode: %(mode)s\n' % stats['root_after']
                              + ('entries changed below: %d\n' % below))
    warnings = []
    if stats.get('hardlinks_changed'):
        warnings.append(
            "%d files below %s that have more than one hard link %s changed: a hard link can also be reached from "
            "outside the tree. Set skip_hardlinks: true to leave such files alone."
            % (stats['hardlinks_changed'], root, 'would be' if check_mode else 'were'))
    return result, warnings
