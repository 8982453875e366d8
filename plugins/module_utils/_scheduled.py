# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backups that run on the host without the controller: the backup role's systemd timer (or cron entry) runs

    PYTHONPATH=/usr/local/lib/holdfast-volumes/holdfast-volumes.zip python3 -m \\
        ansible_collections.holdfast.volumes.plugins.module_utils._scheduled /etc/holdfast/backup-jobs.json

The jobs file is what the role wrote from holdfast_volumes: a list of jobs, each the parameters of volume_backup
and, optionally, of backup_rotation; then the offsite copies (volume_model's `schedule` facet): the remotes, their
secrets included (so the file is 0600 in a 0700 directory; the command line names the file, never a secret), one
backup_sync per remote and destination, and one remote backup_rotation per volume with an offsite retention, run
after all the backups. The same helpers as the modules do the work, with the modules' own defaults, so a scheduled
backup is the backup the playbook makes. One JSON line per job goes to standard output (the journal, or the cron
log); the exit status is 1 when any job failed, so systemd marks the unit failed. A failed job does not stop the
next one.

Nothing here needs Ansible on the host: only Python 3, the Docker SDK and the tools a backup needs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import stat
import sys
import time

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError

CONNECTION_KEYS = ('docker_host', 'tls', 'validate_certs', 'ca_path', 'client_cert', 'client_key', 'api_version',
                   'timeout')


def with_defaults(spec, params, what):
    """params completed with the defaults of an option spec; unknown keys are an error (a typo must not be
    silently ignored by a backup that runs at night)."""
    if not isinstance(params, dict):
        raise HoldfastError("%s must be a mapping, got %r." % (what, params))
    unknown = sorted(set(params) - set(spec) - set(CONNECTION_KEYS))
    if unknown:
        raise HoldfastError("%s has unknown options: %s." % (what, ', '.join(unknown)))
    missing = sorted(k for k, v in spec.items() if v.get('required') and params.get(k) in (None, ''))
    if missing:
        raise HoldfastError("%s lacks required options: %s." % (what, ', '.join(missing)))
    full = dict((k, v.get('default')) for k, v in spec.items())
    full.update(params)
    return full


def load_jobs(path):
    """The jobs of a file that only its owner (root) may change: it decides what runs as root."""
    return load_plan(path)['jobs']


def load_plan(path):
    """The whole jobs file: jobs, and the offsite remotes, syncs and rotations (empty lists when there are none).
    One that holds remotes (credentials) must be readable by its owner alone."""
    try:
        info = os.stat(path)
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise HoldfastError("Cannot read the jobs file %s: %s" % (path, exc)) from None
    if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise HoldfastError("The jobs file %s must be owned by uid %d and writable by its owner alone (it is uid %d, "
                            "mode %04o); fix it with chown/chmod or re-run the backup role."
                            % (path, os.geteuid(), info.st_uid, stat.S_IMODE(info.st_mode)))
    jobs = data.get('jobs') if isinstance(data, dict) else None
    if not isinstance(jobs, list):
        raise HoldfastError("The jobs file %s has no list 'jobs'." % path)
    plan = dict(jobs=jobs)
    for key in ('offsite_remotes', 'offsite_syncs', 'offsite_rotations'):
        plan[key] = data.get(key) or []
        if not isinstance(plan[key], list):
            raise HoldfastError("The jobs file %s: %s must be a list." % (path, key))
    if plan['offsite_remotes'] and info.st_mode & (stat.S_IRGRP | stat.S_IROTH):
        raise HoldfastError("The jobs file %s holds remote credentials and must be readable by its owner alone (it "
                            "is mode %04o); chmod 0600 it or re-run the backup role."
                            % (path, stat.S_IMODE(info.st_mode)))
    return plan


def run_jobs(jobs, backup, rotate, backup_spec, rotation_spec, emit):
    """Run each job (backup, then its rotation); emit one dict per job. Returns the number of failed jobs."""
    failed = 0
    for index, job in enumerate(jobs):
        started = time.time()
        line = dict(job=index, ok=True)
        try:
            if not isinstance(job, dict) or 'backup' not in job:
                raise HoldfastError("job %d has no 'backup' parameters." % index)
            params = with_defaults(backup_spec, job['backup'], 'job %d backup' % index)
            line['volume'] = params.get('volume') or params.get('path')
            outcome = backup(params)
            result, warnings = outcome if isinstance(outcome, tuple) else (outcome, [])
            line.update(archive=result.get('archive'), bytes=result.get('bytes_stored'),
                        file_count=result.get('file_count'), warnings=list(warnings))
            if job.get('rotation'):
                outcome = rotate(with_defaults(rotation_spec, job['rotation'], 'job %d rotation' % index))
                result = outcome[0] if isinstance(outcome, tuple) else outcome
                line.update(kept=len(result.get('kept', [])), removed=len(result.get('removed', [])),
                            broken=len(result.get('broken', [])))
        except HoldfastError as exc:
            failed += 1
            line.update(ok=False, msg=exc.msg)
        except Exception as exc:  # a job must not stop the next one; the message says what broke
            failed += 1
            from ansible_collections.holdfast.volumes.plugins.module_utils._module_main import describe
            line.update(ok=False, msg=describe(exc))
        line['seconds'] = round(time.time() - started, 3)
        emit(line)
    return failed


def _remote_params(plan, item, what):
    """An offsite sync or rotation of the plan with its remote (by remote_id) filled in; the label and the id go."""
    if not isinstance(item, dict):
        raise HoldfastError("%s must be a mapping, got %r." % (what, item))
    remotes = plan['offsite_remotes']
    index = item.get('remote_id')
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(remotes):
        raise HoldfastError("%s names no remote of the jobs file (remote_id %r)." % (what, index))
    params = dict((k, v) for k, v in item.items() if k not in ('remote_id', 'label'))
    params['remote'] = remotes[index]
    return params


def run_offsite(plan, sync, rotate, sync_spec, rotation_spec, emit):
    """After the backups: each offsite sync, then the remote rotation of each volume whose sync worked. One line
    each (with the remote as type:path, never its options, and the warnings a module run would show). Returns the
    number of failures."""
    from ansible_collections.holdfast.volumes.plugins.module_utils._remote_store import remote_warnings
    failed, synced = 0, set()
    for index, item in enumerate(plan['offsite_syncs']):
        started = time.time()
        line = dict(offsite_sync=index, ok=True)
        try:
            params = with_defaults(sync_spec, _remote_params(plan, item, 'offsite sync %d' % index),
                                   'offsite sync %d' % index)
            line.update(remote=item.get('label'), host=params.get('host'), volumes=params.get('volumes'),
                        warnings=remote_warnings(params['remote']))
            outcome = sync(params)
            result, warnings = outcome if isinstance(outcome, tuple) else (outcome, [])
            line.update(copied=len(result.get('copied', [])), present=result.get('present'),
                        bytes=result.get('bytes_copied'), warnings=line['warnings'] + list(warnings))
            synced.update((item['remote_id'], volume) for volume in params.get('volumes') or [])
        except Exception as exc:  # a failed sync must not stop the others; the message says what broke
            failed += 1
            line.update(ok=False, msg=_message(exc))
        line['seconds'] = round(time.time() - started, 3)
        emit(line)
    for index, item in enumerate(plan['offsite_rotations']):
        started = time.time()
        line = dict(offsite_rotation=index, ok=True, remote=item.get('label') if isinstance(item, dict) else None)
        try:
            params = with_defaults(rotation_spec, _remote_params(plan, item, 'offsite rotation %d' % index),
                                   'offsite rotation %d' % index)
            line['volume'] = params.get('volume')
            if (item['remote_id'], params.get('volume')) not in synced:
                line.update(skipped='its offsite sync did not run or failed')
            else:
                outcome = rotate(params)
                result, warnings = outcome if isinstance(outcome, tuple) else (outcome, [])
                line.update(kept=len(result.get('kept', [])), removed=len(result.get('removed', [])),
                            broken=len(result.get('broken', [])), warnings=list(warnings))
        except Exception as exc:
            message = _message(exc)
            if not message.startswith('No backups of '):  # nothing of this volume on the remote yet
                failed += 1
                line['ok'] = False
            line['msg'] = message
        line['seconds'] = round(time.time() - started, 3)
        emit(line)
    return failed


def _message(exc):
    if isinstance(exc, HoldfastError):
        return exc.msg
    from ansible_collections.holdfast.volumes.plugins.module_utils._module_main import describe
    return describe(exc)


def main(argv=None):
    from ansible_collections.holdfast.volumes.plugins.module_utils._backup import BACKUP_OPTIONS, run_backup
    from ansible_collections.holdfast.volumes.plugins.module_utils._offsite import (
        SYNC_OPTIONS,
        run_remote_rotation,
        run_sync,
    )
    from ansible_collections.holdfast.volumes.plugins.module_utils._remote_store import REMOTE_STORE_OPTIONS
    from ansible_collections.holdfast.volumes.plugins.module_utils._rotation import ROTATION_OPTIONS, run_rotation

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write('usage: python3 -m ansible_collections.holdfast.volumes.plugins.module_utils._scheduled '
                         'JOBS.json\n')
        return 2

    def emit(line):
        sys.stdout.write(json.dumps(line, sort_keys=True) + '\n')
        sys.stdout.flush()

    try:
        plan = load_plan(argv[0])
    except HoldfastError as exc:
        emit(dict(ok=False, msg=exc.msg))
        return 1
    jobs = plan['jobs']
    failed = run_jobs(jobs, run_backup, run_rotation, BACKUP_OPTIONS, ROTATION_OPTIONS, emit)
    summary = dict(summary=True, jobs=len(jobs), failed=failed)
    if plan['offsite_syncs']:
        remote_rotation_spec = dict(ROTATION_OPTIONS, dest=dict(type='path'), **REMOTE_STORE_OPTIONS)
        offsite_failed = run_offsite(plan, run_sync, run_remote_rotation, SYNC_OPTIONS, remote_rotation_spec, emit)
        summary.update(offsite_syncs=len(plan['offsite_syncs']), offsite_failed=offsite_failed)
        failed += offsite_failed
    summary['ok'] = failed == 0
    emit(summary)
    return 1 if failed else 0


if __name__ == '__main__':
    raise SystemExit(main())
