#!/usr/bin/env bash
# End-to-end tests of the directory on etcd (docs/DIRECTORY.md), run by scripts/test.sh as root.
#
# Topology (network namespaces created here, named pnd-<pid>-*; nothing touches the root namespace):
#
#   pnd-<pid>-br   bridge br0 10.232.0.1/24 and the etcd server (Debian's etcd-server) on 10.232.0.1:2379,
#                  data in this run's temporary directory
#   pnd-<pid>-mN   member mN (N = 1..5): underlay 10.232.0.1N, overlay 10.79.0.1N; no [[peer]] at all,
#                  a [directory] section pointing at etcd (lease TTL 3 s, an on-disk cache)
#
# The `privnet directory` commands run inside m1's namespace (etcd is only reachable there).
# Tests: 1 three members with no peers form the mesh through etcd (ping every pair); 2 a fourth joins
# and is reachable by all within 2 s of its registration; 3 a member killed with SIGKILL disappears
# from the others after its lease TTL; 4 a policy bundle published with `privnet directory
# publish-policy` is enforced by every member within 2 s; 5 a bundle signed by another CA key and an
# older version are refused and counted; 6 a revocation published with `privnet directory revoke` cuts
# the member off everywhere; 7 etcd stopped for 30 s: traffic keeps flowing, a member restarts from
# its cache and reaches the others, and everything converges when etcd returns; 8 `privnet directory
# members`, status and /metrics show the directory; 9 names resolve through the DNS responder of
# TUN mode (glibc's resolver, `getent`, with /etc/netns/<ns>/resolv.conf, which `ip netns exec`
# bind-mounts): members' and its own names, case-insensitively, over UDP and TCP, from its own
# namespace and from another member across the overlay; unknown names and other zones fail
# (NXDOMAIN, REFUSED, counted); garbage is dropped and counted; a member that stops stops
# resolving; 10 a CA rollover by SIGHUP reaches the directory client: m5, issued by a new CA of the
# network (`privnet ca rollover`), is skipped by m1 (`bad_certificate`) until m1's configuration
# trusts both CAs and gets a SIGHUP, then m1 learns it and reaches it, without a restart, and still
# reaches the old CA's members. Every command is bounded; the whole run by
# DIR_TIMEOUT. Cleanup (sidecars, etcd, namespaces, temp files) runs on EXIT, even on failure.
#
# Usage:  sudo tests/netns/directory.sh     (builds nothing: cargo build --release -p privnet-sidecar first,
#                                            or set PRIVNET)
# Environment: PRIVNET (default target/release/privnet), DIR_TIMEOUT (default 420), DIR_KEEP=1 keeps the
# work directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SELF="$ROOT/tests/netns/directory.sh"
if [[ -z "${DIR_INNER:-}" ]]; then
    export DIR_INNER=1
    exec timeout -k 20 "${DIR_TIMEOUT:-420}" bash "$SELF" "$@"
fi
if [[ "$(id -u)" -ne 0 ]]; then
    echo "directory.sh: needs root (network namespaces, TUN devices)" >&2
    exit 1
fi
PRIVNET="${PRIVNET:-$ROOT/target/release/privnet}"
[[ -x "$PRIVNET" ]] || {
    echo "directory.sh: $PRIVNET missing: cargo build --release -p privnet-sidecar" >&2
    exit 1
}
for tool in ip ping python3 timeout etcd; do
    command -v "$tool" >/dev/null || {
        echo "directory.sh: $tool missing (scripts/test.sh installs it)" >&2
        exit 1
    }
done

RUN="pnd-$$"
BR="$RUN-br"
MEMBERS=(m1 m2 m3 m4 m5)
declare -A UNDERLAY=([m1]=10.232.0.11 [m2]=10.232.0.12 [m3]=10.232.0.13 [m4]=10.232.0.14 [m5]=10.232.0.15)
declare -A OV4=([m1]=10.79.0.11 [m2]=10.79.0.12 [m3]=10.79.0.13 [m4]=10.79.0.14 [m5]=10.79.0.15)
ETCD_IP=10.232.0.1
ETCD="$ETCD_IP:2379"
PORT=51820
TTL=3
METRICS="127.0.0.1:9478"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/pnd-$$.XXXXXX")"
chmod 700 "$WORK"
PASSED=0
FAILED=0
FAILED_NAMES=()
CLEANED=0

