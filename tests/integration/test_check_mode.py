# -*- coding: utf-8 -*-
"""Check mode changes nothing: every module and the site, backup and restore playbooks run in check mode against a
host with data, a running container, engine-route volumes, a closed LUKS container and backups, and the host is
compared before and after: images, containers (and their start times), volumes, device
mappings, loop devices, mounts, and every touched directory and file, byte for byte. The helper image is removed
first, so that building it would be noticed; the Engine's events show any container run or image built and removed
again within the run; and a spy in front of the system tools (cryptsetup, losetup, mount, mkfs, ...) shows any
command that changes the host. Where a prediction needs what check mode may not do, the result says 'unknown'.
The VM tier checks the same for a closed LUKS container in a kernel with dm-crypt (test_luks_vm.py). The check mode
of the backup role's schedule is tested in test_schedule.py."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import time

import pytest
import yaml
from ansible_runner import run_named_playbook, run_playbook
from spy import forbidden, install_local
from trees import snapshot

HELPER_IMAGE = 'holdfast/volume-helper:empty'
TEST_IMAGE = 'holdfast-test/busybox:1'
MARKERS = '/var/lib/holdfast-volumes/restored'
SYSTEM_FILES = ['/etc/crypttab', '/etc/fstab', '/etc/cron.d/holdfast-backup',
                '/etc/systemd/system/holdfast-backup.service', '/etc/systemd/system/holdfast-backup.timer']


def file_state(path):
    if os.path.isdir(path):
        return sorted((name, file_state(os.path.join(path, name))) for name in os.listdir(path))
    try:
        with open(path, 'rb') as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except FileNotFoundError:
        return None


def marker(key):
    return os.path.join(MARKERS, hashlib.sha256(key.encode('utf-8')).hexdigest()[:24] + '.json')


def host_state(client, prefix, roots, files):
    """Everything check mode must leave as it was."""
    volumes = sorted((v['Name'], v.get('Driver'), json.dumps(v.get('Labels'), sort_keys=True),
                      json.dumps(v.get('Options'), sort_keys=True))
                     for v in (client.volumes() or {}).get('Volumes') or [] if v['Name'].startswith(prefix))
    containers = []
    for c in client.containers(all=True):
        mounts = [m.get('Name') for m in c.get('Mounts') or []]
        if any(n.lstrip('/').startswith(prefix) for n in c.get('Names') or []) or \
                any((m or '').startswith(prefix) for m in mounts):
            state = client.inspect_container(c['Id'])['State']
            containers.append((c['Id'], tuple(c.get('Names') or []), state['Status'], state['StartedAt'],
                               state['FinishedAt']))
    images = sorted((i['Id'], tuple(sorted(i.get('RepoTags') or []))) for i in client.images(all=True)
                    if any(t.startswith('holdfast/') for t in i.get('RepoTags') or []))
    dm = subprocess.run(['dmsetup', 'ls'], capture_output=True, text=True, check=False)
    loops = subprocess.run(['losetup', '--list', '--noheadings', '--output', 'NAME,BACK-FILE'], capture_output=True,
                           text=True, check=False).stdout.split('\n')
    with open('/proc/self/mountinfo') as handle:
        mounts = sorted(line.split()[4] for line in handle)
    return dict(
        volumes=volumes, containers=sorted(containers), images=images,
        device_mappings=(dm.returncode, dm.stdout, sorted(glob.glob('/sys/block/dm-*'))),
        loops=sorted(line for line in loops if any(str(r) in line for r in roots)),
        mounts=[m for m in mounts if any(m.startswith(str(r)) for r in roots)],
        trees=dict((str(r), snapshot(str(r)) if os.path.exists(str(r)) else None) for r in roots),
        files=dict((f, file_state(f)) for f in files))


def remove_helper_image(client):
    """So that a check run that builds it is noticed. Only the tag goes; an image in use stays for its users."""
    for _attempt in range(5):
        try:
            client.inspect_image(HELPER_IMAGE)
        except Exception:
            return
        try:
            client.remove_image(HELPER_IMAGE, force=True, noprune=True)
        except Exception:
            time.sleep(1)
    pytest.fail('the helper image %s could not be removed before the check' % HELPER_IMAGE)


def event_marker(client, name):
    """Leave a mark in the Engine's event stream (a volume created and removed at once). The stream is ordered,
    so the marks bound the window exactly; timestamps would not (a fresh machine's clock may still be stepped by
    time sync while the scene is built, and events of the scene then fall inside a window of seconds)."""
    client.create_volume(name)
    client.remove_volume(name)


def engine_events(client, since, volumes, start, end):
    """Events of the Engine between the marks `start` and `end` that show an action: a helper image built (or
    tagged, removed), a container started with one of our volumes, one of our volumes created, mounted or
    removed."""
    seen, inside, marks = [], False, []
    for event in client.events(since=since, until=int(time.time()) + 1, decode=True):
        kind, action = event.get('Type'), event.get('Action') or ''
        actor = event.get('Actor') or {}
        attrs = actor.get('Attributes') or {}
        if kind == 'volume' and action == 'create' and actor.get('ID') in (start, end):
            inside = actor.get('ID') == start
            marks.append(actor.get('ID'))
            continue
        if not inside:
            continue
        if kind == 'image' and ('holdfast/volume-helper' in (attrs.get('name') or '') or
                                'holdfast/volume-helper' in (actor.get('ID') or '')):
            seen.append((kind, action, attrs.get('name') or actor.get('ID')))
        elif kind == 'volume' and actor.get('ID') in volumes:
            seen.append((kind, action, actor.get('ID')))
        elif kind == 'container' and (attrs.get('name') or '').startswith(tuple(volumes)):
            seen.append((kind, action, attrs.get('name')))
    # both marks seen, in order: the window really covered the check runs (not lost to a clock step or to the
    # Engine's bounded event buffer)
    assert marks == [start, end], marks
    return seen


@pytest.fixture
def scene(docker_client, prefix, tmp_path, loop_volume_factory):
    """A host with something for every module to look at."""
    client = docker_client
    vols = dict(data=prefix + '_data', empty=prefix + '_empty', engine=loop_volume_factory('eng'),
                new=prefix + '_new', copy=prefix + '_copy', luks=prefix + '_luks')
    client.create_volume(vols['data'], labels={'app': prefix})
    client.create_volume(vols['empty'], labels={'app': prefix})
    data = client.inspect_volume(vols['data'])['Mountpoint']
    os.makedirs(os.path.join(data, 'db'))
    with open(os.path.join(data, 'db', 'table'), 'wb') as handle:
        handle.write(os.urandom(50000))
    os.chown(os.path.join(data, 'db', 'table'), 999, 999)
    host_dir = tmp_path / 'hostdir'
    (host_dir / 'sub').mkdir(parents=True)
    (host_dir / 'sub' / 'file').write_text('host data\n')
    seed = tmp_path / 'seed'
    (seed / 'conf').mkdir(parents=True)
    (seed / 'conf' / 'app.ini').write_text('[app]\n')
    app = client.create_container(TEST_IMAGE, command=['sleep', '3600'], name=prefix + '_app',
                                  host_config=client.create_host_config(binds={vols['data']: {'bind': '/data'}}))
    client.start(app['Id'])
    backups = tmp_path / 'backups'
    made = run_playbook([
        {'name': 'backup', 'holdfast.volumes.volume_backup': {'volume': vols['data'], 'dest': str(backups)}},
        {'name': 'backup path', 'holdfast.volumes.volume_backup': {'path': str(host_dir), 'dest': str(backups)}}])
    assert made.rc == 0, made.stdout
    # the manifests carry the collection's version as galaxy.yml says it
    galaxy = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), '..', '..', 'galaxy.yml')))
    assert json.load(open(made.task('backup')['manifest']))['collection_version'] == galaxy['version']
    key = tmp_path / 'luks.key'
    key.write_bytes(os.urandom(64))
    os.chmod(key, 0o600)
    luks_file = tmp_path / 'luks' / 'closed.img'
    luks_file.parent.mkdir()
    subprocess.run(['truncate', '-s', '32M', str(luks_file)], check=True)
    subprocess.run(['cryptsetup', 'luksFormat', '--batch-mode', '--type', 'luks2', '--pbkdf', 'pbkdf2',
                    '--pbkdf-force-iterations', '1000', '--key-file', str(key), str(luks_file)], check=True)
    return dict(vols=vols, host_dir=host_dir, seed=seed, backups=backups, key=key, luks_file=luks_file,
                data=data, tmp=tmp_path)


def every_module(s, prefix):
    v = s['vols']
    tmp = s['tmp']
    seed = str(s['seed'])
    dest = str(s['backups'])
    data_backup = sorted(glob.glob(os.path.join(dest, v['data'], '*.tar.zst')))[-1]
    # one task per module and route that the playbooks below do not cover
    tasks = [
        ('info', 'volume_info', dict(names=[v['data'], v['engine']], usage=True, containers=True)),
        ('perms engine', 'volume_permissions', dict(volume=v['engine'], owner=999, group=999, mode='0700')),
        ('perms path', 'volume_permissions', dict(path=str(s['host_dir']), owner=1234, recurse=True)),
        ('seed engine', 'volume_seed', dict(volume=v['engine'], src=seed)),
        ('luks closed', 'luks_path', dict(path=str(tmp / 'mnt' / 'closed'), backing_file=str(s['luks_file']),
                                          keyfile=str(s['key']), size='48M', owner=999, mode='0700',
                                          docker_volume=v['luks'], persistent=True,
                                          header_backup=str(tmp / 'closed.header'))),
        ('luks new', 'luks_path', dict(path=str(tmp / 'mnt' / 'new'), backing_file=str(tmp / 'luks' / 'new.img'),
                                       size='32M', keyfile=str(s['key']), pbkdf='pbkdf2', pbkdf_iter_time=100)),
        ('luks absent', 'luks_path', dict(path=str(tmp / 'mnt' / 'closed'), backing_file=str(s['luks_file']),
                                          state='absent', destroy=True)),
        ('backup path', 'volume_backup', dict(path=str(s['host_dir']), dest=dest)),
        ('restore new', 'volume_restore', dict(dest=dest, source=v['data'], volume=v['copy'])),
        ('restore engine', 'volume_restore', dict(archive=data_backup, volume=v['engine'])),
        ('restore path', 'volume_restore', dict(dest=dest, source=str(s['host_dir']),
                                                path=str(tmp / 'restored-dir'))),
        ('backup info', 'backup_info', dict(dest=dest)),
    ]
    return [{'name': name, 'holdfast.volumes.%s' % module: args} for name, module, args in tasks]


def model(s, prefix):
    v = s['vols']
    return [
        {'name': v['data'], 'labels': {'app': prefix}, 'owner': 999, 'group': 999, 'mode': '0700',
         'backup': {'dest': str(s['backups']), 'quiesce': 'stop', 'retention': {'keep_last': 1}}},
        {'name': v['empty'], 'labels': {'app': prefix}, 'seed': {'src': str(s['seed']), 'owner': 1000}},
        {'name': v['engine'], 'seed': {'src': str(s['seed'])}},
        {'name': v['new'], 'labels': {'app': prefix}, 'owner': 999},
    ]


def test_check_mode_changes_nothing(docker_client, prefix, scene, tmp_path):
    client = docker_client
    spy_dir, spy_log = str(tmp_path / 'spy' / 'bin'), str(tmp_path / 'spy' / 'calls.log')
    install_local(spy_dir, spy_log, shutil.which)
    env = {'PATH': '%s:%s' % (spy_dir, os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin'))}
    v = scene['vols']
    roots = [tmp_path / name for name in ('hostdir', 'seed', 'backups', 'luks', 'mnt', 'restored-dir',
                                          'closed.header', 'luks.key')]
    roots += [client.inspect_volume(v['data'])['Mountpoint'], client.inspect_volume(v['empty'])['Mountpoint'],
              os.path.dirname(client.inspect_volume(v['data'])['Mountpoint'])]
    files = SYSTEM_FILES + [marker('volume:%s' % name) for name in v.values()] + \
        [marker('path:%s' % (tmp_path / 'restored-dir')), '/etc/systemd/system/docker.service.d']
    extra = {'holdfast_volumes': model(scene, prefix), 'holdfast_volumes_install_dependencies': False,
             'holdfast_volumes_exclusive': {'app': prefix}, 'holdfast_restore_replace': True,
             'holdfast_restore_quiesce': 'stop'}

    remove_helper_image(client)
    before = host_state(client, prefix, roots, files)
    since = int(time.time()) - 120
    event_marker(client, prefix + '_mark_start')
    modules = run_playbook([dict(task, environment=env) for task in every_module(scene, prefix)], check=True,
                           diff=True, env=env)
    playbooks = {}
    for name in ('site', 'backup', 'restore'):
        playbooks[name] = run_named_playbook('holdfast.volumes.%s' % name, extra, check=True)
    after = host_state(client, prefix, roots, files)
    event_marker(client, prefix + '_mark_end')
    events = engine_events(client, since, set(v.values()), prefix + '_mark_start', prefix + '_mark_end')

    # nothing changed
    for key in before:
        assert after[key] == before[key], key
    assert events == [], events
    calls = open(spy_log).read().splitlines() if os.path.exists(spy_log) else []
    assert any(c.startswith('cryptsetup luksDump') for c in calls), calls  # the spy saw the module's calls
    assert forbidden(calls) == [], calls

    # every task ran, and predicted
    assert modules.rc == 0, modules.stdout + modules.stderr
    for name, run in playbooks.items():
        assert run.rc == 0, (name, run.stdout + run.stderr)
        assert 'failed=0' in run.stdout and 'rescued=0' in run.stdout, (name, run.stdout)
    site, backup, restore = playbooks['site'], playbooks['backup'], playbooks['restore']
    assert site.task('holdfast.volumes.volumes : Converge the volumes (one engine listing for all of them)')[
        'changed']
    seeds = site.task('holdfast.volumes.volumes : Seed empty volumes')['results']
    assert [(r['item']['name'], r['seeded']) for r in seeds] == [(v['empty'], True), (v['engine'], 'unknown')], seeds
    backups = backup.task('holdfast.volumes.backup : Back up every volume that has a backup policy')['results']
    assert backups[0]['would_quiesce'] == [prefix + '_app']
    restores = restore.task('holdfast.volumes.restore : Restore from the newest complete backup')['results']
    assert restores[0]['target_empty'] is False and restores[0]['changed']
    # where looking would need an action, the result says so instead of acting
    assert modules.task('seed engine')['seeded'] == 'unknown'
    assert modules.task('restore engine')['target_empty'] == 'unknown'
    assert modules.task('perms engine')['changed_owner'] == 'unknown'
    assert modules.task('luks closed')['filesystem'] == 'unknown'
    assert not any(s.startswith('create a') for s in modules.task('luks closed')['steps'])
    assert modules.task('luks new')['filesystem'] == 'ext4'
