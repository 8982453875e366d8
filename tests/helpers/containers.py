# -*- coding: utf-8 -*-
"""Run a command in a throwaway container of the local test image, with a volume at /data."""

from __future__ import annotations

TEST_IMAGE = 'holdfast-test/busybox:1'


def run_in_container(client, volume, command, uid=None):
    """Returns (exit code, output). uid: run as uid:uid instead of root."""
    kwargs = dict(user='%d:%d' % (uid, uid)) if uid is not None else {}
    container = client.create_container(TEST_IMAGE, command=['sh', '-c', command],
                                        host_config=client.create_host_config(binds={volume: {'bind': '/data'}}),
                                        **kwargs)
    try:
        client.start(container)
        code = client.wait(container)
        code = code.get('StatusCode') if isinstance(code, dict) else code
        return code, client.logs(container).decode()
    finally:
        client.remove_container(container, force=True)
