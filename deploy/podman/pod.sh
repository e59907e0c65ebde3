#!/usr/bin/env bash
# Single-host example: one privnet member as a podman pod (app container + privnet sidecar sharing the pod's
# network namespace), TUN mode.
#
#   deploy/podman/pod.sh up   NAME CONFIG_DIR [APP_IMAGE [APP_ARGS...]]
#   deploy/podman/pod.sh down NAME
#
# CONFIG_DIR holds privnet.toml, ca.crt, member.crt, member.key and network.psk (see README.md); it is
# mounted read-only at /etc/privnet. Environment: PRIVNET_IMAGE (default localhost/privnet:dev),
# PRIVNET_PORT (underlay UDP port published on the host, default 51820), PODMAN_RUNTIME (default runc).
set -euo pipefail

PRIVNET_IMAGE="${PRIVNET_IMAGE:-localhost/privnet:dev}"
PRIVNET_PORT="${PRIVNET_PORT:-51820}"
if [[ -z "${CONTAINERS_CONF:-}" && -f /etc/privnet-ci/containers.conf ]]; then
    export CONTAINERS_CONF=/etc/privnet-ci/containers.conf
fi
P=(podman --runtime "${PODMAN_RUNTIME:-runc}")

usage() {
    sed -n '2,12p' "$0" >&2
    exit 2
}

cmd="${1:-}"
name="${2:-}"
[[ -n "$cmd" && -n "$name" ]] || usage

case "$cmd" in
    up)
        config_dir="$(cd "${3:?CONFIG_DIR required}" && pwd)"
        app_image="${4:-localhost/privnet-testapp:dev}"
        shift 4 2>/dev/null || shift $#
        [[ -f "$config_dir/privnet.toml" ]] || {
            echo "pod.sh: $config_dir/privnet.toml missing" >&2
            exit 1
        }
        # The pod owns the network namespace (and the published underlay port).
        timeout 120 "${P[@]}" pod create --name "$name" -p "$PRIVNET_PORT:$PRIVNET_PORT/udp" >/dev/null
        # The sidecar: TUN mode needs uid 0 but nothing except CAP_NET_ADMIN and /dev/net/tun.
        # shellcheck disable=SC2054 # the commas are inside the --tmpfs option value
        timeout 120 "${P[@]}" run -d --name "$name-privnet" --pod "$name" \
            --user 0 --cap-drop ALL --cap-add NET_ADMIN --device /dev/net/tun \
            --read-only --tmpfs /run/privnet:rw,size=1m,mode=0700 \
            -v "$config_dir:/etc/privnet:ro" \
            --restart on-failure --stop-timeout 30 \
            --health-cmd '["privnet","health"]' --health-interval 10s --health-retries 3 \
            "$PRIVNET_IMAGE" >/dev/null
        # The application: unprivileged, sees the overlay interface because it shares the namespace.
        # --init: a process without a SIGTERM handler ignores SIGTERM as PID 1 (as privnet-testapp would).
        timeout 120 "${P[@]}" run -d --name "$name-app" --pod "$name" \
            --init --read-only --cap-drop ALL \
            "$app_image" "$@" >/dev/null
        "${P[@]}" pod ps --filter "name=^$name\$"
        ;;
    down)
        timeout 120 "${P[@]}" pod rm -f -t 30 "$name"
        ;;
    *) usage ;;
esac
