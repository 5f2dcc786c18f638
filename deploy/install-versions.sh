#!/usr/bin/env bash
# Installs the other server lines the version tests run against, from Debian's own archive:
#   Valkey 8.0.1  - packages valkey-server + valkey-tools from bookworm-backports (binaries valkey-server,
#                   valkey-cli; they do not replace redis-server)
#   Redis 8.0.2   - Debian trixie's upstream tarball (redis_8.0.2.orig.tar.gz, fetched with `apt-get source`),
#                   built once and installed under its own prefix /opt/redis-8.0.2 (never over Debian's redis-server)
# Idempotent: does nothing for a server already present. Starts and enables no service.
#
# Usage: bash deploy/install-versions.sh [--check]
#   --check  only report; exit 1 if something is missing
# Env: FLASHBACK_REDIS8_PREFIX (default /opt/redis-8.0.2)
set -euo pipefail

check_only=false
case "${1:-}" in
  --check) check_only=true ;;
  '') ;;
  *) echo "usage: bash deploy/install-versions.sh [--check]" >&2; exit 2 ;;
esac

say() { printf 'install-versions: %s\n' "$*"; }

redis8_version=8.0.2
redis8_source='redis=5:8.0.2-3+deb13u3'
redis8_prefix=${FLASHBACK_REDIS8_PREFIX:-/opt/redis-$redis8_version}

need_valkey=false
need_redis8=false
if [[ -x /usr/bin/valkey-server ]]; then
  say "present: valkey-server ($(/usr/bin/valkey-server --version | grep -o 'v=[0-9.]*'))"
else
  say "missing: valkey-server (bookworm-backports packages valkey-server valkey-tools)"
  need_valkey=true
fi
if [[ -x $redis8_prefix/bin/redis-server ]]; then
  say "present: $redis8_prefix/bin/redis-server ($("$redis8_prefix/bin/redis-server" --version | grep -o 'v=[0-9.]*'))"
else
  say "missing: Redis $redis8_version under $redis8_prefix (built from Debian trixie's source)"
  need_redis8=true
fi
if ! $need_valkey && ! $need_redis8; then
  say "nothing to install"
  exit 0
fi
if $check_only; then
  say "to install them: sudo bash deploy/install-versions.sh"
  exit 1
fi

run_root=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    run_root=(sudo -n)
  else
    say "not root, and sudo needs a password: run it as root, e.g.  sudo bash deploy/install-versions.sh"
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive

work=$(mktemp -d)
chmod 755 "$work"
cleanup() { rm -rf "$work"; [[ ${added_policy:-false} == true ]] && "${run_root[@]}" rm -f /usr/sbin/policy-rc.d; true; }
trap cleanup EXIT

# One-off apt source lists with their own lists dir and no shared cache: the system's sources, package lists and
# cache stay exactly as they are (an update with another source list would otherwise drop the system's lists).
mkdir -p "$work/lists/partial"
apt_with() {
  local list=$1
  shift
  "${run_root[@]}" apt-get -o "Dir::Etc::sourcelist=$list" -o Dir::Etc::sourceparts=/dev/null \
    -o "Dir::State::Lists=$work/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= \
    -o DPkg::Lock::Timeout=600 "$@"
}

if $need_valkey; then
  # Keep the packaged valkey service from starting (see install-servers.sh).
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    "${run_root[@]}" sh -c "printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d"
    added_policy=true
  fi
  # bookworm itself too: valkey's dependencies come from there.
  printf '%s\n' 'deb http://deb.debian.org/debian bookworm main' \
    'deb http://deb.debian.org/debian bookworm-backports main' >"$work/bpo.list"
  say "apt-get update (bookworm-backports)"
  apt_with "$work/bpo.list" update -qq
  say "installing valkey-server valkey-tools from bookworm-backports"
  apt_with "$work/bpo.list" install -y -qq --no-install-recommends -t bookworm-backports valkey-server valkey-tools
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    "${run_root[@]}" systemctl disable --now valkey-server.service >/dev/null 2>&1 || true
  fi
  say "installed valkey $(/usr/bin/valkey-server --version | grep -o 'v=[0-9.]*'); its service is not started"
fi

if $need_redis8; then
  for tool in make cc; do
    command -v $tool >/dev/null 2>&1 || { say "building Redis $redis8_version needs $tool: apt-get install -y build-essential"; exit 1; }
  done
  echo 'deb-src http://deb.debian.org/debian trixie main' >"$work/trixie-src.list"
  say "apt-get update (trixie sources)"
  apt_with "$work/trixie-src.list" update -qq
  # Only the orig tarball is needed (the .dsc and Debian tarball may be gone from the mirror); apt-get source
  # still checks it against the archive's signed hashes.
  (cd "$work" && apt_with "$work/trixie-src.list" source --download-only "$redis8_source" >/dev/null 2>&1 || true)
  tarball=$(ls "$work"/redis_"$redis8_version".orig.tar.gz 2>/dev/null || true)
  if [[ -z $tarball ]]; then
    say "apt-get source did not fetch redis_$redis8_version.orig.tar.gz from Debian trixie; check the network"
    exit 1
  fi
  tar -xzf "$tarball" -C "$work"
  src=$(find "$work" -maxdepth 1 -type d -name "redis-$redis8_version*" | head -1)
  say "building Redis $redis8_version in $src (make -j$(nproc) BUILD_TLS=no MALLOC=libc)"
  start=$(date +%s)
  make -C "$src" -j"$(nproc)" BUILD_TLS=no MALLOC=libc >"$work/build.log" 2>&1 || { tail -30 "$work/build.log"; say "build failed"; exit 1; }
  "${run_root[@]}" make -C "$src" PREFIX="$redis8_prefix" install >/dev/null
  say "installed $("$redis8_prefix/bin/redis-server" --version | grep -o 'v=[0-9.]*') under $redis8_prefix in $(($(date +%s) - start)) s"
fi
say "done"
