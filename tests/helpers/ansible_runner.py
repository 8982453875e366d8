# -*- coding: utf-8 -*-
"""Run real ansible-playbook processes against localhost and read their task results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
HELPERS = Path(__file__).resolve().parent


def collections_path() -> Path:
    base = ROOT / '.tmp' / 'collections'
    link = base / 'ansible_collections' / 'holdfast' / 'volumes'
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(ROOT)
    return base


@dataclass
class PlaybookRun:
    rc: int
    stdout: str
    stderr: str
    records: list = field(default_factory=list)

    def task(self, name: str) -> dict:
        """The result of the (last) task with this name, on its first host."""
        found = [r for r in self.records if r['task'] == name]
        assert found, "no result for task %r; stdout:\n%s\nstderr:\n%s" % (name, self.stdout, self.stderr)
        return found[-1]['result']

    def status(self, name: str) -> str:
        return [r for r in self.records if r['task'] == name][-1]['status']


def ansible_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': str(collections_path()),
        'ANSIBLE_CALLBACK_PLUGINS': str(HELPERS / 'callback_plugins'),
        'ANSIBLE_CALLBACKS_ENABLED': 'holdfast_record',
        'ANSIBLE_HOST_KEY_CHECKING': 'False',
        'ANSIBLE_RETRY_FILES_ENABLED': 'False',
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_FORCE_COLOR': '0',
        'ANSIBLE_LOCALHOST_WARNING': 'False',
        'ANSIBLE_DEPRECATION_WARNINGS': 'False',
        'PYTHONWARNINGS': 'ignore',
    })
    env.update(extra or {})
    return env


def run_playbook(tasks: list, *, check: bool = False, diff: bool = False, extra_args: list | None = None,
                 interpreter: str | None = None, play_vars: dict | None = None, env: dict | None = None,
                 verbosity: int = 0, timeout: int = 900, inventory: str | None = None,
                 hosts: str = 'all') -> PlaybookRun:
    """Run one play of `tasks` in a real ansible-playbook process, on localhost or on an inventory's hosts."""
    interpreter = interpreter or sys.executable
    with tempfile.TemporaryDirectory(prefix='holdfast-play-') as tmp:
        tmpdir = Path(tmp)
        play = [{'name': 'test play', 'hosts': hosts, 'gather_facts': False,
                 'vars': play_vars or {}, 'tasks': tasks}]
        (tmpdir / 'play.yml').write_text(yaml.safe_dump(play, sort_keys=False))
        (tmpdir / 'inventory.ini').write_text(
            'localhost ansible_connection=local ansible_python_interpreter=%s\n' % interpreter)
        record = tmpdir / 'record.jsonl'
        cmd = [str(Path(sys.executable).parent / 'ansible-playbook'), '-i',
               inventory or str(tmpdir / 'inventory.ini'), str(tmpdir / 'play.yml')]
        if check:
            cmd.append('--check')
        if diff:
            cmd.append('--diff')
        if verbosity:
            cmd.append('-' + 'v' * verbosity)
        cmd += extra_args or []
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                              env=ansible_env(dict(env or {}, HOLDFAST_RECORD=str(record))))
        records = []
        if record.exists():
            records = [json.loads(line) for line in record.read_text().splitlines() if line.strip()]
        return PlaybookRun(proc.returncode, proc.stdout, proc.stderr, records)


def run_named_playbook(name: str, extra_vars: dict, *, interpreter: str | None = None, check: bool = False,
                       timeout: int = 900, inventory_lines: list | None = None,
                       inventory: str | None = None) -> PlaybookRun:
    """Run one of the collection's playbooks (e.g. holdfast.volumes.site) on localhost (or an inventory's hosts)
    with extra vars."""
    interpreter = interpreter or sys.executable
    with tempfile.TemporaryDirectory(prefix='holdfast-named-') as tmp:
        tmpdir = Path(tmp)
        (tmpdir / 'inventory.ini').write_text(
            'localhost ansible_connection=local ansible_python_interpreter=%s\n' % interpreter
            + ''.join(line + '\n' for line in inventory_lines or []))
        (tmpdir / 'vars.json').write_text(json.dumps(extra_vars))
        record = tmpdir / 'record.jsonl'
        cmd = [str(Path(sys.executable).parent / 'ansible-playbook'), '-i', inventory or str(tmpdir / 'inventory.ini'),
               name, '-e', '@%s' % (tmpdir / 'vars.json')]
        if check:
            cmd.append('--check')
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                              env=ansible_env(dict(HOLDFAST_RECORD=str(record))))
        records = []
        if record.exists():
            records = [json.loads(line) for line in record.read_text().splitlines() if line.strip()]
        return PlaybookRun(proc.returncode, proc.stdout, proc.stderr, records)
