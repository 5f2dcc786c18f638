#!/usr/bin/env bash
# Installs, from Debian's own packages, the servers redis-flashback runs as child processes:
# redis-server (+ redis-tools), nats-server, clickhouse-server (+ clickhouse-client), and faketime (restores of
# Redis 7.4+ histories load on the source's clock: restorer/source-clock.ts); then, with deploy/install-versions.sh,
# the other server lines the version tests run (Valkey 8.0.1, Redis 8.0.2), unless --no-versions.
# Idempotent: installs only what is missing, runs `apt-get update` only then.
# Starts and enables no system service: flashback starts its own servers on free loopback ports
# with their own data dirs, and a packaged service would hold the standard ports (6379, 4222, 8123, 9000).
#
# Usage: bash deploy/install-servers.sh [--check] [--no-versions]
#   --check        only report; exit 1 if something is missing
#   --no-versions  skip deploy/install-versions.sh (Valkey 8.0.1, Redis 8.0.2: the version tests need them)
set -euo pipefail

check_only=false
versions=true
for arg in "$@"; do
  case "$arg" in
    --check) check_only=true ;;
    --no-versions) versions=false ;;
    *) echo "usage: bash deploy/install-servers.sh [--check] [--no-versions]" >&2; exit 2 ;;
  esac
done
here=$(dirname "${BASH_SOURCE[0]}")
# The other server lines, after this script's own packages (run on every exit path that succeeded).
more_versions() {
  $versions || return 0
  if $check_only; then bash "$here/install-versions.sh" --check; else bash "$here/install-versions.sh"; fi
}

say() { printf 'install-servers: %s\n' "$*"; }

# Binaries may sit in sbin dirs that a non-root PATH lacks.
# (`command -v` is not enough: bash reports a non-executable file of that name when it finds nothing better.)
find_bin() {
  local name=$1 dir
  local -a dirs
  IFS=: read -r -a dirs <<<"${PATH:-}"
  for dir in "${dirs[@]}" /usr/sbin /usr/local/sbin /sbin /usr/bin /usr/local/bin; do
    if [[ -n $dir && -f "$dir/$name" && -x "$dir/$name" ]]; then echo "$dir/$name"; return 0; fi
  done
  return 1
}

# "binary package" pairs: what must be runnable, and the Debian package that provides it.
wanted=(
  "redis-server redis-server"
  "redis-cli redis-tools"
  "nats-server nats-server"
  "clickhouse-server clickhouse-server"
  "clickhouse-client clickhouse-client"
  # Headless browser of the timeline page's test (test/timeline-page.test.ts); no service.
  "chromium chromium"
  # promtool checks every service's /metrics and deploy/prometheus/alerts.yml (test/health-metrics.test.ts); no service.
  "promtool prometheus"
  # Restores of Redis 7.4+ histories load on the source's clock (restorer/source-clock.ts); no service.
  "faketime faketime"
  # The deploy recipes' checks (test/deploy-recipes.test.ts): systemd-analyze verify, docker-compose config; no service.
  "systemd-analyze systemd"
  "docker-compose docker-compose"
  # ZooKeeper of the replicated ClickHouse recipe (test/clickhouse-replicas.test.ts runs /usr/share/java/zookeeper.jar);
  # zooinspector is the package's one command on PATH. No service.
  "zooinspector zookeeper"
)

missing_pkgs=()
for pair in "${wanted[@]}"; do
  read -r bin pkg <<<"$pair"
  if path=$(find_bin "$bin"); then
    version=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || true)
    say "present: $bin ($path${version:+, package $pkg $version})"
  else
    say "missing: $bin (package $pkg)"
    missing_pkgs+=("$pkg")
  fi
done

if [[ ${#missing_pkgs[@]} -eq 0 ]]; then
  say "nothing to install"
  more_versions
  exit 0
fi
if $check_only; then
  say "to install them: sudo bash deploy/install-servers.sh"
  more_versions || true
  exit 1
fi

run_root=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    run_root=(sudo -n)
  else
    say "not root, and sudo needs a password: run it as root, e.g.  sudo bash deploy/install-servers.sh"
    say "or install the packages yourself (then stop and disable their services):"
    say "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing_pkgs[*]}"
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  say "no apt-get here: install ${missing_pkgs[*]} with this system's package manager, or put the binaries on PATH"
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# Services these packages ship, to keep them from starting or being enabled.
units_of() {
  case $1 in
    redis-server) echo redis-server ;;
    nats-server) echo nats-server ;;
    clickhouse-server) echo clickhouse-server ;;
    prometheus) echo prometheus ;;
  esac
}

