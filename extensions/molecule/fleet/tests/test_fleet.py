# -*- coding: utf-8 -*-
"""Verify the fleet scenario with testinfra, on every VM host: the encrypted and the plain volume after the
backup, the disaster and the restore (vm2's from the backup server), byte for byte; the backups, local and on the
backup server, verified and restorable with plain tar; the report."""

import json
import os

import testinfra

EPHEMERAL = os.environ['MOLECULE_EPHEMERAL_DIRECTORY']
REPORT = os.path.join(EPHEMERAL, 'report')
SERVER, OFFSITE = 'vm1', '/srv/holdfast-offsite'  # group_vars: holdfast_fleet_backup_server, the remote's path
LOST = 'vm2'  # lost its local backups too; restored from the backup server


def server_of(host):
    return testinfra.get_host('ansible://' + SERVER, ansible_inventory=host.backend.ansible_inventory,
                              force_ansible=host.backend.force_ansible)


def test_restored_byte_for_byte(host):
    before = host.file('/root/holdfast-before.txt').content_string
    after = host.check_output('holdfast-fleet-record')
    assert after.strip() == before.strip()
    assert host.file('/srv/holdfast-enc/fleet_db/base/16384/2619').size == 3000000
    # the record is not trivially empty: the random file, the symlink, the hard link and the upload are in it
    assert './base/16384/2619 f 999:999 600 ' in before
    assert './current l 999:999 777 base/16384/2619' in before
    assert './uploads/photo.jpg f 1000:1000' in before
    assert host.file('/srv/holdfast-enc/fleet_db/PG_VERSION').content_string.strip() == host.backend.get_hostname()
    assert host.check_output('stat -c %h /srv/holdfast-enc/fleet_db/PG_VERSION') == '2'  # the hard link survived


def test_database_volume_lives_on_an_open_luks_container(host):
    mount = host.check_output('findmnt -n -o SOURCE /srv/holdfast-enc/fleet_db')
    assert mount.startswith('/dev/mapper/')
    assert host.run('cryptsetup isLuks /srv/holdfast-luks/fleet_db.img').rc == 0
    assert 'fleet_db.img' in host.file('/etc/crypttab').content_string
    opts = json.loads(host.check_output('docker volume inspect fleet_db'))[0]['Options']
    assert opts['device'] == '/srv/holdfast-enc/fleet_db' and 'bind' in opts['o']
    key = host.file('/etc/holdfast/keys/fleet_db.key')
    assert key.mode == 0o600 and key.size == 64


def test_plain_volume_recreated_with_labels_and_seed(host):
    vol = json.loads(host.check_output('docker volume inspect fleet_files'))[0]
    assert vol['Labels'] == {'managed-by': 'holdfast-fleet'}
    app = host.file(vol['Mountpoint'] + '/conf/app.ini')
    assert app.content_string == '[app]\nport = 8080\n' and app.uid == 1000


def test_replacement_host_took_over_vm2s_files(host):
    """vm3 restored vm2's file volume from the backup server under a new name; vm1 and vm2 have no such volume."""
    found = host.run('docker volume inspect fleet_files_from_vm2')
    if host.backend.get_hostname() != 'vm3':
        assert found.rc != 0
        return
    vol = json.loads(found.stdout)[0]
    # restored under another name: labelled with its source, not with vm2's labels (which would match exclusive)
    assert vol['Labels'] == {'io.holdfast.volumes.restored-from': 'fleet_files'}
    assert host.file(vol['Mountpoint'] + '/conf/app.ini').uid == 1000
    assert host.file(vol['Mountpoint'] + '/uploads/photo.jpg').size == 200000


