# -*- coding: utf-8 -*-
"""The collection builds, installs from its tarball, and ansible-doc renders every module and plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_build_install_and_render_docs(tmp_path):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(tmp_path / 'installed'), ANSIBLE_NOCOLOR='1')
    subprocess.run([str(BIN / 'ansible-galaxy'), 'collection', 'build', str(ROOT), '--output-path', str(tmp_path)],
                   check=True, capture_output=True, env=env)
    tarballs = list(tmp_path.glob('holdfast-volumes-*.tar.gz'))
    assert len(tarballs) == 1
    listing = subprocess.run(['tar', 'tzf', str(tarballs[0])], check=True, capture_output=True, text=True).stdout
    assert '.venv/' not in listing and 'tests/output' not in listing
    subprocess.run([str(BIN / 'ansible-galaxy'), 'collection', 'install', str(tarballs[0]), '-p',
                    str(tmp_path / 'installed')], check=True, capture_output=True, env=env)
    installed = tmp_path / 'installed' / 'ansible_collections' / 'holdfast' / 'volumes'
    modules = sorted(p.stem for p in (installed / 'plugins' / 'modules').glob('*.py') if p.stem != '__init__')
    assert {'docker_volumes', 'volume_info', 'volume_permissions', 'volume_seed', 'volume_backup', 'volume_restore',
            'backup_rotation', 'backup_info', 'luks_path'} <= set(modules)
    for module in modules:
        out = subprocess.run([str(BIN / 'ansible-doc', ), '--json', 'holdfast.volumes.%s' % module],
                             check=True, capture_output=True, text=True, env=env).stdout
        doc = json.loads(out)['holdfast.volumes.%s' % module]
        assert doc['doc']['short_description'] and doc['examples'] and doc['return'], module
        # modules that talk to the engine document the shared connection options
        source = (installed / 'plugins' / 'modules' / ('%s.py' % module)).read_text()
        talks_to_docker = '  - holdfast.volumes.docker\n' in source
        assert ('docker_host' in doc['doc']['options']) == talks_to_docker, module
        text = subprocess.run([str(BIN / 'ansible-doc'), 'holdfast.volumes.%s' % module],
                              check=True, capture_output=True, text=True, env=env).stdout
        assert 'EXAMPLES' in text and 'RETURN VALUES' in text
