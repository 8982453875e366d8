# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How to reach a volume's files: the one place that decides.

Two routes:
- host: a local-driver volume of an engine on this host whose data sits in a
  plain directory (its Mountpoint, or the device of a `type=none,o=bind` volume).
  Fast: we work on the directory directly.
- engine: everything else (other drivers, local volumes with tmpfs/nfs/cifs
  options, a remote engine). We create, never start, a container from an image
  that holds no files at all (built locally with `docker import` of an empty tar,
  so nothing is pulled from a registry) and use the Engine's archive API, which
  mounts the volume for the copy: get_archive reads a tar stream of the content,
  put_archive writes one.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import io
import os
import tarfile
from contextlib import contextmanager

from ansible_collections.holdfast.volumes.plugins.module_utils._docker_common import (
    APIError,
    DockerException,
    NotFound,
    api_error,
    is_local_engine,
)
from ansible_collections.holdfast.volumes.plugins.module_utils._errors import HoldfastError

HELPER_REPOSITORY = 'holdfast/volume-helper'
HELPER_TAG = 'empty'
HELPER_IMAGE = '%s:%s' % (HELPER_REPOSITORY, HELPER_TAG)
HELPER_LABEL = 'io.holdfast.volumes.helper'
MOUNT_POINT = '/holdfast-data'


def host_data_path(vol):
    """Pure: the host directory holding a volume's data, or None if it is not a plain directory."""
    if (vol.get('Driver') or 'local') != 'local':
        return None
    opts = vol.get('Options') or {}
    vtype = opts.get('type')
    if not vtype:
        return vol.get('Mountpoint') or None
    if vtype == 'none' and 'bind' in (opts.get('o') or '').split(','):
        return opts.get('device') or None
    return None


def one_volume_or_path(params, role='target'):
    """Exactly one of volume (a Docker volume) and path (a host directory) must be given; role names it."""
    if bool(params.get('volume')) == bool(params.get('path')):
        raise HoldfastError("Give exactly one %s: volume (a Docker volume) or path (a host directory)." % role)


def dir_is_empty(path):
    """True when a directory holds nothing but, at most, an empty lost+found (a fresh ext4 filesystem's root);
    also True when there is no directory at all (nothing would be lost)."""
    if not os.path.isdir(path):
        return True
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.name == 'lost+found' and entry.is_dir(follow_symlinks=False):
                with os.scandir(entry.path) as inner:
                    if any(True for _entry in inner):
                        return False
                continue
            return False
    return True


class VolumeAccess(object):
    """Decides the route for a volume and offers the operations built on it."""

    def __init__(self, client, docker_host=None):
        self.client = client
        self.local_engine = is_local_engine(docker_host)

    def route(self, vol):
        path = self.host_path(vol)
        return ('host', path) if path else ('engine', None)

    def host_path(self, vol):
        if not self.local_engine:
            return None
        path = host_data_path(vol)
        if path and os.path.isdir(path):
            return path
        return None

    # -- the engine route -------------------------------------------------
    def helper_image_present(self):
        try:
            self.client.inspect_image(HELPER_IMAGE)
            return True
        except NotFound:
            return False
        except (DockerException, APIError) as exc:
            raise api_error('inspect the helper image %s' % HELPER_IMAGE, exc) from exc

    def ensure_helper_image(self):
        if self.helper_image_present():
            return False
        buf = io.BytesIO()
        tarfile.open(fileobj=buf, mode='w').close()
        try:
            self.client.import_image_from_data(buf.getvalue(), repository=HELPER_REPOSITORY, tag=HELPER_TAG)
        except (DockerException, APIError) as exc:
            raise api_error('import the empty helper image %s' % HELPER_IMAGE, exc) from exc
        return True

    @contextmanager
    def engine_mount(self, volume_name, read_only=False):
        """A created (never started) container with the volume at MOUNT_POINT; removed afterwards."""
        self.ensure_helper_image()
        try:
            host_config = self.client.create_host_config(
                binds={volume_name: {'bind': MOUNT_POINT, 'mode': 'ro' if read_only else 'rw'}})
            container = self.client.create_container(
                HELPER_IMAGE, command=['/holdfast-never-started'], host_config=host_config,
                labels={HELPER_LABEL: 'true'}, network_disabled=True)
        except (DockerException, APIError) as exc:
            raise api_error('create a helper container for volume %s' % volume_name, exc) from exc
        try:
            yield container['Id']
        finally:
            try:
                self.client.remove_container(container['Id'], force=True)
            except (DockerException, APIError):
                pass

    def engine_read_stream(self, container_id):
        """An iterator of tar bytes of the volume content (members under './')."""
        try:
            stream, _stat = self.client.get_archive(container_id, MOUNT_POINT + '/.')
        except (DockerException, APIError) as exc:
            raise api_error('read the volume through the Engine', exc) from exc
        return stream

    def engine_write(self, container_id, data):
        try:
            ok = self.client.put_archive(container_id, MOUNT_POINT, data)
        except (DockerException, APIError) as exc:
            raise api_error('write into the volume through the Engine', exc) from exc
        if not ok:
            raise HoldfastError("The Docker Engine did not accept the archive written into the volume.")

    # -- operations -------------------------------------------------------
    def is_empty(self, vol, check_mode=False):
        """True when the volume holds no entries at all (hidden files count as data).

        In check mode, None (unknown) when reading needs the helper image and it does not exist yet: building it
        would change the host. With the image, a created, never started container is only a read, removed again.
        """
        route, path = self.route(vol)
        if route == 'host':
            return dir_is_empty(path)
        if check_mode and not self.helper_image_present():
            return None
        with self.engine_mount(vol['Name'], read_only=True) as cid:
            stream = self.engine_read_stream(cid)
            reader = IterReader(stream)
            with tarfile.open(fileobj=reader, mode='r|') as tar:
                for member in tar:
                    name = member.name.rstrip('/')
                    if name in ('.', ''):
                        continue
                    if name in ('./lost+found', 'lost+found') and member.isdir():
                        continue  # an ext4 root's own directory; anything inside it shows up as data below
                    return False
        return True


class IterReader(io.RawIOBase):
    """A file-like object over an iterator of bytes (the SDK's archive stream)."""

    def __init__(self, iterator):
        super(IterReader, self).__init__()
        self._it = iter(iterator)
        self._buf = b''

    def readable(self):
        return True

    def readinto(self, b):
        while not self._buf:
            try:
                self._buf = next(self._it)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n
