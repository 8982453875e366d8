# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one definition of the holdfast_volumes model: every key of an entry, its type, choices and meaning.

Used by the volume_model filter (which every role's first look at the model goes through, so a typo fails
before anything changes, whichever role runs first) and, generated from it, by the `holdfast_volumes` option of
every role's meta/argument_specs.yml (scripts/model-spec.py writes them; a unit test keeps them equal).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._retention import COUNT_RULES, POLICY_KEYS

_HOOK = dict(
    container=dict(type='str', required=True, description='Container name or id.'),
    command=dict(type='raw', required=True, description='The command, as a list (exec form) or a string.'),
    user=dict(type='str', description='User to run the command as.'),
)

_RETENTION = dict((key, dict(type='int' if key[len('keep_'):] in COUNT_RULES else 'str',
                             description='As the option of the same name of holdfast.volumes.backup_rotation.'))
                  for key in POLICY_KEYS)
_RETENTION['timezone'] = dict(type='str', description='IANA time zone of the period rules (default UTC).')

# an offsite copy: where (a backup_sync `remote`) and how long the copies stay there (a retention policy)
_REMOTE = dict(
    type=dict(type='str', required=True, description='The rclone backend (s3, sftp, webdav, b2, ...).'),
    path=dict(type='str', required=True, description='Bucket and prefix, or the directory on the server.'),
    options=dict(type='dict', default={},
                 description='The backend\'s settings, secrets included (put them in a vault); as the option of '
                             'holdfast.volumes.backup_sync.'),
)
OFFSITE = dict(
    enabled=dict(type='bool', default=True, description='false: no offsite copy of this volume (it opts out of '
                                                        'holdfast_backup_offsite).'),
    remote=dict(type='dict', options=_REMOTE, description='Where the copies go (the remote of '
                                                          'holdfast.volumes.backup_sync); default the remote of '
                                                          'holdfast_backup_offsite.'),
    retention=dict(type='dict', options=_RETENTION,
                   description='Retention policy on the remote; default the retention of holdfast_backup_offsite, '
                               'else the volume\'s backup.retention; with neither the remote keeps every copy.'),
)

_ENCRYPTION = dict(
    path=dict(type='path', required=True, description='Mount point.'),
    backing_file=dict(type='path', description='Backing file (created).'),
    device=dict(type='path', description='Block device instead of a file.'),
    size=dict(type='str', description='Size of the backing file (e.g. 10G).'),
    keyfile=dict(type='path', description='Key file on the host.'),
    persistent=dict(type='bool', default=True, description='crypttab/fstab entries.'),
    fstype=dict(type='str', choices=['ext4', 'xfs'], default='ext4', description='Filesystem.'),
    pbkdf_memory=dict(type='int', description='argon2 memory cost in KiB.'),
    pbkdf_iter_time=dict(type='int', description='Milliseconds of key derivation per unlock.'),
)

