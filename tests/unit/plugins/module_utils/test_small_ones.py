# -*- coding: utf-8 -*-
"""Issue 13's small ones: negative timeouts refused before anything happens, volume_restore's duration_seconds,
and the collection version that manifests carry pinned to galaxy.yml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from trees import one_file_archive

from ansible_collections.holdfast.volumes.plugins.module_utils import _store
from ansible_collections.holdfast.volumes.plugins.module_utils._backup import BACKUP_OPTIONS, run_backup
from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError
from ansible_collections.holdfast.volumes.plugins.module_utils._restore import run_restore
from ansible_collections.holdfast.volumes.plugins.module_utils._rotation import ROTATION_OPTIONS, run_rotation

ROOT = Path(__file__).resolve().parents[4]


def defaults(spec, **params):
    out = dict((k, v.get('default')) for k, v in spec.items())
    out.update(params)
    return out


def restore_params(tmp_path, **params):
    out = dict(archive=None, dest=None, source=None, volume=None, path=None, replace=False, keep_previous=False,
               force=False, identity=None, allow_special_files=False, quiesce='none', stop_timeout=30,
               state_dir=str(tmp_path / 'state'), lock_timeout=600)
    out.update(params)
    return out


@pytest.mark.parametrize('name', ['stop_timeout', 'lock_timeout'])
def test_negative_timeouts_are_refused_before_anything_happens(tmp_path, name):
    src = tmp_path / 'src'
    src.mkdir()
    params = defaults(BACKUP_OPTIONS, path=str(src), dest=str(tmp_path / 'backups'))
    params[name] = -1
    with pytest.raises(HoldfastError, match='%s must be 0 or more seconds, got -1' % name):
        run_backup(params)
    assert not (tmp_path / 'backups').exists()
    with pytest.raises(HoldfastError, match='%s must be 0 or more seconds' % name):
        run_restore(restore_params(tmp_path, archive=str(tmp_path / 'missing.tar'), path=str(tmp_path / 't'),
                                   **{name: -5}))
    assert not (tmp_path / 't').exists()


def test_negative_lock_timeout_refused_by_rotation(tmp_path):
    (tmp_path / 'backups').mkdir()
    with pytest.raises(HoldfastError, match='lock_timeout must be 0 or more seconds'):
        run_rotation(defaults(ROTATION_OPTIONS, dest=str(tmp_path / 'backups'), keep_last=1, lock_timeout=-1))


def test_zero_timeouts_stay_allowed(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    result, _warnings = run_backup(defaults(BACKUP_OPTIONS, path=str(src), dest=str(tmp_path / 'b'), stop_timeout=0,
                                            lock_timeout=0), check_mode=True)
    assert result['changed']


def test_restore_returns_duration_seconds(tmp_path):
    archive = one_file_archive(tmp_path)
    for check_mode in (True, False):
        result, _warnings = run_restore(restore_params(tmp_path, archive=str(archive), path=str(tmp_path / 'target')),
                                        check_mode=check_mode)
        assert isinstance(result['duration_seconds'], float) and 0 <= result['duration_seconds'] < 60
    assert (tmp_path / 'target' / 'f').read_text() == 'data\n'
    again, _warnings = run_restore(restore_params(tmp_path, archive=str(archive), path=str(tmp_path / 'target')))
    assert again['changed'] is False and 'duration_seconds' in again


def test_collection_version_of_manifests_is_galaxy_yml_version():
    """Modules run on the managed host from an AnsiballZ zip (and the scheduled runner from a zip of module_utils):
    galaxy.yml and MANIFEST.json are not there to read, so the version is one constant, pinned here to galaxy.yml.
    A release that bumps galaxy.yml without it fails this test."""
    galaxy = yaml.safe_load((ROOT / 'galaxy.yml').read_text())
    assert _store.COLLECTION_VERSION == galaxy['version'], (
        'galaxy.yml says %s: set COLLECTION_VERSION in plugins/module_utils/_store.py to it' % galaxy['version'])
