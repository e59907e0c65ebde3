#!/usr/bin/env bash
# End-to-end tests of exposures (`[[expose]]`, issue 15, docs/EXPOSURE.md): real sidecars in network
# namespaces, an outside namespace that is not a member, real TCP and UDP traffic. Run by
# scripts/test.sh as root, after tests/netns/policy.sh.
#
# Topology (namespaces named pex-<pid>-*, created here; nothing touches the host's root namespace):
#
#   pex-<pid>-br    bridge br0 (10.233.0.1/24): the "internet" between everybody
#   pex-<pid>-a     member a, the exposed one: underlay (public) 10.233.0.11, overlay 10.79.0.11
#   pex-<pid>-b     member b, the backend:     underlay 10.233.0.12, overlay 10.79.0.12
#   pex-<pid>-c     member c, not exposed:     underlay 10.233.0.13, overlay 10.79.0.13
#   pex-<pid>-out   the outside, not a member: 10.233.0.100 (allowed), .101 (block-listed), .102
#                   (over its rate), .103 (another source), .120 (outside the allow-list); a route to
#                   the overlay 10.79.0.0/16 through a (a cannot be used as a router into it)
#
# a exposes 10.233.0.11:8443 (TCP and UDP) -> b:8080 with a PROXY v2 header, allow 10.233.0.96/28,
# block-list WORK/a/block.netset (Spamhaus DROP format), 2 new connections/s per source (burst 3).
# b and c run expose_helper.py's backend on their overlay address, port 8080 (it answers with the
# PROXY header it read). Cases:
#   X1 outside -> a:8443 reaches b's service (TCP and UDP), and b sees the real client address and
#      port in the PROXY v2 header (TCP and UDP); nothing exposed on c: outside cannot reach c's or
#      b's service by their overlay addresses, nor a's overlay address
#   X2 a block-listed outside address is closed at once (TCP) / dropped (UDP); an allowed one gets
#      through; an address outside the allow-list is refused; counters in privnet status and /metrics
#   X3 a source over its rate limit is throttled while another source is not
#   X4 the block-list file changes: followed without a signal; a broken version is refused (status
#      names file and line) and the running list stays
# Every command is bounded by `timeout`, the whole run by EXPOSE_E2E_TIMEOUT. Cleanup (sidecars,
# helpers, namespaces, temp files) runs on EXIT, even on failure or interrupt.
#
# Usage:  sudo tests/netns/expose.sh     (builds nothing: run `cargo build --release -p privnet-sidecar
#                                         -p privnet-testapp` first, or set PRIVNET)
# Environment:
#   PRIVNET                  binary (default target/release/privnet)
#   EXPOSE_E2E_TIMEOUT       bound on the whole run in seconds (default 240)
#   EXPOSE_E2E_KEEP=1        keep the work directory (configs, logs) and print its path
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SELF="$ROOT/tests/netns/expose.sh"
if [[ -z "${EXPOSE_E2E_INNER:-}" ]]; then
    export EXPOSE_E2E_INNER=1
    exec timeout -k 20 "${EXPOSE_E2E_TIMEOUT:-240}" bash "$SELF" "$@"
fi
if [[ "$(id -u)" -ne 0 ]]; then
    echo "expose.sh: needs root (network namespaces, TUN devices)" >&2
    exit 1
fi

PRIVNET="${PRIVNET:-$ROOT/target/release/privnet}"
HELPER="$ROOT/tests/netns/expose_helper.py"
[[ -x "$PRIVNET" ]] || {
    echo "expose.sh: $PRIVNET missing: cargo build --release -p privnet-sidecar -p privnet-testapp" >&2
    exit 1
}
for tool in ip python3 timeout; do
    command -v "$tool" >/dev/null || {
        echo "expose.sh: $tool missing (scripts/test.sh installs it)" >&2
        exit 1
    }
done

