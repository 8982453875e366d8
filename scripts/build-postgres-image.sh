#!/usr/bin/env bash
# Build a PostgreSQL 15 test image with `docker import` from Debian's postgresql-15 package (no registry needed).
# The rootfs holds the server and client binaries, the libraries they link (ldd), the extension modules (without
# the LLVM JIT), /usr/share/postgresql/15, the time zone data and busybox for a shell. User postgres is uid/gid 999,
# the stop signal is SIGINT (fast shutdown), as in the official image. About 90 MB.
#
# The tag is keyed on the package version and this script's own hash, so the image is built once per machine and
# rebuilt only when either changes. Prints the image name on stdout. Installs postgresql-15 when missing (root).
set -euo pipefail
log() { printf '[postgres-image] %s\n' "$*" >&2; }
PKG=postgresql-15
if ! dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q "install ok installed"; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing $PKG"
    apt-get update -qq
    # The package's maintainer script creates a cluster and tries to start it; neither is wanted here.
    mkdir -p /etc/postgresql-common/createcluster.d
    printf 'create_main_cluster = false\n' >/etc/postgresql-common/createcluster.d/holdfast-no-cluster.conf
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$PKG" >/dev/null
  else
    log "$PKG is missing: apt-get install $PKG (as root)"
    exit 1
  fi
fi
version="$(dpkg-query -W -f='${Version}' "$PKG")"
recipe="$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-8)"
IMAGE="holdfast-test/postgres:${version//[^A-Za-z0-9_.-]/-}-$recipe"
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "$IMAGE"
  exit 0
fi
BUSYBOX="$(command -v busybox || true)"
[[ -n "$BUSYBOX" ]] || { log "busybox-static is missing: apt-get install busybox-static"; exit 1; }
PGBIN=/usr/lib/postgresql/15/bin
PGLIB=/usr/lib/postgresql/15/lib
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,etc,tmp,root,var/lib/postgresql/data,var/run/postgresql,usr/share,"$PGBIN","$PGLIB"}
cp "$BUSYBOX" "$root/bin/busybox"
for applet in $("$BUSYBOX" --list); do
  [[ "$applet" == busybox ]] || ln -s busybox "$root/bin/$applet"
done
cp -a "$PGBIN"/. "$root$PGBIN/"
find "$PGLIB" -maxdepth 1 -name '*.so' ! -name 'llvmjit*' -exec cp -a {} "$root$PGLIB/" \;
cp -a /usr/share/postgresql "$root/usr/share/"
cp -a /usr/share/zoneinfo "$root/usr/share/"
# every shared library the binaries and modules need, with the loader
for obj in "$root$PGBIN"/* "$root$PGLIB"/*.so; do
  [[ -L "$obj" ]] && continue
  ldd "$obj" 2>/dev/null | awk '/=>/ && $3 ~ /^\// {print $3} /^\t\/.*ld-linux/ {print $1}'
done | sort -u | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
printf 'root:x:0:0:root:/root:/bin/sh\npostgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\npostgres:x:999:\n' >"$root/etc/group"
cat >"$root/usr/local-entrypoint" <<'EOF'
#!/bin/sh
# Initialise $PGDATA on first start (data checksums on, trust auth: a test image), then run the server.
set -e
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  initdb -D "$PGDATA" -U postgres --data-checksums --auth=trust --locale=C --encoding=UTF8 >/tmp/initdb.log
  printf "listen_addresses = '*'\njit = off\n" >>"$PGDATA/postgresql.conf"
  printf 'host all all 0.0.0.0/0 trust\n' >>"$PGDATA/pg_hba.conf"
fi
exec postgres -D "$PGDATA" "$@"
EOF
mkdir -p "$root/usr/local/bin"
mv "$root/usr/local-entrypoint" "$root/usr/local/bin/entrypoint"
chmod 755 "$root/usr/local/bin/entrypoint"
chmod 1777 "$root/tmp"
chown -R 999:999 "$root/var/lib/postgresql" "$root/var/run/postgresql"
chmod 2777 "$root/var/run/postgresql"
chmod 700 "$root/var/lib/postgresql/data"
tar -C "$root" --numeric-owner -c . | docker import \
  -c "ENV PATH=/usr/local/bin:$PGBIN:/bin TZ=UTC PGDATA=/var/lib/postgresql/data" \
  -c 'USER postgres' -c 'EXPOSE 5432' -c 'ENTRYPOINT ["/usr/local/bin/entrypoint"]' \
  - "$IMAGE-rootfs" >/dev/null
# `docker import` cannot set a stop signal: one local build step does (FROM a local image pulls nothing).
printf 'FROM %s\nSTOPSIGNAL SIGINT\nLABEL org.holdfast.postgres-package=%s\n' "$IMAGE-rootfs" "$version" |
  DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" - 2>&1 >/dev/null | { grep -v -e DEPRECATED -e BuildKit -e "^ *environment-variable" -e "^$" >&2 || true; }
docker rmi "$IMAGE-rootfs" >/dev/null  # only the tag: the layer stays, as the image's parent
log "built $IMAGE from $PKG $version ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%d MB", $1/1e6}'))"
echo "$IMAGE"
