# -*- coding: utf-8 -*-
"""The docs are true where they can be checked mechanically: every YAML/JSON block in README.md, docs/ and the role
READMEs parses, and the README's statements about check mode and diff mode match the modules' attributes."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MARKDOWN = sorted([ROOT / 'README.md'] + list((ROOT / 'docs').glob('*.md')) + list(ROOT.glob('roles/*/README.md')))
BLOCK = re.compile(r'^```(yaml|yml|json)[ \t]*\n(.*?)^```', re.M | re.S)


def blocks(path):
    text = path.read_text()
    for match in BLOCK.finditer(text):
        yield text[:match.start()].count('\n') + 2, match.group(2)


@pytest.mark.parametrize('path', MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_block_parses(path):
    for line, body in blocks(path):
        try:
            yaml.safe_load(body)
        except yaml.YAMLError as exc:
            pytest.fail('%s, block at line %d does not parse: %s' % (path.relative_to(ROOT), line, exc))


def test_the_block_finder_sees_blocks():
    assert sum(len(list(blocks(p))) for p in MARKDOWN) > 15
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load('- name: First deployment only: default configuration\n')


def attributes(module):
    """check_mode/diff_mode support of a module, from its DOCUMENTATION or the attribute fragment it uses."""
    source = (ROOT / 'plugins' / 'modules' / ('%s.py' % module)).read_text()
    tree = ast.parse(source)
    doc = next(yaml.safe_load(n.value.value) for n in tree.body if isinstance(n, ast.Assign)
               and any(getattr(t, 'id', None) == 'DOCUMENTATION' for t in n.targets))
    attrs = dict(doc.get('attributes') or {})
    for fragment in doc.get('extends_documentation_fragment') or []:
        if fragment.startswith('holdfast.volumes.attributes.'):
            frag_src = (ROOT / 'plugins' / 'doc_fragments' / 'attributes.py').read_text()
            var = fragment.rsplit('.', 1)[1].upper()
            frag = re.search(r"^    %s = r'''\n(.*?)'''" % var, frag_src, re.M | re.S).group(1)
            attrs.update(yaml.safe_load(frag)['attributes'])
    return {k: v['support'] for k, v in attrs.items()}


def test_readme_check_and_diff_mode_claims_match_the_attributes():
    modules = sorted(p.stem for p in (ROOT / 'plugins' / 'modules').glob('*.py') if p.stem != '__init__')
    support = {m: attributes(m) for m in modules}
    readme = (ROOT / 'README.md').read_text()
    assert all(s['check_mode'] == 'full' for s in support.values()), support
    assert 'All modules support check mode' in readme
    assert 'all modules support check mode and diff mode' not in readme.lower()
    claim = re.search(r'Diff mode: (.*?) show what changes', readme, re.S)
    assert claim, 'README says "Diff mode: `module`, ... show what changes"'
    named = set(re.findall(r'`(\w+)`', claim.group(1)))
    assert named == {m for m, s in support.items() if s['diff_mode'] != 'none'}, (named, support)
