# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Process pipelines: finding a tool, pipe sizes, and the one environment of every command the collection runs
(tar, zstd, age, cryptsetup, mount, ...).

The C locale, whatever the user's language: the modules parse what the tools print (tar's "Total bytes written",
cryptsetup's and mount's messages), and a translated message must not turn a good backup into "archive is empty".
LANGUAGE (GNU gettext's list of languages) and every LC_* setting are dropped, so nothing outranks LC_ALL=C.
File names are bytes to the tools in this locale: they are archived and restored as they are.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fcntl
import os
import shutil

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError

PIPE_SIZE = 1024 * 1024
F_SETPIPE_SZ = 1031  # Linux fcntl.h
LOCALE = (('LC_ALL', 'C'), ('LANG', 'C'))


def command_env(extra=None, inherit=True):
    """A copy of this process's environment with the C locale (plus `extra`), for subprocess env=.
    inherit=False starts from nothing (rclone: only the variables given, so none of the caller's credentials)."""
    source = os.environ if inherit else {}
    env = dict((key, value) for key, value in source.items()
               if not key.startswith('LC_') and key not in ('LANG', 'LANGUAGE'))
    env.update(LOCALE)
    if extra:
        env.update(extra)
    return env


def need(tool, package):
    """The path of a tool on this host (PATH, then /sbin and /usr/sbin, which a non-login PATH may lack), or a
    HoldfastError that names the package to install."""
    path = shutil.which(tool) or next((p for p in ('/sbin/' + tool, '/usr/sbin/' + tool) if os.path.exists(p)), None)
    if not path:
        raise HoldfastError("%s is not installed on the managed host; install the %s package (apt-get install %s)."
                            % (tool, package, package))
    return path


def grow_pipe(stream, size=PIPE_SIZE):
    """Ask for a 1 MiB pipe buffer (Linux F_SETPIPE_SZ): fewer, larger reads through this process."""
    try:
        fcntl.fcntl(stream.fileno(), F_SETPIPE_SZ, size)
    except (OSError, ValueError, AttributeError):
        pass