RUN="pex-$$"
BR="$RUN-br"
MEMBERS=(a b c)
NAMESPACES=(a b c out br)
declare -A UNDERLAY=([a]=10.233.0.11 [b]=10.233.0.12 [c]=10.233.0.13)
declare -A OV4=([a]=10.79.0.11 [b]=10.79.0.12 [c]=10.79.0.13)
OUT_OK=10.233.0.100
OUT_BLOCKED=10.233.0.101
OUT_FAST=10.233.0.102
OUT_OTHER=10.233.0.103
OUT_NOT_ALLOWED=10.233.0.120
PUBLIC="${UNDERLAY[a]}"
EXPOSED=8443
SERVICE=8080
PORT=51820
METRICS=127.0.0.1:9464

WORK="$(mktemp -d "${TMPDIR:-/tmp}/pex-$$.XXXXXX")"
chmod 700 "$WORK"
PASSED=0
FAILED=0
FAILED_NAMES=()
CLEANED=0

ns() { echo "$RUN-$1"; }
nsx() { # nsx NS CMD...: run CMD inside the namespace
    local m="$1"
    shift
    ip netns exec "$(ns "$m")" "$@"
}
log() { printf '    %s\n' "$*"; }
fail() {
    printf '    FAILED: %s\n' "$*" >&2
    exit 1
}
track() { echo "$1" >>"$WORK/pids"; }

