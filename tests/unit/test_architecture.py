# -*- coding: utf-8 -*-
"""docs/architecture.md matches the code: read with ast (nothing imported), every plugins/module_utils file is in
the page's files table and every row names a file; imports between module_utils files go only to the layers the
page's layer table allows; no private name crosses a file; files, functions and modules' main() stay short; modules
are thin. Today's offenders are in the allowlists below, which may only shrink (see the page: "Updating after a
move")."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / 'docs' / 'architecture.md'
MODULE_UTILS = ROOT / 'plugins' / 'module_utils'
PACKAGE = 'ansible_collections.holdfast.volumes.plugins.module_utils'

MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80
MAX_MAIN_LINES = 30

# The allowlists: what offends on main today (after #15's moves, all of them empty). Each
# may only shrink: an entry that grows fails, an entry whose count changed fails until the new count is written
# here, an entry that no longer offends fails until it is deleted. Never add one.

# Imports between two features (importer -> imported): shared things that live in one feature's file.
SIDEWAYS = set()

# Private names imported from another module_utils file (importer -> imported.name).
PRIVATE_IMPORTS = set()

# module_utils files over MAX_FILE_LINES: file -> lines.
LONG_FILES = {
}

# Functions over MAX_FUNCTION_LINES (def line to last line, nested functions included): file:qualified name -> lines.
LONG_FUNCTIONS = {
}

# Modules whose main() is over MAX_MAIN_LINES: module -> lines.
LONG_MAINS = {}


# --- the page ------------------------------------------------------------------------------------------------------

def table(text, header):
    """The rows (lists of cells, backticks stripped) of the Markdown table whose header row starts with `header`."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        cells = [cell.strip() for cell in line.strip().strip('|').split('|')]
        if line.startswith('|') and cells[:len(header)] == header:
            rows = []
            for row in lines[index + 2:]:
                if not row.startswith('|'):
                    break
                rows.append([cell.strip().strip('`') for cell in row.strip().strip('|').split('|')])
            return rows
    raise AssertionError('docs/architecture.md has no table with the header %s' % ' | '.join(header))


def read_page():
    text = PAGE.read_text()
    order, allowed = [], {}
    for layer, may_import, _what in table(text, ['layer', 'may import']):
        order.append(layer)
        allowed[layer] = {name.strip() for name in may_import.split(',') if name.strip()}
    files = {}
    for name, layer, purpose in table(text, ['file', 'layer', 'purpose']):
        assert name not in files, '%s is listed twice in the files table' % name
        files[name] = layer
        assert purpose, '%s has no purpose in the files table' % name
    return order, allowed, files


ORDER, ALLOWED, FILES = read_page()


def test_layer_table_is_ordered():
    """A layer may import only its own layer and the layers below it (the table is lowest first)."""
    for position, layer in enumerate(ORDER):
        assert ALLOWED[layer], layer
        beyond = ALLOWED[layer] - set(ORDER[:position + 1])
        assert not beyond, 'layer %s may import %s, which are not below it' % (layer, sorted(beyond))


def test_files_table_matches_the_directory():
    on_disk = sorted(path.name for path in MODULE_UTILS.glob('*.py') if path.name != '__init__.py')
    missing = sorted(set(on_disk) - set(FILES))
    gone = sorted(set(FILES) - set(on_disk))
    assert not missing, 'add a row to the files table of docs/architecture.md for: %s' % missing
    assert not gone, 'these rows of docs/architecture.md name no file of plugins/module_utils: %s' % gone
    unknown = sorted('%s (%s)' % (name, layer) for name, layer in FILES.items() if layer not in ORDER)
    assert not unknown, 'these files name a layer that is not in the layer table: %s' % unknown


# --- the code ------------------------------------------------------------------------------------------------------

def imports(path):
    """(imported module_utils stem, imported name or None) for every import of a module_utils file in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ''
            if node.level:  # relative: from ._x import y / from . import _x (inside module_utils only)
                module = PACKAGE + ('.' + module if module else '')
            if module == PACKAGE:
                found.extend((alias.name, None) for alias in node.names)
            elif module.startswith(PACKAGE + '.'):
                stem = module[len(PACKAGE) + 1:].split('.')[0]
                found.extend((stem, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE + '.'):
                    found.append((alias.name[len(PACKAGE) + 1:].split('.')[0], None))
    return found


UTILS = sorted(path for path in MODULE_UTILS.glob('*.py') if path.name != '__init__.py')
PLUGINS = sorted(list((ROOT / 'plugins' / 'modules').glob('*.py')) + list((ROOT / 'plugins' / 'filter').glob('*.py')))


def check_allowlist(name, allowlist, offending):
    """offending: {key: count or None}. Fails on a new offender, on a grown or changed count, and on a stale entry."""
    new = sorted(key for key in offending if key not in allowlist)
    assert not new, 'new offenders (fix them; never add them to %s): %s' % (
        name, ', '.join('%s (%s)' % (key, offending[key]) if offending[key] is not None else key for key in new))
    stale = sorted(key for key in allowlist if key not in offending)
    assert not stale, 'no longer offending, delete from %s in tests/unit/test_architecture.py: %s' % (name, stale)
    if isinstance(allowlist, dict):
        grown = sorted('%s: %d, allowed %d' % (key, offending[key], allowlist[key])
                       for key in allowlist if offending[key] > allowlist[key])
        assert not grown, 'grew beyond %s (split it instead): %s' % (name, grown)
        shrunk = sorted('%r: %d,' % (key, offending[key]) for key in allowlist if offending[key] != allowlist[key])
        assert not shrunk, 'smaller now: write the new counts into %s: %s' % (name, ' '.join(shrunk))


def test_imports_follow_the_layers():
    wrong, sideways = [], {}
    for path in UTILS:
        layer = FILES.get(path.name)
        assert layer, '%s is not in the files table' % path.name
        for stem, _name in imports(path):
            target = FILES.get(stem + '.py')
            assert target, '%s imports %s, which is not in the files table' % (path.name, stem)
            if stem == path.stem:
                continue
            if target not in ALLOWED[layer]:
                if target == layer:
                    sideways['%s -> %s' % (path.stem, stem)] = None
                else:
                    wrong.append('%s (%s) imports %s (%s)' % (path.name, layer, stem, target))
    assert not wrong, 'imports against the layer table of docs/architecture.md: %s' % sorted(set(wrong))
    check_allowlist('SIDEWAYS', SIDEWAYS, sideways)


def test_no_private_name_crosses_a_file():
    private = {}
    for path in UTILS + PLUGINS:
        for stem, name in imports(path):
            if name and name.startswith('_') and stem != path.stem:
                private['%s -> %s.%s' % (path.stem, stem, name)] = None
    check_allowlist('PRIVATE_IMPORTS', PRIVATE_IMPORTS, private)


def functions(tree, prefix=''):
    """(qualified name, lines) of every function, methods and nested functions included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node.end_lineno - node.lineno + 1
            yield from functions(node, prefix + node.name + '.')
        elif isinstance(node, ast.ClassDef):
            yield from functions(node, prefix + node.name + '.')
        else:
            yield from functions(node, prefix)


