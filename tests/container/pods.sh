#!/usr/bin/env bash
# End-to-end pod test of the privnet sidecar (issue 6), run by .ci/run.
#
# Builds the sidecar and test-app images, creates a podman bridge network and three pods on it (a1 and a2 in
# privnet network A, b1 in network B), each with a privnet sidecar container and a test-app container sharing
# the pod's network namespace, and then checks:
#   infra stage:  images run; the sidecar container starts with --cap-add NET_ADMIN --device /dev/net/tun as
#                 uid 0 with only NET_ADMIN and can open the TUN device; containers of a pod share its network
#                 namespace; TCP transfer (SHA-256 checked) and UDP echo between pods over the podman bridge.
#   full stage:   additionally: credentials from the privnet CLI; sidecars (`privnet up` as PID 1, config via
#                 the image's PRIVNET_CONFIG) become healthy (`privnet health` with no arguments); a1<->a2 TCP
#                 transfer with checksum, UDP echo and ping over overlay addresses, and `health --require-peer`;
#                 b1 cannot reach a1/a2 (and they cannot reach b1), its handshakes reach a1/a2 and are refused
#                 (bad_mac1: other network PSK); a2's sidecar exits 0 on SIGTERM within its grace period, and
#                 after it is started again a1<->a2 recovers on its own within a bounded time.
# Everything it creates (pods, containers, network, images, temp files) is removed on exit, even on failure
# or interrupt. Every wait is bounded; the whole run is bounded by PODS_TEST_TIMEOUT.
#
# Usage:  tests/container/pods.sh
# Environment:
#   PODS_TEST_STAGE       infra | full (default full). infra: only the container plumbing, no privnet node.
#   PODS_TEST_TIMEOUT     bound on the whole run in seconds (default 1200; includes the cargo build)
#   PODS_TEST_SUBNET      podman bridge subnet (default 10.213.0.0/24; pods get .11 .12 .13)
#   PODS_TEST_SKIP_BUILD  1: use existing images PRIVNET_IMAGE / TESTAPP_IMAGE (not removed afterwards)
#   PODS_TEST_KEEP=1      do not tear down (debugging; prints what to remove)
#   CONTAINERS_CONF       default /etc/privnet-ci/containers.conf (written by scripts/install-podman.sh)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SELF="$ROOT/tests/container/pods.sh"

# --- bound the whole run ---------------------------------------------------------------------------------
if [[ -z "${PODS_TEST_INNER:-}" ]]; then
    export PODS_TEST_INNER=1
    # -k: if the script ignores TERM (it does not, but its children might), KILL 30 s later.
    exec timeout -k 30 "${PODS_TEST_TIMEOUT:-1200}" bash "$SELF" "$@"
fi

STAGE="${PODS_TEST_STAGE:-full}"
case "$STAGE" in infra | full) ;; *)
    echo "PODS_TEST_STAGE must be infra or full" >&2
    exit 2
    ;;
esac

export CONTAINERS_CONF="${CONTAINERS_CONF:-/etc/privnet-ci/containers.conf}"
if [[ ! -f "$CONTAINERS_CONF" ]]; then
    echo "pods.sh: $CONTAINERS_CONF missing: run scripts/install-podman.sh first" >&2
    exit 1
fi
P=(podman --runtime "${PODMAN_RUNTIME:-runc}")

RUN_ID="pnt$$"
NET="$RUN_ID-net"
SUBNET="${PODS_TEST_SUBNET:-10.213.0.0/24}"
SUBNET_BASE="${SUBNET%.*/*}" # 10.213.0
declare -A UNDERLAY=([a1]="$SUBNET_BASE.11" [a2]="$SUBNET_BASE.12" [b1]="$SUBNET_BASE.13")
# Overlay addresses. Network B deliberately uses the same prefix: b1 routes 10.77.0.0/16 into its own TUN,
# so isolation is enforced by credentials (different CA and PSK), not by routing.
OVERLAY_PREFIX="10.77.0.0/16"
declare -A OVERLAY=([a1]="10.77.0.2" [a2]="10.77.0.3" [b1]="10.77.0.4")
declare -A NETWORK_OF=([a1]="neta" [a2]="neta" [b1]="netb")
PRIVNET_PORT=51820
TCP_PORT=7000
UDP_PORT=7001
SIDECAR_GRACE=10 # seconds podman waits after SIGTERM before SIGKILL (mirrors terminationGracePeriodSeconds)

