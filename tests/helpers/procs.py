# -*- coding: utf-8 -*-
"""Processes of one test only: tests run side by side with other tests (and the README's user path), so a test
never signals a process by name, only the processes it started: their descendants, and the members of the sessions
they lead (a process whose parent died is no longer a descendant, but stays in its session)."""

from __future__ import annotations

import os
import signal


def _table() -> dict:
    """Every live process: {pid: (ppid, session id, command name)}, read from /proc."""
    table = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as handle:
                stat = handle.read()
            # the command name (field 2) may hold spaces and parentheses; the fields after its last ')' are fixed:
            # state, ppid, pgrp, session
            fields = stat[stat.rindex(')') + 2:].split()
            table[int(entry)] = (int(fields[1]), int(fields[3]), stat[stat.index('(') + 1:stat.rindex(')')])
        except (OSError, ValueError, IndexError):  # gone meanwhile, or read half-written
            continue
    return table


def _members(root: int, table: dict) -> list:
    """root, its descendants, and every process in a session that one of those leads."""
    found, todo = {root}, [root]
    while todo:
        parent = todo.pop()
        for pid, (ppid, sid, _comm) in table.items():
            if pid not in found and (ppid == parent or sid == parent):
                found.add(pid)
                todo.append(pid)
    return sorted(found)


def kill_tree(root: int) -> dict:
    """SIGKILL root and every process of its tree at once, as a crash would: the tree is first frozen (SIGSTOP,
    until a scan finds no new member), so no member can react, reap or fork in between; whatever happens, every
    frozen process is killed (none is left stopped). root must be this process's unreaped child (its pid, and so
    the session id it leads, cannot be reused meanwhile). Returns {pid: command name} of the processes killed."""
    frozen: dict = {}
    try:
        while True:
            table = _table()
            new = [p for p in _members(root, table) if p not in frozen and p in table]
            if not new:
                break
            for pid in new:
                frozen[pid] = table[pid][2]
                try:
                    os.kill(pid, signal.SIGSTOP)
                except OSError:
                    pass
    finally:
        for pid in frozen:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return frozen
