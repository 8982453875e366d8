# -*- coding: utf-8 -*-
from __future__ import annotations

import pytest

from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import (
    connection_params,
    is_local_engine,
    normalise_volume,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._volume_access import host_data_path
from ansible_collections.holdfast.volumes.plugins.module_utils._volume_converge import guard_destructive
from ansible_collections.holdfast.volumes.plugins.module_utils._volume_inventory import filter_volumes
from ansible_collections.holdfast.volumes.plugins.module_utils._volume_plan import (
    describe_differences,
    diff_entry,
    matches_selector,
    plan,
    validate_selector,
    validate_volume_specs,
    volume_differences,
)


def vol(name, driver='local', options=None, labels=None):
    return normalise_volume(dict(Name=name, Driver=driver, Options=options, Labels=labels,
                                 Mountpoint='/var/lib/docker/volumes/%s/_data' % name))


class TestValidation:
    def test_defaults(self):
        assert validate_volume_specs([{'name': 'db'}]) == [
            dict(name='db', driver='local', driver_options={}, labels={}, state='present')]

    @pytest.mark.parametrize('name', ['a', '-x', '.x', 'has space', 'é', 'a/b', ''])
    def test_invalid_names(self, name):
        with pytest.raises(HoldfastError):
            validate_volume_specs([{'name': name}])

    @pytest.mark.parametrize('name', ['ab', 'a_b', 'A.b-c', '0x', 'x' * 200])
    def test_valid_names(self, name):
        assert validate_volume_specs([{'name': name}])[0]['name'] == name

    def test_all_problems_reported_at_once(self):
        with pytest.raises(HoldfastError) as err:
            validate_volume_specs([{'name': 'ok'}, {'name': 'ok'}, {'name': 'x'},
                                   {'name': 'lab', 'labels': {'n': 1}}, {'name': 'st', 'state': 'gone'}])
        problems = err.value.details['problems']
        assert len(problems) == 4
        assert any('duplicate' in p for p in problems)
        assert any('quote it' in p for p in problems)

    def test_non_string_option_value(self):
        with pytest.raises(HoldfastError, match='driver_options'):
            validate_volume_specs([{'name': 'ab', 'driver_options': {'size': 10}}])

    def test_not_a_list(self):
        with pytest.raises(HoldfastError):
            validate_volume_specs({'name': 'ab'})

    def test_selector(self):
        assert validate_selector({'a': None, 'b': 'c'}) == {'a': None, 'b': 'c'}
        assert validate_selector(None) is None
        with pytest.raises(HoldfastError, match='at least one label'):
            validate_selector({})
        with pytest.raises(HoldfastError):
            validate_selector({'a': 1})

    def test_matches_selector(self):
        assert matches_selector({'a': 'x', 'b': 'y'}, {'a': 'x'})
        assert matches_selector({'a': 'x'}, {'a': None})
        assert not matches_selector({'a': 'x'}, {'a': 'y'})
        assert not matches_selector({}, {'a': None})


class TestDifferences:
    def test_none(self):
        spec = validate_volume_specs([{'name': 'ab', 'labels': {'a': 'b'}}])[0]
        assert volume_differences(vol('ab', labels={'a': 'b'}), spec) == []

    def test_removed_added_changed(self):
        spec = validate_volume_specs([{'name': 'ab', 'labels': {'a': 'B', 'new': 'n'}}])[0]
        diffs = volume_differences(vol('ab', labels={'a': 'b', 'old': 'o'}), spec)
        assert diffs == [dict(field='labels', before={'a': 'b', 'old': 'o'}, after={'a': 'B', 'new': 'n'},
                              added={'new': 'n'}, removed={'old': 'o'},
                              changed={'a': {'before': 'b', 'after': 'B'}})]
        assert describe_differences(diffs) == 'labels added new; removed old; changed a'

    def test_driver_and_options(self):
        spec = validate_volume_specs([{'name': 'ab', 'driver': 'other'}])[0]
        diffs = volume_differences(vol('ab', options={'type': 'tmpfs'}), spec)
        assert [d['field'] for d in diffs] == ['driver', 'driver_options']
        assert diffs[1]['removed'] == {'type': 'tmpfs'}

    def test_null_labels_from_engine_equal_empty(self):
        spec = validate_volume_specs([{'name': 'ab'}])[0]
        assert volume_differences(vol('ab', labels=None, options=None), spec) == []


class TestPlan:
    def setup_method(self):
        self.current = [vol('keep', labels={'m': 'h'}), vol('drifty', labels={'m': 'h', 'x': '1'}),
                        vol('stray', labels={'m': 'h'}), vol('foreign'), vol('gone')]
        self.specs = validate_volume_specs([
            {'name': 'keep', 'labels': {'m': 'h'}}, {'name': 'drifty', 'labels': {'m': 'h'}},
            {'name': 'new', 'labels': {'m': 'h'}}, {'name': 'gone', 'state': 'absent'},
            {'name': 'never', 'state': 'absent'}])

    def test_never(self):
        p = plan(self.current, self.specs)
        assert [s['name'] for s in p['create']] == ['new']
        assert p['unchanged'] == ['keep']
        assert [d['name'] for d in p['drift']] == ['drifty']
        assert p['recreate'] == []
        assert [r['current']['Name'] for r in p['remove']] == ['gone']

    def test_options_changed_and_exclusive(self):
        p = plan(self.current, self.specs, recreate='options-changed', exclusive={'m': 'h'})
        assert [r['current']['Name'] for r in p['recreate']] == ['drifty']
        assert p['drift'] == []
        assert [(r['current']['Name'], r['reason']) for r in p['remove']] == [
            ('gone', 'state=absent'), ('stray', 'not listed, matches exclusive selector')]

    def test_bad_recreate(self):
        with pytest.raises(HoldfastError):
            plan([], [], recreate='always')

    def test_diff_entry(self):
        entry = diff_entry('ab', None, dict(name='ab', driver='local', driver_options={}, labels={'a': 'b'}))
        assert entry['before'] == '' and 'labels:\n  a: b' in entry['after']
        assert entry['before_header'].endswith('(absent)')


class TestGuard:
    def test_rules(self):
        usage = {'used': [dict(name='c1', state='exited')]}
        holds = {'full': True, 'empty': False, 'unknown': None}
        steps = [('used', 'remove'), ('full', 'recreate'), ('empty', 'remove'), ('unknown', 'remove')]
        refusals = guard_destructive(steps, usage, holds, allow_data_loss=False)
        assert len(refusals) == 3
        assert 'c1 (exited)' in refusals[0]
        assert 'may hold files' in refusals[2]
        refusals = guard_destructive(steps, usage, holds, allow_data_loss=True)
        assert len(refusals) == 1 and 'used by' in refusals[0]


class TestAccessAndConnection:
    def test_host_data_path(self):
        assert host_data_path(vol('ab')) == '/var/lib/docker/volumes/ab/_data'
        assert host_data_path(vol('ab', options={'type': 'tmpfs', 'device': 'tmpfs'})) is None
        assert host_data_path(vol('ab', options={'type': 'nfs', 'o': 'addr=1.2.3.4'})) is None
        assert host_data_path(vol('ab', options={'type': 'none', 'o': 'bind', 'device': '/srv/x'})) == '/srv/x'
        assert host_data_path(vol('ab', driver='rexray')) is None

    def test_connection_params(self, monkeypatch):
        monkeypatch.delenv('DOCKER_CERT_PATH', raising=False)
        conn = connection_params({})
        assert conn['host'] == 'unix:///var/run/docker.sock' and conn['timeout'] == 60 and not conn['tls']
        assert connection_params({'validate_certs': True})['tls'] is True
        with pytest.raises(HoldfastError):
            connection_params({'timeout': 0})
        with pytest.raises(HoldfastError, match='together'):
            connection_params({'client_cert': '/c'})

    def test_local_engine(self):
        assert is_local_engine(None) and is_local_engine('unix:///run/docker.sock')
        assert not is_local_engine('tcp://10.0.0.1:2376') and not is_local_engine('ssh://host')

    def test_filter_volumes(self):
        vols = [vol('bb', labels={'a': '1'}), vol('aa', driver='x'), vol('cc')]
        assert [v['Name'] for v in filter_volumes(vols)] == ['aa', 'bb', 'cc']
        assert [v['Name'] for v in filter_volumes(vols, labels={'a': None})] == ['bb']
        assert [v['Name'] for v in filter_volumes(vols, driver='x')] == ['aa']
        assert [v['Name'] for v in filter_volumes(vols, names=['cc', 'zz'])] == ['cc']
        usage = {'bb': [{'name': 'c'}]}
        assert [v['Name'] for v in filter_volumes(vols, dangling=True, usage_map=usage)] == ['aa', 'cc']
        assert [v['Name'] for v in filter_volumes(vols, dangling=False, usage_map=usage)] == ['bb']


def test_restore_labels():
    from ansible_collections.holdfast.volumes.plugins.module_utils._volume_plan import (
        RESTORED_FROM_LABEL,
        restore_labels,
    )
    manifest = {'volume': 'shop_db', 'labels': {'managed-by': 'holdfast', 'app': 'shop'}}
    assert restore_labels('shop_db', manifest) == {'managed-by': 'holdfast', 'app': 'shop'}  # disaster recovery
    assert restore_labels('shop_db_drill', manifest) == {RESTORED_FROM_LABEL: 'shop_db'}    # a drill, a copy
    assert restore_labels('x', None) == {} and restore_labels('x', {'labels': {'a': 'b'}}) == {}  # foreign archive
    assert restore_labels('shop_db', manifest, {}) == {}
    assert restore_labels('shop_db_drill', manifest, {'purpose': 'drill'}) == {'purpose': 'drill'}
    with pytest.raises(HoldfastError, match='quote it'):
        restore_labels('x', manifest, {'port': 80})
