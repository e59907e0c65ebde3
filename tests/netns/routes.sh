#!/usr/bin/env bash
# End-to-end tests of routing policies (issue 15, docs/POLICY.md "Routing policies"): two gateway
# members granted the same subnet route, a policy `[[route]]` entry ordering them, real traffic to a
# server behind both, the primary's sidecar killed. Run by scripts/test.sh as root, after
# tests/netns/policy.sh (same binaries).
#
# Topology (namespaces named rte-<pid>-*, created here; nothing touches the host's root namespace):
#
#   rte-<pid>-br      bridge br0: the underlay (10.236.0.0/24), one veth port per member
#   rte-<pid>-client  group [staff]: underlay 10.236.0.11, overlay 10.79.0.11
#   rte-<pid>-guest   group [guest]: underlay 10.236.0.12, overlay 10.79.0.12
#   rte-<pid>-gwa     gateway, granted 10.237.5.0/24: underlay 10.236.0.21, overlay 10.79.0.21,
#                     LAN 10.237.5.2
#   rte-<pid>-gwb     gateway, granted 10.237.5.0/24: underlay 10.236.0.22, overlay 10.79.0.22,
#                     LAN 10.237.5.3
#   rte-<pid>-lan     bridge lan0: the subnet behind both gateways
#   rte-<pid>-srv     the server: 10.237.5.10, no privnet; its route to the overlay is via gwa, and
#                     gwa's kernel has a fallback route to the overlay via gwb (metric 500), used
#                     once gwa's TUN device is gone: the server stays reachable through either
#                     gateway without address translation.
#   rte-<pid>-rtr     an underlay router: 10.236.0.1 on br0, 10.238.0.1 towards exit; the default
#                     route of client, guest, gwa and gwb (their main table's only way to exit)
#   rte-<pid>-exit    the exit, granted 0.0.0.0/0: underlay 10.238.0.31 (behind rtr), overlay
#                     10.79.0.31, WAN 203.0.113.2 with its default route via 203.0.113.1; forwards
#                     and masquerades (nft) what leaves through the WAN: privnet does no NAT
#   rte-<pid>-out     "the outside": 203.0.113.1 on the WAN, the host 198.51.100.10 on lo; no route
#                     to the overlay or the underlay (answers reach only the exit's WAN address)
#
# client and guest enforce client-policy.toml (allow, `[[route]] prefix = 10.237.5.0/24, via =
# ["gwa", "gwb"]`); the gateways enforce gw-policy.toml (allow, but deny group `guest` into the
# subnet); the exit enforces exit-policy.toml (allow, but deny group `guest` the outside). Cases:
#   R1 the route entry's priority: client's pings to the server go through gwa, not gwb
#   R2 a group denied the route: guest's pings are dropped at the gateway (policy_denied there);
#      guest still reaches gwa's own address
#   R3 failover: a ping every 100 ms from client to the server; gwa's sidecar is killed (SIGKILL);
#      the first answer through gwb must come within FAILOVER_MAX_MS of the kill (the stated time
#      is GATEWAY_DOWN_AFTER + GATEWAY_TICK = 3.25 s after the first unanswered packet); the
#      measured time is printed. `privnet status --json` on client shows gwb active and the
#      failover counted.
#   R4 the default route: client-policy.toml also has `[[route]] prefix = 0.0.0.0/0, via = ["exit"]`,
#      so client's sidecar installs 0.0.0.0/0 into the TUN in table 7077 with the rules `not fwmark
#      0x7077 table 7077` and `table main suppress_prefixlength 0`. client pings 198.51.100.10 (only
#      the exit can reach it) through the exit; its own underlay datagrams to the exit (10.238.0.31,
#      reachable only through the main table's default route via rtr) carry the mark and keep the
#      main table: the kernel's route for an unmarked packet to the exit's endpoint is the tunnel,
#      for a marked one rtr; the session stays up and nothing is counted endpoint_in_overlay.
#   R5 a group denied the default route: guest (same client policy) is refused the outside by the
#      exit's policy (policy_denied there), still reaches the exit's own overlay address.
#   R6 stop: client's sidecar stopped (SIGTERM): its rules and its table's route are gone.
# Every command is bounded by `timeout`, the whole run by ROUTES_E2E_TIMEOUT. Cleanup (sidecars,
# helpers, namespaces, temp files) runs on EXIT, even on failure or interrupt.
#
# Usage:  sudo tests/netns/routes.sh     (builds nothing: run `cargo build --release -p privnet-sidecar`
#                                         first, or set PRIVNET)
# Environment:
#   PRIVNET                  binary (default target/release/privnet)
#   ROUTES_E2E_TIMEOUT       bound on the whole run in seconds (default 180)
#   ROUTES_E2E_KEEP=1        keep the work directory (configs, logs) and print its path
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SELF="$ROOT/tests/netns/routes.sh"
if [[ -z "${ROUTES_E2E_INNER:-}" ]]; then
    export ROUTES_E2E_INNER=1
    exec timeout -k 20 "${ROUTES_E2E_TIMEOUT:-180}" bash "$SELF" "$@"