# --- cleanup ---------------------------------------------------------------------------------------------
cleanup() {
    [[ "$CLEANED" == 1 ]] && return 0
    CLEANED=1
    set +e
    local f pid n
    for f in "$WORK"/*/pid; do
        [[ -f "$f" ]] && kill -TERM "$(cat "$f")" 2>/dev/null
    done
    if [[ -f "$WORK/pids" ]]; then
        while read -r pid; do kill -TERM "$pid" 2>/dev/null; done <"$WORK/pids"
    fi
    sleep 0.3
    for f in "$WORK"/*/pid; do
        [[ -f "$f" ]] && kill -KILL "$(cat "$f")" 2>/dev/null
    done
    if [[ -f "$WORK/pids" ]]; then
        while read -r pid; do kill -KILL "$pid" 2>/dev/null; done <"$WORK/pids"
    fi
    for n in "${NAMESPACES[@]}"; do
        for pid in $(ip netns pids "$RUN-$n" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    done
    for n in "${NAMESPACES[@]}"; do
        ip netns del "$RUN-$n" 2>/dev/null
    done
    if [[ "${EXPOSE_E2E_KEEP:-0}" == 1 ]]; then
        echo "expose e2e: work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    return 0
}
on_exit() {
    local rc=$?
    cleanup
    if ip netns list | awk '{print $1}' | grep -q "^$RUN-"; then
        echo "expose e2e: FAIL cleanup: namespaces left: $(ip netns list | awk '{print $1}' | grep "^$RUN-" | tr '\n' ' ')" >&2
        rc=1
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- test runner ---------------------------------------------------------------------------------------
run_test() {
    local name="$1" fn="$2" rc t0 t1
    printf '\n--- %s\n' "$name"
    t0=$(date +%s.%N)
    set +e
    (
        set -eE
        trap 'echo "    error: line $LINENO: $BASH_COMMAND (exit $?)" >&2' ERR
        "$fn"
    )
    rc=$?
    set -e
    t1=$(date +%s.%N)
    if [[ $rc -eq 0 ]]; then
        PASSED=$((PASSED + 1))
        printf 'PASS %s (%s s)\n' "$name" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
    else
        FAILED=$((FAILED + 1))
        FAILED_NAMES+=("$name")
        printf 'FAIL %s (exit %d)\n' "$name" "$rc"
    fi
    local m pid
    for m in "${MEMBERS[@]}"; do
        pid="$(cat "$WORK/$m/pid" 2>/dev/null || true)"
        if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
            echo "    WARNING: $m's sidecar (pid ${pid:-?}) is not running; its log ends with:"
            tail -n 3 "$WORK/$m/sidecar.log" 2>/dev/null | sed 's/^/      /'
        fi
    done
}

# --- sidecars and probes --------------------------------------------------------------------------------
cfg() { echo "$WORK/$1/$1.toml"; }

start_sidecar() { # start_sidecar MEMBER: privnet up in the member's namespace; pid -> WORK/M/pid
    local m="$1"
    rm -f "$WORK/$m/pid"
    # Through a symlink with its own name (same binary): a `pkill -f "privnet up"` elsewhere on a
    # shared machine must not take this run's sidecars down.
    [[ -e "$WORK/privnet-expose-e2e" ]] || ln -s "$PRIVNET" "$WORK/privnet-expose-e2e"
    (
        set +eE
        trap - ERR
        bash -c 'echo $$ >"$1"; exec ip netns exec "$2" "$3" up --config "$4"' _ \
            "$WORK/$m/pid" "$(ns "$m")" "$WORK/privnet-expose-e2e" "$(cfg "$m")" >>"$WORK/$m/sidecar.log" 2>&1 </dev/null
    ) >/dev/null 2>&1 &
    for _ in $(seq 1 50); do
        [[ -s "$WORK/$m/pid" ]] && return 0
        sleep 0.02
    done
    echo "start_sidecar $m: no pid" >&2
    return 1
}

status_json() { timeout 5 "$PRIVNET" status --json --config "$(cfg "$1")"; }
get() { status_json "$1" | python3 "$HELPER" status-get "0.$2"; } # get MEMBER PATH (of its one network)
probe() { # probe KIND SRC DST PORT [TIMEOUT]: a helper probe from the outside namespace; JSON in LAST
    local out rc=0
    out="$(timeout 15 ip netns exec "$(ns out)" python3 "$HELPER" "$1" --src "$2" --dst "$3" --port "$4" --timeout "${5:-3}")" || rc=$?
    log "out $2 -> $3:$4 ($1): $out"
    [[ $rc -eq 0 ]] || fail "probe $*: exit $rc"
    LAST="$out"
}
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$LAST" "$1"; }

wait_established() { # wait_established MEMBER N [SECONDS]
    local m="$1" n="$2" secs="${3:-10}" deadline up
    deadline=$(($(date +%s) + secs))
    while (($(date +%s) < deadline)); do
        up="$(status_json "$m" 2>/dev/null | python3 -c 'import json,sys; print(sum(1 for n in json.load(sys.stdin) for p in n["peers"] if p["established"]))' 2>/dev/null || echo 0)"
        ((up >= n)) && return 0
        sleep 0.2
    done
    echo "$m: fewer than $n peers established after $secs s" >&2
    return 1
}

# wait_counter PATH ABOVE: until a's status field PATH exceeds ABOVE (exposure counters are read
# live from the status socket); prints it.
wait_counter() {
    local v=0
    for _ in $(seq 1 30); do
        v="$(get a "$1")"
        if ((v > $2)); then
            echo "$v"
            return 0
        fi
        sleep 0.1
    done
    echo "a: $1 stayed at $v (expected > $2)" >&2
    return 1
}

# --- setup -----------------------------------------------------------------------------------------------
setup_topology() {
    ip netns add "$BR"
    ip -n "$BR" link set lo up
    ip -n "$BR" link add br0 type bridge forward_delay 0 stp_state 0
    ip -n "$BR" addr add 10.233.0.1/24 dev br0
    ip -n "$BR" link set br0 up
    local m ok a
    for m in "${MEMBERS[@]}" out; do
        ip netns add "$(ns "$m")"
        ip -n "$(ns "$m")" link set lo up
        ip link add ul0 netns "$(ns "$m")" type veth peer name "p-$m" netns "$BR"
        ip -n "$BR" link set "p-$m" master br0 up
        ip -n "$(ns "$m")" link set ul0 mtu 1500 up
    done
    for m in "${MEMBERS[@]}"; do
        ip -n "$(ns "$m")" addr add "${UNDERLAY[$m]}/24" dev ul0
    done
    for a in "$OUT_OK" "$OUT_BLOCKED" "$OUT_FAST" "$OUT_OTHER" "$OUT_NOT_ALLOWED"; do
        ip -n "$(ns out)" addr add "$a/24" dev ul0
    done
    # The outside knows where the overlay is and tries it through a (a does not forward).
    ip -n "$(ns out)" route add 10.79.0.0/16 via "$PUBLIC"
    # A new namespace inherits IPv4 forwarding from the host (net.core.devconf_inherit_init_net = 0), and
    # CI hosts often forward: switch it off in a explicitly, then check it took.
    nsx a sysctl -qw net.ipv4.ip_forward=0
    [[ "$(nsx a cat /proc/sys/net/ipv4/ip_forward)" == 0 ]] || fail "a forwards IPv4: the reachability case would prove nothing"
    for m in "${MEMBERS[@]}"; do
        ok=0
        for _ in $(seq 1 50); do
            if nsx out ping -n -c1 -W 0.2 -q "${UNDERLAY[$m]}" >/dev/null 2>&1; then
                ok=1
                break
            fi
        done
        [[ $ok == 1 ]] || fail "underlay: the outside cannot reach ${UNDERLAY[$m]}"
    done
}

setup_credentials() {
    local m
    "$PRIVNET" ca init --name exnet --prefix 10.79.0.0/16 --out-dir "$WORK/ca" >"$WORK/ca.log"
    for m in "${MEMBERS[@]}"; do
        mkdir -p "$WORK/$m"
        "$PRIVNET" keygen --out "$WORK/$m/private.key" >/dev/null 2>&1
        "$PRIVNET" cert issue --ca-dir "$WORK/ca" --name "$m" --address "${OV4[$m]}" \
            --public-key "$WORK/$m/private.key.pub" --out "$WORK/$m/member.crt" >/dev/null 2>&1
    done
}

write_block_list() { # write_block_list LINES...: a's block-list, replaced atomically (a rename)
    printf '%s\n' "; Spamhaus DROP format, as published" "$@" >"$WORK/a/block.netset.tmp"
    mv "$WORK/a/block.netset.tmp" "$WORK/a/block.netset"
}

write_config() { # write_config MEMBER: every other member is a peer; a has the exposure
    local m="$1" p
    {
        cat <<EOF
# privnet expose e2e: member $m
[node]
network = "exnet"
private_key = "private.key"
certificate = "member.crt"
ca_certificates = ["../ca/ca.crt"]
network_psk = "../ca/network.psk"
listen = "0.0.0.0:$PORT"

[tun]
mode = "tun"
name = "privnet0"
mtu = 1420
underlay_mtu = 1500

[status]
socket = "$WORK/$m/status.sock"

[log]
level = "info"
EOF
        if [[ "$m" == a ]]; then
            cat <<EOF

[metrics]
listen = "$METRICS"

[[expose]]
name = "web"
listen = "$PUBLIC:$EXPOSED"
protocol = "both"
to = "b:$SERVICE"
proxy_protocol = "v2"
allow = ["10.233.0.96/28"]
block_lists = ["block.netset"]
connections_per_second = 2
connections_burst = 3
max_connections_per_source = 8
max_connections = 64
udp_idle_secs = 20
EOF
        fi
        for p in "${MEMBERS[@]}"; do
            [[ "$p" == "$m" ]] && continue
            cat <<EOF

[[peer]]
name = "$p"
public_key = "$(cat "$WORK/$p/private.key.pub")"
addresses = ["${OV4[$p]}"]
endpoint = "${UNDERLAY[$p]}:$PORT"
EOF
        done
    } >"$(cfg "$m")"
    "$PRIVNET" check --config "$(cfg "$m")" >"$WORK/$m/check.log" 2>&1 ||
        fail "privnet check $m: $(cat "$WORK/$m/check.log")"
}

setup() {
    setup_topology
    setup_credentials
    mkdir -p "$WORK/out"
    write_block_list "$OUT_BLOCKED/32 ; SBL000001" "192.0.2.0/24 ; SBL000002"
    local m
    for m in "${MEMBERS[@]}"; do write_config "$m"; done
    grep -q 'exposure web: tcp+udp' "$WORK/a/check.log" || fail "privnet check a does not describe the exposure: $(cat "$WORK/a/check.log")"
    log "check a: $(grep 'exposure web' "$WORK/a/check.log" | sed 's/^ *//')"
    for m in "${MEMBERS[@]}"; do start_sidecar "$m"; done
    for m in "${MEMBERS[@]}"; do wait_established "$m" 2 15; done
    # The backends listen on the overlay addresses (the TUN device must exist first).
    for m in b c; do
        nsx "$m" python3 "$HELPER" serve --bind "${OV4[$m]}" --port "$SERVICE" --seconds 600 \
            --ready "$WORK/$m/backend.ready" >"$WORK/$m/backend.log" 2>&1 &
        track $!
    done
    for _ in $(seq 1 50); do
        [[ -f "$WORK/b/backend.ready" && -f "$WORK/c/backend.ready" ]] && break
        sleep 0.1
    done
    [[ -f "$WORK/b/backend.ready" && -f "$WORK/c/backend.ready" ]] || fail "backends not ready: $(cat "$WORK"/[bc]/backend.log)"
    grep -q 'exposure web' "$WORK/a/sidecar.log" || fail "a's log does not say it exposes web"
    log "a: $(grep -m1 'exposure web' "$WORK/a/sidecar.log" | cut -c1-220)"
}

# --- cases -----------------------------------------------------------------------------------------------
# X1: through a to b, with the client's own address in the PROXY v2 header; nothing else reachable.
test_exposed_and_private() {
    probe tcp "$OUT_OK" "$PUBLIC" "$EXPOSED"
    [[ "$(field result)" == line ]] || fail "the exposed TCP service did not answer"
    [[ "$(field line)" == "proxy=$(field local) dst=$PUBLIC:$EXPOSED transport=tcp" ]] ||
        fail "b did not see the client $(field local) in the PROXY v2 header: $(field line)"
    probe udp "$OUT_OK" "$PUBLIC" "$EXPOSED"
    [[ "$(field result)" == reply ]] || fail "the exposed UDP service did not answer"
    [[ "$(field line)" == "proxy=$(field local) dst=$PUBLIC:$EXPOSED transport=udp" ]] ||
        fail "b did not see the UDP client $(field local) in the PROXY v2 header: $(field line)"
    # Not exposed: c's service, b's service and a by their overlay addresses, from outside.
    probe tcp "$OUT_OK" "${OV4[c]}" "$SERVICE" 1.5
    [[ "$(field result)" != line ]] || fail "c's service is reachable from outside"
    probe tcp "$OUT_OK" "${OV4[b]}" "$SERVICE" 1.5
    [[ "$(field result)" != line ]] || fail "b's service is reachable from outside, bypassing the exposure"
    probe udp "$OUT_OK" "${OV4[c]}" "$SERVICE" 1.5
    [[ "$(field result)" == silence ]] || fail "c's UDP service answered the outside"
    # The members themselves reach c (the service works; it is only private).
    local inside
    inside="$(timeout 10 ip netns exec "$(ns a)" python3 "$HELPER" tcp --src "${OV4[a]}" --dst "${OV4[c]}" --port "$SERVICE")"
    log "a -> c:$SERVICE inside the network: $inside"
    [[ "$inside" == *'"result": "line"'* ]] || fail "a cannot reach c's service inside the network"
    [[ "$(get a exposures.0.targets.0.healthy)" == True ]] || fail "the target b is not shown healthy"
}

# X2: block-listed -> closed at once / dropped; allowed -> through; not in the allow-list -> refused.
test_block_and_allow() {
    local blocked before_allowed
    blocked="$(get a exposures.0.refused.block_listed)"
    before_allowed="$(get a exposures.0.refused.not_allowed)"
    probe tcp "$OUT_BLOCKED" "$PUBLIC" "$EXPOSED"
    [[ "$(field result)" == closed ]] || fail "the block-listed source was not closed: $(field result)"
    (($(field ms) < 1000)) || fail "the block-listed source waited $(field ms) ms for the close"
    probe udp "$OUT_BLOCKED" "$PUBLIC" "$EXPOSED" 1
    [[ "$(field result)" == silence ]] || fail "the block-listed UDP source got an answer"
    probe tcp "$OUT_OTHER" "$PUBLIC" "$EXPOSED"
    [[ "$(field result)" == line ]] || fail "an allowed source was refused"
    probe tcp "$OUT_NOT_ALLOWED" "$PUBLIC" "$EXPOSED"
    [[ "$(field result)" == closed ]] || fail "a source outside the allow-list got in"
    blocked="$(wait_counter exposures.0.refused.block_listed "$((blocked + 1))")"
    log "a: block_listed $blocked, not_allowed $(wait_counter exposures.0.refused.not_allowed "$before_allowed")"
    [[ "$(get a exposures.0.block_lists.0.2)" -ge 2 ]] || fail "the list's own refusal counter did not move"
    local metrics
    metrics="$(timeout 5 ip netns exec "$(ns a)" python3 -c 'import urllib.request,sys; print(urllib.request.urlopen("http://'"$METRICS"'/metrics", timeout=3).read().decode())')"
    echo "$metrics" | grep -q '^privnet_expose_refused_total{network="exnet",exposure="web",reason="block_listed"} [1-9]' ||
        fail "/metrics has no block_listed refusals: $(echo "$metrics" | grep privnet_expose | head -n 5)"
    echo "$metrics" | grep -q '^privnet_expose_block_list_entries{network="exnet",exposure="web",list=".*block.netset"} 2' ||
        fail "/metrics does not show the block-list"
    log "metrics: $(echo "$metrics" | grep -c '^privnet_expose_') privnet_expose_* series"
    timeout 5 "$PRIVNET" status --config "$(cfg a)" | grep -A3 '^  expose web' | sed 's/^/    status: /'
}

# X3: 12 connections at once from one source against 2/s with a burst of 3: most are refused; another
# source right after is not affected.
test_rate_limit() {
    local before
    before="$(get a exposures.0.refused.connection_rate)"
    LAST="$(timeout 30 ip netns exec "$(ns out)" python3 "$HELPER" burst --src "$OUT_FAST" --dst "$PUBLIC" --port "$EXPOSED" --count 12 --timeout 3)"
    log "out $OUT_FAST: 12 connections: $LAST"
    local through
    through="$(field through)"
    ((through >= 3 && through <= 6)) || fail "$through of 12 got through at 2/s with a burst of 3"
    probe tcp "$OUT_OTHER" "$PUBLIC" "$EXPOSED"
    [[ "$(field result)" == line ]] || fail "another source was throttled with the fast one"
    log "a: connection_rate $(wait_counter exposures.0.refused.connection_rate "$((before + 5))")"
}

# X4: the list file changes (no signal): followed within a few polls; a broken version is refused
# with its file and line, and the running list stays.
test_list_reload() {
    write_block_list "$OUT_BLOCKED/32 ; SBL000001" "$OUT_OTHER ; SBL000003"
    local ok=0
    for _ in $(seq 1 40); do
        if [[ "$(get a exposures.0.block_lists.0.1)" == 2 ]] && grep -q "$OUT_OTHER" "$WORK/a/block.netset"; then
            probe tcp "$OUT_OTHER" "$PUBLIC" "$EXPOSED" 2
            if [[ "$(field result)" == closed ]]; then
                ok=1
                break
            fi
        fi
        sleep 0.25
    done
    [[ $ok == 1 ]] || fail "the changed block-list was not applied"
    probe tcp "$OUT_OK" "$PUBLIC" "$EXPOSED"
    [[ "$(field result)" == line ]] || fail "an allowed source was refused after the list change"
    write_block_list "$OUT_BLOCKED/32" "10.0.0.0/33"
    local refused=""
    for _ in $(seq 1 40); do
        refused="$(get a exposures.0.lists_refused)"
        [[ "$refused" == *"block.netset:3"* ]] && break
        sleep 0.25
    done
    [[ "$refused" == *"block.netset:3"* ]] || fail "the broken list was not reported with its line: $refused"
    log "a: lists_refused $refused"
    grep -q 'block-list refused, keeping the running one' "$WORK/a/sidecar.log" || fail "the refusal is not in a's log"
    probe tcp "$OUT_OTHER" "$PUBLIC" "$EXPOSED" 2
    [[ "$(field result)" == closed ]] || fail "the running list was not kept"
}

# --- main ------------------------------------------------------------------------------------------------
echo "expose e2e: work directory $WORK"
setup
run_test "X1 an exposed service is reachable from outside (PROXY v2, TCP and UDP); private members are not" test_exposed_and_private
run_test "X2 a block-listed source is refused, an allowed one gets through" test_block_and_allow
run_test "X3 a source over its rate limit is throttled, another is not" test_rate_limit
run_test "X4 block-list changes are followed; a broken one keeps the running list" test_list_reload
echo
echo "expose e2e: $PASSED passed, $FAILED failed"
if ((FAILED > 0)); then
    printf '  failed: %s\n' "${FAILED_NAMES[@]}"
    exit 1
fi
