# -*- coding: utf-8 -*-
"""Shared fixtures: the collection on sys.path, a real Docker Engine, the local test image."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tests' / 'helpers'))

from ansible_runner import collections_path  # noqa: E402

sys.path.insert(0, str(collections_path()))

TEST_IMAGE = 'holdfast-test/busybox:1'


@pytest.fixture(scope='session')
def docker_client():
    """A real engine. The harness (scripts/setup.sh) starts one; a missing engine is a failure, not a skip."""
    import docker
    client = docker.APIClient(version='auto')
    try:
        client.ping()
    except Exception as exc:
        pytest.fail("No Docker Engine answers (%s): run scripts/setup.sh, which starts one." % exc)
    subprocess.run([str(ROOT / 'scripts' / 'build-test-image.sh')], check=True)
    return client


@pytest.fixture
def prefix(docker_client):
    """A unique name prefix for this test's volumes/containers, cleaned up afterwards."""
    pfx = 'hft%s' % uuid.uuid4().hex[:8]
    yield pfx
    for c in docker_client.containers(all=True):
        if any(n.lstrip('/').startswith(pfx) for n in c.get('Names') or []):
            docker_client.remove_container(c['Id'], force=True)
    for v in (docker_client.volumes() or {}).get('Volumes') or []:
        if v['Name'].startswith(pfx):
            docker_client.remove_volume(v['Name'], force=True)
