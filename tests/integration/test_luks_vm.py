# -*- coding: utf-8 -*-
"""luks_path in a real kernel: a QEMU guest with dm-crypt, Docker and systemd, driven by Ansible over SSH."""

from __future__ import annotations

import subprocess
import threading

from ansible_runner import run_playbook
from spy import forbidden, install_vm

FAST_KDF = {'pbkdf_memory': 32768, 'pbkdf_iter_time': 100}


def luks(**args):
    merged = dict(FAST_KDF)
    merged.update(args)
    return {'name': 'luks', 'holdfast.volumes.luks_path': merged}


def play(vm, tasks, **kwargs):
    return run_playbook(tasks, inventory=vm.inventory, hosts='fleet', **kwargs)


def guest_state(vm, backing):
    """Device mappings, loop devices, mounts, the backing file, the tables and the engine's objects of the guest."""
    return vm.ssh('dmsetup ls; ls /sys/block | grep ^dm- ; ls /dev/mapper; losetup -l -n -O NAME,BACK-FILE; '
                  "awk '{print $5}' /proc/self/mountinfo | sort; md5sum %s /etc/crypttab /etc/fstab; "
                  'docker volume ls -q; docker ps -aq; docker images -q' % backing, check=False)[1]


def keyfile(vm, path):
    vm.ssh('head -c 64 /dev/urandom > %s && chmod 600 %s' % (path, path))
    return path


def test_lifecycle_write_close_reopen_idempotent(vm_host):
    vm = vm_host
    key = keyfile(vm, '/root/k-life')
    task = luks(path='/srv/enc/life', backing_file='/srv/luks/life.img', size='64M', keyfile=key,
                owner=999, group=999, mode='0750', docker_volume='life_data')
    check = play(vm, [task], check=True)
    assert check.rc == 0, check.stdout
    steps = check.task('luks')['steps']
    # check mode lists every step, not only the first
    for expected in ('create backing file', 'luksFormat', 'open', 'create a ext4 filesystem', 'mount',
                     'set owner/group', 'set mode', 'create Docker volume life_data'):
        assert any(s.startswith(expected) for s in steps), (expected, steps)
    assert vm.ssh('test -e /srv/luks/life.img', check=False)[0] != 0
    run = play(vm, [task], diff=True)
    assert run.rc == 0, run.stdout + run.stderr
    assert run.task('luks')['steps'] == steps  # the real run did what check mode predicted
    assert '-mounted: False' in run.stdout and '+mounted: True' in run.stdout  # diff mode: before and after
    assert '-backing_exists: False' in run.stdout and '+luks: luks2' in run.stdout
    _rc, out = vm.ssh("findmnt -n -o SOURCE,FSTYPE /srv/enc/life; stat -c '%u %g %a' /srv/enc/life; "
                      "cryptsetup status holdfast-srv-enc-life | head -2")
    assert '/dev/mapper/holdfast-srv-enc-life ext4' in out and '999 999 750' in out and 'LUKS2' in out
    vm.ssh("docker run --rm -u 999 -v life_data:/data holdfast-test/busybox:1 sh -c 'echo kept > /data/f'")
    # the data on disk is ciphertext
    assert vm.ssh("grep -c kept /srv/luks/life.img", check=False)[1].strip() in ('0', '')
    again = play(vm, [task])
    assert again.task('luks')['changed'] is False and again.task('luks')['steps'] == []
    closed = play(vm, [luks(path='/srv/enc/life', backing_file='/srv/luks/life.img', keyfile=key,
                            docker_volume='life_data', state='unmounted')])
    assert closed.rc == 0, closed.stdout
    _rc, out = vm.ssh('findmnt /srv/enc/life; ls /dev/mapper; docker volume ls -q', check=False)
    assert 'holdfast-srv-enc-life' not in out and 'life_data' not in out
    # check mode opens nothing, not even a temporary read-only mapping, to look inside the closed container
    before = guest_state(vm, '/srv/luks/life.img')
    install_vm(vm, '/root/spy', '/root/spy.log')
    dry = play(vm, [dict(task, environment={'PATH': '/root/spy:/usr/sbin:/usr/bin:/sbin:/bin'})], check=True)
    assert dry.rc == 0, dry.stdout
    assert guest_state(vm, '/srv/luks/life.img') == before
    calls = vm.ssh('cat /root/spy.log')[1].splitlines()
    assert any(c.startswith('cryptsetup open --test-passphrase') for c in calls) and forbidden(calls) == [], calls
    assert dry.task('luks')['filesystem'] == 'unknown'
    assert [s.split(' ')[0] for s in dry.task('luks')['steps']][:2] == ['open', 'mount'], dry.task('luks')['steps']
    reopened = play(vm, [task])
    assert reopened.rc == 0 and reopened.task('luks')['changed']
    assert vm.ssh("docker run --rm -v life_data:/data holdfast-test/busybox:1 cat /data/f")[1].strip() == 'kept'


