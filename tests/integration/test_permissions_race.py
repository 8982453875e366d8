# -*- coding: utf-8 -*-
"""volume_permissions against a second, unprivileged user who races the walk (issue #11, section 4).

The tree belongs to that user (as a volume's content belongs to the container's user). While root walks it, the
user swaps each top directory for a symlink to a root-owned directory outside the tree and back, atomically
(renameat2 RENAME_EXCHANGE), thousands of times. A walk that reopens subdirectories by full path then chowns and
chmods the root-owned file outside. The walk must never touch it: it opens every directory relative to its
parent's descriptor without following links, and fails ("changed while ...") rather than follow.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._permissions import wanted_state
from ansible_collections.holdfast.volumes.plugins.module_utils._tree_walk import converge_tree

RACER = 'holdfast-racer'
TOP = 16     # top directories, each swapped by the racer
FILES = 500  # files in each: listing them holds the window between opening a directory and its subdirectory

RACE = r'''
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
tree, outside, top, until = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
for i in range(top):
    os.symlink(outside, os.path.join(tree, 'l%d' % i))
names = [(os.path.join(tree, 'a%d' % i).encode(), os.path.join(tree, 'l%d' % i).encode()) for i in range(top)]
swaps = 0
while time.time() < until:
    for a, b in names:
        if libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0:
            sys.exit('renameat2: errno %d' % ctypes.get_errno())
    time.sleep(0.0003)
    for a, b in names:
        libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
    swaps += 2 * len(names)
    time.sleep(0.0003)
print(swaps)
'''


@pytest.fixture(scope='module')
def racer():
    """A second, unprivileged local user (created once on the test machine)."""
    try:
        entry = pwd.getpwnam(RACER)
    except KeyError:
        subprocess.run(['useradd', '--system', '--no-create-home', '--shell', '/usr/sbin/nologin', RACER], check=True)
        entry = pwd.getpwnam(RACER)
    assert entry.pw_uid != 0
    return entry


@pytest.fixture
def arena(racer):
    base = tempfile.mkdtemp(prefix='holdfast-race-', dir='/dev/shm')  # tmpfs: thousands of files in no time
    os.chmod(base, 0o755)
    outside = os.path.join(base, 'outside')
    os.makedirs(os.path.join(outside, 'b'))
    secret = os.path.join(outside, 'b', 'secret')
    with open(secret, 'w') as handle:
        handle.write('root only\n')
    os.chmod(secret, 0o600)
    tree = os.path.join(base, 'tree')
    os.mkdir(tree)
    for i in range(TOP):
        top = os.path.join(tree, 'a%d' % i)
        os.makedirs(os.path.join(top, 'b'))
        for n in range(FILES):
            open(os.path.join(top, 'f%d' % n), 'w').close()
        open(os.path.join(top, 'b', 'secret'), 'w').close()
    subprocess.run(['chown', '-R', '%d:%d' % (racer.pw_uid, racer.pw_gid), tree], check=True)
    yield dict(base=base, tree=tree, outside=outside, secret=secret)
    shutil.rmtree(base)


def test_a_racing_user_cannot_redirect_the_walk_outside_the_tree(racer, arena):
    secret_before = os.lstat(arena['secret'])
    assert (secret_before.st_uid, secret_before.st_mode & 0o7777) == (0, 0o600)
    state = wanted_state(dict(owner=racer.pw_uid, group=racer.pw_gid, recurse=True, file_mode='0644',
                              dir_mode='0755'))
    until = time.time() + 7
    proc = subprocess.Popen(['setpriv', '--reuid=%d' % racer.pw_uid, '--regid=%d' % racer.pw_gid, '--clear-groups',
                             sys.executable, '-c', RACE, arena['tree'], arena['outside'], str(TOP), str(until)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    walks, failed, touched = 0, 0, None
    try:
        time.sleep(0.3)
        while time.time() < until - 0.5:
            walks += 1
            try:
                converge_tree(arena['tree'], state)
            except HoldfastError:  # the tree changed under the walk: refusing is right, following is not
                failed += 1
            st = os.lstat(arena['secret'])
            if (st.st_uid, st.st_gid, st.st_mode & 0o7777) != (0, 0, 0o600):
                touched = st
                break
    finally:
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert int(out) > 1000, out  # the racer really raced
    assert touched is None, ("walk %d followed a swapped-in symlink: the root-owned file outside the tree became "
                             "uid %d mode %04o" % (walks, touched.st_uid, touched.st_mode & 0o7777))
    assert walks >= 5, walks
    # once the tree holds still, the same walk converges it (the racer left each aN a directory, lN a symlink)
    done = converge_tree(arena['tree'], state)
    assert done['examined'] == 1 + TOP * (FILES + 4) and converge_tree(arena['tree'], state)['changed_entries'] == 0
    assert os.stat(os.path.join(arena['tree'], 'a0', 'f0')).st_mode & 0o7777 == 0o644
    st = os.lstat(arena['secret'])
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, 0o600)
