# -*- coding: utf-8 -*-
# Copyright: holdfast.volumes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pack the collection's module_utils into one zip that Python imports from (zipimport), for the scheduled
runner on the hosts: one file to copy instead of one per helper. The zip is byte-for-byte the same for the same
sources (sorted names, fixed timestamps), so copying it again changes nothing.

    python3 build_runner_zip.py PLUGINS_MODULE_UTILS_DIR OUT.zip
"""

import os
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
    tmp = out + '.tmp'
    with zipfile.ZipFile(tmp, 'w') as archive:
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
