# -*- coding: utf-8 -*-
"""Write the `holdfast_volumes` option of every role's meta/argument_specs.yml from the one definition of the
model (plugins/module_utils/_model_schema.py), so that every role validates the same model before it changes
anything. Run it after changing the model; tests/unit/plugins/module_utils/test_model_schema.py fails until then.

    python3 scripts/model-spec.py          # rewrite the files
    python3 scripts/model-spec.py --check  # exit 1 when a file differs
"""

import os
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, '.tmp', 'collections'))
from ansible_collections.holdfast.volumes.plugins.module_utils._model_schema import (  # noqa: E402
    offsite_role_option,
    role_option,
)

ROLES = ('volumes', 'encryption', 'backup', 'restore')


class Dumper(yaml.SafeDumper):
    """Block style, sequences indented under their key (as yamllint wants)."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def render(path):
    with open(path) as handle:
        data = yaml.safe_load(handle)
    option = data['argument_specs']['main']['options']['holdfast_volumes']
    option.clear()
    role = os.path.basename(os.path.dirname(os.path.dirname(path)))
    option.update(role_option(DESCRIPTIONS[role]))
    if role == 'backup':  # the host-wide offsite default, validated like backup.offsite
        data['argument_specs']['main']['options']['holdfast_backup_offsite'] = offsite_role_option()
    return '---\n' + yaml.dump(data, Dumper=Dumper, sort_keys=False, width=116, default_flow_style=False,
                               allow_unicode=True)


DESCRIPTIONS = dict(
    volumes='The volumes of this host, one entry per volume (the same model in every role; docs/variables.md).',
    encryption='The volumes of this host; entries with encryption are handled here (the same model in every role).',
    backup='The volumes of this host; entries with backup are backed up here (the same model in every role).',
    restore='The volumes of this host; entries with backup can be restored (the same model in every role).',
)


def main(check):
    differ = []
    for role in ROLES:
        path = os.path.join(ROOT, 'roles', role, 'meta', 'argument_specs.yml')
        text = render(path)
        with open(path) as handle:
            if handle.read() == text:
                continue
        differ.append(path)
        if not check:
            with open(path + '.tmp', 'w') as handle:
                handle.write(text)
            os.rename(path + '.tmp', path)
    for path in differ:
        print(('differs: ' if check else 'written: ') + os.path.relpath(path, ROOT))
    return 1 if check and differ else 0


if __name__ == '__main__':
    sys.exit(main('--check' in sys.argv[1:]))
