#!/usr/bin/env bash
# Build (or reuse from the cache) the VM test image: Debian 12 with sshd, Docker, cryptsetup, systemd, Python and
# the Docker SDK, rclone (Debian's 1.60, the offsite copies' minimum), Debian's kernel, and a busybox initramfs.
# Everything comes from Debian packages.
# Prints the image directory: vmlinuz, initrd.img, disk.img (raw, sparse), id_ed25519 (root's SSH key).
# The cache key is the recipe (this script, the two init scripts) and the kernel package.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${HOLDFAST_VM_CACHE:-/var/cache/holdfast-vm}"
MIRROR="${HOLDFAST_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
log() { printf '[vm-image] %s\n' "$*" >&2; }
for tool in debootstrap qemu-system-x86_64 qemu-img cpio busybox mkfs.ext4; do
  command -v "$tool" >/dev/null || { log "missing $tool: apt-get install qemu-system-x86 qemu-utils debootstrap cpio busybox-static e2fsprogs"; exit 1; }
done
kernel_package() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}'; }
KPKG="$(kernel_package)"
if [[ -z "$KPKG" && $(id -u) -eq 0 ]]; then apt-get update -qq >&2; KPKG="$(kernel_package)"; fi
[[ -n "$KPKG" ]] || { log "cannot find the kernel package (run apt-get update)"; exit 1; }
KVER="${KPKG#linux-image-}"
RECIPE="$(cat "$HERE/build-image.sh" "$HERE/guest-init" "$HERE/initramfs-init" | sha256sum | cut -c1-12)-$KVER"
OUT="$CACHE/$RECIPE"
if [[ -f "$OUT/.complete" ]]; then echo "$OUT"; exit 0; fi
mkdir -p "$CACHE"
exec 9>"$CACHE/.build.lock"
flock 9
if [[ -f "$OUT/.complete" ]]; then echo "$OUT"; exit 0; fi
start=$SECONDS
WORK="$(mktemp -d /var/tmp/holdfast-vm-build.XXXXXX)"
cleanup() {
  for m in proc sys dev/pts dev; do umount -l "$WORK/rootfs/$m" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
rm -rf "$OUT"; mkdir -p "$OUT"

log "kernel $KPKG"
(cd "$WORK" && apt-get download -q "$KPKG" >/dev/null)
dpkg-deb -x "$WORK"/linux-image-*.deb "$WORK/kernel"
cp "$WORK/kernel/boot/vmlinuz-$KVER" "$OUT/vmlinuz"

log "root filesystem (debootstrap)"
PKGS=python3,python3-docker,openssh-server,cryptsetup,cryptsetup-bin,dmsetup,e2fsprogs,xfsprogs,kmod,iproute2
PKGS=$PKGS,util-linux,mount,procps,docker.io,zstd,tar,busybox-static,systemd,systemd-sysv,udev,ca-certificates,iptables,psmisc
# rclone: the fleet scenario syncs every guest's backups to one guest's sshd (SFTP) and restores from there
PKGS=$PKGS,rclone
debootstrap --variant=minbase --include="$PKGS" bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
  || { tail -30 "$WORK/debootstrap.log" >&2; exit 1; }
R="$WORK/rootfs"
chroot "$R" rclone version | head -1 >&2
mkdir -p "$R/lib/modules"
cp -a "$WORK/kernel/lib/modules/$KVER" "$R/lib/modules/"
chroot "$R" depmod "$KVER"
install -m 0755 "$HERE/guest-init" "$R/sbin/holdfast-init"
echo holdfast-vm >"$R/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 holdfast-vm\n' >"$R/etc/hosts"
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >"$R/etc/fstab"
printf 'nameserver 10.0.2.3\n' >"$R/etc/resolv.conf"
mkdir -p "$R/etc/systemd/network"
printf '[Match]\nName=en* eth*\n\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\nDNS=10.0.2.3\n' \
  >"$R/etc/systemd/network/10-holdfast.network"
ln -sf /lib/systemd/system/systemd-networkd.service "$R/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
ln -sf /lib/systemd/system/ssh.service "$R/etc/systemd/system/multi-user.target.wants/ssh.service"
ln -sf /lib/systemd/system/docker.service "$R/etc/systemd/system/multi-user.target.wants/docker.service" 2>/dev/null || true
# no getty on a serial console nobody reads; boots faster
rm -f "$R/etc/systemd/system/getty.target.wants/"* 2>/dev/null || true
ssh-keygen -q -t ed25519 -N '' -f "$OUT/id_ed25519" -C holdfast-vm
install -d -m 0700 "$R/root/.ssh"
install -m 0600 "$OUT/id_ed25519.pub" "$R/root/.ssh/authorized_keys"
printf 'UseDNS no\nPermitRootLogin prohibit-password\n' >"$R/etc/ssh/sshd_config.d/holdfast.conf"
# the small container image the tests run in the guest (imported at boot: no registry)
mkdir -p "$WORK/bb/bin" "$WORK/bb/tmp" "$WORK/bb/data" "$R/opt/holdfast"
cp "$R/bin/busybox" "$WORK/bb/bin/busybox"
for a in $("$WORK/bb/bin/busybox" --list); do [[ $a == busybox ]] || ln -s busybox "$WORK/bb/bin/$a"; done
chmod 1777 "$WORK/bb/tmp"
tar -C "$WORK/bb" -cf "$R/opt/holdfast/busybox-rootfs.tar" .
rm -rf "$R/var/cache/apt/archives/"*.deb "$R/var/lib/apt/lists/"*

log "disk image"
truncate -s 4G "$OUT/disk.img"
mkfs.ext4 -q -F -L holdfast-root -d "$R" "$OUT/disk.img"

log "initramfs"
I="$WORK/initramfs"
mkdir -p "$I/bin" "$I/modules" "$I/proc" "$I/sys" "$I/dev" "$I/newroot"
cp "$(command -v busybox)" "$I/bin/busybox"
install -m 0755 "$HERE/initramfs-init" "$I/init"
MODDIR="$WORK/kernel/lib/modules/$KVER/kernel"
: >"$I/modules.order"
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk crc16 mbcache jbd2 \
         crc32c_generic ext4; do
  f="$(find "$MODDIR" -name "$m.ko*" | head -1)"
  [[ -n "$f" ]] || continue
  case "$f" in *.xz) xz -dc "$f" >"$I/modules/$m.ko" ;; *) cp "$f" "$I/modules/$m.ko" ;; esac
  echo "$m.ko" >>"$I/modules.order"
done
(cd "$I" && find . | cpio -o -H newc --quiet | gzip -1 >"$OUT/initrd.img")
touch "$OUT/.complete"
log "built $OUT in $((SECONDS - start)) s"
echo "$OUT"
