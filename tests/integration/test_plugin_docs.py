# -*- coding: utf-8 -*-
"""ansible-doc renders every plugin cleanly: modules (with their doc fragments merged in, as users see them),
filters and roles. Two views are checked: the documentation as ansible-doc parses it (--json: every string, for
markup that cannot render, such as parentheses inside C() or Markdown backticks) and the rendered text (no
leftover macros, every code span closed with balanced brackets, nothing on stderr)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_runner import collections_path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MACRO = re.compile(r'\b(RV|[CIBOVEMLUP])\(')


def plugins():
    found = {'module': sorted(p.stem for p in (ROOT / 'plugins' / 'modules').glob('*.py') if p.stem != '__init__'),
             'filter': [], 'role': sorted(p.parent.parent.name for p in ROOT.glob('roles/*/meta/argument_specs.yml'))}
    for path in (ROOT / 'plugins' / 'filter').glob('*.py'):
        found['filter'] += re.findall(r"^name: (\w+)$", path.read_text(), re.M)
    return {kind: ['holdfast.volumes.%s' % name for name in names] for kind, names in found.items()}


def ansible_doc(kind, names, *args):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections_path()), ANSIBLE_NOCOLOR='1',
               ANSIBLE_FORCE_COLOR='0', PAGER='cat', COLUMNS='100')
    proc = subprocess.run([str(BIN / 'ansible-doc'), '-t', kind] + list(args) + names, capture_output=True,
                          text=True, env=env, check=False)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr + proc.stdout[-2000:]
    return proc.stdout


def strings(node, where=''):
    if isinstance(node, str):
        yield where, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(value, '%s.%s' % (where, key) if where else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from strings(value, '%s[%d]' % (where, index))


def source_problems(text):
    """Markup in one documentation string that cannot render as meant."""
    problems = []
    for match in MACRO.finditer(text):
        end = text.find(')', match.end())
        if end < 0:
            problems.append('%s( is never closed' % match.group(1))
        elif '(' in text[match.end():end]:
            problems.append('%s(...) holds a parenthesis, so it ends early: %r'
                            % (match.group(1), text[match.start():end + 20]))
    if '`' in text:
        problems.append('Markdown backticks (use C(...)): %r' % text[max(0, text.find('`') - 20):][:60])
    return problems


def rendered_problems(text):
    """The rendered text: code spans are `like this' (so an opened parenthesis inside one that is not closed
    there means the span ended early), and no macro is left over."""
    problems = []
    text = re.sub(r'`\w+:`', '', text)  # ansible-doc's own headers of attributes (`check_mode:`)
    for match in re.finditer(r"`([^`']*)'", text):
        span = match.group(1)
        if '\n\n' in span:
            problems.append('a code span runs over paragraphs: %r' % span[:80])
            continue
        for pair in ('()', '[]', '{}'):
            if span.count(pair[0]) != span.count(pair[1]):
                problems.append('unbalanced %s in code span %r' % (pair, span))
    for match in re.finditer(r"`[^`'\n]*`", text):
        problems.append('Markdown code span: %r' % match.group(0))
    for match in MACRO.finditer(text):
        problems.append('macro left over: %r' % text[match.start():match.start() + 40])
    return problems


def test_checks_catch_the_known_breakage():
    assert source_problems('from C(docker run -v $(pwd):/backup alpine)')
    assert source_problems('with `backup` set')
    assert not source_problems('see C(tar) and O(force=true) (and V(none)).')
    assert rendered_problems("example `docker run -v $(pwd':/backup ... .))")
    assert rendered_problems('left C(over)')
    assert not rendered_problems("fine `tar -C /data .' and (parentheses) outside")


@pytest.mark.parametrize('kind', ['module', 'filter', 'role'])
def test_every_plugin_renders_cleanly(kind):
    names = plugins()[kind]
    assert names, kind
    docs = json.loads(ansible_doc(kind, names, '--json'))
    assert sorted(docs) == sorted(names)
    problems = []
    for name, doc in docs.items():
        for where, text in strings(doc.get('doc', {})):
            problems += ['%s %s: %s' % (name, where, p) for p in source_problems(text)]
        for where, text in strings(doc.get('return') or {}):
            problems += ['%s RETURN %s: %s' % (name, where, p) for p in source_problems(text)]
    text = ansible_doc(kind, names)
    for name in names:
        assert name in text
    problems += ['rendered %s: %s' % (kind, p) for p in rendered_problems(text)]
    assert not problems, '\n'.join(problems)


def test_every_doc_fragment_is_rendered_through_a_module():
    """The module check above covers a fragment only if a module uses it."""
    sources = '\n'.join(p.read_text() for p in (ROOT / 'plugins' / 'modules').glob('*.py'))
    for path in (ROOT / 'plugins' / 'doc_fragments').glob('*.py'):
        fragment = path.read_text()
        names = [''] + ['.' + n.lower() for n in re.findall(r'^    ([A-Z_]+) = r', fragment, re.M)
                        if n != 'DOCUMENTATION']
        for suffix in names:
            assert '  - holdfast.volumes.%s%s\n' % (path.stem, suffix) in sources or suffix == '' and \
                'DOCUMENTATION' not in fragment, '%s%s is used by no module' % (path.stem, suffix)
