# -*- coding: utf-8 -*-
"""Shared fixtures: the collection on sys.path, a real Docker Engine, the local test image."""

from __future__ import annotations

import os
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


@pytest.fixture
def loop_volume_factory(docker_client, prefix, tmp_path):
    """Local volumes on ext4 loop devices: Docker mounts them only for containers, so no host directory holds
    their data (modules must go through the Engine), and the data persists between containers."""
    made = []

    def make(name):
        img = tmp_path / ('%s.img' % name)
        subprocess.run(['truncate', '-s', '16M', str(img)], check=True)
        subprocess.run(['mkfs.ext4', '-q', '-F', str(img)], check=True)
        dev = subprocess.run(['losetup', '--find', '--show', str(img)], capture_output=True, text=True,
                             check=True).stdout.strip()
        vol = '%s_%s' % (prefix, name)
        docker_client.create_volume(vol, driver_opts={'type': 'ext4', 'device': dev})
        made.append((vol, dev))
        return vol
    yield make
    for vol, dev in made:
        for c in docker_client.containers(all=True, filters={'volume': vol}):
            docker_client.remove_container(c['Id'], force=True)
        try:
            docker_client.remove_volume(vol, force=True)
        finally:
            subprocess.run(['losetup', '-d', dev], check=False)


VM_STATE = os.path.join(os.environ.get('HOLDFAST_VM_RUN', '/var/tmp/holdfast-vm-run'), 'fleet.json')


class VMHost(object):
    """One guest of the VM tier: inventory for Ansible, and ssh for setup and checks."""

    def __init__(self, inventory, image, port):
        self.inventory = str(inventory)
        self.image = image
        self.port = port

    def ssh_argv(self, command):
        return ['ssh', '-i', '%s/id_ed25519' % self.image, '-p', str(self.port), '-o', 'BatchMode=yes',
                '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR',
                '-o', 'ConnectTimeout=10', 'root@127.0.0.1', command]

    def ssh(self, command, check=True, timeout=300):
        proc = subprocess.run(self.ssh_argv(command), capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError('guest command failed (%d): %s\n%s%s' % (proc.returncode, command, proc.stdout,
                                                                          proc.stderr))
        return proc.returncode, proc.stdout

    def boot_systemd(self, reboot=False):
        """Reboot (a crash: sysrq) into the real init, the fast init handing over to systemd when the flag exists.
        Without reboot=True, only when systemd does not run yet. Returns when Docker answers under systemd."""
        import time
        if not reboot and self.ssh('test -d /run/systemd/system', check=False)[0] == 0:
            return
        self.ssh('touch /etc/holdfast-boot-systemd && sync')
        self.ssh('(sleep 1; echo b > /proc/sysrq-trigger) >/dev/null 2>&1 &', check=False)
        time.sleep(5)
        self.wait(check='test -d /run/systemd/system && docker info >/dev/null 2>&1', timeout=300)

    def wait(self, check='test -e /run/holdfast-ready', timeout=240):
        import time
        deadline = time.time() + timeout
        while time.time() < deadline:
            if subprocess.run(self.ssh_argv(check), capture_output=True, check=False, timeout=60).returncode == 0:
                return True
            time.sleep(2)
        raise AssertionError('the guest did not come back within %ss' % timeout)


@pytest.fixture(scope='session')
def vm_host(tmp_path_factory):
    """A real Debian guest with dm-crypt, Docker and systemd (QEMU, software emulation), booted once for all VM
    tests. scripts/test.sh boots the fleet once for pytest and Molecule and names its inventory in
    HOLDFAST_FLEET_INVENTORY: the tests then use its first host. Run alone, pytest boots (and stops) one guest.
    The harness builds the image on first use; no VM is a failure, not a skip."""
    import json
    fleet = str(ROOT / 'tests' / 'vm' / 'fleet')
    shared = os.environ.get('HOLDFAST_FLEET_INVENTORY')
    if shared:
        inventory = tmp_path_factory.mktemp('vm') / 'fleet.ini'
        # the first host alone, so that tests targeting the group `fleet` touch no other guest
        state = json.load(open(VM_STATE))
        assert state['hosts'], 'HOLDFAST_FLEET_INVENTORY is set but no fleet is up'
        host = state['hosts'][0]
        lines = open(shared).read().splitlines()
        inventory.write_text('\n'.join(line for line in lines if not line.startswith('vm') or
                                       line.startswith(host['name'] + ' ')) + '\n')
        yield VMHost(inventory, host['image'], host['port'])
        return
    inventory = tmp_path_factory.mktemp('vm') / 'fleet.ini'
    subprocess.run([sys.executable, fleet, 'up', '--hosts', '1', '--inventory', str(inventory)], check=True)
    state = json.load(open(VM_STATE))
    host = state['hosts'][0]
    yield VMHost(inventory, host['image'], host['port'])
    subprocess.run([sys.executable, fleet, 'down'], check=False)
