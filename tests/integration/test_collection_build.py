# -*- coding: utf-8 -*-
"""The collection as it is released: the tarball holds the collection and nothing of the development tree (caches,
reports, venvs, the harness), installs, renders its docs, its Markdown links work where it is installed, and
galaxy-importer (pinned, in its own cached venv) accepts it with no error and no warning."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# What a tarball may hold at its top level, and what it must never hold anywhere.
TOP_LEVEL = {'FILES.json', 'MANIFEST.json', 'LICENSE', 'README.md', 'changelogs', 'docs', 'meta', 'playbooks',
             'plugins', 'roles', 'tests'}
NEVER = re.compile(r'(^|/)(\.venv|\.tmp|\.git|\.ci|\.pytest_cache|\.ruff_cache|\.hypothesis|\.mypy_cache|'
                   r'__pycache__|holdfast-report|tests/(output|integration|vm|bench|sanity)|scripts|demo|extensions|'
                   r'requirements)(/|$)|\.pyc$|\.tar\.gz$')
# Development leftovers planted into the copy that is built: build_ignore must keep every one out.
PLANTED = ['.pytest_cache/v/cache/lastfailed', '.ruff_cache/0.1/x', '.hypothesis/examples/x', '.venv/bin/python',
           '.tmp/collections/x', 'holdfast-report/holdfast-report.html', 'plugins/modules/__pycache__/x.pyc',
           'tests/output/junit.xml', '.mypy_cache/x', 'holdfast-volumes-0.0.1.tar.gz']


@pytest.fixture(scope='module')
def tarball(tmp_path_factory):
    """Built from a copy of the tree (the files git knows, plus uncommitted ones) with development leftovers in it."""
    tree = tmp_path_factory.mktemp('tree') / 'volumes'
    files = subprocess.run(['git', '-C', str(ROOT), 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
                           capture_output=True, check=True).stdout.decode().split('\0')
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    for name in PLANTED:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text('x')
    out = tmp_path_factory.mktemp('dist')
    subprocess.run([str(BIN / 'ansible-galaxy'), 'collection', 'build', str(tree), '--output-path', str(out)],
                   check=True, capture_output=True)
    built = list(out.glob('holdfast-volumes-*.tar.gz'))
    assert len(built) == 1
    return built[0]


def test_tarball_holds_the_collection_and_nothing_else(tarball):
    listing = subprocess.run(['tar', 'tzf', str(tarball)], check=True, capture_output=True, text=True).stdout.split()
    names = [n.rstrip('/') for n in listing]
    assert {n.split('/')[0] for n in names} <= TOP_LEVEL, sorted({n.split('/')[0] for n in names} - TOP_LEVEL)
    assert not [n for n in names if NEVER.search(n)], [n for n in names if NEVER.search(n)]
    for needed in ('LICENSE', 'README.md', 'meta/runtime.yml', 'plugins/modules/volume_backup.py',
                   'playbooks/site.yml', 'roles/backup/meta/argument_specs.yml', 'docs/variables.md',
                   'docs/architecture.md'):
        assert needed in names, needed
    # ansible-doc needs every doc fragment where the collection is installed
    for fragment in sorted((ROOT / 'plugins' / 'doc_fragments').glob('*.py')):
        assert 'plugins/doc_fragments/%s' % fragment.name in names, fragment.name
    assert len(names) < 250, 'the tarball grew: %d entries' % len(names)


def test_license_is_the_full_gpl3():
    text = (ROOT / 'LICENSE').read_text()
    assert text.split('\n')[:2] == [' ' * 20 + 'GNU GENERAL PUBLIC LICENSE', ' ' * 23 + 'Version 3, 29 June 2007']
    assert 'END OF TERMS AND CONDITIONS' in text and len(text) > 30000
    galaxy = (ROOT / 'galaxy.yml').read_text()
    assert '- GPL-3.0-or-later' in galaxy


def test_build_install_and_render_docs(tarball, tmp_path):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(tmp_path / 'installed'), ANSIBLE_NOCOLOR='1')
    subprocess.run([str(BIN / 'ansible-galaxy'), 'collection', 'install', str(tarball), '-p',
                    str(tmp_path / 'installed')], check=True, capture_output=True, env=env)
    installed = tmp_path / 'installed' / 'ansible_collections' / 'holdfast' / 'volumes'
    modules = sorted(p.stem for p in (installed / 'plugins' / 'modules').glob('*.py') if p.stem != '__init__')
    assert {'docker_volumes', 'volume_info', 'volume_permissions', 'volume_seed', 'volume_backup', 'volume_restore',
            'backup_rotation', 'backup_info', 'luks_path'} <= set(modules)
    names = ['holdfast.volumes.%s' % module for module in modules]
    docs = json.loads(subprocess.run([str(BIN / 'ansible-doc'), '--json'] + names, check=True, capture_output=True,
                                     text=True, env=env).stdout)
    for module in modules:
        doc = docs['holdfast.volumes.%s' % module]
        assert doc['doc']['short_description'] and doc['examples'] and doc['return'], module
        # modules that talk to the engine document the shared connection options
        source = (installed / 'plugins' / 'modules' / ('%s.py' % module)).read_text()
        talks_to_docker = '  - holdfast.volumes.docker\n' in source
        assert ('docker_host' in doc['doc']['options']) == talks_to_docker, module
    # options that come from a doc fragment only (retention, hooks, remote store, backup layout)
    assert 'keep_daily' in docs['holdfast.volumes.backup_rotation']['doc']['options']
    assert 'remote' in docs['holdfast.volumes.backup_rotation']['doc']['options']
    hooks = docs['holdfast.volumes.volume_backup']['doc']['options']['post_hooks']['suboptions']
    assert sorted(hooks) == ['command', 'container', 'user'] and 'lock_timeout' in docs[
        'holdfast.volumes.volume_backup']['doc']['options']
    filters = json.loads(subprocess.run([str(BIN / 'ansible-doc'), '-t', 'filter', '--json',
                                         'holdfast.volumes.retention_plan'], check=True, capture_output=True,
                                        text=True, env=env).stdout)
    assert {'keep_daily', 'timezone', 'time_key'} <= set(filters['holdfast.volumes.retention_plan']['doc']['options'])
    text = subprocess.run([str(BIN / 'ansible-doc')] + names, check=True, capture_output=True, text=True,
                          env=env).stdout
    assert text.count('EXAMPLES') == len(modules) and text.count('RETURN VALUES') == len(modules)
    # Markdown links between shipped files work where the collection is installed (role READMEs -> docs/ ...)
    broken = []
    for page in installed.rglob('*.md'):
        for target in re.findall(r'\]\(([^)#\s]+)(?:#[^)]*)?\)', page.read_text()):
            if '://' not in target and not (page.parent / target).exists():
                broken.append('%s -> %s' % (page.relative_to(installed), target))
    assert not broken, broken


def test_role_meta_descriptions_are_sentences():
    import yaml
    for meta in ROOT.glob('roles/*/meta/main.yml'):
        desc = yaml.safe_load(meta.read_text())['galaxy_info']['description']
        assert desc[0].isupper() and desc.endswith('.') and len(desc.split()) >= 8, (meta, desc)
        assert not desc.lower().startswith('holdfast.volumes'), (meta, desc)


def test_galaxy_importer_accepts_the_tarball(tarball, tmp_path):
    """galaxy-importer as Galaxy runs it (ansible-doc, ansible-lint on the collection, the checks of the files),
    except its ansible-test step, which needs a container image from a registry. Nothing may be logged at
    WARNING or ERROR: those are the findings Galaxy shows on the collection's page."""
    venv = subprocess.run([str(ROOT / 'scripts' / 'venv.sh'), str(ROOT / 'requirements' / 'galaxy-importer.txt')],
                          check=True, capture_output=True, text=True).stdout.strip()
    env = dict(os.environ, PATH='%s/bin:%s' % (venv, os.environ['PATH']), GALAXY_IMPORTER_RUN_ANSIBLE_TEST='False',
               GALAXY_IMPORTER_RUN_ANSIBLE_LINT='True', GALAXY_IMPORTER_RUN_ANSIBLE_DOC='True', HOME=str(tmp_path))
    env.pop('ANSIBLE_COLLECTIONS_PATH', None)
    proc = subprocess.run(['%s/bin/python' % venv, '-m', 'galaxy_importer.main', str(tarball)], cwd=str(tmp_path),
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and 'Importer processing completed successfully' in log, log
    assert 'Linting collection via ansible-lint' in log and 'Getting doc strings via ansible-doc' in log, log
    findings = [line for line in log.splitlines() if re.match(r'\s*(WARNING|ERROR)\b', line)]
    assert not findings, '\n'.join(findings)