def test_backups_restorable_with_plain_tar(host):
    if host.backend.get_hostname() == LOST:
        assert host.check_output('ls -A /srv/holdfast-backups') == ''  # lost; the store starts empty again
        return
    for volume in ('fleet_db', 'fleet_files'):
        archives = host.check_output('ls /srv/holdfast-backups/%s/*.tar.zst' % volume).split()
        assert len(archives) == 1
        manifest = json.loads(host.file(archives[0][:-len('.tar.zst')] + '.manifest.json').content_string)
        listing = host.check_output('tar --zstd -tvf %s' % archives[0])
        # one line per member, plus the volume's root directory "./"
        assert len([line for line in listing.splitlines() if line.strip()]) == manifest['file_count'] + 1
    assert 'base/16384/2619' in host.check_output('tar --zstd -tf /srv/holdfast-backups/fleet_db/*.tar.zst')


def test_offsite_copies_verified_on_the_backup_server(host):
    """backup_sync verified each copy by the md5 the server computed (rclone runs md5sum through the backup user's
    shell); here the server's files are checked again, independently: sha256 against the manifest (and against the
    host's own archive where it still has one), and a listing with plain tar."""
    name = host.backend.get_hostname()
    with open(os.path.join(EPHEMERAL, 'offsite-%s.json' % name)) as handle:
        copied = json.load(handle)
    assert sorted(c['volume'] for c in copied) == ['fleet_db', 'fleet_files']
    assert all(c['verified_by'] == 'remote md5' for c in copied), copied
    server = server_of(host)
    for entry in copied:
        folder = '%s/%s/%s' % (OFFSITE, name, entry['volume'])
        assert sorted(server.check_output('ls %s' % folder).split()) == sorted(
            [entry['archive'], entry['archive'][:-len('.tar.zst')] + '.manifest.json'])
        archive = '%s/%s' % (folder, entry['archive'])
        manifest = json.loads(server.file(archive[:-len('.tar.zst')] + '.manifest.json').content_string)
        on_server = server.check_output('sha256sum %s' % archive).split()[0]
        assert on_server == manifest['sha256'] == entry['sha256']
        assert server.file(archive).user == 'fleetbak'
        if name != LOST:
            assert host.check_output('sha256sum /srv/holdfast-backups/%s/%s' % (entry['volume'], entry['archive'])
                                     ).split()[0] == on_server
        listing = server.check_output('tar --zstd -tf %s' % archive)
        assert len([line for line in listing.splitlines() if line.strip()]) == manifest['file_count'] + 1


def test_report_covers_this_host(host):
    report = json.load(open(os.path.join(REPORT, 'holdfast-report.json')))
    assert sorted(h['host'] for h in report['hosts']) == ['vm1', 'vm2', 'vm3']
    mine = [h for h in report['hosts'] if h['host'] == host.backend.get_hostname()][0]
    assert mine['ok'] and mine['stale'] == [] and mine['unverified'] == []
    assert {'fleet_db', 'fleet_files'} <= {v['Name'] for v in mine['volumes']}
    # judged from the guest's device stack (sysfs), not from the model
    # (vm1 is shared with the VM tests, whose own encrypted volumes may be there too)
    assert 'fleet_db' in mine['encrypted_at_rest'] and 'fleet_files' not in mine['encrypted_at_rest']
    assert mine['not_encrypted_as_declared'] == []
    db = [v for v in mine['volumes'] if v['Name'] == 'fleet_db'][0]
    assert db['at_rest']['layers'][0]['type'] == 'LUKS2' and db['at_rest']['source'].startswith('/dev/mapper/')
    files = [v for v in mine['volumes'] if v['Name'] == 'fleet_files'][0]
    assert files['at_rest']['encrypted'] is False
    backed = dict((b['volume'], b) for b in mine['backups'])
    if host.backend.get_hostname() == LOST:  # its local store is gone: the copies are on the backup server only
        assert backed == {}
    else:
        assert backed['fleet_db']['count'] == 1 and backed['fleet_db']['newest']['verified']
    html = open(os.path.join(REPORT, 'holdfast-report.html')).read()
    assert host.backend.get_hostname() in html and 'fleet_db' in html