MODEL = dict(
    name=dict(type='str', required=True, description='Volume name.'),
    driver=dict(type='str', default='local', description='Volume driver.'),
    driver_options=dict(type='dict', default={}, description='Driver options (strings).'),
    labels=dict(type='dict', default={}, description='Labels (strings).'),
    state=dict(type='str', choices=['present', 'absent'], default='present', description='present or absent.'),
    owner=dict(type='raw', description='Owner of the content (numeric uid or name).'),
    group=dict(type='raw', description='Group of the content (numeric gid or name).'),
    mode=dict(type='raw', description='Mode of the volume\'s root, a quoted string ("0700" or symbolic); '
                                      'integers are refused.'),
    recurse=dict(type='bool', default=True, description='Apply owner/group below the root too.'),
    seed=dict(type='dict', description='Initial content, copied once into an empty volume.', options=dict(
        src=dict(type='path', required=True, description='Directory or tar archive on the managed host.'),
        owner=dict(type='raw', description='Owner of the copied content.'),
        group=dict(type='raw', description='Group of the copied content.'),
    )),
    encryption=dict(type='dict', options=_ENCRYPTION,
                    description='Settings of the LUKS-backed path the volume lives on (see the encryption role).'),
    backup=dict(type='dict', description='Backup policy of the volume (see the backup role).', options=dict(
        dest=dict(type='path', required=True, description='Backup destination directory on the host.'),
        compression=dict(type='str', choices=['zstd', 'gzip', 'none'], default='zstd',
                         description='zstd, gzip or none.'),
        quiesce=dict(type='str', choices=['auto', 'none', 'pause', 'stop'], default='auto',
                     description='auto (pause the running containers that mount the volume writable while it is '
                                 'read), pause, stop, or none (a live copy, recorded as not consistent when a '
                                 'container could write to it). See docs/databases.md.'),
        encrypt_to=dict(type='list', elements='str', description='age recipients.'),
        compression_level=dict(type='int', description='Compression level (zstd 1-19, gzip 1-9).'),
        stop_timeout=dict(type='int', description='Seconds a container gets to stop (quiesce stop).'),
        verify=dict(type='bool', description='Read the archive back from storage and check it while writing.'),
        pre_hooks=dict(type='list', elements='dict', options=_HOOK,
                       description='Commands run in containers before the copy.'),
        post_hooks=dict(type='list', elements='dict', options=_HOOK,
                        description='Commands run in containers after the copy, also after a failure.'),
        retention=dict(type='dict', options=_RETENTION,
                       description='Retention policy (keep_last, keep_daily, ..., keep_within, timezone).'),
        offsite=dict(type='dict', options=OFFSITE,
                     description='Verified copies on a remote (S3, SFTP, any rclone backend) after each backup, '
                                 'rotated there; merged over holdfast_backup_offsite (see docs/offsite.md).'),
    )),
)

SPEC_KEYS = ('description', 'type', 'elements', 'required', 'choices', 'default', 'options')


def _ordered(spec, with_description):
    out = {}
    for name, option in spec.items():
        entry = {}
        for key in SPEC_KEYS:
            if key not in option or (key == 'description' and not with_description):
                continue
            entry[key] = _ordered(option[key], with_description) if key == 'options' else copy.deepcopy(option[key])
        out[name] = entry
    return out


def argument_spec():
    """The model as an Ansible argument spec (for ArgumentSpecValidator): one entry's options."""
    return _ordered(MODEL, with_description=False)


def role_option(description):
    """The `holdfast_volumes` option of a role's meta/argument_specs.yml, generated from MODEL."""
    return dict(description=description, type='list', elements='dict', default=[],
                options=_ordered(MODEL, with_description=True))


def offsite_role_option():
    """The `holdfast_backup_offsite` option of the backup role's meta/argument_specs.yml (the host-wide default)."""
    return dict(description='The offsite copy of every volume with a backup policy and no backup.offsite of its own '
                            '(remote and retention, as backup.offsite); none when empty.',
                type='dict', default={}, options=_ordered(OFFSITE, with_description=True))


def _check_offsite(where, offsite, problems):
    """The rules beyond types of an offsite setting (an entry's backup.offsite, or the host-wide default)."""
    from ansible_collections.holdfast.volumes.plugins.module_utils._retention import validate_policy

    if isinstance(offsite, dict) and offsite.get('retention') not in (None, {}):
        try:
            validate_policy(offsite['retention'])
        except HoldfastError as exc:
            problems.append('%s.retention: %s' % (where, exc.msg))


def effective_offsite(entry, default):
    """The offsite setting of one entry with a backup policy: its own backup.offsite merged over the host-wide
    default (key by key: remote, retention, enabled), the retention falling back to backup.retention. None when the
    volume has no offsite copy (neither setting, or enabled: false)."""
    backup = entry.get('backup') or {}
    own = backup.get('offsite')
    if own is None and not default:
        return None
    merged = dict(default or {})
    merged.update((k, v) for k, v in (own or {}).items() if v is not None)
    if merged.get('enabled') is False:
        return None
    if not merged.get('retention') and backup.get('retention'):
        merged['retention'] = backup['retention']
    return merged


