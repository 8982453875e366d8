# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backups that run on the host without the controller: the backup role's systemd timer (or cron entry) runs

    PYTHONPATH=/usr/local/lib/holdfast-volumes/holdfast-volumes.zip python3 -m \\
        ansible_collections.holdfast.volumes.plugins.module_utils._scheduled /etc/holdfast/backup-jobs.json

The jobs file is what the role wrote from holdfast_volumes: a list of jobs, each the parameters of volume_backup
and, optionally, of backup_rotation. The same helpers as the modules do the work, with the modules' own defaults,
so a scheduled backup is the backup the playbook makes. One JSON line per job goes to standard output (the
journal, or the cron log); the exit status is 1 when any job failed, so systemd marks the unit failed. A failed
job does not stop the next one.

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
    return jobs


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


def main(argv=None):
    from ansible_collections.holdfast.volumes.plugins.module_utils._backup import BACKUP_OPTIONS, run_backup
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
        jobs = load_jobs(argv[0])
    except HoldfastError as exc:
        emit(dict(ok=False, msg=exc.msg))
        return 1
    failed = run_jobs(jobs, run_backup, run_rotation, BACKUP_OPTIONS, ROTATION_OPTIONS, emit)
    emit(dict(summary=True, jobs=len(jobs), failed=failed, ok=failed == 0))
    return 1 if failed else 0


if __name__ == '__main__':
    raise SystemExit(main())
