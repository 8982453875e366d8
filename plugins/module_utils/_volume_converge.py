# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""docker_volumes, the doing part: list once, plan, guard every destructive step, then act.

Decide first, act second: every refusal is found (in check mode too) before the
first change, so a run either does all of its work or fails having changed nothing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import (
    APIError,
    DockerException,
    api_error,
    available_volume_drivers,
    connect,
    containers_by_volume,
    create_volume,
    list_volumes,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._volume_access import HELPER_IMAGE, VolumeAccess
from ansible_collections.holdfast.volumes.plugins.module_utils._volume_plan import (
    diff_entry,
    plan,
    validate_selector,
    validate_volume_specs,
    volume_view,
)


def guard_destructive(steps, usage, holds_data, allow_data_loss):
    """Pure given its inputs: the refusals for a list of destructive steps.

    steps: list of (name, what) where what is 'remove' or 'recreate'.
    usage: volume name -> list of container dicts. holds_data: name -> bool or None (unknown).
    """
    refusals = []
    for name, what in steps:
        users = usage.get(name) or []
        if users:
            refusals.append(
                "volume %s is used by container(s) %s; stop and remove them first (data of a used volume is "
                "never removed, not even with allow_data_loss)." % (
                    name, ", ".join("%s (%s)" % (c['name'], c['state']) for c in users)))
            continue
        data = holds_data.get(name)
        if data is not False and not allow_data_loss:
            reason = "holds files" if data else "may hold files (its content could not be checked)"
            refusals.append(
                "volume %s %s; to %s it and lose them set allow_data_loss=true, or back it up first "
                "(holdfast.volumes.volume_backup)." % (name, reason, what))
    return refusals


def _spec_inspect(spec):
    return dict(Name=spec['name'], Driver=spec['driver'], Labels=dict(spec['labels']),
                Options=dict(spec['driver_options']), Mountpoint=None, CreatedAt=None, Scope='local')


def converge(params, check_mode=False):
    specs = validate_volume_specs(params.get('volumes'))
    selector = validate_selector(params.get('exclusive'))
    client = connect(params)
    current = list_volumes(client)
    the_plan = plan(current, specs, recreate=params.get('recreate') or 'never', exclusive=selector)
    warnings = []

    _refuse_unknown_drivers(client, the_plan)
    warnings += _refuse_data_loss(client, params, current, the_plan, check_mode)

    for d in the_plan['drift']:
        warnings.append(
            "volume %s differs from its definition (%s). Docker cannot change a volume in place, so it was left "
            "as it is; set recreate=options-changed to recreate it (with allow_data_loss=true if it holds files)."
            % (d['name'], d['summary']))

    result = dict(changed=False, created=[], removed=[], recreated=[],
                  drift=the_plan['drift'], volumes=[])
    diffs = []
    after = dict((v['Name'], v) for v in current)
    try:
        for step in the_plan['remove']:
            name = step['current']['Name']
            if not check_mode:
                _remove(client, name)
            after.pop(name, None)
            result['removed'].append(name)
            diffs.append(diff_entry(name, volume_view(step['current']), None))
        for step in the_plan['recreate']:
            name = step['current']['Name']
            if not check_mode:
                _remove(client, name)
                after[name] = _create(client, step['spec'])
            else:
                after[name] = _spec_inspect(step['spec'])
            result['recreated'].append(name)
            diffs.append(diff_entry(name, volume_view(step['current']), volume_view(step['spec'])))
        for spec in the_plan['create']:
            after[spec['name']] = _spec_inspect(spec) if check_mode else _create(client, spec)
            result['created'].append(spec['name'])
            diffs.append(diff_entry(spec['name'], None, volume_view(spec)))
    except HoldfastError as exc:
        exc.details.update(created=result['created'], removed=result['removed'], recreated=result['recreated'])
        exc.msg += (" Done before the failure: created %s; removed %s; recreated %s."
                    % (result['created'] or 'none', result['removed'] or 'none', result['recreated'] or 'none'))
        raise
    result['changed'] = bool(result['created'] or result['removed'] or result['recreated'])
    result['volumes'] = [after[s['name']] for s in specs if s['state'] == 'present' and s['name'] in after]
    result['diff'] = diffs
    return result, warnings


def _refuse_unknown_drivers(client, the_plan):
    """Unknown drivers, before anything changes."""
    needed = set(s['driver'] for s in the_plan['create']) | set(r['spec']['driver'] for r in the_plan['recreate'])
    if needed - set(['local']):
        known = available_volume_drivers(client)
        unknown = sorted(needed - known)
        if unknown:
            raise HoldfastError(
                "Unknown volume driver(s) %s; the engine knows %s. Install and enable the plugin "
                "('docker plugin install ...') or fix the driver name; nothing was changed."
                % (", ".join(unknown), ", ".join(sorted(known)) or "none"))


def _refuse_data_loss(client, params, current, the_plan, check_mode):
    """Every removal and recreation guarded: not of a used volume, not of one with files unless allowed. Returns
    warnings."""
    warnings = []
    destructive = [(r['current']['Name'], 'remove') for r in the_plan['remove']]
    destructive += [(r['current']['Name'], 'recreate') for r in the_plan['recreate']]
    if not destructive:
        return warnings
    usage = containers_by_volume(client)
    access = VolumeAccess(client, params.get('docker_host'))
    by_name = dict((v['Name'], v) for v in current)
    holds_data = {}
    for name, _what in destructive:
        if usage.get(name):
            continue
        vol = by_name[name]
        if check_mode and access.route(vol)[0] == 'engine' and not _helper_present(access):
            holds_data[name] = None
            warnings.append("check mode: volume %s is reached through the Engine and the helper image %s is "
                            "not present yet; assuming it holds files." % (name, HELPER_IMAGE))
            continue
        holds_data[name] = not access.is_empty(vol)
    refusals = guard_destructive(destructive, usage, holds_data, params.get('allow_data_loss'))
    if refusals:
        raise HoldfastError("Refusing to lose data, nothing was changed: " + " ".join(refusals),
                            refused=[n for n, _w in destructive])
    return warnings


def _helper_present(access):
    """Check mode: is the helper image there? An engine that cannot tell counts as no."""
    try:
        return access.helper_image_present()
    except HoldfastError:
        return False


def _create(client, spec):
    return create_volume(client, spec['name'], spec['driver'], spec['driver_options'], spec['labels'])


def _remove(client, name):
    try:
        client.remove_volume(name)
    except (DockerException, APIError) as exc:
        raise api_error('remove volume %s' % name, exc) from exc