def validate_offsite_default(default):
    """Check the host-wide default (holdfast_backup_offsite) against OFFSITE; raises HoldfastError."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    if default in (None, {}):
        return
    if not isinstance(default, dict):
        raise HoldfastError("holdfast_backup_offsite must be a mapping (remote, retention), got %s."
                            % type(default).__name__)
    problems = [_spec_problem('holdfast_backup_offsite', error)
                for error in ArgumentSpecValidator(_ordered(OFFSITE, False)).validate(dict(default)).errors]
    _check_offsite('holdfast_backup_offsite', default, problems)
    if problems:
        raise HoldfastError("Invalid holdfast_backup_offsite, nothing was changed: " + " ".join(problems),
                            problems=problems)


def _spec_problem(where, error):
    from ansible.module_utils.errors import UnsupportedError

    if isinstance(error, UnsupportedError):
        return '%s: unknown key(s) %s (a typo?); see the variable reference.' % (
            where, error.msg.split('. Supported parameters')[0])
    return '%s: %s' % (where, error.msg)


def _string_map(where, value, problems):
    if not isinstance(value, dict):
        return
    for key, val in value.items():
        if not isinstance(val, str):
            problems.append('%s: value of %r must be a string, got %s %r; quote it in YAML (e.g. %s: "%s").'
                            % (where, key, type(val).__name__, val, key, val))


def validate_model(entries, offsite_default=None):
    """Check the whole holdfast_volumes list against MODEL and the rules beyond types. Raises HoldfastError
    listing every problem (nothing may change before the model is right). offsite_default: the host-wide
    holdfast_backup_offsite, checked too (the backup role passes it)."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    from ansible_collections.holdfast.volumes.plugins.module_utils._modes import ModeSpec
    from ansible_collections.holdfast.volumes.plugins.module_utils._retention import validate_policy
    from ansible_collections.holdfast.volumes.plugins.module_utils._volume_plan import VOLUME_NAME_RE

    if entries is None:
        entries = []
    if not isinstance(entries, (list, tuple)):
        raise HoldfastError("holdfast_volumes must be a list of volume entries, got %s." % type(entries).__name__)
    validator = ArgumentSpecValidator(argument_spec())
    problems, seen = [], {}
    for index, entry in enumerate(entries):
        where = 'holdfast_volumes[%d]' % index
        if not isinstance(entry, dict):
            problems.append('%s must be a mapping with at least a name.' % where)
            continue
        if isinstance(entry.get('name'), str) and entry['name']:
            where = '%s (%s)' % (where, entry['name'])
            if not VOLUME_NAME_RE.match(entry['name']):
                problems.append("%s: invalid volume name; Docker allows [a-zA-Z0-9][a-zA-Z0-9_.-]+." % where)
            if entry['name'] in seen:
                problems.append("%s: duplicate of holdfast_volumes[%d]." % (where, seen[entry['name']]))
            seen.setdefault(entry['name'], index)
        for error in validator.validate(dict(entry)).errors:
            problems.append(_spec_problem(where, error))
        for field in ('driver_options', 'labels'):
            _string_map('%s %s' % (where, field), entry.get(field), problems)
        if entry.get('mode') not in (None, ''):
            try:
                ModeSpec(entry['mode'], 'mode')
            except HoldfastError as exc:
                problems.append('%s: %s' % (where, exc.msg))
        backup = entry.get('backup')
        if isinstance(backup, dict) and backup.get('retention') not in (None, {}):
            try:
                validate_policy(backup['retention'])
            except HoldfastError as exc:
                problems.append('%s: backup.retention: %s' % (where, exc.msg))
        if isinstance(backup, dict) and isinstance(backup.get('offsite'), dict):
            _check_offsite('%s: backup.offsite' % where, backup['offsite'], problems)
            offsite = effective_offsite(entry, offsite_default if isinstance(offsite_default, dict) else None)
            if offsite and not isinstance(offsite.get('remote'), dict):
                problems.append('%s: backup.offsite needs a remote (or holdfast_backup_offsite with one), or '
                                'enabled: false.' % where)
        encryption = entry.get('encryption')
        if isinstance(encryption, dict) and bool(encryption.get('backing_file')) == bool(encryption.get('device')):
            problems.append('%s: encryption needs exactly one of backing_file and device.' % where)
    try:
        validate_offsite_default(offsite_default)
    except HoldfastError as exc:
        problems += exc.details.get('problems') or [exc.msg]
    if problems:
        raise HoldfastError("Invalid holdfast_volumes, nothing was changed: " + " ".join(problems),
                            problems=problems)
    return list(entries)