fi
if [[ "$(id -u)" -ne 0 ]]; then
    echo "routes.sh: needs root (network namespaces, TUN devices)" >&2
    exit 1
fi

PRIVNET="${PRIVNET:-$ROOT/target/release/privnet}"
HELPER="$ROOT/tests/netns/policy_helper.py"
[[ -x "$PRIVNET" ]] || {
    echo "routes.sh: $PRIVNET missing: cargo build --release -p privnet-sidecar" >&2
    exit 1
}
for tool in ip ping python3 timeout nft; do
    command -v "$tool" >/dev/null || {
        echo "routes.sh: $tool missing (scripts/test.sh installs it)" >&2
        exit 1
    }
done

RUN="rte-$$"
BR="$RUN-br"
LAN="$RUN-lan"
SRV="$RUN-srv"
RTR="$RUN-rtr"
OUT="$RUN-out"
MEMBERS=(client guest gwa gwb exit)
declare -A UNDERLAY=([client]=10.236.0.11 [guest]=10.236.0.12 [gwa]=10.236.0.21 [gwb]=10.236.0.22 [exit]=10.238.0.31)
declare -A OV4=([client]=10.79.0.11 [guest]=10.79.0.12 [gwa]=10.79.0.21 [gwb]=10.79.0.22 [exit]=10.79.0.31)
declare -A GROUP=([client]=staff [guest]=guest [gwa]=gateway [gwb]=gateway [exit]=exit)
OUTSIDE=198.51.100.10
EXIT_WAN=203.0.113.2
MARK=0x7077
TABLE=7077
declare -A LANIP=([gwa]=10.237.5.2 [gwb]=10.237.5.3)
SUBNET=10.237.5.0/24
SERVER=10.237.5.10
PORT=51820
TUN=privnet0
# GATEWAY_DOWN_AFTER + GATEWAY_TICK (3.25 s) + the ping interval + a handshake and scheduling margin.
FAILOVER_MAX_MS=4500

WORK="$(mktemp -d "${TMPDIR:-/tmp}/rte-$$.XXXXXX")"
chmod 700 "$WORK"
PASSED=0
FAILED=0
FAILED_NAMES=()
CLEANED=0

