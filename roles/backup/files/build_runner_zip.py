# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pack the collection's module_utils into one zip that Python imports from (zipimport), for the scheduled
runner on the hosts: one file to copy instead of one per helper. The zip is byte-for-byte the same for the same
sources (sorted names, fixed timestamps), so copying it again changes nothing.

    python3 build_runner_zip.py PLUGINS_MODULE_UTILS_DIR OUT.zip

The host runs this code as root, so the zip is built only in a private directory (the role makes one with
mkdtemp): one that another user could write is refused, and the file is created new (O_EXCL, never through a
symlink).
"""

import os
import stat
import sys
import zipfile

PACKAGE = 'ansible_collections/holdfast/volumes/plugins/module_utils'
STAMP = (1980, 1, 1, 0, 0, 0)


def add(archive, name, data):
    info = zipfile.ZipInfo(name, STAMP)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def main(src, out):
    parts = PACKAGE.split('/')
    folder = os.path.dirname(os.path.abspath(out))
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        sys.exit("build_runner_zip: %s must be a private directory of this user (mode 0700), not one another user "
                 "can reach: the zip becomes code that runs as root on the hosts." % folder)
    tmp = out + '.tmp'
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, 'wb') as handle, zipfile.ZipFile(handle, 'w') as archive:
        # regular packages all the way down: zipimport does not do namespace packages on every Python
        for depth in range(1, len(parts) + 1):
            add(archive, '/'.join(parts[:depth]) + '/__init__.py', b'')
        for name in sorted(os.listdir(src)):
            if name.endswith('.py') and name != '__init__.py':
                with open(os.path.join(src, name), 'rb') as handle:
                    add(archive, PACKAGE + '/' + name, handle.read())
    os.rename(tmp, out)


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
