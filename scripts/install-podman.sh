#!/usr/bin/env bash
# Install podman (from Debian's packages) the way it is known to work on the CI machines, and write the
# containers.conf that the container tests point to with CONTAINERS_CONF.
#
# Idempotent: re-running it re-checks the packages and rewrites the same config.
#
# Usage: scripts/install-podman.sh            (as root)
#        CONTAINERS_CONF_OUT=/path/to/containers.conf scripts/install-podman.sh
#
# Afterwards:
#   export CONTAINERS_CONF=/etc/privnet-ci/containers.conf   (or $CONTAINERS_CONF_OUT)
#   podman --runtime runc run ...
#
# Why each setting:
#   default_ulimits = []   this machine refuses to set rlimits inside containers (podman's default sets
#                          RLIMIT_NOFILE/NPROC), so container start fails without it.
#   runtime = "runc"       crun refuses the cgroup layout here; we also pass --runtime runc explicitly.
#   cgroup_manager         "cgroupfs": there is no systemd (PID 1 is not systemd) to talk to.
#   events_logger          "file": journald is not available.
set -euo pipefail

CONF_OUT="${CONTAINERS_CONF_OUT:-/etc/privnet-ci/containers.conf}"
# iptables: used by the CNI bridge/firewall plugins; iputils-ping: the overlay ping check of
# tests/container/pods.sh (run with nsenter in a pod's network namespace, since the images have no ping).
PACKAGES=(podman runc catatonit containernetworking-plugins iptables iputils-ping)

if [[ "$(id -u)" -ne 0 ]]; then
    echo "install-podman.sh: must run as root" >&2
    exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if ((${#missing[@]} > 0)); then
    echo "install-podman.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update
    timeout 1200 apt-get install -y --no-install-recommends "${PACKAGES[@]}"
else
    echo "install-podman.sh: packages already installed: ${PACKAGES[*]}"
fi

mkdir -p "$(dirname "$CONF_OUT")"
cat >"$CONF_OUT.tmp" <<'CONF'
# Written by scripts/install-podman.sh. Use with: export CONTAINERS_CONF=<this file>
[containers]
# This machine refuses to set rlimits inside containers.
default_ulimits = []

[engine]
# crun refuses the cgroup layout here; callers also pass --runtime runc.
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
mv "$CONF_OUT.tmp" "$CONF_OUT"
echo "install-podman.sh: wrote $CONF_OUT"

export CONTAINERS_CONF="$CONF_OUT"
podman --runtime runc version
echo "install-podman.sh: done. export CONTAINERS_CONF=$CONF_OUT"