def test_files_are_short():
    long_files = {}
    for path in UTILS:
        lines = len(path.read_text().splitlines())
        if lines > MAX_FILE_LINES:
            long_files[path.name] = lines
    check_allowlist('LONG_FILES', LONG_FILES, long_files)


def test_functions_are_short():
    long_functions = {}
    for path in UTILS:
        for name, lines in functions(ast.parse(path.read_text())):
            if lines > MAX_FUNCTION_LINES:
                long_functions['%s:%s' % (path.name, name)] = lines
    check_allowlist('LONG_FUNCTIONS', LONG_FUNCTIONS, long_functions)


# --- the modules ---------------------------------------------------------------------------------------------------

MODULES = sorted((ROOT / 'plugins' / 'modules').glob('*.py'))
DOC_NAMES = {'DOCUMENTATION', 'EXAMPLES', 'RETURN'}


def main_lines(path):
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef) and node.name == 'main':
            return node.end_lineno - node.lineno + 1
    return None


@pytest.mark.parametrize('path', MODULES, ids=lambda p: p.stem)
def test_module_is_thin(path):
    """Only __future__, __metaclass__, the three doc strings, imports, def main() and the __main__ guard."""
    tree = ast.parse(path.read_text())
    other = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            module = node.module or ''
            ok = module in ('__future__', 'ansible.module_utils.basic') or module.startswith(PACKAGE + '.')
            if not ok or any(alias.name.startswith('_') for alias in node.names):
                other.append('line %d: %s' % (node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and (node.targets[0].id in DOC_NAMES or ast.unparse(node) == '__metaclass__ = type'):
            continue
        elif isinstance(node, ast.FunctionDef) and node.name == 'main':
            continue
        elif isinstance(node, ast.If) and ast.unparse(node) == "if __name__ == '__main__':\n    main()":
            continue
        else:
            other.append('line %d: %s' % (node.lineno, ast.unparse(node).splitlines()[0]))
    assert not other, '%s is not thin; move this into plugins/module_utils: %s' % (path.name, other)
    assert {node.targets[0].id for node in tree.body if isinstance(node, ast.Assign)} >= DOC_NAMES
    assert main_lines(path), '%s has no main()' % path.name


def test_module_mains_are_short():
    long_mains = {path.stem: main_lines(path) for path in MODULES if (main_lines(path) or 0) > MAX_MAIN_LINES}
    check_allowlist('LONG_MAINS', LONG_MAINS, long_mains)


# --- the test itself sees what it claims to see --------------------------------------------------------------------

def test_import_reader_sees_every_form(tmp_path):
    sample = tmp_path / '_sample.py'
    sample.write_text(
        'from %s._errors import HoldfastError\n'
        'from %s import _process\n'
        'import %s._archive\n'
        'from ._safe_fs import _private\n'
        'def f():\n    from %s._luks import run\n' % (PACKAGE, PACKAGE, PACKAGE, PACKAGE))
    assert sorted(imports(sample), key=str) == sorted(
        [('_errors', 'HoldfastError'), ('_process', None), ('_archive', None), ('_safe_fs', '_private'),
         ('_luks', 'run')], key=str)


def test_allowlist_check_catches_growth_change_and_staleness():
    check_allowlist('X', {'a': 5}, {'a': 5})
    for offending in ({'a': 6}, {'a': 4}, {}, {'a': 5, 'b': 1}):
        with pytest.raises(AssertionError):
            check_allowlist('X', {'a': 5}, offending)
    with pytest.raises(AssertionError):
        check_allowlist('X', {'a -> b'}, {})


def test_page_parser_reads_tables():
    text = '| file | layer | purpose |\n| --- | --- | --- |\n| `_a.py` | core | one |\n\nafter\n| x |\n'
    assert table(text, ['file', 'layer', 'purpose']) == [['_a.py', 'core', 'one']]
    assert re.search(r'\| file \| layer \| purpose \|', PAGE.read_text())
