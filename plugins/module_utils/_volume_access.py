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
  put_archive writes one. Work that needs a shell inside the volume (find, chown,
  chmod) runs in a container of a second local image, built from the host's
  static busybox.

Both helper images, their mount point and their label are defined here and only here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import io
import os
import struct
import tarfile
import uuid
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
BUSYBOX_TAG = 'busybox'
BUSYBOX_IMAGE = '%s:%s' % (HELPER_REPOSITORY, BUSYBOX_TAG)
BUSYBOX_APPLETS = ('sh', 'find', 'chown', 'chmod', 'wc', 'xargs', 'cat', 'ls', 'tar', 'stat', 'cp', 'mkdir')
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
    try:
        entries = os.scandir(path)
    except FileNotFoundError:
        return True  # a file, a symlink loop or an unreadable directory raise: never "empty" by accident
    with entries:
        for entry in entries:
            if entry.name == 'lost+found' and entry.is_dir(follow_symlinks=False):
                with os.scandir(entry.path) as inner:
                    if any(True for _entry in inner):
                        return False
                continue
            return False
    return True


def is_static_elf(path):
    """True for a 64-bit ELF executable without a program interpreter (statically linked)."""
    try:
        with open(path, 'rb') as handle:
            head = handle.read(64)
            if head[:4] != b'\x7fELF' or head[4] != 2:
                return False
            phoff, = struct.unpack_from('<Q', head, 32)
            phentsize, phnum = struct.unpack_from('<HH', head, 54)
            handle.seek(phoff)
            for _index in range(phnum):
                ph = handle.read(phentsize)
                if struct.unpack_from('<I', ph, 0)[0] == 3:  # PT_INTERP
                    return False
            return True
    except (OSError, struct.error):
        return False


def busybox_rootfs(busybox):
    """A tar of /bin/busybox (owned by root) and symlinks for the applets the helper scripts use."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w') as tar:
        info = tar.gettarinfo(busybox, arcname='bin/busybox')
        info.uid = info.gid = 0
        with open(busybox, 'rb') as handle:
            tar.addfile(info, handle)
        for applet in BUSYBOX_APPLETS:
            link = tarfile.TarInfo('bin/' + applet)
            link.type = tarfile.SYMTYPE
            link.linkname = 'busybox'
            tar.addfile(link)
    return buf.getvalue()


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
    def helper_image_present(self, image=HELPER_IMAGE):
        try:
            self.client.inspect_image(image)
            return True
        except NotFound:
            return False
        except (DockerException, APIError) as exc:
            raise api_error('inspect the helper image %s' % image, exc) from exc

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
    def helper_container(self, volume_name, image=HELPER_IMAGE, read_only=False, command=None, user=None):
        """A created container of a helper image with the volume at MOUNT_POINT, labelled HELPER_LABEL=<volume>,
        without a network; removed (forced) afterwards. Yields its id. The caller starts it, or never does."""
        try:
            host_config = self.client.create_host_config(
                binds={volume_name: {'bind': MOUNT_POINT, 'mode': 'ro' if read_only else 'rw'}})
            container = self.client.create_container(
                image, command=command or ['/holdfast-never-started'], host_config=host_config, user=user,
                labels={HELPER_LABEL: volume_name}, network_disabled=True)
        except (DockerException, APIError) as exc:
            raise api_error('create a helper container from %s for volume %s' % (image, volume_name), exc) from exc
        try:
            yield container['Id']
        finally:
            try:
                self.client.remove_container(container['Id'], force=True)
            except (DockerException, APIError):
                pass

    @contextmanager
    def engine_mount(self, volume_name, read_only=False):
        """A created (never started) container of the empty image with the volume at MOUNT_POINT."""
        self.ensure_helper_image()
        with self.helper_container(volume_name, read_only=read_only) as cid:
            yield cid

    def run_shell(self, volume_name, script, image, read_only=False):
        """Run a shell script as root in a helper container of `image` (one with sh) with the volume at MOUNT_POINT;
        returns (exit code, output)."""
        with self.helper_container(volume_name, image=image, read_only=read_only, command=['sh', '-c', script],
                                   user='0:0') as cid:
            try:
                self.client.start(cid)
                code = self.client.wait(cid)
                code = code.get('StatusCode') if isinstance(code, dict) else code
                logs = self.client.logs(cid, stdout=True, stderr=True).decode('utf-8', 'replace')
            except (DockerException, APIError) as exc:
                raise api_error('run the helper container', exc) from exc
        return code, logs

    def ensure_busybox_image(self, check_mode=False):
        """The shell helper image, built locally from the host's static busybox (no registry). Returns (name,
        temporary). In check mode a missing image is built under a throwaway tag that the caller removes afterwards
        (remove_image), so that check mode predicts exactly and leaves the host as it was."""
        if self.helper_image_present(BUSYBOX_IMAGE):
            return BUSYBOX_IMAGE, False
        busybox = next((p for p in ('/bin/busybox', '/usr/bin/busybox') if is_static_elf(p)), None)
        if not busybox:
            raise HoldfastError("This volume is reached through the Engine and needs a helper container with a "
                                "shell: set helper_image to a local image that has sh, find, chown and chmod (e.g. "
                                "busybox), or install busybox-static on the host (apt-get install busybox-static) "
                                "so that one is built locally.")
        tag = 'check-%s' % uuid.uuid4().hex[:12] if check_mode else BUSYBOX_TAG
        try:
            self.client.import_image_from_data(busybox_rootfs(busybox), repository=HELPER_REPOSITORY, tag=tag,
                                               changes=['ENV PATH=/bin'])
        except (DockerException, APIError) as exc:
            raise api_error('import the busybox helper image', exc) from exc
        return '%s:%s' % (HELPER_REPOSITORY, tag), check_mode

    def remove_image(self, image):
        """Best effort: our own throwaway tag of a check run."""
        try:
            self.client.remove_image(image, force=True)
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