if [[ "${PODS_TEST_SKIP_BUILD:-0}" == 1 ]]; then
    PRIVNET_IMAGE="${PRIVNET_IMAGE:-localhost/privnet:dev}"
    TESTAPP_IMAGE="${TESTAPP_IMAGE:-localhost/privnet-testapp:dev}"
    OWN_IMAGES=0
else
    PRIVNET_IMAGE="localhost/privnet:$RUN_ID"
    TESTAPP_IMAGE="localhost/privnet-testapp:$RUN_ID"
    OWN_IMAGES=1
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/privnet-pods.XXXXXX")"
CREATED_PODS=()
CREATED_NETWORK=""
FAILED=1

log() { printf '[pods %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() {
    log "FAIL: $*"
    exit 1
}

# --- teardown --------------------------------------------------------------------------------------------
dump_logs() {
    local c
    for c in $("${P[@]}" ps -a --filter "name=^$RUN_ID-" --format '{{.Names}}' 2>/dev/null); do
        log "---- logs of $c ($("${P[@]}" inspect -f '{{.State.Status}} exit={{.State.ExitCode}}' "$c" 2>/dev/null || echo '?'))"
        timeout 20 "${P[@]}" logs --tail 40 "$c" 2>&1 | sed 's/^/    /' || true
    done
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [[ $rc -ne 0 || $FAILED -ne 0 ]]; then
        dump_logs
    fi
    if [[ "${PODS_TEST_KEEP:-0}" == 1 ]]; then
        log "PODS_TEST_KEEP=1: left pods ${CREATED_PODS[*]:-}, network $CREATED_NETWORK, images, $WORK"
        exit "$rc"
    fi
    local pod
    for pod in "${CREATED_PODS[@]}"; do
        timeout 60 "${P[@]}" pod rm -f -t 0 "$pod" >/dev/null 2>&1 || log "warning: could not remove pod $pod"
    done
    # Containers created outside a pod (none expected) would carry the run id too.
    for c in $("${P[@]}" ps -a --filter "name=^$RUN_ID-" --format '{{.Names}}' 2>/dev/null); do
        timeout 60 "${P[@]}" rm -f -t 0 "$c" >/dev/null 2>&1
    done
    if [[ -n "$CREATED_NETWORK" ]]; then
        timeout 60 "${P[@]}" network rm -f "$CREATED_NETWORK" >/dev/null 2>&1 || log "warning: could not remove network $CREATED_NETWORK"
    fi
    if [[ $OWN_IMAGES -eq 1 ]]; then
        timeout 60 "${P[@]}" rmi -f "$PRIVNET_IMAGE" "$TESTAPP_IMAGE" >/dev/null 2>&1
    fi
    rm -rf "$WORK"
    log "teardown done"
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated (time limit?)"; exit 143' TERM

# retry SECONDS CMD...: runs CMD until it succeeds, at most SECONDS (each attempt is bounded by CMD itself).
retry() {
    local limit="$1" start=$SECONDS
    shift
    until "$@"; do
        if ((SECONDS - start >= limit)); then
            return 1
        fi
        sleep 1
    done
}

# app POD ARGS...: runs privnet-testapp inside POD's app container (i.e. in the pod's network namespace).
app() {
    local pod="$1"
    shift
    timeout 90 "${P[@]}" exec "$RUN_ID-$pod-app" privnet-testapp "$@"
}

# expect_fail DESCRIPTION CMD...: CMD must fail.
expect_fail() {
    local what="$1"
    shift
    if "$@" >"$WORK/expect_fail.out" 2>&1; then
        cat "$WORK/expect_fail.out"
        die "$what: succeeded but must not"
    fi
    log "ok (refused as expected): $what: $(grep -v '^[[:space:]]*$' "$WORK/expect_fail.out" | tail -n 1)"
}

# --- 1. images -------------------------------------------------------------------------------------------
if [[ $OWN_IMAGES -eq 1 ]]; then
    log "building images $PRIVNET_IMAGE and $TESTAPP_IMAGE"
    if ! ENGINE=podman PRIVNET_IMAGE="$PRIVNET_IMAGE" TESTAPP_IMAGE="$TESTAPP_IMAGE" \
        timeout 1500 "$ROOT/scripts/build-image.sh" all >"$WORK/build.log" 2>&1; then
        tail -n 40 "$WORK/build.log"
        die "image build failed"
    fi
    grep -E '^(image|build-image)' "$WORK/build.log" | sed 's/^/    /'
fi
for image in "$PRIVNET_IMAGE" "$TESTAPP_IMAGE"; do
    timeout 30 "${P[@]}" image exists "$image" || die "image $image was not built"
    log "image $image: $("${P[@]}" image inspect --format '{{.Size}}' "$image") bytes"
done

# --- 2. network and pods ---------------------------------------------------------------------------------
log "creating network $NET ($SUBNET)"
timeout 60 "${P[@]}" network create --subnet "$SUBNET" "$NET" >/dev/null
CREATED_NETWORK="$NET"

for pod in a1 a2 b1; do
    timeout 120 "${P[@]}" pod create --name "$RUN_ID-$pod" --network "$NET" --ip "${UNDERLAY[$pod]}" >/dev/null
    CREATED_PODS+=("$RUN_ID-$pod")
    timeout 120 "${P[@]}" run -d --name "$RUN_ID-$pod-app" --pod "$RUN_ID-$pod" \
        --init --read-only --cap-drop ALL --stop-timeout 5 \
        "$TESTAPP_IMAGE" serve --tcp "$TCP_PORT" --udp "$UDP_PORT" >/dev/null
    log "pod $pod up on ${UNDERLAY[$pod]}"
done
for pod in a1 a2 b1; do
    retry 30 app "$pod" send-tcp "127.0.0.1:$TCP_PORT" --bytes 1 --seed 0 >/dev/null ||
        die "test app in $pod does not answer on loopback"
done

# Options of every sidecar container: TUN mode, uid 0 with nothing but NET_ADMIN, read-only root.
# shellcheck disable=SC2054 # the commas are inside the --tmpfs option value
SIDECAR_OPTS=(--user 0 --cap-drop ALL --cap-add NET_ADMIN --device /dev/net/tun --read-only
    --tmpfs /run/privnet:rw,size=1m,mode=0700 --stop-timeout "$SIDECAR_GRACE")

# --- 3. infra checks (no privnet data path needed) -------------------------------------------------------
log "infra: sidecar image runs in pod a1 with the sidecar's options"
timeout 60 "${P[@]}" run --rm --pod "$RUN_ID-a1" "${SIDECAR_OPTS[@]}" "$PRIVNET_IMAGE" --help >"$WORK/help.out" 2>&1 ||
    {
        cat "$WORK/help.out"
        die "privnet --help failed in the sidecar image"
    }

log "infra: TUN device and capabilities as the sidecar sees them"
timeout 60 "${P[@]}" run --rm --pod "$RUN_ID-a1" "${SIDECAR_OPTS[@]}" --entrypoint privnet-testapp \
    "$TESTAPP_IMAGE" selfcheck --device /dev/net/tun | tee "$WORK/selfcheck.out" | sed 's/^/    /'
grep -q '^capeff: 0000000000001000$' "$WORK/selfcheck.out" || die "sidecar options do not give exactly CAP_NET_ADMIN"
grep -q 'opened read-write' "$WORK/selfcheck.out" || die "/dev/net/tun not usable with the sidecar options"

log "infra: containers of a pod share its network namespace"
timeout 60 "${P[@]}" run --rm --pod "$RUN_ID-a1" --read-only --cap-drop ALL "$TESTAPP_IMAGE" \
    send-tcp "127.0.0.1:$TCP_PORT" --bytes 65536 --seed 7 | sed 's/^/    /'

log "infra: pod-to-pod over the podman bridge (underlay)"
for pair in a1:a2 a2:a1 b1:a1; do
    from="${pair%%:*}" to="${pair##*:}"
    app "$from" send-tcp "${UNDERLAY[$to]}:$TCP_PORT" --bytes 4194304 --seed 11 | sed "s/^/    $from -> $to: /"
    app "$from" udp-ping "${UNDERLAY[$to]}:$UDP_PORT" --count 5 | sed "s/^/    $from -> $to: /"
done

if [[ "$STAGE" == infra ]]; then
    FAILED=0
    log "PASS (PODS_TEST_STAGE=infra: overlay checks skipped)"
    exit 0
fi

# --- 4. credentials and configs (full stage) -------------------------------------------------------------
PRIVNET_BIN="$ROOT/target/x86_64-unknown-linux-gnu/release/privnet"
[[ -x "$PRIVNET_BIN" ]] || die "$PRIVNET_BIN missing (built by scripts/build-image.sh)"

log "generating credentials with the privnet CLI"
for net in neta netb; do
    timeout 60 "$PRIVNET_BIN" ca init --name "$net" --prefix "$OVERLAY_PREFIX" --out-dir "$WORK/$net" >/dev/null
    for f in ca.key ca.crt network.psk; do
        [[ -s "$WORK/$net/$f" ]] || die "privnet ca init did not write $net/$f"
    done
done
for pod in a1 a2 b1; do
    dir="$WORK/$pod"
    mkdir -p "$dir"
    timeout 60 "$PRIVNET_BIN" keygen --out "$dir/member.key" >"$dir/member.pub"
    [[ -s "$dir/member.key" && -s "$dir/member.pub" ]] || die "privnet keygen wrote nothing for $pod"
    timeout 60 "$PRIVNET_BIN" cert issue --ca-dir "$WORK/${NETWORK_OF[$pod]}" --name "$pod" \
        --address "${OVERLAY[$pod]}" --public-key "$dir/member.pub" --out "$dir/member.crt" >"$dir/cert-issue.out"
    cp "$WORK/${NETWORK_OF[$pod]}/ca.crt" "$WORK/${NETWORK_OF[$pod]}/network.psk" "$dir/"
done

# =========================================================================================================
# CONFIG GENERATION: the one place that knows the sidecar's config schema. Written against
# docs/CONFIG.md ([node], [tun], [status], [log], [[peer]]). Adjust here if the schema changes.
# [status] socket is what `privnet health` (no arguments: PRIVNET_CONFIG -> [status] socket) connects to;
# /run/privnet is the sidecar's tmpfs.
#   write_member_config POD  -> $WORK/POD/privnet.toml
# Paths are relative (the loader resolves them against the file's directory), so the same file is checked
# on the host with `privnet check` and used in the container, where $WORK/POD is mounted at /etc/privnet.
# A member's own overlay address is in its certificate. Members list every other member of their network
# as a peer; b1 additionally lists a1 and a2 with their real public keys and endpoints (public facts), so the
# isolation check is a real attempt that only credentials (other CA, other PSK) can stop.
# =========================================================================================================
write_member_config() {
    local pod="$1" peer
    {
        cat <<EOF
# generated by tests/container/pods.sh for pod $pod
[node]
network = "${NETWORK_OF[$pod]}"
private_key = "member.key"
certificate = "member.crt"
ca_certificates = ["ca.crt"]
network_psk = "network.psk"
listen = "0.0.0.0:$PRIVNET_PORT"

[tun]
mode = "tun"
name = "privnet0"

[status]
socket = "/run/privnet/status.sock"

[log]
level = "debug"
EOF
        for peer in a1 a2 b1; do
            [[ "$peer" == "$pod" ]] && continue
            if [[ "${NETWORK_OF[$peer]}" == "${NETWORK_OF[$pod]}" || "$pod" == b1 ]]; then
                printf '\n[[peer]]\nname = "%s"\npublic_key = "%s"\naddresses = ["%s/32"]\nendpoint = "%s:%s"\npersistent_keepalive = 5\n' \
                    "$peer" "$(tr -d '[:space:]' <"$WORK/$peer/member.pub")" "${OVERLAY[$peer]}" \
                    "${UNDERLAY[$peer]}" "$PRIVNET_PORT"
            fi
        done
    } >"$WORK/$pod/privnet.toml"
}
# =========================================================================================================

for pod in a1 a2 b1; do
    write_member_config "$pod"
    # Secret files must be owner-only (the sidecar refuses looser modes); the sidecar runs as uid 0.
    chmod 0400 "$WORK/$pod/member.key" "$WORK/$pod/network.psk"
    timeout 30 "$PRIVNET_BIN" check --config "$WORK/$pod/privnet.toml" | sed 's/^/    /' ||
        die "privnet check rejects the config of $pod"
done

# --- 5. sidecars -----------------------------------------------------------------------------------------
sidecar_running() { [[ "$("${P[@]}" inspect -f '{{.State.Running}}' "$RUN_ID-$1-privnet" 2>/dev/null)" == true ]]; }
sidecar_healthy() { timeout 10 "${P[@]}" exec "$RUN_ID-$1-privnet" privnet health >/dev/null 2>&1; }
# wait_healthy POD: until `privnet health` passes (60 s at most); fails at once if the sidecar exited.
wait_healthy() {
    local pod="$1" start=$SECONDS
    until sidecar_healthy "$pod"; do
        sidecar_running "$pod" || die "sidecar of $pod exited ($("${P[@]}" inspect -f '{{.State.ExitCode}}' "$RUN_ID-$pod-privnet"))"
        ((SECONDS - start < 60)) || die "sidecar of $pod not healthy within 60 s"
        sleep 1
    done
}

for pod in a1 a2 b1; do
    timeout 120 "${P[@]}" run -d --name "$RUN_ID-$pod-privnet" --pod "$RUN_ID-$pod" "${SIDECAR_OPTS[@]}" \
        -v "$WORK/$pod:/etc/privnet:ro" "$PRIVNET_IMAGE" >/dev/null
done
for pod in a1 a2 b1; do
    wait_healthy "$pod"
    log "sidecar of $pod healthy"
done

# --- 6. overlay reachability in network A ----------------------------------------------------------------
overlay_ok() { # FROM TO
    app "$1" send-tcp "${OVERLAY[$2]}:$TCP_PORT" --bytes 8388608 --seed 23 --connect-timeout-ms 3000 --deadline-secs 60 &&
        app "$1" udp-ping "${OVERLAY[$2]}:$UDP_PORT" --count 10 --timeout-ms 1000 --retries 2
}
for pair in a1:a2 a2:a1; do
    from="${pair%%:*}" to="${pair##*:}"
    # The first packets trigger the handshake: allow a bounded warm-up.
    retry 30 overlay_ok "$from" "$to" || die "$from -> $to over the overlay failed"
    log "ok: $from -> $to over the overlay (TCP checksum + UDP echo)"
done
for pod in a1 a2; do
    timeout 10 "${P[@]}" exec "$RUN_ID-$pod-privnet" privnet health --require-peer >/dev/null ||
        die "privnet health --require-peer fails in $pod after overlay traffic"
done
log "ok: privnet health --require-peer passes in a1 and a2"

# ping, with the host's ping run inside pod a1's network namespace (the scratch images have none).
if command -v ping >/dev/null 2>&1 && command -v nsenter >/dev/null 2>&1; then
    a1_pid="$("${P[@]}" inspect -f '{{.State.Pid}}' "$RUN_ID-a1-app")"
    timeout 30 nsenter -t "$a1_pid" -n ping -c 3 -W 2 "${OVERLAY[a2]}" | sed 's/^/    /' ||
        die "ping a1 -> a2 over the overlay failed"
    log "ok: ping a1 -> a2 over the overlay"
    b1_pid="$("${P[@]}" inspect -f '{{.State.Pid}}' "$RUN_ID-b1-app")"
    expect_fail "ping b1 -> a1" timeout 30 nsenter -t "$b1_pid" -n ping -c 2 -W 2 "${OVERLAY[a1]}"
else
    log "skip: ping (no ping/nsenter on the host)"
fi

# --- 7. network B is isolated from network A -------------------------------------------------------------
for pair in b1:a1 b1:a2 a1:b1; do
    from="${pair%%:*}" to="${pair##*:}"
    expect_fail "TCP $from -> $to (overlay)" app "$from" send-tcp "${OVERLAY[$to]}:$TCP_PORT" --bytes 1024 --seed 1 \
        --connect-timeout-ms 3000 --io-timeout-ms 3000 --deadline-secs 10
    expect_fail "UDP $from -> $to (overlay)" app "$from" udp-ping "${OVERLAY[$to]}:$UDP_PORT" --count 3 --timeout-ms 500 --retries 1
done
# The refusal is by credentials, not by routing: b1 did send handshakes, none completed, and a1 and a2
# dropped them at mac1 (keyed with the network PSK, which b1 does not have).
expect_fail "privnet health --require-peer in b1" timeout 10 "${P[@]}" exec "$RUN_ID-b1-privnet" privnet health --require-peer
timeout 10 "${P[@]}" exec "$RUN_ID-b1-privnet" privnet status >"$WORK/b1.status" || die "privnet status fails in b1"
grep -Eq 'handshakes [1-9][0-9]* initiated / 0 completed' "$WORK/b1.status" || {
    cat "$WORK/b1.status"
    die "b1's status does not show handshakes initiated and none completed"
}
for pod in a1 a2; do
    timeout 10 "${P[@]}" exec "$RUN_ID-$pod-privnet" privnet status >"$WORK/$pod.status" || die "privnet status fails in $pod"
    grep -Eq 'drops:.*bad_mac1 [1-9]' "$WORK/$pod.status" || {
        cat "$WORK/$pod.status"
        die "$pod's status shows no handshake dropped for a bad mac1 (b1's attempts)"
    }
done
log "ok: b1's handshakes ($(grep -Eo 'handshakes [0-9]+ initiated' "$WORK/b1.status")) were refused by a1 and a2 (bad_mac1)"

# --- 8. restart a2's sidecar: SIGTERM drains in time, and a1<->a2 recovers on its own ---------------------
a1_started="$("${P[@]}" inspect -f '{{.State.StartedAt}}' "$RUN_ID-a1-privnet")"
# The sidecar is PID 1 of its container (no --init): the SIGTERM handling below is privnet's own.
[[ "$(timeout 20 "${P[@]}" top "$RUN_ID-a2-privnet" pid args | awk 'NR > 1 && $1 == 1 { print $2 }')" == privnet ]] ||
    die "privnet is not PID 1 in a2's sidecar container"
start=$SECONDS
timeout $((SIDECAR_GRACE + 30)) "${P[@]}" stop -t "$SIDECAR_GRACE" "$RUN_ID-a2-privnet" >/dev/null
took=$((SECONDS - start))
code="$("${P[@]}" inspect -f '{{.State.ExitCode}}' "$RUN_ID-a2-privnet")"
((took < SIDECAR_GRACE)) || die "a2's sidecar did not exit within ${SIDECAR_GRACE}s of SIGTERM (took ${took}s, exit $code)"
[[ "$code" == 0 ]] || die "a2's sidecar exited with $code after SIGTERM (expected 0: privnet handles SIGTERM)"
timeout 20 "${P[@]}" logs "$RUN_ID-a2-privnet" >"$WORK/a2-stop.log" 2>&1 || true
grep -q 'SIGTERM: shutting down' "$WORK/a2-stop.log" || die "a2's sidecar did not log its SIGTERM shutdown"
log "ok: a2's sidecar (PID 1) handled SIGTERM and exited in ${took}s (exit $code)"

expect_fail "TCP a1 -> a2 while a2's sidecar is down" app a1 send-tcp "${OVERLAY[a2]}:$TCP_PORT" --bytes 1024 --seed 2 \
    --connect-timeout-ms 2000 --io-timeout-ms 2000 --deadline-secs 5

timeout 60 "${P[@]}" start "$RUN_ID-a2-privnet" >/dev/null
wait_healthy a2
start=$SECONDS
retry 60 overlay_ok a1 a2 || die "a1 -> a2 did not recover within 60 s of a2's sidecar restart"
retry 30 overlay_ok a2 a1 || die "a2 -> a1 did not recover"
log "ok: a1 <-> a2 recovered $((SECONDS - start))s after a2's sidecar came back"
[[ "$("${P[@]}" inspect -f '{{.State.StartedAt}}' "$RUN_ID-a1-privnet")" == "$a1_started" ]] ||
    die "a1's sidecar was restarted: recovery was not on its own"

FAILED=0
log "PASS (PODS_TEST_STAGE=full)"