# Standard ports a packaged service would take; remember who listened before we installed.
standard_ports='6379|4222|8222|8123|9000|9009'
listeners() { ss -ltnpH 2>/dev/null | awk -v re=":(${standard_ports})\$" '$4 ~ re { print $4, $6 }' | sort || true; }
before=$(listeners)

# invoke-rc.d and deb-systemd-invoke ask policy-rc.d whether a package may start its service:
# 101 = "action forbidden". Keep an existing policy (Docker images ship one) and put ours back only if we added it.
policy=/usr/sbin/policy-rc.d
added_policy=false
if [[ ! -e $policy ]]; then
  "${run_root[@]}" sh -c "printf '#!/bin/sh\n# added by redis-flashback deploy/install-servers.sh while installing\nexit 101\n' > $policy && chmod 755 $policy"
  added_policy=true
  trap '"${run_root[@]}" rm -f "$policy"' EXIT
  say "added $policy (exit 101) so the packages start no service"
fi

unavailable=()
# Packages already installed (their binary went missing) keep their service settings.
newly_installed=()
for pkg in "${missing_pkgs[@]}"; do
  if [[ $(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true) != installed ]]; then newly_installed+=("$pkg"); fi
done

say "apt-get update"
if ! "${run_root[@]}" apt-get update -qq; then
  say "apt-get update failed: check the network and /etc/apt/sources.list*, then run this again"
  exit 1
fi
for pkg in "${missing_pkgs[@]}"; do
  if ! apt-cache show "$pkg" >/dev/null 2>&1; then unavailable+=("$pkg"); fi
done
if [[ ${#unavailable[@]} -gt 0 ]]; then
  say "this system's apt sources have no package ${unavailable[*]}"
  say "ClickHouse: add its repository (https://clickhouse.com/docs/install#install-from-deb-packages) or put a clickhouse binary on PATH"
  exit 1
fi

reinstall=()
for pkg in "${missing_pkgs[@]}"; do
  [[ " ${newly_installed[*]} " == *" $pkg "* ]] || reinstall+=("$pkg")
done
if [[ ${#newly_installed[@]} -gt 0 ]]; then
  say "installing: ${newly_installed[*]}"
  "${run_root[@]}" apt-get install -y -qq --no-install-recommends "${newly_installed[@]}"
fi
if [[ ${#reinstall[@]} -gt 0 ]]; then
  say "reinstalling (package registered, binary gone): ${reinstall[*]}"
  "${run_root[@]}" apt-get install -y -qq --no-install-recommends --reinstall "${reinstall[@]}"
fi

for pkg in "${missing_pkgs[@]}"; do
  version=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || true)
  unit=$(units_of "$pkg")
  if [[ -z $unit || " ${newly_installed[*]} " != *" $pkg "* ]]; then
    say "installed $pkg $version"
    continue
  fi
  # We installed it just now, so its service is ours to switch off; a pre-existing one is left alone.
  if command -v deb-systemd-helper >/dev/null 2>&1 && [[ -e /lib/systemd/system/$unit.service ]]; then
    "${run_root[@]}" deb-systemd-helper disable "$unit.service" >/dev/null 2>&1 || true
  fi
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    "${run_root[@]}" systemctl disable --now "$unit.service" >/dev/null 2>&1 || true
  fi
  if [[ -x /etc/init.d/$unit ]] && command -v update-rc.d >/dev/null 2>&1; then
    "${run_root[@]}" update-rc.d "$unit" disable >/dev/null 2>&1 || true
  fi
  say "installed $pkg $version; its service $unit is not started and disabled"
done

# Belt and braces: a listener on a standard port that appeared during the install is a service that started anyway.
after=$(listeners)
new=$(comm -13 <(echo "$before") <(echo "$after") | sed '/^$/d' || true)
if [[ -n $new ]]; then
  while read -r addr proc; do
    pid=$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' <<<"$proc" | head -1)
    say "a service started during the install and listens on $addr ($proc); stopping pid $pid"
    [[ -n $pid ]] && "${run_root[@]}" kill "$pid" || true
  done <<<"$new"
fi
$added_policy && say "removing $policy again"
say "done"
more_versions
