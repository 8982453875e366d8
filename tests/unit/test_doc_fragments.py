# -*- coding: utf-8 -*-
"""The doc fragments (plugins/doc_fragments) are the one place of the option docs they carry: read from the source
with ast and yaml (nothing imported), every fragment attribute is used by some plugin, no plugin writes an option
again that one of its fragments documents, and the retention fragment documents exactly the policy keys."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from ansible_collections.holdfast.volumes.plugins.module_utils._retention import POLICY_KEYS

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = sorted(list((ROOT / 'plugins' / 'modules').glob('*.py')) + list((ROOT / 'plugins' / 'filter').glob('*.py')))


def fragments():
    """{'holdfast.volumes.<file>[.<attribute>]': parsed YAML} of every fragment attribute."""
    found = {}
    for path in sorted((ROOT / 'plugins' / 'doc_fragments').glob('*.py')):
        tree = ast.parse(path.read_text())
        classes = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == 'ModuleDocFragment']
        assert len(classes) == 1, '%s: one class ModuleDocFragment' % path.name
        for node in classes[0].body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                name = 'holdfast.volumes.' + path.stem
                if node.targets[0].id != 'DOCUMENTATION':
                    name += '.' + node.targets[0].id.lower()
                found[name] = yaml.safe_load(node.value.value)
    return found


def documentation(path):
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', None) == 'DOCUMENTATION':
            return yaml.safe_load(node.value.value)
    raise AssertionError('%s has no DOCUMENTATION' % path)


FRAGMENTS = fragments()


def test_every_fragment_is_used():
    used = set()
    for path in PLUGINS:
        used.update(documentation(path).get('extends_documentation_fragment') or [])
    assert sorted(set(FRAGMENTS) - used) == []
    assert sorted(used - set(FRAGMENTS)) == []


@pytest.mark.parametrize('path', PLUGINS, ids=lambda p: '%s/%s' % (p.parent.name, p.stem))
def test_no_option_written_twice(path):
    doc = documentation(path)
    own = set(doc.get('options') or {})
    for name in doc.get('extends_documentation_fragment') or []:
        again = own & set(FRAGMENTS[name].get('options') or {})
        assert not again, '%s documents %s itself although %s carries them' % (path.name, sorted(again), name)


def test_retention_fragment_documents_the_policy_keys():
    assert sorted(FRAGMENTS['holdfast.volumes.retention']['options']) == sorted(POLICY_KEYS + ('timezone',))


def test_hook_suboptions_written_once():
    options = FRAGMENTS['holdfast.volumes.hooks']['options']
    # The YAML anchor makes both one object: the suboptions cannot drift apart.
    assert options['pre_hooks']['suboptions'] is options['post_hooks']['suboptions']
    assert sorted(options['pre_hooks']['suboptions']) == ['command', 'container', 'user']
