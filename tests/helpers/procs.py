"""Processes of one test only: tests run side by side with other tests (and the README's user path), so a test
never signals a process by name, only the processes it started and their descendants."""
import os
import signal


def _children() -> dict:
    """Every live process's parent, read from /proc: {ppid: [pid, ...]}."""
    tree: dict = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as handle:
                stat = handle.read()
        except OSError:  # gone meanwhile
            continue
        # the command name (field 2) may hold spaces and parentheses: the fields after its last ')' are fixed
        ppid = int(stat[stat.rindex(')') + 2:].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(pid: int) -> list:
    """pid's descendants now (children, their children, ...), pid excluded."""
    tree, found, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid: int) -> list:
    """SIGKILL pid and all its descendants at once, as a crash would: the tree is first frozen (SIGSTOP, until
    no new process appears), so no member can react, reap or fork in between. Returns the pids killed."""
    frozen: list = []
    while True:
        new = [p for p in [pid] + descendants(pid) if p not in frozen]
        if not new:
            break
        for p in new:
            try:
                os.kill(p, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        frozen.extend(new)
    for p in frozen:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return frozen
