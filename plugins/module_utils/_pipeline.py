# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Process pipelines of the backup and the restore (tar, zstd/pigz/gzip, age): the block size they move, and
collecting the stages' exit codes and messages (finding a tool and sizing a pipe: _process)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

CHUNK = 1024 * 1024


def reap(procs, thread):
    if thread is not None:
        thread.join()
    out = []
    for name, proc, err in procs:
        if proc.stdout:
            proc.stdout.close()
        code = proc.wait()
        err.seek(0)
        out.append((name, code, err.read().decode('utf-8', 'replace')))
        err.close()
    del procs[:]
    return out


def tail(text, n=600):
    text = (text or '').strip()
    return text[-n:]
