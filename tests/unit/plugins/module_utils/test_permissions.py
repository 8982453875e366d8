# -*- coding: utf-8 -*-
from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._permissions import (
    ModeSpec,
    converge_tree,
    engine_script,
    parse_id,
    wanted_state,
)


@pytest.mark.parametrize('spec, current, is_dir, expected', [
    ('0750', 0o644, False, 0o750),
    ('750', 0o644, True, 0o750),
    (0o640, 0o777, False, 0o640),
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


@pytest.mark.parametrize('bad', ['0999', 'rwx', 'u=q', 'u+rwxz', 0o17777, True, '9'])
def test_mode_spec_errors(bad):
    with pytest.raises(HoldfastError):
        ModeSpec(bad)


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
