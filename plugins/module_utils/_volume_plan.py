# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of docker_volumes: validation, drift and the convergence plan.

No I/O here: the module lists the engine's volumes once, hands them to plan(),
checks the destructive steps for data and users, then applies the plan.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError

# Docker's rule for volume names (moby volume/local: validName).
VOLUME_NAME_RE = re.compile(r'^[a-zA-Z0-9][a-zA-Z0-9_.-]+$')
# A driver name as Docker accepts it: plugin references may carry a registry path and a tag.
DRIVER_RE = re.compile(r'^[a-zA-Z0-9][a-zA-Z0-9_./:@-]*$')
STATES = ('present', 'absent')
RECREATE = ('never', 'options-changed')


def _check_string_map(where, value, problems, allow_none_values=False):
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append("%s must be a mapping of strings to strings, got %s." % (where, type(value).__name__))
        return {}
    out = {}
    for key, val in value.items():
        if not isinstance(key, str) or not key:
            problems.append("%s: key %r must be a non-empty string." % (where, key))
            continue
        if val is None and allow_none_values:
            out[key] = None
            continue
        if not isinstance(val, str):
            problems.append(
                "%s: value of %r must be a string, got %s %r; quote it in YAML (e.g. %s: \"%s\")."
                % (where, key, type(val).__name__, val, key, val))
            continue
        out[key] = val
    return out


def validate_volume_specs(volumes):
    """Validate and normalise the `volumes` option. Raises HoldfastError listing every problem."""
    problems = []
    specs = []
    seen = {}
    if volumes is None:
        volumes = []
    if not isinstance(volumes, list):
        raise HoldfastError("volumes must be a list of volume definitions.")
    for index, item in enumerate(volumes):
        where = "volumes[%d]" % index
        if not isinstance(item, dict):
            problems.append("%s must be a mapping with at least a name." % where)
            continue
        name = item.get('name')
        if not isinstance(name, str) or not name:
            problems.append("%s: name is required and must be a string." % where)
            continue
        where = "volumes[%d] (%s)" % (index, name)
        if not VOLUME_NAME_RE.match(name):
            problems.append(
                "%s: invalid volume name; Docker allows [a-zA-Z0-9][a-zA-Z0-9_.-]+ "
                "(at least two characters, starting with a letter or digit)." % where)
        if name in seen:
            problems.append("%s: duplicate of volumes[%d]; each volume may be listed once." % (where, seen[name]))
        else:
            seen[name] = index
        driver = item.get('driver') or 'local'
        if not isinstance(driver, str) or not DRIVER_RE.match(driver):
            problems.append("%s: invalid driver name %r." % (where, driver))
        state = item.get('state') or 'present'
        if state not in STATES:
            problems.append("%s: state must be one of %s, got %r." % (where, ', '.join(STATES), state))
        specs.append(dict(
            name=name,
            driver=driver,
            driver_options=_check_string_map(where + " driver_options", item.get('driver_options'), problems),
            labels=_check_string_map(where + " labels", item.get('labels'), problems),
            state=state,
        ))
    if problems:
        raise HoldfastError("Invalid volumes, nothing was changed: " + " ".join(problems), problems=problems)
    return specs


def validate_selector(selector):
    """Validate the `exclusive` label selector: non-empty, values strings or null (key present)."""
    if selector is None:
        return None
    problems = []
    out = _check_string_map("exclusive", selector, problems, allow_none_values=True)
    if problems:
        raise HoldfastError("Invalid exclusive selector, nothing was changed: " + " ".join(problems))
    if not out:
        raise HoldfastError(
            "exclusive must name at least one label (e.g. {managed-by: holdfast}); an empty selector "
            "would match every volume on the host, nothing was changed.")
    return out


def matches_selector(labels, selector):
    for key, val in selector.items():
        if key not in labels:
            return False
        if val is not None and labels[key] != val:
            return False
    return True


def volume_view(vol):
    """The comparable part of a volume (engine inspect data or a spec)."""
    if 'Name' in vol:
        return dict(name=vol['Name'], driver=vol.get('Driver') or 'local',
                    driver_options=dict(vol.get('Options') or {}), labels=dict(vol.get('Labels') or {}))
    return dict(name=vol['name'], driver=vol['driver'], driver_options=dict(vol['driver_options']),
                labels=dict(vol['labels']))


def _map_changes(before, after):
    added = dict((k, after[k]) for k in sorted(after) if k not in before)
    removed = dict((k, before[k]) for k in sorted(before) if k not in after)
    changed = dict((k, dict(before=before[k], after=after[k]))
                   for k in sorted(after) if k in before and before[k] != after[k])
    return added, removed, changed