ns() { echo "$RUN-$1"; }
nsx() { # nsx MEMBER CMD...: run CMD inside MEMBER's namespace
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
    for n in "${MEMBERS[@]}" br lan srv rtr out; do
        for pid in $(ip netns pids "$RUN-$n" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    done
    for n in "${MEMBERS[@]}" br lan srv rtr out; do
        ip netns del "$RUN-$n" 2>/dev/null
    done
    if [[ "${ROUTES_E2E_KEEP:-0}" == 1 ]]; then
        echo "routes e2e: work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    return 0
}
on_exit() {
    local rc=$?
    cleanup
    if ip netns list | awk '{print $1}' | grep -q "^$RUN-"; then
        echo "routes e2e: FAIL cleanup: namespaces left: $(ip netns list | awk '{print $1}' | grep "^$RUN-" | tr '\n' ' ')" >&2
        rc=1
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

run_test() {
    local name="$1" fn="$2" rc
    printf '\n--- %s\n' "$name"
    set +e
    (
        set -eE
        trap 'echo "    error: line $LINENO: $BASH_COMMAND (exit $?)" >&2' ERR
        "$fn"
    )
    rc=$?
    set -e
    if [[ $rc -eq 0 ]]; then
        PASSED=$((PASSED + 1))
        printf 'PASS %s\n' "$name"
    else
        FAILED=$((FAILED + 1))
        FAILED_NAMES+=("$name")
        printf 'FAIL %s (exit %d)\n' "$name" "$rc"
        for m in "${MEMBERS[@]}"; do
            echo "    $m's log ends with:"
            tail -n 4 "$WORK/$m/sidecar.log" 2>/dev/null | sed 's/^/      /'
        done
    fi
}

# --- sidecars and probes --------------------------------------------------------------------------------
cfg() { echo "$WORK/$1/$1.toml"; }

start_sidecar() { # start_sidecar MEMBER: privnet up in the member's namespace; pid -> WORK/M/pid
    local m="$1"
    rm -f "$WORK/$m/pid"
    # Through a symlink of its own name: a `pkill -f "privnet up"` elsewhere must not hit this run.
    [[ -e "$WORK/privnet-routes-e2e" ]] || ln -s "$PRIVNET" "$WORK/privnet-routes-e2e"
    (
        set +eE
        trap - ERR
        bash -c 'echo $$ >"$1"; exec ip netns exec "$2" "$3" up --config "$4"' _ \
            "$WORK/$m/pid" "$(ns "$m")" "$WORK/privnet-routes-e2e" "$(cfg "$m")" >>"$WORK/$m/sidecar.log" 2>&1 </dev/null
    ) >/dev/null 2>&1 &
    for _ in $(seq 1 50); do
        [[ -s "$WORK/$m/pid" ]] && return 0
        sleep 0.02
    done
    echo "start_sidecar $m: no pid" >&2
    return 1
}

status_json() { timeout 5 "$PRIVNET" status --json --config "$(cfg "$1")"; }
get() { status_json "$1" | python3 "$HELPER" status-get "${@:2}"; } # get MEMBER FIELD...

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

# tun_rx MEMBER: packets the member's TUN device received from its sidecar (what came out of the
# tunnel into the kernel).
tun_rx() { nsx "$1" cat "/sys/class/net/$TUN/statistics/tx_packets"; }

ping_ok() { # ping_ok FROM DST [COUNT]
    local out
    out="$(timeout 15 ip netns exec "$(ns "$1")" ping -n -c "${3:-5}" -i 0.2 -W 2 "$2" 2>&1)" ||
        fail "ping $1 -> $2: $(echo "$out" | tail -n 2 | tr '\n' ' ')"
    log "ping $1 -> $2: $(echo "$out" | grep -E 'packets transmitted' | sed 's/, time.*//')"
}

# --- setup -----------------------------------------------------------------------------------------------
setup_topology() {
    ip netns add "$BR"
    ip -n "$BR" link set lo up
    ip -n "$BR" link add br0 type bridge forward_delay 0 stp_state 0
    ip -n "$BR" link set br0 up
    local m
    for m in "${MEMBERS[@]}"; do
        ip netns add "$(ns "$m")"
        ip -n "$(ns "$m")" link set lo up
    done
    # The underlay router: br0 on one side, the exit on the other.
    ip netns add "$RTR"
    ip -n "$RTR" link set lo up
    ip link add ul0 netns "$RTR" type veth peer name p-rtr netns "$BR"
    ip -n "$BR" link set p-rtr master br0 up
    ip -n "$RTR" addr add 10.236.0.1/24 dev ul0
    ip -n "$RTR" link set ul0 up
    ip link add ul1 netns "$RTR" type veth peer name ul0 netns "$(ns exit)"
    ip -n "$RTR" addr add 10.238.0.1/24 dev ul1
    ip -n "$RTR" link set ul1 up
    ip netns exec "$RTR" sysctl -qw net.ipv4.ip_forward=1
    ip -n "$(ns exit)" addr add "${UNDERLAY[exit]}/24" dev ul0
    ip -n "$(ns exit)" link set ul0 up
    ip -n "$(ns exit)" route add 10.236.0.0/24 via 10.238.0.1
    for m in "${MEMBERS[@]}"; do
        [[ "$m" == exit ]] && continue
        ip link add ul0 netns "$(ns "$m")" type veth peer name "p-$m" netns "$BR"
        ip -n "$BR" link set "p-$m" master br0 up
        ip -n "$(ns "$m")" addr add "${UNDERLAY[$m]}/24" dev ul0
        ip -n "$(ns "$m")" link set ul0 up
        # The main table's only way to the exit's endpoint: its default route (what an exit
        # across the internet looks like to its clients).
        ip -n "$(ns "$m")" route add default via 10.236.0.1
    done
    # The outside behind the exit, and the exit's forwarding and masquerade (the operator's part).
    ip netns add "$OUT"
    ip -n "$OUT" link set lo up
    ip -n "$OUT" addr add "$OUTSIDE/32" dev lo
    ip link add wan0 netns "$(ns exit)" type veth peer name wan0 netns "$OUT"
    ip -n "$OUT" addr add 203.0.113.1/24 dev wan0
    ip -n "$OUT" link set wan0 up
    ip -n "$(ns exit)" addr add "$EXIT_WAN/24" dev wan0
    ip -n "$(ns exit)" link set wan0 up
    ip -n "$(ns exit)" route add default via 203.0.113.1
    nsx exit sysctl -qw net.ipv4.ip_forward=1
    nsx exit sysctl -qw net.ipv4.conf.all.rp_filter=0
    nsx exit nft -f - <<'NFT'
table ip rte_egress {
    chain post {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan0" masquerade
    }
}
NFT
    # The LAN behind the gateways, and the server on it.
    ip netns add "$LAN"
    ip -n "$LAN" link set lo up
    ip -n "$LAN" link add lan0 type bridge forward_delay 0 stp_state 0
    ip -n "$LAN" link set lan0 up
    ip netns add "$SRV"
    ip -n "$SRV" link set lo up
    ip link add eth0 netns "$SRV" type veth peer name p-srv netns "$LAN"
    ip -n "$LAN" link set p-srv master lan0 up
    ip -n "$SRV" addr add "$SERVER/24" dev eth0
    ip -n "$SRV" link set eth0 up
    ip -n "$SRV" route add 10.79.0.0/16 via "${LANIP[gwa]}"
    for m in gwa gwb; do
        ip link add lan1 netns "$(ns "$m")" type veth peer name "l-$m" netns "$LAN"
        ip -n "$LAN" link set "l-$m" master lan0 up
        ip -n "$(ns "$m")" addr add "${LANIP[$m]}/24" dev lan1
        ip -n "$(ns "$m")" link set lan1 up
        nsx "$m" sysctl -qw net.ipv4.ip_forward=1
        nsx "$m" sysctl -qw net.ipv4.conf.all.rp_filter=0
    done
    local ok=0
    for _ in $(seq 1 50); do
        if nsx gwa ping -n -c1 -W 0.2 -q "$SERVER" >/dev/null 2>&1 &&
            nsx gwb ping -n -c1 -W 0.2 -q "$SERVER" >/dev/null 2>&1 &&
            nsx client ping -n -c1 -W 0.2 -q "${UNDERLAY[gwb]}" >/dev/null 2>&1 &&
            nsx client ping -n -c1 -W 0.2 -q "${UNDERLAY[exit]}" >/dev/null 2>&1 &&
            nsx exit ping -n -c1 -W 0.2 -q "$OUTSIDE" >/dev/null 2>&1; then
            ok=1
            break
        fi
    done
    [[ $ok == 1 ]] || fail "topology: the LAN or the underlay does not answer"
}

setup_credentials() {
    local m route
    # The CA lists the default route explicitly: only then may a member be granted it (an exit).
    "$PRIVNET" ca init --name rtenet --prefix 10.79.0.0/16 --route 10.237.0.0/16 \
        --route 0.0.0.0/0 --out-dir "$WORK/ca" >"$WORK/ca.log"
    for m in "${MEMBERS[@]}"; do
        mkdir -p "$WORK/$m"
        "$PRIVNET" keygen --out "$WORK/$m/private.key" >/dev/null 2>&1
        route=()
        [[ "$m" == gw* ]] && route=(--route "$SUBNET")
        [[ "$m" == exit ]] && route=(--route 0.0.0.0/0)
        "$PRIVNET" cert issue --ca-dir "$WORK/ca" --name "$m" --group "${GROUP[$m]}" \
            --address "${OV4[$m]}" "${route[@]}" \
            --public-key "$WORK/$m/private.key.pub" --out "$WORK/$m/member.crt" >/dev/null 2>&1
    done
}

write_policies() {
    cat >"$WORK/client-policy.toml" <<EOF
# tests/netns/routes.sh: the policy of client and guest
name = "routes e2e client"
default = "allow"

[[route]]
id = "lan"
prefix = "$SUBNET"
via = ["gwa", "gwb"]

[[route]]
id = "egress"
prefix = "0.0.0.0/0"
via = ["exit"]
EOF
    cat >"$WORK/gw-policy.toml" <<EOF
# tests/netns/routes.sh: the policy of the gateways
name = "routes e2e gateways"
default = "allow"

[[application]]
id = "no-guests-in-lan"
action = "deny"
from = { groups = { any = ["guest"] } }
to = { cidr = ["$SUBNET"] }
EOF
    cat >"$WORK/exit-policy.toml" <<EOF
# tests/netns/routes.sh: the policy of the exit
name = "routes e2e exit"
default = "allow"

[[application]]
id = "no-guests-outside"
action = "deny"
from = { groups = { any = ["guest"] } }
to = { cidr = ["0.0.0.0/0"], except = ["10.79.0.0/16"] }
EOF
}

write_config() { # write_config MEMBER: every other member is a peer
    local m="$1" p policy=client-policy.toml
    [[ "$m" == gw* ]] && policy=gw-policy.toml
    [[ "$m" == exit ]] && policy=exit-policy.toml
    {
        cat <<EOF
# privnet routes e2e: member $m (group ${GROUP[$m]})
[node]
network = "rtenet"
private_key = "private.key"
certificate = "member.crt"
ca_certificates = ["../ca/ca.crt"]
network_psk = "../ca/network.psk"
listen = "0.0.0.0:$PORT"
policy = "../$policy"

[tun]
mode = "tun"
name = "$TUN"
mtu = 1420
underlay_mtu = 1500

[status]
socket = "$WORK/$m/status.sock"

[log]
level = "info"
EOF
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
    write_policies
    local m
    for m in "${MEMBERS[@]}"; do write_config "$m"; done
    for m in "${MEMBERS[@]}"; do start_sidecar "$m"; done
    for m in "${MEMBERS[@]}"; do wait_established "$m" $((${#MEMBERS[@]} - 1)) 15; done
    # Once gwa's TUN routes exist: the fallback to the overlay through gwb, used when they vanish.
    nsx gwa ip route add 10.79.0.0/16 via "${LANIP[gwb]}" dev lan1 metric 500
    log "${#MEMBERS[@]} sidecars up, fully meshed; gwa routes: $(nsx gwa ip route show 10.79.0.0/16 | tr '\n' ';')"
    log "client rules: $(nsx client ip rule show | tr '\n' ';')"
}

# --- cases -----------------------------------------------------------------------------------------------
# R1: the entry lists gwa first: the client's packets into the subnet leave through gwa.
test_priority() {
    local a0 b0 a1 b1
    a0="$(tun_rx gwa)"
    b0="$(tun_rx gwb)"
    ping_ok client "$SERVER" 10
    a1="$(tun_rx gwa)"
    b1="$(tun_rx gwb)"
    log "packets out of the tunnel: gwa +$((a1 - a0)), gwb +$((b1 - b0))"
    ((a1 - a0 >= 10)) || fail "gwa carried $((a1 - a0)) packets, expected >= 10"
    ((b1 - b0 < 3)) || fail "gwb carried $((b1 - b0)) packets while gwa is up"
}

# expect_denied TARGET LABEL JUDGE: three pings from guest to TARGET get no answer and JUDGE (the
# member whose policy decides) counts them as policy_denied; guest still reaches JUDGE itself.
expect_denied() {
    local target=$1 label=$2 judge=$3 d0 d1 out
    d0="$(get "$judge" drops.policy_denied)"
    if out="$(timeout 10 ip netns exec "$(ns guest)" ping -n -c 3 -i 0.2 -W 1 "$target" 2>&1)"; then
        fail "guest reached the $label: $(echo "$out" | grep -E 'packets transmitted')"
    fi
    echo "$out" | grep -qE ' 0 received' || fail "ping guest -> $label: $(echo "$out" | tail -n 2 | tr '\n' ' ')"
    log "ping guest -> $label (denied): $(echo "$out" | grep -E 'packets transmitted' | sed 's/, time.*//')"
    for _ in $(seq 1 30); do
        d1="$(get "$judge" drops.policy_denied)"
        ((d1 >= d0 + 3)) && break
        sleep 0.1
    done
    ((d1 >= d0 + 3)) || fail "$judge's policy_denied went from $d0 to $d1, expected +3"
    log "$judge policy_denied: $d0 -> $d1"
    ping_ok guest "${OV4[$judge]}" 3
}

# R2: group guest is denied the subnet by the gateways' policy (the receiving end decides); its
# own traffic to gwa is not touched.
test_denied_group() { expect_denied "$SERVER" server gwa; }

# R3: kill the primary's sidecar while the client pings every 100 ms; measure until the first
# answer after the kill.
test_failover() {
    local pingout="$WORK/failover.ping" kill_at resumed ms pid
    ip netns exec "$(ns client)" timeout 20 ping -n -D -i 0.1 -W 1 "$SERVER" >"$pingout" 2>&1 &
    pid=$!
    track "$pid"
    sleep 2
    grep -q 'bytes from' "$pingout" || fail "no answers before the kill: $(tail -n 2 "$pingout")"
    kill_at="$(date +%s.%N)"
    kill -KILL "$(cat "$WORK/gwa/pid")"
    log "gwa's sidecar killed at $kill_at"
    resumed=""
    for _ in $(seq 1 120); do
        resumed="$(python3 - "$pingout" "$kill_at" <<'EOF'
import re, sys
path, t = sys.argv[1], float(sys.argv[2])
for line in open(path, encoding="utf-8", errors="replace"):
    m = re.match(r"\[(\d+\.\d+)\] \d+ bytes from", line)
    # an answer received after the kill, to a request sent after it (seq timing: 100 ms apart)
    if m and float(m.group(1)) > t + 0.3:
        print(m.group(1))
        break
EOF
)"
        [[ -n "$resumed" ]] && break
        sleep 0.1
    done
    [[ -n "$resumed" ]] || fail "no answer through gwb within 12 s of the kill: $(tail -n 3 "$pingout" | tr '\n' ' ')"
    ms="$(awk -v a="$kill_at" -v b="$resumed" 'BEGIN { printf "%d", (b - a) * 1000 }')"
    log "FAILOVER: traffic resumed through gwb ${ms} ms after gwa's sidecar was killed (bound ${FAILOVER_MAX_MS} ms)"
    ((ms <= FAILOVER_MAX_MS)) || fail "failover took ${ms} ms > ${FAILOVER_MAX_MS} ms"
    local b0 b1
    b0="$(tun_rx gwb)"
    sleep 1
    b1="$(tun_rx gwb)"
    ((b1 - b0 >= 5)) || fail "gwb carried $((b1 - b0)) packets in the second after the failover"
    kill "$pid" 2>/dev/null || true
    local routes
    routes="$(status_json client | python3 -c '
import json, sys
for n in json.load(sys.stdin):
    for r in n.get("gateway_routes", []):
        print(r["id"], r["prefix"], "active=" + str(r.get("active")), "failovers=" + str(r["failovers"]))
')"
    log "client status: $routes"
    echo "$routes" | grep -q "active=gwb failovers=1" || fail "client status does not show the failover to gwb: $routes"
}

# R4: the default route through the exit; the underlay to the exit keeps the main table.
test_default_route() {
    local e0 e1 rules table unmarked marked eio0 eio1 eioexit ep
    rules="$(nsx client ip rule show)"
    echo "$rules" | grep -q "not from all fwmark $MARK lookup $TABLE" ||
        fail "client has no 'not fwmark $MARK lookup $TABLE' rule: $(echo "$rules" | tr '\n' ';')"
    echo "$rules" | grep -q "lookup main suppress_prefixlength 0" ||
        fail "client has no suppress_prefixlength rule: $(echo "$rules" | tr '\n' ';')"
    table="$(nsx client ip route show table "$TABLE")"
    echo "$table" | grep -q "^default dev $TUN" || fail "table $TABLE of client: $table"
    # The gateways' policy has no default [[route]]; the exit is itself granted it: no rules there.
    for m in gwb exit; do
        if nsx "$m" ip rule show | grep -q "lookup $TABLE"; then fail "$m installed the default route"; fi
    done
    # What the kernel does with the exit's endpoint: unmarked into the tunnel, marked to rtr.
    unmarked="$(nsx client ip route get "${UNDERLAY[exit]}")"
    marked="$(nsx client ip route get "${UNDERLAY[exit]}" mark "$MARK")"
    log "route to exit's endpoint: unmarked: $(echo "$unmarked" | head -n1); marked: $(echo "$marked" | head -n1)"
    echo "$unmarked" | grep -q "dev $TUN" || fail "an unmarked packet to the endpoint does not take the tunnel"
    echo "$marked" | grep -q "via 10.236.0.1 dev ul0" || fail "a marked packet to the endpoint does not take rtr"
    eio0="$(get client drops.endpoint_in_overlay)"
    e0="$(tun_rx exit)"
    ping_ok client "$OUTSIDE" 10
    e1="$(tun_rx exit)"
    log "packets out of the exit's tunnel: +$((e1 - e0))"
    ((e1 - e0 >= 10)) || fail "the exit carried $((e1 - e0)) packets, expected >= 10"
    # The underlay is not the overlay: the session to the exit is up on its endpoint behind rtr.
    wait_established client 4 5
    ep="$(get client peer.exit.endpoint)"
    [[ "$ep" == "\"${UNDERLAY[exit]}:$PORT\"" ]] || fail "client's endpoint of exit is $ep"
    eio1="$(get client drops.endpoint_in_overlay)"
    eioexit="$(get exit drops.endpoint_in_overlay)"
    log "endpoint_in_overlay: client $eio0 -> $eio1, exit $eioexit; exit endpoint $ep"
    [[ "$eio1" == "$eio0" && "$eioexit" == 0 ]] || fail "endpoint_in_overlay counted"
    # Other members' overlay addresses are not the default route's: still their own tunnels.
    ping_ok client "${OV4[gwb]}" 3
}

# R5: group guest is denied the outside by the exit's policy; the exit's own address is fine.
test_denied_default_route() { expect_denied "$OUTSIDE" outside exit; }

# R6: a stopped sidecar takes its rules with it (the table's route goes with the TUN device).
test_stop_cleans_up() {
    local pid rules
    pid="$(cat "$WORK/client/pid")"
    kill -TERM "$pid"
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then fail "client's sidecar still runs 5 s after SIGTERM"; fi
    rules="$(nsx client ip rule show)"
    log "client rules after stop: $(echo "$rules" | tr '\n' ';')"
    if echo "$rules" | grep -qE "lookup $TABLE|suppress_prefixlength"; then
        fail "rules left behind"
    fi
    [[ -z "$(nsx client ip route show table "$TABLE" 2>/dev/null)" ]] || fail "table $TABLE not empty"
    grep -q "default route rules removed" "$WORK/client/sidecar.log" || fail "no removal logged"
}

setup
run_test "R1 the route entry's priority: traffic leaves through gwa" test_priority
run_test "R2 a group denied the route cannot use it" test_denied_group
run_test "R3 failover: gwa's sidecar killed, traffic resumes through gwb" test_failover
run_test "R4 the default route: egress through the exit, the underlay stays out of the tunnel" test_default_route
run_test "R5 a group denied the default route cannot use it" test_denied_default_route
run_test "R6 a stopped sidecar removes its default-route rules" test_stop_cleans_up

printf '\nroutes e2e: %d passed, %d failed\n' "$PASSED" "$FAILED"
if ((FAILED > 0)); then
    printf '  failed: %s\n' "${FAILED_NAMES[@]}"
    exit 1
fi
