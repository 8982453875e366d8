# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way every module ends: every failure becomes fail_json (a HoldfastError with its own message, anything
else with a message that says what happened and what to do, the traceback in `exception`), warnings are shown,
and the diff (which the helpers always build) is only returned in diff mode.

describe() is pure and has no Ansible import: the backup role's scheduled runner uses it too.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import subprocess
import traceback

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError

# What to do about an OSError, by errno. The message names the file when the exception carries one.
_OS_ADVICE = {
    errno.ENOSPC: "no space left on that filesystem: free space there (or choose another destination), then run "
                  "again",
    errno.EDQUOT: "the disk quota is exceeded: free space or raise the quota, then run again",
    errno.EROFS: "that filesystem is mounted read-only: remount it read-write or choose a writable location",
    errno.EACCES: "permission denied: run the task as root (become: true) or fix the permissions of that path",
    errno.EPERM: "the operation is not permitted: run the task as root (become: true); some filesystems (NFS with "
                 "root squash, FUSE) refuse it even to root",
    errno.EEXIST: "it exists already, perhaps left over from an interrupted run: check what it is, move it away if "
                  "it is stale, then run again",
    errno.ENOENT: "it does not exist (or disappeared while the task ran): check the path, then run again",
    errno.ENOTDIR: "a component of the path is not a directory: check the path",
    errno.EISDIR: "it is a directory where a file was expected: check the path",
    errno.ENOTEMPTY: "the directory is not empty: check what it holds, then run again",
    errno.EBUSY: "it is busy (mounted, or in use by a process or container): stop what uses it, then run again",
    errno.EIO: "an input/output error: the disk or filesystem may be failing; check the kernel log (dmesg) before "
               "anything else",
    errno.EMFILE: "too many open files: raise the open file limit (ulimit -n), then run again",
    errno.ENAMETOOLONG: "a file name is too long for that filesystem",
    errno.EXDEV: "the paths are on different filesystems",
    errno.ETIMEDOUT: "the operation timed out: check the network or the remote end, then run again",
    errno.ECONNREFUSED: "the connection was refused: check that the service (e.g. dockerd) runs and listens there",
}

BUG_ADVICE = ("This is an unforeseen state of the host or a bug in holdfast.volumes: the traceback is in the result's "
              "'exception' (shown with -vvv); please report it with that traceback. The task may have stopped midway: "
              "check the target before running again.")


def _is_docker_error(exc):
    """An error of the Docker SDK or of the HTTP stack under it (requests/urllib3), whatever its base class."""
    for klass in type(exc).__mro__:
        module = getattr(klass, '__module__', '') or ''
        if module.split('.')[0] in ('docker', 'requests', 'urllib3'):
            return True
    return False


def describe(exc):
    """Pure: a message for the operator about an exception that no helper turned into a HoldfastError."""
    if isinstance(exc, HoldfastError):
        return exc.msg
    text = str(exc).strip() or type(exc).__name__
    if len(text) > 600:
        text = text[:600] + '...'
    if _is_docker_error(exc):
        explanation = getattr(exc, 'explanation', None)
        if isinstance(explanation, bytes):
            explanation = explanation.decode('utf-8', 'replace')
        timeout = 'timed out' in text.lower() or 'timeout' in type(exc).__name__.lower()
        return ("The Docker Engine failed during the task (%s: %s). %s The task may have stopped midway: check the "
                "target, then run again." % (
                    type(exc).__name__, explanation or text,
                    "It did not answer in time: raise the timeout option (or DOCKER_TIMEOUT) if it is merely slow."
                    if timeout else
                    "Check that dockerd is running and answers ('docker info'), and that docker_host points at it."))
    if isinstance(exc, subprocess.TimeoutExpired):
        return "A command took too long and was stopped (%s): %s. Check what it waits for, then run again." % (
            ' '.join(str(a) for a in (exc.cmd if isinstance(exc.cmd, (list, tuple)) else [exc.cmd]))[:200], text)
    if isinstance(exc, subprocess.CalledProcessError):
        return "A command failed (%s, exit %s). Check its output above, fix the cause, then run again." % (
            ' '.join(str(a) for a in (exc.cmd if isinstance(exc.cmd, (list, tuple)) else [exc.cmd]))[:200],
            exc.returncode)
    if isinstance(exc, OSError):
        names = [n for n in (getattr(exc, 'filename', None), getattr(exc, 'filename2', None)) if n]
        where = (' (%s)' % ' -> '.join(str(n) for n in names)) if names else ''
        what = exc.strerror or text
        advice = _OS_ADVICE.get(exc.errno)
        if advice:
            return "%s%s: %s. The task may have stopped midway: check the target before running again." % (
                what, where, advice)
        return "%s%s (%s, errno %s). Fix the cause, then run again; the task may have stopped midway, so check the " \
               "target first." % (what, where, type(exc).__name__, exc.errno)
    if isinstance(exc, MemoryError):
        return "The managed host ran out of memory during the task. Free memory, then run again."
    return "Unexpected error: %s: %s. %s" % (type(exc).__name__, text, BUG_ADVICE)


def execute(module, func, **kwargs):
    """Run func(module.params, **kwargs), which returns a result dict or (result, warnings), and exit."""
    try:
        outcome = func(module.params, **kwargs)
    except HoldfastError as exc:
        details = dict(exc.details)
        details.setdefault('exception', traceback.format_exc())
        module.fail_json(msg=exc.msg, **details)
    except Exception as exc:  # every other failure: a message that says what happened and what to do
        module.fail_json(msg=describe(exc), exception=traceback.format_exc())
    except KeyboardInterrupt:
        module.fail_json(msg="The task was interrupted. It may have stopped midway: check the target before running "
                             "again.", exception=traceback.format_exc())
    result, warnings = outcome if isinstance(outcome, tuple) else (outcome, [])
    for warning in warnings:
        module.warn(warning)
    if not module._diff:
        result.pop('diff', None)
    module.exit_json(**result)