def volume_differences(current, spec):
    """Every difference between an existing volume and its spec, removed keys included."""
    cur = volume_view(current)
    want = volume_view(spec)
    diffs = []
    if cur['driver'] != want['driver']:
        diffs.append(dict(field='driver', before=cur['driver'], after=want['driver']))
    for field in ('driver_options', 'labels'):
        if cur[field] != want[field]:
            added, removed, changed = _map_changes(cur[field], want[field])
            diffs.append(dict(field=field, before=cur[field], after=want[field],
                              added=added, removed=removed, changed=changed))
    return diffs


def describe_differences(diffs):
    parts = []
    for d in diffs:
        if d['field'] == 'driver':
            parts.append("driver %s -> %s" % (d['before'], d['after']))
            continue
        bits = []
        if d['added']:
            bits.append("added " + ", ".join(sorted(d['added'])))
        if d['removed']:
            bits.append("removed " + ", ".join(sorted(d['removed'])))
        if d['changed']:
            bits.append("changed " + ", ".join(sorted(d['changed'])))
        parts.append("%s %s" % (d['field'], "; ".join(bits)))
    return "; ".join(parts)


def plan(current_volumes, specs, recreate='never', exclusive=None):
    """Compute what converging to `specs` means, given the engine's volumes.

    Returns a dict with lists: create (specs), recreate (dicts with current, spec, differences),
    remove (dicts with current, reason), drift (name + differences, recreate=never), unchanged (names).
    """
    if recreate not in RECREATE:
        raise HoldfastError("recreate must be one of %s." % ', '.join(RECREATE))
    by_name = dict((v['Name'], v) for v in current_volumes)
    result = dict(create=[], recreate=[], remove=[], drift=[], unchanged=[])
    listed = set()
    for spec in specs:
        listed.add(spec['name'])
        current = by_name.get(spec['name'])
        if spec['state'] == 'absent':
            if current is not None:
                result['remove'].append(dict(current=current, reason='state=absent'))
            continue
        if current is None:
            result['create'].append(spec)
            continue
        diffs = volume_differences(current, spec)
        if not diffs:
            result['unchanged'].append(spec['name'])
        elif recreate == 'options-changed':
            result['recreate'].append(dict(current=current, spec=spec, differences=diffs))
        else:
            result['drift'].append(dict(name=spec['name'], differences=diffs,
                                        summary=describe_differences(diffs)))
    if exclusive:
        for vol in sorted(current_volumes, key=lambda v: v['Name']):
            if vol['Name'] not in listed and matches_selector(vol.get('Labels') or {}, exclusive):
                result['remove'].append(dict(current=vol, reason='not listed, matches exclusive selector'))
    return result


def diff_entry(name, before, after):
    """One Ansible diff dict for a volume (before/after are views or None when absent)."""
    def render(view):
        if view is None:
            return ''
        lines = ["name: %s" % view['name'], "driver: %s" % view['driver']]
        for field in ('driver_options', 'labels'):
            if view[field]:
                lines.append("%s:" % field)
                for key in sorted(view[field]):
                    lines.append("  %s: %s" % (key, view[field][key]))
            else:
                lines.append("%s: {}" % field)
        return "\n".join(lines) + "\n"
    return dict(before_header="volume %s" % name if before is not None else "volume %s (absent)" % name,
                after_header="volume %s" % name if after is not None else "volume %s (absent)" % name,
                before=render(before), after=render(after))


RESTORED_FROM_LABEL = 'io.holdfast.volumes.restored-from'


def restore_labels(target, manifest, labels=None):
    """Pure: the labels of a volume that a restore creates.

    labels (the task's option, also {}): exactly those. By default, the backup's own labels when the target is the
    volume the backup was made of (a disaster-recovery restore: the volume comes back as the model lists it, so a
    converge with `exclusive` finds it listed). A restore into another name (a drill, a copy beside the original)
    gets only RESTORED_FROM_LABEL naming the source: a copy carrying the original's labels would match the model's
    `exclusive` selector without being listed, and the next converge would refuse the whole host (or, with
    allow_data_loss, remove the copy).
    """
    if labels is not None:
        problems = []
        out = _check_string_map('labels', labels, problems)
        if problems:
            raise HoldfastError("Invalid labels, nothing was changed: " + " ".join(problems))
        return out
    manifest = manifest or {}
    source = manifest.get('volume')
    if not source:
        return {}  # a foreign archive: no labels to copy
    if source == target:
        return dict(manifest.get('labels') or {})
    return {RESTORED_FROM_LABEL: str(source)}
