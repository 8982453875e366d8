# -*- coding: utf-8 -*-
from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._modes import ModeSpec, parse_id
from ansible_collections.holdfast.volumes.plugins.module_utils._permissions import (
    engine_script,
    run_permissions,
    wanted_state,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._tree_walk import (
    MAX_WALK_WORKERS,
    converge_tree,
    walk_workers,
)


@pytest.mark.parametrize('spec, current, is_dir, expected', [
    ('0750', 0o644, False, 0o750),
    ('750', 0o644, True, 0o750),
    ('0o640', 0o777, False, 0o640),
    ('u=rwX,g=rX,o=', 0o644, False, 0o640),
    ('u=rwX,g=rX,o=', 0o744, False, 0o750),
    ('u=rwX,g=rX,o=', 0o600, True, 0o750),
    ('go-w', 0o777, False, 0o755),
    ('a+x', 0o600, False, 0o711),
    ('+t', 0o777, True, 0o1777),
    ('g+s', 0o750, True, 0o2750),
    ('u=rw,g=,o=', 0o4755, False, 0o600),
])
def test_mode_spec(spec, current, is_dir, expected):
    assert ModeSpec(spec).apply(current, is_dir) == expected


@pytest.mark.parametrize('bad', ['0999', 'rwx', 'u=q', 'u+rwxz', 0o17777, True, '9', 0o640, 700])
def test_mode_spec_errors(bad):
    with pytest.raises(HoldfastError):
        ModeSpec(bad)


@pytest.mark.parametrize('value, shown', [
    (700, ['mode: "0700"']),                      # mode: 700 (was applied as 01274, d-w-rwxr-T)
    (448, ['mode: "0700"']),                      # mode: 0700, read by YAML 1.1 as octal
    (416, ['mode: "0640"', 'mode: "0416"']),      # 0640 or 416: both possible, both shown
    (2775, ['mode: "2775"']),
    (9999, ['mode: "']),
])
def test_integer_modes_are_refused_with_the_quoted_form(value, shown):
    with pytest.raises(HoldfastError) as caught:
        ModeSpec(value, 'mode')
    assert 'got the integer %d' % value in caught.value.msg and 'nothing was changed' in caught.value.msg
    for text in shown:
        assert text in caught.value.msg, caught.value.msg
    with pytest.raises(HoldfastError, match='file_mode: "0644"'):
        wanted_state(dict(owner=1, recurse=True, file_mode=644))


def test_parse_id():
    assert parse_id(999, 'owner') == 999 and parse_id('999', 'owner') == 999
    assert parse_id('root', 'owner') == 0 and parse_id('root', 'group') == 0
    assert parse_id(None, 'owner') is None
    for bad in (-1, 4294967295, True, 'nobody-here-x'):
        with pytest.raises(HoldfastError):
            parse_id(bad, 'owner')


def test_converge_tree_minimal_and_check_mode(tmp_path):
    (tmp_path / 'd').mkdir()
    (tmp_path / 'd' / 'f').write_text('x')
    os.chmod(tmp_path / 'd' / 'f', 0o644)
    os.symlink('/etc/passwd', tmp_path / 'link')
    state = wanted_state(dict(owner=1234, group=1234, recurse=True, file_mode='0600'))
    predicted = converge_tree(str(tmp_path), state, check_mode=True)
    assert predicted['changed_entries'] == 4 and os.stat(tmp_path / 'd' / 'f').st_uid == 0
    done = converge_tree(str(tmp_path), state)
    assert {k: done[k] for k in ('changed_entries', 'changed_owner', 'changed_mode')} == \
        {k: predicted[k] for k in ('changed_entries', 'changed_owner', 'changed_mode')}
    assert stat.S_IMODE(os.stat(tmp_path / 'd' / 'f').st_mode) == 0o600
    assert os.stat('/etc/passwd').st_uid == 0
    assert converge_tree(str(tmp_path), state)['changed_entries'] == 0


def test_setuid_kept_after_chown(tmp_path):
    f = tmp_path / 'tool'
    f.write_text('x')
    os.chmod(f, 0o4755)
    converge_tree(str(tmp_path), wanted_state(dict(owner=4321, recurse=True, file_mode='04755')))
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o4755 and os.stat(f).st_uid == 4321


def test_engine_script():
    state = wanted_state(dict(owner=999, recurse=True, file_mode='0640', dir_mode='0750', mode='0750'))
    script = engine_script(state, check_mode=False)
    assert 'chown -h 999 {}' in script and 'chown -h 999:' not in script
    assert "! -perm 0640 -exec chmod 0640" in script
    assert '-exec' not in engine_script(state, check_mode=True)  # check mode only counts
    with pytest.raises(HoldfastError, match='octal'):
        engine_script(wanted_state(dict(mode='u=rwx')), False)


def test_forked_walk_merges_counts_samples_and_mounts(tmp_path):
    for d in range(5):
        sub = tmp_path / ('d%d' % d) / 'deeper'
        sub.mkdir(parents=True)
        for f in range(30):
            (sub / ('f%d' % f)).write_text('x')
    state = wanted_state(dict(owner=2222, group=2222, recurse=True, dir_mode='0750'))
    predicted = converge_tree(str(tmp_path), state, check_mode=True)
    assert predicted['changed_entries'] == 1 + 5 * (1 + 1 + 30)
    assert predicted['changed_mode'] == 10 and len(predicted['sample']) == 20
    done = converge_tree(str(tmp_path), state)
    assert done['changed_entries'] == predicted['changed_entries'] and done['examined'] == predicted['examined']
    for dirpath, dirnames, filenames in os.walk(tmp_path):
        for name in dirnames + filenames:
            assert os.lstat(os.path.join(dirpath, name)).st_uid == 2222
    assert stat.S_IMODE(os.stat(tmp_path / 'd3' / 'deeper').st_mode) == 0o750
    assert converge_tree(str(tmp_path), state)['changed_entries'] == 0


def test_hard_links_are_counted_and_skipped_on_request(tmp_path):
    """A hard link inside the tree is also a file outside it: counted, reported, and left alone on request."""
    outside = tmp_path / 'outside'
    outside.mkdir()
    (outside / 'shadow').write_text('root only')
    os.chmod(outside / 'shadow', 0o600)
    tree = tmp_path / 'tree'
    tree.mkdir()
    (tree / 'plain').write_text('x')
    os.link(outside / 'shadow', tree / 'linked')
    base = dict(path=str(tree), owner=4321, recurse=True, file_mode='0644')
    result, warnings = run_permissions(dict(base, skip_hardlinks=True))
    assert result['hardlinks'] == 1 and result['changed_entries'] == 2 and warnings == []  # root and plain
    assert (os.stat(outside / 'shadow').st_uid, stat.S_IMODE(os.stat(outside / 'shadow').st_mode)) == (0, 0o600)
    assert os.stat(tree / 'plain').st_uid == 4321
    predicted, warnings = run_permissions(dict(base), check_mode=True)
    assert predicted['hardlinks'] == 1 and predicted['changed_entries'] == 1
    assert len(warnings) == 1 and '1 files below' in warnings[0] and 'skip_hardlinks' in warnings[0]
    result, warnings = run_permissions(dict(base))
    assert result['hardlinks'] == 1 and result['changed_entries'] == 1 and len(warnings) == 1
    assert os.stat(outside / 'shadow').st_uid == 4321  # changed, as asked, and said so


def test_diff_says_nothing_changed_below_when_only_the_root_changed(tmp_path):
    (tmp_path / 'd').mkdir()
    (tmp_path / 'd' / 'f').write_text('x')
    os.chown(tmp_path, 4321, 0)
    for path in (tmp_path / 'd', tmp_path / 'd' / 'f'):
        os.chown(path, 4321, 0)
    result, _warnings = run_permissions(dict(path=str(tmp_path), owner=4321, mode='0701', recurse=True))
    assert result['changed'] and result['changed_entries'] == 1
    assert 'entries changed below: 0\n' in result['diff']['after'] and 'mode: 0701' in result['diff']['after']
    os.chown(tmp_path / 'd' / 'f', 0, 0)
    result, _warnings = run_permissions(dict(path=str(tmp_path), owner=4321, mode='0700', recurse=True))
    assert 'entries changed below: 1\n' in result['diff']['after']


def test_walk_workers_follow_the_cores_this_process_may_use(monkeypatch):
    assert walk_workers() == max(1, min(MAX_WALK_WORKERS, len(os.sched_getaffinity(0))))
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0})
    assert walk_workers() == 1
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: set(range(64)))
    assert walk_workers() == MAX_WALK_WORKERS
    monkeypatch.delattr(os, 'sched_getaffinity')
    monkeypatch.setattr(os, 'cpu_count', lambda: 3)
    assert walk_workers() == 3


