#!/usr/bin/env bash
# Set up everything the demo and the tests need, installing only what is missing:
#   Debian packages (Docker Engine, busybox-static for the test image, zstd, ...), a running Docker
#   Engine (started in the background only when none answers), a venv with the pinned test
#   requirements, the collection path, and the local test image (no registry needed).
# Safe to run again: each step checks first. Source it (". scripts/setup.sh") or run it.
# Sourced, it exports HOLDFAST_ROOT, HOLDFAST_VENV, HOLDFAST_COLLECTIONS and ANSIBLE_COLLECTIONS_PATH, and gives the
# caller's shell its options back (it runs under set -euo pipefail itself).
if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
  _holdfast_caller_options="$(set +o)"  # a subshell, which does not see errexit: $- tells it
  if [[ $- == *e* ]]; then _holdfast_caller_options+=$'\nset -e'; else _holdfast_caller_options+=$'\nset +e'; fi
fi
set -euo pipefail
HOLDFAST_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOLDFAST_VENV="${HOLDFAST_VENV:-$HOLDFAST_ROOT/.venv}"
HOLDFAST_TMP="$HOLDFAST_ROOT/.tmp"
mkdir -p "$HOLDFAST_TMP"
log() { printf '[setup] %s\n' "$*" >&2; }

# 1. Debian packages ---------------------------------------------------------------------------
APT_PACKAGES=(docker.io busybox-static zstd pigz python3-venv python3-docker acl attr age restic shellcheck rclone openssh-server
              e2fsprogs qemu-system-x86 qemu-utils debootstrap cpio cryptsetup-bin chromium fonts-dejavu-core locales libcap2-bin)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    log "missing packages ${missing[*]}: install them (as root: apt-get install ${missing[*]})"
    exit 1
  fi
fi

# 1b. A non-English locale: the tests run the collection under de_DE.UTF-8 (tar, cryptsetup translate their
# messages), which must not change what the modules parse.
if ! locale -a 2>/dev/null | grep -qix 'de_DE.utf8'; then
  if [[ $(id -u) -eq 0 ]] && [[ -f /etc/locale.gen ]] && command -v locale-gen >/dev/null; then
    log "generating the locale de_DE.UTF-8 (for the locale tests)"
    sed -i 's/^# *\(de_DE.UTF-8 UTF-8\)/\1/' /etc/locale.gen
    grep -q '^de_DE.UTF-8 UTF-8' /etc/locale.gen || echo 'de_DE.UTF-8 UTF-8' >>/etc/locale.gen
    locale-gen >/dev/null
  else
    log "locale de_DE.UTF-8 is missing: generate it (as root: enable it in /etc/locale.gen, run locale-gen)"
    exit 1
  fi
fi

# 2. Docker Engine -----------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v dockerd >/dev/null; then
    log "no Docker Engine answers: starting dockerd in the background (log: $HOLDFAST_TMP/dockerd.log)"
    nohup dockerd >"$HOLDFAST_TMP/dockerd.log" 2>&1 &
    for _ in $(seq 1 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || { log "dockerd did not come up; see $HOLDFAST_TMP/dockerd.log"; exit 1; }
  else
    log "no Docker Engine answers and this user cannot start one: start dockerd (systemctl start docker)"
    exit 1
  fi
else
  log "Docker Engine is running: leaving it alone"
fi

# 3. venv with the pinned requirements -----------------------------------------------------------
PYTHON="${HOLDFAST_PYTHON:-python3}"
if [[ ! -x "$HOLDFAST_VENV/bin/python" ]]; then
  log "creating venv $HOLDFAST_VENV"
  "$PYTHON" -m venv "$HOLDFAST_VENV"
fi
stamp="$HOLDFAST_VENV/.holdfast-requirements.sha256"
want="$(sha256sum "$HOLDFAST_ROOT/requirements/test.txt" | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  log "installing pinned requirements into the venv"
  "$HOLDFAST_VENV/bin/pip" install -q -r "$HOLDFAST_ROOT/requirements/test.txt" 2> >(grep -v "is ignored: it is neither" >&2)
  echo "$want" >"$stamp"
fi

# 4. The collection where Ansible looks for it --------------------------------------------------
HOLDFAST_COLLECTIONS="$HOLDFAST_TMP/collections"
mkdir -p "$HOLDFAST_COLLECTIONS/ansible_collections/holdfast"
ln -sfn "$HOLDFAST_ROOT" "$HOLDFAST_COLLECTIONS/ansible_collections/holdfast/volumes"

# 5. Local test image (no registry is reachable) -------------------------------------------------
"$HOLDFAST_ROOT/scripts/build-test-image.sh"

export HOLDFAST_ROOT HOLDFAST_VENV HOLDFAST_COLLECTIONS
export ANSIBLE_COLLECTIONS_PATH="$HOLDFAST_COLLECTIONS"
log "ready: venv $HOLDFAST_VENV, collections $HOLDFAST_COLLECTIONS"
if [[ -n "${_holdfast_caller_options:-}" ]]; then
  eval "$_holdfast_caller_options"
  unset _holdfast_caller_options
fi
