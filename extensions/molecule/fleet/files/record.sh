#!/bin/sh
# Print every entry of the fleet's two volumes: path, type, owner, mode, link target, and the sha256 of every
# file. Directory sizes are left out: they belong to the filesystem, not to the data.
set -eu
for dir in /srv/holdfast-enc/fleet_db "$(docker volume inspect -f '{{ .Mountpoint }}' fleet_files)"; do
  cd "$dir"
  find . -printf '%p %y %U:%G %m %l\n' | LC_ALL=C sort
  find . -type f -exec sha256sum {} + | LC_ALL=C sort -k 2
done