def test_one_worker_walks_alone_without_forking(tmp_path, monkeypatch):
    from ansible_collections.holdfast.volumes.plugins.module_utils import _tree_walk
    for d in range(4):
        (tmp_path / ('d%d' % d)).mkdir()
        (tmp_path / ('d%d' % d) / 'f').write_text('x')
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0})
    monkeypatch.setattr(_tree_walk, 'fork_walk', lambda *a: pytest.fail('forked with one core'))
    assert converge_tree(str(tmp_path), wanted_state(dict(owner=4321, recurse=True)))['changed_entries'] == 9


def test_root_symlink_is_refused_not_followed(tmp_path):
    (tmp_path / 'real').mkdir()
    os.symlink(tmp_path / 'real', tmp_path / 'link')
    with pytest.raises(HoldfastError, match='not a directory'):
        converge_tree(str(tmp_path / 'link'), wanted_state(dict(owner=4321)))
    assert os.stat(tmp_path / 'real').st_uid == 0


def test_a_tree_deeper_than_the_descriptor_limit(tmp_path):
    """The walk holds one descriptor per level: a deep tree raises the soft limit instead of failing."""
    import subprocess
    import sys
    deep = tmp_path
    for _level in range(150):
        deep = deep / 'd'
    deep.mkdir(parents=True)
    (deep / 'f').write_text('x')
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
        "from ansible_collections.holdfast.volumes.plugins.module_utils._permissions import wanted_state\n"
        "from ansible_collections.holdfast.volumes.plugins.module_utils._tree_walk import converge_tree\n"
        "r = converge_tree(sys.argv[1], wanted_state(dict(owner=4321, recurse=True)))\n"
        "print(r['changed_entries'])\n")
    proc = subprocess.run([sys.executable, '-c', script, str(tmp_path)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)), check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == '152' and os.stat(deep / 'f').st_uid == 4321