def test_wrong_key_changes_nothing_and_size_rules(vm_host):
    vm = vm_host
    good = keyfile(vm, '/root/k-wrong')
    task = luks(path='/srv/enc/wrong', backing_file='/srv/luks/wrong.img', size='48M', keyfile=good)
    assert play(vm, [task]).rc == 0
    vm.ssh('umount /srv/enc/wrong && cryptsetup close holdfast-srv-enc-wrong')
    bad = keyfile(vm, '/root/k-bad')
    before = vm.ssh('md5sum /srv/luks/wrong.img; stat -c %s /srv/luks/wrong.img')[1]
    run = play(vm, [luks(path='/srv/enc/wrong', backing_file='/srv/luks/wrong.img', size='96M', keyfile=bad)])
    assert run.rc != 0 and 'does not unlock' in run.task('luks')['msg'] and 'nothing was changed' in run.task(
        'luks')['msg']
    assert vm.ssh('md5sum /srv/luks/wrong.img; stat -c %s /srv/luks/wrong.img')[1] == before
    assert 'holdfast-srv-enc-wrong' not in vm.ssh('ls /dev/mapper')[1]
    small = play(vm, [luks(path='/srv/enc/small', backing_file='/srv/luks/small.img', size='16M', keyfile=good)])
    assert small.rc != 0 and 'too small' in small.task('luks')['msg']
    shrink = play(vm, [luks(path='/srv/enc/wrong', backing_file='/srv/luks/wrong.img', size='32M', keyfile=good)])
    assert shrink.rc != 0 and 'Shrinking is not supported' in shrink.task('luks')['msg']
    vm.ssh('mkdir -p /srv/other && mount -t tmpfs tmpfs /srv/other')
    taken = play(vm, [luks(path='/srv/other', backing_file='/srv/luks/other.img', size='48M', keyfile=good)])
    assert taken.rc != 0 and 'already a mount point' in taken.task('luks')['msg']
    assert vm.ssh('test -e /srv/luks/other.img', check=False)[0] != 0
    vm.ssh('mkfs.ext4 -q -F /srv/luks/plain.img 40M 2>/dev/null || (truncate -s 40M /srv/luks/plain.img && '
           'mkfs.ext4 -q -F /srv/luks/plain.img)')
    refuse = play(vm, [luks(path='/srv/enc/plain', backing_file='/srv/luks/plain.img', keyfile=good)])
    assert refuse.rc != 0 and 'holds data' in refuse.task('luks')['msg']


def test_grow_online_with_data_intact(vm_host):
    vm = vm_host
    key = keyfile(vm, '/root/k-grow')
    base = dict(path='/srv/enc/grow', backing_file='/srv/luks/grow.img', keyfile=key)
    assert play(vm, [luks(size='48M', **base)]).rc == 0
    vm.ssh('head -c 8M /dev/urandom > /srv/enc/grow/blob && md5sum /srv/enc/grow/blob > /root/grow.md5')
    size_before = int(vm.ssh('df --output=size -B1 /srv/enc/grow | tail -1')[1])
    run = play(vm, [luks(size='112M', **base)])
    assert run.rc == 0, run.stdout
    steps = run.task('luks')['steps']
    assert any('grow backing file' in s for s in steps) and any('grow the ext4 filesystem' in s for s in steps)
    size_after = int(vm.ssh('df --output=size -B1 /srv/enc/grow | tail -1')[1])
    assert size_after > size_before + 50 * 1024 * 1024
    vm.ssh('md5sum -c /root/grow.md5')
    assert play(vm, [luks(size='112M', **base)]).task('luks')['changed'] is False


def test_key_rotation_in_one_task(vm_host):
    vm = vm_host
    old = keyfile(vm, '/root/k-rot-old')
    new = keyfile(vm, '/root/k-rot-new')
    base = dict(path='/srv/enc/rot', backing_file='/srv/luks/rot.img', size='48M')
    assert play(vm, [luks(keyfile=old, **base)]).rc == 0
    rotate = luks(keyfile=old, new_keyfile=new, remove_keyfile=old, header_backup='/root/rot.header', **base)
    run = play(vm, [rotate])
    assert run.rc == 0, run.stdout
    steps = run.task('luks')['steps']
    assert [s.split(' ')[0] for s in steps if 'key' in s][:3] == ['add', 'verify', 'remove']
    assert run.task('luks')['keyslots'] == 1
    assert vm.ssh('cryptsetup open --test-passphrase --key-file %s /srv/luks/rot.img' % old, check=False)[0] != 0
    vm.ssh('cryptsetup open --test-passphrase --key-file %s /srv/luks/rot.img' % new)
    assert vm.ssh("stat -c '%a' /root/rot.header")[1].strip() == '600'
    predicted = play(vm, [rotate], check=True)
    assert predicted.rc == 0 and predicted.task('luks')['steps'] == []  # check mode predicts the no-op exactly
    again = play(vm, [rotate])
    assert again.rc == 0 and again.task('luks')['changed'] is False
    last = play(vm, [luks(keyfile=new, remove_keyfile=new, **base)])
    assert last.rc != 0 and 'last key' in last.task('luks')['msg']


