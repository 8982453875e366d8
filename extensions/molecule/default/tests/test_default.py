# -*- coding: utf-8 -*-
"""Verify the default scenario with testinfra, on the host the scenario converged."""

import json


def inspect(host, name):
    return json.loads(host.check_output('docker volume inspect %s' % name))[0]


def test_volumes_exist_with_labels(host):
    for name in ('molecule_db', 'molecule_config'):
        assert inspect(host, name)['Labels'] == {'managed-by': 'holdfast-molecule'}


def test_database_volume_owned_by_postgres_uid(host):
    root = host.file(inspect(host, 'molecule_db')['Mountpoint'])
    assert root.uid == 999 and root.gid == 999 and root.mode == 0o700


def test_config_volume_seeded(host):
    conf = host.file(inspect(host, 'molecule_config')['Mountpoint'] + '/settings.conf')
    assert conf.content_string == 'molecule=yes\n' and conf.uid == 1000
