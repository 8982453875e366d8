# -*- coding: utf-8 -*-
"""The rotate_keys playbook on a real guest: a new key replaces the old one under the same file name, the data
and crypttab stay, and an interrupted rotation is resumed with the key it left behind."""

from __future__ import annotations

from ansible_runner import run_named_playbook

KEY = '/etc/holdfast/keys/rk.key'
IMG = '/srv/rk-luks/rk.img'
MODEL = [{'name': 'rk_data', 'encryption': {'path': '/srv/rk/data', 'backing_file': IMG, 'size': '40M',
                                            'keyfile': KEY, 'persistent': True}}]
VARS = {'holdfast_volumes': MODEL, 'holdfast_target': 'fleet', 'holdfast_volumes_install_dependencies': False,
        'holdfast_encryption_pbkdf_memory': 32768, 'holdfast_encryption_pbkdf_iter_time': 100}


def playbook(vm, name, **extra):
    lines = open(vm.inventory).read().splitlines()
    return run_named_playbook(name, dict(VARS, **extra), inventory_lines=lines)


def opens(vm, key):
    return vm.ssh('cryptsetup open --test-passphrase --key-file %s %s' % (key, IMG), check=False)[0] == 0


def test_rotate_keys_then_resume_an_interrupted_rotation(vm_host):
    vm = vm_host
    vm.ssh('mkdir -p -m 700 /etc/holdfast/keys && head -c 64 /dev/urandom > %s && chmod 600 %s' % (KEY, KEY))
    try:
        site = playbook(vm, 'holdfast.volumes.site')
        assert site.rc == 0, site.stdout
        vm.ssh("docker run --rm -v rk_data:/d holdfast-test/busybox:1 sh -c 'head -c 500000 /dev/urandom > /d/blob'")
        digest = vm.ssh('sha256sum /srv/rk/data/blob')[1]
        crypttab = vm.ssh('cat /etc/crypttab')[1]
        vm.ssh('cp %s /root/rk.old' % KEY)

        run = playbook(vm, 'holdfast.volumes.rotate_keys')
        assert run.rc == 0, run.stdout
        assert 'rotated rk_data' in run.stdout
        assert not opens(vm, '/root/rk.old') and opens(vm, KEY)
        assert vm.ssh('cmp -s /root/rk.old %s' % KEY, check=False)[0] != 0  # a new key under the same name
        assert vm.ssh("stat -c '%%a %%s' %s" % KEY)[1].split() == ['600', '64']
        assert vm.ssh('test -e %s.new' % KEY, check=False)[0] != 0
        assert vm.ssh('cryptsetup luksDump %s | grep -c "^  [0-9]*: luks2"' % IMG)[1].strip() == '1'
        assert vm.ssh('sha256sum /srv/rk/data/blob')[1] == digest
        assert vm.ssh('cat /etc/crypttab')[1] == crypttab
        after = playbook(vm, 'holdfast.volumes.site')  # the model did not change: site has nothing to do
        assert after.rc == 0 and 'changed=0' in after.stdout, after.stdout

        # interrupted after the old key's slot was removed, before the rename: only <key>.new opens now
        vm.ssh('cp %s /root/rk.before && head -c 64 /dev/urandom > %s.new && chmod 600 %s.new' % (KEY, KEY, KEY))
        vm.ssh('cryptsetup luksAddKey --pbkdf-memory 32768 --iter-time 100 --key-file %s %s %s.new'
               % (KEY, IMG, KEY))
        vm.ssh('cryptsetup luksRemoveKey --key-file %s %s' % (KEY, IMG))
        vm.ssh('cp %s.new /root/rk.leftover' % KEY)
        resumed = playbook(vm, 'holdfast.volumes.rotate_keys')
        assert resumed.rc == 0, resumed.stdout
        assert 'resumed rk_data' in resumed.stdout
        assert vm.ssh('cmp /root/rk.leftover %s' % KEY, check=False)[0] == 0  # the leftover key was kept
        assert opens(vm, KEY) and not opens(vm, '/root/rk.before')
        assert vm.ssh('sha256sum /srv/rk/data/blob')[1] == digest
    finally:
        vm.ssh('docker volume rm -f rk_data; umount /srv/rk/data; cryptsetup close holdfast-srv-rk-data; '
               'sed -i "/rk.img/d;/srv\\/rk\\/data/d" /etc/crypttab /etc/fstab; '
               'rm -rf /srv/rk /srv/rk-luks /root/rk.* %s %s.new' % (KEY, KEY), check=False)
