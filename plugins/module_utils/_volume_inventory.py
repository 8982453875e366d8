# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""volume_info: list and filter volumes with a fixed number of engine calls (never one per volume)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import (
    APIError,
    DockerException,
    api_error,
    connect,
    containers_by_volume,
    is_local_engine,
    list_volumes,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._host_info import at_rest, read_mounts
from ansible_collections.holdfast.volumes.plugins.module_utils._volume_access import host_data_path
from ansible_collections.holdfast.volumes.plugins.module_utils._volume_plan import matches_selector, validate_selector


def filter_volumes(volumes, *, names=None, labels=None, driver=None, dangling=None, usage_map=None):
    """Pure: the volumes that pass every given filter, sorted by name."""
    wanted = set(names) if names else None
    out = []
    for vol in volumes:
        if wanted is not None and vol['Name'] not in wanted:
            continue
        if labels and not matches_selector(vol.get('Labels') or {}, labels):
            continue
        if driver and vol.get('Driver') != driver:
            continue
        if dangling is not None:
            used = bool((usage_map or {}).get(vol['Name']))
            if dangling == used:
                continue
        out.append(vol)
    return sorted(out, key=lambda v: v['Name'])


def volume_at_rest(vol, mounts, sysfs='/sys'):
    """Encrypted at rest? Judged from where the data really lies: the filesystem holding the volume's directory
    (a bind volume's device path; the engine's own directory otherwise), or the block device of a volume with a
    filesystem type. None for other drivers."""
    path = host_data_path(vol)
    if path:
        return at_rest(path=path, mounts=mounts, sysfs=sysfs)
    opts = vol.get('Options') or {}
    if (vol.get('Driver') or 'local') == 'local' and (opts.get('device') or '').startswith('/dev/'):
        return at_rest(device=opts['device'], sysfs=sysfs)
    return None


def volume_info(params):
    labels = validate_selector(params.get('labels')) if params.get('labels') else None
    client = connect(params)
    volumes = list_volumes(client)
    want_containers = params.get('containers') or params.get('dangling') is not None
    usage_map = containers_by_volume(client) if want_containers else {}
    selected = filter_volumes(volumes, names=params.get('names'), labels=labels, driver=params.get('driver'),
                              dangling=params.get('dangling'), usage_map=usage_map)
    sizes = {}
    if params.get('usage') and selected:
        try:
            df = client.df()
        except (DockerException, APIError) as exc:
            raise api_error('compute disk usage', exc) from exc
        for vol in df.get('Volumes') or []:
            size = ((vol.get('UsageData') or {}).get('Size'))
            sizes[vol.get('Name')] = size if size is not None and size >= 0 else None
    local = is_local_engine(params.get('docker_host'))
    mounts = read_mounts() if local and selected else []
    result = []
    for vol in selected:
        item = dict(vol)
        item['at_rest'] = volume_at_rest(vol, mounts) if local else None
        if params.get('usage'):
            item['size_bytes'] = sizes.get(vol['Name'])
        if params.get('containers'):
            item['containers'] = [dict(name=c['name'], running=c['running'], state=c['state'],
                                       destination=c['destination'], read_only=c['read_only'])
                                  for c in usage_map.get(vol['Name']) or []]
        if want_containers:
            item['in_use'] = bool(usage_map.get(vol['Name']))
        result.append(item)
    missing = sorted(set(params.get('names') or []) - set(v['Name'] for v in volumes))
    return dict(changed=False, volumes=result, missing=missing)