ns() { echo "$RUN-$1"; }
nsx() {
    local m="$1"
    shift
    ip netns exec "$(ns "$m")" "$@"
}
log() { printf '    %s\n' "$*"; }
fail() {
    printf '    FAILED: %s\n' "$*" >&2
    exit 1
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

cleanup() {
    [[ "$CLEANED" == 1 ]] && return 0
    CLEANED=1
    set +e
    local f n pid
    for f in "$WORK"/*/pid "$WORK/etcd.pid"; do
        [[ -f "$f" ]] && kill -TERM "$(cat "$f")" 2>/dev/null
    done
    sleep 0.3
    for f in "$WORK"/*/pid "$WORK/etcd.pid"; do
        [[ -f "$f" ]] && kill -KILL "$(cat "$f")" 2>/dev/null
    done
    for n in "${MEMBERS[@]}"; do rm -rf "/etc/netns/$RUN-$n"; done
    for n in "${MEMBERS[@]}" br; do
        for pid in $(ip netns pids "$RUN-$n" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
        ip netns del "$RUN-$n" 2>/dev/null
    done
    if [[ "${DIR_KEEP:-0}" == 1 ]]; then echo "directory: work directory kept: $WORK"; else rm -rf "$WORK"; fi
    return 0
}
on_exit() {
    local rc=$?
    cleanup
    if ip netns list | awk '{print $1}' | grep -q "^$RUN-"; then
        echo "directory: FAIL cleanup: namespaces left" >&2
        rc=1
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

run_test() {
    local name="$1" fn="$2" rc t0
    printf '\n--- %s\n' "$name"
    t0=$(now)
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
        printf 'PASS %s (%s s)\n' "$name" "$(since "$t0")"
    else
        FAILED=$((FAILED + 1))
        FAILED_NAMES+=("$name")
        printf 'FAIL %s (exit %d)\n' "$name" "$rc"
    fi
}

# --- etcd ------------------------------------------------------------------------------------------------
start_etcd() {
    local url="http://$ETCD"
    (
        set +eE
        bash -c 'echo $$ >"$1"; exec ip netns exec "$2" etcd --name dir --data-dir "$3" \
            --listen-client-urls "$4" --advertise-client-urls "$4" \
            --listen-peer-urls http://'"$ETCD_IP"':2380 --initial-advertise-peer-urls http://'"$ETCD_IP"':2380 \
            --initial-cluster dir=http://'"$ETCD_IP"':2380' _ \
            "$WORK/etcd.pid" "$BR" "$WORK/etcd-data" "$url" >>"$WORK/etcd.log" 2>&1 </dev/null
    ) >/dev/null 2>&1 &
    local _
    for _ in $(seq 1 100); do
        if ip netns exec "$BR" timeout 1 bash -c "</dev/tcp/$ETCD_IP/2379" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    fail "etcd did not listen on $ETCD within 10 s: $(tail -n 5 "$WORK/etcd.log")"
}
stop_etcd() {
    kill -KILL "$(cat "$WORK/etcd.pid")" 2>/dev/null || true
    local _
    for _ in $(seq 1 50); do
        kill -0 "$(cat "$WORK/etcd.pid")" 2>/dev/null || return 0
        sleep 0.1
    done
}

# --- members ---------------------------------------------------------------------------------------------
cfg() { echo "$WORK/$1/$1.toml"; }

setup() {
    ip netns add "$BR"
    ip -n "$BR" link set lo up
    ip -n "$BR" link add br0 type bridge forward_delay 0 stp_state 0
    ip -n "$BR" addr add "$ETCD_IP/24" dev br0
    ip -n "$BR" link set br0 up
    local m
    "$PRIVNET" ca init --name dirnet --prefix 10.79.0.0/16 --out-dir "$WORK/ca" >"$WORK/ca.log"
    # Another CA of a network with the same name: its key is "the wrong key".
    "$PRIVNET" ca init --name dirnet --prefix 10.79.0.0/16 --out-dir "$WORK/rogue" >"$WORK/rogue.log"
    for m in "${MEMBERS[@]}"; do
        ip netns add "$(ns "$m")"
        ip -n "$(ns "$m")" link set lo up
        ip link add ul0 netns "$(ns "$m")" type veth peer name "p-$m" netns "$BR"
        ip -n "$BR" link set "p-$m" master br0 up
        ip -n "$(ns "$m")" addr add "${UNDERLAY[$m]}/24" dev ul0
        ip -n "$(ns "$m")" link set ul0 up
        mkdir -p "$WORK/$m"
        "$PRIVNET" keygen --out "$WORK/$m/private.key" >/dev/null 2>&1
        "$PRIVNET" cert issue --ca-dir "$WORK/ca" --name "$m" --address "${OV4[$m]}" \
            --public-key "$WORK/$m/private.key.pub" --out "$WORK/$m/member.crt" >/dev/null 2>&1
        {
            cat <<EOF
# tests/netns/directory.sh: member $m, no [[peer]]: the directory tells it who is there
[node]
network = "dirnet"
private_key = "private.key"
certificate = "member.crt"
ca_certificates = ["../ca/ca.crt"]
network_psk = "../ca/network.psk"
listen = "0.0.0.0:$PORT"

[tun]
name = "privnet0"

[status]
socket = "$WORK/$m/status.sock"

[directory]
endpoints = ["$ETCD"]
lease_ttl_s = $TTL
advertise = ["${UNDERLAY[$m]}:$PORT"]
cache = "directory.cache"

[dns]
# Default listen: this member's overlay address, port 53.
ttl_s = 2
EOF
            if [[ "$m" == m1 ]]; then printf '\n[metrics]\nlisten = "%s"\n' "$METRICS"; fi
        } >"$(cfg "$m")"
        "$PRIVNET" check --config "$(cfg "$m")" >"$WORK/$m/check.log" 2>&1 ||
            fail "privnet check $m: $(cat "$WORK/$m/check.log")"
    done
    start_etcd
}

start_sidecar() {
    local m="$1"
    rm -f "$WORK/$m/pid"
    [[ -e "$WORK/privnet-dir" ]] || ln -s "$PRIVNET" "$WORK/privnet-dir"
    (
        set +eE
        trap - ERR
        bash -c 'echo $$ >"$1"; exec ip netns exec "$2" "$3" up --config "$4"' _ \
            "$WORK/$m/pid" "$(ns "$m")" "$WORK/privnet-dir" "$(cfg "$m")" >>"$WORK/$m/sidecar.log" 2>&1 </dev/null
    ) >/dev/null 2>&1 &
    local _
    for _ in $(seq 1 50); do
        [[ -s "$WORK/$m/pid" ]] && return 0
        sleep 0.02
    done
    fail "start_sidecar $m: no pid"
}
stop_sidecar() { # stop_sidecar MEMBER SIGNAL
    local pid
    pid="$(cat "$WORK/$1/pid")"
    kill "-$2" "$pid" 2>/dev/null || true
    local _
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.05
    done
    fail "$1 did not stop"
}

status_json() { timeout 5 "$PRIVNET" status --json --config "$(cfg "$1")"; }
# dir_field MEMBER EXPR: a Python expression over `d` (the member's directory status) and `n` (its
# network status)
dir_field() {
    status_json "$1" 2>/dev/null | python3 -c '
import json, sys
n = json.load(sys.stdin)[0]
d = n.get("directory") or {}
print(eval(sys.argv[1]))' "$2"
}
# wait_for SECONDS DESCRIPTION CMD...: until CMD succeeds
wait_for() {
    local secs="$1" what="$2" deadline
    shift 2
    deadline=$(awk -v a="$(now)" -v s="$secs" 'BEGIN { printf "%.2f", a + s }')
    while awk -v a="$(now)" -v d="$deadline" 'BEGIN { exit !(a < d) }'; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "    timeout after $secs s: $what" >&2
    return 1
}
pings() { nsx "$1" ping -n -c 1 -W 1 -q "$2" >/dev/null 2>&1; }
knows() { [[ "$(dir_field "$1" "'$2' in [m['name'] for m in d.get('members', [])]")" == "$3" ]]; }
members_of() { nsx m1 "$PRIVNET" directory members --config "$(cfg m1)" --json 2>/dev/null; }
registered() { members_of | python3 -c 'import json,sys; sys.exit(0 if sys.argv[1] in [m["name"] for m in json.load(sys.stdin)["members"]] else 1)' "$1"; }

# --- tests -----------------------------------------------------------------------------------------------
t_mesh() {
    local m p
    for m in m1 m2 m3; do start_sidecar "$m"; done
    for m in m1 m2 m3; do
        for p in m1 m2 m3; do
            [[ "$m" == "$p" ]] && continue
            wait_for 15 "$m pings $p" pings "$m" "${OV4[$p]}"
            log "$m -> $p: ping ok"
        done
    done
    log "m1 directory: $(dir_field m1 "'connected %s, revision %s, members %s' % (d['connected'], d['revision'], sorted(m['name'] for m in d['members']))")"
}

t_newcomer() {
    start_sidecar m4
    wait_for 10 "m4 registered" registered m4
    local t0 m worst=0 took
    t0=$(now)
    for m in m1 m2 m3; do
        wait_for 5 "$m pings m4" pings "$m" "${OV4[m4]}"
        took=$(since "$t0")
        log "$m reaches m4 ${took} s after its registration was seen"
        worst="$took"
    done
    log "figure: a newcomer is reachable by all three members within $worst s of its registration"
    awk -v w="$worst" 'BEGIN { exit !(w <= 2.0) }' || fail "a newcomer took $worst s (> 2 s)"
}

t_killed() {
    stop_sidecar m3 KILL
    local t0
    t0=$(now)
    # Still there before its lease can have expired (no clean stop deleted it)...
    knows m1 m3 True || fail "m3 vanished at once although killed (no lease revoke)"
    wait_for $((TTL + 5)) "m1 forgets m3" knows m1 m3 False
    local took
    took=$(since "$t0")
    log "figure: a killed member disappeared from m1 after $took s (lease TTL $TTL s)"
    awk -v w="$took" -v t="$TTL" 'BEGIN { exit !(w >= t - 1) }' || fail "gone after $took s, before its lease TTL"
    wait_for 5 "m2 forgets m3" knows m2 m3 False
    wait_for 5 "m1 has no peer m3" bash -c "! timeout 5 '$PRIVNET' status --json --config '$(cfg m1)' | grep -q '\"name\": \"m3\"'"
}

write_policy() { # write_policy FILE: every member may ping every other, except m2 -> m1
    cat >"$1" <<'EOF'
name = "directory e2e"
default = "allow"

[[application]]
id = "no-ping-m2-m1"
action = "deny"
from = { members = ["m2"] }
to = { members = ["m1"] }
proto = ["icmp"]
EOF
}

t_policy() {
    write_policy "$WORK/policy.toml"
    "$PRIVNET" policy check "$WORK/policy.toml" >"$WORK/policy-check.log" 2>&1 || fail "policy check: $(cat "$WORK/policy-check.log")"
    local t0 m took
    t0=$(now)
    nsx m1 "$PRIVNET" directory publish-policy --config "$(cfg m1)" --ca-dir "$WORK/ca" --policy "$WORK/policy.toml" | sed 's/^/    /'
    for m in m1 m2 m4; do
        wait_for 3 "$m enforces policy v1" bash -c "[[ \"\$(timeout 5 '$PRIVNET' status --json --config '$(cfg "$m")' | python3 -c 'import json,sys; n=json.load(sys.stdin)[0]; print(n[\"directory\"][\"policy_version\"], bool(n.get(\"policy\")))')\" == '1 True' ]]"
    done
    took=$(since "$t0")
    log "figure: the policy bundle was enforced by every member $took s after publishing"
    awk -v w="$took" 'BEGIN { exit !(w <= 2.0) }' || fail "policy took $took s (> 2 s)"
    ! pings m2 "${OV4[m1]}" || fail "m2 -> m1 ping passed the policy"
    pings m4 "${OV4[m1]}" || fail "m4 -> m1 ping refused"
    log "m2 -> m1 denied, m4 -> m1 allowed"
}

t_bad_bundles() {
    nsx m1 "$PRIVNET" directory publish-policy --config "$(cfg m1)" --ca-dir "$WORK/rogue" --policy "$WORK/policy.toml" --version 9 >/dev/null
    nsx m1 "$PRIVNET" directory publish-policy --config "$(cfg m1)" --ca-dir "$WORK/ca" --policy "$WORK/policy.toml" --version 1 >/dev/null
    local m
    for m in m1 m2 m4; do
        wait_for 3 "$m counts the refusals" bash -c "[[ \"\$(timeout 5 '$PRIVNET' status --json --config '$(cfg "$m")' | python3 -c 'import json,sys; d=json.load(sys.stdin)[0][\"directory\"]; r=d[\"bundles_refused\"]; print(d[\"policy_version\"], sum(v for k, v in r.items() if k != \"policy/stale_version\") >= 1, r.get(\"policy/stale_version\", 0) >= 1)')\" == '1 True True' ]]"
        log "$m: refused $(dir_field "$m" "d['bundles_refused']"), keeps policy v$(dir_field "$m" "d['policy_version']")"
    done
    curl_metrics | grep -q 'privnet_directory_bundles_refused_total{network="dirnet",kind="policy",reason="stale_version"} 1' ||
        fail "no refused-bundle counter on /metrics"
}

curl_metrics() {
    nsx m1 python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("http://'"$METRICS"'/metrics", timeout=5).read().decode())'
}

t_revoke() {
    nsx m1 "$PRIVNET" directory revoke --config "$(cfg m1)" --ca-dir "$WORK/ca" --certificate "$WORK/m4/member.crt" | sed 's/^/    /'
    wait_for 3 "m1 forgets m4" knows m1 m4 False
    wait_for 3 "m2 forgets m4" knows m2 m4 False
    ! pings m1 "${OV4[m4]}" || fail "m1 still reaches the revoked m4"
    ! pings m4 "${OV4[m2]}" || fail "the revoked m4 still reaches m2"
    log "m4 revoked: cut off from m1 and m2"
}

t_outage() {
    # m3 back (not revoked) so that three members ride out the outage.
    start_sidecar m3
    wait_for 10 "m1 pings m3" pings m1 "${OV4[m3]}"
    stop_etcd
    wait_for 10 "m1 sees etcd gone" bash -c "[[ \"\$(timeout 5 '$PRIVNET' status --json --config '$(cfg m1)' | python3 -c 'import json,sys; print(json.load(sys.stdin)[0][\"directory\"][\"connected\"])')\" == False ]]"
    log "etcd stopped; m1: $(dir_field m1 "'connected %s, last_error %s' % (d['connected'], d['last_error'])")"
    local t0 ok=0 total=0
    t0=$(now)
    # m3 restarts during the outage: it comes up from its on-disk cache.
    stop_sidecar m3 TERM
    start_sidecar m3
    wait_for 10 "m3 from its cache" knows m3 m1 True
    log "m3 restarted during the outage: $(dir_field m3 "'from_cache %s, members %s' % (d['from_cache'], sorted(m['name'] for m in d['members']))")"
    while awk -v a="$t0" -v b="$(now)" 'BEGIN { exit !(b - a < 30) }'; do
        total=$((total + 1))
        if pings m1 "${OV4[m3]}" && pings m3 "${OV4[m1]}" && pings m2 "${OV4[m3]}"; then ok=$((ok + 1)); fi
        sleep 1
    done
    log "during 30 s without etcd: $ok of $total rounds of pings (m1->m3, m3->m1, m2->m3) passed"
    [[ $ok -ge $((total - 2)) ]] || fail "traffic did not keep flowing without etcd"
    start_etcd
    local m
    for m in m1 m2 m3; do
        wait_for 20 "$m reconnects" bash -c "[[ \"\$(timeout 5 '$PRIVNET' status --json --config '$(cfg "$m")' | python3 -c 'import json,sys; d=json.load(sys.stdin)[0][\"directory\"]; print(d[\"connected\"], d[\"from_cache\"], sorted(x[\"name\"] for x in d[\"members\"]))')\" == *'True False'* ]]"
    done
    for m in m1 m2 m3; do
        log "$m after etcd returned: $(dir_field "$m" "'connected %s, revision %s, reconnects %s, members %s' % (d['connected'], d['revision'], d['reconnects'], sorted(x['name'] for x in d['members']))")"
    done
    [[ "$(dir_field m1 "sorted(x['name'] for x in d['members'])")" == "['m2', 'm3']" ]] || fail "m1 did not converge"
    [[ "$(dir_field m3 "sorted(x['name'] for x in d['members'])")" == "['m1', 'm2']" ]] || fail "m3 did not converge"
    wait_for 10 "m3 pings m2 after" pings m3 "${OV4[m2]}"
}

t_show() {
    nsx m1 "$PRIVNET" directory members --config "$(cfg m1)" | sed 's/^/    /'
    timeout 5 "$PRIVNET" status --config "$(cfg m1)" | grep -E '^  directory' | sed 's/^/    /'
    curl_metrics | grep -E '^privnet_directory_(connected|revision|last_update_age_seconds|members)' | sed 's/^/    /'
    curl_metrics | grep -q '^privnet_directory_connected{network="dirnet"} 1' || fail "metrics: not connected"
}

# resolv_conf MEMBER SERVER [OPTIONS]: MEMBER's namespace resolves through SERVER only
resolv_conf() {
    mkdir -p "/etc/netns/$(ns "$1")"
    printf 'nameserver %s\noptions timeout:1 attempts:1 %s\n' "$2" "${3:-}" >"/etc/netns/$(ns "$1")/resolv.conf"
}
# resolves MEMBER NAME: the IPv4 addresses NAME resolves to in MEMBER's namespace (empty: none)
resolves() { nsx "$1" timeout 5 getent ahostsv4 "$2" 2>/dev/null | awk '{print $1}' | sort -u | tr '\n' ' ' | sed 's/ $//'; }
dns_field() { dir_field "$1" "(n.get('dns') or {}).get('$2')"; }

t_dns() {
    local m got
    log "m1: $(dns_field m1 listen), zone $(dns_field m1 zone)"
    [[ "$(dns_field m1 listen)" == "${OV4[m1]}:53" ]] || fail "m1's responder is not on its overlay address"
    # From m1's own namespace (the application's container).
    resolv_conf m1 "${OV4[m1]}"
    for pair in "m2.dirnet:m2" "M3.DirNet.:m3" "m1.dirnet:m1"; do
        got="$(resolves m1 "${pair%%:*}")"
        [[ "$got" == "${OV4[${pair##*:}]}" ]] || fail "m1: ${pair%%:*} resolved to '$got', not ${OV4[${pair##*:}]}"
        log "m1 resolves ${pair%%:*} -> $got"
    done
    local name counter before
    for pair in "nosuch.dirnet:nxdomain" "m4.dirnet:nxdomain" "example.com:refused"; do
        name="${pair%%:*}" counter="${pair##*:}"
        before="$(dns_field m1 "$counter")"
        [[ -z "$(resolves m1 "$name")" ]] || fail "$name resolved"
        # (the status document may be up to a second old)
        wait_for 3 "$name: $counter counted (was $before)" bash -c "[[ \$(timeout 5 '$PRIVNET' status --json --config '$(cfg m1)' | python3 -c 'import json,sys; print(json.load(sys.stdin)[0][\"dns\"][\"$counter\"])') -gt $before ]]"
        log "m1: $name does not resolve ($counter $before -> $(dns_field m1 "$counter"))"
    done
    # Over TCP (glibc's use-vc).
    resolv_conf m1 "${OV4[m1]}" use-vc
    got="$(resolves m1 m2.dirnet)"
    [[ "$got" == "${OV4[m2]}" ]] || fail "over TCP: m2.dirnet resolved to '$got'"
    log "over TCP: m2.dirnet -> $got"
    # From another member, across the overlay (the policy in force allows UDP to port 53).
    resolv_conf m2 "${OV4[m1]}"
    got="$(resolves m2 m3.dirnet)"
    [[ "$got" == "${OV4[m3]}" ]] || fail "m2 via m1's responder: m3.dirnet resolved to '$got'"
    log "m2 asks m1's responder across the overlay: m3.dirnet -> $got"
    # Garbage is dropped (no answer) and counted.
    local before_bad
    before_bad="$(dns_field m1 malformed)"
    nsx m1 python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b"\x12\x34garbage", ("'"${OV4[m1]}"'", 53)); s.settimeout(1)
try:
    s.recv(512); raise SystemExit("garbage was answered")
except socket.timeout:
    pass'
    wait_for 3 "the malformed message counted" bash -c "[[ \$(timeout 5 '$PRIVNET' status --json --config '$(cfg m1)' | python3 -c 'import json,sys; print(json.load(sys.stdin)[0][\"dns\"][\"malformed\"])') -gt $before_bad ]]"
    log "garbage dropped unanswered (malformed $before_bad -> $(dns_field m1 malformed))"
    # A member that stops (its record deleted) stops resolving, live.
    resolv_conf m1 "${OV4[m1]}"
    stop_sidecar m3 TERM
    wait_for 5 "m3.dirnet stops resolving on m1" bash -c "[[ -z \"\$(ip netns exec '$(ns m1)' timeout 5 getent ahostsv4 m3.dirnet)\" ]]"
    log "m3 stopped: m3.dirnet no longer resolves on m1"
    timeout 5 "$PRIVNET" status --config "$(cfg m1)" | grep -E '^  dns ' | sed 's/^/    /'
    curl_metrics | grep -E '^privnet_dns_queries_total' | sed 's/^/    /'
    curl_metrics | grep -q '^privnet_dns_queries_total{network="dirnet",outcome="answers"} [1-9]' || fail "metrics: no DNS answers"
}

setup
skips_bad_certificate() { [[ "$(dir_field "$1" "d['skipped'].get('bad_certificate', 0) > 0")" == True ]]; }
t_rollover() {
    "$PRIVNET" ca rollover --ca-dir "$WORK/ca" --out-dir "$WORK/ca2" >"$WORK/ca2.log" 2>&1 ||
        fail "ca rollover: $(cat "$WORK/ca2.log")"
    # m5 joins during the rollover: a certificate of the new CA, trusting both.
    "$PRIVNET" cert issue --ca-dir "$WORK/ca2" --name m5 --address "${OV4[m5]}" \
        --public-key "$WORK/m5/private.key.pub" --out "$WORK/m5/member-new-ca.crt" >/dev/null 2>&1 ||
        fail "cert issue m5 by the new CA"
    sed -i -e 's|^certificate = .*|certificate = "member-new-ca.crt"|' \
        -e 's|^ca_certificates = .*|ca_certificates = ["../ca/ca.crt", "../ca2/ca.crt"]|' "$(cfg m5)"
    "$PRIVNET" check --config "$(cfg m5)" >"$WORK/m5/check.log" 2>&1 || fail "privnet check m5: $(cat "$WORK/m5/check.log")"
    status_json m1 >/dev/null 2>&1 || fail "m1 is not running"
    start_sidecar m5
    wait_for 10 "m5 registered" registered m5
    wait_for 10 "m5 learns m1" knows m5 m1 True
    wait_for 10 "m1 skips m5's record (bad_certificate)" skips_bad_certificate m1
    knows m1 m5 False || fail "m1 learned m5, whose CA it does not trust yet"
    if pings m5 "${OV4[m1]}"; then fail "m5 reached m1 before m1 trusted the new CA"; fi
    log "before the reload: m1 skips m5 (bad_certificate) and m5 cannot reach m1"
    # Step 2 of the rollover on m1 (docs/CONFIG.md, CA rollover): trust both CAs, SIGHUP.
    local pid t0
    pid="$(cat "$WORK/m1/pid")"
    sed -i 's|^ca_certificates = .*|ca_certificates = ["../ca/ca.crt", "../ca2/ca.crt"]|' "$(cfg m1)"
    kill -HUP "$pid"
    t0=$(now)
    wait_for 10 "m1 learns m5 after its SIGHUP" knows m1 m5 True
    wait_for 10 "m1 pings m5" pings m1 "${OV4[m5]}"
    log "figure: m1 reached m5 $(since "$t0") s after its SIGHUP"
    kill -0 "$pid" 2>/dev/null || fail "m1 restarted or died (pid $pid gone)"
    wait_for 5 "m1 still pings m2 (old CA)" pings m1 "${OV4[m2]}"
    stop_sidecar m5 TERM
}

run_test "1 three members with no peers form the mesh through etcd" t_mesh
run_test "2 a newcomer is reachable by all within 2 s" t_newcomer
run_test "3 a killed member disappears after its lease TTL" t_killed
run_test "4 a published policy bundle is enforced by every member within 2 s" t_policy
run_test "5 wrong key and older version refused and counted" t_bad_bundles
run_test "6 a revocation through the directory cuts the member off everywhere" t_revoke
run_test "7 etcd stopped for 30 s: traffic flows, restart from cache, convergence" t_outage
run_test "8 privnet directory members, status and /metrics" t_show
run_test "9 names resolve through the DNS responder" t_dns
run_test "10 a CA rollover by SIGHUP reaches the directory client" t_rollover

echo
echo "directory: $PASSED passed, $FAILED failed"
if [[ $FAILED -gt 0 ]]; then
    printf '  failed: %s\n' "${FAILED_NAMES[@]}"
    exit 1
fi
