#!/usr/bin/env bash
# Build holdfast-test/busybox:1 with `docker import` from Debian's busybox-static (no registry needed).
# A rootfs of /bin/busybox plus one symlink per applet; about 2 MB.
set -euo pipefail
IMAGE="${HOLDFAST_TEST_IMAGE:-holdfast-test/busybox:1}"
if docker image inspect "$IMAGE" >/dev/null 2>&1; then exit 0; fi
BUSYBOX="$(command -v busybox || true)"
[[ -n "$BUSYBOX" ]] || { echo "busybox-static is missing: apt-get install busybox-static" >&2; exit 1; }
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,etc,tmp,data,root}
cp "$BUSYBOX" "$root/bin/busybox"
for applet in $("$BUSYBOX" --list); do
  [[ "$applet" == busybox ]] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
chmod 1777 "$root/tmp"
tar -C "$root" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null
echo "[setup] built test image $IMAGE" >&2