def test_absent_refused_while_in_use_then_destroyed(vm_host):
    vm = vm_host
    key = keyfile(vm, '/root/k-abs')
    base = dict(path='/srv/enc/abs', backing_file='/srv/luks/abs.img', keyfile=key, docker_volume='abs_data')
    assert play(vm, [luks(size='48M', persistent=True, **base)]).rc == 0
    vm.ssh('docker create --name abs_user -v abs_data:/data holdfast-test/busybox:1 true')
    refused = play(vm, [luks(state='absent', destroy=True, **base)])
    assert refused.rc != 0 and 'abs_user' in refused.task('luks')['msg']
    assert vm.ssh('test -e /srv/luks/abs.img', check=False)[0] == 0
    vm.ssh('docker rm abs_user')
    unconfirmed = play(vm, [luks(state='absent', **base)])
    assert unconfirmed.rc != 0 and 'destroy: true' in unconfirmed.task('luks')['msg']
    gone = play(vm, [luks(state='absent', destroy=True, **base)])
    assert gone.rc == 0, gone.stdout
    _rc, out = vm.ssh('ls /srv/luks; ls /dev/mapper; docker volume ls -q; cat /etc/crypttab /etc/fstab', check=False)
    assert 'abs.img' not in out and 'holdfast-srv-enc-abs' not in out and 'abs_data' not in out


def test_passphrase_never_leaks(vm_host):
    vm = vm_host
    secret = 'correct-horse-battery-staple-4711'
    base = dict(path='/srv/enc/pw', backing_file='/srv/luks/pw.img', size='48M', passphrase=secret,
                persistent=True)
    seen = []
    stop = threading.Event()

    def watch_processes():
        while not stop.is_set():
            proc = subprocess.run(vm.ssh_argv('ps -eo args'), capture_output=True, text=True, check=False)
            seen.append(proc.stdout)
    watcher = threading.Thread(target=watch_processes)
    watcher.start()
    try:
        run = play(vm, [luks(**base)], verbosity=3, diff=True)
    finally:
        stop.set()
        watcher.join()
    assert run.rc == 0, run.stdout[-3000:]
    assert len(seen) >= 3 and any('cryptsetup' in s or 'python3' in s for s in seen)
    assert secret not in run.stdout and secret not in run.stderr
    assert all(secret not in s for s in seen)
    rc, out = vm.ssh('grep -rls -- %s /etc /root /srv /var/log /tmp /var/tmp /run 2>/dev/null' % secret,
                     check=False)
    assert out.strip() == '', out
    crypttab = vm.ssh('cat /etc/crypttab')[1]
    assert 'holdfast-srv-enc-pw /srv/luks/pw.img none luks,nofail' in crypttab
    assert 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER' not in crypttab
    wrong_args = dict(base)
    wrong_args['passphrase'] = 'not-' + secret
    wrong = play(vm, [luks(**wrong_args)], verbosity=3)
    assert 'not-' + secret not in wrong.stdout + wrong.stderr


def test_persistence_survives_reboot_through_systemd(vm_host):
    """crypttab/fstab entries and the Docker ordering, then a real reboot through systemd."""
    vm = vm_host
    key = keyfile(vm, '/root/k-boot')
    task = luks(path='/srv/enc/boot', backing_file='/srv/luks/boot.img', size='48M', keyfile=key,
                docker_volume='boot_data', persistent=True)
    run = play(vm, [task])
    assert run.rc == 0, run.stdout
    crypttab = vm.ssh('cat /etc/crypttab')[1]
    fstab = vm.ssh('cat /etc/fstab')[1]
    assert 'holdfast-srv-enc-boot /srv/luks/boot.img %s luks,nofail' % key in crypttab
    assert '/dev/mapper/holdfast-srv-enc-boot /srv/enc/boot ext4 defaults,nofail 0 2' in fstab
    dropin = vm.ssh('cat /etc/systemd/system/docker.service.d/holdfast-srv-enc-boot.conf')[1]
    assert 'RequiresMountsFor=/srv/enc/boot' in dropin
    vm.ssh("docker run --rm -v boot_data:/data holdfast-test/busybox:1 sh -c 'echo across-reboot > /data/f'")
    vm.boot_systemd(reboot=True)
    _rc, out = vm.ssh('findmnt -n -o SOURCE /srv/enc/boot; ps -p 1 -o comm=')
    assert '/dev/mapper/holdfast-srv-enc-boot' in out and 'systemd' in out
    assert vm.ssh('docker run --rm -v boot_data:/data holdfast-test/busybox:1 cat /data/f')[1].strip() == \
        'across-reboot'
    again = play(vm, [task])
    assert again.rc == 0 and again.task('luks')['changed'] is False
